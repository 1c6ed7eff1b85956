//! Sequence numbers that never repeat for a host, across agent restarts.
//!
//! The agent reserves blocks of numbers by writing the end of the block to a
//! state file (write to a temporary, fsync, rename, fsync the directory) before
//! using any of them. After a crash, numbers up to the recorded end may have
//! been used: a restart continues after it, and reports the resumption point so
//! the gap is explained, never mistaken for silent loss.

use std::io::Write as _;
use std::path::{Path, PathBuf};

const BLOCK: u64 = 65_536;

pub struct SeqAllocator {
    path: PathBuf,
    next: u64,
    reserved_through: u64,
    resumed_after: Option<u64>,
}

impl SeqAllocator {
    /// Open (or create) the state in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<SeqAllocator> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("seq");
        let previous = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} holds {:?}, not a sequence number: {e}",
                        path.display(),
                        text.trim()
                    ),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let start = previous.unwrap_or(0);
        let mut allocator = SeqAllocator {
            path,
            next: start + 1,
            reserved_through: start,
            resumed_after: previous,
        };
        allocator.reserve()?;
        Ok(allocator)
    }

    /// The last number an earlier run could have used, if there was one.
    #[must_use]
    pub fn resumed_after(&self) -> Option<u64> {
        self.resumed_after
    }

    fn reserve(&mut self) -> std::io::Result<()> {
        let through = self.next - 1 + BLOCK;
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            writeln!(file, "{through}")?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.reserved_through = through;
        Ok(())
    }

    /// The next sequence number.
    pub fn next(&mut self) -> std::io::Result<u64> {
        if self.next > self.reserved_through {
            self.reserve()?;
        }
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_never_repeat_across_reopen() {
        let dir = std::env::temp_dir().join(format!("wt-seq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = SeqAllocator::open(&dir).unwrap();
        assert_eq!(a.resumed_after(), None);
        assert_eq!((a.next().unwrap(), a.next().unwrap()), (1, 2));
        drop(a);
        // A "crash": the next run resumes after the whole reserved block.
        let mut b = SeqAllocator::open(&dir).unwrap();
        assert_eq!(b.resumed_after(), Some(BLOCK));
        assert_eq!(b.next().unwrap(), BLOCK + 1);
        std::fs::write(dir.join("seq"), "garbage").unwrap();
        let err = SeqAllocator::open(&dir).err().unwrap();
        assert!(err.to_string().contains("not a sequence number"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
