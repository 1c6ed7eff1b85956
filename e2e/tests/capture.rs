//! Kernel capture, end to end: real sshd/su/sudo logins seen by the real agent.
//! Run by `cargo xtask test` as root, one test at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use watchtower_e2e::{
    ALICE, ALICE_PASSWORD, Agent, BOB, BOB_PASSWORD, Sshd, TcpTarget, TempDir, of_kind, privileged,
    session_of, ssh_login, uid_of,
};

#[test]
fn password_login_runs_id_and_connects() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let target = TcpTarget::start();
    let agent = Agent::start(&[]);
    let began = Instant::now();
    let (code, output) = sshd.ssh_password(
        ALICE,
        ALICE_PASSWORD,
        &format!("id; echo hello > /dev/tcp/127.0.0.1/{}", target.port),
    );
    let elapsed = began.elapsed();
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    assert!(output.contains(&format!("({ALICE})")), "id output: {output}");
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let alice = uid_of(ALICE);

    let (login, start) = ssh_login(&events, ALICE);
    assert_eq!(login["remote_host"], "127.0.0.1");
    assert_eq!(login["tty"], "ssh");
    assert_eq!(login["pam_code"], 0);
    assert_eq!(login["pam_code_name"], "PAM_SUCCESS");
    assert_eq!(
        login["authenticate_code"], 0,
        "password logins go through pam_authenticate"
    );
    assert_eq!(login["account_code"], 0);
    assert_eq!(login["user_known"], true);
    assert_eq!(login["from_session"], Value::Null);
    assert_eq!(login["process"]["comm"], "sshd");

    let session = session_of(start).to_string();
    assert_eq!(session.len(), 16);
    assert_eq!(start["remote_host"], "127.0.0.1");
    assert_eq!(start["parent_session"], Value::Null);
    assert_eq!(start["loginuid"], alice, "pam_loginuid set the login uid");
    assert_eq!(
        start["process"]["pid"], login["process"]["pid"],
        "the monitor opens the session"
    );

    let ids: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/id")
        .collect();
    assert_eq!(ids.len(), 1, "{ids:#?}");
    let id = ids[0];
    assert_eq!(session_of(id), session);
    assert_eq!(id["session_user"], ALICE);
    assert_eq!(id["argv"], serde_json::json!(["id"]));
    assert_eq!(id["result"], 0);
    assert_eq!(id["process"]["uid"], alice);

    let connects: Vec<_> = of_kind(&events, "connect")
        .into_iter()
        .filter(|e| e["family"] == "inet" && e["port"] == target.port)
        .collect();
    assert_eq!(connects.len(), 1, "{connects:#?}");
    assert_eq!(connects[0]["address"], "127.0.0.1");
    assert_eq!(connects[0]["result"], 0);
    assert_eq!(session_of(connects[0]), session);
    assert_eq!(connects[0]["process"]["uid"], alice);
    assert_eq!(target.accepted(), 1);

    let ends: Vec<_> = of_kind(&events, "session_end")
        .into_iter()
        .filter(|e| session_of(e) == session)
        .collect();
    assert_eq!(ends.len(), 1);
    let end = ends[0];
    assert_eq!(end["reason"], "closed");
    assert_eq!(end["user"], ALICE);
    assert_eq!(end["remote_host"], "127.0.0.1");
    let duration = end["duration_ns"].as_u64().unwrap();
    assert!(
        duration > 0 && u128::from(duration) < elapsed.as_nanos(),
        "{duration} ns vs {elapsed:?}"
    );
    assert!(end["execs"].as_u64().unwrap() >= 2, "bash and id: {end}");
    assert!(end["connects"].as_u64().unwrap() >= 1);

    // Every event is numbered without gaps or repeats, as (host, boot, seq).
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        events
            .iter()
            .all(|e| e["host_id"] == "e2e-host" && e["boot_id"] == events[0]["boot_id"])
    );
}

/// The file libpam.so.0 is on this machine (what the dynamic linker loads).
fn libpam_file() -> std::path::PathBuf {
    let out = std::process::Command::new("/sbin/ldconfig")
        .arg("-p")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("libpam.so.0 ") && l.contains("x86-64"))
        .unwrap_or_else(|| panic!("no libpam.so.0 in ldconfig -p:\n{text}"));
    let path = line.rsplit("=> ").next().unwrap().trim();
    std::fs::canonicalize(path).unwrap()
}

#[test]
fn a_login_after_libpam_is_replaced_on_disk_is_seen() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    // What a security update does: a new file under the same name (here with the
    // same contents, so nothing else on the machine changes).
    let libpam = libpam_file();
    let fresh = libpam.with_extension("wt-e2e-new");
    std::fs::copy(&libpam, &fresh).unwrap();
    std::fs::rename(&fresh, &libpam).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "id");
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let (login, start) = ssh_login(&events, ALICE);
    assert_eq!(login["remote_host"], "127.0.0.1");
    let ids: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/id")
        .collect();
    assert_eq!(ids.len(), 1, "{ids:#?}");
    assert_eq!(session_of(ids[0]), session_of(start));
}

#[test]
fn wrong_password_and_invalid_user_are_failed_attempts() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let (code, _) = sshd.ssh_password(ALICE, "not-her-password", "id");
    assert_ne!(code, 0);
    let (code, _) = sshd.ssh_password("wt_nosuchuser", "whatever", "id");
    assert_ne!(code, 0);
    agent.wait_for("the invalid user's attempt", |e| {
        e["kind"] == "login_attempt" && e["user"] == "wt_nosuchuser"
    });
    let events = agent.stop();

    let attempts = of_kind(&events, "login_attempt");
    assert_eq!(
        attempts.len(),
        2,
        "one attempt each (sshpass gives up after one): {attempts:#?}"
    );
    let wrong = attempts[0];
    assert_eq!(wrong["user"], ALICE);
    assert_eq!(wrong["service"], "sshd");
    assert_eq!(wrong["outcome"], "failure");
    assert_eq!(wrong["failed_step"], "authenticate");
    assert_eq!(wrong["pam_code_name"], "PAM_AUTH_ERR");
    assert_eq!(wrong["remote_host"], "127.0.0.1");
    assert_eq!(wrong["user_known"], true);

    let invalid = attempts[1];
    assert_eq!(invalid["user"], "wt_nosuchuser");
    assert_eq!(invalid["outcome"], "failure");
    assert_eq!(invalid["failed_step"], "authenticate");
    assert_eq!(invalid["remote_host"], "127.0.0.1");
    assert_eq!(
        invalid["user_known"], false,
        "the agent flags users this host does not know"
    );
    assert!(
        of_kind(&events, "session_start").is_empty(),
        "no session for failed logins"
    );
}

#[test]
fn su_inside_ssh_is_a_child_session() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let output = sshd.ssh_key_tty(&format!("su -c 'id -un' {BOB}"), &[("Password:", BOB_PASSWORD)]);
    assert!(output.contains(BOB), "su ran id as bob: {output:?}");
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd"
    });
    let events = agent.stop();

    let (login, ssh) = ssh_login(&events, ALICE);
    assert_eq!(
        login["authenticate_code"],
        Value::Null,
        "public-key logins skip pam_authenticate"
    );
    assert_eq!(login["account_code"], 0);
    let ssh_session = session_of(ssh);

    let su_logins: Vec<_> = of_kind(&events, "login_attempt")
        .into_iter()
        .filter(|e| e["service"] == "su")
        .collect();
    assert_eq!(su_logins.len(), 1);
    let su_login = su_logins[0];
    assert_eq!(su_login["user"], BOB);
    assert_eq!(su_login["remote_user"], ALICE);
    assert_eq!(su_login["outcome"], "success");
    assert_eq!(su_login["authenticate_code"], 0);
    assert_eq!(
        su_login["from_session"], ssh_session,
        "su was run from the ssh login"
    );
    assert!(su_login["tty"].as_str().unwrap().starts_with("/dev/pts/"));

    let su_starts: Vec<_> = of_kind(&events, "session_start")
        .into_iter()
        .filter(|e| e["service"] == "su")
        .collect();
    assert_eq!(su_starts.len(), 1);
    let su_session = session_of(su_starts[0]);
    assert_ne!(su_session, ssh_session);
    assert_eq!(
        su_starts[0]["parent_session"], ssh_session,
        "a child session of the ssh login"
    );
    assert_eq!(su_starts[0]["user"], BOB);
    assert_eq!(
        su_starts[0]["loginuid"],
        uid_of(ALICE),
        "the login uid stays alice's"
    );

    let ids: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/id")
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(session_of(ids[0]), su_session, "id ran inside su's session");
    assert_eq!(ids[0]["session_user"], BOB);
    assert_eq!(ids[0]["process"]["uid"], uid_of(BOB));
    assert_eq!(ids[0]["process"]["euid"], uid_of(BOB));
    assert_eq!(
        ids[0]["process"]["loginuid"],
        uid_of(ALICE),
        "the kernel's login uid names who logged in, whoever su made them"
    );
    let su_exec: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/su")
        .collect();
    assert_eq!(su_exec.len(), 1);
    assert_eq!(
        session_of(su_exec[0]),
        ssh_session,
        "su itself was run inside the ssh session"
    );
    assert_eq!(su_exec[0]["process"]["uid"], uid_of(ALICE));
    assert_eq!(
        su_exec[0]["process"]["euid"], 0,
        "the ids after the exec: setuid su runs as root"
    );
    assert_eq!(su_exec[0]["process"]["loginuid"], uid_of(ALICE));

    let ends = of_kind(&events, "session_end");
    let su_end = ends
        .iter()
        .find(|e| session_of(e) == su_session)
        .expect("su session ended");
    let ssh_end = ends
        .iter()
        .find(|e| session_of(e) == ssh_session)
        .expect("ssh session ended");
    assert_eq!(su_end["reason"], "closed");
    assert_eq!(su_end["parent_session"], ssh_session);
    assert!(
        su_end["seq"].as_u64() < ssh_end["seq"].as_u64(),
        "the child ends before its parent"
    );
    assert!(ssh_end["execs"].as_u64().unwrap() >= su_end["execs"].as_u64().unwrap() + 2);
}

#[test]
fn sudo_inside_ssh_is_a_child_session_of_root() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let output = sshd.ssh_key_tty("sudo -k; sudo id -un", &[("password for", ALICE_PASSWORD)]);
    assert!(output.contains("root"), "sudo ran id as root: {output:?}");
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd"
    });
    let events = agent.stop();

    let (_, ssh) = ssh_login(&events, ALICE);
    let ssh_session = session_of(ssh);
    let sudo_logins: Vec<_> = of_kind(&events, "login_attempt")
        .into_iter()
        .filter(|e| e["service"] == "sudo")
        .collect();
    assert_eq!(sudo_logins.len(), 1, "{sudo_logins:#?}");
    assert_eq!(
        sudo_logins[0]["user"], ALICE,
        "sudo authenticates the invoking user"
    );
    assert_eq!(sudo_logins[0]["outcome"], "success");
    assert_eq!(sudo_logins[0]["authenticate_code"], 0);
    assert_eq!(sudo_logins[0]["from_session"], ssh_session);

    let sudo_starts: Vec<_> = of_kind(&events, "session_start")
        .into_iter()
        .filter(|e| e["service"] == "sudo")
        .collect();
    assert_eq!(sudo_starts.len(), 1);
    assert_eq!(
        sudo_starts[0]["user"], "root",
        "the session is for the target user"
    );
    assert_eq!(sudo_starts[0]["remote_user"], ALICE);
    assert_eq!(sudo_starts[0]["parent_session"], ssh_session);
    let sudo_session = session_of(sudo_starts[0]);

    let ids: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/id")
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(session_of(ids[0]), sudo_session);
    assert_eq!(ids[0]["process"]["uid"], 0);
    assert_eq!(ids[0]["argv"], serde_json::json!(["id", "-un"]));
    let sudo_end = of_kind(&events, "session_end")
        .into_iter()
        .find(|e| session_of(e) == sudo_session)
        .unwrap();
    assert_eq!(sudo_end["reason"], "closed");
    assert_eq!(sudo_end["user"], "root");
}

#[test]
fn session_close_reports_its_duration() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let began = Instant::now();
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "sleep 1.5");
    let elapsed = began.elapsed();
    assert_eq!(code, 0, "{output}");
    let end = agent.wait_for("the session's end", |e| {
        e["kind"] == "session_end" && e["user"] == ALICE
    });
    let _ = agent.stop();
    let duration = end["duration_ns"].as_u64().unwrap();
    assert!(
        duration >= 1_500_000_000,
        "the session lasted the 1.5 s sleep: {duration}"
    );
    assert!(
        u128::from(duration) <= elapsed.as_nanos(),
        "{duration} ns vs {elapsed:?} end to end"
    );
    assert_eq!(end["reason"], "closed");
    assert_eq!(end["execs"], 2, "bash and sleep");
}

#[test]
fn burst_of_2000_execs_loses_nothing() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let (code, output) = sshd.ssh_password(
        ALICE,
        ALICE_PASSWORD,
        "for i in $(seq 2000); do /bin/true wt-burst $i; done",
    );
    assert_eq!(code, 0, "{output}");
    agent.wait_for("the session's end", |e| {
        e["kind"] == "session_end" && e["user"] == ALICE
    });
    let events = agent.stop();
    let burst: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["argv"][1] == "wt-burst")
        .collect();
    assert_eq!(burst.len(), 2000, "every exec of the burst arrived");
    let mut numbers: Vec<u64> = burst
        .iter()
        .map(|e| e["argv"][2].as_str().unwrap().parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 2000, "no duplicates");
    let health = events.last().unwrap();
    assert!(
        health["lost"].as_object().unwrap().values().all(|v| v == 0),
        "no loss: {health}"
    );
    assert_eq!(health["decode_errors"], 0);
    let end = of_kind(&events, "session_end")[0];
    assert_eq!(end["execs"], 2002, "bash, seq and 2000 × true");
}

#[test]
fn ring_buffer_overflow_is_counted_exactly() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    // One page of ring buffer holds a single exec record.
    let mut agent = Agent::start(&["--ring-buffer-bytes", "4096"]);
    agent.pause();
    let (code, output) = sshd.ssh_password(
        ALICE,
        ALICE_PASSWORD,
        "for i in {1..300}; do /bin/true wt-loss; done",
    );
    agent.resume();
    assert_eq!(code, 0, "{output}");
    let events = agent.stop();
    let health = events.last().unwrap();
    let lost_execs = health["lost"]["exec"].as_u64().unwrap();
    let received_execs = of_kind(&events, "exec").len() as u64;
    // The session ran exactly 301 programs: bash for the command, and 300 × true.
    assert_eq!(
        received_execs + lost_execs,
        301,
        "every exec is either delivered or counted as lost: {health}"
    );
    assert!(
        lost_execs >= 250,
        "a frozen reader with a one-page ring loses most: {health}"
    );
}

#[test]
fn scope_decides_what_outside_sessions_is_shipped() {
    if !privileged() {
        return;
    }
    let agent = Agent::start(&[]);
    watchtower_e2e::run("/bin/true", &["wt-outside-session"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let events = agent.stop();
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "exec" && e["argv"][1] == "wt-outside-session"),
        "activity outside login sessions is not shipped by default"
    );
    let health = events.last().unwrap();
    assert!(
        health["out_of_scope"]["exec"].as_u64().unwrap() >= 1,
        "but it is counted: {health}"
    );
    assert_eq!(health["scope"], "sessions");

    let agent = Agent::start(&["--scope", "all"]);
    watchtower_e2e::run("/bin/true", &["wt-everything"]);
    let exec = agent.wait_for("the exec outside any session", |e| {
        e["kind"] == "exec" && e["argv"][1] == "wt-everything"
    });
    let events = agent.stop();
    assert_eq!(exec["session"], Value::Null);
    assert_eq!(exec["filename"], "/bin/true");
    assert_eq!(
        exec["process"]["ppid"],
        std::process::id(),
        "the parent is this test process"
    );
    assert_eq!(events.last().unwrap()["scope"], "all");
}

#[test]
fn unprivileged_start_fails_naming_the_missing_capabilities() {
    if !privileged() {
        return;
    }
    let binary = watchtower_e2e::agent_binary();
    let state = watchtower_e2e::TempDir::new("agent-state");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
        .arg(&binary)
        .arg("--stdout")
        .arg("--state-dir")
        .arg(&state.0)
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"] {
        assert!(stderr.contains(cap), "the error names {cap}: {stderr}");
    }
    assert!(out.stdout.is_empty(), "no events without probes");
}

#[test]
fn sessions_begun_before_the_agent_are_adopted() {
    if !privileged() {
        return;
    }
    let sshd = std::sync::Arc::new(Sshd::start());
    let remote = sshd.clone();
    // The login happens before the agent runs; the command outlives the agent's start.
    let login = std::thread::spawn(move || remote.ssh_password(ALICE, ALICE_PASSWORD, "sleep 3; id -un"));
    let began = Instant::now();
    let sleeping = || {
        std::process::Command::new("pgrep")
            .args(["-x", "-u", ALICE, "sleep"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    while !sleeping() {
        assert!(
            began.elapsed() < watchtower_e2e::PATIENCE,
            "the ssh command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let agent = Agent::start(&[]);
    let (code, output) = login.join().unwrap();
    assert_eq!(code, 0, "{output}");
    let end = agent.wait_for("the adopted session's end", |e| {
        e["kind"] == "session_end" && e["user"] == ALICE
    });
    let events = agent.stop();

    assert!(
        of_kind(&events, "login_attempt").is_empty(),
        "the login itself happened before the agent"
    );
    let starts = of_kind(&events, "session_start");
    assert_eq!(starts.len(), 1, "{starts:#?}");
    let adopted = starts[0];
    assert_eq!(adopted["adopted"], true);
    assert_eq!(adopted["user"], ALICE);
    assert_eq!(adopted["loginuid"], uid_of(ALICE));
    assert_eq!(
        adopted["process"]["comm"], "sshd",
        "the root is sshd's per-login monitor"
    );
    let session = session_of(adopted);

    let ids: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/id")
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        session_of(ids[0]),
        session,
        "activity after the agent started is attributed"
    );
    assert_eq!(ids[0]["session_user"], ALICE);
    assert_eq!(session_of(&end), session);
    assert_eq!(
        end["reason"], "closed",
        "sshd's pam_close_session ends the adopted session"
    );
    assert_eq!(end["execs"], 1);
}

#[test]
fn agent_mounts_tracefs_when_it_is_missing() {
    if !privileged() {
        return;
    }
    let tracing = std::path::Path::new("/sys/kernel/tracing");
    if tracing.join("events").is_dir() {
        let out = std::process::Command::new("umount")
            .arg(tracing)
            .output()
            .expect("umount");
        assert!(
            out.status.success(),
            "could not unmount tracefs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !tracing.join("events").is_dir(),
        "tracefs is gone before the agent starts"
    );
    let debugfs_tracing = std::path::Path::new("/sys/kernel/debug/tracing/events");
    assert!(
        !debugfs_tracing.is_dir(),
        "no other tracefs mount to fall back on"
    );
    let agent = Agent::start(&[]);
    assert!(
        tracing.join("events/syscalls").is_dir(),
        "the agent mounted tracefs"
    );
    let _ = agent.stop();
}

/// The `start` health record of an agent's output.
fn start_record(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["kind"] == "agent_health" && e["reason"] == "start")
        .expect("a start record")
}

#[test]
fn an_agent_killed_during_a_login_misses_none_of_its_execs() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let state = Arc::new(TempDir::new("agent-state"));
    let go = TempDir::new("restart-go");
    std::fs::set_permissions(&go.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let signal = go.0.join("go");
    let command = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; for i in $(seq 3000); do /bin/true wt-restart $i; done",
        signal.display()
    );
    let first = Agent::start_with(&[], state.clone(), &[]);
    assert_eq!(start_record(&first.events())["capture_start"]["how"], "fresh");
    std::thread::scope(|scope| {
        let login = scope.spawn(|| sshd.ssh_password(ALICE, ALICE_PASSWORD, &command));
        let start = first.wait_for("alice's session", |e| {
            e["kind"] == "session_start" && e["service"] == "sshd" && e["user"] == ALICE
        });
        let session = session_of(&start).to_owned();
        // A crash just before the loop; the loop runs while no agent does, and the
        // next agent starts in the middle of it.
        let before = first.kill9();
        std::fs::write(&signal, b"").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let second = Agent::start_with(&[], state.clone(), &[]);
        let (code, output) = login.join().unwrap();
        assert_eq!(code, 0, "{output}");
        second.wait_for("alice's session end", |e| {
            e["kind"] == "session_end" && session_of(e) == session
        });
        let after = second.stop();

        assert_eq!(start_record(&after)["capture_start"]["how"], "resumed");
        let looped = |events: &[Value]| -> Vec<u64> {
            of_kind(events, "exec")
                .into_iter()
                .filter(|e| e["argv"][1] == "wt-restart")
                .map(|e| {
                    assert_eq!(session_of(e), session, "in alice's login: {e:#}");
                    assert_eq!(e["session_user"], ALICE, "{e:#}");
                    e["argv"][2].as_str().unwrap().parse().unwrap()
                })
                .collect()
        };
        assert!(looped(&before).is_empty(), "the loop began after the crash");
        let mut numbers = looped(&after);
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (1..=3000).collect::<Vec<u64>>(),
            "every exec of the loop, once"
        );
        assert!(
            of_kind(&after, "session_start").is_empty(),
            "the running login is followed on, not adopted anew"
        );
        let end = of_kind(&after, "session_end")
            .into_iter()
            .find(|e| session_of(e) == session)
            .unwrap();
        assert_eq!(
            (end["service"].as_str(), end["user"].as_str()),
            (Some("sshd"), Some(ALICE))
        );
        let health = after.last().unwrap();
        assert!(
            health["lost"].as_object().unwrap().values().all(|v| v == 0),
            "no loss: {health}"
        );
    });
}

#[test]
fn an_agent_stopped_on_purpose_leaves_a_gap_the_next_one_reports() {
    if !privileged() {
        return;
    }
    let state = Arc::new(TempDir::new("agent-state"));
    let first = Agent::start_with(&[], state.clone(), &[]);
    assert!(state.pin_dir().join("links").is_dir(), "the probes are pinned");
    let _ = first.stop();
    assert!(
        !state.pin_dir().join("links").exists(),
        "an agent stopped on purpose takes its probes with it"
    );
    std::thread::sleep(Duration::from_secs(1));
    let second = Agent::start_with(&[], state.clone(), &[]);
    let events = second.stop();
    let start = &start_record(&events)["capture_start"];
    assert_eq!(start["how"], "gap", "{start}");
    let from = start["gap_from_unix_ns"].as_u64().unwrap();
    let to = start["gap_to_unix_ns"].as_u64().unwrap();
    assert!(
        (1_000_000_000..30_000_000_000).contains(&(to - from)),
        "the gap spans the second between the agents: {start}"
    );
}
