//! The format of Watchtower's tamper-evidence log, shared by the server that
//! writes it and by everyone who checks it (`watchtowerctl verify`, agents,
//! auditors with their own tools).
//!
//! The log is a Merkle tree as RFC 9162 defines it (SHA-256, leaf hash
//! `SHA-256(0x00 ‖ entry)`, node hash `SHA-256(0x01 ‖ left ‖ right)`), with its
//! inclusion and consistency proofs ([`tree`]). Its heads are signed as C2SP
//! `tlog-checkpoint` notes with an Ed25519 key ([`checkpoint`]), so that existing
//! transparency tooling and witnesses can read them.
//!
//! Each leaf's entry is one line of canonical JSON ([`canonical`], [`entry`]):
//!
//! - a stored record: `{"boot_id":…,"host_id":…,"kind":"record","record_sha256":…,"seq":…,"time_unix_ns":…}`,
//!   where `record_sha256` is the SHA-256 of the record's canonical JSON (the
//!   record as `watchtowerctl export` writes it: event, received time, labels);
//! - a second, different record with the same `(host, boot, seq)`: the same
//!   fields with `"kind":"conflict"` (kept as evidence, never dropped);
//! - a retention cut-off, appended before anything older is removed:
//!   `{"cutoff_unix_ns":…,"kind":"retention","time_unix_ns":…}`.
//!
//! An auditor recomputes a leaf from an export in a few lines of any language:
//! canonical JSON is `json.dumps(value, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)` in Python.

pub mod audit;
pub mod canonical;
pub mod checkpoint;
pub mod entry;
pub mod tree;

pub use audit::{Audit, AuditReport, Finding, StoredRecord};
pub use checkpoint::{CheckpointError, CheckpointSigner, CheckpointVerifier, TreeHead};
pub use entry::{EntryError, LeafEntry, RecordId};
pub use tlog_tiles::{self, Hash};
pub use tree::{MemoryLog, ProofError};

/// Lower-case hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Parse hex (either case, surrounding whitespace ignored).
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

/// SHA-256 of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
