//! The one harness of Watchtower's privileged end-to-end tests.
//!
//! It starts real peers (sshd on loopback with PAM, test users with passwords and
//! a key, a sudoers rule) and the real agent with its eBPF probes, drives real
//! logins through ssh, su and sudo, and cleans up every process and temporary
//! directory it made when its guards drop (also when a test panics).
//!
//! Tests need root. Outside CI they are skipped with a loud notice when not root;
//! under CI (`CI` set) a missing privilege is a failure, never a skip.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod central;
mod events;
pub mod fleet;
pub mod ssh_tty;

pub use events::{of_kind, session_of, ssh_login};

pub const ALICE: &str = "wt_alice";
pub const ALICE_PASSWORD: &str = "alice-Pw-7194";
pub const BOB: &str = "wt_bob";
pub const BOB_PASSWORD: &str = "bob-Pw-5821";

/// How long to wait for something that should happen in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// True when the privileged tests can run. Not root: skip loudly, or fail under CI.
#[must_use]
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "privileged end-to-end tests must run as root in CI"
    );
    eprintln!("\n**********************************************************************");
    eprintln!("*** SKIPPED: privileged end-to-end test needs root (not in CI).    ***");
    eprintln!("*** Run `sudo -E cargo xtask test` to exercise the real probes.     ***");
    eprintln!("**********************************************************************\n");
    false
}

/// Run a command to completion; panic with its output if it fails.
#[expect(clippy::must_use_candidate, reason = "often run for its effect alone")]
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    #[must_use]
    pub fn new(tag: &str) -> TempDir {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("watchtower-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl TempDir {
    /// Where an agent keeping its state here pins its probes (see [`Agent::start_with`]).
    #[must_use]
    pub fn pin_dir(&self) -> PathBuf {
        Path::new("/sys/fs/bpf").join(self.0.file_name().expect("a temp dir has a name"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The probes an agent killed with this state left pinned stop with it.
        let _ = std::fs::remove_dir_all(self.pin_dir());
    }
}

/// uid of a local user.
#[must_use]
pub fn uid_of(user: &str) -> u64 {
    run("id", &["-u", user]).trim().parse().expect("numeric uid")
}

/// Ensure the test users, their passwords and the sudoers rule exist.
pub fn ensure_users() {
    for (user, password) in [(ALICE, ALICE_PASSWORD), (BOB, BOB_PASSWORD)] {
        let exists = Command::new("id")
            .arg(user)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            run("useradd", &["--create-home", "--shell", "/bin/bash", user]);
        }
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        writeln!(chpasswd.stdin.take().unwrap(), "{user}:{password}").unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd {user}");
    }
    std::fs::create_dir_all("/etc/sudoers.d").unwrap();
    std::fs::write(
        "/etc/sudoers.d/watchtower-e2e",
        format!("{ALICE} ALL=(ALL) ALL\n"),
    )
    .unwrap();
    let mut perms = std::fs::metadata("/etc/sudoers.d/watchtower-e2e")
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o440);
    std::fs::set_permissions("/etc/sudoers.d/watchtower-e2e", perms).unwrap();
}

/// A free TCP port on `ip` (bound, then released).
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), where no
/// outgoing connection's source port can land on it between this choice and the
/// bind of the process it is meant for (a NATS node's route port, say, while the
/// other nodes already dial theirs).
#[must_use]
pub fn free_port(ip: &str) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let low = 10_000u32;
    if ephemeral_low > low + 1000 {
        let span = ephemeral_low - low;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = low
                + (std::process::id()
                    .wrapping_mul(7919)
                    .wrapping_add(n.wrapping_mul(104_729)))
                    % span;
            let port = u16::try_from(port).expect("below 65536");
            if TcpListener::bind((ip, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

pub fn kill(child: &mut Child, signal: i32) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, signal) };
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real OpenSSH server on 127.0.0.1 with PAM, password and public-key logins.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    /// The journal's time when this sshd started (for its log).
    since: String,
    /// The wall clock when this sshd started: what the journal holds from before
    /// is another test's.
    pub started_unix_ns: u64,
}

/// How [`Sshd::start_with`] configures sshd (its [`Default`] is [`Sshd::start`]'s).
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// `LogLevel`: `VERBOSE` (the default here) or `INFO` (Debian's default).
    pub log_level: &'static str,
    /// `KbdInteractiveAuthentication`.
    pub keyboard_interactive: bool,
    /// More `sshd_config` lines (`AllowUsers ...`, `PermitRootLogin ...`), written
    /// before the defaults so that they win.
    pub extra: Vec<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            log_level: "VERBOSE",
            keyboard_interactive: false,
            extra: Vec::new(),
        }
    }
}

impl Sshd {
    #[must_use]
    pub fn start() -> Sshd {
        Sshd::start_with(&SshdOptions::default())
    }

    /// sshd as [`Sshd::start`] runs it, with `options`.
    #[must_use]
    pub fn start_with(options: &SshdOptions) -> Sshd {
        ensure_users();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = TempDir::new("sshd");
        let d = dir.0.display().to_string();
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", &format!("{d}/host_key")],
        );
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", &format!("{d}/alice_key")],
        );
        std::fs::copy(format!("{d}/alice_key.pub"), format!("{d}/{ALICE}.keys")).unwrap();
        let port = free_port("127.0.0.1");
        let kbd = if options.keyboard_interactive { "yes" } else { "no" };
        let level = options.log_level;
        // The extra lines first: for most keywords sshd takes the first it reads.
        let mut extra = options.extra.join("\n");
        if !extra.is_empty() {
            extra.push('\n');
        }
        let config = format!(
            "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nUsePAM yes\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication {kbd}\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile {d}/%u.keys\nStrictModes no\nPidFile {d}/sshd.pid\nLogLevel {level}\n\
             PermitRootLogin no\nMaxStartups 100\n"
        );
        std::fs::write(format!("{d}/sshd_config"), config).unwrap();
        // sshd logs through /dev/log into the journal, as on a real host.
        let since = journal_now();
        let started_unix_ns = unix_now_ns();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-f", &format!("{d}/sshd_config")])
            .spawn()
            .expect("start /usr/sbin/sshd (apt-get install openssh-server: run `cargo xtask setup`)");
        let sshd = Sshd {
            child,
            port,
            dir,
            since,
            started_unix_ns,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < PATIENCE, "sshd did not listen: {}", sshd.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// What sshd logged since it started (empty when no journald runs).
    #[must_use]
    pub fn log(&self) -> String {
        Command::new("journalctl")
            .args(["--no-pager", "-q", "-o", "short", "SYSLOG_IDENTIFIER=sshd"])
            .arg(format!("--since={}", self.since))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Whether `verdict` is of a login after this sshd started. The journal is the
    /// host's, and an agent reads it from a second before it started: a verdict on
    /// an earlier test's login can come first.
    #[must_use]
    pub fn since_start(&self, verdict: &serde_json::Value) -> bool {
        verdict["login_time_unix_ns"]
            .as_u64()
            .is_none_or(|t| t >= self.started_unix_ns)
    }

    /// The fingerprint of alice's key as sshd logs it (`SHA256:...`).
    #[must_use]
    pub fn alice_key_fingerprint(&self) -> String {
        let key = self.dir.0.join("alice_key.pub").display().to_string();
        let out = run("ssh-keygen", &["-l", "-f", &key]);
        out.split_whitespace()
            .nth(1)
            .expect("ssh-keygen -l output")
            .to_string()
    }

    fn common_options(&self) -> Vec<String> {
        [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-p",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([self.port.to_string()])
        .collect()
    }

    /// `ssh user@127.0.0.1 command` with a password through sshpass.
    /// Returns (exit code, stdout+stderr).
    #[must_use]
    pub fn ssh_password(&self, user: &str, password: &str, command: &str) -> (i32, String) {
        let mut args: Vec<String> = vec!["-p".into(), password.into(), "ssh".into()];
        args.extend(self.common_options());
        args.extend(
            [
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
            ]
            .iter()
            .map(ToString::to_string),
        );
        args.push(format!("{user}@127.0.0.1"));
        args.push(command.into());
        let out = Command::new("sshpass").args(&args).output().expect("sshpass");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `ssh -tt` as alice with her key, answering each prompt (after it appears,
    /// as su and sudo flush early input) with its answer. Returns the session output.
    #[must_use]
    pub fn ssh_key_tty(&self, command: &str, answers: &[(&str, &str)]) -> String {
        let mut args = vec![
            "-tt".to_string(),
            "-i".into(),
            self.dir.0.join("alice_key").display().to_string(),
        ];
        args.extend(self.common_options());
        args.extend(["-o", "BatchMode=yes"].iter().map(ToString::to_string));
        args.push(format!("{ALICE}@127.0.0.1"));
        args.push(command.into());
        let mut child = Command::new("ssh")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh");
        let output = Arc::new(Mutex::new(Vec::<u8>::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut stdin = child.stdin.take().unwrap();
        let mut seen = 0usize;
        for (prompt, answer) in answers {
            let start = Instant::now();
            loop {
                let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
                if let Some(at) = text[seen.min(text.len())..].find(prompt) {
                    seen += at + prompt.len();
                    break;
                }
                assert!(start.elapsed() < PATIENCE, "no prompt {prompt:?} in {text:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            // The prompt is printed just before the terminal is switched to no-echo and
            // flushed; give it that moment.
            std::thread::sleep(Duration::from_millis(300));
            writeln!(stdin, "{answer}").unwrap();
            stdin.flush().unwrap();
        }
        let status = wait_with_deadline(&mut child, PATIENCE).unwrap_or_else(|| {
            kill(&mut child, libc::SIGKILL);
            panic!("ssh -tt {command:?} did not finish");
        });
        drop(stdin);
        reader.join().unwrap();
        let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(
            status.success(),
            "ssh -tt {command:?} failed ({status}): {text}{stderr}"
        );
        text
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill(&mut self.child, libc::SIGTERM);
        if wait_with_deadline(&mut self.child, Duration::from_secs(5)).is_none() {
            kill(&mut self.child, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn unix_now_ns() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(now.as_nanos()).unwrap()
}

fn journal_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("@{}", now.saturating_sub(1))
}

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Whether a journald takes messages now (its socket has a listener).
#[must_use]
pub fn journald_accepting() -> bool {
    std::os::unix::net::UnixDatagram::unbound().is_ok_and(|s| s.connect(JOURNALD_SOCKET).is_ok())
}

/// PIDs of running journald processes (comm `systemd-journal`).
fn journald_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd-journal")
        })
        .collect()
}

/// A real systemd-journald (there is no systemd as PID 1 here): started when none
/// runs, with `/dev/log` pointing at its syslog socket so sshd, su and sudo log
/// into it. Stopped on drop if this guard started it.
pub struct Journald {
    child: Option<Child>,
}

impl Journald {
    #[must_use]
    pub fn start() -> Journald {
        let mut journald = Journald { child: None };
        journald.ensure_running();
        journald
    }

    fn ensure_running(&mut self) {
        std::fs::create_dir_all("/run/systemd/journal").unwrap();
        let dev_log = Path::new("/dev/log");
        if std::fs::read_link(dev_log).map_or(true, |t| t != Path::new("/run/systemd/journal/dev-log")) {
            let _ = std::fs::remove_file(dev_log);
            std::os::unix::fs::symlink("/run/systemd/journal/dev-log", dev_log).expect("link /dev/log");
        }
        if journald_accepting() {
            return;
        }
        let child = Command::new(JOURNALD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /lib/systemd/systemd-journald");
        self.child = Some(child);
        let start = Instant::now();
        while !journald_accepting() {
            assert!(start.elapsed() < PATIENCE, "journald did not open its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its syslog socket too: logging must not race the first login.
        run("logger", &["-t", "watchtower-e2e", "journald up"]);
    }

    /// Stop every journald (so logins go unlogged), until [`Journald::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, libc::SIGTERM);
            let _ = wait_with_deadline(&mut child, PATIENCE);
        }
        for pid in journald_pids() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while journald_accepting() || !journald_pids().is_empty() {
            assert!(start.elapsed() < PATIENCE, "journald did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.ensure_running();
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, libc::SIGTERM);
            if wait_with_deadline(&mut child, Duration::from_secs(5)).is_none() {
                kill(&mut child, libc::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

/// Path of the agent binary built by `cargo xtask test`.
#[must_use]
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WATCHTOWER_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("release/watchtower-agent")
}

/// The real agent, its JSON-lines output collected as it arrives.
pub struct Agent {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    _state: Arc<TempDir>,
}

impl Agent {
    /// Start the agent with `--stdout` and extra flags; returns once its probes are
    /// attached (its `start` health record arrived).
    #[must_use]
    pub fn start(extra: &[&str]) -> Agent {
        Agent::start_with(&[], Arc::new(TempDir::new("agent-state")), extra)
    }

    /// Start the agent under `wrapper` (e.g. `setpriv ... --`), keeping its state in
    /// `state` (shared to restart an agent on the same state).
    #[must_use]
    pub fn start_with(wrapper: &[&str], state: Arc<TempDir>, extra: &[&str]) -> Agent {
        let mut args: Vec<String> = ["--host-id", "e2e-host", "--state-dir"]
            .iter()
            .map(ToString::to_string)
            .collect();
        args.push(state.0.display().to_string());
        // Pins of its own, so agents of one test (and of tests before) never resume
        // each other's probes; an agent restarted on the same state resumes its own.
        args.push("--pin-dir".into());
        args.push(state.pin_dir().display().to_string());
        args.extend(extra.iter().map(ToString::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Agent::start_binary(&agent_binary(), wrapper, state, &args)
    }

    /// `binary` (e.g. the installed agent) under `wrapper` with `--stdout`, one
    /// health record a second, and `args` (nothing else: host id and state come
    /// from `args` or the agent's configuration).
    #[must_use]
    pub fn start_binary(binary: &Path, wrapper: &[&str], state: Arc<TempDir>, args: &[&str]) -> Agent {
        assert!(
            binary.exists(),
            "{} missing: build it with `cargo xtask test`",
            binary.display()
        );
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("--stdout")
            .arg("--health-interval-secs")
            .arg("1")
            .args(args)
            .env("WATCHTOWER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = events.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent printed a line that is not JSON ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let err_sink = stderr_text.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[agent] {line}");
                err_sink.lock().unwrap().push_str(&line);
                err_sink.lock().unwrap().push('\n');
            }
        });
        let agent = Agent {
            child,
            events,
            stderr: stderr_text,
            readers: vec![out_reader, err_reader],
            _state: state,
        };
        agent.wait_for("the agent's start record", |e| {
            e["kind"] == "agent_health" && e["reason"] == "start"
        });
        agent
    }

    /// Every event so far.
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Wait until an event matching `predicate` arrives; panic (with what did arrive)
    /// after [`PATIENCE`].
    pub fn wait_for(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(found) = self.events.lock().unwrap().iter().find(|e| predicate(e)) {
                return found.clone();
            }
            if start.elapsed() > PATIENCE {
                let events = self.events();
                let tail: Vec<_> = events.iter().rev().take(40).rev().collect();
                panic!(
                    "waited {PATIENCE:?} for {what}; {} events arrived, last ones: {tail:#?}\nagent stderr:\n{}",
                    events.len(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait until `n` events match `predicate`; returns them.
    pub fn wait_for_count(&self, what: &str, n: usize, predicate: impl Fn(&Value) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(|e| predicate(e)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {n} {what}, {} arrived: {found:#?}\nagent stderr:\n{}",
                found.len(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Freeze the agent's user-space process (its probes keep running in the kernel).
    pub fn pause(&mut self) {
        kill(&mut self.child, libc::SIGSTOP);
    }

    pub fn resume(&mut self) {
        kill(&mut self.child, libc::SIGCONT);
    }

    /// What the agent wrote on stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// kill -9, as a crash would; returns every event it printed.
    #[must_use]
    pub fn kill9(mut self) -> Vec<Value> {
        kill(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        self.events()
    }

    /// Stop the agent with SIGTERM and return every event, the final `shutdown`
    /// health record last.
    #[must_use]
    pub fn stop(mut self) -> Vec<Value> {
        kill(&mut self.child, libc::SIGTERM);
        let status = wait_with_deadline(&mut self.child, PATIENCE).unwrap_or_else(|| {
            kill(&mut self.child, libc::SIGKILL);
            panic!("agent did not stop within {PATIENCE:?}");
        });
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        assert!(
            status.success(),
            "agent exited with {status}: {}",
            self.stderr.lock().unwrap()
        );
        let events = self.events();
        let last = events.last().expect("events");
        assert_eq!(
            (last["kind"].as_str(), last["reason"].as_str()),
            (Some("agent_health"), Some("shutdown")),
            "the last record must be the final health record"
        );
        events
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            kill(&mut self.child, libc::SIGCONT);
            kill(&mut self.child, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A TCP listener on loopback that accepts and counts connections.
pub struct TcpTarget {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl TcpTarget {
    #[must_use]
    pub fn start() -> TcpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stream.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        TcpTarget { port, accepted }
    }

    #[must_use]
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
