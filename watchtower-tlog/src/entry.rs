//! Leaf entries: what each leaf of the log commits to (see the crate docs for
//! the three kinds). An entry is canonical JSON; its leaf hash is
//! `SHA-256(0x00 ‖ entry)`.

use serde_json::{Value, json};

use crate::{Hash, canonical, hex, sha256, unhex};

/// Which stored record a leaf is about: the host (from its certificate), the boot
/// and the agent's sequence number, and the event's time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordId {
    pub host_id: String,
    pub boot_id: String,
    pub seq: u64,
    pub time_unix_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafEntry {
    /// A stored record, by its id and the SHA-256 of its canonical JSON.
    Record { id: RecordId, record_sha256: [u8; 32] },
    /// A second record with the id of a stored one and other content, kept as
    /// evidence.
    Conflict { id: RecordId, record_sha256: [u8; 32] },
    /// From here on, records whose event time is before `cutoff_unix_ns` may be
    /// removed (announced at `time_unix_ns`, before anything is removed).
    Retention { cutoff_unix_ns: u64, time_unix_ns: u64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("a leaf entry is not JSON: {0}")]
    NotJson(String),
    #[error("a leaf entry is not in canonical form")]
    NotCanonical,
    #[error("a leaf entry lacks {0} or has it of the wrong type")]
    Field(&'static str),
    #[error("a leaf entry of unknown kind {0:?}")]
    Kind(String),
}

/// The SHA-256 of a record's JSON form, canonically encoded.
pub fn record_sha256(record: &Value) -> Result<[u8; 32], canonical::NotCanonical> {
    Ok(sha256(&canonical::to_vec(record)?))
}

impl LeafEntry {
    fn value(&self) -> Value {
        match self {
            LeafEntry::Record { id, record_sha256 } | LeafEntry::Conflict { id, record_sha256 } => json!({
                "kind": self.kind(),
                "host_id": id.host_id,
                "boot_id": id.boot_id,
                "seq": id.seq,
                "time_unix_ns": id.time_unix_ns,
                "record_sha256": hex(record_sha256),
            }),
            LeafEntry::Retention {
                cutoff_unix_ns,
                time_unix_ns,
            } => json!({
                "kind": "retention",
                "cutoff_unix_ns": cutoff_unix_ns,
                "time_unix_ns": time_unix_ns,
            }),
        }
    }

    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            LeafEntry::Record { .. } => "record",
            LeafEntry::Conflict { .. } => "conflict",
            LeafEntry::Retention { .. } => "retention",
        }
    }

    /// The record this leaf is about (none for a retention cut-off).
    #[must_use]
    pub fn record(&self) -> Option<(&RecordId, &[u8; 32])> {
        match self {
            LeafEntry::Record { id, record_sha256 } | LeafEntry::Conflict { id, record_sha256 } => {
                Some((id, record_sha256))
            }
            LeafEntry::Retention { .. } => None,
        }
    }

    /// The entry's canonical bytes: what the leaf hashes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        canonical::to_vec(&self.value()).expect("entries hold integers and strings only")
    }

    /// The RFC 9162 leaf hash of this entry.
    #[must_use]
    pub fn leaf_hash(&self) -> Hash {
        tlog_tiles::record_hash(&self.encode())
    }

    /// Read an entry back; only its canonical form is accepted, so one entry has
    /// one encoding.
    pub fn decode(bytes: &[u8]) -> Result<LeafEntry, EntryError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| EntryError::NotJson(e.to_string()))?;
        let text = |name: &'static str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(EntryError::Field(name))
        };
        let number = |name: &'static str| {
            value
                .get(name)
                .and_then(Value::as_u64)
                .ok_or(EntryError::Field(name))
        };
        let kind = text("kind")?;
        let entry = match kind.as_str() {
            "record" | "conflict" => {
                let id = RecordId {
                    host_id: text("host_id")?,
                    boot_id: text("boot_id")?,
                    seq: number("seq")?,
                    time_unix_ns: number("time_unix_ns")?,
                };
                let record_sha256 = unhex(&text("record_sha256")?)
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .ok_or(EntryError::Field("record_sha256"))?;
                if kind == "record" {
                    LeafEntry::Record { id, record_sha256 }
                } else {
                    LeafEntry::Conflict { id, record_sha256 }
                }
            }
            "retention" => LeafEntry::Retention {
                cutoff_unix_ns: number("cutoff_unix_ns")?,
                time_unix_ns: number("time_unix_ns")?,
            },
            _ => return Err(EntryError::Kind(kind)),
        };
        if entry.encode() != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RecordId {
        RecordId {
            host_id: "web-1".into(),
            boot_id: "b0".into(),
            seq: 7,
            time_unix_ns: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn a_record_entry_is_one_canonical_line() {
        let entry = LeafEntry::Record {
            id: id(),
            record_sha256: [0xab; 32],
        };
        let text = String::from_utf8(entry.encode()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"boot_id":"b0","host_id":"web-1","kind":"record","record_sha256":"{}","seq":7,"time_unix_ns":1700000000000000000}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(LeafEntry::decode(text.as_bytes()).unwrap(), entry);
    }

    #[test]
    fn every_kind_round_trips_and_other_encodings_are_refused() {
        for entry in [
            LeafEntry::Conflict {
                id: id(),
                record_sha256: [1; 32],
            },
            LeafEntry::Retention {
                cutoff_unix_ns: 5,
                time_unix_ns: 9,
            },
        ] {
            assert_eq!(LeafEntry::decode(&entry.encode()).unwrap(), entry);
        }
        assert_eq!(
            LeafEntry::decode(br#"{ "cutoff_unix_ns":5,"kind":"retention","time_unix_ns":9}"#),
            Err(EntryError::NotCanonical)
        );
        assert_eq!(
            LeafEntry::decode(br#"{"kind":"pruned"}"#),
            Err(EntryError::Kind("pruned".into()))
        );
        assert!(matches!(LeafEntry::decode(b"\x00"), Err(EntryError::NotJson(_))));
    }

    #[test]
    fn the_leaf_hash_is_rfc_9162() {
        let entry = LeafEntry::Retention {
            cutoff_unix_ns: 1,
            time_unix_ns: 2,
        };
        let mut data = vec![0u8];
        data.extend_from_slice(&entry.encode());
        assert_eq!(entry.leaf_hash().0, sha256(&data));
    }

    #[test]
    fn a_changed_time_changes_the_leaf() {
        let a = LeafEntry::Record {
            id: id(),
            record_sha256: [0; 32],
        };
        let mut changed = id();
        changed.time_unix_ns = 0;
        let b = LeafEntry::Record {
            id: changed,
            record_sha256: [0; 32],
        };
        assert_ne!(a.leaf_hash(), b.leaf_hash());
    }
}
