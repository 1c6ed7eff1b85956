//! The one place where a failure at the gRPC edge becomes a [`Status`].
//!
//! - A [`Refusal`] (the peer's identity, or what it sent) is counted under its
//!   reason in [`ServerCounters`], logged once and answered by [`refuse`].
//! - A [`StoreError`] becomes a status by `From` (so `?` works), logged once,
//!   with a code a client can act on: `UNAVAILABLE` when `RocksDB` is busy or its
//!   I/O failed (an agent keeps the batch and retries), `DATA_LOSS` for a damaged
//!   record (retrying cannot help), `INVALID_ARGUMENT` for a bad request,
//!   `INTERNAL` for the server's own mistakes.
//!
//! | refusal                 | reason counted    | code                 |
//! |-------------------------|-------------------|----------------------|
//! | not an agent            | `not_an_agent`    | `UNAUTHENTICATED` (no identity) or `PERMISSION_DENIED` (another role) |
//! | not a reader            | `not_a_reader`    | the same             |
//! | certificate revoked     | `revoked`         | `PERMISSION_DENIED` (on every call, and every second of a live stream) |
//! | certificate expired     | `expired`         | `UNAUTHENTICATED` (the same)     |
//! | Hello for another host  | `host_mismatch`   | `PERMISSION_DENIED`  |
//! | event for another host  | `host_mismatch`   | `PERMISSION_DENIED` (the whole batch) |
//! | invalid event           | `invalid_event`   | none: that event is named in the Ack's `refused` (with its precise reason, counted by reason in `watchtower_ingest_refused_events_total`), the rest of the batch is stored |
//! | heartbeat with an invalid spool state | `invalid_heartbeat` | none: the heartbeat counts, its spool state is not kept |
//! | empty or undecodable message | `malformed`  | `INVALID_ARGUMENT`   |
//! | message over the size limit  | `oversized`  | `RESOURCE_EXHAUSTED` |
//! | batch over the event limit   | `batch_too_large` | `RESOURCE_EXHAUSTED` |
//! | witness request over the leaf limit | `witness_too_large` | `INVALID_ARGUMENT` |

use std::net::SocketAddr;

use rocksdb::ErrorKind;
use tonic::{Code, Status};

use crate::counters::ServerCounters;
use crate::facets::InvalidEvent;
use crate::store::StoreError;

/// Why [`crate::tls::authorize`] turned a caller away: no identity
/// (`UNAUTHENTICATED`) or another role (`PERMISSION_DENIED`), and what it said.
#[derive(Debug)]
pub struct Denied {
    pub code: Code,
    pub message: String,
}

impl From<Status> for Denied {
    fn from(status: Status) -> Denied {
        Denied {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Why the server refused a call or a stream.
#[derive(Debug)]
pub enum Refusal {
    /// The ingest caller is not an agent: `authorize`'s answer.
    NotAnAgent {
        peer: Option<SocketAddr>,
        denied: Denied,
    },
    /// The query caller is not a reader or an admin: `authorize`'s answer.
    NotAReader {
        peer: Option<SocketAddr>,
        denied: Denied,
    },
    /// The caller of an admin-only call (the server's own audit) is not an admin.
    NotAnAdmin {
        peer: Option<SocketAddr>,
        denied: Denied,
    },
    /// The caller's certificate was revoked (while its connection was open).
    Revoked { host: String, serial: String },
    /// The caller's certificate expired while its connection was open.
    Expired { host: String, not_after_unix_s: i64 },
    /// The agent's Hello names another host than its certificate.
    HelloForAnotherHost { host: String, claimed: String },
    /// An event of a batch makes the whole batch unacceptable (it names another
    /// host): nothing of the batch is stored.
    InvalidEvent { host: String, invalid: InvalidEvent },
    /// One event of a batch cannot be stored; the others are. Not a status: the
    /// Ack names it.
    EventRefused {
        host: String,
        position: usize,
        invalid: InvalidEvent,
    },
    /// A heartbeat's spool state is over the limits: not kept. Not a status.
    InvalidHeartbeat { host: String, invalid: InvalidEvent },
    /// A batch holds more events than allowed.
    BatchTooLarge { host: String, events: usize, max: usize },
    /// An agent message without content.
    EmptyMessage { host: String },
    /// A message that is not protobuf.
    Malformed { host: String, error: String },
    /// A message over the decoding limit.
    Oversized { host: String, error: String },
    /// A witness request for more leaves than one reply proves.
    WitnessTooLarge { host: String, leaves: usize, max: usize },
}

impl Refusal {
    /// The reason it is counted under.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAnAgent { .. } => "not_an_agent",
            Refusal::NotAReader { .. } => "not_a_reader",
            Refusal::NotAnAdmin { .. } => "not_an_admin",
            Refusal::Revoked { .. } => "revoked",
            Refusal::Expired { .. } => "expired",
            Refusal::HelloForAnotherHost { .. }
            | Refusal::InvalidEvent {
                invalid: InvalidEvent::HostMismatch { .. },
                ..
            } => "host_mismatch",
            Refusal::InvalidEvent { .. } | Refusal::EventRefused { .. } => "invalid_event",
            Refusal::InvalidHeartbeat { .. } => "invalid_heartbeat",
            Refusal::BatchTooLarge { .. } => "batch_too_large",
            Refusal::EmptyMessage { .. } | Refusal::Malformed { .. } => "malformed",
            Refusal::Oversized { .. } => "oversized",
            Refusal::WitnessTooLarge { .. } => "witness_too_large",
        }
    }

    fn log(&self) {
        match self {
            Refusal::NotAnAgent { peer, denied } => {
                tracing::warn!(error = %denied.message, ?peer, "refused an ingest stream");
            }
            Refusal::NotAReader { peer, denied } => {
                tracing::warn!(error = %denied.message, ?peer, "refused a query");
            }
            Refusal::NotAnAdmin { peer, denied } => {
                tracing::warn!(error = %denied.message, ?peer, "refused an admin-only call");
            }
            Refusal::Revoked { host, serial } => {
                tracing::error!(host, %serial, "refused a call with a revoked certificate (its connection was open)");
            }
            Refusal::Expired {
                host,
                not_after_unix_s,
            } => {
                tracing::warn!(
                    host,
                    not_after_unix_s,
                    "refused a call with an expired certificate (its connection was open)"
                );
            }
            Refusal::HelloForAnotherHost { host, claimed } => {
                tracing::error!(
                    host,
                    claimed,
                    "agent certificate names one host, its Hello another: refused"
                );
            }
            Refusal::InvalidEvent { host, invalid } => {
                if let InvalidEvent::HostMismatch { .. } = invalid {
                    tracing::error!(host, error = %invalid, "refused a batch claiming another host; nothing of it stored");
                } else {
                    tracing::warn!(host, error = %invalid, "refused a batch with an invalid event; nothing of it stored");
                }
            }
            Refusal::EventRefused {
                host,
                position,
                invalid,
            } => {
                tracing::warn!(
                    host,
                    position,
                    reason = invalid.reason(),
                    error = %invalid,
                    "refused one event of a batch (the agent quarantines it); the rest of the batch is stored"
                );
            }
            Refusal::InvalidHeartbeat { host, invalid } => {
                tracing::warn!(host, error = %invalid, "a heartbeat's spool state is over the limits: not kept");
            }
            Refusal::BatchTooLarge { host, events, .. } => {
                tracing::warn!(host, events, "rejected a batch over the limit");
            }
            Refusal::WitnessTooLarge { host, leaves, .. } => {
                tracing::warn!(host, leaves, "rejected a witness request over the limit");
            }
            Refusal::EmptyMessage { host } => tracing::warn!(host, "rejected an empty agent message"),
            Refusal::Malformed { host, error } | Refusal::Oversized { host, error } => {
                tracing::warn!(
                    host,
                    reason = self.reason(),
                    error,
                    "rejected a message from the agent"
                );
            }
        }
    }

    fn into_status(self) -> Status {
        match self {
            Refusal::NotAnAgent { denied, .. }
            | Refusal::NotAReader { denied, .. }
            | Refusal::NotAnAdmin { denied, .. } => Status::new(denied.code, denied.message),
            Refusal::Revoked { .. } => Status::permission_denied("this certificate has been revoked"),
            Refusal::Expired { .. } => Status::unauthenticated("this certificate has expired"),
            Refusal::HelloForAnotherHost { host, claimed } => {
                Status::permission_denied(format!("this certificate is for host {host:?}, not {claimed:?}"))
            }
            Refusal::InvalidEvent { invalid, .. }
            | Refusal::EventRefused { invalid, .. }
            | Refusal::InvalidHeartbeat { invalid, .. } => {
                if let InvalidEvent::HostMismatch { .. } = invalid {
                    Status::permission_denied(invalid.to_string())
                } else {
                    Status::invalid_argument(invalid.to_string())
                }
            }
            Refusal::BatchTooLarge { events, max, .. } => {
                Status::resource_exhausted(format!("a batch holds at most {max} events, this one {events}"))
            }
            Refusal::WitnessTooLarge { leaves, max, .. } => Status::invalid_argument(format!(
                "a witness request asks for at most {max} leaves, this one {leaves}"
            )),
            Refusal::EmptyMessage { .. } => Status::invalid_argument("empty agent message"),
            Refusal::Malformed { error, .. } => {
                Status::invalid_argument(format!("malformed message: {error}"))
            }
            Refusal::Oversized { error, .. } => Status::resource_exhausted(error),
        }
    }
}

/// The refusal for a certificate that lapsed while its connection was open.
#[must_use]
pub fn lapsed(standing: &crate::tls::Standing, lapsed: crate::tls::Lapsed) -> Refusal {
    match lapsed {
        crate::tls::Lapsed::Revoked => Refusal::Revoked {
            host: standing.name.clone(),
            serial: standing.serial.clone(),
        },
        crate::tls::Lapsed::Expired => Refusal::Expired {
            host: standing.name.clone(),
            not_after_unix_s: standing.not_after_unix_s,
        },
    }
}

/// Count a refusal, log it, and answer it: with [`note`], the only place
/// refusals are counted.
#[must_use]
pub fn refuse(counters: &ServerCounters, refusal: Refusal) -> Status {
    note(counters, &refusal);
    refusal.into_status()
}

/// Count a refusal of part of a message (one event of a batch, a heartbeat's
/// spool state) and log it; the stream goes on.
pub fn note(counters: &ServerCounters, refusal: &Refusal) {
    counters.reject(refusal.reason());
    refusal.log();
}

/// The code a store failure is answered with.
#[must_use]
pub fn store_code(error: &StoreError) -> Code {
    match error {
        StoreError::BadPageToken | StoreError::SessionWithoutHost => Code::InvalidArgument,
        StoreError::Log(
            watchtower_tlog::ProofError::OutOfRange { .. } | watchtower_tlog::ProofError::Shrank { .. },
        ) => Code::OutOfRange,
        StoreError::Corrupt(..)
        | StoreError::Log(_)
        | StoreError::LogSize
        | StoreError::AlertCursor
        | StoreError::ReceiptIndex
        | StoreError::OldFormat(..) => Code::DataLoss,
        StoreError::Db(e) => db_code(&e.kind()),
    }
}

/// The code a `RocksDB` failure of `kind` is answered with.
fn db_code(kind: &ErrorKind) -> Code {
    match kind {
        ErrorKind::Corruption => Code::DataLoss,
        ErrorKind::IOError
        | ErrorKind::Busy
        | ErrorKind::TryAgain
        | ErrorKind::TimedOut
        | ErrorKind::Aborted
        | ErrorKind::Incomplete
        | ErrorKind::ShutdownInProgress
        | ErrorKind::Expired
        | ErrorKind::Unknown => Code::Unavailable,
        ErrorKind::NotFound
        | ErrorKind::NotSupported
        | ErrorKind::InvalidArgument
        | ErrorKind::MergeInProgress
        | ErrorKind::CompactionTooLarge
        | ErrorKind::ColumnFamilyDropped => Code::Internal,
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        let code = store_code(&error);
        if code == Code::InvalidArgument {
            tracing::debug!(error = %error, "refused a request the store cannot answer");
        } else {
            tracing::error!(error = %error, ?code, "a store call failed");
        }
        Status::new(code, error.to_string())
    }
}

/// A blocking store task that panicked or was cancelled.
#[must_use]
pub fn task_failed(error: &tokio::task::JoinError) -> Status {
    tracing::error!(error = %error, "a store task failed");
    Status::internal(format!("store task failed: {error}"))
}

/// A live tail that fell `missed` items behind and is cut off.
#[must_use]
pub fn fell_behind(missed: u64) -> Status {
    Status::resource_exhausted(format!(
        "this subscriber fell {missed} events behind and was cut off; \
         subscribe again and query the gap with QueryEvents"
    ))
}

/// A front door's batch that JetStream did not confirm (fleet mode): the agent
/// keeps it and sends it again. `RESOURCE_EXHAUSTED` when the stream is full
/// (its indexers are behind or down), `UNAVAILABLE` otherwise.
#[must_use]
pub fn unconfirmed(host: &str, full: bool, error: &str) -> Status {
    tracing::warn!(
        host,
        full,
        error,
        "the ingest stream did not confirm a batch: the agent keeps it"
    );
    if full {
        // UNAVAILABLE, not RESOURCE_EXHAUSTED: agents read the latter as "this batch
        // is too large" and send smaller ones, down to quarantining single events.
        // A full stream is the fleet's state, not the batch's: retry it as it is.
        Status::unavailable(format!(
            "the fleet's ingest stream is full (its indexers are behind): batch kept by the agent, \
             retry later ({error})"
        ))
    } else {
        Status::unavailable(format!(
            "the fleet's ingest stream did not confirm the batch: {error}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_stream_is_retried_later_not_taken_for_a_batch_too_large() {
        let full = unconfirmed("web-1", true, "maximum bytes exceeded");
        assert_eq!(full.code(), Code::Unavailable);
        assert!(
            full.message().contains("ingest stream is full"),
            "{}",
            full.message()
        );
        let lost = unconfirmed("web-1", false, "timed out");
        assert_eq!(lost.code(), Code::Unavailable);
        assert!(!lost.message().contains("full"), "{}", lost.message());
    }

    #[test]
    fn each_failure_has_its_code() {
        assert_eq!(store_code(&StoreError::BadPageToken), Code::InvalidArgument);
        assert_eq!(store_code(&StoreError::SessionWithoutHost), Code::InvalidArgument);
        let corrupt = StoreError::Corrupt(
            <watchtower_proto::pb::StoredEvent as prost::Message>::decode(&[0xff][..]).unwrap_err(),
            "events",
        );
        assert_eq!(store_code(&corrupt), Code::DataLoss);
        assert_eq!(db_code(&ErrorKind::IOError), Code::Unavailable);
        assert_eq!(db_code(&ErrorKind::Busy), Code::Unavailable);
        assert_eq!(db_code(&ErrorKind::Corruption), Code::DataLoss);
        assert_eq!(db_code(&ErrorKind::InvalidArgument), Code::Internal);
        let counters = ServerCounters::default();
        let status = refuse(
            &counters,
            Refusal::BatchTooLarge {
                host: "web-1".into(),
                events: 11,
                max: 10,
            },
        );
        assert_eq!(status.code(), Code::ResourceExhausted);
        let status = refuse(
            &counters,
            Refusal::InvalidEvent {
                host: "web-1".into(),
                invalid: InvalidEvent::HostMismatch {
                    seq: 1,
                    claimed: "db-1".into(),
                    certified: "web-1".into(),
                },
            },
        );
        assert_eq!(status.code(), Code::PermissionDenied);
        let status = refuse(&counters, Refusal::EmptyMessage { host: "web-1".into() });
        assert_eq!(status.code(), Code::InvalidArgument);
        let counted = counters.rejected();
        assert_eq!(
            (
                counted["batch_too_large"],
                counted["host_mismatch"],
                counted["malformed"]
            ),
            (1, 1, 1)
        );
    }
}
