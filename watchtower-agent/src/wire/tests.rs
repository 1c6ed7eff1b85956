//! The wire form of every event kind, field by field, against hand-written
//! protobuf messages; the login verdicts in [`verdicts`].

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use watchtower_journal::story::Writer;
use watchtower_journal::{Program, PublicKey, SudoLine, SudoOutcome};
use watchtower_model::EventKind;

use super::*;
use crate::event::{CaptureStartHealth, LogWitnessHealth, PamStep, SessionEndReason, SessionId};

const HOST: &str = "web-01.example.net";
const BOOT: &str = "3f1c2a9e-8b4d-4e0f-9a7c-5d6e7f8a9b0c";
/// 2026-03-14T09:26:53.589793238Z
const NOW_NS: u64 = 1_773_480_413_589_793_238;
const SSH_SESSION: u64 = 0x0000_0012_8f3a_c001;
const SU_SESSION: u64 = 0x0000_0012_8f3a_c7e2;

fn envelope(seq: u64, body: EventBody) -> Event {
    Event {
        host_id: HOST.into(),
        boot_id: BOOT.into(),
        seq,
        time: "2026-03-14T09:26:53.589793238Z".into(),
        time_unix_ns: NOW_NS,
        body,
    }
}

fn wire_envelope(seq: u64, body: pb::event::Body) -> pb::Event {
    pb::Event {
        host_id: HOST.into(),
        boot_id: BOOT.into(),
        seq,
        time_unix_ns: NOW_NS,
        body: Some(body),
    }
}

fn bash() -> Process {
    Process {
        pid: 48_213,
        tid: 48_214,
        ppid: 48_190,
        uid: 1000,
        gid: 1001,
        comm: "bash".into(),
        euid: Some(0),
        loginuid: Some(1000),
    }
}

fn wire_bash() -> pb::Process {
    pb::Process {
        pid: 48_213,
        tid: 48_214,
        ppid: 48_190,
        uid: 1000,
        gid: 1001,
        comm: "bash".into(),
        euid: Some(0),
        loginuid: Some(1000),
    }
}

fn sshd() -> Process {
    Process {
        pid: 48_101,
        tid: 48_101,
        ppid: 912,
        uid: 0,
        gid: 0,
        comm: "sshd-session".into(),
        euid: None,
        loginuid: None,
    }
}

fn wire_sshd() -> pb::Process {
    pb::Process {
        pid: 48_101,
        tid: 48_101,
        ppid: 912,
        uid: 0,
        gid: 0,
        comm: "sshd-session".into(),
        euid: None,
        loginuid: None,
    }
}

fn failed_su() -> Event {
    envelope(
        1041,
        EventBody::LoginAttempt(LoginAttempt {
            service: "su".into(),
            user: "root".into(),
            user_known: Some(true),
            remote_host: Some("203.0.113.7".into()),
            tty: Some("pts/3".into()),
            remote_user: Some("alice".into()),
            outcome: Outcome::Failure,
            failed_step: Some(PamStep::Authenticate),
            pam_code: 7,
            pam_code_name: "PAM_AUTH_ERR",
            authenticate_code: Some(7),
            account_code: None,
            from_session: SessionId::from_key(SSH_SESSION),
            process: bash(),
        }),
    )
}

fn ssh_session_start() -> Event {
    envelope(
        1042,
        EventBody::SessionStart(SessionStart {
            session: SessionId(SU_SESSION),
            parent_session: Some(SessionId(SSH_SESSION)),
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("203.0.113.7".into()),
            tty: Some("ssh".into()),
            remote_user: None,
            loginuid: Some(1000),
            audit_session_id: Some(57),
            adopted: true,
            process: sshd(),
        }),
    )
}

fn ssh_session_end() -> Event {
    envelope(
        1043,
        EventBody::SessionEnd(SessionEnd {
            session: SessionId(SU_SESSION),
            parent_session: Some(SessionId(SSH_SESSION)),
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("203.0.113.7".into()),
            reason: SessionEndReason::ProcessExited,
            duration_ns: 1_845_000_000_321,
            execs: 212,
            connects: 9,
            processes: 230,
            process: sshd(),
        }),
    )
}

fn failed_exec() -> Event {
    envelope(
        1044,
        EventBody::Exec(Exec {
            session: Some(SessionId(SSH_SESSION)),
            session_user: Some("alice".into()),
            filename: "/usr/local/bin/deploy".into(),
            argv: vec!["deploy".into(), "--env".into(), "prod".into(), String::new()],
            argv_truncated: true,
            argv_incomplete: true,
            env: vec!["LD_PRELOAD=/tmp/x.so".into()],
            env_cut: true,
            result: -13,
            error: Some("EACCES"),
            process: bash(),
        }),
    )
}

fn refused_connect() -> Event {
    envelope(
        1045,
        EventBody::Connect(Connect {
            session: Some(SessionId(SSH_SESSION)),
            session_user: Some("alice".into()),
            family: "inet6",
            address: "2001:db8::25".into(),
            port: Some(5432),
            result: -111,
            error: Some("ECONNREFUSED"),
            fd: 7,
            process: bash(),
            via: None,
        }),
    )
}

fn periodic_health() -> Event {
    envelope(
        1046,
        EventBody::AgentHealth(Box::new(AgentHealth {
            reason: "periodic",
            mode: "kernel+journal",
            kernel_unavailable: Some("BTF not found".into()),
            journal: Some(JournalHealth {
                state: "restarting",
                error: Some("journalctl exited with status 1".into()),
                journald_accepting: true,
                records: 90_211,
                malformed: 3,
                recognised: 1_204,
                logins: 388,
                restarts: 2,
            }),
            verdicts: Some(VerdictCounters {
                confirmed: 380,
                kernel_only: 4,
                journal_only: 1,
                unchecked: 3,
                pending_kernel: 2,
                pending_journal: 5,
                overflow: 6,
            }),
            scope: "sessions",
            probes: vec!["pam_start".into(), "sys_enter_execve".into()],
            lost: BTreeMap::from([("exec", 12), ("connect", 3)]),
            out_of_scope: BTreeMap::from([("exec", 40_112)]),
            decode_errors: 8,
            records: 1_500_321,
            pam_orphans: 11,
            open_sessions: 14,
            resumed_after_seq: Some(1_000),
            spool: None,
            log_witness: Some(LogWitnessHealth {
                checkpoint_size: 4_096,
                receipts_verified: 4_000,
                receipts_pending: 12,
                findings: BTreeMap::from([("rewound".to_owned(), 1)]),
                last_finding: "rewound: the log shrank".into(),
            }),
            capture_start: Some(CaptureStartHealth {
                how: "gap",
                gap_from_unix_ns: Some(NOW_NS - 3_000_000_000),
                gap_to_unix_ns: Some(NOW_NS - 1_000_000_000),
            }),
            evicted: BTreeMap::from([("session", 2)]),
        })),
    )
}

fn sshd_kernel_witness() -> KernelWitness {
    KernelWitness {
        program: Program::Sshd,
        seq: 1030,
        time_unix_ns: NOW_NS - 5_000_000_000,
        service: "sshd".into(),
        user: "alice".into(),
        outcome: Outcome::Success,
        remote_host: Some("203.0.113.7".into()),
        pid: 48_101,
        ppid: 912,
        from_session: Some(SessionId(0x0000_0011_0000_0042)),
        journal_unreadable: false,
    }
}

fn writer(pid: u32, uid: u32, comm: &str, exe: &str) -> Writer {
    Writer {
        pid,
        uid: Some(uid),
        comm: Some(comm.into()),
        exe: Some(exe.into()),
        identifier: comm.into(),
    }
}

fn sshd_journal_login() -> JournalLogin {
    JournalLogin {
        program: Program::Sshd,
        outcome: JournalOutcome::Success,
        attempts: 1,
        user: "alice".into(),
        invalid_user: false,
        method: Some("publickey".into()),
        key: Some(PublicKey {
            kind: "ED25519-CERT".into(),
            fingerprint: "SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into(),
            certificate: Some("ID alice@corp (serial 42) CA ED25519 SHA256:Yw3Nq".into()),
        }),
        remote_address: Some("203.0.113.7".into()),
        remote_port: Some(51_822),
        local_port: Some(22),
        tty: None,
        by_user: None,
        sudo: None,
        kernel_expected: true,
        time_us: 1_773_480_408_591_002,
        cursor: "s=8c1e;i=4f2a;b=3f1c;m=9a;t=64d;x=77".into(),
        writer: writer(48_101, 0, "sshd-session", "/usr/lib/openssh/sshd-session"),
        identity_mismatch: false,
        lines: vec![
            "Connection from 203.0.113.7 port 51822 on 192.0.2.10 port 22".into(),
            "Accepted publickey for alice from 203.0.113.7 port 51822 ssh2: ED25519-CERT SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into(),
        ],
    }
}

fn confirmed_sshd() -> Event {
    envelope(
        1047,
        EventBody::LoginVerdict(Box::new(LoginVerdict {
            verdict: Verdict::Confirmed,
            reason: "both_witnesses",
            program: Program::Sshd,
            user: "alice".into(),
            outcome: Outcome::Success,
            attempts: 1,
            login_time_unix_ns: NOW_NS - 5_000_000_000,
            auth_method: Some("publickey".into()),
            key_fingerprint: Some("SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into()),
            remote_address: Some("203.0.113.7".into()),
            remote_port: Some(51_822),
            command: None,
            user_mismatch: true,
            kernel: Some(sshd_kernel_witness()),
            journal: Some(sshd_journal_login()),
        })),
    )
}

fn sudo_journal_login() -> JournalLogin {
    JournalLogin {
        program: Program::Sudo,
        outcome: JournalOutcome::Failure,
        attempts: 3,
        user: "bob".into(),
        invalid_user: true,
        method: None,
        key: None,
        remote_address: None,
        remote_port: None,
        local_port: None,
        tty: Some("pts/1".into()),
        by_user: Some("carol".into()),
        sudo: Some(SudoLine {
            user: "bob".into(),
            outcome: SudoOutcome::IncorrectPassword { attempts: 3 },
            tty: Some("pts/1".into()),
            pwd: Some("/home/bob".into()),
            target_user: Some("root".into()),
            target_group: Some("adm".into()),
            command: Some("/usr/bin/systemctl restart nginx".into()),
        }),
        kernel_expected: false,
        time_us: 1_773_480_413_000_017,
        cursor: "s=8c1e;i=4f30;b=3f1c;m=9f;t=64e;x=78".into(),
        writer: Writer {
            pid: 50_777,
            uid: None,
            comm: None,
            exe: None,
            identifier: "sudo".into(),
        },
        identity_mismatch: true,
        lines: vec![
            "pam_unix(sudo:auth): authentication failure; logname=bob uid=1002 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob".into(),
            "bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; GROUP=adm ; COMMAND=/usr/bin/systemctl restart nginx".into(),
        ],
    }
}

fn journal_only_sudo() -> Event {
    envelope(
        1048,
        EventBody::LoginVerdict(Box::new(LoginVerdict {
            verdict: Verdict::JournalOnly,
            reason: "no_kernel_record",
            program: Program::Sudo,
            user: "bob".into(),
            outcome: Outcome::Failure,
            attempts: 3,
            login_time_unix_ns: 1_773_480_413_000_017_000,
            auth_method: None,
            key_fingerprint: None,
            remote_address: None,
            remote_port: None,
            command: Some("/usr/bin/systemctl restart nginx".into()),
            user_mismatch: false,
            kernel: None,
            journal: Some(sudo_journal_login()),
        })),
    )
}

fn kernel_only_su() -> Event {
    envelope(
        1049,
        EventBody::LoginVerdict(Box::new(LoginVerdict {
            verdict: Verdict::KernelOnly,
            reason: "journald_not_accepting",
            program: Program::Su,
            user: "root".into(),
            outcome: Outcome::Failure,
            attempts: 1,
            login_time_unix_ns: NOW_NS,
            auth_method: None,
            key_fingerprint: None,
            remote_address: None,
            remote_port: None,
            command: None,
            user_mismatch: false,
            kernel: Some(KernelWitness {
                program: Program::Su,
                seq: 1041,
                time_unix_ns: NOW_NS,
                service: "su-l".into(),
                user: "root".into(),
                outcome: Outcome::Failure,
                remote_host: None,
                pid: 48_213,
                ppid: 48_190,
                from_session: None,
                journal_unreadable: false,
            }),
            journal: None,
        })),
    )
}

fn unchecked_login() -> Event {
    envelope(
        1050,
        EventBody::LoginVerdict(Box::new(LoginVerdict {
            verdict: Verdict::Unchecked,
            reason: "kernel_witness_off",
            program: Program::Login,
            user: "operator".into(),
            outcome: Outcome::Success,
            attempts: 1,
            login_time_unix_ns: 1_773_480_400_000_000_000,
            auth_method: None,
            key_fingerprint: None,
            remote_address: None,
            remote_port: None,
            command: None,
            user_mismatch: false,
            kernel: None,
            journal: None,
        })),
    )
}

fn samples() -> Vec<(Event, EventKind)> {
    vec![
        (failed_su(), EventKind::LoginAttempt),
        (ssh_session_start(), EventKind::SessionStart),
        (ssh_session_end(), EventKind::SessionEnd),
        (failed_exec(), EventKind::Exec),
        (refused_connect(), EventKind::Connect),
        (confirmed_sshd(), EventKind::LoginVerdict),
        (journal_only_sudo(), EventKind::LoginVerdict),
        (kernel_only_su(), EventKind::LoginVerdict),
        (unchecked_login(), EventKind::LoginVerdict),
        (periodic_health(), EventKind::AgentHealth),
    ]
}

#[test]
fn wire_login_attempt() {
    let expected = wire_envelope(
        1041,
        pb::event::Body::LoginAttempt(pb::LoginAttempt {
            service: "su".into(),
            user: "root".into(),
            user_known: Some(true),
            remote_host: Some("203.0.113.7".into()),
            tty: Some("pts/3".into()),
            remote_user: Some("alice".into()),
            outcome: pb::Outcome::Failure as i32,
            failed_step: Some("authenticate".into()),
            pam_code: 7,
            pam_code_name: "PAM_AUTH_ERR".into(),
            authenticate_code: Some(7),
            account_code: None,
            from_session: Some(SSH_SESSION),
            process: Some(wire_bash()),
        }),
    );
    assert_eq!(to_wire(&failed_su()), expected);
}

#[test]
fn wire_login_attempt_success_has_no_failed_step() {
    let mut event = failed_su();
    let EventBody::LoginAttempt(a) = &mut event.body else {
        unreachable!()
    };
    a.outcome = Outcome::Success;
    a.failed_step = None;
    a.user_known = None;
    a.from_session = None;
    let Some(pb::event::Body::LoginAttempt(w)) = to_wire(&event).body else {
        panic!("not a login attempt")
    };
    assert_eq!(w.outcome(), pb::Outcome::Success);
    assert_eq!(w.failed_step, None);
    assert_eq!(w.user_known, None);
    assert_eq!(w.from_session, None);
}

#[test]
fn wire_session_start() {
    let expected = wire_envelope(
        1042,
        pb::event::Body::SessionStart(pb::SessionStart {
            session: SU_SESSION,
            parent_session: Some(SSH_SESSION),
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("203.0.113.7".into()),
            tty: Some("ssh".into()),
            remote_user: None,
            loginuid: Some(1000),
            audit_session_id: Some(57),
            adopted: true,
            process: Some(wire_sshd()),
        }),
    );
    assert_eq!(to_wire(&ssh_session_start()), expected);
}

#[test]
fn wire_session_end() {
    let expected = wire_envelope(
        1043,
        pb::event::Body::SessionEnd(pb::SessionEnd {
            session: SU_SESSION,
            parent_session: Some(SSH_SESSION),
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("203.0.113.7".into()),
            reason: "process_exited".into(),
            duration_ns: 1_845_000_000_321,
            execs: 212,
            connects: 9,
            processes: 230,
            process: Some(wire_sshd()),
        }),
    );
    assert_eq!(to_wire(&ssh_session_end()), expected);
}

#[test]
fn wire_exec() {
    let expected = wire_envelope(
        1044,
        pb::event::Body::Exec(pb::Exec {
            session: Some(SSH_SESSION),
            session_user: Some("alice".into()),
            filename: "/usr/local/bin/deploy".into(),
            argv: vec!["deploy".into(), "--env".into(), "prod".into(), String::new()],
            argv_truncated: true,
            argv_incomplete: true,
            env: vec!["LD_PRELOAD=/tmp/x.so".into()],
            env_cut: true,
            result: -13,
            error: Some("EACCES".into()),
            process: Some(wire_bash()),
        }),
    );
    assert_eq!(to_wire(&failed_exec()), expected);
}

#[test]
fn wire_connect() {
    let expected = wire_envelope(
        1045,
        pb::event::Body::Connect(pb::Connect {
            session: Some(SSH_SESSION),
            session_user: Some("alice".into()),
            family: "inet6".into(),
            address: "2001:db8::25".into(),
            port: Some(5432),
            result: -111,
            error: Some("ECONNREFUSED".into()),
            fd: 7,
            process: Some(wire_bash()),
            via: None,
        }),
    );
    assert_eq!(to_wire(&refused_connect()), expected);
}

#[test]
fn wire_connect_unix_has_no_port_or_session() {
    let mut event = refused_connect();
    let EventBody::Connect(c) = &mut event.body else {
        unreachable!()
    };
    c.family = "unix";
    c.address = "/run/dbus/system_bus_socket".into();
    c.port = None;
    c.session = None;
    c.session_user = None;
    c.result = 0;
    c.error = None;
    let Some(pb::event::Body::Connect(w)) = to_wire(&event).body else {
        panic!("not a connect")
    };
    assert_eq!(w.family, "unix");
    assert_eq!(w.address, "/run/dbus/system_bus_socket");
    assert_eq!(
        (w.port, w.session, w.session_user, w.result, w.error),
        (None, None, None, 0, None)
    );
}

#[test]
fn wire_agent_health() {
    let expected = wire_envelope(
        1046,
        pb::event::Body::AgentHealth(pb::AgentHealth {
            reason: "periodic".into(),
            mode: "kernel+journal".into(),
            kernel_unavailable: Some("BTF not found".into()),
            journal: Some(pb::JournalHealth {
                state: "restarting".into(),
                error: Some("journalctl exited with status 1".into()),
                journald_accepting: true,
                records: 90_211,
                malformed: 3,
                recognised: 1_204,
                logins: 388,
                restarts: 2,
            }),
            verdicts: Some(pb::VerdictCounters {
                confirmed: 380,
                kernel_only: 4,
                journal_only: 1,
                unchecked: 3,
                pending_kernel: 2,
                pending_journal: 5,
                overflow: 6,
            }),
            scope: "sessions".into(),
            probes: vec!["pam_start".into(), "sys_enter_execve".into()],
            lost: HashMap::from([("exec".into(), 12), ("connect".into(), 3)]),
            out_of_scope: HashMap::from([("exec".into(), 40_112)]),
            decode_errors: 8,
            records: 1_500_321,
            pam_orphans: 11,
            open_sessions: 14,
            resumed_after_seq: Some(1_000),
            spool: None,
            log_witness: Some(pb::LogWitnessHealth {
                checkpoint_size: 4_096,
                receipts_verified: 4_000,
                receipts_pending: 12,
                findings: HashMap::from([("rewound".into(), 1)]),
                last_finding: "rewound: the log shrank".into(),
            }),
            capture_start: Some(pb::CaptureStart {
                how: "gap".into(),
                gap_from_unix_ns: Some(NOW_NS - 3_000_000_000),
                gap_to_unix_ns: Some(NOW_NS - 1_000_000_000),
            }),
            evicted: HashMap::from([("session".into(), 2)]),
        }),
    );
    assert_eq!(to_wire(&periodic_health()), expected);
}

#[test]
fn wire_agent_health_without_witness_state() {
    let event = envelope(
        1,
        EventBody::AgentHealth(Box::new(AgentHealth {
            reason: "start",
            mode: "journal",
            scope: "all",
            ..AgentHealth::default()
        })),
    );
    let Some(pb::event::Body::AgentHealth(h)) = to_wire(&event).body else {
        panic!("not agent health")
    };
    assert_eq!(
        (h.reason.as_str(), h.mode.as_str(), h.scope.as_str()),
        ("start", "journal", "all")
    );
    assert_eq!(
        (h.journal, h.verdicts, h.spool, h.resumed_after_seq),
        (None, None, None, None)
    );
    assert!(h.lost.is_empty() && h.out_of_scope.is_empty() && h.probes.is_empty());
}

#[test]
fn wire_spool_health_carries_the_quarantine_apart_from_the_losses() {
    let spool = SpoolHealth {
        bytes: 4096,
        max_bytes: 1 << 20,
        pending: 3,
        dropped: [("spool_full", 2), ("quarantine_full", 1), ("quarantined", 4)].into(),
        corrupt_records: 1,
        acked: 90,
        reconnects: 5,
    };
    assert_eq!(
        crate::wire::spool_health(&spool),
        pb::SpoolHealth {
            bytes: 4096,
            max_bytes: 1 << 20,
            pending: 3,
            dropped: HashMap::from([("spool_full".into(), 2), ("quarantine_full".into(), 1)]),
            corrupt_records: 1,
            acked: 90,
            reconnects: 5,
            quarantined: 4,
        }
    );
}

mod verdicts;
