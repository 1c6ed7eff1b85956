//! The spool directory's files: segment names, the `acked` file, and the
//! durable create, rename, truncate and remove steps (each fsyncs what it changed).

#[allow(clippy::wildcard_imports, reason = "the spool's own constants and types")]
use super::*;

pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:0NAME_DIGITS$}{SEGMENT_SUFFIX}"))
}

/// Segment files in `dir` by first index; other files are left alone.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
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

pub(super) fn read_acked(path: &Path) -> Result<u64, SpoolError> {
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
pub(super) fn write_acked(dir: &Path, through: u64) -> Result<(), SpoolError> {
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
pub(super) fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
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

pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

pub(super) fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_at(path))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(io_at(path))
}

/// Remove a file; true if it was there.
pub(super) fn remove_if_present(path: &Path) -> Result<bool, SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(path)(e)),
    }
}

pub(super) fn io_at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}
