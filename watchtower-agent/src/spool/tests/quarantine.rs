//! The quarantine: refused records leave the delivery order but stay on disk,
//! counted, across restarts; a torn tail is cut; the file is bounded.

use super::*;

fn refused(indexes: &[u64], reason: &str) -> Vec<(u64, String)> {
    indexes.iter().map(|i| (*i, reason.to_owned())).collect()
}

#[test]
fn quarantined_records_are_kept_counted_and_survive_the_ack_and_a_reopen() {
    let tmp = TempDir::new("quarantine");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 4096);
    append_all(&mut spool, 1..=10);
    assert_eq!(spool.dropped()["quarantined"], 0);
    let kept = spool
        .quarantine(&refused(&[3, 7], "field_too_long: login_attempt.user"))
        .unwrap();
    assert_eq!((kept, spool.quarantined()), (2, 2));
    assert_eq!(spool.dropped()["quarantined"], 2);
    // Already quarantined, acknowledged or never written: skipped.
    spool.ack(5).unwrap();
    assert_eq!(spool.quarantine(&refused(&[3, 7, 2, 99], "again")).unwrap(), 0);
    spool.ack(10).unwrap();
    assert_eq!(spool.pending(), 0);
    assert_eq!(
        segment_files(&dir).len(),
        1,
        "only the segment appends go on in is kept"
    );

    let held = read_quarantine(&dir).unwrap();
    let summary: Vec<_> = held.iter().map(|q| (q.index, q.reason.as_str())).collect();
    assert_eq!(
        summary,
        [
            (3, "field_too_long: login_attempt.user"),
            (7, "field_too_long: login_attempt.user")
        ]
    );
    assert_eq!(held[0].record, payload(3, 10), "the record as it was spooled");
    assert_eq!(held[1].record, payload(7, 10));
    drop(spool);
    let (spool, report) = open(&dir, 1 << 20, 4096);
    assert_eq!((spool.quarantined(), report.corrupt_records), (2, 0));
    assert_eq!(spool.dropped()["quarantined"], 2);
}

#[test]
fn a_torn_quarantine_tail_is_cut_and_counted() {
    let tmp = TempDir::new("quarantine-torn");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 4096);
    append_all(&mut spool, 1..=3);
    spool.quarantine(&refused(&[1], "a")).unwrap();
    spool.quarantine(&refused(&[2], "b")).unwrap();
    drop(spool);
    let path = dir.join("quarantine");
    let len = fs::metadata(&path).unwrap().len();
    truncate(&path, len - 3).unwrap();
    let (mut spool, report) = open(&dir, 1 << 20, 4096);
    assert_eq!((spool.quarantined(), report.corrupt_records), (1, 1));
    // It goes on after the cut.
    assert_eq!(spool.quarantine(&refused(&[2, 3], "c")).unwrap(), 2);
    let held: Vec<_> = read_quarantine(&dir)
        .unwrap()
        .into_iter()
        .map(|q| (q.index, q.reason))
        .collect();
    assert_eq!(held, [(1, "a".into()), (2, "c".into()), (3, "c".into())]);
}

#[test]
fn a_full_quarantine_counts_what_it_cannot_keep() {
    let tmp = TempDir::new("quarantine-full");
    let dir = tmp.spool();
    // A quarter of 300 bytes: the magic and two 29-byte frames (a 10-byte record with a
    // 1-byte reason) fit, a third does not.
    let (mut spool, _) = open(&dir, 300, 100);
    append_all(&mut spool, 1..=5);
    let kept = spool.quarantine(&refused(&[1, 2, 3], "r")).unwrap();
    assert_eq!(kept, 2);
    assert_eq!(
        (spool.dropped()["quarantined"], spool.dropped()["quarantine_full"]),
        (2, 1)
    );
    assert!(fs::metadata(dir.join("quarantine")).unwrap().len() <= 75);
}
