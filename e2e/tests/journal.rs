//! The journal cross-check, end to end: a real systemd-journald, real sshd and
//! sudo logging into it, the real agent with its probes reconciling both witnesses.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use watchtower_e2e::ssh_tty::Method;
use watchtower_e2e::{
    ALICE, ALICE_PASSWORD, Agent, BOB, BOB_PASSWORD, Journald, Sshd, SshdOptions, TempDir, of_kind,
    privileged, run,
};

const WINDOW: &str = "3";

/// The verdicts on logins since `sshd` started.
fn verdicts<'a>(events: &'a [Value], sshd: &Sshd) -> Vec<&'a Value> {
    of_kind(events, "login_verdict")
        .into_iter()
        .filter(|v| sshd.since_start(v))
        .collect()
}

/// The kernel's `login_attempt` event a verdict refers to.
fn attempt_of<'a>(events: &'a [Value], verdict: &Value) -> &'a Value {
    let seq = &verdict["kernel"]["seq"];
    events
        .iter()
        .find(|e| e["kind"] == "login_attempt" && &e["seq"] == seq)
        .unwrap_or_else(|| panic!("no login_attempt with seq {seq}: {verdict:#}"))
}

#[test]
fn password_publickey_failed_and_invalid_logins_are_confirmed_with_the_method() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let sshd = Sshd::start();
    let agent = Agent::start(&["--journal-window-secs", WINDOW]);
    let start = agent.events();
    assert_eq!(start[0]["mode"], "kernel+journal", "{:#}", start[0]);

    let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0, "{out}\n{}", sshd.log());
    let _ = sshd.ssh_key_tty("true", &[]);
    let (code, _) = sshd.ssh_password(ALICE, "wrong-password", "true");
    assert_ne!(code, 0);
    let (code, _) = sshd.ssh_password("wt_nosuchuser", "whatever", "true");
    assert_ne!(code, 0);
    agent.wait_for_count("verdicts", 4, |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e)
    });
    let events = agent.stop();

    let verdicts = verdicts(&events, &sshd);
    assert_eq!(verdicts.len(), 4, "{verdicts:#?}");
    for v in &verdicts {
        assert_eq!(v["verdict"], "confirmed", "{v:#}");
        assert_eq!(v["program"], "sshd");
        assert_eq!(v["remote_address"], "127.0.0.1");
        // The same process wrote the log line and made the PAM calls.
        let attempt = attempt_of(&events, v);
        assert_eq!(v["journal"]["writer"]["pid"], attempt["process"]["pid"]);
        assert_eq!(v["journal"]["writer"]["comm"], "sshd");
        assert_eq!(v["journal"]["identity_mismatch"], false);
        assert!(v["remote_port"].as_u64().is_some_and(|p| p > 0), "{v:#}");
        assert_eq!(v["journal"]["local_port"], u64::from(sshd.port));
    }
    let summary: Vec<_> = verdicts
        .iter()
        .map(|v| {
            (
                v["user"].as_str().unwrap(),
                v["outcome"].as_str().unwrap(),
                v["auth_method"].as_str().unwrap(),
                v["journal"]["invalid_user"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (ALICE, "success", "password", false),
            (ALICE, "success", "publickey", false),
            (ALICE, "failure", "password", false),
            ("wt_nosuchuser", "failure", "password", true),
        ]
    );
    assert_eq!(
        verdicts[1]["key_fingerprint"],
        sshd.alice_key_fingerprint().as_str()
    );
    assert_eq!(verdicts[0]["key_fingerprint"], Value::Null);
    let last = events.last().unwrap();
    assert_eq!(last["verdicts"]["confirmed"], 4);
    assert_eq!(last["verdicts"]["kernel_only"], 0);
    assert_eq!(last["verdicts"]["journal_only"], 0);
    assert_eq!(last["journal"]["state"], "following");
    assert_eq!(last["journal"]["malformed"], 0);
}

#[test]
fn a_login_while_journald_is_stopped_is_kernel_only_and_the_next_is_confirmed() {
    if !privileged() {
        return;
    }
    let mut journald = Journald::start();
    let sshd = Sshd::start();
    let agent = Agent::start(&["--journal-window-secs", WINDOW]);
    journald.stop();
    let logged_in = Instant::now();
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    let verdict = agent.wait_for("a kernel_only verdict", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e) && e["verdict"] == "kernel_only"
    });
    assert!(
        logged_in.elapsed().as_secs() >= 3,
        "reported only after the window closed"
    );
    journald.restart();
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    agent.wait_for("a confirmed verdict after journald came back", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e) && e["verdict"] == "confirmed"
    });
    let events = agent.stop();

    assert_eq!(verdict["reason"], "journald_not_accepting");
    assert_eq!(verdict["user"], ALICE);
    assert_eq!(verdict["program"], "sshd");
    assert_eq!(verdict["journal"], Value::Null);
    let attempt = attempt_of(&events, &verdict);
    assert_eq!(attempt["outcome"], "success");
    assert!(
        verdict["time_unix_ns"].as_u64().unwrap()
            >= attempt["time_unix_ns"].as_u64().unwrap() + 3_000_000_000
    );
    let kinds: Vec<_> = verdicts(&events, &sshd)
        .iter()
        .map(|v| v["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["kernel_only", "confirmed"]);
}

/// Move every journal directory aside (removed at the end of the test): the
/// machine then has no journal at all, as before journald first ran.
fn remove_every_journal() {
    for root in ["/run/log/journal", "/var/log/journal"] {
        let Ok(dirs) = std::fs::read_dir(root) else {
            continue;
        };
        for dir in dirs.flatten() {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

#[test]
fn an_agent_started_before_any_journal_existed_reads_it_once_journald_runs() {
    if !privileged() {
        return;
    }
    let mut journald = Journald::start();
    journald.stop();
    remove_every_journal();
    let sshd = Sshd::start();
    let agent = Agent::start(&["--journal-window-secs", WINDOW]);
    assert_eq!(agent.events()[0]["mode"], "kernel+journal");
    // With no journal at all, a login cannot be checked: the witness is blind,
    // which is not the alarm of a suppressed line.
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    agent.wait_for("a kernel_only verdict", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e) && e["verdict"] == "kernel_only"
    });
    journald.restart();
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    let (code, _) = sshd.ssh_password(ALICE, "wrong-password", "true");
    assert_ne!(code, 0);
    agent.wait_for_count("two verdicts after journald started", 3, |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e)
    });
    let events = agent.stop();

    let got: Vec<_> = verdicts(&events, &sshd)
        .iter()
        .map(|v| {
            (
                v["verdict"].as_str().unwrap(),
                v["reason"].as_str().unwrap(),
                v["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("kernel_only", "journald_not_accepting", "success"),
            ("confirmed", "both_witnesses", "success"),
            ("confirmed", "both_witnesses", "failure"),
        ]
    );
    let last = events.last().unwrap();
    assert_eq!(last["journal"]["state"], "following", "{last:#}");
    assert!(last["journal"]["restarts"].as_u64().unwrap() >= 1, "{last:#}");
}

#[test]
fn a_forged_sshd_line_is_journal_only() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let agent = Agent::start(&["--journal-window-secs", WINDOW]);
    run(
        "logger",
        &[
            "-t",
            "sshd",
            "Accepted password for mallory from 10.9.9.9 port 4242 ssh2",
        ],
    );
    let verdict = agent.wait_for("a journal_only verdict", |e| {
        e["kind"] == "login_verdict" && e["verdict"] == "journal_only"
    });
    let events = agent.stop();

    assert_eq!(verdict["user"], "mallory");
    assert_eq!(verdict["program"], "sshd");
    assert_eq!(verdict["outcome"], "success");
    assert_eq!(verdict["auth_method"], "password");
    assert_eq!(verdict["remote_address"], "10.9.9.9");
    assert_eq!(verdict["remote_port"], 4242);
    assert_eq!(verdict["kernel"], Value::Null);
    // The trusted fields show the writer was not sshd.
    assert_eq!(verdict["reason"], "writer_not_the_program");
    assert_eq!(verdict["journal"]["identity_mismatch"], true);
    assert_ne!(verdict["journal"]["writer"]["comm"], "sshd");
    assert!(
        of_kind(&events, "login_attempt").is_empty(),
        "no PAM login happened"
    );
    // Besides it, at most an earlier test's last login, from before the agent ran.
    let others: Vec<_> = of_kind(&events, "login_verdict")
        .into_iter()
        .filter(|v| v["reason"] != "before_kernel_watch")
        .collect();
    assert_eq!(others.len(), 1, "{others:#?}");
}

#[test]
fn a_sudo_command_carries_its_command_from_the_journal() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let sshd = Sshd::start();
    let agent = Agent::start(&["--journal-window-secs", WINDOW]);
    let output = sshd.ssh_key_tty(
        "sudo -k; sudo /usr/bin/id -un",
        &[("password for", ALICE_PASSWORD)],
    );
    assert!(output.contains("root"), "{output}");
    agent.wait_for("the sudo verdict", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e) && e["program"] == "sudo"
    });
    let events = agent.stop();

    let verdicts = verdicts(&events, &sshd);
    let sudo: Vec<_> = verdicts.iter().filter(|v| v["program"] == "sudo").collect();
    assert_eq!(sudo.len(), 1, "{verdicts:#?}");
    let v = sudo[0];
    assert_eq!(v["verdict"], "confirmed");
    assert_eq!(v["command"], "/usr/bin/id -un");
    assert_eq!(v["user"], ALICE, "sudo authenticates the invoking user");
    assert_eq!(v["journal"]["sudo"]["user"], ALICE);
    assert_eq!(v["journal"]["sudo"]["target_user"], "root");
    assert_eq!(v["journal"]["sudo"]["outcome"]["decision"], "allowed");
    assert!(
        v["journal"]["sudo"]["tty"]
            .as_str()
            .is_some_and(|t| t.starts_with("pts/")),
        "{v:#}"
    );
    let attempt = attempt_of(&events, v);
    assert_eq!(attempt["service"], "sudo");
    assert_eq!(v["journal"]["writer"]["pid"], attempt["process"]["pid"]);
    // The ssh login around it is confirmed too, and nothing is unmatched.
    assert_eq!(verdicts.len(), 2);
    assert!(
        verdicts.iter().all(|v| v["verdict"] == "confirmed"),
        "{verdicts:#?}"
    );
}

#[test]
fn without_capabilities_the_agent_runs_on_the_journal_alone() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let sshd = Sshd::start();
    // uid 0 with no capabilities at all: the journal files (root's) stay readable,
    // the probes cannot load.
    let agent = Agent::start_with(
        &["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"],
        Arc::new(TempDir::new("agent-state")),
        &["--journal-window-secs", WINDOW],
    );
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    let verdict = agent.wait_for("the journal's login", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e)
    });
    let events = agent.stop();

    let start = &events[0];
    assert_eq!(start["mode"], "journal");
    let why = start["kernel_unavailable"].as_str().unwrap();
    assert!(why.contains("CAP_BPF"), "{why}");
    assert!(start["probes"].as_array().unwrap().is_empty());
    assert_eq!(verdict["verdict"], "unchecked");
    assert_eq!(verdict["reason"], "kernel_witness_off");
    assert_eq!(verdict["user"], ALICE);
    assert_eq!(verdict["auth_method"], "password");
    assert!(of_kind(&events, "login_attempt").is_empty());

    // --require-kernel refuses to run degraded.
    let state = TempDir::new("agent-state");
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(watchtower_e2e::agent_binary())
        .args(["--stdout", "--require-kernel", "--state-dir"])
        .arg(&state.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CAP_BPF"));
}

#[test]
fn a_restarted_agent_resumes_after_its_saved_cursor() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let sshd = Sshd::start();
    let state = Arc::new(TempDir::new("agent-state"));
    let first = Agent::start_with(&[], state.clone(), &["--journal-window-secs", WINDOW]);
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    first.wait_for("the first login's verdict", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e)
    });
    let first_events = first.stop();
    // While no agent runs: only the journal keeps this one.
    let (code, _) = sshd.ssh_password(ALICE, "wrong-password", "true");
    assert_ne!(code, 0);
    let second = Agent::start_with(&[], state, &["--journal-window-secs", WINDOW]);
    let verdict = second.wait_for("the missed login", |e| {
        e["kind"] == "login_verdict" && sshd.since_start(e)
    });
    let second_events = second.stop();

    let first_verdicts = verdicts(&first_events, &sshd);
    assert_eq!(first_verdicts.len(), 1);
    assert_eq!(first_verdicts[0]["verdict"], "confirmed");
    assert_eq!(first_verdicts[0]["outcome"], "success");
    // The second agent reports the login it could not have seen, once, as
    // unchecked (not an alert), and does not repeat the first.
    let second_verdicts = verdicts(&second_events, &sshd);
    assert_eq!(second_verdicts.len(), 1, "{second_verdicts:#?}");
    assert_eq!(verdict["verdict"], "unchecked");
    assert_eq!(verdict["reason"], "before_kernel_watch");
    assert_eq!(verdict["outcome"], "failure");
    assert_eq!(verdict["user"], ALICE);
}

#[test]
fn no_journal_means_kernel_only_mode_without_verdicts() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let sshd = Sshd::start();
    let agent = Agent::start(&["--no-journal"]);
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    agent.wait_for("the login", |e| e["kind"] == "login_attempt");
    // Longer than any window: nothing is reconciled in kernel-only mode.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let events = agent.stop();

    let start = &events[0];
    assert_eq!(start["mode"], "kernel");
    assert_eq!(start["journal"]["state"], "unavailable");
    assert_eq!(start["journal"]["error"], "disabled by configuration");
    assert_eq!(start["verdicts"], Value::Null);
    assert_eq!(of_kind(&events, "login_attempt").len(), 1);
    assert!(verdicts(&events, &sshd).is_empty());
}

/// Records written behind a saved cursor: more than journalctl's follow default.
const BEHIND: u64 = 25;

/// The journal's records the agent has read, from its newest health record.
fn records_read(events: &[Value]) -> u64 {
    of_kind(events, "agent_health")
        .last()
        .and_then(|h| h["journal"]["records"].as_u64())
        .unwrap_or(0)
}

/// The watched records (the agent's own list of identifiers) the journal holds
/// after `cursor`, as journalctl counts them when not following (all of them).
fn records_after(cursor: &str) -> u64 {
    let mut args = vec![
        "--output=json".to_owned(),
        "--no-pager".to_owned(),
        "--quiet".to_owned(),
        format!("--after-cursor={cursor}"),
    ];
    for identifier in watchtower_journal::Program::IDENTIFIERS {
        args.push(format!("SYSLOG_IDENTIFIER={identifier}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("journalctl", &args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64
}

/// More watched records behind the saved cursor than journalctl's follow mode
/// shows by default (10): a resumed agent reads every one of them at once, not the
/// first ten and then nothing until the journal moves again.
#[test]
fn a_resumed_agent_reads_every_record_behind_its_cursor() {
    if !privileged() {
        return;
    }
    let _journald = Journald::start();
    let state = Arc::new(TempDir::new("agent-state"));
    let flags = ["--journal-window-secs", WINDOW];
    let first = Agent::start_with(&[], state.clone(), &flags);
    run("logger", &["-t", "sshd", "wt-e2e: before the restart"]);
    first.wait_for("the first record read", |e| {
        e["kind"] == "agent_health" && e["journal"]["records"].as_u64() >= Some(1)
    });
    let _ = first.stop();
    let cursor = std::fs::read_to_string(state.0.join("journal.cursor")).expect("the saved cursor");
    let cursor = cursor.trim();
    // While no agent runs: more records of a watched program than journalctl's 10.
    for n in 0..BEHIND {
        run(
            "logger",
            &["-t", "sshd", &format!("wt-e2e: behind the cursor {n}")],
        );
    }
    // journald stores what logger sent a moment later.
    let started = Instant::now();
    let mut behind = records_after(cursor);
    while behind < BEHIND {
        assert!(
            started.elapsed().as_secs() < 10,
            "the journal holds {behind} records after the cursor"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        behind = records_after(cursor);
    }
    let second = Agent::start_with(&[], state, &flags);
    second.wait_for("every record behind the cursor", |e| {
        e["kind"] == "agent_health" && e["journal"]["records"].as_u64() >= Some(behind)
    });
    // Nothing more is written: the count stays exact (the cursor's own record is not read again).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second_events = second.stop();
    assert_eq!(records_read(&second_events), records_after(cursor));
}

/// sshd's kernel attempts (its PAM calls) and verdicts, once every attempt has
/// its verdict and a window more has passed (a late `journal_only` would show).
fn sshd_tries_and_verdicts(options: &SshdOptions, tries: impl FnOnce(&Sshd)) -> (Vec<Value>, Vec<Value>) {
    let _journald = Journald::start();
    let sshd = Sshd::start_with(options);
    let agent = Agent::start(&["--journal-window-secs", WINDOW]);
    tries(&sshd);
    let sshd_only = |e: &Value, kind: &str| {
        e["kind"] == kind && (e["service"] == "sshd" || e["program"] == "sshd") && sshd.since_start(e)
    };
    let started = Instant::now();
    loop {
        let events = agent.events();
        let attempts = events.iter().filter(|e| sshd_only(e, "login_attempt")).count();
        let verdicts = events.iter().filter(|e| sshd_only(e, "login_verdict")).count();
        if attempts > 0 && verdicts >= attempts {
            break;
        }
        assert!(
            started.elapsed() < watchtower_e2e::PATIENCE,
            "{attempts} sshd attempts, {verdicts} verdicts\n{}",
            sshd.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(WINDOW.parse::<u64>().unwrap() + 1));
    let events = agent.stop();
    let attempts: Vec<Value> = events
        .iter()
        .filter(|e| sshd_only(e, "login_attempt"))
        .cloned()
        .collect();
    let verdicts: Vec<Value> = events
        .iter()
        .filter(|e| sshd_only(e, "login_verdict"))
        .cloned()
        .collect();
    let log = sshd.log();
    // Every kernel attempt has exactly one verdict, confirmed by the journal.
    for attempt in &attempts {
        let of_it: Vec<_> = verdicts
            .iter()
            .filter(|v| v["kernel"]["seq"] == attempt["seq"])
            .collect();
        assert_eq!(
            of_it.len(),
            1,
            "attempt {attempt:#}\nverdicts {verdicts:#?}\n{log}"
        );
        assert_eq!(of_it[0]["verdict"], "confirmed", "{:#}\n{log}", of_it[0]);
        assert_eq!(of_it[0]["outcome"], attempt["outcome"]);
    }
    assert_eq!(verdicts.len(), attempts.len(), "{verdicts:#?}\n{log}");
    let last = events.last().unwrap();
    assert_eq!(last["verdicts"]["kernel_only"], 0, "{log}");
    assert_eq!(last["verdicts"]["journal_only"], 0, "{log}");
    (attempts, verdicts)
}

/// (outcome, method, invalid user) of each verdict, sorted.
fn summary(verdicts: &[Value]) -> Vec<(String, String, bool)> {
    let mut out: Vec<_> = verdicts
        .iter()
        .map(|v| {
            (
                v["outcome"].as_str().unwrap().to_string(),
                v["auth_method"].as_str().unwrap_or("-").to_string(),
                v["journal"]["invalid_user"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn tuple(outcome: &str, method: &str, invalid: bool) -> (String, String, bool) {
    (outcome.to_string(), method.to_string(), invalid)
}

/// Typos and wrong answers with keyboard-interactive and passwords, a key, and
/// invalid users: at INFO, a wrong keyboard-interactive answer is written only as
/// `error: PAM: Authentication failure for ...`.
fn keyboard_interactive_and_password_tries(sshd: &Sshd) {
    let kbd = Method::KeyboardInteractive;
    let (code, out) = sshd.ssh_typing(ALICE, kbd, &["wrong-1", "wrong-2", ALICE_PASSWORD]);
    assert_eq!(code, 0, "{out}");
    let (code, _) = sshd.ssh_typing(ALICE, kbd, &["wrong-1", "wrong-2", "wrong-3"]);
    assert_ne!(code, 0);
    let (code, out) = sshd.ssh_typing(ALICE, Method::Password, &["wrong-1", ALICE_PASSWORD]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sshd.ssh_key_as(ALICE), 0);
    let (code, _) = sshd.ssh_typing("wt_nosuchuser", Method::Password, &["whatever"]);
    assert_ne!(code, 0);
    let (code, _) = sshd.ssh_typing("wt_nosuchuser", kbd, &["whatever"]);
    assert_ne!(code, 0);
}

fn keyboard_interactive_and_password_summary() -> Vec<(String, String, bool)> {
    let kbd = "keyboard-interactive/pam";
    let mut expected = vec![
        tuple("failure", kbd, false),
        tuple("failure", kbd, false),
        tuple("failure", kbd, false),
        tuple("failure", kbd, false),
        tuple("failure", kbd, false),
        tuple("failure", kbd, true),
        tuple("failure", "password", false),
        tuple("failure", "password", true),
        tuple("success", kbd, false),
        tuple("success", "password", false),
        tuple("success", "publickey", false),
    ];
    expected.sort();
    expected
}

/// Typos with passwords (keyboard-interactive off), a key and an invalid user.
fn password_tries(sshd: &Sshd) {
    let (code, out) = sshd.ssh_typing(ALICE, Method::Password, &["wrong-1", ALICE_PASSWORD]);
    assert_eq!(code, 0, "{out}");
    let (code, _) = sshd.ssh_typing(ALICE, Method::Password, &["wrong-1", "wrong-2", "wrong-3"]);
    assert_ne!(code, 0);
    assert_eq!(sshd.ssh_key_as(ALICE), 0);
    let (code, _) = sshd.ssh_typing("wt_nosuchuser", Method::Password, &["whatever"]);
    assert_ne!(code, 0);
}

fn password_summary() -> Vec<(String, String, bool)> {
    let mut expected = vec![
        tuple("failure", "password", false),
        tuple("failure", "password", false),
        tuple("failure", "password", false),
        tuple("failure", "password", false),
        tuple("failure", "password", true),
        tuple("success", "password", false),
        tuple("success", "publickey", false),
    ];
    expected.sort();
    expected
}

fn options(log_level: &'static str, keyboard_interactive: bool, extra: &[&str]) -> SshdOptions {
    SshdOptions {
        log_level,
        keyboard_interactive,
        extra: extra.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn at_info_every_keyboard_interactive_and_password_try_is_confirmed() {
    if !privileged() {
        return;
    }
    let (_, verdicts) = sshd_tries_and_verdicts(
        &options("INFO", true, &[]),
        keyboard_interactive_and_password_tries,
    );
    assert_eq!(summary(&verdicts), keyboard_interactive_and_password_summary());
}

#[test]
fn at_verbose_every_keyboard_interactive_and_password_try_is_confirmed() {
    if !privileged() {
        return;
    }
    let (_, verdicts) = sshd_tries_and_verdicts(
        &options("VERBOSE", true, &[]),
        keyboard_interactive_and_password_tries,
    );
    assert_eq!(summary(&verdicts), keyboard_interactive_and_password_summary());
}

#[test]
fn at_info_without_keyboard_interactive_every_password_try_is_confirmed() {
    if !privileged() {
        return;
    }
    let (_, verdicts) = sshd_tries_and_verdicts(&options("INFO", false, &[]), password_tries);
    assert_eq!(summary(&verdicts), password_summary());
}

#[test]
fn at_verbose_without_keyboard_interactive_every_password_try_is_confirmed() {
    if !privileged() {
        return;
    }
    let (_, verdicts) = sshd_tries_and_verdicts(&options("VERBOSE", false, &[]), password_tries);
    assert_eq!(summary(&verdicts), password_summary());
}

/// A user `AllowUsers` or `DenyUsers` refuses, with the right password: sshd
/// runs PAM with a false one (the kernel sees a failure) and logs an invalid
/// user; a refused key reaches no PAM call at all.
fn refused_bob_tries(sshd: &Sshd) {
    let (code, _) = sshd.ssh_typing(BOB, Method::Password, &[BOB_PASSWORD]);
    assert_ne!(code, 0);
    let (code, _) = sshd.ssh_typing(BOB, Method::KeyboardInteractive, &[BOB_PASSWORD]);
    assert_ne!(code, 0);
    assert_ne!(sshd.ssh_key_as(BOB), 0);
    let (code, out) = sshd.ssh_typing(ALICE, Method::Password, &[ALICE_PASSWORD]);
    assert_eq!(code, 0, "{out}");
}

fn refusal_summary(verdicts: &[Value]) {
    let kbd = "keyboard-interactive/pam";
    let mut expected = vec![
        tuple("failure", "password", true),
        tuple("failure", kbd, true),
        tuple("success", "password", false),
    ];
    expected.sort();
    assert_eq!(summary(verdicts), expected);
    for v in verdicts.iter().filter(|v| v["outcome"] == "failure") {
        assert_eq!(v["user"], BOB);
        assert_eq!(v["user_mismatch"], false);
        let lines = v["journal"]["lines"].as_array().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.contains("not allowed because"))),
            "{v:#}"
        );
    }
}

#[test]
fn allow_users_refusals_at_info_are_confirmed() {
    if !privileged() {
        return;
    }
    let allow = format!("AllowUsers {ALICE}");
    let (_, verdicts) = sshd_tries_and_verdicts(&options("INFO", true, &[&allow]), refused_bob_tries);
    refusal_summary(&verdicts);
}

#[test]
fn deny_users_refusals_at_verbose_are_confirmed() {
    if !privileged() {
        return;
    }
    let deny = format!("DenyUsers {BOB}");
    let (_, verdicts) = sshd_tries_and_verdicts(&options("VERBOSE", true, &[&deny]), refused_bob_tries);
    refusal_summary(&verdicts);
}

/// root under `PermitRootLogin no` (and Debian's default `prohibit-password`):
/// sshd hands PAM a false password whatever root typed, so the kernel sees a
/// failure, and sshd logs it as one (`Failed password`, or at INFO with
/// keyboard-interactive only `error: PAM: Authentication failure`); root's key is
/// refused before any PAM call (`ROOT LOGIN REFUSED`): no attempt, no verdict.
fn root_tries(sshd: &Sshd) {
    let (code, _) = sshd.ssh_typing("root", Method::Password, &["any-password-1"]);
    assert_ne!(code, 0);
    let (code, _) = sshd.ssh_typing("root", Method::KeyboardInteractive, &["any-password-2"]);
    assert_ne!(code, 0);
    let (code, out) = sshd.ssh_typing(ALICE, Method::Password, &[ALICE_PASSWORD]);
    assert_eq!(code, 0, "{out}");
}

fn root_summary(verdicts: &[Value]) {
    let mut expected = vec![
        tuple("failure", "password", false),
        tuple("failure", "keyboard-interactive/pam", false),
        tuple("success", "password", false),
    ];
    expected.sort();
    assert_eq!(summary(verdicts), expected);
    let users: Vec<_> = verdicts
        .iter()
        .filter(|v| v["outcome"] == "failure")
        .map(|v| v["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec!["root", "root"]);
}

#[test]
fn root_refused_by_permit_root_login_is_confirmed_at_info() {
    if !privileged() {
        return;
    }
    let (_, verdicts) = sshd_tries_and_verdicts(&options("INFO", true, &["PermitRootLogin no"]), root_tries);
    root_summary(&verdicts);
}

#[test]
fn root_refused_by_prohibit_password_is_confirmed_at_verbose() {
    if !privileged() {
        return;
    }
    let (_, verdicts) = sshd_tries_and_verdicts(
        &options("VERBOSE", true, &["PermitRootLogin prohibit-password"]),
        root_tries,
    );
    root_summary(&verdicts);
}

/// `/etc/pam.d/sshd` with `pam_faillock` around the password check, restored on drop.
struct Faillock {
    original: String,
    _tally: TempDir,
}

const PAM_SSHD: &str = "/etc/pam.d/sshd";

impl Faillock {
    fn install(deny: u32) -> Faillock {
        let original = std::fs::read_to_string(PAM_SSHD).expect("read /etc/pam.d/sshd");
        assert!(original.contains("@include common-auth\n"), "{original}");
        let tally = TempDir::new("faillock");
        let dir = tally.0.display();
        let options = format!("deny={deny} unlock_time=600 dir={dir}");
        let with = original.replacen(
            "@include common-auth\n",
            &format!(
                "auth required pam_faillock.so preauth {options}\n@include common-auth\n\
                 auth [default=die] pam_faillock.so authfail {options}\n"
            ),
            1,
        );
        std::fs::write(PAM_SSHD, with).expect("write /etc/pam.d/sshd");
        Faillock {
            original,
            _tally: tally,
        }
    }
}

impl Drop for Faillock {
    fn drop(&mut self) {
        std::fs::write(PAM_SSHD, &self.original).expect("restore /etc/pam.d/sshd");
    }
}

/// An account `pam_faillock` locks: at INFO with keyboard-interactive, every wrong
/// answer is `error: PAM: Authentication failure`, and the right password on the
/// locked account `error: PAM: Permission denied`: each kernel failure is
/// confirmed, none is a false `kernel_only`.
#[test]
fn a_faillock_locked_account_at_info_is_confirmed_try_by_try() {
    if !privileged() {
        return;
    }
    let _faillock = Faillock::install(2);
    let (attempts, verdicts) = sshd_tries_and_verdicts(&options("INFO", true, &[]), |sshd| {
        for answer in ["wrong-1", "wrong-2", "wrong-3", ALICE_PASSWORD] {
            let (code, _) = sshd.ssh_typing(ALICE, Method::KeyboardInteractive, &[answer]);
            assert_ne!(code, 0, "the account is locked after two failures");
        }
    });
    assert_eq!(attempts.len(), 4);
    let kbd = "keyboard-interactive/pam";
    assert_eq!(summary(&verdicts), vec![tuple("failure", kbd, false); 4]);
    let last = verdicts.last().unwrap();
    let lines = last["journal"]["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("PAM: Permission denied"))),
        "{last:#}"
    );
}
