//! The probe keeper: looks after the attached probes while the agent runs.
//!
//! - libpam followed: a uprobe stays on the file it was attached to, so a libpam
//!   replaced on disk (every security update of libpam does this) would leave
//!   every later login unseen. The file behind the path is checked five times a
//!   second; when it is another one, the loaded PAM programs are attached to it
//!   too (the old attachments stay for processes that still map the old file),
//!   their links pinned with the others.
//! - the pins' description ([`crate::pins`]) says, once a second, that an agent
//!   reads the probes: if they are lost, the next agent's capture gap starts there.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::probes::{self, KeptProbes, file_of};

/// How often the file behind the path is checked.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How many checks between two stamps of the pins' description.
const CHECKS_PER_STAMP: u32 = 5;

/// The loaded probes and their pins.
pub struct LiveProbes {
    pub ebpf: aya::Ebpf,
    pub kept: Option<KeptProbes>,
}

/// The probes, shared with shutdown (which takes them to release everything).
pub type SharedProbes = Arc<Mutex<Option<LiveProbes>>>;

/// Keep the probes until `stop`; `attached_to` is the libpam file the PAM probes
/// are on now.
pub async fn keep(probes: SharedProbes, libpam: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut attached_to = file_of(&libpam);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut checks = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut guard = probes.lock().expect("probes");
        let Some(live) = guard.as_mut() else {
            return;
        };
        checks += 1;
        if checks.is_multiple_of(CHECKS_PER_STAMP)
            && let Some(kept) = live.kept.as_mut()
        {
            kept.alive();
        }
        let now = file_of(&libpam);
        if now.is_none() || now == attached_to {
            continue;
        }
        match probes::attach_pam(&mut live.ebpf, &libpam, live.kept.as_ref().map(KeptProbes::pins)) {
            Ok(attached) => {
                tracing::warn!(
                    libpam = %libpam.display(),
                    probes = attached.len(),
                    "libpam was replaced on disk: the PAM probes are attached to the new file"
                );
                attached_to = now;
                if let (Some(kept), Some(file)) = (live.kept.as_mut(), now) {
                    kept.attached_to(file);
                }
            }
            // Tried again at the next check (a file being written may not parse yet).
            Err(e) => {
                tracing::error!(libpam = %libpam.display(), error = %e, "cannot attach the PAM probes to the replaced libpam");
            }
        }
    }
}
