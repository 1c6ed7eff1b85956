//! The frames of a segment file: encoding, checksums, and reading them back (a
//! torn or corrupt tail found by the scan at open). The format is described at
//! the top of [`super`].

#[allow(clippy::wildcard_imports, reason = "the spool's own constants and types")]
use super::*;

/// Read the records of one segment into `out`; false once the limits are reached.
pub(super) fn read_segment(
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
pub(super) struct Frames {
    reader: BufReader<File>,
    /// Start of the next frame.
    offset: u64,
    end: u64,
}

pub(super) struct Header {
    index: u64,
    len: u64,
    crc: u32,
}

pub(super) enum FrameError {
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

pub(super) fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&index.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

pub(super) fn encode_frame(buf: &mut Vec<u8>, index: u64, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&checksum(index, payload).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What a segment file held at open.
pub(super) enum Scanned {
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
pub(super) fn scan_segment(path: &Path, first: u64, mut last_good: u64) -> Result<Scanned, SpoolError> {
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
