//! The tamper-evidence log as the server reports it: signed checkpoints and
//! the findings of an audit.

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SignedCheckpoint {
    /// The C2SP tlog-checkpoint signed note: origin line, tree size, base64 root, a blank
    /// line, then signature lines. Check it with the verifier key you pinned.
    #[serde(serialize_with = "crate::json::text")]
    pub note: Vec<u8>,
    /// Not signed, for people: when and why the server signed it (start, periodic,
    /// shutdown, retention), and the tree size the note signs.
    pub time_unix_ns: u64,
    pub reason: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// changed, removed, missing_leaf, damaged_leaf, root_mismatch, bad_signature,
    /// truncated, unlogged, conflict, early_retention, rolled_back, forked.
    pub problem: String,
    pub leaf: u64,
    pub host_id: String,
    pub boot_id: String,
    pub seq: u64,
    pub time_unix_ns: u64,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Leaves in the log.
    pub log_size: u64,
    /// The host's (or all) leaves compared with their stored records.
    pub leaves_checked: u64,
    pub records_intact: u64,
    /// Records removed by a signed retention cut-off.
    pub pruned_by_retention: u64,
    pub findings: Vec<Finding>,
    pub checkpoints_checked: u64,
    pub latest: Option<SignedCheckpoint>,
    /// Stored records of the host(s) that no leaf accounts for.
    pub unlogged_records: u64,
}
