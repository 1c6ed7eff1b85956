//! The spool's tests: round trips, acks and a full spool here; damaged files
//! in [`damage`], a model-based property test in [`model`], the quarantine in
//! [`quarantine`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "wt-spool-{}-{name}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
    }
}

fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> (Spool, OpenReport) {
    Spool::open(config(dir, max_bytes, segment_bytes)).expect("open the spool")
}

/// A payload of `len` bytes that tells records apart.
fn payload(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

fn frame_len(payload_len: usize) -> u64 {
    HEADER_LEN + payload_len as u64
}

fn all_from(spool: &Spool, from: u64) -> Vec<(u64, Vec<u8>)> {
    spool.read_from(from, usize::MAX, usize::MAX).expect("read")
}

fn indexes(records: &[(u64, Vec<u8>)]) -> Vec<u64> {
    records.iter().map(|&(i, _)| i).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn disk_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum()
}

fn file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Append ten-byte records `tags`, expecting all of them written.
fn append_all(spool: &mut Spool, tags: std::ops::RangeInclusive<u64>) -> Appended {
    let records: Vec<Vec<u8>> = tags.clone().map(|t| payload(t, 10)).collect();
    let appended = spool.append(&records).expect("append");
    assert_eq!(appended.written, records.len() as u64);
    assert_eq!(appended.first_index, *tags.start());
    appended
}

// Ten-byte records are 26-byte frames: 8 + 2 * 26 = 60, so two fit in a 64-byte segment.
const TWO_PER_SEGMENT: u64 = 64;
// 8 + 3 * 26 = 86.
const THREE_PER_SEGMENT: u64 = 90;

#[test]
fn round_trip_across_segments() {
    let tmp = TempDir::new("roundtrip");
    let dir = tmp.spool();
    let (mut spool, report) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    assert_eq!(report, OpenReport::default());
    assert_eq!(
        (spool.next_index(), spool.acked(), spool.pending(), spool.bytes()),
        (1, 0, 0, 0)
    );
    assert!(spool.read_from(1, 10, 10).unwrap().is_empty());

    append_all(&mut spool, 1..=3);
    append_all(&mut spool, 4..=4);
    append_all(&mut spool, 5..=7);
    let names: Vec<String> = segment_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [1, 3, 5, 7].map(file_name));
    assert_eq!(spool.bytes(), disk_bytes(&dir));
    assert_eq!(spool.bytes(), 4 * MAGIC_LEN + 7 * frame_len(10));
    assert_eq!(spool.pending(), 7);
    assert_eq!(spool.next_index(), 8);

    let expected: Vec<(u64, Vec<u8>)> = (1..=7).map(|i| (i, payload(i, 10))).collect();
    for from in 1..=8 {
        assert_eq!(
            all_from(&spool, from),
            expected[(from - 1) as usize..],
            "from {from}"
        );
    }
    assert!(all_from(&spool, 100).is_empty());
    // Limits: record count, then payload bytes (at least one record even if larger).
    assert_eq!(indexes(&spool.read_from(2, 3, usize::MAX).unwrap()), [2, 3, 4]);
    assert_eq!(indexes(&spool.read_from(2, 100, 25).unwrap()), [2, 3]);
    assert_eq!(indexes(&spool.read_from(2, 100, 30).unwrap()), [2, 3, 4]);
    assert_eq!(indexes(&spool.read_from(6, 100, 1).unwrap()), [6]);
    assert_eq!(indexes(&spool.read_from(6, 0, 0).unwrap()), [6]);

    spool.ack(4).unwrap();
    assert_eq!((spool.acked(), spool.pending()), (4, 3));
    assert_eq!(indexes(&all_from(&spool, 5)), [5, 6, 7]);
    assert_eq!(spool.bytes(), disk_bytes(&dir));
    spool.ack(7).unwrap();
    // The segment appends go on in stays, all of it acknowledged.
    assert_eq!(
        (spool.acked(), spool.pending(), spool.bytes()),
        (7, 0, disk_bytes(&dir))
    );
    assert_eq!(segment_files(&dir), [dir.join(file_name(7))]);
    // Reads from the first index go no further than the acknowledged record kept.
    assert_eq!(indexes(&all_from(&spool, 1)), [7]);
    assert!(all_from(&spool, 8).is_empty());
    assert_eq!(spool.dropped().values().sum::<u64>(), 0);
    assert_eq!(spool.dropped().len(), 5, "every reason is reported, zero or not");
}

#[test]
fn ack_deletes_whole_segments_only_and_survives_reopen() {
    let tmp = TempDir::new("ack");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    append_all(&mut spool, 1..=7); // segments [1 2] [3 4] [5 6] [7]
    spool.ack(3).unwrap();
    assert_eq!(segment_files(&dir).len(), 3, "only the segment of 1 and 2 goes");
    assert_eq!((spool.acked(), spool.pending()), (3, 4));
    assert_eq!(spool.bytes(), disk_bytes(&dir));
    // Record 3 is acknowledged but still on disk, in a segment that is kept.
    assert_eq!(indexes(&all_from(&spool, 1)), [3, 4, 5, 6, 7]);
    assert_eq!(fs::read_to_string(dir.join("acked")).unwrap(), "3\n");
    // An ack at or below the last one changes nothing.
    spool.ack(2).unwrap();
    spool.ack(3).unwrap();
    assert_eq!((spool.acked(), spool.pending()), (3, 4));
    drop(spool);

    let (mut spool, report) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 0,
            truncated_bytes: 0,
            pending: 4
        }
    );
    assert_eq!((spool.acked(), spool.next_index(), spool.pending()), (3, 8, 4));
    assert_eq!(
        all_from(&spool, 4),
        (4..=7).map(|i| (i, payload(i, 10))).collect::<Vec<_>>()
    );
    assert_eq!(spool.bytes(), disk_bytes(&dir));
    // Appends go on in the last segment, with the next index.
    append_all(&mut spool, 8..=9);
    assert_eq!(segment_files(&dir).len(), 4);
    spool.ack(6).unwrap();
    assert_eq!(indexes(&all_from(&spool, 1)), [7, 8, 9]);
    assert_eq!(spool.pending(), 3);
    drop(spool);

    let (spool, report) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    assert_eq!(report.pending, 3);
    assert_eq!(indexes(&all_from(&spool, 7)), [7, 8, 9]);
    assert_eq!(spool.next_index(), 10);
}

#[test]
fn acked_segments_left_by_a_crash_are_deleted_at_open() {
    let tmp = TempDir::new("ackcrash");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    append_all(&mut spool, 1..=5);
    drop(spool);
    // The ack was recorded, then the agent died before deleting anything.
    fs::write(dir.join("acked"), "3").unwrap();
    fs::write(dir.join("acked.tmp"), "junk from a crash").unwrap();
    let (spool, report) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 0,
            truncated_bytes: 0,
            pending: 2
        }
    );
    assert_eq!(
        segment_files(&dir),
        [dir.join(file_name(3)), dir.join(file_name(5))],
        "[1 2] deleted, [3 4] kept for 4"
    );
    assert!(!dir.join("acked.tmp").exists());
    assert_eq!(indexes(&all_from(&spool, 4)), [4, 5]);
    assert_eq!(
        (spool.acked(), spool.next_index(), spool.bytes()),
        (3, 6, disk_bytes(&dir))
    );
}

#[test]
fn indexes_are_never_reused_after_everything_was_acked() {
    let tmp = TempDir::new("noreuse");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    append_all(&mut spool, 1..=5);
    spool.ack(5).unwrap();
    // Only the segment appends go on in is kept; the next record fits in it.
    assert_eq!(segment_files(&dir), [dir.join(file_name(5))]);
    append_all(&mut spool, 6..=6);
    assert_eq!(segment_files(&dir), [dir.join(file_name(5))]);
    spool.ack(6).unwrap();
    drop(spool);

    // Nothing is left but `acked`, which carries the high-water mark.
    let (mut spool, report) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    assert_eq!(report, OpenReport::default());
    assert_eq!(
        (spool.next_index(), spool.acked(), spool.pending(), spool.bytes()),
        (7, 6, 0, 0)
    );
    append_all(&mut spool, 7..=8);
    assert_eq!(segment_files(&dir), [dir.join(file_name(7))]);
    drop(spool);
    let (spool, _) = open(&dir, 1 << 20, TWO_PER_SEGMENT);
    assert_eq!(spool.next_index(), 9);
    assert_eq!(indexes(&all_from(&spool, 1)), [7, 8]);
}

#[test]
fn full_spool_drops_and_counts_then_recovers_after_an_ack() {
    let tmp = TempDir::new("full");
    let dir = tmp.spool();
    // Room for one segment of four ten-byte records (8 + 4 * 26 = 112).
    let (mut spool, _) = open(&dir, 112, 1000);
    let records: Vec<Vec<u8>> = (1..=6).map(|t| payload(t, 10)).collect();
    let appended = spool.append(&records).unwrap();
    assert_eq!(
        appended,
        Appended {
            written: 4,
            dropped_full: 2,
            first_index: 1
        }
    );
    assert_eq!(spool.bytes(), 112);
    assert_eq!(spool.dropped()["spool_full"], 2);
    let appended = spool.append(&[payload(7, 0)]).unwrap();
    assert_eq!(
        appended,
        Appended {
            written: 0,
            dropped_full: 1,
            first_index: 0
        }
    );
    assert_eq!(spool.dropped()["spool_full"], 3);
    assert_eq!((spool.next_index(), spool.pending()), (5, 4));
    assert_eq!(
        all_from(&spool, 1),
        (1..=4).map(|i| (i, payload(i, 10))).collect::<Vec<_>>()
    );

    // Acking part of the only segment frees nothing; acking all of it does.
    spool.ack(3).unwrap();
    assert_eq!(spool.append(&[payload(8, 10)]).unwrap().dropped_full, 1);
    spool.ack(4).unwrap();
    assert_eq!(spool.pending(), 0);
    // The acknowledged segment is kept until a group does not fit in it; this one
    // does not, so it starts a new segment with the whole budget.
    let appended = spool.append(&records[..4]).unwrap();
    assert_eq!(
        appended,
        Appended {
            written: 4,
            dropped_full: 0,
            first_index: 5
        }
    );
    assert_eq!(spool.dropped()["spool_full"], 4);
    assert_eq!(spool.bytes(), disk_bytes(&dir));
}

#[test]
fn full_spool_still_takes_records_that_fit() {
    let tmp = TempDir::new("fullfit");
    let dir = tmp.spool();
    // 8 + 26 + 16 = 50: a ten-byte record and an empty one.
    let (mut spool, _) = open(&dir, 50, 1000);
    let appended = spool
        .append(&[payload(1, 10), payload(2, 10), Vec::new()])
        .unwrap();
    assert_eq!(
        appended,
        Appended {
            written: 2,
            dropped_full: 1,
            first_index: 1
        }
    );
    assert_eq!(all_from(&spool, 1), [(1, payload(1, 10)), (2, Vec::new())]);
    assert_eq!(spool.bytes(), 50);
}

#[test]
fn torn_tail_is_cut_and_counted() {
    let tmp = TempDir::new("torn");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    append_all(&mut spool, 1..=5); // [1 2 3] [4 5]
    drop(spool);
    let last = dir.join(file_name(4));
    let len = fs::metadata(&last).unwrap().len();
    assert_eq!(len, MAGIC_LEN + 2 * frame_len(10));
    // The crash left record 5 half written.
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let (mut spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 1,
            truncated_bytes: frame_len(10) - 5,
            pending: 4
        }
    );
    assert_eq!(spool.corrupt_records(), 1);
    assert_eq!(fs::metadata(&last).unwrap().len(), MAGIC_LEN + frame_len(10));
    assert_eq!(
        all_from(&spool, 1),
        (1..=4).map(|i| (i, payload(i, 10))).collect::<Vec<_>>()
    );
    assert_eq!(spool.next_index(), 5);
    append_all(&mut spool, 5..=6);
    assert_eq!(spool.bytes(), disk_bytes(&dir));
    drop(spool);

    let (spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 0,
            truncated_bytes: 0,
            pending: 6
        }
    );
    assert_eq!(
        all_from(&spool, 1),
        (1..=6).map(|i| (i, payload(i, 10))).collect::<Vec<_>>()
    );
}

#[test]
fn torn_header_and_zeroed_tail_are_cut() {
    let tmp = TempDir::new("tornheader");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    append_all(&mut spool, 1..=2);
    drop(spool);
    let path = dir.join(file_name(1));
    // Three bytes of a header.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[9, 0, 0]).unwrap();
    drop(file);
    let (spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 1,
            truncated_bytes: 3,
            pending: 2
        }
    );
    assert_eq!(spool.next_index(), 3);
    drop(spool);
    // A size extended with zeros (power loss on some file systems).
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[0; 40]).unwrap();
    drop(file);
    let (spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 1,
            truncated_bytes: 40,
            pending: 2
        }
    );
    assert_eq!(indexes(&all_from(&spool, 1)), [1, 2]);
}

mod damage;
mod model;
mod quarantine;

#[test]
fn an_ack_that_deletes_nothing_waits_in_memory_and_a_crash_only_resends() {
    let tmp = TempDir::new("lazy-ack");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 1 << 16);
    append_all(&mut spool, 1..=6); // one segment
    spool.ack(2).unwrap();
    spool.ack(4).unwrap();
    assert_eq!((spool.acked(), spool.pending()), (4, 2));
    // Within the interval, no ack rewrote the file (and fsyncs) for these acks.
    let on_disk = fs::read_to_string(dir.join("acked")).ok();
    assert!(
        on_disk.is_none() || on_disk.as_deref() == Some("2\n"),
        "at most the first ack is on disk: {on_disk:?}"
    );
    // A crash (no drop): the reopened spool sends the unsynced acks' records again.
    std::mem::forget(spool);
    let (spool, report) = open(&dir, 1 << 20, 1 << 16);
    let durable = on_disk.map_or(0, |t| t.trim().parse::<u64>().unwrap());
    assert_eq!(
        report.pending,
        6 - durable,
        "nothing lost, the unsynced acks are resent"
    );
    assert_eq!(
        indexes(&all_from(&spool, durable + 1)),
        ((durable + 1)..=6).collect::<Vec<_>>()
    );
    drop(spool);

    // A clean close makes the last ack durable.
    let (mut spool, _) = open(&dir, 1 << 20, 1 << 16);
    spool.ack(5).unwrap();
    drop(spool);
    assert_eq!(fs::read_to_string(dir.join("acked")).unwrap(), "5\n");
    let (spool, report) = open(&dir, 1 << 20, 1 << 16);
    assert_eq!((spool.acked(), report.pending), (5, 1));
}

#[test]
fn acks_are_made_durable_once_the_interval_passed() {
    let tmp = TempDir::new("ack-interval");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 1 << 16);
    append_all(&mut spool, 1..=4);
    std::thread::sleep(crate::spool::ACK_SYNC_INTERVAL);
    spool.ack(3).unwrap();
    assert_eq!(fs::read_to_string(dir.join("acked")).unwrap(), "3\n");
    std::mem::forget(spool);
}
