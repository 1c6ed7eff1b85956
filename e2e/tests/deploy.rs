//! Deployment as an operator does it, from what `cargo xtask dist` built: the
//! Debian packages installed with dpkg, their systemd units checked by
//! systemd-analyze, the installed agent run as its own user with exactly the
//! capabilities its unit grants, and a host enrolled with `watchtowerctl enroll`
//! shipping labelled logins from its own network namespace until it is revoked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use watchtower_e2e::central::{NETNS_HOST_ADDR, NetNs, Pki, Server};
use watchtower_e2e::{ALICE, ALICE_PASSWORD, Agent, BOB, BOB_PASSWORD, Journald, Sshd, TempDir, privileged};

const SERVER_UNIT: &str = "/lib/systemd/system/watchtower-server.service";
const AGENT_UNIT: &str = "/lib/systemd/system/watchtower-agent.service";
const AGENT_USER: &str = "watchtower-agent";

/// dist/ as `cargo xtask dist` left it (`cargo xtask test` builds it first).
fn dist() -> PathBuf {
    let dir = std::env::var_os("WATCHTOWER_DIST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist"),
        PathBuf::from,
    );
    assert!(
        dir.join("SHA256SUMS").exists(),
        "{} has no build: run `cargo xtask dist` (cargo xtask test does)",
        dir.display()
    );
    dir
}

fn sh(program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ {program} {}\n{text}", args.join(" "));
    (out.status.code().unwrap_or(-1), text)
}

/// The three packages installed with dpkg; purged (with the files the test put
/// in /etc/watchtower) on drop. The system users stay, as Debian keeps them.
struct Installed;

impl Installed {
    fn new() -> Installed {
        let debs: Vec<String> = std::fs::read_dir(dist())
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                (path.extension().is_some_and(|x| x == "deb")).then(|| path.display().to_string())
            })
            .collect();
        assert_eq!(debs.len(), 3, "three packages in dist/: {debs:?}");
        let mut args = vec!["-i"];
        args.extend(debs.iter().map(String::as_str));
        let (code, out) = sh("dpkg", &args);
        assert_eq!(code, 0, "dpkg -i: {out}");
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for file in ["ca.pem", "agent.pem", "agent.key"] {
            let _ = std::fs::remove_file(Path::new("/etc/watchtower").join(file));
        }
        let _ = sh(
            "dpkg",
            &[
                "--purge",
                "watchtower-agent",
                "watchtower-server",
                "watchtowerctl",
            ],
        );
    }
}

/// The capabilities a unit grants (`AmbientCapabilities`=), e.g. `CAP_BPF`.
fn unit_capabilities(unit: &str) -> Vec<String> {
    std::fs::read_to_string(unit)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("AmbientCapabilities="))
        .flat_map(|caps| caps.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// `setpriv` as the agent's user with exactly `caps` (names like `CAP_BPF`).
fn setpriv(caps: &[String]) -> Vec<String> {
    let list: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    let set = format!("-all,{}", list.join(","));
    [
        "setpriv",
        "--reuid",
        AGENT_USER,
        "--regid",
        AGENT_USER,
        "--init-groups",
        "--inh-caps",
        &set,
        "--ambient-caps",
        &set,
        "--bounding-set",
        &set,
        "--",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// A state directory the agent's user owns.
fn agent_state() -> Arc<TempDir> {
    let state = TempDir::new("agent-state");
    let (code, out) = sh(
        "chown",
        &[
            &format!("{AGENT_USER}:{AGENT_USER}"),
            &state.0.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    Arc::new(state)
}

#[test]
fn units_are_clean_and_within_exposure_limits() {
    if !privileged() {
        return;
    }
    let _installed = Installed::new();
    for (unit, limit) in [(SERVER_UNIT, 2.0), (AGENT_UNIT, 5.0)] {
        let (code, out) = sh("systemd-analyze", &["verify", unit]);
        assert_eq!(
            (code, out.trim()),
            (0, ""),
            "systemd-analyze verify {unit} must be silent"
        );
        let (code, out) = sh("systemd-analyze", &["security", "--offline=yes", unit]);
        assert_eq!(code, 0, "{out}");
        let line = out
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no exposure level in {out}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unreadable: {line}"));
        println!("EXPOSURE {unit}: {score} (limit {limit})");
        assert!(score <= limit, "{unit}: exposure {score} above {limit}");
    }
    // The server runs as its own user with no capabilities at all; the agent as
    // its own user, never root.
    let server = std::fs::read_to_string(SERVER_UNIT).unwrap();
    assert!(server.contains("User=watchtower\n") && server.contains("CapabilityBoundingSet=\n"));
    let agent = std::fs::read_to_string(AGENT_UNIT).unwrap();
    assert!(agent.contains(&format!("User={AGENT_USER}\n")));
}

#[test]
fn installed_agent_with_only_its_capabilities_reports_a_login() {
    if !privileged() {
        return;
    }
    let _installed = Installed::new();
    let caps = unit_capabilities(AGENT_UNIT);
    assert!(
        caps.iter().any(|c| c == "CAP_BPF")
            && caps.iter().any(|c| c == "CAP_PERFMON")
            && caps.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "{caps:?}"
    );
    let _journald = Journald::start();
    let sshd = Sshd::start();
    let binary = Path::new("/usr/bin/watchtower-agent");
    let wrapper = setpriv(&caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let state = agent_state();
    let state_arg = state.0.display().to_string();
    let agent = Agent::start_binary(
        binary,
        &wrapper,
        state.clone(),
        &[
            "--host-id",
            "caps-host",
            "--state-dir",
            &state_arg,
            "--require-kernel",
        ],
    );
    let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "id -un");
    assert_eq!((code, out.trim()), (0, ALICE));
    let login = agent.wait_for("alice's ssh login", |e| {
        e["kind"] == "login_attempt" && e["user"] == ALICE && e["outcome"] == "success"
    });
    assert_eq!(login["service"], "sshd");
    assert_eq!(login["remote_host"], "127.0.0.1");
    let exec = agent.wait_for("id run in her session", |e| {
        e["kind"] == "exec" && e["filename"].as_str().is_some_and(|f| f.ends_with("/id"))
    });
    assert!(exec["session"].is_string(), "{exec}");
    agent.wait_for("the journal's confirmation", |e| {
        e["kind"] == "login_verdict" && e["user"] == ALICE && e["verdict"] == "confirmed"
    });
    let events = agent.stop();
    // With the unit's capabilities the socket hooks attach too.
    let probes = events[0]["probes"].as_array().unwrap();
    for hook in [
        "cgroup:sock_connect4",
        "cgroup:sock_connect6",
        "cgroup:sock_sendmsg4",
        "cgroup:sock_sendmsg6",
    ] {
        assert!(probes.iter().any(|p| p == hook), "{hook} not in {probes:?}");
    }

    // Each capability of the set is needed: without it the agent says which.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let mut command = Command::new(wrapper[0]);
        command.args(&setpriv(&fewer)[1..]).arg(binary).args([
            "--stdout",
            "--host-id",
            "caps-host",
            "--state-dir",
            &state_arg,
            "--require-kernel",
            "--no-journal",
        ]);
        let out = command
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run the agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "without {missing}: {}",
            stderr.lines().find(|l| l.starts_with("Error")).unwrap_or("")
        );
        assert!(!out.status.success(), "the agent ran without {missing}");
        assert!(
            stderr.contains(missing.as_str()),
            "the message must name {missing}: {stderr}"
        );
    }
}

/// The installed watchtowerctl with the operator's certificate from `ca`.
fn ctl(ca: &Path, server: &Server, args: &[&str]) -> (i32, String) {
    let ca_arg = |f: &str| ca.join(f).display().to_string();
    let mut all: Vec<String> = vec![
        "--server".into(),
        server.address(),
        "--server-name".into(),
        NETNS_HOST_ADDR.into(),
        "--ca".into(),
        ca_arg("ca.pem"),
        "--cert".into(),
        ca_arg("clients/operator.pem"),
        "--key".into(),
        ca_arg("clients/operator.key"),
    ];
    all.extend(args.iter().map(ToString::to_string));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    sh("/usr/bin/watchtowerctl", &all)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_mins(1), "waited 60 s for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: enrol, ship, revoke, refused; each step asserts"
)]
fn enrolled_host_in_its_netns_ships_labelled_logins_until_revoked() {
    if !privileged() {
        return;
    }
    let _installed = Installed::new();
    let _journald = Journald::start();
    let sshd = Sshd::start();
    let netns = NetNs::create();

    // The operator's CA, and the server (the installed binary) using it.
    let ca = TempDir::new("operator-ca");
    let (code, out) = sh(
        "/usr/bin/watchtowerctl",
        &[
            "ca",
            "init",
            "--dir",
            &ca.0.display().to_string(),
            "--server-name",
            NETNS_HOST_ADDR,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let revoked = ca.0.join("revoked");
    let pki = Pki {
        dir: TempDir(ca.0.clone()),
    };
    let server = Server::start_binary(
        Path::new("/usr/bin/watchtower-server"),
        &pki,
        NETNS_HOST_ADDR,
        &["--revoked-file", &revoked.display().to_string()],
    );

    // Enrol the host with its labels; install the bundle where the package expects it.
    let bundle = ca.0.join("bundle");
    let (code, out) = ctl(
        &ca.0,
        &server,
        &[
            "enroll",
            "netns-host",
            "--label",
            "region=eu-test",
            "--label",
            "group=canary",
            "--ca-dir",
            &ca.0.display().to_string(),
            "--out",
            &bundle.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    for file in ["ca.pem", "agent.pem", "agent.key", "agent.toml"] {
        std::fs::copy(bundle.join(file), Path::new("/etc/watchtower").join(file)).unwrap();
    }
    sh(
        "chgrp",
        &[
            AGENT_USER,
            "/etc/watchtower/agent.key",
            "/etc/watchtower/agent.toml",
        ],
    );
    sh(
        "chmod",
        &["0640", "/etc/watchtower/agent.key", "/etc/watchtower/agent.toml"],
    );
    let config = std::fs::read_to_string("/etc/watchtower/agent.toml").unwrap();
    assert!(
        config.contains(&format!("address = \"{}\"", server.address())),
        "{config}"
    );

    // The installed agent, in the host's namespace, as its user with its unit's capabilities.
    let mut wrapper = netns.wrapper();
    wrapper.extend(setpriv(&unit_capabilities(AGENT_UNIT)));
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let state = agent_state();
    let state_arg = state.0.display().to_string();
    let agent = Agent::start_binary(
        Path::new("/usr/bin/watchtower-agent"),
        &wrapper,
        state.clone(),
        &[
            "--config",
            "/etc/watchtower/agent.toml",
            "--state-dir",
            &state_arg,
            "--require-kernel",
        ],
    );

    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    let mut stored = Vec::new();
    wait_until("alice's login stored with the host's labels", || {
        let (_, out) = ctl(
            &ca.0,
            &server,
            &[
                "--json",
                "events",
                "--host",
                "netns-host",
                "--kind",
                "login_attempt",
            ],
        );
        stored = json_lines(&out);
        stored
            .iter()
            .any(|s| s["event"]["body"]["login_attempt"]["user"] == ALICE)
    });
    let login = stored
        .iter()
        .find(|s| s["event"]["body"]["login_attempt"]["user"] == ALICE)
        .unwrap();
    assert_eq!(login["event"]["host_id"], "netns-host");
    assert_eq!(login["event"]["body"]["login_attempt"]["outcome"], "success");
    assert_eq!(login["labels"]["region"], "eu-test");
    assert_eq!(login["labels"]["group"], "canary");
    assert_eq!(login["labels"].as_object().unwrap().len(), 2);
    let (_, out) = ctl(&ca.0, &server, &["--json", "hosts"]);
    let host = json_lines(&out)
        .into_iter()
        .find(|h| h["host_id"] == "netns-host")
        .expect("host listed");
    assert_eq!(host["labels"]["region"], "eu-test");
    let expires = host["cert_not_after_unix_s"].as_i64().unwrap();
    let now = watchtower_server_now_s();
    assert!(
        (now + 364 * 86_400..=now + 366 * 86_400).contains(&expires),
        "{expires}"
    );
    let (_, table) = ctl(&ca.0, &server, &["hosts"]);
    assert!(
        table.contains("group=canary,region=eu-test") && table.contains("(in "),
        "{table}"
    );

    // Revoke it: its stream is cut, its next connection refused, counted and logged.
    let (code, out) = ctl(
        &ca.0,
        &server,
        &["revoke", "netns-host", "--ca-dir", &ca.0.display().to_string()],
    );
    assert_eq!(code, 0, "{out}");
    wait_until("the server to refuse the revoked agent's next connection", || {
        server.log().contains("refused a revoked certificate")
    });
    let refusal = server
        .log()
        .lines()
        .find(|l| l.contains("refused a revoked certificate"))
        .unwrap()
        .to_owned();
    assert!(refusal.contains("agent netns-host"), "{refusal}");
    let (_, out) = ctl(&ca.0, &server, &["--json", "stats"]);
    let stats: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(stats["rejected"]["revoked"].as_u64().unwrap() >= 1, "{stats}");
    // A login after the revocation is seen by the agent, never stored.
    let (code, _) = sshd.ssh_password(BOB, BOB_PASSWORD, "true");
    assert_eq!(code, 0);
    agent.wait_for("bob's login, seen locally", |e| {
        e["kind"] == "login_attempt" && e["user"] == BOB
    });
    std::thread::sleep(Duration::from_secs(3));
    let (_, out) = ctl(
        &ca.0,
        &server,
        &["--json", "events", "--host", "netns-host", "--user", BOB],
    );
    assert!(
        json_lines(&out).is_empty(),
        "a revoked host's events were stored: {out}"
    );
    drop(agent);
}

fn watchtower_server_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
