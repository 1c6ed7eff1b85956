//! `alerts`: the alerts the server's rules raised in a period, oldest first.

use watchtower_model::Alert;

use crate::client::Client;
use crate::commands::{Period, Shown, json_line, range};
use crate::render::table;
use crate::timearg::format_ns;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub period: Period,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// text (a table, default), json (as `--json`), or ocsf: one OCSF Detection
    /// Finding a line.
    #[arg(long, value_enum)]
    pub format: Option<Shown>,
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let (from, to) = range(&args.period)?;
    let alerts = client.alerts(from, to, args.limit).await?;
    match Shown::of(args.format, json) {
        Shown::Json => {
            for alert in &alerts {
                json_line(alert)?;
            }
        }
        Shown::Ocsf => {
            for alert in &alerts {
                json_line(&watchtower_ocsf::alert(alert))?;
            }
        }
        Shown::Text => println!("{}", alerts_table(&alerts)),
    }
    Ok(())
}

fn alerts_table(alerts: &[Alert]) -> String {
    let rows = alerts.iter().map(|a| {
        vec![
            a.id.to_string(),
            format_ns(a.time_unix_ns),
            a.severity.clone(),
            a.rule.clone(),
            a.host_id.clone(),
            a.summary.clone(),
        ]
    });
    table(&["ID", "TIME", "SEVERITY", "RULE", "HOST", "SUMMARY"], rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_as_a_table() {
        let alerts = [Alert {
            id: 7,
            time_unix_ns: 1_700_000_000_000_000_000,
            rule: "root_login".into(),
            severity: "critical".into(),
            host_id: "web-1".into(),
            summary: "root logged in to web-1 from 10.0.0.9".into(),
            ..Alert::default()
        }];
        assert_eq!(
            alerts_table(&alerts),
            [
                " ID  TIME                      SEVERITY  RULE        HOST   SUMMARY                               ",
                " 7   2023-11-14T22:13:20.000Z  critical  root_login  web-1  root logged in to web-1 from 10.0.0.9 ",
            ]
            .join("\n")
        );
    }
}
