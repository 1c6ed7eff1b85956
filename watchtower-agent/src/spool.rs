//! The on-disk spool: every event the server has not yet acknowledged, kept so that it
//! survives kill -9 and power loss and is sent again after a restart.
//!
//! Rules (design.md, "Transport and store"):
//! - a record counts as captured only once it is fsynced: [`Spool::append`] writes a whole
//!   group and fsyncs once for it;
//! - the directory is fsynced whenever a file in it is created, renamed or removed;
//! - a segment is deleted only after the ack that covers it is durable in `acked`;
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
const ACKED_TMP: &str = "acked.tmp";
const SEGMENT_SUFFIX: &str = ".seg";
const NAME_DIGITS: usize = 20;
/// Indexes (and `acked`) above this are treated as corrupt, so index arithmetic never overflows.
const MAX_INDEX: u64 = u64::MAX / 2;

/// Reasons records are dropped, as counted by [`Spool::dropped`].
const SPOOL_FULL: &str = "spool_full";
const WRITE_ERROR: &str = "write_error";
const TOO_LARGE: &str = "too_large";

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
    next_index: u64,
    pending: u64,
    bytes: u64,
    dropped: BTreeMap<&'static str, u64>,
    corrupt_records: u64,
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
            if segment.last().is_none_or(|last| last <= acked) {
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
            next_index,
            pending,
            dropped: [SPOOL_FULL, WRITE_ERROR, TOO_LARGE]
                .into_iter()
                .map(|k| (k, 0))
                .collect(),
            corrupt_records: report.corrupt_records,
        };
        Ok((spool, report))
    }

    /// Append records (opaque payloads) with one fsync for the whole group. A record over
    /// 4 MiB is dropped (`too_large`); one that would take the spool over `max_bytes` is
    /// dropped (`spool_full`) and the others still go in: this never blocks. On an I/O
    /// error the files are put back as they were, the group is counted as `write_error`,
    /// and the error is returned.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<Appended, SpoolError> {
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

    /// The server has stored every record through `through`: make that durable, then
    /// delete the segments it covers completely.
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
        write_acked(&self.config.dir, through)?;
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
        while let Some(segment) = self.segments.front() {
            if segment.last().is_some_and(|last| last > through) {
                break;
            }
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

    /// Records dropped, by reason: `spool_full`, `write_error`, `too_large`.
    pub fn dropped(&self) -> &BTreeMap<&'static str, u64> {
        &self.dropped
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

/// Read the records of one segment into `out`; false once the limits are reached.
fn read_segment(
    segment: &Segment,
    from: u64,
    (max_records, max_bytes): (usize, usize),
    out: &mut Vec<(u64, Vec<u8>)>,
    total: &mut usize,
) -> Result<bool, SpoolError> {
    if segment.last().is_none_or(|last| last < from) {
        return Ok(true);
    }
    let path = &segment.path;
    let file = File::open(path).map_err(io_at(path))?;
    let mut frames = Frames::new(file, segment.seek_offset(from), segment.end).map_err(io_at(path))?;
    loop {
        if !out.is_empty() && out.len() >= max_records {
            return Ok(false);
        }
        let at = frames.offset;
        let Some(header) = frames.header().map_err(|e| e.at(path, at))? else {
            return Ok(true);
        };
        if header.index < from {
            frames.skip(&header).map_err(io_at(path))?;
            continue;
        }
        if !out.is_empty() && *total + header.len as usize > max_bytes {
            return Ok(false);
        }
        let mut payload = Vec::new();
        frames
            .payload(&header, &mut payload)
            .map_err(|e| e.at(path, at))?;
        *total += payload.len();
        out.push((header.index, payload));
    }
}

/// A reader of the frames of one segment file, between two offsets.
struct Frames {
    reader: BufReader<File>,
    /// Start of the next frame.
    offset: u64,
    end: u64,
}

struct Header {
    index: u64,
    len: u64,
    crc: u32,
}

enum FrameError {
    Io(io::Error),
    Bad(String),
}

impl FrameError {
    fn at(self, path: &Path, offset: u64) -> SpoolError {
        match self {
            FrameError::Io(source) => SpoolError::Io {
                path: path.to_path_buf(),
                source,
            },
            FrameError::Bad(why) => SpoolError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("bad frame at byte {offset}: {why}"),
            },
        }
    }
}

impl Frames {
    fn new(file: File, offset: u64, end: u64) -> io::Result<Frames> {
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader.seek(SeekFrom::Start(offset))?;
        Ok(Frames { reader, offset, end })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), FrameError> {
        self.reader.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => FrameError::Bad("the file ends early".into()),
            _ => FrameError::Io(e),
        })
    }

    /// The next frame's header, checked against the limits; None at the end.
    fn header(&mut self) -> Result<Option<Header>, FrameError> {
        let left = self.end.saturating_sub(self.offset);
        if left == 0 {
            return Ok(None);
        }
        if left < HEADER_LEN {
            return Err(FrameError::Bad(format!(
                "{left} bytes left where a frame header needs {HEADER_LEN} (torn write)"
            )));
        }
        let mut raw = [0u8; HEADER_LEN as usize];
        self.read_exact(&mut raw)?;
        let word = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let header = Header {
            len: u64::from(word(0)),
            crc: word(4),
            index: u64::from(word(8)) | (u64::from(word(12)) << 32),
        };
        if header.len > MAX_RECORD as u64 {
            return Err(FrameError::Bad(format!(
                "payload length {} is over the {MAX_RECORD}-byte limit",
                header.len
            )));
        }
        if header.len > left - HEADER_LEN {
            return Err(FrameError::Bad(format!(
                "payload of {} bytes but {} left (torn write)",
                header.len,
                left - HEADER_LEN
            )));
        }
        Ok(Some(header))
    }

    /// Read the payload after `header` into `buf` and check the checksum.
    fn payload(&mut self, header: &Header, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        buf.resize(header.len as usize, 0);
        self.read_exact(buf)?;
        if checksum(header.index, buf) != header.crc {
            return Err(FrameError::Bad(format!(
                "checksum mismatch (index {})",
                header.index
            )));
        }
        self.offset += HEADER_LEN + header.len;
        Ok(())
    }

    fn skip(&mut self, header: &Header) -> io::Result<()> {
        self.reader.seek_relative(header.len as i64)?;
        self.offset += HEADER_LEN + header.len;
        Ok(())
    }
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&index.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode_frame(buf: &mut Vec<u8>, index: u64, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&checksum(index, payload).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What a segment file held at open.
enum Scanned {
    /// Shorter than the magic and matching it so far: the agent died creating it.
    Torn { len: u64 },
    /// Does not start with the magic.
    Foreign { len: u64 },
    /// The good frames, and where and why the first bad one was found, if any.
    Frames {
        segment: Segment,
        file_len: u64,
        cut: Option<(u64, String)>,
    },
}

/// Check every frame of a segment named `first` whose records must come after `last_good`.
fn scan_segment(path: &Path, first: u64, mut last_good: u64) -> Result<Scanned, SpoolError> {
    let file = File::open(path).map_err(io_at(path))?;
    let len = file.metadata().map_err(io_at(path))?.len();
    let mut head = [0u8; MAGIC.len()];
    let head_len = len.min(MAGIC_LEN) as usize;
    file.read_exact_at(&mut head[..head_len], 0)
        .map_err(io_at(path))?;
    if len < MAGIC_LEN {
        return Ok(if head[..head_len] == MAGIC[..head_len] {
            Scanned::Torn { len }
        } else {
            Scanned::Foreign { len }
        });
    }
    if head != *MAGIC {
        if head[..MAGIC.len() - 1] == MAGIC[..MAGIC.len() - 1] {
            return Err(SpoolError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "segment format {:?} is not {:?}: written by another version of the agent? (left as it is)",
                    String::from_utf8_lossy(&head),
                    String::from_utf8_lossy(MAGIC)
                ),
            });
        }
        return Ok(Scanned::Foreign { len });
    }
    let mut segment = Segment::new(first, path.to_path_buf());
    let mut frames = Frames::new(file, MAGIC_LEN, len).map_err(io_at(path))?;
    let mut payload = Vec::new();
    let cut = loop {
        let at = frames.offset;
        let header = match frames.header() {
            Ok(None) => break None,
            Ok(Some(header)) => header,
            Err(FrameError::Bad(why)) => break Some((at, why)),
            Err(FrameError::Io(e)) => return Err(io_at(path)(e)),
        };
        match frames.payload(&header, &mut payload) {
            Ok(()) => {}
            Err(FrameError::Bad(why)) => break Some((at, why)),
            Err(FrameError::Io(e)) => return Err(io_at(path)(e)),
        }
        if header.index <= last_good || header.index < first || header.index > MAX_INDEX {
            break Some((
                at,
                format!(
                    "index {} out of order (after {last_good}, in the segment named {first})",
                    header.index
                ),
            ));
        }
        segment.push_record(header.index, at, HEADER_LEN + header.len);
        last_good = header.index;
    };
    segment.len = len;
    Ok(Scanned::Frames {
        segment,
        file_len: len,
        cut,
    })
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:0NAME_DIGITS$}{SEGMENT_SUFFIX}"))
}

/// Segment files in `dir` by first index; other files are left alone.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(first) = stem.parse::<u64>() else {
            continue;
        };
        if entry.file_type().map_err(io_at(&entry.path()))?.is_file() {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn read_acked(path: &Path) -> Result<u64, SpoolError> {
    let raw = match fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_at(path)(e)),
    };
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|&acked| acked <= MAX_INDEX)
        .ok_or_else(|| SpoolError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "should hold the highest acknowledged index as decimal text, holds {:?}; not guessing",
                String::from_utf8_lossy(&raw[..raw.len().min(64)])
            ),
        })
}

/// Replace `acked` atomically and durably.
fn write_acked(dir: &Path, through: u64) -> Result<(), SpoolError> {
    let tmp = dir.join(ACKED_TMP);
    let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
    file.write_all(format!("{through}\n").as_bytes())
        .map_err(io_at(&tmp))?;
    file.sync_all().map_err(io_at(&tmp))?;
    drop(file);
    let acked = dir.join(ACKED_FILE);
    fs::rename(&tmp, &acked).map_err(io_at(&acked))?;
    sync_dir(dir)
}

/// Create `dir` (and missing parents) if needed, fsyncing each parent that gained an entry.
fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    for created in missing.into_iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_at(path))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(io_at(path))
}

/// Remove a file; true if it was there.
fn remove_if_present(path: &Path) -> Result<bool, SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(path)(e)),
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use proptest::prelude::*;

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
        assert_eq!((spool.acked(), spool.pending(), spool.bytes()), (7, 0, 0));
        assert!(segment_files(&dir).is_empty());
        assert!(all_from(&spool, 1).is_empty());
        assert_eq!(spool.dropped().values().sum::<u64>(), 0);
        assert_eq!(spool.dropped().len(), 3, "every reason is reported, zero or not");
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
        assert!(segment_files(&dir).is_empty());
        assert_eq!(spool.bytes(), 0);
        // The last segment went too: the next append opens a new one.
        append_all(&mut spool, 6..=6);
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
        assert_eq!(spool.bytes(), 0);
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

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<usize>),
        /// Ack a fraction (of 65,535) of the way from `acked` to the last index.
        Ack(u16),
        AckBeyond,
        Reopen,
        /// Kill -9 or power loss mid-write: cut part of the last frame (a fraction, of
        /// 65,535, of its length), then reopen.
        Tear(u16),
        Read {
            from: u16,
            max_records: usize,
            max_bytes: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => prop::collection::vec(0usize..120, 0..6).prop_map(Op::Append),
            3 => any::<u16>().prop_map(Op::Ack),
            1 => Just(Op::AckBeyond),
            2 => Just(Op::Reopen),
            1 => any::<u16>().prop_map(Op::Tear),
            2 => (any::<u16>(), 0usize..5, 0usize..300)
                .prop_map(|(from, max_records, max_bytes)| Op::Read { from, max_records, max_bytes }),
        ]
    }

    /// What the spool should hold: every record written (by index), the ack, the next index.
    struct Model {
        records: BTreeMap<u64, Vec<u8>>,
        acked: u64,
        next: u64,
        full: u64,
        tag: u64,
    }

    impl Model {
        fn pending(&self) -> Vec<(u64, Vec<u8>)> {
            self.records
                .range(self.acked + 1..)
                .map(|(&i, p)| (i, p.clone()))
                .collect()
        }
    }

    fn is_subsequence(written: &[(u64, Vec<u8>)], offered: &[Vec<u8>]) -> bool {
        let mut offered = offered.iter();
        written.iter().all(|(_, p)| offered.any(|o| o == p))
    }

    fn check(spool: &Spool, model: &Model, dir: &Path) -> Result<(), TestCaseError> {
        prop_assert_eq!(spool.acked(), model.acked);
        prop_assert_eq!(spool.next_index(), model.next);
        let pending = model.pending();
        prop_assert_eq!(spool.pending(), pending.len() as u64);
        prop_assert_eq!(spool.bytes(), disk_bytes(dir));
        prop_assert!(spool.bytes() <= spool.max_bytes());
        prop_assert_eq!(all_from(spool, model.acked + 1), pending);
        let mut previous = 0;
        for (index, payload) in all_from(spool, 1) {
            prop_assert!(index > previous);
            prop_assert_eq!(model.records.get(&index), Some(&payload));
            previous = index;
        }
        prop_assert_eq!(spool.dropped()["spool_full"], model.full);
        Ok(())
    }

    fn apply(
        spool: &mut Spool,
        model: &mut Model,
        op: &Op,
        config: &SpoolConfig,
    ) -> Result<(), TestCaseError> {
        match op {
            Op::Append(lens) => {
                let records: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|&len| {
                        model.tag += 1;
                        payload(model.tag, len)
                    })
                    .collect();
                let appended = spool.append(&records).unwrap();
                prop_assert_eq!(appended.written + appended.dropped_full, records.len() as u64);
                model.full += appended.dropped_full;
                if appended.written == 0 {
                    prop_assert_eq!(appended.first_index, 0);
                    return Ok(());
                }
                prop_assert_eq!(appended.first_index, model.next);
                let written = all_from(spool, appended.first_index);
                let expected: Vec<u64> = (model.next..model.next + appended.written).collect();
                prop_assert_eq!(indexes(&written), expected);
                prop_assert!(is_subsequence(&written, &records));
                model.records.extend(written);
                model.next += appended.written;
            }
            Op::Ack(fraction) => {
                let last = model.next - 1;
                let through = model.acked + (last - model.acked) * u64::from(*fraction) / u64::from(u16::MAX);
                spool.ack(through).unwrap();
                model.acked = model.acked.max(through);
            }
            Op::AckBeyond => {
                let through = model.next;
                let beyond = matches!(spool.ack(through), Err(SpoolError::AckBeyondEnd { .. }));
                prop_assert!(beyond, "ack through {} was not refused", through);
            }
            Op::Reopen => {
                let (reopened, report) = Spool::open(config.clone()).unwrap();
                let expected = OpenReport {
                    corrupt_records: 0,
                    truncated_bytes: 0,
                    pending: model.pending().len() as u64,
                };
                prop_assert_eq!(report, expected);
                // Counters live in memory only.
                model.full = 0;
                *spool = reopened;
            }
            Op::Tear(fraction) => {
                let Some(last_file) = segment_files(&config.dir).pop() else {
                    return Ok(());
                };
                // The last segment ends with the last record written, which is unacknowledged
                // (a segment goes only when all of its records are acknowledged).
                let last = model.next - 1;
                let frame = frame_len(model.records[&last].len());
                let cut = 1 + (frame - 1) * u64::from(*fraction) / u64::from(u16::MAX);
                let cut = cut.min(frame - 1);
                let file = OpenOptions::new().write(true).open(&last_file).unwrap();
                file.set_len(file.metadata().unwrap().len() - cut).unwrap();
                drop(file);
                let (reopened, report) = Spool::open(config.clone()).unwrap();
                model.records.remove(&last);
                model.next = last;
                let expected = OpenReport {
                    corrupt_records: 1,
                    truncated_bytes: frame - cut,
                    pending: model.pending().len() as u64,
                };
                prop_assert_eq!(report, expected);
                model.full = 0;
                *spool = reopened;
            }
            Op::Read {
                from,
                max_records,
                max_bytes,
            } => check_read(spool, model, u64::from(*from), *max_records, *max_bytes)?,
        }
        Ok(())
    }

    fn check_read(
        spool: &Spool,
        model: &Model,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(), TestCaseError> {
        let from = from % (model.next + 1);
        let got = spool.read_from(from, max_records, max_bytes).unwrap();
        let mut previous = 0;
        for (index, payload) in &got {
            prop_assert!(*index >= from && *index > previous);
            prop_assert_eq!(model.records.get(index), Some(payload));
            previous = *index;
        }
        prop_assert!(got.len() <= max_records.max(1));
        let total: usize = got.iter().map(|(_, p)| p.len()).sum();
        prop_assert!(got.len() <= 1 || total <= max_bytes);
        // Unacknowledged records are never skipped, and reading stops only at a limit.
        let wanted: Vec<(u64, Vec<u8>)> = model
            .records
            .range(from.max(model.acked + 1)..)
            .map(|(&i, p)| (i, p.clone()))
            .collect();
        let unacked: Vec<&(u64, Vec<u8>)> = got.iter().filter(|(i, _)| *i > model.acked).collect();
        prop_assert!(unacked.len() <= wanted.len());
        for (got, wanted) in unacked.iter().zip(&wanted) {
            prop_assert_eq!(*got, wanted);
        }
        if wanted.len() > unacked.len() {
            // Stopped early: the record after the last one read (all records after a
            // record still in the spool are there too) must have broken a limit.
            prop_assert!(!got.is_empty(), "nothing read while {} waits", wanted[0].0);
            let last = got[got.len() - 1].0;
            let (&following, payload) = model.records.range(last + 1..).next().expect("a later record");
            prop_assert!(
                got.len() >= max_records || total + payload.len() > max_bytes,
                "stopped before {} without reaching a limit",
                following
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn behaves_like_a_model(
            segment_bytes in 24u64..400,
            max_bytes in 0u64..1500,
            ops in prop::collection::vec(op(), 1..60),
        ) {
            let tmp = TempDir::new("model");
            let config = config(&tmp.spool(), max_bytes, segment_bytes);
            let (mut spool, report) = Spool::open(config.clone()).unwrap();
            prop_assert_eq!(report, OpenReport::default());
            let mut model = Model { records: BTreeMap::new(), acked: 0, next: 1, full: 0, tag: 0 };
            for op in &ops {
                apply(&mut spool, &mut model, op, &config)?;
                check(&spool, &model, &config.dir)?;
            }
        }
    }
}
