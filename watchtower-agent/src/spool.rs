//! The on-disk spool: every event the server has not yet acknowledged, kept so that it
//! survives kill -9 and power loss and is sent again after a restart.
//!
//! Rules (design.md, "Transport and store"):
//! - a record counts as captured only once it is fsynced: [`Spool::append`] writes a whole
//!   group and fsyncs once for it;
//! - the directory is fsynced whenever a file in it is created, renamed or removed;
//! - a segment is deleted only after the ack that covers it is durable in `acked`; the
//!   segment appends go on in is kept, even fully acknowledged, until a group of
//!   records no longer fits in it;
//! - other acks are made durable at most once per [`ACK_SYNC_INTERVAL`] (and when the
//!   spool is closed): an ack lost in a crash only makes the agent send those records
//!   again, and the server drops what it already holds by `(host, boot, seq)`;
//! - every record carries a CRC-32; a torn or corrupt tail is cut and counted, never a crash.
//!
//! On-disk format, all in one directory:
//! - `<index>.seg` (the index of its first record, 20 zero-padded decimal digits): a segment.
//!   It starts with the magic `WTSPOOL1`, followed by frames
//!   `[u32 LE payload length][u32 LE crc32 of (u64 LE index, payload)][u64 LE index][payload]`.
//!   Indexes increase strictly within a segment and from one segment to the next.
//! - `acked`: the highest index the server has stored, as decimal text. It is replaced
//!   atomically: `acked.tmp` is written and fsynced, renamed over `acked`, and the directory
//!   is fsynced.
//! - `quarantine`: records that can never be delivered (the server refused them as invalid,
//!   or they cannot be sent), moved there before the ack that covers them, so that the
//!   records after them still go; see [`quarantine`] for its format.
//!
//! Indexes start at 1 and are never handed out twice. At open the next index is
//! max(last good record + 1, `acked` + 1). An ack can never pass the last index handed out,
//! so once every record is acknowledged and every segment deleted, `acked` still holds the
//! high-water mark (no empty segment is kept for it). If a failed append cannot be undone
//! on disk, its indexes are skipped. The one exception is a record cut at open from the
//! tail of the last segment: its index is handed out again. Such a record was never fsynced
//! (so `append` never reported it written) unless the disk damaged it afterwards; the
//! server only echoes indexes back as batch ids, so even then nothing is confused.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

mod files;
mod frame;
mod quarantine;

use files::{
    ensure_dir, io_at, list_segments, read_acked, remove_if_present, segment_path, sync_dir, truncate,
    write_acked,
};
use frame::{Scanned, encode_frame, read_segment, scan_segment};
use quarantine::Quarantine;
#[allow(unused_imports, reason = "for operators' tools and tests")]
pub use quarantine::{Quarantined, read_quarantine};

/// First bytes of every segment file (the digit is the format version).
const MAGIC: &[u8; 8] = b"WTSPOOL1";
const MAGIC_LEN: u64 = MAGIC.len() as u64;
/// Payload length, checksum and index in front of every payload.
const HEADER_LEN: u64 = 16;
/// Largest payload of one record; larger ones are dropped and counted (`too_large`).
const MAX_RECORD: usize = 4 * 1024 * 1024;
/// A read can seek to within this many bytes of the record it starts at.
const MARK_EVERY: u64 = 64 * 1024;
const ACKED_FILE: &str = "acked";
/// How long an ack that deletes no segment may stay in memory only.
pub const ACK_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
const ACKED_TMP: &str = "acked.tmp";
const SEGMENT_SUFFIX: &str = ".seg";
const NAME_DIGITS: usize = 20;
/// Indexes (and `acked`) above this are treated as corrupt, so index arithmetic never overflows.
const MAX_INDEX: u64 = u64::MAX / 2;

/// Reasons records are dropped, as counted by [`Spool::dropped`].
const SPOOL_FULL: &str = "spool_full";
const WRITE_ERROR: &str = "write_error";
const TOO_LARGE: &str = "too_large";
/// Not a loss: records held in the quarantine file (see [`Spool::quarantine`]).
const QUARANTINED: &str = "quarantined";
/// Records to quarantine that did not fit in the quarantine file.
const QUARANTINE_FULL: &str = "quarantine_full";

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// The spool's directory; created if missing.
    pub dir: PathBuf,
    /// Most bytes of segment files on disk; records that would go beyond are dropped.
    pub max_bytes: u64,
    /// A new segment starts when a record would make the current one larger than this.
    pub segment_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("ack through {through} is beyond the last record written (the next index is {next_index})")]
    AckBeyondEnd { through: u64, next_index: u64 },
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments cut at a torn or corrupt frame (each cut counts one record).
    pub corrupt_records: u64,
    /// Bytes removed by those cuts, plus torn or foreign segment files removed whole.
    pub truncated_bytes: u64,
    /// Records waiting to be acknowledged.
    pub pending: u64,
}

/// What one [`Spool::append`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Records written and fsynced.
    #[allow(dead_code, reason = "the agent only reports drops; tests read it")]
    pub written: u64,
    /// Records dropped because the spool was full (counted as `spool_full`).
    pub dropped_full: u64,
    /// Index of the first record written; 0 if none was.
    #[allow(dead_code, reason = "the agent only reports drops; tests read it")]
    pub first_index: u64,
}

/// The spool. Not shared between processes: one agent owns its directory.
pub struct Spool {
    config: SpoolConfig,
    /// Segments in index order.
    segments: VecDeque<Segment>,
    /// Write handle on the last segment, when appends go on in it.
    active: Option<File>,
    acked: u64,
    /// What `acked` on disk says, and when it was last written.
    acked_on_disk: u64,
    acked_written_at: std::time::Instant,
    next_index: u64,
    pending: u64,
    bytes: u64,
    dropped: BTreeMap<&'static str, u64>,
    corrupt_records: u64,
    quarantine: Quarantine,
}

/// One segment file as known in memory.
#[derive(Debug)]
struct Segment {
    /// The index in the file name: no record in it is below this.
    first: u64,
    path: PathBuf,
    /// Bytes of the file on disk.
    len: u64,
    /// End of the last good frame; reads stop here. Equal to `len` unless a failed
    /// write could not be undone.
    end: u64,
    /// Indexes held, as inclusive runs (one run unless indexes were skipped).
    runs: Vec<(u64, u64)>,
    /// `(index, offset)` of a frame at least every `MARK_EVERY` bytes, first frame included.
    marks: Vec<(u64, u64)>,
}

impl Segment {
    fn new(first: u64, path: PathBuf) -> Segment {
        Segment {
            first,
            path,
            len: MAGIC_LEN,
            end: MAGIC_LEN,
            runs: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn last(&self) -> Option<u64> {
        self.runs.last().map(|&(_, last)| last)
    }

    /// Whether it holds nothing above `through` (an ack through it covers it whole).
    fn covered_by(&self, through: u64) -> bool {
        self.last().is_none_or(|last| last <= through)
    }

    /// Every record in this segment is at or below this, and every record in later
    /// segments is above it: the order `read_from` searches by.
    fn key(&self) -> u64 {
        self.last().unwrap_or(self.first.saturating_sub(1))
    }

    /// Records with an index in `(above, through]`.
    fn count_between(&self, above: u64, through: u64) -> u64 {
        self.runs
            .iter()
            .map(|&(lo, hi)| {
                let lo = lo.max(above.saturating_add(1));
                let hi = hi.min(through);
                if lo > hi { 0 } else { hi - lo + 1 }
            })
            .sum()
    }

    fn push_record(&mut self, index: u64, offset: u64, frame_len: u64) {
        match self.runs.last_mut() {
            Some((_, last)) if *last + 1 == index => *last = index,
            _ => self.runs.push((index, index)),
        }
        if self.marks.last().is_none_or(|&(_, at)| offset >= at + MARK_EVERY) {
            self.marks.push((index, offset));
        }
        self.end = offset + frame_len;
    }

    /// Where a scan for records at or above `from` can start.
    fn seek_offset(&self, from: u64) -> u64 {
        match self.marks.partition_point(|&(index, _)| index <= from) {
            0 => MAGIC_LEN,
            n => self.marks[n - 1].1,
        }
    }
}

/// Frames of one group bound for one segment file.
struct Planned {
    /// `Some(first index)` when the group starts a new segment file.
    new_first: Option<u64>,
    /// Where `buf` goes in the file.
    base: u64,
    buf: Vec<u8>,
    /// `(index, offset, frame length)` of each frame in `buf`.
    frames: Vec<(u64, u64, u64)>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = self.sync_acked() {
            tracing::warn!("the last ack could not be made durable (its records will be sent again): {e}");
        }
    }
}

impl Spool {
    /// Open (or create) the spool in `config.dir`, cutting torn or corrupt tails.
    pub fn open(config: SpoolConfig) -> Result<(Spool, OpenReport), SpoolError> {
        let dir = config.dir.clone();
        ensure_dir(&dir)?;
        let mut dir_changed = remove_if_present(&dir.join(ACKED_TMP))?;
        let acked = read_acked(&dir.join(ACKED_FILE))?;
        let mut report = OpenReport::default();
        let mut segments = VecDeque::new();
        let mut last_good = 0;
        for (first, path) in list_segments(&dir)? {
            let scanned = scan_segment(&path, first, last_good)?;
            let (segment, file_len, cut) = match scanned {
                Scanned::Frames {
                    segment,
                    file_len,
                    cut,
                } => (segment, file_len, cut),
                Scanned::Torn { len } => {
                    tracing::warn!(path = %path.display(), len, "spool segment torn while being created: removed");
                    report.truncated_bytes += len;
                    remove_if_present(&path)?;
                    dir_changed = true;
                    continue;
                }
                Scanned::Foreign { len } => {
                    tracing::warn!(path = %path.display(), len, "spool segment without the spool's magic: removed");
                    report.corrupt_records += 1;
                    report.truncated_bytes += len;
                    remove_if_present(&path)?;
                    dir_changed = true;
                    continue;
                }
            };
            if let Some((offset, why)) = &cut {
                tracing::warn!(
                    path = %path.display(), offset, cut_bytes = file_len - segment.end,
                    "spool segment cut at a bad frame: {why}"
                );
                report.corrupt_records += 1;
                report.truncated_bytes += file_len - segment.end;
            }
            last_good = segment.last().unwrap_or(last_good);
            if segment.covered_by(acked) {
                remove_if_present(&path)?;
                dir_changed = true;
            } else {
                if cut.is_some() {
                    truncate(&path, segment.end)?;
                }
                segments.push_back(Segment {
                    len: segment.end,
                    ..segment
                });
            }
        }
        if dir_changed {
            sync_dir(&dir)?;
        }
        let (quarantine, quarantine_cut) = Quarantine::open(&dir, config.max_bytes)?;
        report.corrupt_records += quarantine_cut;
        let next_index = (last_good + 1).max(acked + 1);
        // Appends go on in the last segment only if its records run up to the next index.
        let active = match segments.back() {
            Some(segment) if segment.last() == Some(next_index - 1) => Some(
                OpenOptions::new()
                    .write(true)
                    .open(&segment.path)
                    .map_err(io_at(&segment.path))?,
            ),
            _ => None,
        };
        let pending = segments.iter().map(|s| s.count_between(acked, u64::MAX)).sum();
        report.pending = pending;
        let spool = Spool {
            bytes: segments.iter().map(|s| s.len).sum(),
            config,
            segments,
            active,
            acked,
            acked_on_disk: acked,
            acked_written_at: std::time::Instant::now(),
            next_index,
            pending,
            dropped: [SPOOL_FULL, WRITE_ERROR, TOO_LARGE, QUARANTINE_FULL]
                .into_iter()
                .map(|k| (k, 0))
                .chain([(QUARANTINED, quarantine.records())])
                .collect(),
            corrupt_records: report.corrupt_records,
            quarantine,
        };
        Ok((spool, report))
    }

    /// Append records (opaque payloads) with one fsync for the whole group. A record over
    /// 4 MiB is dropped (`too_large`); one that would take the spool over `max_bytes` is
    /// dropped (`spool_full`) and the others still go in: this never blocks. On an I/O
    /// error the files are put back as they were, the group is counted as `write_error`,
    /// and the error is returned.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<Appended, SpoolError> {
        let group_bytes = records
            .iter()
            .filter(|r| r.len() <= MAX_RECORD)
            .map(|r| HEADER_LEN + r.len() as u64)
            .sum();
        self.retire_acked_segment(group_bytes)?;
        let (plan, dropped_full, too_large) = self.plan(records);
        self.count(TOO_LARGE, too_large);
        self.count(SPOOL_FULL, dropped_full);
        let mut appended = Appended {
            dropped_full,
            ..Appended::default()
        };
        let written: u64 = plan.iter().map(|p| p.frames.len() as u64).sum();
        if written == 0 {
            return Ok(appended);
        }
        let mut created = Vec::new();
        match self.write_group(&plan, &mut created) {
            Ok(()) => {
                self.commit(&plan, created);
                appended.written = written;
                appended.first_index = self.next_index;
                self.next_index += written;
                self.pending += written;
                Ok(appended)
            }
            Err(e) => {
                self.count(WRITE_ERROR, written);
                if !self.roll_back(&plan, created) {
                    // Some of the group may still be on disk: never hand its indexes out again.
                    self.next_index += written;
                }
                Err(e)
            }
        }
    }

    /// Up to `max_records` records and `max_bytes` of payload (but at least one record if
    /// there is any) with index >= `from`, in index order, as `(index, payload)`.
    pub fn read_from(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let mut out = Vec::new();
        let mut total = 0;
        let start = self.segments.partition_point(|s| s.key() < from);
        for segment in self.segments.range(start..) {
            if !read_segment(segment, from, (max_records, max_bytes), &mut out, &mut total)? {
                break;
            }
        }
        Ok(out)
    }

    /// The server has stored every record through `through`: delete the segments it
    /// covers completely, after making the ack durable. An ack that deletes nothing
    /// is made durable with the next one after [`ACK_SYNC_INTERVAL`], or by
    /// [`Spool::sync_acked`].
    pub fn ack(&mut self, through: u64) -> Result<(), SpoolError> {
        if through >= self.next_index() {
            return Err(SpoolError::AckBeyondEnd {
                through,
                next_index: self.next_index,
            });
        }
        if through <= self.acked {
            return Ok(());
        }
        if self.removable_front(through) || self.acked_written_at.elapsed() >= ACK_SYNC_INTERVAL {
            self.write_acked(through)?;
        }
        let before = self.acked;
        self.pending -= self
            .segments
            .iter()
            .take_while(|s| s.first <= through)
            .map(|s| s.count_between(before, through))
            .sum::<u64>();
        self.acked = through;
        let mut result = Ok(());
        let mut removed = false;
        while self.removable_front(through) {
            let segment = self.segments.front().expect("checked above");
            if let Err(e) = remove_if_present(&segment.path) {
                // Left in the list: the next ack tries again.
                result = Err(e);
                break;
            }
            removed = true;
            if self.segments.len() == 1 {
                self.active = None;
            }
            self.bytes -= segment.len;
            self.segments.pop_front();
        }
        if removed {
            sync_dir(&self.config.dir)?;
        }
        result
    }

    /// The kept segment, all of it acknowledged, is deleted before a group that does
    /// not fit in it whole, so that the group starts a new segment as it would have
    /// without it: it never takes room from new records.
    fn retire_acked_segment(&mut self, group_bytes: u64) -> Result<(), SpoolError> {
        let Some(segment) = self.segments.back() else {
            return Ok(());
        };
        let acked = segment.covered_by(self.acked);
        let room = self.config.segment_bytes.min(self.config.max_bytes);
        let fits = segment.len + group_bytes <= room;
        if self.segments.len() != 1 || self.active.is_none() || !acked || fits {
            return Ok(());
        }
        let (path, len) = (segment.path.clone(), segment.len);
        self.sync_acked()?;
        remove_if_present(&path)?;
        self.bytes -= len;
        self.active = None;
        self.segments.clear();
        sync_dir(&self.config.dir)
    }

    /// Whether the first segment holds nothing above `through` and can go. The
    /// segment appends go on in stays even when everything in it is acknowledged:
    /// deleting it would cost a new file and two directory fsyncs on every ack of a
    /// sender that keeps up. It goes once a newer segment took over.
    fn removable_front(&self, through: u64) -> bool {
        let Some(segment) = self.segments.front() else {
            return false;
        };
        let covered = segment.covered_by(through);
        let appending_here = self.active.is_some() && self.segments.len() == 1;
        covered && !appending_here
    }

    /// Make the last ack durable (when the agent stops; also done on drop).
    pub fn sync_acked(&mut self) -> Result<(), SpoolError> {
        if self.acked > self.acked_on_disk {
            self.write_acked(self.acked)?;
        }
        Ok(())
    }

    fn write_acked(&mut self, through: u64) -> Result<(), SpoolError> {
        write_acked(&self.config.dir, through)?;
        self.acked_on_disk = through;
        self.acked_written_at = std::time::Instant::now();
        Ok(())
    }

    /// Highest index the server has acknowledged; 0 at first.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Records written and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.config.max_bytes
    }

    /// Records dropped, by reason: `spool_full`, `write_error`, `too_large`,
    /// `quarantine_full`; and under `quarantined`, the records held in the
    /// quarantine file (taken out of delivery, kept: [`Spool::quarantined`]).
    pub fn dropped(&self) -> &BTreeMap<&'static str, u64> {
        &self.dropped
    }

    /// Records held in the quarantine file.
    #[allow(dead_code, reason = "the agent reports it through `dropped`; tests read it")]
    pub fn quarantined(&self) -> u64 {
        self.quarantine.records()
    }

    /// Whether record `index` is in the quarantine (not to be sent again; it leaves
    /// the spool with the ack that covers it).
    pub fn is_quarantined(&self, index: u64) -> bool {
        self.quarantine.holds(index)
    }

    /// Take the unacknowledged records `refused` (`(index, reason)`) out of the delivery
    /// order: each is written to the quarantine file, durably, before the ack that covers
    /// it lets its segment go. Records the spool does not hold (acknowledged, never
    /// written) or already quarantined are skipped; records the quarantine has no room
    /// for are counted as `quarantine_full`. Returns how many were quarantined now.
    pub fn quarantine(&mut self, refused: &[(u64, String)]) -> Result<u64, SpoolError> {
        let mut records = Vec::new();
        for (index, reason) in refused {
            if *index <= self.acked || self.quarantine.holds(*index) {
                continue;
            }
            if let Some((found, record)) = self.read_from(*index, 1, 0)?.into_iter().next()
                && found == *index
            {
                records.push((*index, reason.as_str(), record));
            }
        }
        let entries: Vec<(u64, &str, &[u8])> = records
            .iter()
            .map(|(index, reason, record)| (*index, *reason, record.as_slice()))
            .collect();
        let (kept, full) = self.quarantine.add(&entries)?;
        self.count(QUARANTINE_FULL, full);
        self.dropped.insert(QUARANTINED, self.quarantine.records());
        Ok(kept)
    }

    /// Records found corrupt (cut) at open.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records
    }

    fn count(&mut self, reason: &'static str, n: u64) {
        *self.dropped.entry(reason).or_insert(0) += n;
    }

    /// Lay the records out in frames and segment files; returns the plan and how many
    /// records were dropped as `spool_full` and as `too_large`.
    fn plan(&self, records: &[Vec<u8>]) -> (Vec<Planned>, u64, u64) {
        let mut plan: Vec<Planned> = Vec::new();
        // Length of the file the next frame would go in (None: no segment open).
        let mut tail = self.active.as_ref().and(self.segments.back()).map(|s| s.len);
        let mut bytes = self.bytes;
        let mut index = self.next_index;
        let (mut full, mut too_large) = (0, 0);
        for record in records {
            if record.len() > MAX_RECORD {
                too_large += 1;
                continue;
            }
            let frame = HEADER_LEN + record.len() as u64;
            // Where the frame goes in the current file; None: it starts a new segment (so a
            // record larger than a segment still goes, alone, in a new one).
            let base = tail.filter(|&len| len + frame <= self.config.segment_bytes);
            let cost = frame + if base.is_none() { MAGIC_LEN } else { 0 };
            if bytes.saturating_add(cost) > self.config.max_bytes {
                full += 1;
                continue;
            }
            match base {
                None => plan.push(Planned {
                    new_first: Some(index),
                    base: 0,
                    buf: MAGIC.to_vec(),
                    frames: Vec::new(),
                }),
                Some(len) if plan.is_empty() => plan.push(Planned {
                    new_first: None,
                    base: len,
                    buf: Vec::new(),
                    frames: Vec::new(),
                }),
                Some(_) => {}
            }
            let planned = plan.last_mut().expect("a plan entry was pushed above");
            let offset = planned.base + planned.buf.len() as u64;
            planned.frames.push((index, offset, frame));
            encode_frame(&mut planned.buf, index, record);
            tail = Some(offset + frame);
            bytes += cost;
            index += 1;
        }
        (plan, full, too_large)
    }

    /// Write the planned frames, then fsync every file written and, if a segment was
    /// created, the directory. Files created are left in `created` for commit or rollback.
    fn write_group(&self, plan: &[Planned], created: &mut Vec<(PathBuf, File)>) -> Result<(), SpoolError> {
        for planned in plan {
            if let Some(first) = planned.new_first {
                let path = segment_path(&self.config.dir, first);
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                created.push((path, file));
                let (path, file) = created.last().expect("pushed above");
                file.write_all_at(&planned.buf, 0).map_err(io_at(path))?;
            } else {
                let (file, segment) = self.active_segment();
                file.write_all_at(&planned.buf, planned.base)
                    .map_err(io_at(&segment.path))?;
            }
        }
        if plan.first().is_some_and(|p| p.new_first.is_none()) {
            let (file, segment) = self.active_segment();
            file.sync_data().map_err(io_at(&segment.path))?;
        }
        for (path, file) in created.iter() {
            file.sync_data().map_err(io_at(path))?;
        }
        if !created.is_empty() {
            sync_dir(&self.config.dir)?;
        }
        Ok(())
    }

    fn active_segment(&self) -> (&File, &Segment) {
        match (&self.active, self.segments.back()) {
            (Some(file), Some(segment)) => (file, segment),
            _ => unreachable!("frames are planned into the last segment only while it is open"),
        }
    }

    /// The group is durable: record it in memory.
    fn commit(&mut self, plan: &[Planned], created: Vec<(PathBuf, File)>) {
        let mut created = created.into_iter();
        for planned in plan {
            if let Some(first) = planned.new_first {
                let (path, file) = created.next().expect("one file per new segment");
                self.segments.push_back(Segment::new(first, path));
                self.active = Some(file);
                self.bytes += MAGIC_LEN;
            }
            let segment = self.segments.back_mut().expect("the segment written to");
            for &(index, offset, frame_len) in &planned.frames {
                segment.push_record(index, offset, frame_len);
            }
            self.bytes += segment.end - segment.len;
            segment.len = segment.end;
        }
    }

    /// Put the files back as they were before a failed group: cut the last segment back to
    /// its old length and remove the segments created. Returns whether that fully worked;
    /// if not, what is left is accounted for and the last segment is closed.
    fn roll_back(&mut self, plan: &[Planned], created: Vec<(PathBuf, File)>) -> bool {
        let mut clean = true;
        if plan.first().is_some_and(|p| p.new_first.is_none()) {
            let (file, segment) = self.active_segment();
            if let Err(e) = file.set_len(segment.len).and_then(|()| file.sync_data()) {
                tracing::error!(path = %segment.path.display(), "could not undo a failed spool write: {e}");
                clean = false;
                let guess = segment.len + plan[0].buf.len() as u64;
                let actual = file.metadata().map_or(guess, |m| m.len());
                let segment = self.segments.back_mut().expect("the active segment");
                self.bytes = self.bytes - segment.len + actual;
                segment.len = actual;
                self.active = None;
            }
        }
        let any_created = !created.is_empty();
        let firsts = plan.iter().filter_map(|p| p.new_first);
        for ((path, file), first) in created.into_iter().zip(firsts) {
            if let Err(e) = remove_if_present(&path) {
                tracing::error!("could not remove a spool segment after a failed write: {e}");
                clean = false;
                let len = file.metadata().map_or(MAGIC_LEN, |m| m.len());
                // Kept without records so that the bytes are counted and an ack removes it.
                let mut segment = Segment::new(first, path);
                segment.len = len;
                self.bytes += len;
                self.segments.push_back(segment);
                self.active = None;
            }
        }
        if any_created && sync_dir(&self.config.dir).is_err() {
            clean = false;
        }
        clean
    }
}

#[cfg(test)]
mod tests;
