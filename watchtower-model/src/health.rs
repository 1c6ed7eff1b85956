//! The agent's own state, carried in its `agent_health` events.

use std::collections::HashMap;

/// The agent's own state: what it runs, and everything it could not deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentHealth {
    /// start, periodic or shutdown. A start record after a crash is the restart marker:
    /// resumed_after_seq says where numbering resumed.
    pub reason: String,
    pub mode: String,
    pub kernel_unavailable: Option<String>,
    pub journal: Option<JournalHealth>,
    pub verdicts: Option<VerdictCounters>,
    pub scope: String,
    pub probes: Vec<String>,
    pub lost: HashMap<String, u64>,
    pub out_of_scope: HashMap<String, u64>,
    pub decode_errors: u64,
    pub records: u64,
    pub pam_orphans: u64,
    pub open_sessions: u64,
    pub resumed_after_seq: Option<u64>,
    pub spool: Option<SpoolHealth>,
    pub log_witness: Option<LogWitnessHealth>,
    /// How the kernel witness began (absent in journal-only mode, and from the JSON
    /// of records made before it existed, whose hashes stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_start: Option<CaptureStart>,
    /// What the assembler let go because its bounds were reached, by reason
    /// (absent from the JSON when none, as in records made before it existed).
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub evicted: HashMap<String, u64>,
}

/// How an agent's kernel witness began: `fresh`, `resumed` (the previous agent's
/// pinned probes kept capturing while no agent ran), `gap` (an agent ran earlier on
/// this boot but its probes were gone: nothing was captured between the two times)
/// or `unpinned` (the probes end with this agent).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStart {
    pub how: String,
    pub gap_from_unix_ns: Option<u64>,
    pub gap_to_unix_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct JournalHealth {
    pub state: String,
    pub error: Option<String>,
    pub journald_accepting: bool,
    pub records: u64,
    pub malformed: u64,
    pub recognised: u64,
    pub logins: u64,
    pub restarts: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerdictCounters {
    pub confirmed: u64,
    pub kernel_only: u64,
    pub journal_only: u64,
    pub unchecked: u64,
    pub pending_kernel: u64,
    pub pending_journal: u64,
    pub overflow: u64,
}

/// The agent's on-disk spool: what waits for the server's acknowledgement, and what
/// could not be kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolHealth {
    pub bytes: u64,
    pub max_bytes: u64,
    /// Events written and not yet acknowledged.
    pub pending: u64,
    /// Events dropped, by reason (spool_full, write_error, encode_error).
    pub dropped: HashMap<String, u64>,
    /// Records cut from a torn or corrupt spool tail at start-up.
    pub corrupt_records: u64,
    pub acked: u64,
    pub reconnects: u64,
    /// Events the server refused as invalid (an Ack's `refused`), or that the agent could
    /// not send at all (undecodable, too large for any batch): moved out of the delivery
    /// order into `<state-dir>/spool/quarantine` (kept on disk, checksummed, with the
    /// reason) and not sent again, so the events after them still go. Counts the
    /// records that file holds. Refused events the quarantine had no room for are
    /// counted in `dropped` as `quarantine_full`.
    pub quarantined: u64,
}

/// The agent as a witness of the server's log (Witness): what it verified, and
/// what it found wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogWitnessHealth {
    /// The size of the last signed checkpoint the agent verified and kept.
    pub checkpoint_size: u64,
    /// Receipts whose leaves were proven in a verified checkpoint, and those waiting.
    pub receipts_verified: u64,
    pub receipts_pending: u64,
    /// What was wrong, by kind, since the agent's state was made: rewound (the log is
    /// smaller than a checkpoint the agent verified), forked (not an extension of it),
    /// bad_signature (not signed by the pinned key), key_changed, not_included (a
    /// receipt's leaf is not in the log), bad_receipt (a receipt for an event the
    /// batch did not hold, or a leaf index below the log's size at the ack).
    pub findings: HashMap<String, u64>,
    pub last_finding: String,
}
