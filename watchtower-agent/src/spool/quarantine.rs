//! The quarantine: records taken out of the delivery order because they can never
//! be delivered — the server refused them as invalid (an Ack's `refused`), or the
//! sender could not send them at all (undecodable, too large for any batch) — kept
//! on disk so that nothing is lost silently, while the records after them go on.
//!
//! One file in the spool's directory, `quarantine`: the magic `WTQUAR01`, then
//! frames as in segments (`[u32 LE payload length][u32 LE crc32 of (u64 LE index,
//! payload)][u64 LE index][payload]`), the index being the record's spool index.
//! A payload is `[u16 LE reason length][reason, UTF-8][the record as it was
//! spooled]`. Records are appended with one fsync per group (and the directory
//! fsynced when the file is created) *before* the ack that lets the spool delete
//! them. A torn tail is cut and counted at open, like a segment's. The file is
//! bounded (a quarter of the spool's `max_bytes`); a record that does not fit is
//! counted as `quarantine_full` and not kept. A record already quarantined (the
//! agent died between quarantining and acking, and the server refused it again)
//! is not written twice.

use std::collections::HashSet;

use super::frame::checksum;
#[allow(clippy::wildcard_imports, reason = "the spool's own constants and types")]
use super::*;

const QUARANTINE_FILE: &str = "quarantine";
const QUARANTINE_MAGIC: &[u8; 8] = b"WTQUAR01";

/// One record of the quarantine file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code, reason = "the agent only counts them; tests and tools read them")]
pub struct Quarantined {
    /// Its spool index.
    pub index: u64,
    /// Why it was taken out (the server's reason and detail, or the sender's).
    pub reason: String,
    /// The record as it was spooled (an encoded `watchtower.v1.Event`, or what
    /// could not be decoded as one).
    pub record: Vec<u8>,
}

/// The quarantine file as the spool keeps it open.
pub(super) struct Quarantine {
    path: PathBuf,
    dir: PathBuf,
    /// Bytes of the file (0: not created yet).
    len: u64,
    max_bytes: u64,
    indexes: HashSet<u64>,
}

impl Quarantine {
    /// Open the quarantine of the spool in `dir`; returns it and how many torn or
    /// corrupt records were cut from its tail.
    pub(super) fn open(dir: &Path, spool_max_bytes: u64) -> Result<(Quarantine, u64), SpoolError> {
        let path = dir.join(QUARANTINE_FILE);
        let mut quarantine = Quarantine {
            path: path.clone(),
            dir: dir.to_path_buf(),
            len: 0,
            max_bytes: (spool_max_bytes / 4).max(MAGIC_LEN + HEADER_LEN),
            indexes: HashSet::new(),
        };
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((quarantine, 0)),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let (records, good_len) = parse(&raw);
        let cut = u64::from(good_len < raw.len());
        if cut > 0 {
            tracing::warn!(
                path = %path.display(),
                cut_bytes = raw.len() - good_len,
                "quarantine file cut at a torn or corrupt record"
            );
            if good_len < QUARANTINE_MAGIC.len() {
                remove_if_present(&path)?;
                sync_dir(dir)?;
            } else {
                truncate(&path, good_len as u64)?;
            }
        }
        quarantine.len = if good_len < QUARANTINE_MAGIC.len() {
            0
        } else {
            good_len as u64
        };
        quarantine.indexes = records.iter().map(|q| q.index).collect();
        Ok((quarantine, cut))
    }

    /// Records held.
    pub(super) fn records(&self) -> u64 {
        self.indexes.len() as u64
    }

    pub(super) fn holds(&self, index: u64) -> bool {
        self.indexes.contains(&index)
    }

    /// Append `(index, reason, record)` entries durably (one write, one fsync).
    /// Returns how many were kept and how many did not fit.
    pub(super) fn add(&mut self, entries: &[(u64, &str, &[u8])]) -> Result<(u64, u64), SpoolError> {
        let mut buf = Vec::new();
        let create = self.len == 0;
        if create {
            buf.extend_from_slice(QUARANTINE_MAGIC);
        }
        let (mut kept, mut full) = (Vec::new(), 0);
        for &(index, reason, record) in entries {
            if self.indexes.contains(&index) || kept.contains(&index) {
                continue;
            }
            let reason = &reason[..floor_char_boundary(reason, usize::from(u16::MAX))];
            let mut payload = Vec::with_capacity(2 + reason.len() + record.len());
            payload.extend_from_slice(&(reason.len() as u16).to_le_bytes());
            payload.extend_from_slice(reason.as_bytes());
            payload.extend_from_slice(record);
            let frame = HEADER_LEN + payload.len() as u64;
            if payload.len() > MAX_RECORD || self.len + buf.len() as u64 + frame > self.max_bytes {
                full += 1;
                continue;
            }
            encode_frame(&mut buf, index, &payload);
            kept.push(index);
        }
        if kept.is_empty() {
            return Ok((0, full));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_at(&self.path))?;
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Put the file back as it was: the records stay in the spool and are
            // tried again.
            let _ = file.set_len(self.len).and_then(|()| file.sync_data());
            return Err(io_at(&self.path)(e));
        }
        if create {
            sync_dir(&self.dir)?;
        }
        self.len += buf.len() as u64;
        let n = kept.len() as u64;
        self.indexes.extend(kept);
        Ok((n, full))
    }
}

/// The largest `at <= max` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut at = max.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The good records of a quarantine file, and the length of its good prefix.
fn parse(raw: &[u8]) -> (Vec<Quarantined>, usize) {
    let mut out = Vec::new();
    if raw.len() < QUARANTINE_MAGIC.len() || raw[..QUARANTINE_MAGIC.len()] != *QUARANTINE_MAGIC {
        return (out, 0);
    }
    let mut at = QUARANTINE_MAGIC.len();
    let header = HEADER_LEN as usize;
    while raw.len() - at >= header {
        let word =
            |o: usize| u32::from_le_bytes([raw[at + o], raw[at + o + 1], raw[at + o + 2], raw[at + o + 3]]);
        let len = word(0) as usize;
        let crc = word(4);
        let index = u64::from(word(8)) | (u64::from(word(12)) << 32);
        if len > MAX_RECORD || raw.len() - at - header < len {
            break;
        }
        let payload = &raw[at + header..at + header + len];
        if checksum(index, payload) != crc || payload.len() < 2 {
            break;
        }
        let reason_len = usize::from(u16::from_le_bytes([payload[0], payload[1]]));
        let Some(reason) = payload
            .get(2..2 + reason_len)
            .and_then(|r| std::str::from_utf8(r).ok())
        else {
            break;
        };
        out.push(Quarantined {
            index,
            reason: reason.to_owned(),
            record: payload[2 + reason_len..].to_vec(),
        });
        at += header + len;
    }
    (out, at)
}

/// Every record in the quarantine of the spool in `dir` (for operators and tests).
#[allow(dead_code, reason = "the agent only counts them; tests and tools read them")]
pub fn read_quarantine(dir: &Path) -> Result<Vec<Quarantined>, SpoolError> {
    let path = dir.join(QUARANTINE_FILE);
    match fs::read(&path) {
        Ok(raw) => Ok(parse(&raw).0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_at(&path)(e)),
    }
}
