//! The two witnesses of every login, started: the kernel's (the eBPF probes and
//! their ring buffers, see [`crate::probes`]) and the journal's (see
//! [`crate::journal`]). Either may be missing, not both.

use anyhow::bail;

use crate::config::{Config, Scope};
use crate::{adopt, clock, journal, pins, probes};

/// The kernel witness, started: its probes (kept alive until shutdown) and the
/// ring buffers to read.
pub struct KernelStarted {
    pub ebpf: aya::Ebpf,
    pub rings: probes::Rings,
    pub counters: probes::KernelCounters,
    pub attached: Vec<String>,
    pub adopted: Vec<adopt::AdoptedSession>,
    /// How capture began (resumed, fresh, after a gap).
    pub start: pins::CaptureStart,
    /// The pins, when the probes could be pinned.
    pub kept: Option<probes::KeptProbes>,
    /// The libpam the PAM probes are attached to (followed when replaced).
    pub libpam: std::path::PathBuf,
}

/// Check the machine, load and attach the probes.
pub fn start_kernel(config: &Config) -> anyhow::Result<KernelStarted> {
    let found = probes::preflight()?;
    if found.mounted_tracefs {
        tracing::info!(path = %found.tracefs.display(), "mounted tracefs");
    }
    if let Some(note) = &found.btf_note {
        tracing::warn!("{note}");
    }
    let probes = probes::load(
        &found,
        &probes::LoadOptions {
            capture_all: config.capture.scope == Scope::All,
            ring_buffer_bytes: config.capture.ring_buffer_bytes,
            pin_dir: &config.capture.pin_dir,
            state_dir: &config.agent.state_dir,
        },
    )?;
    tracing::info!(
        probes = probes.attached.len(),
        libpam = %found.libpam.display(),
        scope = config.capture.scope.name(),
        "probes attached"
    );
    let probes::Probes {
        ebpf,
        rings,
        counters,
        attached,
        adopted,
        start,
        kept,
    } = probes;
    if let pins::CaptureStart::Gap { from_ns, to_ns } = start {
        tracing::error!(
            seconds = (to_ns.saturating_sub(from_ns)) as f64 / 1e9,
            "capture gap: the probes of an earlier agent on this boot were gone or could not be resumed"
        );
    }
    if !adopted.is_empty() {
        tracing::info!(
            sessions = adopted.len(),
            "adopted login sessions that began before the agent"
        );
    }
    Ok(KernelStarted {
        ebpf,
        rings,
        counters,
        attached,
        adopted,
        start,
        kept,
        libpam: found.libpam,
    })
}

/// The witnesses that could start, and why the others could not.
pub struct Witnesses {
    pub kernel: Result<KernelStarted, String>,
    /// When the kernel witness began watching (unix ns).
    pub kernel_since_ns: u64,
    pub journal: Result<(), String>,
    /// `kernel+journal`, `kernel` or `journal`.
    pub mode: &'static str,
}

/// Start the kernel witness and check that the journal can be read; fail when
/// neither can run, or when a required one cannot.
pub fn start(config: &Config) -> anyhow::Result<Witnesses> {
    let kernel = match start_kernel(config) {
        Ok(kernel) => Ok(kernel),
        Err(error) if config.capture.required => return Err(error),
        Err(error) => {
            tracing::error!("kernel witness unavailable, degraded to journal-only: {error:#}");
            Err(format!("{error:#}"))
        }
    };
    let kernel_since_ns = clock::boot_to_unix_ns(clock::boottime_ns());
    let journal = if config.journal.enabled {
        journal::probe(&config.journal.journalctl)
    } else {
        Err("disabled by configuration".to_string())
    };
    match (&kernel, &journal) {
        (Err(k), Err(j)) => bail!("neither witness can run. kernel: {k}. journal: {j}"),
        (_, Err(j)) if config.journal.required => bail!("the journal cannot be read: {j}"),
        (Ok(_), Err(j)) => tracing::warn!("journal witness unavailable, kernel-only (no cross-check): {j}"),
        _ => {}
    }
    let mode = match (&kernel, &journal) {
        (Ok(_), Ok(())) => "kernel+journal",
        (Ok(_), Err(_)) => "kernel",
        _ => "journal",
    };
    tracing::info!(mode, "witnesses running");
    Ok(Witnesses {
        kernel,
        kernel_since_ns,
        journal,
        mode,
    })
}
