//! The agent's health records (`agent_health` events), built in one place from
//! every stage's counters: the kernel's (lost, out of scope), the reader's, the
//! assembler's, the journal's, the reconciler's and the spool's (its drops, and
//! the events it holds in quarantine because the server refused them: counted
//! under `quarantined`, on the wire as `spool.quarantined`) and the log witness's
//! (what it verified of the server's log, what it found wrong). Their wire form
//! is in [`crate::wire`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::assemble::AssemblerState;
use crate::clock;
use crate::event::{AgentHealth, CaptureStartHealth, VerdictCounters};
use crate::journal::{self, JournalStats};
use crate::log_witness::LogWitness;
use crate::pins::CaptureStart;
use crate::probes::KernelCounters;
use crate::stages::reader::ReaderStats;
use crate::stages::spool_writer::SharedSpool;

/// Static facts reported in every health record.
pub struct HealthContext {
    pub scope: &'static str,
    pub probes: Vec<String>,
    /// `kernel+journal`, `kernel` or `journal`.
    pub mode: &'static str,
    pub kernel_unavailable: Option<String>,
    /// How the kernel witness began (none in journal-only mode).
    pub capture_start: Option<CaptureStart>,
}

/// The kernel witness's counters, when it runs: the kernel's and the reader's.
pub struct KernelStats {
    pub counters: KernelCounters,
    pub reader: Arc<ReaderStats>,
}

/// The journal witness: followed (with its counters), or why not.
pub enum JournalState {
    Following(Arc<JournalStats>),
    Unavailable(String),
}

/// Everything a health record is built from, beside the assembler's and the
/// reconciler's state (which their stage passes in).
pub struct HealthSources {
    pub context: HealthContext,
    pub kernel: Option<KernelStats>,
    pub journal: JournalState,
    /// The spool, when events are shipped to a server.
    pub spool: Option<Arc<SharedSpool>>,
    /// The last sequence number an earlier run could have used.
    pub resumed_after: Option<u64>,
    /// The agent as a witness of the server's log, when events are shipped.
    pub log_witness: Option<Arc<Mutex<LogWitness>>>,
}

impl HealthSources {
    /// Whether the journal can be read now: followed, with journald accepting.
    #[must_use]
    pub fn journal_readable(&self) -> bool {
        match &self.journal {
            JournalState::Following(stats) => stats.readable(),
            JournalState::Unavailable(_) => false,
        }
    }

    /// The health record for `reason` (`start`, `periodic`, `shutdown`).
    #[must_use]
    pub fn record(
        &self,
        reason: &'static str,
        assembler: AssemblerState,
        verdicts: Option<VerdictCounters>,
    ) -> AgentHealth {
        let kernel = self.kernel.as_ref();
        let journal_health = match &self.journal {
            JournalState::Following(stats) => stats.health(),
            JournalState::Unavailable(why) => journal::unavailable(why),
        };
        AgentHealth {
            reason,
            mode: self.context.mode,
            kernel_unavailable: self.context.kernel_unavailable.clone(),
            journal: Some(journal_health),
            verdicts,
            scope: self.context.scope,
            probes: if reason == "start" {
                self.context.probes.clone()
            } else {
                Vec::new()
            },
            lost: kernel.map(|k| k.counters.lost()).unwrap_or_default(),
            out_of_scope: kernel.map(|k| k.counters.out_of_scope()).unwrap_or_default(),
            decode_errors: kernel.map_or(0, |k| k.reader.decode_errors.load(Ordering::Relaxed)),
            records: kernel.map_or(0, |k| k.reader.records.load(Ordering::Relaxed)),
            pam_orphans: assembler.counters.pam_orphans,
            open_sessions: assembler.open_sessions,
            resumed_after_seq: if reason == "start" {
                self.resumed_after
            } else {
                None
            },
            spool: self.spool.as_ref().map(|spool| spool.health()),
            log_witness: self
                .log_witness
                .as_ref()
                .map(|w| w.lock().expect("log witness lock").health()),
            capture_start: self.context.capture_start.as_ref().map(capture_start),
            evicted: assembler.counters.evicted(),
        }
    }
}

/// How capture began, with a gap's bounds in Unix time.
fn capture_start(start: &CaptureStart) -> CaptureStartHealth {
    let (from, to) = match start {
        CaptureStart::Gap { from_ns, to_ns } => (
            Some(clock::boot_to_unix_ns(*from_ns)),
            Some(clock::boot_to_unix_ns(*to_ns)),
        ),
        _ => (None, None),
    };
    CaptureStartHealth {
        how: start.name(),
        gap_from_unix_ns: from,
        gap_to_unix_ns: to,
    }
}
