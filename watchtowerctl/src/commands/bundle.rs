//! Proof bundles: what `export --proofs` writes and `verify --bundle` checks
//! offline, with nothing but the pinned verifier key.
//!
//! ```json
//! {"format": "watchtower-bundle-v1",
//!  "checkpoint": "<the C2SP signed note, as text>",
//!  "records": [{"index": 17, "entry": "<the leaf's canonical JSON entry>",
//!               "record": {<the stored record, as export writes it>},
//!               "inclusion_proof": ["<hex>", ...]}]}
//! ```
//!
//! A record is proven when the SHA-256 of its canonical JSON is the entry's
//! `record_sha256`, the entry names the record's host, boot, seq and time, and
//! the entry's leaf hash (`SHA-256(0x00 ‖ entry)`) is included, by the RFC 9162
//! proof, in the tree the checkpoint signs.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};
use watchtower_model::{EventFilter, StoredEvent};
use watchtower_tlog::{CheckpointVerifier, LeafEntry, StoredRecord, tree};

use crate::client::Client;

pub const FORMAT: &str = "watchtower-bundle-v1";

/// Fetch the log, check it against `verifier`, and write the records matching
/// `filter` with their inclusion proofs. Returns how many records it holds.
pub async fn write(
    client: &mut Client,
    filter: &EventFilter,
    verifier: &CheckpointVerifier,
    out: &Path,
) -> anyhow::Result<usize> {
    let signed = client.checkpoint().await?;
    let head = verifier.open(&signed.note).context("the server's checkpoint")?;
    let mut wanted = HashSet::new();
    client
        .events(filter, |stored| {
            let id = stored.record_id();
            wanted.insert((id.host_id, id.boot_id, id.seq));
            Ok(true)
        })
        .await?;
    let entries = client.log_entries(head.size).await?;
    let mut audit = watchtower_tlog::Audit::new(None, None);
    for entry in &entries {
        let record = entry
            .record
            .as_ref()
            .map_or(StoredRecord::Absent, StoredEvent::audited);
        audit.leaf(entry.index, &entry.entry, record);
    }
    anyhow::ensure!(
        audit.log().root_at(head.size) == head.root,
        "the leaves the server sent do not hash to the root it signed: run `watchtowerctl verify`"
    );
    let mut records = Vec::new();
    for entry in entries {
        let (Some(record), Ok(LeafEntry::Record { .. })) = (&entry.record, LeafEntry::decode(&entry.entry))
        else {
            continue;
        };
        let id = record.record_id();
        if !wanted.contains(&(id.host_id, id.boot_id, id.seq)) {
            continue;
        }
        let proof = tree::prove_inclusion(audit.log(), head.size, entry.index)?;
        records.push(json!({
            "index": entry.index,
            "entry": String::from_utf8_lossy(&entry.entry),
            "record": serde_json::to_value(record)?,
            "inclusion_proof": proof.iter().map(|h| watchtower_tlog::hex(h)).collect::<Vec<_>>(),
        }));
    }
    let n = records.len();
    let bundle = json!({
        "format": FORMAT,
        "checkpoint": String::from_utf8_lossy(&signed.note),
        "records": records,
    });
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(n)
}

/// Check a bundle offline: `(records proven, findings)`.
pub fn check(path: &Path, verifier: &CheckpointVerifier) -> anyhow::Result<(u64, Vec<String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bundle: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    anyhow::ensure!(
        bundle["format"] == FORMAT,
        "{} is not a {FORMAT} bundle",
        path.display()
    );
    let note = bundle["checkpoint"]
        .as_str()
        .context("the bundle has no checkpoint")?;
    let head = match verifier.open(note.as_bytes()) {
        Ok(head) => head,
        Err(e) => return Ok((0, vec![format!("BAD_SIGNATURE: {e}")])),
    };
    let mut proven = 0;
    let mut findings = Vec::new();
    for (n, item) in bundle["records"].as_array().into_iter().flatten().enumerate() {
        match check_record(item, head) {
            Ok(()) => proven += 1,
            Err(problem) => findings.push(format!("record {n} (leaf {}): {problem}", item["index"])),
        }
    }
    Ok((proven, findings))
}

fn check_record(item: &Value, head: watchtower_tlog::TreeHead) -> Result<(), String> {
    let index = item["index"]
        .as_u64()
        .ok_or("NO_INDEX: the record has no leaf index")?;
    let entry_text = item["entry"]
        .as_str()
        .ok_or("NO_ENTRY: the record has no leaf entry")?;
    let entry = LeafEntry::decode(entry_text.as_bytes()).map_err(|e| format!("DAMAGED_LEAF: {e}"))?;
    let (id, logged) = entry.record().ok_or("DAMAGED_LEAF: the entry names no record")?;
    let record = &item["record"];
    let digest = watchtower_tlog::entry::record_sha256(record).map_err(|e| format!("CHANGED: {e}"))?;
    if &digest != logged {
        return Err("CHANGED: the record does not hash to its leaf's record_sha256".into());
    }
    let event = &record["event"];
    let names = event["host_id"].as_str() == Some(id.host_id.as_str())
        && event["boot_id"].as_str() == Some(id.boot_id.as_str())
        && event["seq"].as_u64() == Some(id.seq)
        && event["time_unix_ns"].as_u64() == Some(id.time_unix_ns);
    if !names {
        return Err("CHANGED: the record is not the one its leaf names".into());
    }
    let proof: Vec<[u8; 32]> = item["inclusion_proof"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            h.as_str()
                .and_then(watchtower_tlog::unhex)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or("NOT_INCLUDED: a proof hash is not 32 bytes of hex")
        })
        .collect::<Result<_, _>>()?;
    tree::check_inclusion(&proof, head.size, head.root, index, entry.leaf_hash().0)
        .map_err(|e| format!("NOT_INCLUDED: {e}"))
}
