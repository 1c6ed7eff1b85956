//! The libpam the PAM probes are on, followed: a uprobe stays on the file it was
//! attached to, so a libpam replaced on disk (every security update of libpam
//! does this) would leave every later login unseen. The file behind the path is
//! checked five times a second; when it is another one, the loaded PAM programs
//! are attached to it too (the old attachments stay for processes that still map
//! the old file).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::probes;

/// How often the file behind the path is checked.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The probes, shared with shutdown (which drops them to detach everything).
pub type SharedProbes = Arc<Mutex<Option<aya::Ebpf>>>;

/// The file a path names now: (device, inode), following links.
fn file_of(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Follow `libpam` until `stop`.
pub async fn follow(ebpf: SharedProbes, libpam: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut attached_to = file_of(&libpam);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = file_of(&libpam);
        if now.is_none() || now == attached_to {
            continue;
        }
        let mut guard = ebpf.lock().expect("probes");
        let Some(ebpf) = guard.as_mut() else {
            return;
        };
        match probes::attach_pam(ebpf, &libpam, false) {
            Ok(attached) => {
                tracing::warn!(
                    libpam = %libpam.display(),
                    probes = attached.len(),
                    "libpam was replaced on disk: the PAM probes are attached to the new file"
                );
                attached_to = now;
            }
            // Tried again at the next check (a file being written may not parse yet).
            Err(e) => {
                tracing::error!(libpam = %libpam.display(), error = %e, "cannot attach the PAM probes to the replaced libpam");
            }
        }
    }
}
