//! The wire form of events: the agent's [`Event`]s as `watchtower.v1` protobuf messages.
//!
//! Every field is carried over, typed (no JSON strings inside). Enums of the agent that
//! the contract keeps as text (the PAM step, the session end reason, the program, sudo's
//! decision) are written with the name each enum gives itself, the same one its JSON
//! form uses. The envelope's RFC 3339 `time` is not carried: it is
//! `time_unix_ns` formatted.

use watchtower_journal::{JournalLogin, Outcome as JournalOutcome};
use watchtower_proto::pb;

use crate::event::{
    AgentHealth, Connect, Event, EventBody, Exec, JournalHealth, KernelWitness, LoginAttempt, LoginVerdict,
    Outcome, Process, SessionEnd, SessionStart, SpoolHealth, Verdict, VerdictCounters,
};

/// The wire form of an event: every field carried over, typed (no JSON strings).
///
/// An `agent_health` event carries the spool's state when the agent ships to a server.
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
        euid: p.euid,
        loginuid: p.loginuid,
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
        failed_step: a.failed_step.map(|s| s.name().to_owned()),
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
        reason: s.reason.name().to_owned(),
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
        env: e.env.clone(),
        env_cut: e.env_cut,
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
        via: c.via.map(str::to_owned),
    }
}

fn login_verdict(v: &LoginVerdict) -> pb::LoginVerdict {
    pb::LoginVerdict {
        verdict: verdict(v.verdict),
        reason: v.reason.to_owned(),
        program: v.program.key().to_owned(),
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
        program: j.program.key().to_owned(),
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
        sudo_decision: sudo.map(|s| s.outcome.decision().to_owned()),
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
        spool: h.spool.as_ref().map(spool_health),
        log_witness: h.log_witness.as_ref().map(|w| pb::LogWitnessHealth {
            checkpoint_size: w.checkpoint_size,
            receipts_verified: w.receipts_verified,
            receipts_pending: w.receipts_pending,
            findings: w.findings.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            last_finding: w.last_finding.clone(),
        }),
        capture_start: h.capture_start.as_ref().map(|c| pb::CaptureStart {
            how: c.how.to_owned(),
            gap_from_unix_ns: c.gap_from_unix_ns,
            gap_to_unix_ns: c.gap_to_unix_ns,
        }),
        evicted: counts(&h.evicted),
    }
}

/// The spool's entry under `dropped` that is not a loss: records held in its
/// quarantine file, carried on the wire as `quarantined`.
const QUARANTINED: &str = "quarantined";

/// The spool's state on the wire (in health records and heartbeats). The spool
/// counts its quarantined records beside its drops; on the wire they have their
/// own field, so that `dropped` holds only what was lost.
#[must_use]
pub fn spool_health(s: &SpoolHealth) -> pb::SpoolHealth {
    pb::SpoolHealth {
        bytes: s.bytes,
        max_bytes: s.max_bytes,
        pending: s.pending,
        dropped: s
            .dropped
            .iter()
            .filter(|(k, _)| **k != QUARANTINED)
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        corrupt_records: s.corrupt_records,
        acked: s.acked,
        reconnects: s.reconnects,
        quarantined: s.dropped.get(QUARANTINED).copied().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
