//! Ingest limits: how large each variable-size field of an event, and the event
//! itself, may be before the server refuses it (with a precise reason, see
//! [`InvalidEvent::reason`]), and how far ahead of the server's clock an event's
//! time may be before it is stored with a flag ([`time_ahead`]).
//!
//! The limits are far above what an agent writes itself (PAM strings are at most
//! 128 bytes in the kernel and unix socket paths 108, file names 256, 16 arguments
//! of 128 bytes, sshd's log lines cut user names at 100 characters; the agent
//! decodes kernel bytes lossily, so each invalid byte may become 3), so only a
//! broken or hostile sender meets them. Texts that become index keys (users, remote addresses) must also be
//! free of NUL bytes: `text 0` is how the store ends them ([`crate::store::keys`]).
//!
//! | class | fields | at most |
//! |-------|--------|---------|
//! | name  | user, service, host, tty, address, comm, program, reasons, map keys, ... | [`MAX_NAME_BYTES`] |
//! | text  | file name, argv and env items, commands, journal lines, cursors, errors | [`MAX_TEXT_BYTES`] |
//! | list  | argv, env, journal lines, probes, every counter map | [`MAX_VALUES`] values |
//! | event | the whole event, protobuf-encoded | [`MAX_EVENT_BYTES`] |

use std::collections::HashMap;

use watchtower_model::{
    AgentHealth, Body, Connect, Event, Exec, JournalWitness, KernelWitness, LoginAttempt, LoginVerdict,
    Process, SessionEnd, SessionStart,
};

use super::InvalidEvent;

/// Names: users, services, hosts, ttys, addresses, programs, reasons, map keys.
/// A 128-byte kernel string of invalid UTF-8 becomes 384 bytes of U+FFFD.
pub const MAX_NAME_BYTES: usize = 512;
/// Free text: file names, arguments, commands, journal lines, errors.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Values in one repeated field or map.
pub const MAX_VALUES: usize = 64;
/// One event, protobuf-encoded.
pub const MAX_EVENT_BYTES: usize = 128 * 1024;
/// An event's time more than this ahead of the server's receive time is flagged.
pub const MAX_AHEAD_NS: u64 = 10 * 60 * 1_000_000_000;

/// Whether `event` claims a time more than [`MAX_AHEAD_NS`] after `received_unix_ns`.
#[must_use]
pub fn time_ahead(event: &Event, received_unix_ns: u64) -> bool {
    event.time_unix_ns.saturating_sub(received_unix_ns) > MAX_AHEAD_NS
}

/// The size checks of one event (its seq names it in every refusal).
struct Sizes {
    seq: u64,
}

impl Sizes {
    fn bytes(&self, field: &'static str, value: &str, max: usize) -> Result<(), InvalidEvent> {
        if value.len() > max {
            return Err(InvalidEvent::FieldTooLong {
                seq: self.seq,
                field,
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    fn name(&self, field: &'static str, value: &str) -> Result<(), InvalidEvent> {
        self.bytes(field, value, MAX_NAME_BYTES)
    }

    fn text(&self, field: &'static str, value: &str) -> Result<(), InvalidEvent> {
        self.bytes(field, value, MAX_TEXT_BYTES)
    }

    fn names(&self, fields: &[(&'static str, Option<&str>)]) -> Result<(), InvalidEvent> {
        for (field, value) in fields {
            if let Some(value) = value {
                self.name(field, value)?;
            }
        }
        Ok(())
    }

    fn texts(&self, fields: &[(&'static str, Option<&str>)]) -> Result<(), InvalidEvent> {
        for (field, value) in fields {
            if let Some(value) = value {
                self.text(field, value)?;
            }
        }
        Ok(())
    }

    fn count(&self, field: &'static str, count: usize) -> Result<(), InvalidEvent> {
        if count > MAX_VALUES {
            return Err(InvalidEvent::TooManyValues {
                seq: self.seq,
                field,
                count,
                max: MAX_VALUES,
            });
        }
        Ok(())
    }

    fn list(&self, field: &'static str, values: &[String], max: usize) -> Result<(), InvalidEvent> {
        self.count(field, values.len())?;
        values.iter().try_for_each(|v| self.bytes(field, v, max))
    }

    fn counters(&self, field: &'static str, map: &HashMap<String, u64>) -> Result<(), InvalidEvent> {
        self.count(field, map.len())?;
        map.keys().try_for_each(|k| self.name(field, k))
    }

    fn process(&self, field: &'static str, process: Option<&Process>) -> Result<(), InvalidEvent> {
        process.map_or(Ok(()), |p| self.name(field, &p.comm))
    }
}

/// Check every variable-size field of `event`, and its size as it came
/// (`encoded_bytes`, protobuf-encoded).
pub(super) fn check_sizes(event: &Event, encoded_bytes: usize) -> Result<(), InvalidEvent> {
    let bytes = encoded_bytes;
    if bytes > MAX_EVENT_BYTES {
        return Err(InvalidEvent::EventTooLarge {
            seq: event.seq,
            bytes,
            max: MAX_EVENT_BYTES,
        });
    }
    let sizes = Sizes { seq: event.seq };
    match &event.body {
        Some(Body::LoginAttempt(a)) => login_attempt(&sizes, a),
        Some(Body::SessionStart(s)) => session_start(&sizes, s),
        Some(Body::SessionEnd(s)) => session_end(&sizes, s),
        Some(Body::Exec(e)) => exec(&sizes, e),
        Some(Body::Connect(c)) => connect(&sizes, c),
        Some(Body::LoginVerdict(v)) => login_verdict(&sizes, v),
        Some(Body::AgentHealth(h)) => agent_health(&sizes, h),
        None => Ok(()),
    }
}

fn login_attempt(s: &Sizes, a: &LoginAttempt) -> Result<(), InvalidEvent> {
    s.names(&[
        ("login_attempt.service", Some(&a.service)),
        ("login_attempt.user", Some(&a.user)),
        ("login_attempt.remote_host", a.remote_host.as_deref()),
        ("login_attempt.tty", a.tty.as_deref()),
        ("login_attempt.remote_user", a.remote_user.as_deref()),
        ("login_attempt.failed_step", a.failed_step.as_deref()),
        ("login_attempt.pam_code_name", Some(&a.pam_code_name)),
    ])?;
    s.process("login_attempt.process.comm", a.process.as_ref())
}

fn session_start(s: &Sizes, x: &SessionStart) -> Result<(), InvalidEvent> {
    s.names(&[
        ("session_start.service", Some(&x.service)),
        ("session_start.user", Some(&x.user)),
        ("session_start.remote_host", x.remote_host.as_deref()),
        ("session_start.tty", x.tty.as_deref()),
        ("session_start.remote_user", x.remote_user.as_deref()),
    ])?;
    s.process("session_start.process.comm", x.process.as_ref())
}

fn session_end(s: &Sizes, x: &SessionEnd) -> Result<(), InvalidEvent> {
    s.names(&[
        ("session_end.service", Some(&x.service)),
        ("session_end.user", Some(&x.user)),
        ("session_end.remote_host", x.remote_host.as_deref()),
        ("session_end.reason", Some(&x.reason)),
    ])?;
    s.process("session_end.process.comm", x.process.as_ref())
}

fn exec(s: &Sizes, e: &Exec) -> Result<(), InvalidEvent> {
    s.names(&[
        ("exec.session_user", e.session_user.as_deref()),
        ("exec.error", e.error.as_deref()),
    ])?;
    s.text("exec.filename", &e.filename)?;
    s.list("exec.argv", &e.argv, MAX_TEXT_BYTES)?;
    s.list("exec.env", &e.env, MAX_TEXT_BYTES)?;
    s.process("exec.process.comm", e.process.as_ref())
}

fn connect(s: &Sizes, c: &Connect) -> Result<(), InvalidEvent> {
    s.names(&[
        ("connect.session_user", c.session_user.as_deref()),
        ("connect.family", Some(&c.family)),
        ("connect.address", Some(&c.address)),
        ("connect.error", c.error.as_deref()),
    ])?;
    s.process("connect.process.comm", c.process.as_ref())
}

fn login_verdict(s: &Sizes, v: &LoginVerdict) -> Result<(), InvalidEvent> {
    s.names(&[
        ("login_verdict.reason", Some(&v.reason)),
        ("login_verdict.program", Some(&v.program)),
        ("login_verdict.user", Some(&v.user)),
        ("login_verdict.auth_method", v.auth_method.as_deref()),
        ("login_verdict.key_fingerprint", v.key_fingerprint.as_deref()),
        ("login_verdict.remote_address", v.remote_address.as_deref()),
    ])?;
    s.text("login_verdict.command", v.command.as_deref().unwrap_or_default())?;
    if let Some(k) = &v.kernel {
        kernel_witness(s, k)?;
    }
    if let Some(j) = &v.journal {
        journal_witness(s, j)?;
    }
    Ok(())
}

fn kernel_witness(s: &Sizes, k: &KernelWitness) -> Result<(), InvalidEvent> {
    s.names(&[
        ("login_verdict.kernel.service", Some(&k.service)),
        ("login_verdict.kernel.user", Some(&k.user)),
        ("login_verdict.kernel.remote_host", k.remote_host.as_deref()),
    ])
}

fn journal_witness(s: &Sizes, j: &JournalWitness) -> Result<(), InvalidEvent> {
    s.names(&[
        ("login_verdict.journal.program", Some(&j.program)),
        ("login_verdict.journal.user", Some(&j.user)),
        ("login_verdict.journal.method", j.method.as_deref()),
        ("login_verdict.journal.key_type", j.key_type.as_deref()),
        (
            "login_verdict.journal.key_fingerprint",
            j.key_fingerprint.as_deref(),
        ),
        (
            "login_verdict.journal.remote_address",
            j.remote_address.as_deref(),
        ),
        ("login_verdict.journal.tty", j.tty.as_deref()),
        ("login_verdict.journal.by_user", j.by_user.as_deref()),
        ("login_verdict.journal.sudo_user", j.sudo_user.as_deref()),
        ("login_verdict.journal.sudo_decision", j.sudo_decision.as_deref()),
        (
            "login_verdict.journal.sudo_target_user",
            j.sudo_target_user.as_deref(),
        ),
        ("login_verdict.journal.writer_comm", j.writer_comm.as_deref()),
        (
            "login_verdict.journal.writer_identifier",
            Some(&j.writer_identifier),
        ),
    ])?;
    s.texts(&[
        (
            "login_verdict.journal.key_certificate",
            j.key_certificate.as_deref(),
        ),
        ("login_verdict.journal.sudo_pwd", j.sudo_pwd.as_deref()),
        ("login_verdict.journal.sudo_command", j.sudo_command.as_deref()),
        ("login_verdict.journal.cursor", Some(&j.cursor)),
        ("login_verdict.journal.writer_exe", j.writer_exe.as_deref()),
    ])?;
    s.list("login_verdict.journal.lines", &j.lines, MAX_TEXT_BYTES)
}

fn agent_health(s: &Sizes, h: &AgentHealth) -> Result<(), InvalidEvent> {
    s.names(&[
        ("agent_health.reason", Some(&h.reason)),
        ("agent_health.mode", Some(&h.mode)),
        ("agent_health.scope", Some(&h.scope)),
    ])?;
    s.text(
        "agent_health.kernel_unavailable",
        h.kernel_unavailable.as_deref().unwrap_or_default(),
    )?;
    if let Some(j) = &h.journal {
        s.name("agent_health.journal.state", &j.state)?;
        s.text(
            "agent_health.journal.error",
            j.error.as_deref().unwrap_or_default(),
        )?;
    }
    s.list("agent_health.probes", &h.probes, MAX_NAME_BYTES)?;
    s.counters("agent_health.lost", &h.lost)?;
    s.counters("agent_health.out_of_scope", &h.out_of_scope)?;
    if let Some(spool) = &h.spool {
        s.counters("agent_health.spool.dropped", &spool.dropped)?;
    }
    Ok(())
}

/// Check a heartbeat's spool state before it is kept in the host's record.
pub fn check_spool_health(spool: &watchtower_model::SpoolHealth) -> Result<(), InvalidEvent> {
    Sizes { seq: 0 }.counters("heartbeat.spool.dropped", &spool.dropped)
}
