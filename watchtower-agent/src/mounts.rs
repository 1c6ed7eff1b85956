//! The kernel file systems the probes need (tracefs, bpffs, cgroup v2): where one
//! is mounted (`/proc/self/mounts`), and mounting one where it is missing.

use std::path::{Path, PathBuf};

/// The mount points of file systems of type `fstype` in a `/proc/self/mounts` text.
#[must_use]
pub fn mount_points(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            match (fields.next(), fields.next()) {
                (Some(at), Some(kind)) if kind == fstype => Some(PathBuf::from(at)),
                _ => None,
            }
        })
        .collect()
}

/// Where file systems of type `fstype` are mounted now (none when
/// `/proc/self/mounts` cannot be read).
#[must_use]
pub fn mounted(fstype: &str) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|mounts| mount_points(&mounts, fstype))
        .unwrap_or_default()
}

/// Whether a file system of type `fstype` is mounted at `path`.
#[must_use]
pub fn is_mounted_at(fstype: &str, path: &Path) -> bool {
    mounted(fstype).iter().any(|at| at == path)
}

/// Mount a file system of type `fstype` (no source, no options) at `at`, which
/// must exist.
pub fn mount(fstype: &str, at: &Path) -> std::io::Result<()> {
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let kind = std::ffi::CString::new(fstype)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in type"))?;
    // SAFETY: plain mount(2) with valid C strings and no data.
    let rc = unsafe { libc::mount(kind.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Detach the mount at `at` (lazily: what holds it open keeps it).
pub fn unmount(at: &Path) -> std::io::Result<()> {
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: umount2(2) with a valid C string.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The root of the cgroup v2 hierarchy, opened: where one is mounted, or else
/// mounted at `scratch` (created) for as long as it takes to open it. The open
/// directory is all a cgroup program's attachment needs.
pub fn open_cgroup2_root(scratch: &Path) -> std::io::Result<std::fs::File> {
    if let Some(at) = mounted("cgroup2").first() {
        return std::fs::File::open(at);
    }
    std::fs::create_dir_all(scratch)?;
    mount("cgroup2", scratch)?;
    tracing::info!(path = %scratch.display(), "mounted cgroup2 to attach the socket hooks");
    let root = std::fs::File::open(scratch);
    if let Err(error) = unmount(scratch) {
        tracing::warn!(%error, path = %scratch.display(), "could not unmount cgroup2");
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_found_by_type() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
                      bpf /sys/fs/bpf bpf rw,relatime,mode=700 0 0\n\
                      tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(mount_points(mounts, "bpf"), [PathBuf::from("/sys/fs/bpf")]);
        assert_eq!(
            mount_points(mounts, "cgroup2"),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        assert!(mount_points(mounts, "tracefs").is_empty());
        assert!(mount_points("", "bpf").is_empty());
        assert!(mount_points("garbage\n", "bpf").is_empty());
    }
}
