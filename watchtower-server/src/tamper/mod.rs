//! Tamper evidence: every stored event is a leaf of an append-only Merkle log
//! ([`merkle`]), whose heads the server signs with its Ed25519 key
//! ([`checkpoint`]); [`verify`] checks every stored record against its leaf and
//! the leaves against the signed heads. The log's leaves and checkpoints are
//! stored by [`crate::store`] (see [`crate::store::log`]); [`merkle`] is pure
//! hashing and is the only part the store itself uses.

pub mod checkpoint;
pub mod merkle;
pub mod verify;

pub use checkpoint::CheckpointSigner;
pub use verify::verify;
