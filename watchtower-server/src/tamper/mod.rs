//! Tamper evidence: every stored event is a leaf of an append-only Merkle log
//! ([`crate::merkle`]), whose heads the server signs with its Ed25519 key
//! ([`checkpoint`]); [`verify`] checks every stored record against its leaf and
//! the leaves against the signed heads. The log's leaves and checkpoints are
//! stored by [`crate::store`] (see [`crate::store::log`]), which uses only the
//! pure hashing of [`crate::merkle`], never this module.

pub mod checkpoint;
pub mod verify;

pub use checkpoint::CheckpointSigner;
pub use verify::verify;
