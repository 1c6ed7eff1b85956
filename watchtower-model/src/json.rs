//! How JSON shows session keys and byte strings (enums show themselves, see
//! [`crate::kinds`]).

use serde::Serializer;

pub fn session<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{value:016x}"))
}

#[allow(clippy::ref_option, reason = "the signature serde's serialize_with asks for")]
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
    s.serialize_str(&watchtower_tlog::hex(value))
}

pub fn hex_list<S: Serializer>(values: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(|v| watchtower_tlog::hex(v)))
}

/// Bytes that are text (signed notes, log entries), shown as text.
pub fn text<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(value))
}
