//! `report`: the access review of a period (7 days unless given), built by
//! [`crate::report`] from the period's logins, verdicts and agent health, and the
//! addresses users logged in from during `--lookback` before it.

use std::collections::HashSet;
use std::fmt::Write as _;

use watchtower_model::{Body, EventFilter, EventKind, Outcome};

use crate::client::Client;
use crate::commands::{Period, json_line, range};
use crate::render::table;
use crate::report::{self as review, Report};
use crate::timearg::{self, now_ns};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub period: Period,
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Addresses seen within this long before the period are not new.
    #[arg(long, default_value = "90d")]
    pub lookback: String,
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let Args {
        period,
        host,
        lookback,
    } = args;
    let mut period = period.clone();
    if period.since.is_none() && period.from.is_none() {
        period.since = Some("7d".into());
    }
    let (from, to) = range(&period)?;
    let to_or_now = if to == 0 { now_ns() } else { to };
    let kinds = [
        EventKind::LoginAttempt,
        EventKind::SessionStart,
        EventKind::LoginVerdict,
        EventKind::AgentHealth,
    ];
    let filter = EventFilter {
        host_id: host.clone().unwrap_or_default(),
        from_unix_ns: from,
        to_unix_ns: to,
        kinds: kinds.to_vec(),
        ..EventFilter::default()
    };
    let events = client.collect(&filter).await?;
    let lookback = timearg::parse_span(lookback).map_err(anyhow::Error::msg)?;
    let before = EventFilter {
        host_id: host.clone().unwrap_or_default(),
        from_unix_ns: from.saturating_sub(lookback),
        to_unix_ns: from,
        kinds: vec![EventKind::LoginAttempt],
        outcome: Outcome::Success,
        ..EventFilter::default()
    };
    let known: HashSet<(String, String)> = client
        .collect(&before)
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            Some(Body::LoginAttempt(a)) => Some((a.user, a.remote_host?)),
            _ => None,
        })
        .collect();
    let review = review::build(&events, &known, from, to_or_now);
    if json {
        json_line(&review)?;
    } else {
        print!("{}", report_text(&review)?);
    }
    Ok(())
}

/// The review as text: one table per finding, each under its title.
#[expect(clippy::too_many_lines, reason = "one table per section of the review")]
fn report_text(r: &Report) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(out, "Access review {} .. {}\n", r.from, r.to)?;
    writeln!(out, "Failed logins by source")?;
    writeln!(
        out,
        "{}\n",
        table(
            &["SOURCE", "FAILURES", "USERS", "FIRST", "LAST"],
            r.failed_by_source.iter().map(|s| vec![
                s.address.clone(),
                s.failures.to_string(),
                s.users.join(","),
                s.first.clone(),
                s.last.clone()
            ])
        )
    )?;
    writeln!(out, "Failed logins by user")?;
    writeln!(
        out,
        "{}\n",
        table(
            &["USER", "FAILURES", "SOURCES"],
            r.failed_by_user.iter().map(|u| vec![
                u.user.clone(),
                u.failures.to_string(),
                u.sources.join(",")
            ])
        )
    )?;
    writeln!(out, "Root logins")?;
    writeln!(
        out,
        "{}\n",
        table(
            &["TIME", "HOST", "SERVICE", "FROM", "EVIDENCE", "SEQ"],
            r.root_logins.iter().map(|l| vec![
                l.time.clone(),
                l.host.clone(),
                l.service.clone(),
                l.from.clone(),
                l.evidence.clone(),
                l.seq.to_string()
            ])
        )
    )?;
    writeln!(out, "New source addresses per user")?;
    writeln!(
        out,
        "{}\n",
        table(
            &["USER", "ADDRESS", "FIRST", "HOST"],
            r.new_sources.iter().map(|n| vec![
                n.user.clone(),
                n.address.clone(),
                n.first.clone(),
                n.host.clone()
            ])
        )
    )?;
    writeln!(out, "Kernel/journal disagreements")?;
    writeln!(
        out,
        "{}\n",
        table(
            &["TIME", "HOST", "VERDICT", "PROGRAM", "USER", "REASON"],
            r.verdicts.iter().map(|v| vec![
                v.time.clone(),
                v.host.clone(),
                v.verdict.clone(),
                v.program.clone(),
                v.user.clone(),
                v.reason.clone()
            ])
        )
    )?;
    writeln!(out, "Agents that lost events")?;
    writeln!(
        out,
        "{}\n",
        table(
            &["HOST", "KERNEL LOST", "SPOOL DROPPED", "LAST REPORT"],
            r.agent_problems.iter().map(|p| vec![
                p.host.clone(),
                p.kernel_lost.to_string(),
                p.spool_dropped.to_string(),
                p.last_report.clone()
            ])
        )
    )?;
    writeln!(out, "Times nothing was captured")?;
    writeln!(
        out,
        "{}",
        table(
            &["HOST", "FROM", "TO", "SECONDS"],
            r.capture_gaps.iter().map(|g| vec![
                g.host.clone(),
                g.from.clone(),
                g.to.clone(),
                g.seconds.to_string()
            ])
        )
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{SourceFailures, UserFailures};

    #[test]
    fn a_review_as_text() {
        let r = Report {
            from: "2023-11-07T22:13:20.000Z".into(),
            to: "2023-11-14T22:13:20.000Z".into(),
            failed_by_source: vec![SourceFailures {
                address: "10.0.0.9".into(),
                failures: 5,
                users: vec!["alice".into(), "root".into()],
                first: "2023-11-14T22:13:20.000Z".into(),
                last: "2023-11-14T22:14:20.000Z".into(),
            }],
            failed_by_user: vec![UserFailures {
                user: "alice".into(),
                failures: 4,
                sources: vec!["10.0.0.9".into()],
            }],
            ..Report::default()
        };
        let text = report_text(&r).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "Access review 2023-11-07T22:13:20.000Z .. 2023-11-14T22:13:20.000Z",
                "",
                "Failed logins by source",
                " SOURCE    FAILURES  USERS       FIRST                     LAST",
                " 10.0.0.9  5         alice,root  2023-11-14T22:13:20.000Z  2023-11-14T22:14:20.000Z",
                "",
                "Failed logins by user",
                " USER   FAILURES  SOURCES",
                " alice  4         10.0.0.9",
                "",
                "Root logins",
                " TIME  HOST  SERVICE  FROM  EVIDENCE  SEQ",
                "",
                "New source addresses per user",
                " USER  ADDRESS  FIRST  HOST",
                "",
                "Kernel/journal disagreements",
                " TIME  HOST  VERDICT  PROGRAM  USER  REASON",
                "",
                "Agents that lost events",
                " HOST  KERNEL LOST  SPOOL DROPPED  LAST REPORT",
                "",
                "Times nothing was captured",
                " HOST  FROM  TO  SECONDS",
            ]
        );
        assert!(text.ends_with("SECONDS \n"));
    }
}
