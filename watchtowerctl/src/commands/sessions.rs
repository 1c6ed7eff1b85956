//! `sessions`: logins as sessions (a table, or JSON lines of summaries), and
//! `sessions show HOST SESSION`: one session as a tree of its events.

use std::collections::HashMap;

use anyhow::Context as _;
use clap::Subcommand;
use watchtower_model::{Body, Event, EventKind, SessionSummary};

use crate::client::{Client, SessionTree};
use crate::commands::{Filters, Period, filter_of, json_line, range};
use crate::render::{row, table};
use crate::timearg::{format_ns, format_span};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub show: Option<SessionCommand>,
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub period: Period,
    /// At most this many sessions.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// One session as a tree: its execs and connects, and the sessions (su, sudo)
    /// opened inside it with theirs.
    Show { host: String, session: String },
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    match &args.show {
        Some(SessionCommand::Show { host, session }) => show(host, session, client, json).await,
        None => list(args, client, json).await,
    }
}

async fn show(host: &str, session: &str, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let id = u64::from_str_radix(session, 16).with_context(|| format!("session {session:?} is not hex"))?;
    let tree = client.session(host, id).await?;
    if json {
        return json_line(&tree);
    }
    for line in tree_lines(tree) {
        println!("{line}");
    }
    Ok(())
}

/// `sessions show`'s lines: the session, then its events indented by depth.
fn tree_lines(tree: SessionTree) -> Vec<String> {
    let mut lines = Vec::new();
    let s = tree.summary.unwrap_or_default();
    lines.push(format!(
        "session {:016x} on {}: {} through {} from {} tty {}",
        s.session,
        s.host_id,
        s.user,
        s.service,
        s.remote_host.as_deref().unwrap_or("local"),
        s.tty.as_deref().unwrap_or("-")
    ));
    let end = if s.end_unix_ns == 0 {
        "still open".to_owned()
    } else {
        format!(
            "ended {} ({}) after {}",
            format_ns(s.end_unix_ns),
            s.end_reason.as_deref().unwrap_or("-"),
            format_span(s.end_unix_ns.saturating_sub(s.start_unix_ns))
        )
    };
    lines.push(format!(
        "started {}, {end}; {} execs, {} connects",
        format_ns(s.start_unix_ns),
        s.execs,
        s.connects
    ));
    // Depth of each session in the tree.
    let mut depth = HashMap::from([(s.session, 0usize)]);
    for stored in &tree.events {
        if let Some(Event {
            body: Some(Body::SessionStart(start)),
            ..
        }) = &stored.event
            && let Some(parent) = start.parent_session
        {
            let d = depth.get(&parent).copied().unwrap_or(0) + 1;
            depth.entry(start.session).or_insert(d);
        }
    }
    for stored in &tree.events {
        let r = row(stored);
        let own = u64::from_str_radix(&r.session, 16).unwrap_or(s.session);
        let d = depth.get(&own).copied().unwrap_or(0);
        lines.push(format!(
            "{}{}  {:<14} {:<10} {} {}",
            "  ".repeat(d + 1),
            r.time,
            r.kind,
            r.user,
            r.service,
            r.detail
        ));
    }
    if tree.truncated {
        lines.push("(truncated: the session has more events)".to_owned());
    }
    lines
}

async fn list(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let mut filter = filter_of(&args.filters, range(&args.period)?)?;
    filter.kinds = vec![EventKind::SessionStart];
    let starts = client.collect(&filter).await?;
    let mut rows = Vec::new();
    for start in starts.iter().take(args.limit) {
        let Some(Body::SessionStart(s)) = &start.body else {
            continue;
        };
        let summary = client
            .session(&start.host_id, s.session)
            .await?
            .summary
            .unwrap_or_default();
        if json {
            json_line(&summary)?;
            continue;
        }
        rows.push(summary_cells(&summary));
    }
    if !json {
        println!(
            "{}",
            table(
                &[
                    "HOST", "SESSION", "USER", "SERVICE", "FROM", "TTY", "START", "DURATION", "EXECS",
                    "CONNECTS", "END"
                ],
                rows
            )
        );
    }
    Ok(())
}

/// A session's row in the `sessions` table.
fn summary_cells(summary: &SessionSummary) -> Vec<String> {
    let duration = if summary.end_unix_ns == 0 {
        "open".to_owned()
    } else {
        format_span(summary.end_unix_ns.saturating_sub(summary.start_unix_ns))
    };
    vec![
        summary.host_id.clone(),
        format!("{:016x}", summary.session),
        summary.user.clone(),
        summary.service.clone(),
        summary.remote_host.clone().unwrap_or_else(|| "local".into()),
        summary.tty.clone().unwrap_or_default(),
        format_ns(summary.start_unix_ns),
        duration,
        summary.execs.to_string(),
        summary.connects.to_string(),
        summary.end_reason.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures;

    fn summary() -> SessionSummary {
        SessionSummary {
            host_id: "web-1".into(),
            session: 0xab,
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("10.0.0.9".into()),
            tty: Some("pts/0".into()),
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_003_725_000_000_000,
            end_reason: Some("logout".into()),
            execs: 1,
            connects: 0,
            ..SessionSummary::default()
        }
    }

    #[test]
    fn a_session_as_a_row() {
        assert_eq!(
            summary_cells(&summary()),
            [
                "web-1",
                "00000000000000ab",
                "alice",
                "sshd",
                "10.0.0.9",
                "pts/0",
                "2023-11-14T22:13:20.000Z",
                "1h 02m",
                "1",
                "0",
                "logout"
            ]
        );
        let open = SessionSummary {
            end_unix_ns: 0,
            remote_host: None,
            end_reason: None,
            ..summary()
        };
        let cells = summary_cells(&open);
        assert_eq!(
            (cells[4].as_str(), cells[7].as_str(), cells[10].as_str()),
            ("local", "open", "")
        );
    }

    #[test]
    fn a_session_as_a_tree() {
        let tree = SessionTree {
            summary: Some(summary()),
            events: vec![fixtures::exec()],
            truncated: true,
        };
        assert_eq!(
            tree_lines(tree),
            [
                "session 00000000000000ab on web-1: alice through sshd from 10.0.0.9 tty pts/0",
                "started 2023-11-14T22:13:20.000Z, ended 2023-11-14T23:15:25.000Z (logout) after 1h 02m; 1 execs, 0 connects",
                "  2023-11-14T22:13:21.500Z  exec           alice       id -un [/usr/bin/id]",
                "(truncated: the session has more events)",
            ]
        );
    }
}
