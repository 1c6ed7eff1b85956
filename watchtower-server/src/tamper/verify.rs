//! The server's own check of every stored record against its leaf in the
//! tamper-evidence log, and of the leaves against the signed checkpoints, on one
//! snapshot of the store. The checks themselves are [`watchtower_tlog::Audit`]'s,
//! the same code `watchtowerctl verify` runs on the client; this adds what only
//! the store can see: records that no leaf names (`unlogged`).

use std::collections::HashSet;

use watchtower_model::{Finding, StoredEvent, VerifyReport};
use watchtower_tlog::{Audit, CheckpointVerifier, LeafEntry, StoredRecord};

use crate::store::keys::{PrimaryKey, decode_value};
use crate::store::{EventStore, StoreError};

/// Check the records of `host` (or of every host) in `store` against the log,
/// and the log against every checkpoint, whose signatures must verify with
/// `verifier`.
pub fn verify(
    store: &EventStore,
    host: Option<&str>,
    verifier: &CheckpointVerifier,
) -> Result<VerifyReport, StoreError> {
    let view = store.audit_view();
    let mut audit = Audit::new(host.map(str::to_owned), None);
    let mut logged: HashSet<Vec<u8>> = HashSet::new();
    for item in view.leaves() {
        let (index, entry) = item?;
        let record = match view.record_of(index, &entry)? {
            None => StoredRecord::Absent,
            Some(bytes) => match decode_value::<StoredEvent>(bytes.as_slice()) {
                Ok(stored) => stored.audited(),
                Err(e) => StoredRecord::Unreadable(e.to_string()),
            },
        };
        if let Ok(LeafEntry::Record { id, .. }) = LeafEntry::decode(&entry) {
            logged.insert(PrimaryKey::new(&id.host_id, id.time_unix_ns, id.seq, &id.boot_id).0);
        }
        audit.leaf(index, &entry, record);
    }
    let mut report = VerifyReport::default();
    let mut bad_signatures = Vec::new();
    for signed in view.checkpoints()? {
        match verifier.open(&signed.note) {
            Ok(head) => audit.head(&head),
            Err(e) => bad_signatures.push(Finding {
                problem: "bad_signature".into(),
                detail: format!("checkpoint of size {} ({}): {e}", signed.size, signed.reason),
                ..Finding::default()
            }),
        }
        report.checkpoints_checked += 1;
        report.latest = Some(signed);
    }
    for item in view.event_records() {
        let (key, value) = item?;
        if logged.contains(key.as_ref()) {
            continue;
        }
        let stored = decode_value::<StoredEvent>(&value).ok();
        if host.is_some_and(|h| stored.as_ref().is_some_and(|s| s.record_id().host_id != h)) {
            continue;
        }
        report.unlogged_records += 1;
        let id = stored.as_ref().map(StoredEvent::record_id).unwrap_or_default();
        audit.unlogged(id, &describe(&value));
    }
    let audited = audit.finish();
    report.log_size = audited.log_size;
    report.leaves_checked = audited.leaves_checked;
    report.records_intact = audited.records_intact;
    report.pruned_by_retention = audited.pruned_by_retention;
    report.findings = bad_signatures;
    report.findings.extend(audited.findings.into_iter().map(finding));
    Ok(report)
}

/// The edge between the audit's findings and the contract's.
fn finding(f: watchtower_tlog::Finding) -> Finding {
    let id = f.record.unwrap_or_default();
    Finding {
        problem: f.problem.into(),
        leaf: f.leaf,
        host_id: id.host_id,
        boot_id: id.boot_id,
        seq: id.seq,
        time_unix_ns: id.time_unix_ns,
        detail: f.detail,
    }
}

/// A one-line account of a stored record, for findings.
fn describe(bytes: &[u8]) -> String {
    match decode_value::<StoredEvent>(bytes) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::encode_value;
    use watchtower_model::{Body, Event, Exec};

    use crate::Scratch;
    use crate::store::{EVENTS, LOG_LEAVES};
    use crate::tamper::CheckpointSigner;

    fn pinned(signer: &CheckpointSigner) -> CheckpointVerifier {
        CheckpointVerifier::new(signer.verifier_key()).unwrap()
    }

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
        let signer = CheckpointSigner::load(&dir.0.join("key"), "watchtower/test", &store).unwrap();
        let a = store
            .append("web-1", (1..=5).map(|s| exec("web-1", s)).collect(), 1, 0)
            .unwrap();
        assert_eq!((a.first_leaf, a.log_size), (0, 5));
        let b = store
            .append("db-1", (1..=3).map(|s| exec("db-1", s)).collect(), 1, 0)
            .unwrap();
        assert_eq!((b.first_leaf, b.log_size), (5, 8));
        signer.checkpoint(&store, "periodic").unwrap();
        let c = store
            .append("web-1", (6..=7).map(|s| exec("web-1", s)).collect(), 1, 0)
            .unwrap();
        assert_eq!((c.first_leaf, c.log_size), (8, 10));
        // Resent events are not logged twice.
        let d = store.append("web-1", vec![exec("web-1", 7)], 1, 0).unwrap();
        assert_eq!((d.duplicates, d.log_size), (1, 10));
        signer.checkpoint(&store, "periodic").unwrap();
        (store, signer)
    }

    fn pk(host: &str, seq: u64) -> Vec<u8> {
        crate::store::keys::PrimaryKey::new(host, 1_000_000_000 * seq, seq, "boot-a").0
    }

    #[test]
    fn an_untouched_store_verifies_and_the_log_survives_reopening() {
        let dir = scratch("clean");
        let (store, signer) = setup(&dir);
        let report = verify(&store, None, &pinned(&signer)).unwrap();
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
        let web = verify(&store, Some("web-1"), &pinned(&signer)).unwrap();
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
        assert_eq!(problems(&verify(&store, None, &pinned(&signer)).unwrap()), vec![]);
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
        let report = verify(&store, None, &pinned(&signer)).unwrap();
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
        let web = verify(&store, Some("web-1"), &pinned(&signer)).unwrap();
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
        };
        let record = encode_value(&record);
        let forged = decode_value::<StoredEvent>(record.as_slice()).unwrap();
        let leaf = LeafEntry::Record {
            id: forged.record_id(),
            record_sha256: forged.record_sha256(),
        };
        store.raw_put(LOG_LEAVES, &3u64.to_be_bytes(), &leaf.encode());
        store.raw_put(EVENTS, &pk("web-1", 4), &record);
        // And a record slipped in behind the server's back.
        let forged = StoredEvent {
            event: Some(exec("web-1", 99)),
            received_unix_ns: 1,
            ..StoredEvent::default()
        };
        store.raw_put(EVENTS, &pk("web-1", 99), &encode_value(&forged));
        let report = verify(&store, None, &pinned(&signer)).unwrap();
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
            report.findings[0].detail.contains("first 8 leaves"),
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
        store.log_retention(3_000_000_000, 4_000_000_000).unwrap();
        signer.checkpoint(&store, "retention").unwrap();
        assert_eq!(store.prune_before(3_000_000_000).unwrap(), 4);
        let report = verify(&store, None, &pinned(&signer)).unwrap();
        assert_eq!(problems(&report), vec![]);
        assert_eq!((report.pruned_by_retention, report.records_intact), (4, 6));
        // Removing a newer record is still named.
        store.raw_delete(EVENTS, &pk("web-1", 6));
        let report = verify(&store, None, &pinned(&signer)).unwrap();
        assert_eq!(problems(&report), vec![("removed".into(), "web-1".into(), 6)]);
    }

    #[test]
    fn checkpoints_from_another_key_or_cut_leaves_are_named() {
        let dir = scratch("keys");
        let (store, signer) = setup(&dir);
        let other = CheckpointSigner::load(&dir.0.join("other-key"), "watchtower/test", &store).unwrap_err();
        assert!(matches!(
            other,
            crate::tamper::checkpoint::SignerError::MissingForExistingLog(..)
        ));
        let (_, other_key) = watchtower_tlog::CheckpointSigner::generate("watchtower/test").unwrap();
        let other = CheckpointVerifier::new(&other_key).unwrap();
        let report = verify(&store, None, &other).unwrap();
        let found: Vec<_> = report.findings.iter().map(|f| f.problem.as_str()).collect();
        assert_eq!(found, vec!["bad_signature", "bad_signature"]);
        store.raw_delete(LOG_LEAVES, &9u64.to_be_bytes());
        let report = verify(&store, None, &pinned(&signer)).unwrap();
        let found: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.problem.as_str(), f.seq))
            .collect();
        assert_eq!(found, vec![("truncated", 0), ("unlogged", 7)]);
    }

    #[test]
    fn a_zeroed_leaf_time_with_a_deleted_record_is_not_pruning() {
        let dir = scratch("zeroed");
        let (store, signer) = setup(&dir);
        store.log_retention(1, 2).unwrap();
        signer.checkpoint(&store, "retention").unwrap();
        // The attacker sets leaf 2's time to 0 (before the cut-off) and deletes it.
        let entry = LeafEntry::decode(&store.raw_get(LOG_LEAVES, &2u64.to_be_bytes()).unwrap()).unwrap();
        let LeafEntry::Record {
            mut id,
            record_sha256,
        } = entry
        else {
            panic!("a record leaf")
        };
        id.time_unix_ns = 0;
        store.raw_put(
            LOG_LEAVES,
            &2u64.to_be_bytes(),
            &LeafEntry::Record { id, record_sha256 }.encode(),
        );
        store.raw_delete(EVENTS, &pk("web-1", 3));
        let report = verify(&store, None, &pinned(&signer)).unwrap();
        let found: Vec<_> = report.findings.iter().map(|f| f.problem.as_str()).collect();
        assert_eq!(found, ["root_mismatch", "root_mismatch", "root_mismatch"]);
        assert_eq!(report.pruned_by_retention, 1);
    }

    #[test]
    fn a_conflicting_duplicate_is_kept_logged_and_named() {
        let dir = scratch("conflict");
        let (store, signer) = setup(&dir);
        let mut other = exec("web-1", 3);
        other.body = Some(Body::Exec(Exec {
            filename: "/bin/other".into(),
            ..Exec::default()
        }));
        let appended = store
            .append("web-1", vec![other, exec("web-1", 3)], 2, 0)
            .unwrap();
        assert_eq!(
            (appended.duplicates, appended.conflicts.len(), appended.log_size),
            (1, 1, 11)
        );
        signer.checkpoint(&store, "periodic").unwrap();
        let report = verify(&store, None, &pinned(&signer)).unwrap();
        assert_eq!(problems(&report), vec![("conflict".into(), "web-1".into(), 3)]);
        assert_eq!(report.findings[0].leaf, 10);
        // The original is untouched.
        assert_eq!(report.records_intact, 11);
    }

    #[test]
    fn events_of_two_boots_whose_boot_hashes_collide_are_both_kept() {
        let dir = scratch("boots");
        let store = EventStore::open(&dir.0.join("db")).unwrap();
        let boots = ["8yn0iYCKYHlIj4-BwPqk", "GReLUrM4wMqfg9yzV3KQ"];
        let events: Vec<Event> = boots
            .iter()
            .map(|boot| Event {
                boot_id: (*boot).into(),
                ..exec("web-1", 1)
            })
            .collect();
        let signer = CheckpointSigner::load(&dir.0.join("key"), "watchtower/test", &store).unwrap();
        let appended = store.append("web-1", events, 1, 0).unwrap();
        assert_eq!(appended.stored.len(), 2);
        signer.checkpoint(&store, "periodic").unwrap();
        let report = verify(&store, None, &pinned(&signer)).unwrap();
        assert_eq!((problems(&report), report.records_intact), (vec![], 2));
    }
}
