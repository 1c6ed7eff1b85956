//! Torn, corrupt and foreign files, and write errors: cut and counted, never a crash.

use super::*;

/// Offset of the n-th (0-based) ten-byte frame of a segment.
fn frame_offset(n: u64) -> u64 {
    MAGIC_LEN + n * frame_len(10)
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

#[test]
fn flipped_byte_in_a_middle_frame_cuts_that_segment_only() {
    let tmp = TempDir::new("flip");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    append_all(&mut spool, 1..=9); // [1 2 3] [4 5 6] [7 8 9]
    drop(spool);
    let middle = dir.join(file_name(4));
    // A payload byte of record 5.
    flip_byte(&middle, frame_offset(1) + HEADER_LEN + 3);

    let (mut spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 1,
            truncated_bytes: 2 * frame_len(10),
            pending: 7
        }
    );
    assert_eq!(fs::metadata(&middle).unwrap().len(), frame_offset(1));
    let expected: Vec<(u64, Vec<u8>)> = [1, 2, 3, 4, 7, 8, 9]
        .into_iter()
        .map(|i| (i, payload(i, 10)))
        .collect();
    assert_eq!(all_from(&spool, 1), expected);
    assert_eq!(indexes(&all_from(&spool, 5)), [7, 8, 9]);
    assert_eq!(spool.next_index(), 10);
    assert_eq!(spool.bytes(), disk_bytes(&dir));
    // Acks over the hole count only the records that are there.
    spool.ack(7).unwrap();
    assert_eq!(spool.pending(), 2);
    drop(spool);
    let (_, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 0,
            truncated_bytes: 0,
            pending: 2
        }
    );
}

#[test]
fn bad_first_frame_removes_the_segment() {
    let tmp = TempDir::new("flipfirst");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    append_all(&mut spool, 1..=9);
    drop(spool);
    // The index of record 4, the first of the middle segment: the checksum covers it.
    flip_byte(&dir.join(file_name(4)), frame_offset(0) + 8);
    let (spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 1,
            truncated_bytes: 3 * frame_len(10),
            pending: 6
        }
    );
    assert!(!dir.join(file_name(4)).exists());
    assert_eq!(indexes(&all_from(&spool, 1)), [1, 2, 3, 7, 8, 9]);
}

#[test]
fn insane_length_and_out_of_order_indexes_are_cut() {
    let tmp = TempDir::new("insane");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    append_all(&mut spool, 1..=3);
    drop(spool);
    // A length over 4 MiB in record 2's header.
    let path = dir.join(file_name(1));
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&u32::MAX.to_le_bytes(), frame_offset(1))
        .unwrap();
    drop(file);
    // A segment whose records repeat indexes already seen (valid checksums).
    let mut bad = MAGIC.to_vec();
    encode_frame(&mut bad, 1, b"again");
    encode_frame(&mut bad, 5, b"later");
    fs::write(dir.join(file_name(1).replace("01.seg", "04.seg")), &bad).unwrap();
    let (spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(report.corrupt_records, 2);
    assert_eq!(
        report.truncated_bytes,
        2 * frame_len(10) + (bad.len() as u64 - MAGIC_LEN)
    );
    assert_eq!(indexes(&all_from(&spool, 1)), [1]);
    assert_eq!(spool.next_index(), 2);
    assert_eq!(segment_files(&dir), [path]);
}

#[test]
fn leftovers_of_a_crash_while_creating_files_are_removed() {
    let tmp = TempDir::new("leftovers");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    append_all(&mut spool, 1..=3);
    drop(spool);
    fs::write(dir.join(file_name(4)), b"").unwrap();
    fs::write(dir.join(file_name(5)), b"WTSP").unwrap();
    fs::write(dir.join(file_name(6)), b"this is not a segment").unwrap();
    fs::write(dir.join("acked.tmp"), b"12").unwrap();
    // Files that are not the spool's are left alone.
    fs::write(dir.join("notes.seg"), b"x").unwrap();
    fs::write(dir.join("README"), b"x").unwrap();
    let (mut spool, report) = open(&dir, 1 << 20, THREE_PER_SEGMENT);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 1,
            truncated_bytes: 4 + 21,
            pending: 3
        }
    );
    assert_eq!(
        segment_files(&dir),
        [dir.join(file_name(1)), dir.join("notes.seg")]
    );
    assert!(!dir.join("acked.tmp").exists());
    assert!(dir.join("README").exists());
    assert_eq!(spool.next_index(), 4);
    assert_eq!(spool.bytes(), MAGIC_LEN + 3 * frame_len(10));
    append_all(&mut spool, 4..=4);
    assert_eq!(indexes(&all_from(&spool, 1)), [1, 2, 3, 4]);
}

#[test]
fn another_format_version_is_an_error_and_left_alone() {
    let tmp = TempDir::new("version");
    let dir = tmp.spool();
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file_name(1));
    fs::write(&path, b"WTSPOOL9 and more").unwrap();
    let Err(err) = Spool::open(config(&dir, 1 << 20, 1000)) else {
        panic!("opened a WTSPOOL9 segment")
    };
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("WTSPOOL9"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"WTSPOOL9 and more");
}

#[test]
fn garbage_acked_is_a_clear_error() {
    let tmp = TempDir::new("garbage");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 1000);
    append_all(&mut spool, 1..=2);
    drop(spool);
    for garbage in ["12abc", "", "-3", "99999999999999999999999"] {
        fs::write(dir.join("acked"), garbage).unwrap();
        let Err(err) = Spool::open(config(&dir, 1 << 20, 1000)) else {
            panic!("opened with acked {garbage:?}")
        };
        let message = err.to_string();
        assert!(matches!(err, SpoolError::Corrupt { .. }), "{message}");
        assert!(
            message.contains(&dir.join("acked").display().to_string()),
            "{message}"
        );
        assert!(message.contains(&format!("{garbage:?}")), "{message}");
    }
    // Surrounding white space is fine.
    fs::write(dir.join("acked"), " 1\n").unwrap();
    let (spool, report) = open(&dir, 1 << 20, 1000);
    assert_eq!((spool.acked(), report.pending), (1, 1));
}

#[test]
fn too_large_records_are_dropped_and_counted() {
    let tmp = TempDir::new("toolarge");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 64 << 20, 4096);
    let biggest = vec![7u8; MAX_RECORD];
    let records = [
        payload(1, 10),
        vec![0; MAX_RECORD + 1],
        biggest.clone(),
        payload(3, 10),
    ];
    let appended = spool.append(&records).unwrap();
    assert_eq!(
        appended,
        Appended {
            written: 3,
            dropped_full: 0,
            first_index: 1
        }
    );
    assert_eq!(spool.dropped()["too_large"], 1);
    // The 4 MiB record is larger than a segment: it went alone into one.
    assert_eq!(segment_files(&dir).len(), 3);
    assert_eq!(
        fs::metadata(dir.join(file_name(2))).unwrap().len(),
        MAGIC_LEN + frame_len(MAX_RECORD)
    );
    drop(spool);
    let (spool, report) = open(&dir, 64 << 20, 4096);
    assert_eq!(report.pending, 3);
    assert_eq!(
        all_from(&spool, 1),
        [(1, payload(1, 10)), (2, biggest), (3, payload(3, 10))]
    );
    assert_eq!(indexes(&spool.read_from(1, 10, 100).unwrap()), [1]);
}

#[test]
fn ack_beyond_the_end_is_an_error() {
    let tmp = TempDir::new("beyond");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 1000);
    assert!(matches!(
        spool.ack(1),
        Err(SpoolError::AckBeyondEnd {
            through: 1,
            next_index: 1
        })
    ));
    append_all(&mut spool, 1..=3);
    assert!(matches!(
        spool.ack(4),
        Err(SpoolError::AckBeyondEnd {
            through: 4,
            next_index: 4
        })
    ));
    assert!(matches!(
        spool.ack(u64::MAX),
        Err(SpoolError::AckBeyondEnd { .. })
    ));
    assert_eq!((spool.acked(), spool.pending()), (0, 3));
    assert!(!dir.join("acked").exists());
    spool.ack(3).unwrap();
    assert_eq!((spool.acked(), spool.pending()), (3, 0));
}

#[test]
fn corruption_after_open_is_an_error_on_read_not_a_crash() {
    let tmp = TempDir::new("lateflip");
    let dir = tmp.spool();
    let (mut spool, _) = open(&dir, 1 << 20, 1000);
    append_all(&mut spool, 1..=3);
    flip_byte(&dir.join(file_name(1)), frame_offset(1) + HEADER_LEN);
    assert_eq!(indexes(&spool.read_from(1, 1, usize::MAX).unwrap()), [1]);
    let err = spool.read_from(2, 10, usize::MAX).unwrap_err();
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn missing_directories_are_created() {
    let tmp = TempDir::new("mkdir");
    let dir = tmp.spool().join("a").join("b");
    let (mut spool, _) = open(&dir, 1 << 20, 1000);
    assert!(dir.is_dir());
    append_all(&mut spool, 1..=1);
}

#[test]
fn reads_seek_by_marks_in_large_segments() {
    let tmp = TempDir::new("marks");
    let dir = tmp.spool();
    // 1,000-byte records, one segment of about 2 MiB: many marks.
    let (mut spool, _) = open(&dir, 64 << 20, 8 << 20);
    let records: Vec<Vec<u8>> = (1..=2000).map(|t| payload(t, 1000)).collect();
    spool.append(&records).unwrap();
    assert!(spool.segments[0].marks.len() > 20);
    for from in [1, 2, 64, 65, 66, 1000, 1999, 2000] {
        assert_eq!(
            spool.read_from(from, 2, usize::MAX).unwrap()[0],
            (from, payload(from, 1000))
        );
    }
    drop(spool);
    let (spool, _) = open(&dir, 64 << 20, 8 << 20);
    assert_eq!(
        spool.read_from(1500, 1, usize::MAX).unwrap(),
        [(1500, payload(1500, 1000))]
    );
}

const CHILD_ENV: &str = "WT_SPOOL_WRITE_ERROR_CHILD";
const FILE_SIZE_LIMIT: u64 = 1000;

/// An I/O error mid-group (here `EFBIG` from `RLIMIT_FSIZE`, as `ENOSPC` would be) leaves the
/// files as they were. The limit is per process, so the test runs in a child process.
#[test]
fn write_error_rolls_back() {
    if std::env::var_os(CHILD_ENV).is_some() {
        write_error_child();
        return;
    }
    let module = module_path!();
    let name = format!(
        "{}::write_error_rolls_back",
        module.split_once("::").map_or(module, |(_, rest)| rest)
    );
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}\n{stderr}"
    );
}

fn write_error_child() {
    // SAFETY: the child runs this one test alone; writes past the limit then fail with
    // EFBIG instead of raising SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &raw mut limit), 0);
        limit.rlim_cur = FILE_SIZE_LIMIT as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &raw const limit), 0);
    }
    let tmp = TempDir::new("writeerror");

    // A group that overflows the last segment: cut back to where it was.
    let dir = tmp.spool().join("a");
    let (mut spool, _) = open(&dir, 1 << 20, 4000);
    append_all(&mut spool, 1..=3);
    let before = spool.bytes();
    let big: Vec<Vec<u8>> = (4..=6).map(|t| payload(t, 300)).collect();
    let err = spool.append(&big).unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err}");
    assert_eq!(spool.dropped()["write_error"], 3);
    assert_eq!(
        (
            spool.bytes(),
            disk_bytes(&dir),
            spool.next_index(),
            spool.pending()
        ),
        (before, before, 4, 3)
    );
    append_all(&mut spool, 4..=4);
    assert_eq!(indexes(&all_from(&spool, 1)), [1, 2, 3, 4]);

    // A group that fits the last segment, then fails in a new one: both undone.
    let dir = tmp.spool().join("b");
    let (mut spool, _) = open(&dir, 1 << 20, 200);
    append_all(&mut spool, 1..=3);
    let before = spool.bytes();
    let err = spool.append(&[payload(4, 10), payload(5, 1100)]).unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err}");
    assert_eq!(spool.dropped()["write_error"], 2);
    assert_eq!(segment_files(&dir), [dir.join(file_name(1))]);
    assert_eq!(
        (spool.bytes(), disk_bytes(&dir), spool.next_index()),
        (before, before, 4)
    );
    append_all(&mut spool, 4..=5);
    drop(spool);
    let (spool, report) = open(&dir, 1 << 20, 200);
    assert_eq!(
        report,
        OpenReport {
            corrupt_records: 0,
            truncated_bytes: 0,
            pending: 5
        }
    );
    assert_eq!(
        all_from(&spool, 1),
        (1..=5).map(|i| (i, payload(i, 10))).collect::<Vec<_>>()
    );
}
