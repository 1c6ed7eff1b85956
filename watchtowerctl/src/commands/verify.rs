//! `verify`: the server checks the stored events against the tamper-evidence log;
//! here the latest signed checkpoint is checked (against `--public-key` if given)
//! and every finding named. Exit code 1 when anything is wrong.

use std::path::PathBuf;

use anyhow::Context as _;
use watchtower_proto::pb::VerifyReport;

use crate::client::Client;
use crate::commands::json_line;
use crate::timearg::format_ns;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this host's records (the log itself is always checked whole).
    #[arg(long)]
    pub host: Option<String>,
    /// The server's Ed25519 public key (hex, as in checkpoint-signing.pub) to pin.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
}

/// The exit code: 0 verified, 1 tampering (or no valid signed checkpoint).
pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<i32> {
    let Args { host, public_key } = args;
    let pinned = public_key
        .as_ref()
        .map(|path| {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let clean: String = text.split_whitespace().collect();
            watchtower_proto::unhex(&clean)
                .filter(|k| k.len() == 32)
                .with_context(|| format!("{} is not a hex Ed25519 public key", path.display()))
        })
        .transpose()?;
    let report = client.verify(host.clone().unwrap_or_default()).await?;
    let signature = match &report.latest {
        Some(latest) => latest
            .verify(pinned.as_deref())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => Err("the log has no signed checkpoint yet".to_owned()),
    };
    let ok = report.findings.is_empty() && signature.is_ok();
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["signature_ok"] = signature.is_ok().into();
        json_line(&v)?;
        return Ok(i32::from(!ok));
    }
    for line in text_lines(&report, host.as_deref(), pinned.is_some(), &signature) {
        println!("{line}");
    }
    Ok(i32::from(!ok))
}

/// The text output: what was checked, the latest checkpoint, every finding, the verdict.
fn text_lines(
    report: &VerifyReport,
    host: Option<&str>,
    pinned: bool,
    signature: &Result<(), String>,
) -> Vec<String> {
    let mut lines = vec![format!(
        "log: {} leaves; checked {} records{}: {} intact, {} pruned by retention, {} unlogged; {} checkpoints",
        report.log_size,
        report.leaves_checked,
        host.map_or_else(String::new, |h| format!(" of {h}")),
        report.records_intact,
        report.pruned_by_retention,
        report.unlogged_records,
        report.checkpoints_checked
    )];
    if let Some(c) = report.latest.as_ref().and_then(|l| l.checkpoint.as_ref()) {
        let key = report
            .latest
            .as_ref()
            .map(|l| watchtower_proto::hex(&l.public_key))
            .unwrap_or_default();
        lines.push(match signature {
            Ok(()) => format!(
                "latest checkpoint: size {} signed {} ({}) by key {key}{}: signature OK",
                c.size,
                format_ns(c.time_unix_ns),
                c.reason,
                if pinned {
                    " (pinned)"
                } else {
                    " (not pinned: pass --public-key)"
                }
            ),
            Err(e) => format!("latest checkpoint: size {}: {e}", c.size),
        });
    } else if let Err(e) = signature {
        lines.push(e.clone());
    }
    for f in &report.findings {
        lines.push(format!(
            "{} leaf {} host {} seq {} boot {} time {}: {}",
            f.problem.to_uppercase(),
            f.leaf,
            if f.host_id.is_empty() { "-" } else { &f.host_id },
            f.seq,
            if f.boot_id.is_empty() { "-" } else { &f.boot_id },
            format_ns(f.time_unix_ns),
            f.detail
        ));
    }
    if report.findings.is_empty() && signature.is_ok() {
        lines.push(format!("verified: {} records intact", report.records_intact));
    } else {
        lines.push(format!(
            "TAMPERING DETECTED: {} findings",
            report.findings.len() + usize::from(signature.is_err())
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::pb::{Checkpoint, Finding, SignedCheckpoint};

    fn report() -> VerifyReport {
        VerifyReport {
            log_size: 12,
            leaves_checked: 12,
            records_intact: 12,
            checkpoints_checked: 3,
            latest: Some(SignedCheckpoint {
                checkpoint: Some(Checkpoint {
                    size: 12,
                    time_unix_ns: 1_700_000_000_000_000_000,
                    reason: "periodic".into(),
                    ..Checkpoint::default()
                }),
                public_key: vec![0xab, 0xcd],
                ..SignedCheckpoint::default()
            }),
            ..VerifyReport::default()
        }
    }

    #[test]
    fn an_intact_log() {
        assert_eq!(
            text_lines(&report(), Some("web-1"), true, &Ok(())),
            [
                "log: 12 leaves; checked 12 records of web-1: 12 intact, 0 pruned by retention, 0 unlogged; 3 checkpoints",
                "latest checkpoint: size 12 signed 2023-11-14T22:13:20.000Z (periodic) by key abcd (pinned): signature OK",
                "verified: 12 records intact",
            ]
        );
    }

    #[test]
    fn a_changed_record_and_a_bad_signature() {
        let report = VerifyReport {
            records_intact: 11,
            findings: vec![Finding {
                problem: "changed".into(),
                leaf: 4,
                host_id: "web-1".into(),
                seq: 5,
                time_unix_ns: 1_700_000_000_000_000_000,
                detail: "the record differs from its leaf".into(),
                ..Finding::default()
            }],
            ..report()
        };
        assert_eq!(
            text_lines(&report, None, false, &Err("bad signature".into())),
            [
                "log: 12 leaves; checked 12 records: 11 intact, 0 pruned by retention, 0 unlogged; 3 checkpoints",
                "latest checkpoint: size 12: bad signature",
                "CHANGED leaf 4 host web-1 seq 5 boot - time 2023-11-14T22:13:20.000Z: the record differs from its leaf",
                "TAMPERING DETECTED: 2 findings",
            ]
        );
        let unsigned = VerifyReport {
            latest: None,
            ..VerifyReport::default()
        };
        assert_eq!(
            text_lines(
                &unsigned,
                None,
                false,
                &Err("the log has no signed checkpoint yet".into())
            )[1..],
            [
                "the log has no signed checkpoint yet",
                "TAMPERING DETECTED: 1 findings"
            ]
        );
    }
}
