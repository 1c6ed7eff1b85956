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

/// Lower-case hex of bytes.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parse lower- or upper-case hex.
#[must_use]
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl pb::Checkpoint {
    /// The exact text the server signs (and a verifier checks): one field per line.
    #[must_use]
    pub fn note(&self) -> String {
        format!(
            "watchtower checkpoint v1\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.origin,
            self.size,
            hex(&self.root),
            self.time_unix_ns,
            self.reason,
            self.retention_cutoff_unix_ns
        )
    }
}

/// Why a signed checkpoint is not to be trusted.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckpointError {
    Missing,
    /// Signed with another key than the pinned one.
    UnexpectedKey {
        expected: String,
        found: String,
    },
    BadSignature,
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Missing => write!(f, "no checkpoint"),
            CheckpointError::UnexpectedKey { expected, found } => write!(
                f,
                "the checkpoint is signed by key {found}, not the pinned key {expected}"
            ),
            CheckpointError::BadSignature => write!(f, "the checkpoint's Ed25519 signature does not verify"),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl pb::SignedCheckpoint {
    /// Check the Ed25519 signature over the checkpoint's note, with `pinned` (the key
    /// an auditor kept) when given, else with the key the checkpoint carries.
    pub fn verify(&self, pinned: Option<&[u8]>) -> Result<&pb::Checkpoint, CheckpointError> {
        let checkpoint = self.checkpoint.as_ref().ok_or(CheckpointError::Missing)?;
        let key = match pinned {
            Some(pinned) if pinned != self.public_key.as_slice() => {
                return Err(CheckpointError::UnexpectedKey {
                    expected: hex(pinned),
                    found: hex(&self.public_key),
                });
            }
            Some(pinned) => pinned,
            None => &self.public_key,
        };
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(checkpoint.note().as_bytes(), &self.signature)
            .map_err(|_| CheckpointError::BadSignature)?;
        Ok(checkpoint)
    }
}

/// How JSON shows the contract's enums, session keys and byte strings.
pub mod json {
    use serde::Serializer;

    pub fn outcome<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::pb::Outcome::try_from(*value).map_or("unknown", crate::pb::Outcome::name))
    }

    pub fn verdict<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::pb::Verdict::try_from(*value).map_or("unknown", crate::pb::Verdict::name))
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
    fn a_checkpoint_verifies_only_unchanged_and_with_its_key() {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let checkpoint = Checkpoint {
            origin: "watchtower/test".into(),
            size: 10,
            root: vec![1; 32],
            time_unix_ns: 5,
            reason: "periodic".into(),
            retention_cutoff_unix_ns: 0,
        };
        let mut signed = SignedCheckpoint {
            signature: key.sign(checkpoint.note().as_bytes()).as_ref().to_vec(),
            public_key: key.public_key().as_ref().to_vec(),
            checkpoint: Some(checkpoint),
        };
        assert!(signed.verify(None).is_ok());
        assert!(signed.verify(Some(key.public_key().as_ref())).is_ok());
        assert!(matches!(
            signed.verify(Some(&[0; 32])),
            Err(CheckpointError::UnexpectedKey { .. })
        ));
        signed.checkpoint.as_mut().unwrap().size = 9;
        assert_eq!(signed.verify(None), Err(CheckpointError::BadSignature));
    }
}
