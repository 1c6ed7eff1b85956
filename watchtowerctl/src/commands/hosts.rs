//! `hosts`: every host's agent, last heartbeat, stale or not, spool and loss
//! counters, the events its agent holds in quarantine (refused by the server as
//! invalid, kept on the host), labels and certificate expiry.

use std::collections::BTreeMap;

use watchtower_model::HostInfo;

use crate::client::Client;
use crate::commands::json_line;
use crate::render::table;
use crate::timearg::{format_ns, format_span, now_ns};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An agent not heard from for this many seconds is stale.
    #[arg(long, default_value_t = 120)]
    pub stale_after: u64,
}

const HEADER: [&str; 13] = [
    "HOST",
    "AGENT",
    "CONNECTED",
    "LAST HEARTBEAT",
    "STATE",
    "EVENTS",
    "DUPLICATES",
    "LAST SEQ",
    "SPOOL",
    "LOST",
    "QUARANTINED",
    "LABELS",
    "CERT EXPIRES",
];

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let hosts = client.hosts().await?;
    let now = now_ns();
    let mut rows = Vec::new();
    for h in hosts {
        let stale = is_stale(&h, now, args.stale_after);
        if json {
            let mut v = serde_json::to_value(&h)?;
            v["stale"] = stale.into();
            json_line(&v)?;
            continue;
        }
        rows.push(host_cells(&h, now, stale));
    }
    if !json {
        println!("{}", table(&HEADER, rows));
    }
    Ok(())
}

/// Not connected, and never heard from or silent for more than `stale_after` seconds.
fn is_stale(h: &HostInfo, now_ns: u64, stale_after: u64) -> bool {
    let silent = now_ns.saturating_sub(h.last_heartbeat_unix_ns);
    // Heartbeats alone tell: a connection held open without them is stale too.
    h.last_heartbeat_unix_ns == 0 || silent > stale_after * 1_000_000_000
}

/// A host's row in the table.
fn host_cells(h: &HostInfo, now: u64, stale: bool) -> Vec<String> {
    let silent = now.saturating_sub(h.last_heartbeat_unix_ns);
    let spool = h.spool.clone().unwrap_or_default();
    let dropped: u64 = spool.dropped.values().sum();
    let kernel: u64 = h.kernel_lost.values().sum();
    vec![
        h.host_id.clone(),
        h.agent_version.clone(),
        if h.connected { "yes" } else { "no" }.into(),
        if h.last_heartbeat_unix_ns == 0 {
            "never".into()
        } else {
            format!("{} ago", format_span(silent))
        },
        if stale { "STALE" } else { "ok" }.into(),
        h.events_stored.to_string(),
        h.duplicates.to_string(),
        h.last_seq.to_string(),
        format!("{} / {} B", spool.pending, spool.bytes),
        format!("{dropped} spool, {kernel} kernel"),
        spool.quarantined.to_string(),
        h.labels
            .iter()
            .collect::<BTreeMap<_, _>>()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        cert_expiry(h.cert_not_after_unix_s, now),
    ]
}

/// A certificate's expiry for the hosts table: the date and how long is left.
fn cert_expiry(not_after_unix_s: i64, now_ns: u64) -> String {
    if not_after_unix_s <= 0 {
        return "-".into();
    }
    let at = not_after_unix_s as u64 * 1_000_000_000;
    let date = format_ns(at);
    let date = date.split(['T', ' ']).next().unwrap_or(&date).to_owned();
    if at <= now_ns {
        format!("{date} (EXPIRED)")
    } else {
        format!("{date} (in {})", format_span(at - now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_model::SpoolHealth;

    const NOW: u64 = 1_700_000_000_000_000_000;

    fn host() -> HostInfo {
        HostInfo {
            host_id: "web-1".into(),
            agent_version: "0.1.0".into(),
            last_heartbeat_unix_ns: NOW - 300 * 1_000_000_000,
            last_seq: 41,
            events_stored: 42,
            duplicates: 1,
            spool: Some(SpoolHealth {
                pending: 3,
                bytes: 512,
                dropped: [("exec".to_owned(), 2)].into_iter().collect(),
                quarantined: 1,
                ..SpoolHealth::default()
            }),
            kernel_lost: [("connect".to_owned(), 5)].into_iter().collect(),
            labels: [("region", "eu-west"), ("group", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            cert_not_after_unix_s: 1_700_000_000 + 30 * 86_400,
            ..HostInfo::default()
        }
    }

    #[test]
    fn a_silent_host_is_stale_even_with_its_connection_held_open() {
        let h = host();
        assert!(is_stale(&h, NOW, 120));
        assert!(!is_stale(&h, NOW, 600));
        // A connection kept open without heartbeats (the agent killed) is no excuse.
        assert!(is_stale(
            &HostInfo {
                connected: true,
                ..host()
            },
            NOW,
            120
        ));
        assert!(is_stale(
            &HostInfo {
                last_heartbeat_unix_ns: 0,
                ..host()
            },
            NOW,
            600
        ));
    }

    #[test]
    fn a_host_as_a_row() {
        assert_eq!(
            host_cells(&host(), NOW, true),
            [
                "web-1",
                "0.1.0",
                "no",
                "5m 00s ago",
                "STALE",
                "42",
                "1",
                "41",
                "3 / 512 B",
                "2 spool, 5 kernel",
                "1",
                "group=web,region=eu-west",
                "2023-12-14 (in 30d 00h)",
            ]
        );
        let never = host_cells(
            &HostInfo {
                last_heartbeat_unix_ns: 0,
                cert_not_after_unix_s: 0,
                ..host()
            },
            NOW,
            false,
        );
        assert_eq!(
            (never[3].as_str(), never[4].as_str(), never[12].as_str()),
            ("never", "ok", "-")
        );
    }

    #[test]
    fn expired_certificates_say_so() {
        assert_eq!(cert_expiry(1_600_000_000, NOW), "2020-09-13 (EXPIRED)");
        assert_eq!(cert_expiry(-1, NOW), "-");
    }
}
