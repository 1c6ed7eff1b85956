//! The check of every stored record against its leaf in the tamper-evidence log,
//! and of the leaves against the signed checkpoints.
//!
//! What [`verify`] can name:
//! - `changed`: a record no longer hashes to its leaf (edited in place);
//! - `removed`: a leaf's record is gone and no signed retention cut-off covers it;
//! - `unlogged`: a record no leaf accounts for (inserted behind the server's back);
//! - `missing_leaf` / `damaged_leaf`: the log itself lost or garbled a leaf;
//! - `root_mismatch`: the leaves no longer hash to a signed tree head (leaf and
//!   record both rewritten): the change lies between the last matching checkpoint
//!   and this one;
//! - `truncated`: a signed checkpoint is larger than the log;
//! - `bad_signature`: a checkpoint does not verify with the server's key.

use std::collections::{BTreeMap, HashSet};

use prost::Message as _;
use watchtower_proto::hex;
use watchtower_proto::pb::{Checkpoint, Finding, StoredEvent, VerifyReport};

use crate::merkle::{self, Frontier};
use crate::store::keys::LogLeaf;
use crate::store::{EventStore, StoreError};

/// Findings listed at most (the counts stay exact).
pub const MAX_FINDINGS: usize = 10_000;

fn time_text(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ns} ns"))
}

fn short(hash: &[u8]) -> String {
    hex(&hash[..hash.len().min(8)])
}

/// Check the records of `host` (or of every host) in `store` against the log,
/// and the log against every checkpoint signed with `public_key`.
#[expect(clippy::too_many_lines, reason = "one pass over the log, each check in order")]
pub fn verify(store: &EventStore, host: Option<&str>, public_key: &[u8]) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut findings = Findings::default();

    // Checkpoints: signatures, the expected roots by size, the retention cut-off.
    let mut expected: BTreeMap<u64, Vec<Checkpoint>> = BTreeMap::new();
    let mut cutoff = 0u64;
    for signed in store.checkpoints()? {
        report.checkpoints_checked += 1;
        match signed.verify(Some(public_key)) {
            Ok(checkpoint) => {
                cutoff = cutoff.max(checkpoint.retention_cutoff_unix_ns);
                expected
                    .entry(checkpoint.size)
                    .or_default()
                    .push(checkpoint.clone());
            }
            Err(e) => findings.push(Finding {
                problem: "bad_signature".into(),
                detail: format!(
                    "checkpoint of size {} signed at {}: {e}",
                    signed.checkpoint.as_ref().map_or(0, |c| c.size),
                    time_text(signed.checkpoint.as_ref().map_or(0, |c| c.time_unix_ns)),
                ),
                ..Finding::default()
            }),
        }
        report.latest = Some(signed);
    }
    let check_roots = |frontier: &Frontier, last_good: &mut u64, findings: &mut Findings| {
        for checkpoint in expected.get(&frontier.size()).into_iter().flatten() {
            if checkpoint.root == frontier.root() {
                *last_good = frontier.size();
            } else {
                findings.push(Finding {
                    problem: "root_mismatch".into(),
                    leaf: frontier.size(),
                    detail: format!(
                        "the first {} leaves no longer hash to the root signed at {} ({} signed, {} now): \
                         a leaf in [{}, {}) and its record were rewritten",
                        frontier.size(),
                        time_text(checkpoint.time_unix_ns),
                        short(&checkpoint.root),
                        short(&frontier.root()),
                        last_good,
                        frontier.size()
                    ),
                    ..Finding::default()
                });
            }
        }
    };

    // The log, leaf by leaf.
    let mut frontier = Frontier::default();
    let mut last_good = 0u64;
    let mut log_intact = true;
    let mut logged: HashSet<Vec<u8>> = HashSet::new();
    check_roots(&frontier, &mut last_good, &mut findings);
    for item in store.log_leaves() {
        let (index, value) = item?;
        if log_intact && index != frontier.size() {
            findings.push(Finding {
                problem: "missing_leaf".into(),
                leaf: frontier.size(),
                detail: format!(
                    "leaves {}..{} are missing from the log; tree heads after it cannot be checked",
                    frontier.size(),
                    index
                ),
                ..Finding::default()
            });
            log_intact = false;
        }
        report.log_size = report.log_size.max(index.saturating_add(1));
        let Some(leaf) = LogLeaf::decode(&value) else {
            findings.push(Finding {
                problem: "damaged_leaf".into(),
                leaf: index,
                detail: format!("leaf {index} cannot be read ({} bytes)", value.len()),
                ..Finding::default()
            });
            log_intact = false;
            continue;
        };
        if log_intact {
            frontier.push(leaf.hash);
            check_roots(&frontier, &mut last_good, &mut findings);
        }
        if host.is_some_and(|h| h != leaf.host) {
            continue;
        }
        report.leaves_checked += 1;
        let pk = leaf.primary_key();
        let named = |problem: &str, detail: String| Finding {
            problem: problem.into(),
            leaf: index,
            host_id: leaf.host.clone(),
            boot_id: leaf.boot_id.clone(),
            seq: leaf.seq,
            time_unix_ns: leaf.time_unix_ns,
            detail,
        };
        match store.event_record(&pk.0)? {
            None if leaf.time_unix_ns < cutoff => report.pruned_by_retention += 1,
            None => findings.push(named(
                "removed",
                format!(
                    "the record logged at leaf {index} is gone (no signed retention cut-off covers {})",
                    time_text(leaf.time_unix_ns)
                ),
            )),
            Some(bytes) => {
                let now = merkle::leaf_hash(&pk.0, &bytes);
                if now == leaf.hash {
                    report.records_intact += 1;
                } else {
                    findings.push(named(
                        "changed",
                        format!(
                            "the stored record no longer hashes to its leaf (logged {}, now {}); it now reads: {}",
                            short(&leaf.hash),
                            short(&now),
                            describe(&bytes)
                        ),
                    ));
                }
            }
        }
        logged.insert(pk.0);
    }
    if log_intact {
        report.log_size = frontier.size();
    }
    if let Some((size, _)) = expected.iter().next_back()
        && *size > report.log_size
    {
        findings.push(Finding {
            problem: "truncated".into(),
            leaf: report.log_size,
            detail: format!(
                "a checkpoint signed {size} leaves but the log holds {}: leaves were cut off its end",
                report.log_size
            ),
            ..Finding::default()
        });
    }

    // Records no leaf accounts for.
    for item in store.event_records(host) {
        let (key, value) = item?;
        if logged.contains(key.as_ref()) {
            continue;
        }
        report.unlogged_records += 1;
        let event = StoredEvent::decode(&*value).ok().and_then(|s| s.event);
        findings.push(Finding {
            problem: "unlogged".into(),
            leaf: 0,
            host_id: event.as_ref().map(|e| e.host_id.clone()).unwrap_or_default(),
            boot_id: event.as_ref().map(|e| e.boot_id.clone()).unwrap_or_default(),
            seq: event.as_ref().map_or(0, |e| e.seq),
            time_unix_ns: event.as_ref().map_or(0, |e| e.time_unix_ns),
            detail: format!("a stored record no leaf accounts for: {}", describe(&value)),
        });
    }
    report.findings = findings.done();
    Ok(report)
}

/// A one-line account of a stored record, for findings.
fn describe(bytes: &[u8]) -> String {
    match StoredEvent::decode(bytes) {
        Ok(StoredEvent {
            event: Some(event), ..
        }) => {
            let facets = crate::facets::users(&event)
                .into_iter()
                .next()
                .unwrap_or_default();
            format!("{} seq {} user {:?}", event.kind().name(), event.seq, facets)
        }
        Ok(_) => "a record without an event".into(),
        Err(e) => format!("not a record ({e})"),
    }
}

#[derive(Default)]
struct Findings {
    listed: Vec<Finding>,
    more: u64,
}

impl Findings {
    fn push(&mut self, finding: Finding) {
        if self.listed.len() < MAX_FINDINGS {
            self.listed.push(finding);
        } else {
            self.more += 1;
        }
    }

    fn done(mut self) -> Vec<Finding> {
        if self.more > 0 {
            self.listed.push(Finding {
                problem: "more".into(),
                detail: format!("{} more findings not listed", self.more),
                ..Finding::default()
            });
        }
        self.listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::pb::{Event, Exec, event::Body};

    use crate::Scratch;
    use crate::store::{EVENTS, LOG_LEAVES};
    use crate::tamper::CheckpointSigner;

    fn scratch(name: &str) -> Scratch {
        Scratch::new(&format!("tamper-{name}"))
    }

    fn exec(host: &str, seq: u64) -> Event {
        Event {
            host_id: host.into(),
            boot_id: "boot-a".into(),
            seq,
            time_unix_ns: 1_000_000_000 * seq,
            body: Some(Body::Exec(Exec {
                filename: format!("/bin/step-{seq}"),
                ..Exec::default()
            })),
        }
    }

    fn problems(report: &VerifyReport) -> Vec<(String, String, u64)> {
        report
            .findings
            .iter()
            .map(|f| (f.problem.clone(), f.host_id.clone(), f.seq))
            .collect()
    }

    fn setup(dir: &Scratch) -> (EventStore, CheckpointSigner) {
        let store = EventStore::open(&dir.0.join("db")).unwrap();
        let signer = CheckpointSigner::load_or_create(&dir.0.join("key")).unwrap();
        let a = store
            .append("web-1", (1..=5).map(|s| exec("web-1", s)).collect(), 1, 0)
            .unwrap();
        assert_eq!((a.first_leaf, a.log_size), (0, 5));
        let b = store
            .append("db-1", (1..=3).map(|s| exec("db-1", s)).collect(), 1, 0)
            .unwrap();
        assert_eq!((b.first_leaf, b.log_size), (5, 8));
        signer.checkpoint(&store, "periodic", 0).unwrap();
        let c = store
            .append("web-1", (6..=7).map(|s| exec("web-1", s)).collect(), 1, 0)
            .unwrap();
        assert_eq!((c.first_leaf, c.log_size), (8, 10));
        // Resent events are not logged twice.
        let d = store.append("web-1", vec![exec("web-1", 7)], 1, 0).unwrap();
        assert_eq!((d.duplicates, d.log_size), (1, 10));
        signer.checkpoint(&store, "periodic", 0).unwrap();
        (store, signer)
    }

    fn pk(host: &str, seq: u64) -> Vec<u8> {
        crate::store::keys::PrimaryKey::new(host, 1_000_000_000 * seq, seq, "boot-a").0
    }

    #[test]
    fn an_untouched_store_verifies_and_the_log_survives_reopening() {
        let dir = scratch("clean");
        let (store, signer) = setup(&dir);
        let report = verify(&store, None, signer.public_key()).unwrap();
        assert_eq!(problems(&report), vec![]);
        assert_eq!(
            (
                report.log_size,
                report.leaves_checked,
                report.records_intact,
                report.checkpoints_checked
            ),
            (10, 10, 10, 2)
        );
        let web = verify(&store, Some("web-1"), signer.public_key()).unwrap();
        assert_eq!(
            (web.leaves_checked, web.records_intact, web.unlogged_records),
            (7, 7, 0)
        );
        let head = store.log_head();
        drop(store);
        let store = EventStore::open(&dir.0.join("db")).unwrap();
        assert_eq!(store.log_head(), head);
        let e = store.append("web-1", vec![exec("web-1", 8)], 1, 0).unwrap();
        assert_eq!((e.first_leaf, e.log_size), (10, 11));
        assert_eq!(
            problems(&verify(&store, None, signer.public_key()).unwrap()),
            vec![]
        );
    }

    #[test]
    fn an_edited_record_and_a_removed_one_are_named() {
        let dir = scratch("edit");
        let (store, signer) = setup(&dir);
        let mut record = store.raw_get(EVENTS, &pk("web-1", 3)).unwrap();
        let at = record.windows(11).position(|w| w == b"/bin/step-3").unwrap();
        record[at + 5] = b'X';
        store.raw_put(EVENTS, &pk("web-1", 3), &record);
        store.raw_delete(EVENTS, &pk("db-1", 2));
        let report = verify(&store, None, signer.public_key()).unwrap();
        assert_eq!(
            problems(&report),
            vec![
                ("changed".into(), "web-1".into(), 3),
                ("removed".into(), "db-1".into(), 2)
            ]
        );
        assert_eq!(report.findings[0].leaf, 2);
        assert_eq!(report.findings[1].leaf, 6);
        assert_eq!(report.records_intact, 8);
        // A host's verify names only its own.
        let web = verify(&store, Some("web-1"), signer.public_key()).unwrap();
        assert_eq!(problems(&web), vec![("changed".into(), "web-1".into(), 3)]);
    }

    #[test]
    fn a_rewritten_leaf_breaks_the_signed_root_and_an_inserted_record_is_unlogged() {
        let dir = scratch("rewrite");
        let (store, signer) = setup(&dir);
        // Rewrite record and leaf together: the record matches its leaf again,
        // but the leaves no longer hash to the signed heads.
        let record = StoredEvent {
            event: Some(Event {
                body: Some(Body::Exec(Exec {
                    filename: "/bin/innocent".into(),
                    ..Exec::default()
                })),
                ..exec("web-1", 4)
            }),
            received_unix_ns: 1,
            ..StoredEvent::default()
        }
        .encode_to_vec();
        let mut leaf = store.raw_get(LOG_LEAVES, &3u64.to_be_bytes()).unwrap();
        leaf[..32].copy_from_slice(&merkle::leaf_hash(&pk("web-1", 4), &record));
        store.raw_put(LOG_LEAVES, &3u64.to_be_bytes(), &leaf);
        store.raw_put(EVENTS, &pk("web-1", 4), &record);
        // And a record slipped in behind the server's back.
        let forged = StoredEvent {
            event: Some(exec("web-1", 99)),
            received_unix_ns: 1,
            ..StoredEvent::default()
        };
        store.raw_put(EVENTS, &pk("web-1", 99), &forged.encode_to_vec());
        let report = verify(&store, None, signer.public_key()).unwrap();
        let found: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.problem.as_str(), f.leaf))
            .collect();
        assert_eq!(
            found,
            vec![("root_mismatch", 8), ("root_mismatch", 10), ("unlogged", 0)]
        );
        assert!(
            report.findings[0].detail.contains("[0, 8)"),
            "{}",
            report.findings[0].detail
        );
        assert_eq!(report.findings[2].seq, 99);
        assert_eq!(report.unlogged_records, 1);
    }

    #[test]
    fn removal_under_a_signed_retention_cut_off_is_pruning_not_tampering() {
        let dir = scratch("retention");
        let (store, signer) = setup(&dir);
        // Events before t = 3 s go: web-1 seqs 1, 2 and db-1 seqs 1, 2.
        signer.checkpoint(&store, "retention", 3_000_000_000).unwrap();
        assert_eq!(store.prune_before(3_000_000_000).unwrap(), 4);
        let report = verify(&store, None, signer.public_key()).unwrap();
        assert_eq!(problems(&report), vec![]);
        assert_eq!((report.pruned_by_retention, report.records_intact), (4, 6));
        // Removing a newer record is still named.
        store.raw_delete(EVENTS, &pk("web-1", 6));
        let report = verify(&store, None, signer.public_key()).unwrap();
        assert_eq!(problems(&report), vec![("removed".into(), "web-1".into(), 6)]);
    }

    #[test]
    fn checkpoints_from_another_key_or_cut_leaves_are_named() {
        let dir = scratch("keys");
        let (store, signer) = setup(&dir);
        let other = CheckpointSigner::load_or_create(&dir.0.join("other-key")).unwrap();
        let report = verify(&store, None, other.public_key()).unwrap();
        let found: Vec<_> = report.findings.iter().map(|f| f.problem.as_str()).collect();
        assert_eq!(found, vec!["bad_signature", "bad_signature"]);
        store.raw_delete(LOG_LEAVES, &9u64.to_be_bytes());
        let report = verify(&store, None, signer.public_key()).unwrap();
        let found: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.problem.as_str(), f.seq))
            .collect();
        assert_eq!(found, vec![("truncated", 0), ("unlogged", 7)]);
    }
}
