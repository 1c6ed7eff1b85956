//! The privileged rig of the overhead and completeness benchmarks: a real journald,
//! sshd, watchtower-server, and the agent or auditd started and stopped per arm.
//! Each storm runs inside a real ssh login of `wt_alice`.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use watchtower_e2e::central::{HOST, Pki, Reader, Server};
use watchtower_e2e::{ALICE, ALICE_PASSWORD, Journald, Sshd, TempDir, agent_binary};
use watchtower_proto::pb::{EventFilter, EventKind, event};

use crate::workload::StormResult;

/// The storms' kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storm {
    Exec,
    Connect,
}

impl Storm {
    pub fn name(self) -> &'static str {
        match self {
            Storm::Exec => "exec",
            Storm::Connect => "connect",
        }
    }
}

/// What runs beside the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// Nothing watching.
    NoAgent,
    /// The agent's probes attached, their records read and counted, nothing else.
    CountOnly,
    /// The agent with the journal, shipping to the server (durable acks).
    Full,
    /// auditd with an execve (or connect) rule, the common tool of today.
    Auditd,
}

impl Arm {
    pub const ALL: [Arm; 4] = [Arm::NoAgent, Arm::CountOnly, Arm::Full, Arm::Auditd];

    pub fn name(self) -> &'static str {
        match self {
            Arm::NoAgent => "no agent",
            Arm::CountOnly => "probes, counting only",
            Arm::Full => "full pipeline to server",
            Arm::Auditd => "auditd rule",
        }
    }
}

/// One storm under one arm.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ArmRun {
    pub arm: &'static str,
    pub rate: f64,
    pub made: u64,
    /// CPU seconds of the watcher (agent, or auditd plus kauditd) during the storm
    /// and until its events were stored.
    pub watcher_cpu_s: f64,
    /// CPU seconds of the server (full pipeline only).
    pub server_cpu_s: f64,
    /// Storm events the watcher saw (count-only: kernel records; full: stored events).
    pub seen: Option<u64>,
    /// Loss counters reported by the agent (kernel ring buffer, spool), summed.
    pub lost: u64,
}

impl ArmRun {
    /// A run that watched nothing of its own (seen/lost unknown, no server).
    fn of(arm: Arm, result: &StormResult, watcher_cpu_s: f64) -> ArmRun {
        ArmRun {
            arm: arm.name(),
            rate: result.rate(),
            made: result.made,
            watcher_cpu_s,
            server_cpu_s: 0.0,
            seen: None,
            lost: 0,
        }
    }
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat; after the comm, state is index 0.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn pid_of(name: &str) -> Option<u32> {
    let out = Command::new("pgrep").args(["-x", name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A child process whose stderr is collected.
pub struct Watched {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Watched {
    fn spawn(command: &mut Command) -> anyhow::Result<Watched> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("stderr");
                text.push_str(&line);
                text.push('\n');
            }
        });
        Ok(Watched { child, stderr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_log(&mut self, needle: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.stderr.lock().expect("stderr").contains(needle) {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "exited ({status}) before {needle:?}:\n{}",
                    self.stderr.lock().expect("stderr")
                );
            }
            if start.elapsed() > Duration::from_mins(1) {
                bail!(
                    "no {needle:?} within 60 s:\n{}",
                    self.stderr.lock().expect("stderr")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM, then the exit and what it printed on stdout.
    pub fn terminate(mut self) -> anyhow::Result<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out)?;
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("exited with {status}:\n{}", self.stderr.lock().expect("stderr"));
        }
        Ok(out)
    }
}

/// auditd in the foreground with one rule, removed again on drop.
struct Auditd {
    child: Child,
}

impl Auditd {
    fn registered_pid() -> anyhow::Result<Option<u32>> {
        let status = Command::new("auditctl")
            .arg("-s")
            .output()
            .context("auditctl (apt-get install auditd: `cargo xtask setup`)")?;
        Ok(String::from_utf8_lossy(&status.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("pid ")?.trim().parse::<u32>().ok())
            .filter(|&pid| pid != 0))
    }

    fn start(storm: Storm) -> anyhow::Result<Auditd> {
        if let Some(pid) = Auditd::registered_pid()? {
            bail!("an auditd is already running (pid {pid}): stop it for the benchmark");
        }
        let child = Command::new("auditd")
            .arg("-n")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting auditd (apt-get install auditd: `cargo xtask setup`)")?;
        let start = Instant::now();
        while Auditd::registered_pid()?.is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("auditd did not register with the kernel within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let syscalls: &[&str] = match storm {
            Storm::Exec => &["-S", "execve", "-S", "execveat"],
            Storm::Connect => &["-S", "connect"],
        };
        let out = Command::new("auditctl")
            .args(["-a", "always,exit", "-F", "arch=b64"])
            .args(syscalls)
            .args(["-k", "watchtower-bench"])
            .output()?;
        if !out.status.success() {
            bail!("auditctl rule: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Auditd { child })
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id()) + pid_of("kauditd").map_or(0.0, cpu_seconds)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = Command::new("auditctl").arg("-D").output();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = Command::new("auditctl").args(["-e", "0"]).output();
    }
}

/// journald, sshd, the server, a reader, and the workload where `wt_alice` can run it.
pub struct Rig {
    _journald: Journald,
    sshd: Sshd,
    pki: Pki,
    server: Server,
    reader: Reader,
    workload: PathBuf,
    _workload_dir: TempDir,
    /// The agent's state (sequence numbers and spool), kept across arms so the
    /// numbering goes on and nothing is counted twice.
    state: TempDir,
}

impl Rig {
    pub fn start() -> anyhow::Result<Rig> {
        let journald = Journald::start();
        let sshd = Sshd::start();
        let pki = Pki::new();
        let server = Server::start(&pki, "127.0.0.1", &[]);
        let reader = Reader::connect(&pki, &server);
        let dir = TempDir::new("bench-workload");
        let workload = dir.0.join("watchtower-bench");
        std::fs::copy(std::env::current_exe()?, &workload)?;
        for path in [&dir.0, &workload] {
            let mut perms = std::fs::metadata(path)?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(path, perms)?;
        }
        Ok(Rig {
            _journald: journald,
            sshd,
            pki,
            server,
            reader,
            workload,
            _workload_dir: dir,
            state: TempDir::new("bench-agent-state"),
        })
    }

    /// The storm inside an ssh login of `wt_alice`.
    pub fn storm(&self, storm: Storm, count: u64, parallel: usize) -> anyhow::Result<StormResult> {
        let command = format!(
            "{} workload {} --count {count} --parallel {parallel}",
            self.workload.display(),
            storm.name()
        );
        let (code, output) = self.sshd.ssh_password(ALICE, ALICE_PASSWORD, &command);
        if code != 0 {
            bail!("the workload over ssh failed ({code}): {output}");
        }
        let line = output
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("no result from the workload: {output}"))?;
        let result: StormResult = serde_json::from_str(line)?;
        if result.failed > 0 {
            bail!("the workload had {} failures", result.failed);
        }
        Ok(result)
    }

    pub fn agent(&self, arm: Arm) -> anyhow::Result<Watched> {
        if arm == Arm::CountOnly {
            Self::spawn_agent(&self.state.0, &["--count-only".to_owned()], "counting only")
        } else {
            self.agent_to(&self.server.address(), &self.state.0, &[])
        }
    }

    /// An agent with its own `state` directory shipping to `server` (which need
    /// not answer), with `extra` flags.
    pub fn agent_to(&self, server: &str, state: &std::path::Path, extra: &[&str]) -> anyhow::Result<Watched> {
        let mut args = self.pki.agent_args(server);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::spawn_agent(state, &args, "witnesses running")
    }

    /// Start the agent with `args` and wait until it logs `ready`.
    fn spawn_agent(state: &std::path::Path, args: &[String], ready: &str) -> anyhow::Result<Watched> {
        let mut command = Command::new(agent_binary());
        command
            .args(["--host-id", HOST, "--state-dir"])
            .arg(state)
            .args(args)
            .env("WATCHTOWER_LOG", "info");
        let mut agent = Watched::spawn(&mut command)?;
        agent.wait_for_log(ready)?;
        Ok(agent)
    }

    /// The server's address, for an agent of one's own ([`Rig::agent_to`]).
    pub fn server_address(&self) -> String {
        self.server.address()
    }

    /// Stored events matching `filter`.
    pub fn events(&mut self, filter: &EventFilter) -> Vec<watchtower_proto::pb::Event> {
        self.reader.events(filter)
    }

    /// `command` in an ssh login of `user` with `password`: its exit code and output.
    pub fn ssh(&self, user: &str, password: &str, command: &str) -> (i32, String) {
        self.sshd.ssh_password(user, password, command)
    }

    /// The server's process id.
    pub fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    /// The host's stored event count (cheap: its host record).
    pub fn stored_total(&mut self) -> u64 {
        self.reader
            .hosts()
            .iter()
            .find(|h| h.host_id == HOST)
            .map_or(0, |h| h.events_stored)
    }

    /// Wait until the server holds `at_least` more events than `before` and the
    /// count stopped moving (the agent has delivered what it had).
    pub fn wait_stored(&mut self, before: u64, at_least: u64) {
        let start = Instant::now();
        let mut last = (self.stored_total(), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.stored_total();
            if now != last.0 {
                last = (now, Instant::now());
            }
            let settled = last.1.elapsed() > Duration::from_millis(500);
            if (now >= before + at_least && settled)
                || last.1.elapsed() > Duration::from_secs(10)
                || start.elapsed() > Duration::from_mins(2)
            {
                return;
            }
        }
    }

    /// Storm events stored for the storm that ran in [from, to).
    fn stored_storm_events(&mut self, storm: Storm, result: &StormResult, from: u64, to: u64) -> u64 {
        let kind = match storm {
            Storm::Exec => EventKind::Exec,
            Storm::Connect => EventKind::Connect,
        };
        let events = self.reader.events(&EventFilter {
            host_id: HOST.into(),
            from_unix_ns: from,
            to_unix_ns: to,
            kinds: vec![kind as i32],
            ..EventFilter::default()
        });
        events
            .iter()
            .filter(|e| match &e.body {
                Some(event::Body::Exec(exec)) => exec.filename.ends_with("/true") && exec.session.is_some(),
                Some(event::Body::Connect(c)) => {
                    c.port == Some(u32::from(result.port)) && c.session.is_some()
                }
                _ => false,
            })
            .count() as u64
    }

    /// Loss counters of the agent's last health record stored since `from`.
    fn reported_loss(&mut self, from: u64) -> u64 {
        let health = self.reader.events(&EventFilter {
            host_id: HOST.into(),
            from_unix_ns: from,
            kinds: vec![EventKind::AgentHealth as i32],
            ..EventFilter::default()
        });
        health
            .iter()
            .filter_map(|e| match &e.body {
                Some(event::Body::AgentHealth(h)) => Some((e.seq, h)),
                _ => None,
            })
            .max_by_key(|(seq, _)| *seq)
            .map_or(0, |(_, h)| {
                h.lost.values().sum::<u64>() + h.spool.as_ref().map_or(0, |s| s.dropped.values().sum::<u64>())
            })
    }

    /// Run one storm under one arm.
    pub fn run(&mut self, storm: Storm, arm: Arm, count: u64, parallel: usize) -> anyhow::Result<ArmRun> {
        let from = watchtower_server::now_unix_ns();
        match arm {
            Arm::NoAgent => {
                let result = self.storm(storm, count, parallel)?;
                Ok(ArmRun::of(arm, &result, 0.0))
            }
            Arm::Auditd => {
                let auditd = Auditd::start(storm)?;
                let cpu = auditd.cpu_seconds();
                let result = self.storm(storm, count, parallel)?;
                let used = auditd.cpu_seconds() - cpu;
                drop(auditd);
                Ok(ArmRun::of(arm, &result, used))
            }
            Arm::CountOnly => {
                let agent = self.agent(arm)?;
                let cpu = cpu_seconds(agent.child.id());
                let result = self.storm(storm, count, parallel)?;
                std::thread::sleep(Duration::from_millis(200));
                let used = cpu_seconds(agent.child.id()) - cpu;
                let summary: serde_json::Value = serde_json::from_str(agent.terminate()?.trim())
                    .context("the count-only agent's summary")?;
                let lost = summary["lost"]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(serde_json::Value::as_u64).sum());
                Ok(ArmRun {
                    seen: summary["records"][storm.name()].as_u64(),
                    lost,
                    ..ArmRun::of(arm, &result, used)
                })
            }
            Arm::Full => {
                let agent = self.agent(arm)?;
                let before = self.stored_total();
                let agent_cpu = cpu_seconds(agent.child.id());
                let server_pid = self.server.pid();
                let server_cpu = cpu_seconds(server_pid);
                let result = self.storm(storm, count, parallel)?;
                self.wait_stored(before, result.made);
                let agent_used = cpu_seconds(agent.child.id()) - agent_cpu;
                let server_used = cpu_seconds(server_pid) - server_cpu;
                agent.terminate().context("the agent")?;
                self.wait_stored(before, result.made);
                let to = watchtower_server::now_unix_ns();
                let seen = self.stored_storm_events(storm, &result, from, to);
                let lost = self.reported_loss(from);
                Ok(ArmRun {
                    arm: arm.name(),
                    rate: result.rate(),
                    made: result.made,
                    watcher_cpu_s: agent_used,
                    server_cpu_s: server_used,
                    seen: Some(seen),
                    lost,
                })
            }
        }
    }
}
