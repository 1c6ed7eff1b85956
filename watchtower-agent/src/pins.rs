//! The probes kept in bpffs across agent restarts, so that an agent that crashes,
//! is killed or is restarted leaves no hole in capture.
//!
//! Every link (the attachment of a program to its tracepoint or uprobe) and every
//! map but the per-CPU scratch space is pinned under `capture.pin_dir`: the kernel
//! keeps the programs attached and the ring buffers filling while no agent runs.
//! What a full ring buffer could not take meanwhile is counted in the pinned loss
//! counters. An agent that starts and finds probes of the same build, boot and
//! settings resumes them: it reads on where the last one stopped, with the same
//! session map (so the same session ids, nothing to re-adopt). Otherwise (another
//! build, another scope or ring size, pins gone) it removes them and starts afresh;
//! when an agent ran earlier on this boot, that start is a capture gap, reported
//! with its bounds in every health record (see [`CaptureStart`]).
//!
//! An agent stopped on purpose (SIGTERM, Ctrl-C) removes its pins: its probes stop
//! with it, and the next agent on this boot reports the time between as a gap. The description of what is pinned
//! lives in the agent's state directory (`probes.json`), since bpffs holds only
//! BPF objects.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::mounts;

/// File in the state directory describing the pinned probes.
const KEPT_FILE: &str = "probes.json";

/// What pinned probes are: an agent that wants the same resumes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub boot_id: String,
    /// The eBPF object's length and CRC-32: another build's programs are not resumed.
    pub object: String,
    pub capture_all: bool,
    pub ring_buffer_bytes: u32,
    pub pin_dir: PathBuf,
    /// The libpam files, as (device, inode), the PAM probes are attached to.
    #[serde(default)]
    pub libpam_files: Vec<(u64, u64)>,
    /// The last time (`CLOCK_BOOTTIME` ns) an agent was seen reading them.
    #[serde(default)]
    pub alive_ns: u64,
    /// Whether the cgroup socket hooks are attached with them.
    #[serde(default)]
    pub socket_hooks: bool,
}

impl Kept {
    /// The same probes: same boot, build and settings.
    #[must_use]
    pub fn same_probes(&self, other: &Kept) -> bool {
        self.boot_id == other.boot_id
            && self.object == other.object
            && self.capture_all == other.capture_all
            && self.ring_buffer_bytes == other.ring_buffer_bytes
            && self.pin_dir == other.pin_dir
    }

    /// The description kept in `state_dir`, if any (an unreadable one is none).
    #[must_use]
    pub fn read(state_dir: &Path) -> Option<Kept> {
        let text = std::fs::read_to_string(state_dir.join(KEPT_FILE)).ok()?;
        match serde_json::from_str(&text) {
            Ok(kept) => Some(kept),
            Err(error) => {
                tracing::warn!(%error, "ignoring an unreadable {KEPT_FILE}");
                None
            }
        }
    }

    /// Write the description into `state_dir` (replacing it whole).
    pub fn write(&self, state_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
        let path = state_dir.join(KEPT_FILE);
        let partial = state_dir.join(format!("{KEPT_FILE}.partial"));
        std::fs::write(&partial, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("replacing {}", path.display()))
    }
}

/// The identity of an eBPF object: its length and CRC-32.
#[must_use]
pub fn object_id(object: &[u8]) -> String {
    format!("{}-{:08x}", object.len(), crc32fast::hash(object))
}

/// How the kernel witness began, reported in every health record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureStart {
    /// No agent ran earlier on this boot (as far as the state directory tells).
    Fresh,
    /// The previous agent's probes were resumed: nothing was missed while no agent
    /// ran but what the ring buffers could not hold, which the loss counters hold.
    Resumed,
    /// An agent ran earlier on this boot, and its probes were gone or could not be
    /// resumed (another build or settings): nothing was captured from `from_ns`, the
    /// last time it was seen reading, to `to_ns`, when these probes were attached
    /// (both `CLOCK_BOOTTIME` ns).
    Gap { from_ns: u64, to_ns: u64 },
    /// The probes could not be pinned (no bpffs): they end with this agent, and the
    /// next agent reports the time between as a gap.
    Unpinned,
}

impl CaptureStart {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            CaptureStart::Fresh => "fresh",
            CaptureStart::Resumed => "resumed",
            CaptureStart::Gap { .. } => "gap",
            CaptureStart::Unpinned => "unpinned",
        }
    }
}

/// Whether to resume what `kept` describes, given what is `wanted` and whether the
/// pinned links are still there; and how this start is to be reported.
#[must_use]
pub fn decide(kept: Option<&Kept>, wanted: &Kept, links_pinned: bool, now_ns: u64) -> CaptureStart {
    match kept {
        Some(kept) if kept.same_probes(wanted) && links_pinned => CaptureStart::Resumed,
        Some(kept) if kept.boot_id == wanted.boot_id => CaptureStart::Gap {
            from_ns: kept.alive_ns,
            to_ns: now_ns,
        },
        _ => CaptureStart::Fresh,
    }
}

/// The pin directory: `maps/<name>` and `links/<name>`.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    #[must_use]
    pub fn new(root: &Path) -> PinDir {
        PinDir {
            root: root.to_path_buf(),
        }
    }

    #[must_use]
    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    #[must_use]
    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join("links").join(name)
    }

    /// Pin `link` as `name`: it stays attached until the pin is removed.
    pub fn keep(&self, name: &str, link: aya::programs::links::FdLink) -> anyhow::Result<()> {
        link.pin(self.link(name))
            .with_context(|| format!("pinning {name}"))?;
        Ok(())
    }

    /// Whether any link is pinned (the probes of an earlier agent still run).
    #[must_use]
    pub fn links_pinned(&self) -> bool {
        std::fs::read_dir(self.root.join("links")).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Make the directories, on a bpffs (mounted at its parent when none is there).
    pub fn create(&self) -> anyhow::Result<()> {
        let parent = self
            .root
            .parent()
            .context("the pin directory needs a parent on bpffs")?;
        if !mounts::is_mounted_at("bpf", parent) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            mounts::mount("bpf", parent).with_context(|| {
                format!(
                    "{} is not a bpffs and mounting one there failed",
                    parent.display()
                )
            })?;
            tracing::info!(path = %parent.display(), "mounted bpffs");
        }
        for dir in ["maps", "links"] {
            let dir = self.root.join(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Remove every pin: the links are detached, the maps freed once no program or
    /// agent holds them. The directory itself stays (it may be one the agent could
    /// not make again, prepared for it by its service).
    pub fn remove(&self) -> anyhow::Result<()> {
        for dir in ["links", "maps"] {
            let dir = self.root.join(dir);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Kept {
        Kept {
            boot_id: "b1".into(),
            object: "100-00000001".into(),
            capture_all: false,
            ring_buffer_bytes: 4096,
            pin_dir: "/sys/fs/bpf/watchtower".into(),
            libpam_files: vec![(1, 2)],
            alive_ns: 500,
            socket_hooks: true,
        }
    }

    #[test]
    fn the_same_probes_still_pinned_are_resumed() {
        let wanted = Kept {
            libpam_files: vec![],
            alive_ns: 900,
            ..kept()
        };
        assert_eq!(decide(Some(&kept()), &wanted, true, 1000), CaptureStart::Resumed);
    }

    #[test]
    fn probes_gone_or_different_on_this_boot_are_a_gap_from_the_last_read() {
        let gap = CaptureStart::Gap {
            from_ns: 500,
            to_ns: 1000,
        };
        assert_eq!(decide(Some(&kept()), &kept(), false, 1000), gap, "pins removed");
        for wanted in [
            Kept {
                object: "101-00000002".into(),
                ..kept()
            },
            Kept {
                capture_all: true,
                ..kept()
            },
            Kept {
                ring_buffer_bytes: 8192,
                ..kept()
            },
        ] {
            assert_eq!(decide(Some(&kept()), &wanted, true, 1000), gap, "{wanted:?}");
        }
    }

    #[test]
    fn another_boot_or_no_earlier_agent_is_a_fresh_start() {
        let wanted = Kept {
            boot_id: "b2".into(),
            ..kept()
        };
        assert_eq!(decide(Some(&kept()), &wanted, true, 1000), CaptureStart::Fresh);
        assert_eq!(decide(None, &kept(), true, 1000), CaptureStart::Fresh);
    }

    #[test]
    fn the_description_survives_a_round_trip_through_the_state_directory() {
        let dir = std::env::temp_dir().join(format!("wt-pins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        kept().write(&dir).unwrap();
        assert_eq!(Kept::read(&dir), Some(kept()));
        std::fs::write(dir.join(KEPT_FILE), "{").unwrap();
        assert_eq!(Kept::read(&dir), None, "an unreadable one is none");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
