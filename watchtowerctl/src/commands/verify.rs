//! `verify`: the audit of the server's tamper-evidence log, done here, trusting
//! nothing the server says. The newest checkpoint must be signed by the pinned
//! verifier key; it must extend the last checkpoint this machine accepted from
//! that log (kept in a state file, proven by a consistency proof), so a log that
//! was rolled back or rewritten is caught even when the server and its database
//! agree with each other; and every leaf and the record it names are fetched,
//! rehashed and checked against the signed root. Exit code 1 when anything is wrong.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};
use watchtower_model::StoredEvent;
use watchtower_tlog::{Audit, AuditReport, CheckpointVerifier, StoredRecord, TreeHead, tree};

use crate::client::Client;
use crate::commands::json_line;
use crate::timearg::format_ns;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this host's records (the log itself is always checked whole).
    #[arg(long)]
    pub host: Option<String>,
    /// The log's verifier key to pin (the server's `checkpoint-signing.pub`:
    /// `<origin>+<id>+<key>`). Required: a checkpoint is worth only the key it is
    /// checked with. For a fleet's query node, one per shard's indexer
    /// (repeat it): every shard's log is checked with the key of its origin.
    #[arg(long, required = true)]
    pub public_key: Vec<PathBuf>,
    /// Where the last accepted checkpoint of each log is kept (default:
    /// `$XDG_STATE_HOME/watchtower/checkpoints.json`, else
    /// `~/.local/state/watchtower/checkpoints.json`).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The retention policy, in days: a retention cut-off newer than this many
    /// days before now is a finding (`early_retention`).
    #[arg(long)]
    pub min_retention_days: Option<u64>,
    /// Also run the server's own audit (admin certificates only) and report the
    /// stored records that no leaf names (`unlogged`), which only the store sees.
    #[arg(long)]
    pub server_check: bool,
    /// Check a bundle written by `export --proofs`, offline (no server): the
    /// checkpoint's signature, each record's hash and its inclusion proof.
    #[arg(long, conflicts_with_all = ["server_check", "state", "witness"])]
    pub bundle: Option<PathBuf>,
    /// A signed checkpoint kept outside the server (the file the server publishes
    /// with `log.publish_checkpoint_to`, or an agent's `log-witness.checkpoint`):
    /// the log must extend it too. Repeatable.
    #[arg(long)]
    pub witness: Vec<PathBuf>,
}

/// `verify --bundle`: the exit code, 0 when every record is proven.
pub fn run_bundle(args: &Args, bundle: &Path, json: bool) -> anyhow::Result<i32> {
    let [key] = args.public_key.as_slice() else {
        anyhow::bail!("a bundle is checked with one --public-key (the key of the log it was exported from)");
    };
    let verifier = read_key(key)?;
    let (proven, findings) = crate::commands::bundle::check(bundle, &verifier)?;
    let ok = findings.is_empty();
    if json {
        json_line(&json!({"ok": ok, "records_proven": proven, "findings": findings}))?;
    } else {
        for finding in &findings {
            println!("{finding}");
        }
        if ok {
            println!(
                "verified: {proven} records proven in the log {} signed",
                verifier.origin()
            );
        } else {
            println!("TAMPERING DETECTED: {} findings", findings.len());
        }
    }
    Ok(i32::from(!ok))
}

/// What this run found about the log as a whole, before the records.
struct Outcome {
    origin: String,
    /// The pinned key it was checked with (the state file's key).
    key: String,
    head: Option<TreeHead>,
    /// The earlier checkpoint this one was proven to extend.
    extends: Option<Accepted>,
    audit: AuditReport,
    /// Findings about checkpoints and consistency: `(problem, detail)`.
    log_findings: Vec<(&'static str, String)>,
}

/// A checkpoint accepted on an earlier run, as the state file keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub size: u64,
    pub root: [u8; 32],
    pub at_unix_ns: u64,
}

pub fn read_key(path: &Path) -> anyhow::Result<CheckpointVerifier> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    CheckpointVerifier::new(text.trim())
        .with_context(|| format!("{} is not a verifier key (<origin>+<id>+<key>)", path.display()))
}

/// The exit code: 0 verified, 1 tampering (or no checkpoint signed by the pinned key).
///
/// A fleet's query node serves one log per shard (`StatsResponse.logs`), each
/// signed by its indexer's key: every log is checked, each against the pinned
/// key of its origin, and every pinned key must be matched by exactly one log
/// (a log left out, or shown twice, is a finding).
pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<i32> {
    let verifiers = args
        .public_key
        .iter()
        .map(|path| read_key(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let state_path = args.state.clone().unwrap_or_else(default_state_path);
    let mut state = State::load(&state_path)?;
    let floor = args
        .min_retention_days
        .map(|days| now_unix_ns().saturating_sub(days.saturating_mul(86_400 * 1_000_000_000)));
    let logs = client.logs().await?;
    let mut outcomes = Vec::with_capacity(logs as usize);
    let mut matched = vec![0u32; verifiers.len()];
    for shard in 0..logs {
        client.shard = shard;
        let signed = client.checkpoint().await?;
        // The key of this log's origin (the note's first line); with one key, that key.
        let origin = String::from_utf8_lossy(&signed.note)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let at = verifiers
            .iter()
            .position(|v| v.origin() == origin)
            .or_else(|| (verifiers.len() == 1).then_some(0));
        let Some(at) = at else {
            outcomes.push(Outcome {
                origin: origin.clone(),
                key: String::new(),
                head: None,
                extends: None,
                audit: AuditReport::default(),
                log_findings: vec![(
                    "bad_signature",
                    format!("shard {shard}: no --public-key is pinned for the log {origin:?}"),
                )],
            });
            continue;
        };
        matched[at] += 1;
        outcomes.push(check_log(args, client, &verifiers[at], &signed, &state, floor).await?);
    }
    client.shard = 0;
    if logs > 1 {
        note_logs_not_served_once(&verifiers, &matched, logs, &mut outcomes);
    }
    let ok = outcomes
        .iter()
        .all(|o| o.log_findings.is_empty() && o.audit.findings.is_empty());
    if ok {
        for outcome in &outcomes {
            if let Some(head) = outcome.head {
                state.accept(&outcome.key, head);
            }
        }
        state.save(&state_path)?;
    }
    if json {
        if let [outcome] = outcomes.as_slice() {
            json_line(&json_report(outcome, ok))?;
        } else {
            let each: Vec<Value> = outcomes
                .iter()
                .map(|o| json_report(o, o.log_findings.is_empty() && o.audit.findings.is_empty()))
                .collect();
            json_line(&json!({"ok": ok, "logs": each}))?;
        }
    } else {
        for outcome in &outcomes {
            for line in text_lines(outcome, args.host.as_deref(), &state_path) {
                println!("{line}");
            }
        }
        if outcomes.len() > 1 {
            println!(
                "{}: {} logs",
                if ok { "verified" } else { "TAMPERING DETECTED" },
                outcomes.len()
            );
        }
    }
    Ok(i32::from(!ok))
}

/// Every pinned key must be matched by exactly one of the `logs` served: a log
/// left out (`missing_log`) or shown twice (`duplicate_log`) is a finding.
fn note_logs_not_served_once(
    verifiers: &[CheckpointVerifier],
    matched: &[u32],
    logs: u32,
    outcomes: &mut [Outcome],
) {
    for (verifier, times) in verifiers.iter().zip(matched) {
        if *times != 1 {
            let problem = if *times == 0 {
                "missing_log"
            } else {
                "duplicate_log"
            };
            if let Some(outcome) = outcomes.first_mut() {
                outcome.log_findings.push((
                    problem,
                    format!(
                        "the log {} was served by {times} of the {logs} shards, not one",
                        verifier.origin()
                    ),
                ));
            }
        }
    }
}

/// Check the log whose newest checkpoint is `signed` (the client's shard)
/// against `verifier`: the signature, consistency with the checkpoint accepted
/// before and with the witnesses' of this origin, and every leaf and record.
async fn check_log(
    args: &Args,
    client: &mut Client,
    verifier: &CheckpointVerifier,
    signed: &watchtower_model::SignedCheckpoint,
    state: &State,
    floor: Option<u64>,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        origin: verifier.origin().to_owned(),
        key: verifier.key().to_owned(),
        head: None,
        extends: None,
        audit: AuditReport::default(),
        log_findings: Vec::new(),
    };
    match verifier.open(&signed.note) {
        Err(e) => outcome.log_findings.push(("bad_signature", e.to_string())),
        Ok(head) => {
            outcome.head = Some(head);
            if let Some(old) = state.get(verifier.key()) {
                match extends(client, head, old.size, old.root).await? {
                    None => outcome.extends = Some(old),
                    Some(finding) => outcome.log_findings.push(finding),
                }
            }
            for path in &args.witness {
                let note = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                // A witness of another shard's log is checked with that log.
                if args.public_key.len() > 1
                    && !note.starts_with(format!("{}\n", verifier.origin()).as_bytes())
                {
                    continue;
                }
                let finding = match verifier.open(&note) {
                    Err(e) => Some(("bad_witness", e.to_string())),
                    Ok(kept) => extends(client, head, kept.size, kept.root).await?,
                };
                if let Some((problem, detail)) = finding {
                    outcome
                        .log_findings
                        .push((problem, format!("the checkpoint in {}: {detail}", path.display())));
                }
            }
            let mut audit = Audit::new(args.host.clone(), floor);
            for entry in client.log_entries(head.size).await? {
                let record = entry
                    .record
                    .as_ref()
                    .map_or(StoredRecord::Absent, StoredEvent::audited);
                audit.leaf(entry.index, &entry.entry, record);
            }
            audit.head(&head);
            outcome.audit = audit.finish();
        }
    }
    if args.server_check {
        let report = client.verify(args.host.clone().unwrap_or_default()).await?;
        for f in report.findings.iter().filter(|f| f.problem == "unlogged") {
            outcome.log_findings.push((
                "unlogged",
                format!(
                    "host {} seq {} boot {}: {}",
                    f.host_id, f.seq, f.boot_id, f.detail
                ),
            ));
        }
    }
    Ok(outcome)
}

/// Whether the log at `head` extends the tree `(size, root)` trusted earlier:
/// `None`, or the finding (`rolled_back` when it is smaller, `forked`).
async fn extends(
    client: &mut Client,
    head: TreeHead,
    size: u64,
    root: [u8; 32],
) -> anyhow::Result<Option<(&'static str, String)>> {
    let proof = if size < head.size && size > 0 {
        client.consistency_proof(size, head.size).await?
    } else {
        Vec::new()
    };
    Ok(
        match tree::check_consistency(&proof, size, root, head.size, head.root) {
            Ok(()) => None,
            Err(e @ watchtower_tlog::ProofError::Shrank { .. }) => Some(("rolled_back", e.to_string())),
            Err(e) => Some(("forked", e.to_string())),
        },
    )
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn default_state_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("watchtower/checkpoints.json")
}

/// The state file: per pinned verifier key (one log, one key), the last
/// checkpoint accepted.
pub struct State(serde_json::Map<String, Value>);

impl State {
    pub fn load(path: &Path) -> anyhow::Result<State> {
        match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => Ok(State(map)),
                _ => anyhow::bail!("{} is not a checkpoint state file", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State(serde_json::Map::new())),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    #[must_use]
    pub fn get(&self, origin: &str) -> Option<Accepted> {
        let kept = self.0.get(origin)?;
        let root = watchtower_tlog::unhex(kept["root"].as_str()?)?;
        Some(Accepted {
            size: kept["size"].as_u64()?,
            root: root.try_into().ok()?,
            at_unix_ns: kept["accepted_unix_ns"].as_u64().unwrap_or(0),
        })
    }

    pub fn accept(&mut self, origin: &str, head: TreeHead) {
        self.0.insert(
            origin.to_owned(),
            json!({"size": head.size, "root": watchtower_tlog::hex(&head.root), "accepted_unix_ns": now_unix_ns()}),
        );
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&Value::Object(self.0.clone()))? + "\n";
        watchtower_pki::write_file(path, text.as_bytes(), false)
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn json_report(outcome: &Outcome, ok: bool) -> Value {
    let mut findings: Vec<Value> = outcome
        .log_findings
        .iter()
        .map(|(problem, detail)| json!({"problem": problem, "detail": detail}))
        .collect();
    findings.extend(outcome.audit.findings.iter().map(finding_json));
    json!({
        "ok": ok,
        "origin": outcome.origin,
        "signature_ok": outcome.head.is_some(),
        "checkpoint_size": outcome.head.map(|h| h.size),
        "extends_size": outcome.extends.as_ref().map(|a| a.size),
        "log_size": outcome.audit.log_size,
        "leaves_checked": outcome.audit.leaves_checked,
        "records_intact": outcome.audit.records_intact,
        "pruned_by_retention": outcome.audit.pruned_by_retention,
        "retention_cutoff_unix_ns": outcome.audit.retention_cutoff_unix_ns,
        "findings": findings,
    })
}

pub fn finding_json(f: &watchtower_tlog::Finding) -> Value {
    let mut v = json!({"problem": f.problem, "leaf": f.leaf, "detail": f.detail});
    if let Some(id) = &f.record {
        v["host_id"] = id.host_id.clone().into();
        v["boot_id"] = id.boot_id.clone().into();
        v["seq"] = id.seq.into();
        v["time_unix_ns"] = id.time_unix_ns.into();
    }
    v
}

pub fn finding_line(f: &watchtower_tlog::Finding) -> String {
    match &f.record {
        Some(id) => format!(
            "{} leaf {} host {} seq {} boot {} time {}: {}",
            f.problem.to_uppercase(),
            f.leaf,
            id.host_id,
            id.seq,
            id.boot_id,
            format_ns(id.time_unix_ns),
            f.detail
        ),
        None => format!("{} leaf {}: {}", f.problem.to_uppercase(), f.leaf, f.detail),
    }
}

/// The text output: what was checked, the checkpoint and its history, every finding, the verdict.
fn text_lines(outcome: &Outcome, host: Option<&str>, state: &Path) -> Vec<String> {
    let audit = &outcome.audit;
    let mut lines = vec![format!(
        "log {}: {} leaves; checked {} records{}: {} intact, {} pruned by retention",
        outcome.origin,
        audit.log_size,
        audit.leaves_checked,
        host.map_or_else(String::new, |h| format!(" of {h}")),
        audit.records_intact,
        audit.pruned_by_retention,
    )];
    if let Some(head) = &outcome.head {
        lines.push(format!(
            "checkpoint: size {} signed by the pinned key: signature OK",
            head.size
        ));
    }
    match &outcome.extends {
        Some(old) => lines.push(format!(
            "it extends the checkpoint accepted at {} (size {}): consistency proven",
            format_ns(old.at_unix_ns),
            old.size
        )),
        None if outcome.log_findings.is_empty() => lines.push(format!(
            "no earlier checkpoint of this log is kept in {}: this one becomes the reference",
            state.display()
        )),
        None => {}
    }
    for (problem, detail) in &outcome.log_findings {
        lines.push(format!("{}: {detail}", problem.to_uppercase()));
    }
    lines.extend(audit.findings.iter().map(finding_line));
    let findings = outcome.log_findings.len() + audit.findings.len();
    if findings == 0 {
        lines.push(format!("verified: {} records intact", audit.records_intact));
    } else {
        lines.push(format!("TAMPERING DETECTED: {findings} findings"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome {
            origin: "watchtower/central".into(),
            key: "watchtower/central+00000000+AAAA".into(),
            head: Some(TreeHead {
                size: 12,
                root: [1; 32],
            }),
            extends: Some(Accepted {
                size: 10,
                root: [2; 32],
                at_unix_ns: 1_700_000_000_000_000_000,
            }),
            audit: AuditReport {
                log_size: 12,
                leaves_checked: 12,
                records_intact: 12,
                ..AuditReport::default()
            },
            log_findings: Vec::new(),
        }
    }

    #[test]
    fn an_intact_log_that_extends_the_last_accepted_checkpoint() {
        let lines = text_lines(&outcome(), Some("web-1"), Path::new("/s.json"));
        assert_eq!(
            lines,
            [
                "log watchtower/central: 12 leaves; checked 12 records of web-1: 12 intact, 0 pruned by retention",
                "checkpoint: size 12 signed by the pinned key: signature OK",
                &format!(
                    "it extends the checkpoint accepted at {} (size 10): consistency proven",
                    format_ns(1_700_000_000_000_000_000)
                ),
                "verified: 12 records intact",
            ]
        );
        assert_eq!(json_report(&outcome(), true)["extends_size"], 10);
    }

    #[test]
    fn a_rolled_back_log_and_a_changed_record_are_named() {
        let mut o = outcome();
        o.extends = None;
        o.log_findings
            .push(("rolled_back", "the log shrank from 10 to 5 leaves".into()));
        o.audit.findings.push(watchtower_tlog::Finding {
            problem: "changed",
            leaf: 3,
            record: Some(watchtower_tlog::RecordId {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq: 4,
                time_unix_ns: 0,
            }),
            detail: "edited".into(),
        });
        let lines = text_lines(&o, None, Path::new("/s.json"));
        assert_eq!(lines[2], "ROLLED_BACK: the log shrank from 10 to 5 leaves");
        assert!(
            lines[3].starts_with("CHANGED leaf 3 host web-1 seq 4 boot b time "),
            "{}",
            lines[3]
        );
        assert_eq!(lines[4], "TAMPERING DETECTED: 2 findings");
        let json = json_report(&o, false);
        assert_eq!(json["findings"][0]["problem"], "rolled_back");
        assert_eq!(json["findings"][1]["seq"], 4);
    }

    #[test]
    fn the_state_file_keeps_each_logs_last_checkpoint() {
        let path = std::env::temp_dir().join(format!("wt-ctl-state-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut state = State::load(&path).unwrap();
        assert_eq!(state.get("a/log"), None);
        state.accept(
            "a/log",
            TreeHead {
                size: 7,
                root: [9; 32],
            },
        );
        state.save(&path).unwrap();
        let again = State::load(&path).unwrap();
        let kept = again.get("a/log").unwrap();
        assert_eq!((kept.size, kept.root), (7, [9; 32]));
        std::fs::write(&path, "[]").unwrap();
        assert!(State::load(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
