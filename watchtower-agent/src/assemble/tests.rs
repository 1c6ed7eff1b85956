use watchtower_common::PamFunction;

use super::*;
use crate::decode::{ConnectVia, PamItem};
use crate::event::{Outcome, PamStep, SessionEndReason};

struct FixedInfo;
impl ProcessInfo for FixedInfo {
    fn loginuid(&self, _: u32) -> Option<u32> {
        Some(1001)
    }
    fn audit_session_id(&self, _: u32) -> Option<u32> {
        Some(7)
    }
    fn cmdline(&self, _: u32) -> Option<Vec<String>> {
        Some(vec!["bash".into(), "-c".into(), "id; true".into()])
    }
    fn user_exists(&self, name: &str) -> Option<bool> {
        Some(name != "mallory")
    }
    fn user_name(&self, uid: u32) -> Option<String> {
        (uid == 1001).then(|| "alice".to_string())
    }
    fn comm(&self, _: u32) -> Option<String> {
        Some("sshd".into())
    }
}

fn task(tgid: u32, ppid: u32, ktime_ns: u64, session_key: u64, comm: &str) -> Task {
    Task {
        ktime_ns,
        cpu: 0,
        session_key,
        tgid,
        tid: tgid,
        ppid,
        uid: 0,
        gid: 0,
        euid: Some(0),
        loginuid: None,
        audit_session_id: None,
        comm: comm.into(),
    }
}

fn start(t: Task, handle: u64, service: &str, user: &str) -> KernelRecord {
    KernelRecord::PamStart {
        task: t,
        handle,
        retval: 0,
        service: service.into(),
        user: user.into(),
    }
}

fn item(t: Task, handle: u64, item: PamItem, value: &str) -> KernelRecord {
    KernelRecord::PamItem {
        task: t,
        handle,
        item,
        value: value.into(),
    }
}

fn call(t: Task, handle: u64, function: PamFunction, retval: i32) -> KernelRecord {
    KernelRecord::PamCall {
        task: t,
        handle,
        function,
        retval,
        session_key: 0,
        parent_session_key: 0,
    }
}

fn opened(t: Task, handle: u64, key: u64, parent: u64) -> KernelRecord {
    KernelRecord::PamCall {
        task: t,
        handle,
        function: PamFunction::OpenSession,
        retval: 0,
        session_key: key,
        parent_session_key: parent,
    }
}

fn run(records: Vec<KernelRecord>) -> Vec<EventBody> {
    let mut assembler = Assembler::new(FixedInfo);
    let mut out = Vec::new();
    for r in records {
        assembler.push(r, &mut out);
    }
    out.into_iter().map(|(_, e)| e).collect()
}

/// The sequence an OpenSSH 9.2 monitor makes for a password login that runs one command.
#[test]
fn ssh_password_login_session_and_close() {
    let sshd = |t| task(500, 400, t, 0, "sshd");
    let in_session = |t| task(500, 400, t, 0xa00, "sshd");
    let events = run(vec![
        start(sshd(1), 0x55, "sshd", "alice"),
        item(sshd(2), 0x55, PamItem::RemoteHost, "127.0.0.1"),
        item(sshd(3), 0x55, PamItem::Tty, "ssh"),
        call(sshd(4), 0x55, PamFunction::Authenticate, 0),
        call(sshd(5), 0x55, PamFunction::AcctMgmt, 0),
        call(sshd(6), 0x55, PamFunction::Setcred, 0),
        opened(in_session(7), 0x55, 0xa00, 0),
        KernelRecord::Fork {
            task: in_session(8),
            child_tid: 501,
        },
        KernelRecord::Exec {
            task: task(502, 501, 9, 0xa00, "bash"),
            retval: 0,
            filename: "/usr/bin/id".into(),
            argv: vec!["id".into()],
            truncated: false,
            partial: false,
            env: Vec::new(),
            env_cut: false,
        },
        KernelRecord::Connect {
            task: task(502, 501, 10, 0xa00, "bash"),
            retval: -111,
            fd: 3,
            destination: Destination::Inet("127.0.0.1:9".parse().unwrap()),
            via: ConnectVia::Syscall,
        },
        KernelRecord::PamCall {
            task: in_session(1_000_000_010),
            handle: 0x55,
            function: PamFunction::CloseSession,
            retval: 0,
            session_key: 0xa00,
            parent_session_key: 0,
        },
        call(sshd(1_000_000_011), 0x55, PamFunction::End, 0),
    ]);
    assert_eq!(events.len(), 5, "{events:#?}");
    let EventBody::LoginAttempt(login) = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(login.service, "sshd");
    assert_eq!(login.user, "alice");
    assert_eq!(login.remote_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(login.tty.as_deref(), Some("ssh"));
    assert_eq!(login.outcome, Outcome::Success);
    assert_eq!((login.authenticate_code, login.account_code), (Some(0), Some(0)));
    let EventBody::SessionStart(s) = &events[1] else {
        panic!()
    };
    assert_eq!(
        (s.session, s.parent_session, s.loginuid),
        (SessionId(0xa00), None, Some(1001))
    );
    let EventBody::Exec(e) = &events[2] else { panic!() };
    assert_eq!(
        (e.session, e.session_user.as_deref()),
        (Some(SessionId(0xa00)), Some("alice"))
    );
    let EventBody::Connect(c) = &events[3] else {
        panic!()
    };
    assert_eq!(
        (c.address.as_str(), c.port, c.error),
        ("127.0.0.1", Some(9), Some("ECONNREFUSED"))
    );
    let EventBody::SessionEnd(end) = &events[4] else {
        panic!()
    };
    assert_eq!(end.reason, SessionEndReason::Closed);
    assert_eq!(end.duration_ns, 1_000_000_003);
    assert_eq!((end.execs, end.connects, end.processes), (1, 1, 1));
    assert_eq!(end.remote_host.as_deref(), Some("127.0.0.1"));
}

#[test]
fn each_failed_authentication_is_an_attempt() {
    let sshd = |t| task(600, 400, t, 0, "sshd");
    let events = run(vec![
        start(sshd(1), 0x66, "sshd", "alice"),
        item(sshd(2), 0x66, PamItem::RemoteHost, "10.0.0.9"),
        call(sshd(3), 0x66, PamFunction::Authenticate, 7),
        call(sshd(4), 0x66, PamFunction::Authenticate, 7),
        call(sshd(5), 0x66, PamFunction::End, 7),
    ]);
    assert_eq!(events.len(), 2);
    for e in &events {
        let EventBody::LoginAttempt(a) = e else { panic!() };
        assert_eq!(a.outcome, Outcome::Failure);
        assert_eq!(a.failed_step, Some(PamStep::Authenticate));
        assert_eq!((a.pam_code, a.pam_code_name), (7, "PAM_AUTH_ERR"));
        assert_eq!(a.remote_host.as_deref(), Some("10.0.0.9"));
    }
}

#[test]
fn unreadable_arguments_are_repaired_from_proc_only_when_consistent() {
    let exec = |argv: Vec<&str>, partial| KernelRecord::Exec {
        task: task(1, 0, 1, 0, "sshd"),
        retval: 0,
        filename: "/bin/bash".into(),
        argv: argv.into_iter().map(String::from).collect(),
        truncated: false,
        partial,
        env: Vec::new(),
        env_cut: false,
    };
    let argv_of = |e: &EventBody| match e {
        EventBody::Exec(x) => (x.argv.clone(), x.argv_incomplete),
        other => panic!("{other:?}"),
    };
    // sshd's "-c" sits in a page the probe could not read.
    let repaired = run(vec![exec(vec!["bash", "", "id; true"], true)]);
    assert_eq!(
        argv_of(&repaired[0]),
        (vec!["bash".into(), "-c".into(), "id; true".into()], false)
    );
    // /proc shows another program by now: keep the kernel's copy, flagged.
    let kept = run(vec![exec(vec!["zsh", "", "x"], true)]);
    assert_eq!(
        argv_of(&kept[0]),
        (vec!["zsh".into(), String::new(), "x".into()], true)
    );
}

#[test]
fn adopted_session_is_attributed_and_ended_only_by_its_root() {
    let mut assembler = Assembler::new(FixedInfo);
    let mut out = Vec::new();
    let key = crate::adopt::ADOPTED_KEY_BIT | 7;
    let adopted = crate::adopt::AdoptedSession {
        key,
        audit_session_id: 7,
        loginuid: Some(1001),
        root: Some(500),
        members: vec![500, 501, 502, 503],
    };
    assembler.adopt(&adopted, 100, &mut out);
    let close = |tgid, t| KernelRecord::PamCall {
        task: task(tgid, 1, t, key, "x"),
        handle: 0x5,
        function: PamFunction::CloseSession,
        retval: 0,
        session_key: key,
        parent_session_key: 0,
    };
    assembler.push(
        KernelRecord::Exec {
            task: task(502, 501, 150, key, "bash"),
            retval: 0,
            filename: "/usr/bin/id".into(),
            argv: vec!["id".into()],
            truncated: false,
            partial: false,
            env: Vec::new(),
            env_cut: false,
        },
        &mut out,
    );
    // A su started before the agent closes its own session: not this one.
    assembler.push(close(503, 180), &mut out);
    assert_eq!(assembler.open_sessions(), 1);
    assembler.push(close(500, 200), &mut out);
    let events: Vec<_> = out.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events.len(), 3, "{events:#?}");
    let EventBody::SessionStart(s) = &events[0] else {
        panic!()
    };
    assert!(s.adopted);
    assert_eq!(
        (s.user.as_str(), s.audit_session_id, s.process.pid),
        ("alice", Some(7), 500)
    );
    let EventBody::Exec(e) = &events[1] else { panic!() };
    assert_eq!(e.session_user.as_deref(), Some("alice"));
    let EventBody::SessionEnd(end) = &events[2] else {
        panic!()
    };
    assert_eq!(
        (end.session, end.duration_ns, end.execs),
        (SessionId(key), 100, 1)
    );
}

#[test]
fn unknown_users_are_flagged() {
    let p = |t| task(1200, 1, t, 0, "sshd");
    let events = run(vec![
        start(p(1), 1, "sshd", "mallory"),
        call(p(2), 1, PamFunction::Authenticate, 7),
    ]);
    let EventBody::LoginAttempt(a) = &events[0] else {
        panic!()
    };
    assert_eq!(a.user_known, Some(false));
}

#[test]
fn account_failure_and_password_change() {
    let p = |t| task(700, 1, t, 0, "login");
    let denied = run(vec![
        start(p(1), 1, "login", "bob"),
        call(p(2), 1, PamFunction::Authenticate, 0),
        call(p(3), 1, PamFunction::AcctMgmt, 13),
    ]);
    let EventBody::LoginAttempt(a) = &denied[0] else {
        panic!()
    };
    assert_eq!(
        (a.outcome, a.failed_step, a.pam_code_name),
        (Outcome::Failure, Some(PamStep::Account), "PAM_ACCT_EXPIRED")
    );

    let changed = run(vec![
        start(p(1), 1, "login", "bob"),
        call(p(2), 1, PamFunction::Authenticate, 0),
        call(p(3), 1, PamFunction::AcctMgmt, 12),
        call(p(4), 1, PamFunction::Chauthtok, 0),
    ]);
    assert_eq!(changed.len(), 1);
    let EventBody::LoginAttempt(a) = &changed[0] else {
        panic!()
    };
    assert_eq!((a.outcome, a.account_code), (Outcome::Success, Some(12)));
}

/// su inside an ssh session: a child session that points to its parent, and the
/// su process falls back to the ssh session after closing its own.
#[test]
fn su_inside_ssh_is_a_child_session() {
    let su = |t, key| task(800, 799, t, key, "su");
    let events = run(vec![
        start(task(500, 1, 1, 0, "sshd"), 0x55, "sshd", "alice"),
        call(task(500, 1, 2, 0, "sshd"), 0x55, PamFunction::AcctMgmt, 0),
        opened(task(500, 1, 3, 0xa00, "sshd"), 0x55, 0xa00, 0),
        start(su(10, 0xa00), 0x77, "su", "bob"),
        item(su(11, 0xa00), 0x77, PamItem::RemoteUser, "alice"),
        item(su(12, 0xa00), 0x77, PamItem::Tty, "/dev/pts/0"),
        call(su(13, 0xa00), 0x77, PamFunction::Authenticate, 0),
        call(su(14, 0xa00), 0x77, PamFunction::AcctMgmt, 0),
        opened(su(15, 0xb00), 0x77, 0xb00, 0xa00),
        KernelRecord::Exec {
            task: task(801, 800, 16, 0xb00, "bash"),
            retval: 0,
            filename: "/usr/bin/id".into(),
            argv: vec!["id".into()],
            truncated: false,
            partial: false,
            env: Vec::new(),
            env_cut: false,
        },
        KernelRecord::PamCall {
            task: su(20, 0xb00),
            handle: 0x77,
            function: PamFunction::CloseSession,
            retval: 0,
            session_key: 0xb00,
            parent_session_key: 0xa00,
        },
    ]);
    let su_login = events.iter().find_map(|e| match e {
        EventBody::LoginAttempt(a) if a.service == "su" => Some(a),
        _ => None,
    });
    let su_login = su_login.expect("su attempt");
    assert_eq!(su_login.user, "bob");
    assert_eq!(su_login.remote_user.as_deref(), Some("alice"));
    assert_eq!(su_login.from_session, Some(SessionId(0xa00)));
    let starts: Vec<_> = events.iter().filter_map(EventBody::as_session_start).collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(
        (starts[1].session, starts[1].parent_session),
        (SessionId(0xb00), Some(SessionId(0xa00)))
    );
    let EventBody::Exec(e) = events.iter().find(|e| matches!(e, EventBody::Exec(_))).unwrap() else {
        panic!()
    };
    assert_eq!(e.session_user.as_deref(), Some("bob"));
    let EventBody::SessionEnd(end) = events.last().unwrap() else {
        panic!()
    };
    assert_eq!(
        (end.session, end.parent_session, end.execs),
        (SessionId(0xb00), Some(SessionId(0xa00)), 1)
    );
}

#[test]
fn forked_helper_calls_match_the_parent_transaction() {
    let events = run(vec![
        start(task(900, 1, 1, 0, "sshd"), 0x99, "sshd", "carol"),
        // sshd's keyboard-interactive helper is a fork of the monitor.
        call(task(901, 900, 2, 0, "sshd"), 0x99, PamFunction::Authenticate, 7),
    ]);
    let EventBody::LoginAttempt(a) = &events[0] else {
        panic!()
    };
    assert_eq!((a.user.as_str(), a.process.pid), ("carol", 901));
}

#[test]
fn session_ends_when_its_process_dies_and_orphans_are_counted() {
    let mut assembler = Assembler::new(FixedInfo);
    let mut out = Vec::new();
    // pam_start happened before the agent started.
    assembler.push(opened(task(1000, 1, 5, 0xc00, "sudo"), 0x1, 0xc00, 0), &mut out);
    assembler.push(
        KernelRecord::Exit {
            task: task(1000, 1, 50, 0xc00, "sudo"),
            exit_code: 0,
        },
        &mut out,
    );
    assert_eq!(assembler.counters().pam_orphans, 1);
    assert_eq!(assembler.open_sessions(), 0);
    let EventBody::SessionEnd(end) = &out.last().unwrap().1 else {
        panic!()
    };
    assert_eq!(
        (end.reason, end.duration_ns, end.service.as_str()),
        (SessionEndReason::ProcessExited, 45, "sudo")
    );
}

#[test]
fn authenticate_only_applications_succeed_at_pam_end() {
    let p = |t| task(1100, 1, t, 0, "xlock");
    let events = run(vec![
        start(p(1), 1, "xlock", "dave"),
        call(p(2), 1, PamFunction::Authenticate, 0),
        call(p(3), 1, PamFunction::End, 0),
    ]);
    assert_eq!(events.len(), 1);
    let EventBody::LoginAttempt(a) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (a.outcome, a.authenticate_code, a.account_code),
        (Outcome::Success, Some(0), None)
    );
}

/// An ordinary user's program calling `pam_start` in a loop (its own PAM
/// configuration) fills the transaction table; its own transactions are let go,
/// not the login in flight.
#[test]
fn a_flood_of_an_ordinary_users_pam_starts_cannot_push_a_login_in_flight_out() {
    let mut assembler = Assembler::new(FixedInfo);
    let mut out = Vec::new();
    let sshd = |t| task(500, 400, t, 0, "sshd");
    let mallory = |t| Task {
        uid: 1002,
        euid: Some(1002),
        ..task(900, 1, t, 0, "python3")
    };
    assembler.push(start(sshd(1), 0x55, "sshd", "alice"), &mut out);
    let flood = pam::MAX_TRANSACTIONS as u64 + 100;
    for i in 0..flood {
        assembler.push(start(mallory(2 + i), 0x1000 + i, "sshd", "root"), &mut out);
    }
    assembler.push(
        call(sshd(flood + 10), 0x55, PamFunction::Authenticate, 7),
        &mut out,
    );
    let counters = assembler.counters();
    assert_eq!(
        counters.evicted_unprivileged_transactions,
        1 + flood - pam::MAX_TRANSACTIONS as u64
    );
    assert_eq!((counters.evicted_transactions, counters.pam_orphans), (0, 0));
    assert_eq!(
        counters.evicted(),
        std::collections::BTreeMap::from([("unprivileged_pam_transaction", 101)])
    );
    let attempts: Vec<_> = out
        .iter()
        .filter_map(|(_, e)| match e {
            EventBody::LoginAttempt(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(
        (attempts[0].service.as_str(), attempts[0].user.as_str()),
        ("sshd", "alice")
    );
}
