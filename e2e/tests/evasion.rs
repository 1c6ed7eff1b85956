//! Ways an ordinary user might try to step around capture, end to end: each
//! test is the attack, run as alice inside a real ssh login with the real agent,
//! and checks that what she did is recorded in her login, exactly once.
//! Run by `cargo xtask test` as root, one test at a time.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;
use watchtower_e2e::{
    ALICE, ALICE_PASSWORD, Agent, BOB, BOB_PASSWORD, Sshd, TcpTarget, TempDir, of_kind, privileged,
    session_of, ssh_login, uid_of,
};

/// Run `e2e/scripts/<name>` with `args` as alice over ssh, from a copy she can
/// read wherever the checkout is; its output.
fn run_as_alice(sshd: &Sshd, name: &str, args: &str) -> String {
    let dir = TempDir::new("evasion");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = dir.0.join(name);
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name),
        &script,
    )
    .unwrap();
    let (code, output) = sshd.ssh_password(
        ALICE,
        ALICE_PASSWORD,
        &format!("python3 {} {args}", script.display()),
    );
    assert_eq!(code, 0, "{name} failed: {output}\n{}", sshd.log());
    output
}

/// The events of alice's ssh login once it has ended, and its session.
fn alices_login(agent: Agent) -> (Vec<Value>, String) {
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let session = session_of(ssh_login(&events, ALICE).1).to_owned();
    (events, session)
}

/// The connect events to `port`.
fn connects_to(events: &[Value], port: u16) -> Vec<&Value> {
    of_kind(events, "connect")
        .into_iter()
        .filter(|e| e["port"] == port)
        .collect()
}

/// A connect seen `via` a send or the socket hook (`None`: the connect system
/// call): alice's, to 127.0.0.1:`port`, in `session`.
fn assert_alices(connect: &Value, port: u16, via: Option<&str>, session: &str) {
    assert_eq!(connect["via"].as_str(), via, "{connect:#}");
    assert_eq!(connect["family"], "inet");
    assert_eq!(connect["address"], "127.0.0.1");
    assert_eq!(connect["port"], port);
    assert_eq!(session_of(connect), session, "in alice's login: {connect:#}");
    assert_eq!(connect["session_user"], ALICE);
    assert_eq!(connect["process"]["uid"], uid_of(ALICE));
    assert_eq!(connect["process"]["loginuid"], uid_of(ALICE));
}

#[test]
fn a_pam_session_an_ordinary_user_opens_for_someone_else_is_no_login() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    // alice's own PAM configuration permits anything: she "logs in" as bob and runs
    // id in the session she opened, hoping it is attributed to bob.
    let output = run_as_alice(&sshd, "pam_confdir_session.py", BOB);
    assert!(output.contains("own PAM session done"), "{output}");
    let (events, session) = alices_login(agent);
    let fake: Vec<_> = of_kind(&events, "session_start")
        .into_iter()
        .filter(|e| e["service"] == "wt-fake")
        .collect();
    assert!(
        fake.is_empty(),
        "no session for an unprivileged caller: {fake:#?}"
    );
    let attempts: Vec<_> = of_kind(&events, "login_attempt")
        .into_iter()
        .filter(|e| e["service"] == "wt-fake")
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["user"], BOB);
    assert_eq!(
        attempts[0]["process"]["euid"],
        uid_of(ALICE),
        "the attempt shows who made it"
    );
    assert_eq!(attempts[0]["from_session"], session, "made inside alice's login");
    let ids: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/usr/bin/id")
        .collect();
    assert_eq!(ids.len(), 1, "{ids:#?}");
    assert_eq!(session_of(ids[0]), session, "id stays in alice's login");
    assert_eq!(ids[0]["session_user"], ALICE);
}

#[test]
fn udp_datagrams_are_recorded_once_per_destination() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let receivers: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = receivers.iter().map(|r| r.local_addr().unwrap().port()).collect();
    let agent = Agent::start(&[]);
    // sendto twenty times to one port, once to another, and sendmsg to a third;
    // then a connected socket's send, which connect(2) already names.
    let script = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         [s.sendto(b'x', ('127.0.0.1', {a})) for _ in range(20)]; \
         s.sendto(b'y', ('127.0.0.1', {b})); \
         s.sendmsg([b'z'], [], 0, ('127.0.0.1', {c})); \
         c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('127.0.0.1', {c})); c.send(b'w')",
        a = ports[0],
        b = ports[1],
        c = ports[2]
    );
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, &format!("python3 -c \"{script}\""));
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    let (events, session) = alices_login(agent);
    let repeated = connects_to(&events, ports[0]);
    assert_eq!(repeated.len(), 1, "the first of twenty sends: {repeated:#?}");
    assert_alices(repeated[0], ports[0], Some("send"), &session);
    let once = connects_to(&events, ports[1]);
    assert_eq!(once.len(), 1, "{once:#?}");
    assert_alices(once[0], ports[1], Some("send"), &session);
    let third = connects_to(&events, ports[2]);
    assert_eq!(third.len(), 2, "sendmsg, then connect(2): {third:#?}");
    assert_alices(third[0], ports[2], Some("send"), &session);
    assert_eq!(
        third[1]["via"],
        Value::Null,
        "the connect system call: {:#}",
        third[1]
    );
    assert_eq!(third[1]["result"], 0);
    let mut buf = [0u8; 8];
    receivers[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let received = (0..20).filter(|_| receivers[0].recv(&mut buf).is_ok()).count();
    assert_eq!(received, 20, "the sends happened");
}

#[test]
fn a_tcp_fast_open_connect_is_recorded_in_its_login() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let target = TcpTarget::start();
    let agent = Agent::start(&[]);
    // sendto with MSG_FASTOPEN connects without connect(2).
    let script = format!(
        "import socket; s = socket.socket(); s.sendto(b'hi', socket.MSG_FASTOPEN, ('127.0.0.1', {}))",
        target.port
    );
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, &format!("python3 -c \"{script}\""));
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    let (events, session) = alices_login(agent);
    let connects = connects_to(&events, target.port);
    assert_eq!(connects.len(), 1, "{connects:#?}");
    assert_alices(connects[0], target.port, Some("send"), &session);
    assert_eq!(target.accepted(), 1);
}

#[test]
fn an_exec_from_a_thread_that_is_not_the_leader_is_recorded_in_its_login() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    // A threaded program whose second thread calls execve (the kernel makes that
    // thread the leader: its thread id becomes the process id).
    let script = "import os, threading; \
                  t = threading.Thread(target=lambda: os.execv('/bin/echo', ['echo', 'from-a-thread'])); \
                  t.start(); t.join()";
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, &format!("python3 -c \"{script}\""));
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    assert!(output.contains("from-a-thread"), "{output}");
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let (_, start) = ssh_login(&events, ALICE);
    let echoes: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/bin/echo")
        .collect();
    assert_eq!(echoes.len(), 1, "{echoes:#?}");
    assert_eq!(echoes[0]["argv"], serde_json::json!(["echo", "from-a-thread"]));
    assert_eq!(echoes[0]["result"], 0);
    assert_eq!(session_of(echoes[0]), session_of(start));
    assert_eq!(echoes[0]["session_user"], ALICE);
}

#[test]
fn a_program_run_from_a_memfd_is_recorded_with_the_kernels_file_name() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    // fexecve of an anonymous file: the caller passes an empty path, the kernel
    // runs /dev/fd/N.
    let script = "import os; fd = os.memfd_create('payload', 0); \
                  os.write(fd, open('/bin/echo', 'rb').read()); \
                  os.execve(fd, ['echo', 'from-a-memfd'], {'LD_PRELOAD': '/tmp/wt-none.so'})";
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, &format!("python3 -c \"{script}\""));
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    assert!(output.contains("from-a-memfd"), "{output}");
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let (_, start) = ssh_login(&events, ALICE);
    let runs: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["argv"] == serde_json::json!(["echo", "from-a-memfd"]))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let filename = runs[0]["filename"].as_str().unwrap();
    assert!(filename.starts_with("/dev/fd/"), "{filename:?}");
    assert_eq!(runs[0]["result"], 0);
    // What the caller set to change what runs, read from the new image.
    assert_eq!(
        runs[0]["env"],
        serde_json::json!(["LD_PRELOAD=/tmp/wt-none.so"]),
        "{:#}",
        runs[0]
    );
    assert_eq!(session_of(runs[0]), session_of(start));
}

#[test]
fn a_32_bit_execve_from_a_64_bit_process_is_recorded_in_its_login() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let output = run_as_alice(&sshd, "compat_execve.py", "");
    assert!(!output.contains("returned"), "the compat execve failed: {output}");
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let (_, start) = ssh_login(&events, ALICE);
    let sleeps: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "/bin/sleep")
        .collect();
    assert_eq!(sleeps.len(), 1, "{sleeps:#?}");
    assert_eq!(sleeps[0]["result"], 0);
    assert_eq!(
        sleeps[0]["argv"],
        serde_json::json!(["sleep", "2"]),
        "{:#}",
        sleeps[0]
    );
    assert_eq!(session_of(sleeps[0]), session_of(start));
    assert_eq!(sleeps[0]["session_user"], ALICE);
}

#[test]
fn a_connect_to_an_ipv4_mapped_address_is_stored_as_the_ipv4_peer() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let target = TcpTarget::start();
    let agent = Agent::start(&[]);
    // An IPv6 socket reaching the IPv4 listener through ::ffff:127.0.0.1.
    let script = format!(
        "import socket; s = socket.socket(socket.AF_INET6); s.connect(('::ffff:127.0.0.1', {}))",
        target.port
    );
    let (code, output) = sshd.ssh_password(ALICE, ALICE_PASSWORD, &format!("python3 -c \"{script}\""));
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    agent.wait_for("the ssh session's end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == ALICE
    });
    let events = agent.stop();
    let (_, start) = ssh_login(&events, ALICE);
    let connects: Vec<_> = of_kind(&events, "connect")
        .into_iter()
        .filter(|e| e["port"] == target.port)
        .collect();
    assert_eq!(connects.len(), 1, "{connects:#?}");
    assert_eq!(connects[0]["family"], "inet");
    assert_eq!(connects[0]["address"], "127.0.0.1");
    assert_eq!(session_of(connects[0]), session_of(start));
    assert_eq!(target.accepted(), 1);
}

#[test]
fn a_connect_flood_cannot_push_another_users_login_out() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let closed = watchtower_e2e::free_port("127.0.0.1");
    // Four pages of exec and connect ring buffer, and a reader that does not read:
    // alice's flood fills it many times over before bob logs in.
    let mut agent = Agent::start(&["--ring-buffer-bytes", "16384"]);
    agent.pause();
    let (code, output) = sshd.ssh_password(
        ALICE,
        ALICE_PASSWORD,
        &format!(
            "python3 -c \"import socket; [socket.socket().connect_ex(('127.0.0.1', {closed})) \
             for _ in range(5000)]\""
        ),
    );
    assert_eq!(code, 0, "{output}");
    let (code, output) = sshd.ssh_password(BOB, BOB_PASSWORD, "true");
    assert_eq!(code, 0, "{output}");
    agent.resume();
    agent.wait_for("bob's session end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd" && e["user"] == BOB
    });
    let events = agent.stop();
    let health = events.last().unwrap();
    let lost_connects = health["lost"]["connect"].as_u64().unwrap();
    assert!(
        lost_connects >= 4000,
        "the flood overflowed the exec and connect ring: {health}"
    );
    assert_eq!(health["lost"]["pam_start"], 0, "{health}");
    assert_eq!(health["lost"]["pam_call"], 0, "{health}");
    // bob's login is whole: its attempt, its session and the session's end.
    let (attempt, start) = ssh_login(&events, BOB);
    assert_eq!(attempt["remote_host"], "127.0.0.1", "{attempt:#}");
    let session = session_of(start);
    let ends: Vec<_> = of_kind(&events, "session_end")
        .into_iter()
        .filter(|e| session_of(e) == session)
        .collect();
    assert_eq!(ends.len(), 1, "bob's session ended once: {ends:#?}");
    // alice's own login is whole as well, though most of her connects are counted, not stored.
    let (_, alices) = ssh_login(&events, ALICE);
    let alices = session_of(alices);
    let stored = connects_to(&events, closed);
    assert!(
        stored.iter().all(|c| session_of(c) == alices),
        "every stored connect of the flood is alice's"
    );
    // (The lost count may also hold a connect of sshd's, to the syslog socket, made
    // inside a login while the ring was full.)
    assert!(
        stored.len() as u64 + lost_connects >= 5000,
        "each connect of the flood stored or counted as lost: {} stored, {health}",
        stored.len()
    );
}

/// A connect that makes no connect system call (`io_uring`), by a 32-bit
/// `socketcall`, or with its address in a page not yet resident: run by
/// `script` as alice to a listener; recorded once, in her login.
fn a_connect_by(script: &str, printed: &str, via: Option<&str>) {
    let sshd = Sshd::start();
    let target = TcpTarget::start();
    let agent = Agent::start(&[]);
    let output = run_as_alice(&sshd, script, &target.port.to_string());
    assert!(output.contains(&format!("{printed} 0")), "{script}: {output}");
    let (events, session) = alices_login(agent);
    let connects = connects_to(&events, target.port);
    assert_eq!(connects.len(), 1, "{connects:#?}");
    assert_alices(connects[0], target.port, via, &session);
    if via.is_none() {
        assert_eq!(connects[0]["result"], 0, "{:#}", connects[0]);
    }
    assert_eq!(target.accepted(), 1);
}

#[test]
fn a_connect_through_io_uring_is_recorded_in_its_login() {
    if !privileged() {
        return;
    }
    a_connect_by("io_uring_connect.py", "io_uring connect", Some("kernel"));
}

#[test]
fn a_32_bit_socketcall_connect_is_recorded_in_its_login() {
    if !privileged() {
        return;
    }
    a_connect_by("compat_connect.py", "socketcall connect", Some("kernel"));
}

#[test]
fn a_connect_whose_address_is_not_resident_is_recorded_with_its_result() {
    if !privileged() {
        return;
    }
    a_connect_by("unresident_connect.py", "unresident connect", None);
}

#[test]
fn udp_datagrams_sent_by_sendmmsg_are_recorded_once() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let agent = Agent::start(&[]);
    let output = run_as_alice(&sshd, "sendmmsg_udp.py", &port.to_string());
    assert!(output.contains("sendmmsg sent 2"), "{output}");
    let (events, session) = alices_login(agent);
    let sends = connects_to(&events, port);
    assert_eq!(sends.len(), 1, "two datagrams, one destination: {sends:#?}");
    assert_alices(sends[0], port, Some("send"), &session);
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    let received = (0..2).filter(|_| receiver.recv(&mut buf).is_ok()).count();
    assert_eq!(received, 2, "the sends happened");
}

/// The environment variables that change what a program runs are recorded with
/// its exec; hiding one behind more strings than the probe looks through is not
/// silent: the exec says its environment was cut.
#[test]
fn the_environment_that_changes_what_runs_is_recorded_and_hiding_it_is_flagged() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let (code, output) = sshd.ssh_password(
        ALICE,
        ALICE_PASSWORD,
        "env LD_PRELOAD=/tmp/wt-none.so BASH_ENV=/tmp/wt-rc /bin/true; \
         env $(seq -f 'WT_PAD%g=x' 1 300) LD_AUDIT=/tmp/wt-audit.so /bin/echo padded",
    );
    assert_eq!(code, 0, "ssh failed: {output}\n{}", sshd.log());
    let (events, session) = alices_login(agent);
    let exec_of = |filename: &str| -> Vec<Value> {
        of_kind(&events, "exec")
            .into_iter()
            .filter(|e| e["filename"] == filename)
            .cloned()
            .collect()
    };
    let trues = exec_of("/bin/true");
    assert_eq!(trues.len(), 1, "{trues:#?}");
    assert_eq!(session_of(&trues[0]), session);
    assert_eq!(
        trues[0]["env"],
        serde_json::json!(["LD_PRELOAD=/tmp/wt-none.so", "BASH_ENV=/tmp/wt-rc"]),
        "{:#}",
        trues[0]
    );
    assert_eq!(trues[0].get("env_cut"), None, "{:#}", trues[0]);
    let echoes = exec_of("/bin/echo");
    assert_eq!(echoes.len(), 1, "{echoes:#?}");
    assert_eq!(echoes[0]["env_cut"], true, "{:#}", echoes[0]);
    assert_eq!(echoes[0].get("env"), None, "beyond the scan: {:#}", echoes[0]);
}

#[test]
fn a_failed_exec_whose_file_name_is_not_resident_is_recorded_with_its_name() {
    if !privileged() {
        return;
    }
    let sshd = Sshd::start();
    let agent = Agent::start(&[]);
    let output = run_as_alice(&sshd, "unresident_exec.py", "");
    assert!(output.contains("unresident exec -2"), "{output}");
    let (events, session) = alices_login(agent);
    let tries: Vec<_> = of_kind(&events, "exec")
        .into_iter()
        .filter(|e| e["argv"] == serde_json::json!(["wt-unresident"]))
        .collect();
    assert_eq!(tries.len(), 1, "{tries:#?}");
    assert_eq!(
        tries[0]["filename"], "/nonexistent/wt-unresident-exec",
        "{:#}",
        tries[0]
    );
    assert_eq!(tries[0]["result"], -2);
    assert_eq!(tries[0]["error"], "ENOENT");
    assert_eq!(session_of(tries[0]), session);
}
