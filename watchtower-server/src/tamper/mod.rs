//! Tamper evidence: every stored record is a leaf of an append-only RFC 9162
//! Merkle log (its format is the watchtower-tlog crate's), whose heads the server
//! signs as C2SP checkpoints with its Ed25519 key ([`checkpoint`]); [`verify`]
//! is the server's own audit of the store on one snapshot. The log is stored by
//! [`crate::store`] (see [`crate::store::log`]), which never calls this module.

pub mod checkpoint;
pub mod verify;

pub use checkpoint::CheckpointSigner;
pub use verify::verify;
