//! Watchtower's domain types: what the server stores, indexes, checks and
//! reports, and what watchtowerctl shows, free of any wire encoding.
//!
//! The `watchtower.v1` gRPC contract (the watchtower-proto crate) has a message
//! for each of these types; watchtower-proto converts between the two
//! (`From` both ways, field by field, so a field added to one and not the other
//! does not compile). The gRPC edges convert on the way in and out, and the
//! store converts at its value encoding, so no protobuf type reaches the
//! server's store, rules, metrics or the CLI's rendering.
//!
//! | module       | types |
//! |--------------|-------|
//! | [`event`]    | [`Event`] and its [`Body`]: login attempts, sessions, execs, connects, verdicts |
//! | [`health`]   | [`AgentHealth`] and its parts, [`SpoolHealth`] |
//! | [`stored`]   | [`StoredEvent`], [`Receipt`], [`SessionSummary`], [`HostInfo`], [`EventFilter`], [`LiveItem`] |
//! | [`alert`]    | [`Alert`], [`SigmaMatch`] |
//! | [`log`]      | [`SignedCheckpoint`], [`Finding`], [`VerifyReport`] |
//! | [`kinds`]    | [`EventKind`], [`Outcome`], [`Verdict`]: stable codes and snake_case names |
//!
//! Every type serializes to the JSON that `watchtowerctl --json` and `export`
//! print; a stored record's canonical JSON is what its tamper-evidence leaf
//! commits to ([`StoredEvent::record_sha256`]).

#![allow(
    clippy::doc_markdown,
    clippy::large_enum_variant,
    reason = "the field docs are the proto's, naming values as people read them; bodies are moved, not copied, as the wire's are"
)]

pub mod alert;
pub mod event;
pub mod health;
pub mod json;
pub mod kinds;
pub mod log;
pub mod stored;

pub use alert::{Alert, SigmaMatch};
pub use event::{
    Body, Connect, Event, Exec, JournalWitness, KernelWitness, LoginAttempt, LoginVerdict, Process,
    SessionEnd, SessionStart,
};
pub use health::{AgentHealth, CaptureStart, JournalHealth, LogWitnessHealth, SpoolHealth, VerdictCounters};
pub use kinds::{EventKind, Outcome, Verdict};
pub use log::{Finding, SignedCheckpoint, VerifyReport};
pub use stored::{EventFilter, HostInfo, LiveItem, Receipt, SessionSummary, StoredEvent};
