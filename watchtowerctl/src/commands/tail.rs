//! `tail`: follow events as they are stored (and alerts as they are raised), one
//! line each, until Ctrl-C or `--count` lines.

use std::io::Write as _;

use anyhow::bail;
use watchtower_model::LiveItem;

use crate::client::{Client, status};
use crate::commands::{Filters, Shown, filter_of, json_line};
use crate::logins::Logins;
use crate::render::{row, tail_line};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filters: Filters,
    /// Do not show alerts.
    #[arg(long)]
    pub no_alerts: bool,
    /// Stop after this many lines.
    #[arg(long)]
    pub count: Option<usize>,
    /// text (default), json (as `--json`), or ocsf: one OCSF event a line, alerts
    /// as Detection Findings, for a forwarder to pick up.
    #[arg(long, value_enum)]
    pub format: Option<Shown>,
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let filter = filter_of(&args.filters, (0, 0))?;
    let mut live = client.subscribe(filter, !args.no_alerts).await?;
    let mut shown = 0usize;
    let mut logins = Logins::default();
    loop {
        let item = tokio::select! {
            item = live.message() => item,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(item) = item.map_err(status)? else {
            bail!("the server closed the tail");
        };
        // An item of a kind this build does not know (a newer server's) is skipped.
        let Ok(item) = LiveItem::try_from(item) else {
            continue;
        };
        match Shown::of(args.format, json) {
            Shown::Json => json_line(&item)?,
            Shown::Ocsf => {
                let event = match &item {
                    LiveItem::Stored(stored) => logins.ocsf(client, stored).await,
                    LiveItem::Alert(a) => watchtower_ocsf::alert(a),
                    LiveItem::Conflict(_) => continue,
                };
                json_line(&event)?;
            }
            Shown::Text => {
                let Some(line) = line(&item) else {
                    continue;
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
        shown += 1;
        if args.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}

/// The line of an event or an alert (none for a conflict).
fn line(item: &LiveItem) -> Option<String> {
    match item {
        LiveItem::Stored(stored) => Some(tail_line(&row(stored))),
        LiveItem::Alert(a) => Some(format!(
            "ALERT {} {} host={} {}",
            a.severity, a.rule, a.host_id, a.summary
        )),
        // The server sends tails the alert of a conflict, not the conflict.
        LiveItem::Conflict(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures;
    use watchtower_model::Alert;

    #[test]
    fn events_and_alerts_as_tail_lines() {
        let stored = LiveItem::Stored;
        assert_eq!(
            line(&stored(fixtures::failed_login())).unwrap(),
            "2023-11-14T22:13:20.000Z  web-1  9  login_attempt  alice  -  10.0.0.9  failure  sshd tty=ssh PAM_AUTH_ERR at authenticate"
        );
        assert_eq!(
            line(&stored(fixtures::exec())).unwrap(),
            "2023-11-14T22:13:21.500Z  web-1  10  exec  alice  00000000000000ab  -  -  id -un [/usr/bin/id]"
        );
        let alert = LiveItem::Alert(Alert {
            id: 1,
            rule: "failed_logins".into(),
            severity: "warning".into(),
            host_id: "web-1".into(),
            summary: "5 failed logins for alice from 10.0.0.9".into(),
            ..Alert::default()
        });
        assert_eq!(
            line(&alert).unwrap(),
            "ALERT warning failed_logins host=web-1 5 failed logins for alice from 10.0.0.9"
        );
        assert_eq!(line(&LiveItem::Conflict(fixtures::exec())), None);
    }
}
