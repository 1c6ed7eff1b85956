//! What the server keeps about events: the stored record, its receipt, the
//! session and host summaries it maintains, and the filter events are read by.

use std::collections::HashMap;

use crate::{Event, EventKind, Outcome, SpoolHealth};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoredEvent {
    pub event: Option<Event>,
    pub received_unix_ns: u64,
    /// The host's labels (region, group, ...) from its certificate when the server
    /// stored the event: bound by the CA, never sent by the agent.
    ///
    /// Keys with a `/` are the server's own notes about the event at ingest (a
    /// certificate's label keys are \[a-z0-9\_-\] only, so they cannot collide):
    ///
    /// * `ingest/time_ahead` = `true`: the event's time was more than 10 minutes ahead
    ///   of `received_unix_ns` (the agent's clock is wrong, or the time is forged). It
    ///   is stored with the time it claims, never dropped; rules that count over time
    ///   windows should use `received_unix_ns`.
    ///   An event whose body is of a kind this server does not know (a newer agent's) is
    ///   stored as such: kind unspecified, no body.
    pub labels: HashMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    pub seq: u64,
    pub leaf_index: u64,
    /// SHA-256 of the stored record's canonical JSON (see watchtower-tlog).
    pub record_sha256: Vec<u8>,
    /// The event had the id of a stored one and other content: its leaf is a
    /// conflict entry, the first record stays.
    pub conflict: bool,
    /// The event's boot: set where receipts of several boots are given (a
    /// witness reply), empty in an Ack.
    pub boot_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionSummary {
    pub host_id: String,
    pub boot_id: String,
    #[serde(serialize_with = "crate::json::session")]
    pub session: u64,
    #[serde(serialize_with = "crate::json::optional_session")]
    pub parent_session: Option<u64>,
    pub service: String,
    pub user: String,
    pub remote_host: Option<String>,
    pub tty: Option<String>,
    pub start_unix_ns: u64,
    /// 0 while open.
    pub end_unix_ns: u64,
    pub end_reason: Option<String>,
    pub execs: u64,
    pub connects: u64,
    #[serde(serialize_with = "crate::json::sessions")]
    pub child_sessions: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostInfo {
    pub host_id: String,
    pub boot_id: String,
    pub agent_version: String,
    pub first_seen_unix_ns: u64,
    pub last_heartbeat_unix_ns: u64,
    pub last_event_unix_ns: u64,
    pub last_seq: u64,
    pub events_stored: u64,
    pub duplicates: u64,
    pub connected: bool,
    pub spool: Option<SpoolHealth>,
    /// Ring-buffer losses in the kernel by record kind, as the agent's latest health
    /// record reported them (since that agent started).
    pub kernel_lost: HashMap<String, u64>,
    /// The assembler's evictions by reason, as the agent's latest health record
    /// reported them (since that agent started).
    pub assembler_evicted: HashMap<String, u64>,
    /// From the certificate of the agent's latest connection: its labels, serial
    /// number (hex) and expiry (seconds since the epoch).
    pub labels: HashMap<String, String>,
    pub cert_serial: String,
    pub cert_not_after_unix_s: i64,
}

/// Every field narrows; unset fields do not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventFilter {
    pub host_id: String,
    /// \[from, to) in ns since the epoch; 0 = unbounded.
    pub from_unix_ns: u64,
    pub to_unix_ns: u64,
    /// The login user (login attempts, sessions, verdicts) or the session's user (exec, connect).
    pub user: String,
    pub kinds: Vec<EventKind>,
    /// Login attempts and verdicts with this outcome.
    pub outcome: Outcome,
    #[serde(serialize_with = "crate::json::optional_session")]
    pub session: Option<u64>,
    /// Where a login came from, or where a connection went.
    pub remote_address: String,
}
/// What a live tail (and the alert rules) receive as it is committed. Its JSON
/// is `{"item": {"stored": …}}` (or `alert`, `conflict`), as the wire's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveItem {
    Stored(StoredEvent),
    Alert(crate::Alert),
    /// A record with the id of a stored one and other content, kept as evidence
    /// (not indexed); read by the alert rules, not sent to tails.
    Conflict(StoredEvent),
}

impl serde::Serialize for LiveItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Item<'a> {
            Stored(&'a StoredEvent),
            Alert(&'a crate::Alert),
            Conflict(&'a StoredEvent),
        }
        #[derive(serde::Serialize)]
        struct Wrapped<'a> {
            item: Item<'a>,
        }
        let item = match self {
            LiveItem::Stored(stored) => Item::Stored(stored),
            LiveItem::Alert(alert) => Item::Alert(alert),
            LiveItem::Conflict(conflict) => Item::Conflict(conflict),
        };
        Wrapped { item }.serialize(s)
    }
}

impl StoredEvent {
    /// The SHA-256 of this record's canonical JSON: what its leaf in the
    /// tamper-evidence log commits to (see watchtower-tlog).
    #[must_use]
    pub fn record_sha256(&self) -> [u8; 32] {
        let json = serde_json::to_value(self).expect("records have string map keys");
        watchtower_tlog::entry::record_sha256(&json).expect("records hold no floats")
    }

    /// What an audit compares with this record's leaf: its hash and its id.
    #[must_use]
    pub fn audited(&self) -> watchtower_tlog::StoredRecord {
        watchtower_tlog::StoredRecord::Present {
            sha256: self.record_sha256(),
            id: self.record_id(),
        }
    }

    /// The id the record's event carries (empty when it has none).
    #[must_use]
    pub fn record_id(&self) -> watchtower_tlog::RecordId {
        self.event
            .as_ref()
            .map(|event| watchtower_tlog::RecordId {
                host_id: event.host_id.clone(),
                boot_id: event.boot_id.clone(),
                seq: event.seq,
                time_unix_ns: event.time_unix_ns,
            })
            .unwrap_or_default()
    }
}
