//! The `watchtower.v1` contract, generated from `proto/watchtower.proto`.
//!
//! Everything generated is under [`pb`]: messages are plain prost structs;
//! `pb::ingest_*` and `pb::query_*` hold the tonic clients and servers. Beside it:
//! [`VERSION`], hex helpers and the JSON forms the generated code's serde
//! attributes name.

#![allow(clippy::pedantic)]

/// The generated messages, clients and servers (`cargo xtask proto` writes
/// `src/generated/watchtower.v1.rs`; `cargo xtask test` checks it is current).
#[allow(clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pb {
    include!("generated/watchtower.v1.rs");
}

/// This build's version: what `cargo xtask dist` (and `test`) stamp in through
/// `WATCHTOWER_VERSION`, else the crate version. Every binary's `--version`, the
/// agent's Hello and the webhook's user agent.
pub const VERSION: &str = match option_env!("WATCHTOWER_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

impl pb::Event {
    /// The kind of the event's body (`Unspecified` when it has none).
    #[must_use]
    pub fn kind(&self) -> pb::EventKind {
        use pb::event::Body;
        match &self.body {
            None => pb::EventKind::Unspecified,
            Some(Body::LoginAttempt(_)) => pb::EventKind::LoginAttempt,
            Some(Body::SessionStart(_)) => pb::EventKind::SessionStart,
            Some(Body::SessionEnd(_)) => pb::EventKind::SessionEnd,
            Some(Body::Exec(_)) => pb::EventKind::Exec,
            Some(Body::Connect(_)) => pb::EventKind::Connect,
            Some(Body::LoginVerdict(_)) => pb::EventKind::LoginVerdict,
            Some(Body::AgentHealth(_)) => pb::EventKind::AgentHealth,
        }
    }
}

impl pb::EventKind {
    /// The snake_case name used in configs and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            pb::EventKind::Unspecified => "unspecified",
            pb::EventKind::LoginAttempt => "login_attempt",
            pb::EventKind::SessionStart => "session_start",
            pb::EventKind::SessionEnd => "session_end",
            pb::EventKind::Exec => "exec",
            pb::EventKind::Connect => "connect",
            pb::EventKind::LoginVerdict => "login_verdict",
            pb::EventKind::AgentHealth => "agent_health",
        }
    }

    /// Parse a snake_case name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [
            pb::EventKind::LoginAttempt,
            pb::EventKind::SessionStart,
            pb::EventKind::SessionEnd,
            pb::EventKind::Exec,
            pb::EventKind::Connect,
            pb::EventKind::LoginVerdict,
            pb::EventKind::AgentHealth,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

impl pb::Outcome {
    /// The snake_case name (`success`, `failure`, `unspecified`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            pb::Outcome::Unspecified => "unspecified",
            pb::Outcome::Success => "success",
            pb::Outcome::Failure => "failure",
        }
    }
}

impl pb::Verdict {
    /// The snake_case name (`confirmed`, `kernel_only`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            pb::Verdict::Unspecified => "unspecified",
            pb::Verdict::Confirmed => "confirmed",
            pb::Verdict::KernelOnly => "kernel_only",
            pb::Verdict::JournalOnly => "journal_only",
            pb::Verdict::Unchecked => "unchecked",
        }
    }
}

pub use watchtower_tlog::{hex, unhex};

impl pb::StoredEvent {
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

/// How JSON shows the contract's enums, session keys and byte strings.
pub mod json {
    use serde::Serializer;

    // An enum value this build does not know is shown as its number, so that the
    // JSON form (which the tamper-evidence log hashes) tells every value apart.

    pub fn outcome<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
        match crate::pb::Outcome::try_from(*value) {
            Ok(known) => s.serialize_str(known.name()),
            Err(_) => s.serialize_i32(*value),
        }
    }

    pub fn verdict<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
        match crate::pb::Verdict::try_from(*value) {
            Ok(known) => s.serialize_str(known.name()),
            Err(_) => s.serialize_i32(*value),
        }
    }

    pub fn kinds<S: Serializer>(values: &[i32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            values
                .iter()
                .map(|v| crate::pb::EventKind::try_from(*v).map_or("unknown", crate::pb::EventKind::name)),
        )
    }

    pub fn session<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:016x}"))
    }

    #[allow(clippy::ref_option)]
    pub fn optional_session<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&format!("{v:016x}")),
            None => s.serialize_none(),
        }
    }

    pub fn sessions<S: Serializer>(values: &[u64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| format!("{v:016x}")))
    }

    pub fn hex<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(value))
    }

    pub fn hex_list<S: Serializer>(values: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| super::hex(v)))
    }

    /// Bytes that are text (signed notes, log entries), shown as text.
    pub fn text<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(value))
    }
}

#[cfg(test)]
mod tests {
    use super::pb::*;
    use super::*;

    #[test]
    fn events_serialize_as_readable_json() {
        let event = Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq: 7,
            time_unix_ns: 1,
            body: Some(event::Body::LoginAttempt(LoginAttempt {
                service: "sshd".into(),
                user: "alice".into(),
                outcome: Outcome::Failure as i32,
                from_session: Some(0xab),
                ..LoginAttempt::default()
            })),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["body"]["login_attempt"]["outcome"], "failure");
        assert_eq!(json["body"]["login_attempt"]["from_session"], "00000000000000ab");
        assert_eq!(json["body"]["login_attempt"]["user"], "alice");
        assert_eq!(json["seq"], 7);
    }

    #[test]
    fn hex_round_trips_and_refuses_odd_text() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn an_unknown_enum_value_shows_as_its_number() {
        let attempt = LoginAttempt {
            outcome: 7,
            ..LoginAttempt::default()
        };
        let json = serde_json::to_value(&attempt).unwrap();
        assert_eq!(json["outcome"], 7);
    }
}
