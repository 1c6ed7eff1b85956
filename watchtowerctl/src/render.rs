//! Events as rows: for tables, tails and CSV.

use comfy_table::{Table, presets};
use watchtower_model::{Body, Event, Outcome, StoredEvent};

use crate::timearg::{format_ns, format_span};

/// One event, flattened.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub time: String,
    pub time_unix_ns: u64,
    pub host_id: String,
    pub boot_id: String,
    pub seq: u64,
    pub kind: String,
    pub user: String,
    pub session: String,
    pub remote: String,
    pub outcome: String,
    pub service: String,
    pub detail: String,
    pub received_unix_ns: u64,
}

fn session(s: Option<u64>) -> String {
    s.filter(|s| *s != 0)
        .map(|s| format!("{s:016x}"))
        .unwrap_or_default()
}

fn outcome(o: Outcome) -> String {
    o.name().to_owned()
}

fn opt(s: Option<&String>) -> String {
    s.cloned().unwrap_or_default()
}

/// The row of an event.
#[must_use]
#[expect(clippy::too_many_lines, reason = "one arm per event kind")]
pub fn row(stored: &StoredEvent) -> Row {
    let Some(event) = &stored.event else {
        return Row::default();
    };
    let Event {
        host_id,
        boot_id,
        seq,
        time_unix_ns,
        body,
    } = event;
    let mut row = Row {
        time: format_ns(*time_unix_ns),
        time_unix_ns: *time_unix_ns,
        host_id: host_id.clone(),
        boot_id: boot_id.clone(),
        seq: *seq,
        kind: event.kind().name().to_owned(),
        received_unix_ns: stored.received_unix_ns,
        ..Row::default()
    };
    match body {
        Some(Body::LoginAttempt(a)) => {
            row.user.clone_from(&a.user);
            row.session = session(a.from_session);
            row.remote = opt(a.remote_host.as_ref());
            row.outcome = outcome(a.outcome);
            row.service.clone_from(&a.service);
            row.detail = format!(
                "tty={} {}{}",
                a.tty.as_deref().unwrap_or("-"),
                a.pam_code_name,
                a.failed_step
                    .as_deref()
                    .map_or_else(String::new, |s| format!(" at {s}"))
            );
        }
        Some(Body::SessionStart(s)) => {
            row.user.clone_from(&s.user);
            row.session = session(Some(s.session));
            row.remote = opt(s.remote_host.as_ref());
            row.service.clone_from(&s.service);
            row.detail = format!(
                "tty={}{}",
                s.tty.as_deref().unwrap_or("-"),
                s.parent_session
                    .map_or_else(String::new, |p| format!(" parent={p:016x}"))
            );
        }
        Some(Body::SessionEnd(s)) => {
            row.user.clone_from(&s.user);
            row.session = session(Some(s.session));
            row.remote = opt(s.remote_host.as_ref());
            row.service.clone_from(&s.service);
            row.detail = format!(
                "{} after {}, {} execs, {} connects",
                s.reason,
                format_span(s.duration_ns),
                s.execs,
                s.connects
            );
        }
        Some(Body::Exec(e)) => {
            row.user = opt(e.session_user.as_ref());
            row.session = session(e.session);
            let args = if e.argv.is_empty() {
                e.filename.clone()
            } else {
                e.argv.join(" ")
            };
            row.detail = format!(
                "{}{}{}",
                args,
                if e.argv_truncated { " …" } else { "" },
                e.error
                    .as_deref()
                    .map_or_else(String::new, |err| format!(" ({err})"))
            );
            if e.filename != e.argv.first().map_or("", String::as_str) {
                row.detail = format!("{} [{}]", row.detail, e.filename);
            }
        }
        Some(Body::Connect(c)) => {
            row.user = opt(c.session_user.as_ref());
            row.session = session(c.session);
            row.remote.clone_from(&c.address);
            row.detail = format!(
                "{} {}{}{}",
                c.family,
                c.address,
                c.port.map_or_else(String::new, |p| format!(":{p}")),
                c.error
                    .as_deref()
                    .map_or_else(String::new, |err| format!(" ({err})"))
            );
        }
        Some(Body::LoginVerdict(v)) => {
            row.user.clone_from(&v.user);
            row.remote = opt(v.remote_address.as_ref());
            row.outcome = outcome(v.outcome);
            row.service.clone_from(&v.program);
            row.detail = format!("{}: {}", v.verdict.name(), v.reason);
        }
        Some(Body::AgentHealth(h)) => {
            let spool = h.spool.clone().unwrap_or_default();
            let lost: u64 = h.lost.values().sum();
            let dropped: u64 = spool.dropped.values().sum();
            row.detail = format!(
                "{} mode={} pending={} kernel_lost={lost} spool_dropped={dropped}",
                h.reason, h.mode, spool.pending
            );
        }
        None => {}
    }
    row
}

/// Cut a cell for a table (not for CSV or JSON).
#[must_use]
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// An aligned table without borders.
#[must_use]
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    table
}

pub const EVENT_HEADER: [&str; 9] = [
    "TIME", "HOST", "SEQ", "KIND", "USER", "SESSION", "REMOTE", "OUTCOME", "DETAIL",
];

#[must_use]
pub fn event_cells(r: &Row) -> Vec<String> {
    vec![
        r.time.clone(),
        r.host_id.clone(),
        r.seq.to_string(),
        r.kind.clone(),
        r.user.clone(),
        r.session.clone(),
        r.remote.clone(),
        r.outcome.clone(),
        clip(format!("{} {}", r.service, r.detail).trim(), 90),
    ]
}

/// The `message` of an event's OCSF form: its row without the time and the host.
#[must_use]
pub fn ocsf_message(stored: &StoredEvent) -> Option<String> {
    let r = row(stored);
    let text = [&r.kind, &r.user, &r.remote, &r.outcome, &r.service, &r.detail]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

/// An event as one OCSF event, without looking up its login.
#[must_use]
pub fn ocsf_event(stored: &StoredEvent) -> serde_json::Value {
    watchtower_ocsf::event(stored, ocsf_message(stored))
}

/// A tail line: the same cells, space-separated, nothing empty.
#[must_use]
pub fn tail_line(r: &Row) -> String {
    event_cells(r)
        .into_iter()
        .map(|c| if c.is_empty() { "-".to_owned() } else { c })
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_model::{Exec, LoginAttempt};

    fn stored(body: Body) -> StoredEvent {
        StoredEvent {
            event: Some(Event {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq: 9,
                time_unix_ns: 1_700_000_000_000_000_000,
                body: Some(body),
            }),
            received_unix_ns: 1,
            ..StoredEvent::default()
        }
    }

    #[test]
    fn a_failed_login_and_an_exec_as_rows() {
        let r = row(&stored(Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("10.0.0.9".into()),
            tty: Some("ssh".into()),
            outcome: Outcome::Failure,
            failed_step: Some("authenticate".into()),
            pam_code_name: "PAM_AUTH_ERR".into(),
            ..LoginAttempt::default()
        })));
        assert_eq!(
            (
                r.kind.as_str(),
                r.user.as_str(),
                r.remote.as_str(),
                r.outcome.as_str()
            ),
            ("login_attempt", "alice", "10.0.0.9", "failure")
        );
        assert_eq!(r.detail, "tty=ssh PAM_AUTH_ERR at authenticate");
        assert_eq!(
            tail_line(&r),
            "2023-11-14T22:13:20.000Z  web-1  9  login_attempt  alice  -  10.0.0.9  failure  sshd tty=ssh PAM_AUTH_ERR at authenticate"
        );
        let r = row(&stored(Body::Exec(Exec {
            session: Some(0xab),
            session_user: Some("alice".into()),
            filename: "/usr/bin/id".into(),
            argv: vec!["id".into(), "-un".into()],
            ..Exec::default()
        })));
        assert_eq!(r.session, "00000000000000ab");
        assert_eq!(r.detail, "id -un [/usr/bin/id]");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
