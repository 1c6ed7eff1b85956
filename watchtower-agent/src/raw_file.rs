//! The raw record file (`--record-raw`): every kernel record as the ring buffer
//! gave it, for `watchtower-agent replay` and bug reports.

/// Writes every raw kernel record to a file (`u32` little-endian length, then the
/// bytes), for replay with `watchtower-agent replay` and for bug reports.
pub struct RawRecorder {
    file: std::io::BufWriter<std::fs::File>,
    failed: bool,
}

impl RawRecorder {
    pub fn create(path: &std::path::Path) -> std::io::Result<RawRecorder> {
        Ok(RawRecorder {
            file: std::io::BufWriter::new(std::fs::File::create(path)?),
            failed: false,
        })
    }

    pub fn write(&mut self, record: &[u8]) {
        use std::io::Write as _;
        if self.failed {
            return;
        }
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes();
        if let Err(error) = self
            .file
            .write_all(&len)
            .and_then(|()| self.file.write_all(record))
        {
            tracing::error!(%error, "raw record file failed; no longer recording");
            self.failed = true;
        }
    }

    pub fn flush(&mut self) {
        use std::io::Write as _;
        if let Err(error) = self.file.flush() {
            tracing::error!(%error, "raw record file failed to flush");
        }
    }
}

/// Split a raw record file into its records; a torn tail is reported, not fatal.
#[must_use]
pub fn split_raw(data: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let Some(len) = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        else {
            return (records, Some(at));
        };
        let Some(record) = data.get(at + 4..at + 4 + len) else {
            return (records, Some(at));
        };
        records.push(record);
        at += 4 + len;
    }
    (records, None)
}
