//! The wire form of events: the agent's [`Event`]s as `watchtower.v1` protobuf messages.
//!
//! Every field is carried over, typed (no JSON strings inside). Enums of the agent that
//! the contract keeps as text (the PAM step, the session end reason, the program, sudo's
//! decision) are written exactly as the agent's JSON output spells them (serde's
//! `snake_case` names). The envelope's RFC 3339 `time` is not carried: it is
//! `time_unix_ns` formatted.

use watchtower_journal::{JournalLogin, Outcome as JournalOutcome, Program, SudoOutcome};
use watchtower_proto as pb;

use crate::event::{
    AgentHealth, Connect, Event, EventBody, Exec, JournalHealth, LoginAttempt, Outcome, PamStep, Process,
    SessionEnd, SessionEndReason, SessionStart,
};
use crate::reconcile::{KernelWitness, LoginVerdict, Verdict, VerdictCounters};

/// The wire form of an event: every field carried over, typed (no JSON strings).
///
/// An `agent_health` event's `spool` is left unset: the transport fills it in.
#[must_use]
pub fn to_wire(event: &Event) -> pb::Event {
    pb::Event {
        host_id: event.host_id.clone(),
        boot_id: event.boot_id.clone(),
        seq: event.seq,
        time_unix_ns: event.time_unix_ns,
        body: Some(body(&event.body)),
    }
}

fn body(body: &EventBody) -> pb::event::Body {
    use pb::event::Body;
    match body {
        EventBody::LoginAttempt(a) => Body::LoginAttempt(login_attempt(a)),
        EventBody::SessionStart(s) => Body::SessionStart(session_start(s)),
        EventBody::SessionEnd(s) => Body::SessionEnd(session_end(s)),
        EventBody::Exec(e) => Body::Exec(exec(e)),
        EventBody::Connect(c) => Body::Connect(connect(c)),
        EventBody::LoginVerdict(v) => Body::LoginVerdict(login_verdict(v)),
        EventBody::AgentHealth(h) => Body::AgentHealth(agent_health(h)),
    }
}

fn outcome(o: Outcome) -> i32 {
    match o {
        Outcome::Success => pb::Outcome::Success as i32,
        Outcome::Failure => pb::Outcome::Failure as i32,
    }
}

fn journal_outcome(o: JournalOutcome) -> i32 {
    match o {
        JournalOutcome::Success => pb::Outcome::Success as i32,
        JournalOutcome::Failure => pb::Outcome::Failure as i32,
    }
}

/// As serde writes it (`rename_all = "snake_case"`).
fn pam_step_name(step: PamStep) -> &'static str {
    match step {
        PamStep::Start => "start",
        PamStep::Authenticate => "authenticate",
        PamStep::Account => "account",
        PamStep::OpenSession => "open_session",
    }
}

/// As serde writes it (`rename_all = "snake_case"`).
fn end_reason_name(reason: SessionEndReason) -> &'static str {
    match reason {
        SessionEndReason::Closed => "closed",
        SessionEndReason::ProcessExited => "process_exited",
    }
}

/// As serde writes it (`rename_all = "snake_case"`): `logind`, not the identifier
/// `systemd-logind` that [`Program::name`] gives.
fn program_name(program: Program) -> &'static str {
    match program {
        Program::Sshd => "sshd",
        Program::Sudo => "sudo",
        Program::Su => "su",
        Program::Login => "login",
        Program::Logind => "logind",
    }
}

/// The `decision` tag serde writes for sudo's outcome.
fn sudo_decision_name(outcome: &SudoOutcome) -> &'static str {
    match outcome {
        SudoOutcome::Allowed => "allowed",
        SudoOutcome::IncorrectPassword { .. } => "incorrect_password",
        SudoOutcome::Denied { .. } => "denied",
    }
}

fn verdict(v: Verdict) -> i32 {
    let v = match v {
        Verdict::Confirmed => pb::Verdict::Confirmed,
        Verdict::KernelOnly => pb::Verdict::KernelOnly,
        Verdict::JournalOnly => pb::Verdict::JournalOnly,
        Verdict::Unchecked => pb::Verdict::Unchecked,
    };
    v as i32
}

fn process(p: &Process) -> pb::Process {
    pb::Process {
        pid: p.pid,
        tid: p.tid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        comm: p.comm.clone(),
    }
}

fn login_attempt(a: &LoginAttempt) -> pb::LoginAttempt {
    pb::LoginAttempt {
        service: a.service.clone(),
        user: a.user.clone(),
        user_known: a.user_known,
        remote_host: a.remote_host.clone(),
        tty: a.tty.clone(),
        remote_user: a.remote_user.clone(),
        outcome: outcome(a.outcome),
        failed_step: a.failed_step.map(|s| pam_step_name(s).to_owned()),
        pam_code: a.pam_code,
        pam_code_name: a.pam_code_name.to_owned(),
        authenticate_code: a.authenticate_code,
        account_code: a.account_code,
        from_session: a.from_session.map(|s| s.0),
        process: Some(process(&a.process)),
    }
}

fn session_start(s: &SessionStart) -> pb::SessionStart {
    pb::SessionStart {
        session: s.session.0,
        parent_session: s.parent_session.map(|p| p.0),
        service: s.service.clone(),
        user: s.user.clone(),
        remote_host: s.remote_host.clone(),
        tty: s.tty.clone(),
        remote_user: s.remote_user.clone(),
        loginuid: s.loginuid,
        audit_session_id: s.audit_session_id,
        adopted: s.adopted,
        process: Some(process(&s.process)),
    }
}

fn session_end(s: &SessionEnd) -> pb::SessionEnd {
    pb::SessionEnd {
        session: s.session.0,
        parent_session: s.parent_session.map(|p| p.0),
        service: s.service.clone(),
        user: s.user.clone(),
        remote_host: s.remote_host.clone(),
        reason: end_reason_name(s.reason).to_owned(),
        duration_ns: s.duration_ns,
        execs: s.execs,
        connects: s.connects,
        processes: s.processes,
        process: Some(process(&s.process)),
    }
}

fn exec(e: &Exec) -> pb::Exec {
    pb::Exec {
        session: e.session.map(|s| s.0),
        session_user: e.session_user.clone(),
        filename: e.filename.clone(),
        argv: e.argv.clone(),
        argv_truncated: e.argv_truncated,
        argv_incomplete: e.argv_incomplete,
        result: e.result,
        error: e.error.map(str::to_owned),
        process: Some(process(&e.process)),
    }
}

fn connect(c: &Connect) -> pb::Connect {
    pb::Connect {
        session: c.session.map(|s| s.0),
        session_user: c.session_user.clone(),
        family: c.family.to_owned(),
        address: c.address.clone(),
        port: c.port.map(u32::from),
        result: c.result,
        error: c.error.map(str::to_owned),
        fd: c.fd,
        process: Some(process(&c.process)),
    }
}

fn login_verdict(v: &LoginVerdict) -> pb::LoginVerdict {
    pb::LoginVerdict {
        verdict: verdict(v.verdict),
        reason: v.reason.to_owned(),
        program: program_name(v.program).to_owned(),
        user: v.user.clone(),
        outcome: outcome(v.outcome),
        attempts: v.attempts,
        login_time_unix_ns: v.login_time_unix_ns,
        auth_method: v.auth_method.clone(),
        key_fingerprint: v.key_fingerprint.clone(),
        remote_address: v.remote_address.clone(),
        remote_port: v.remote_port.map(u32::from),
        command: v.command.clone(),
        user_mismatch: v.user_mismatch,
        kernel: v.kernel.as_ref().map(kernel_witness),
        journal: v.journal.as_ref().map(journal_witness),
    }
}

/// The witness's `program` is not carried (the agent does not ship it either: it is
/// the verdict's program).
fn kernel_witness(k: &KernelWitness) -> pb::KernelWitness {
    pb::KernelWitness {
        seq: k.seq,
        time_unix_ns: k.time_unix_ns,
        service: k.service.clone(),
        user: k.user.clone(),
        outcome: outcome(k.outcome),
        remote_host: k.remote_host.clone(),
        pid: k.pid,
        ppid: k.ppid,
        from_session: k.from_session.map(|s| s.0),
    }
}

/// The journal's login, flattened. Not carried (no field in the contract): sudo's
/// `GROUP=` (`target_group`), the reason of a refusal by policy (`Denied { reason }`),
/// and sudo's own `TTY=` and `incorrect_password` count, which the login already
/// carries as `tty` and `attempts`.
fn journal_witness(j: &JournalLogin) -> pb::JournalWitness {
    let key = j.key.as_ref();
    let sudo = j.sudo.as_ref();
    pb::JournalWitness {
        program: program_name(j.program).to_owned(),
        outcome: journal_outcome(j.outcome),
        attempts: j.attempts,
        user: j.user.clone(),
        invalid_user: j.invalid_user,
        method: j.method.clone(),
        key_type: key.map(|k| k.kind.clone()),
        key_fingerprint: key.map(|k| k.fingerprint.clone()),
        key_certificate: key.and_then(|k| k.certificate.clone()),
        remote_address: j.remote_address.clone(),
        remote_port: j.remote_port.map(u32::from),
        local_port: j.local_port.map(u32::from),
        tty: j.tty.clone(),
        by_user: j.by_user.clone(),
        sudo_user: sudo.map(|s| s.user.clone()),
        sudo_decision: sudo.map(|s| sudo_decision_name(&s.outcome).to_owned()),
        sudo_pwd: sudo.and_then(|s| s.pwd.clone()),
        sudo_target_user: sudo.and_then(|s| s.target_user.clone()),
        sudo_command: sudo.and_then(|s| s.command.clone()),
        kernel_expected: j.kernel_expected,
        time_us: j.time_us,
        cursor: j.cursor.clone(),
        writer_pid: j.writer.pid,
        writer_uid: j.writer.uid,
        writer_comm: j.writer.comm.clone(),
        writer_exe: j.writer.exe.clone(),
        writer_identifier: j.writer.identifier.clone(),
        identity_mismatch: j.identity_mismatch,
        lines: j.lines.clone(),
    }
}

fn journal_health(j: &JournalHealth) -> pb::JournalHealth {
    pb::JournalHealth {
        state: j.state.to_owned(),
        error: j.error.clone(),
        journald_accepting: j.journald_accepting,
        records: j.records,
        malformed: j.malformed,
        recognised: j.recognised,
        logins: j.logins,
        restarts: j.restarts,
    }
}

fn verdict_counters(c: &VerdictCounters) -> pb::VerdictCounters {
    pb::VerdictCounters {
        confirmed: c.confirmed,
        kernel_only: c.kernel_only,
        journal_only: c.journal_only,
        unchecked: c.unchecked,
        pending_kernel: c.pending_kernel,
        pending_journal: c.pending_journal,
        overflow: c.overflow,
    }
}

fn agent_health(h: &AgentHealth) -> pb::AgentHealth {
    let counts = |m: &std::collections::BTreeMap<&'static str, u64>| {
        m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    pb::AgentHealth {
        reason: h.reason.to_owned(),
        mode: h.mode.to_owned(),
        kernel_unavailable: h.kernel_unavailable.clone(),
        journal: h.journal.as_ref().map(journal_health),
        verdicts: h.verdicts.as_ref().map(verdict_counters),
        scope: h.scope.to_owned(),
        probes: h.probes.clone(),
        lost: counts(&h.lost),
        out_of_scope: counts(&h.out_of_scope),
        decode_errors: h.decode_errors,
        records: h.records,
        pam_orphans: h.pam_orphans,
        open_sessions: h.open_sessions,
        resumed_after_seq: h.resumed_after_seq,
        spool: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use prost::Message as _;
    use watchtower_journal::story::Writer;
    use watchtower_journal::{PublicKey, SudoLine};

    use super::*;
    use crate::event::SessionId;

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
            }),
        )
    }

    fn periodic_health() -> Event {
        envelope(
            1046,
            EventBody::AgentHealth(AgentHealth {
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
            }),
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

    fn samples() -> Vec<(Event, pb::EventKind)> {
        vec![
            (failed_su(), pb::EventKind::LoginAttempt),
            (ssh_session_start(), pb::EventKind::SessionStart),
            (ssh_session_end(), pb::EventKind::SessionEnd),
            (failed_exec(), pb::EventKind::Exec),
            (refused_connect(), pb::EventKind::Connect),
            (confirmed_sshd(), pb::EventKind::LoginVerdict),
            (journal_only_sudo(), pb::EventKind::LoginVerdict),
            (kernel_only_su(), pb::EventKind::LoginVerdict),
            (unchecked_login(), pb::EventKind::LoginVerdict),
            (periodic_health(), pb::EventKind::AgentHealth),
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
            }),
        );
        assert_eq!(to_wire(&periodic_health()), expected);
    }

    #[test]
    fn wire_agent_health_without_witness_state() {
        let event = envelope(
            1,
            EventBody::AgentHealth(AgentHealth {
                reason: "start",
                mode: "journal",
                scope: "all",
                ..AgentHealth::default()
            }),
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

    fn wire_sshd_kernel_witness() -> pb::KernelWitness {
        pb::KernelWitness {
            seq: 1030,
            time_unix_ns: NOW_NS - 5_000_000_000,
            service: "sshd".into(),
            user: "alice".into(),
            outcome: pb::Outcome::Success as i32,
            remote_host: Some("203.0.113.7".into()),
            pid: 48_101,
            ppid: 912,
            from_session: Some(0x0000_0011_0000_0042),
        }
    }

    fn wire_sshd_journal_witness() -> pb::JournalWitness {
        let login = sshd_journal_login();
        pb::JournalWitness {
            program: "sshd".into(),
            outcome: pb::Outcome::Success as i32,
            attempts: 1,
            user: "alice".into(),
            invalid_user: false,
            method: Some("publickey".into()),
            key_type: Some("ED25519-CERT".into()),
            key_fingerprint: Some("SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into()),
            key_certificate: Some("ID alice@corp (serial 42) CA ED25519 SHA256:Yw3Nq".into()),
            remote_address: Some("203.0.113.7".into()),
            remote_port: Some(51_822),
            local_port: Some(22),
            tty: None,
            by_user: None,
            sudo_user: None,
            sudo_decision: None,
            sudo_pwd: None,
            sudo_target_user: None,
            sudo_command: None,
            kernel_expected: true,
            time_us: 1_773_480_408_591_002,
            cursor: "s=8c1e;i=4f2a;b=3f1c;m=9a;t=64d;x=77".into(),
            writer_pid: 48_101,
            writer_uid: Some(0),
            writer_comm: Some("sshd-session".into()),
            writer_exe: Some("/usr/lib/openssh/sshd-session".into()),
            writer_identifier: "sshd-session".into(),
            identity_mismatch: false,
            lines: login.lines,
        }
    }

    #[test]
    fn wire_login_verdict_confirmed_with_both_witnesses() {
        let expected = wire_envelope(
            1047,
            pb::event::Body::LoginVerdict(pb::LoginVerdict {
                verdict: pb::Verdict::Confirmed as i32,
                reason: "both_witnesses".into(),
                program: "sshd".into(),
                user: "alice".into(),
                outcome: pb::Outcome::Success as i32,
                attempts: 1,
                login_time_unix_ns: NOW_NS - 5_000_000_000,
                auth_method: Some("publickey".into()),
                key_fingerprint: Some("SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into()),
                remote_address: Some("203.0.113.7".into()),
                remote_port: Some(51_822),
                command: None,
                user_mismatch: true,
                kernel: Some(wire_sshd_kernel_witness()),
                journal: Some(wire_sshd_journal_witness()),
            }),
        );
        let wire = to_wire(&confirmed_sshd());
        assert_eq!(wire, expected);
        let Some(pb::event::Body::LoginVerdict(v)) = &wire.body else {
            unreachable!()
        };
        assert_eq!(v.journal.as_ref().unwrap().lines.len(), 2);
    }

    #[test]
    fn wire_login_verdict_journal_only_sudo() {
        let expected = wire_envelope(
            1048,
            pb::event::Body::LoginVerdict(pb::LoginVerdict {
                verdict: pb::Verdict::JournalOnly as i32,
                reason: "no_kernel_record".into(),
                program: "sudo".into(),
                user: "bob".into(),
                outcome: pb::Outcome::Failure as i32,
                attempts: 3,
                login_time_unix_ns: 1_773_480_413_000_017_000,
                auth_method: None,
                key_fingerprint: None,
                remote_address: None,
                remote_port: None,
                command: Some("/usr/bin/systemctl restart nginx".into()),
                user_mismatch: false,
                kernel: None,
                journal: Some(pb::JournalWitness {
                    program: "sudo".into(),
                    outcome: pb::Outcome::Failure as i32,
                    attempts: 3,
                    user: "bob".into(),
                    invalid_user: true,
                    method: None,
                    key_type: None,
                    key_fingerprint: None,
                    key_certificate: None,
                    remote_address: None,
                    remote_port: None,
                    local_port: None,
                    tty: Some("pts/1".into()),
                    by_user: Some("carol".into()),
                    sudo_user: Some("bob".into()),
                    sudo_decision: Some("incorrect_password".into()),
                    sudo_pwd: Some("/home/bob".into()),
                    sudo_target_user: Some("root".into()),
                    sudo_command: Some("/usr/bin/systemctl restart nginx".into()),
                    kernel_expected: false,
                    time_us: 1_773_480_413_000_017,
                    cursor: "s=8c1e;i=4f30;b=3f1c;m=9f;t=64e;x=78".into(),
                    writer_pid: 50_777,
                    writer_uid: None,
                    writer_comm: None,
                    writer_exe: None,
                    writer_identifier: "sudo".into(),
                    identity_mismatch: true,
                    lines: sudo_journal_login().lines,
                }),
            }),
        );
        assert_eq!(to_wire(&journal_only_sudo()), expected);
    }

    #[test]
    fn wire_login_verdict_kernel_only_and_unchecked() {
        let expected = wire_envelope(
            1049,
            pb::event::Body::LoginVerdict(pb::LoginVerdict {
                verdict: pb::Verdict::KernelOnly as i32,
                reason: "journald_not_accepting".into(),
                program: "su".into(),
                user: "root".into(),
                outcome: pb::Outcome::Failure as i32,
                attempts: 1,
                login_time_unix_ns: NOW_NS,
                auth_method: None,
                key_fingerprint: None,
                remote_address: None,
                remote_port: None,
                command: None,
                user_mismatch: false,
                kernel: Some(pb::KernelWitness {
                    seq: 1041,
                    time_unix_ns: NOW_NS,
                    service: "su-l".into(),
                    user: "root".into(),
                    outcome: pb::Outcome::Failure as i32,
                    remote_host: None,
                    pid: 48_213,
                    ppid: 48_190,
                    from_session: None,
                }),
                journal: None,
            }),
        );
        assert_eq!(to_wire(&kernel_only_su()), expected);

        let Some(pb::event::Body::LoginVerdict(v)) = to_wire(&unchecked_login()).body else {
            panic!("not a verdict")
        };
        assert_eq!(v.verdict(), pb::Verdict::Unchecked);
        assert_eq!(v.reason, "kernel_witness_off");
        assert_eq!(v.program, "login");
        assert_eq!(v.user, "operator");
        assert_eq!(v.outcome(), pb::Outcome::Success);
        assert_eq!(v.login_time_unix_ns, 1_773_480_400_000_000_000);
        assert_eq!((v.kernel, v.journal), (None, None));
    }

    #[test]
    fn sudo_decisions_and_keys_without_certificate() {
        let mut login = sudo_journal_login();
        for (outcome, decision) in [
            (SudoOutcome::Allowed, "allowed"),
            (
                SudoOutcome::IncorrectPassword { attempts: 2 },
                "incorrect_password",
            ),
            (
                SudoOutcome::Denied {
                    reason: "user NOT in sudoers".into(),
                },
                "denied",
            ),
        ] {
            login.sudo.as_mut().unwrap().outcome = outcome;
            let w = journal_witness(&login);
            assert_eq!(w.sudo_decision.as_deref(), Some(decision));
        }
        login.sudo.as_mut().unwrap().pwd = None;
        login.sudo.as_mut().unwrap().target_user = None;
        login.sudo.as_mut().unwrap().command = None;
        let w = journal_witness(&login);
        assert_eq!(w.sudo_user.as_deref(), Some("bob"));
        assert_eq!(
            (w.sudo_pwd, w.sudo_target_user, w.sudo_command),
            (None, None, None)
        );

        let mut login = sshd_journal_login();
        login.key.as_mut().unwrap().kind = "RSA".into();
        login.key.as_mut().unwrap().certificate = None;
        let w = journal_witness(&login);
        assert_eq!(w.key_type.as_deref(), Some("RSA"));
        assert!(w.key_fingerprint.is_some());
        assert_eq!(w.key_certificate, None);
        assert_eq!(w.sudo_decision, None);
    }

    /// The names written as text are serde's, so the wire and the JSON output agree.
    #[test]
    fn text_enums_match_the_json_output() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        for step in [
            PamStep::Start,
            PamStep::Authenticate,
            PamStep::Account,
            PamStep::OpenSession,
        ] {
            assert_eq!(pam_step_name(step), json(serde_json::to_value(step).unwrap()));
        }
        for reason in [SessionEndReason::Closed, SessionEndReason::ProcessExited] {
            assert_eq!(
                end_reason_name(reason),
                json(serde_json::to_value(reason).unwrap())
            );
        }
        for program in [
            Program::Sshd,
            Program::Sudo,
            Program::Su,
            Program::Login,
            Program::Logind,
        ] {
            assert_eq!(
                program_name(program),
                json(serde_json::to_value(program).unwrap())
            );
        }
        for outcome in [
            SudoOutcome::Allowed,
            SudoOutcome::IncorrectPassword { attempts: 3 },
            SudoOutcome::Denied {
                reason: "command not allowed".into(),
            },
        ] {
            let tagged = serde_json::to_value(&outcome).unwrap();
            assert_eq!(sudo_decision_name(&outcome), json(tagged["decision"].clone()));
        }
    }

    #[test]
    fn prost_round_trip_is_lossless() {
        for (event, _) in samples() {
            let wire = to_wire(&event);
            let bytes = wire.encode_to_vec();
            let back = pb::Event::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(back, wire, "seq {}", event.seq);
        }
    }

    #[test]
    fn kind_of_each_wire_event() {
        for (event, kind) in samples() {
            assert_eq!(to_wire(&event).kind(), kind, "seq {}", event.seq);
        }
        // The kind's name is the `kind` tag of the agent's JSON output.
        for (event, _) in samples() {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(to_wire(&event).kind().name(), json["kind"], "seq {}", event.seq);
        }
    }
}
