//! The agent's stages, each a task, connected by bounded channels:
//!
//! ```text
//! reader ──┐ (Input)            (Assembled)              (Event)
//! journal ─┼──────────▶ assembler ──────────▶ reconciler ─────────▶ stdout
//! ticker ──┘                                                  └──▶ spool_writer ··▶ sender
//! ```
//!
//! - [`reader`]: the kernel's two ring buffers, decoded ([`crate::decode`]) and merged in time order;
//! - [`crate::journal`]: the journal's logins;
//! - [`ticker`]: the clock (health records, the reconciliation window);
//! - [`probe_keeper`]: the PAM probes attached to a libpam replaced on disk, and
//!   the pinned probes' description kept current ([`crate::pins`]);
//! - [`assembler`]: kernel records into events ([`crate::assemble`]);
//! - [`reconciler`]: stamps every event ([`crate::stamp`]), cross-checks logins
//!   with the journal ([`crate::reconcile`]) and builds the health records
//!   ([`crate::health`]);
//! - [`stdout`]: JSON lines; or [`spool_writer`]: the on-disk spool
//!   ([`crate::spool`]), which [`sender`] delivers to the server over gRPC,
//!   keeping the receipts of its Acks, which [`log_witness`] has the server prove
//!   in its signed log ([`crate::log_witness`]).
//!
//! A slow output back-pressures the stages before it and the reader; the ring
//! buffer then fills and the kernel counts what it cannot take: loss is never
//! silent.

pub mod assembler;
pub mod log_witness;
pub mod probe_keeper;
pub mod reader;
pub mod reconciler;
pub mod sender;
pub mod spool_writer;
pub mod stdout;
pub mod ticker;
