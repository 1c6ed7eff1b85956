//! One module per command, each with its clap `Args` and a `run`; here what
//! several share: the event filters, the period, JSON lines.

pub mod alerts;
pub mod bundle;
pub mod ca;
pub mod enroll;
pub mod events;
pub mod export;
#[cfg(test)]
mod fixtures;
pub mod hosts;
pub mod report;
pub mod revoke;
pub mod rules;
pub mod sessions;
pub mod stats;
pub mod tail;
pub mod verify;
pub mod who;

use std::io::Write;

use anyhow::{Context as _, bail};
use watchtower_model::{EventFilter, EventKind, Outcome};

use crate::timearg;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Filters {
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only this user (the login user, or the session's user for execs and connects).
    #[arg(long)]
    pub user: Option<String>,
    /// Only these kinds (repeatable): `login_attempt`, `session_start`, `session_end`,
    /// `exec`, `connect`, `login_verdict`, `agent_health`.
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only failed login attempts and verdicts.
    #[arg(long)]
    pub failed: bool,
    /// Only this session (16 hex digits; needs --host).
    #[arg(long)]
    pub session: Option<String>,
    /// Only events from or to this address.
    #[arg(long)]
    pub remote: Option<String>,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Period {
    /// How far back: 90s, 30m, 12h, 7d, 2w.
    #[arg(long)]
    pub since: Option<String>,
    /// From this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub from: Option<String>,
    /// Until this time (exclusive).
    #[arg(long)]
    pub to: Option<String>,
}

/// The server's filter for `filters` within `[from, to)`.
pub fn filter_of(filters: &Filters, (from, to): (u64, u64)) -> anyhow::Result<EventFilter> {
    let kinds = filters
        .kinds
        .iter()
        .map(|k| EventKind::from_name(k).with_context(|| format!("unknown kind {k:?}")))
        .collect::<anyhow::Result<_>>()?;
    let session = filters
        .session
        .as_deref()
        .map(|s| u64::from_str_radix(s, 16).with_context(|| format!("session {s:?} is not hex")))
        .transpose()?;
    if session.is_some() && filters.host.is_none() {
        bail!("--session needs --host (sessions are numbered per host)");
    }
    Ok(EventFilter {
        host_id: filters.host.clone().unwrap_or_default(),
        from_unix_ns: from,
        to_unix_ns: to,
        user: filters.user.clone().unwrap_or_default(),
        kinds,
        outcome: if filters.failed {
            Outcome::Failure
        } else {
            Outcome::Unspecified
        },
        session,
        remote_address: filters.remote.clone().unwrap_or_default(),
    })
}

/// `[from, to)` of `period` in Unix nanoseconds (0: unbounded).
pub fn range(period: &Period) -> anyhow::Result<(u64, u64)> {
    timearg::range(
        period.since.as_deref(),
        period.from.as_deref(),
        period.to.as_deref(),
    )
    .map_err(anyhow::Error::msg)
}

/// One JSON object on a line of standard output, flushed.
/// How `tail` and `alerts` write what they show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shown {
    /// For people: lines or a table.
    Text,
    /// One JSON object a line, as the server sends it (what `--json` gives).
    Json,
    /// One OCSF 1.8.0 event a line (alerts as Detection Findings), for a forwarder
    /// to pick up.
    Ocsf,
}

impl Shown {
    /// `--format` if given, else JSON under `--json`, else text.
    #[must_use]
    pub fn of(format: Option<Shown>, json: bool) -> Shown {
        format.unwrap_or(if json { Shown::Json } else { Shown::Text })
    }
}

pub fn json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write_json_line(&mut out, value)?;
    out.flush()?;
    Ok(())
}

/// One JSON object on a line of `out`: the one JSON-lines form of watchtowerctl
/// (`--json` output and `export --format jsonl`).
pub fn write_json_line(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_servers_filter() {
        let filters = Filters {
            host: Some("web-1".into()),
            user: Some("alice".into()),
            kinds: vec!["login_attempt".into(), "exec".into()],
            failed: true,
            session: Some("00000000000000ab".into()),
            remote: Some("10.0.0.9".into()),
        };
        let filter = filter_of(&filters, (10, 20)).unwrap();
        assert_eq!(
            filter,
            EventFilter {
                host_id: "web-1".into(),
                from_unix_ns: 10,
                to_unix_ns: 20,
                user: "alice".into(),
                kinds: vec![EventKind::LoginAttempt, EventKind::Exec],
                outcome: Outcome::Failure,
                session: Some(0xab),
                remote_address: "10.0.0.9".into(),
            }
        );
        assert_eq!(
            filter_of(&Filters::default(), (0, 0)).unwrap(),
            EventFilter::default()
        );
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let error = |filters: Filters| filter_of(&filters, (0, 0)).unwrap_err().to_string();
        assert_eq!(
            error(Filters {
                kinds: vec!["logins".into()],
                ..Filters::default()
            }),
            r#"unknown kind "logins""#
        );
        assert_eq!(
            error(Filters {
                host: Some("web-1".into()),
                session: Some("xyz".into()),
                ..Filters::default()
            }),
            r#"session "xyz" is not hex"#
        );
        assert_eq!(
            error(Filters {
                session: Some("ab".into()),
                ..Filters::default()
            }),
            "--session needs --host (sessions are numbered per host)"
        );
    }

    #[test]
    fn periods_and_their_errors() {
        let period = |since: Option<&str>, from: Option<&str>, to: Option<&str>| Period {
            since: since.map(Into::into),
            from: from.map(Into::into),
            to: to.map(Into::into),
        };
        assert_eq!(range(&Period::default()).unwrap(), (0, 0));
        assert_eq!(
            range(&period(None, Some("2023-11-14T22:13:20Z"), Some("1700000060"))).unwrap(),
            (1_700_000_000_000_000_000, 1_700_000_060_000_000_000)
        );
        assert_eq!(
            range(&period(Some("1h"), Some("0"), None))
                .unwrap_err()
                .to_string(),
            "give --since or --from, not both"
        );
        assert_eq!(
            range(&period(Some("3y"), None, None)).unwrap_err().to_string(),
            r#""3y": the unit must be s, m, h, d or w"#
        );
        assert!(
            range(&period(None, Some("yesterday"), None))
                .unwrap_err()
                .to_string()
                .starts_with(r#""yesterday" is neither RFC 3339 nor Unix seconds"#)
        );
    }
}
