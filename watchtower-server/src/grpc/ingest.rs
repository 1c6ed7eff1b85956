//! The ingest service: one bidirectional stream per agent. A batch naming another
//! host than the agent's certificate, or over the event limit, is refused whole;
//! otherwise each event is checked on its own ([`facets::check`]: identity and
//! size limits), the invalid ones are refused one by one and named in the Ack
//! (the agent quarantines them), and the others are written in synced `RocksDB`
//! writes and only then acknowledged. An event of a kind this server does not
//! know is stored as such (kind unspecified).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use watchtower_model::{self as model, LiveItem};
use watchtower_pki::Role;
use watchtower_proto::pb::ingest_server::Ingest;
use watchtower_proto::pb::{
    self, Ack, AgentMessage, LeafProof, RefusedEvent, ServerMessage, WitnessReply, WitnessRequest,
    agent_message, server_message,
};

use super::status::{Refusal, lapsed, note, refuse};
use super::{blocking, proof};
use crate::counters::ServerCounters;
use crate::facets::{self, InvalidEvent};
use crate::metrics::Metrics;
use crate::now_unix_ns;
use crate::store::{EventStore, StoreError};
use crate::tls::{Standing, authorize};

#[derive(Clone)]
pub struct IngestService {
    pub store: Arc<EventStore>,
    pub counters: Arc<ServerCounters>,
    pub metrics: Arc<Metrics>,
    pub live: broadcast::Sender<Arc<LiveItem>>,
    /// The alert rules, handed each committed batch (none in the benchmark).
    pub alerts: Option<Arc<crate::alerts::AlertEngine>>,
    pub max_batch_events: usize,
    pub revocations: Arc<crate::tls::Revocations>,
    /// The verifier key of the checkpoints, told to agents that witness the log.
    pub verifier_key: String,
}

/// Leaves one witness reply proves, at most.
pub const MAX_WITNESS_LEAVES: usize = 1000;

/// What the agent's certificate says beyond its host: bound by the CA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Certified {
    pub labels: std::collections::HashMap<String, String>,
    pub serial: String,
    pub not_after_unix_s: i64,
}

impl Certified {
    pub(crate) fn of<T>(request: &Request<T>) -> Certified {
        request
            .peer_certs()
            .and_then(|certs| {
                certs
                    .first()
                    .and_then(|c| watchtower_pki::cert_facts(c.as_ref()).ok())
            })
            .map_or_else(Certified::default, |facts| Certified {
                labels: facts.labels.into_iter().collect(),
                serial: facts.serial,
                not_after_unix_s: facts.not_after_unix_s,
            })
    }
}

/// What a failed read of the agent's stream means: a refusal, or `None` when the
/// peer went away or the connection broke (not the agent's fault).
fn classify(host: &str, status: &Status) -> Option<Refusal> {
    let error = status.message().to_owned();
    let host = host.to_owned();
    match status.code() {
        // tonic: "decoded message length too large".
        Code::OutOfRange => Some(Refusal::Oversized { host, error }),
        // tonic-prost: "failed to decode Protobuf message".
        Code::Internal if status.message().contains("decode") => Some(Refusal::Malformed { host, error }),
        _ => None,
    }
}

impl IngestService {
    async fn serve_agent(
        &self,
        host: &str,
        certified: &Certified,
        inbound: &mut Streaming<AgentMessage>,
        tx: &mpsc::Sender<Result<ServerMessage, Status>>,
    ) -> Result<(), Status> {
        let standing = Standing {
            name: host.to_owned(),
            serial: certified.serial.clone(),
            not_after_unix_s: certified.not_after_unix_s,
        };
        loop {
            let message = match inbound.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(status) => {
                    if let Some(refusal) = classify(host, &status) {
                        return Err(refuse(&self.counters, refusal));
                    }
                    tracing::info!(host, error = %status.message(), "agent stream ended");
                    return Ok(());
                }
            };
            // A certificate revoked or expired while its stream is open: cut it at the
            // next message (heartbeats come every few seconds), nothing more stored.
            if let Some(why) = standing.lapsed(&self.revocations) {
                return Err(refuse(&self.counters, lapsed(&standing, why)));
            }
            match message.msg {
                None => {
                    return Err(refuse(
                        &self.counters,
                        Refusal::EmptyMessage {
                            host: host.to_owned(),
                        },
                    ));
                }
                Some(agent_message::Msg::Hello(hello)) => {
                    if hello.host_id != host {
                        return Err(refuse(
                            &self.counters,
                            Refusal::HelloForAnotherHost {
                                host: host.to_owned(),
                                claimed: hello.host_id,
                            },
                        ));
                    }
                    self.record_hello(host, hello, certified).await?;
                }
                Some(agent_message::Msg::Heartbeat(beat)) => {
                    self.record_heartbeat(host, beat).await?;
                }
                Some(agent_message::Msg::Batch(batch)) => {
                    let received = now_unix_ns();
                    let checked = self
                        .check_batch(host, batch.events, received)
                        .map_err(|refusal| refuse(&self.counters, refusal))?;
                    let ack = self
                        .store_checked(host, &certified.labels, batch.batch_id, checked, received)
                        .await?;
                    if tx
                        .send(Ok(ServerMessage {
                            msg: Some(server_message::Msg::Ack(ack)),
                        }))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Keep what an agent's Hello and certificate say in its host record.
    pub(crate) async fn record_hello(
        &self,
        host: &str,
        hello: pb::Hello,
        certified: &Certified,
    ) -> Result<(), Status> {
        let store = self.store.clone();
        let host = host.to_owned();
        let certified = certified.clone();
        blocking(move || {
            store.update_host(&host, |info| {
                info.boot_id = hello.boot_id;
                info.agent_version = hello.agent_version;
                info.labels = certified.labels;
                info.cert_serial = certified.serial;
                info.cert_not_after_unix_s = certified.not_after_unix_s;
                let now = now_unix_ns();
                info.last_heartbeat_unix_ns = now;
                if info.first_seen_unix_ns == 0 {
                    info.first_seen_unix_ns = now;
                }
            })
        })
        .await?;
        Ok(())
    }

    /// Keep a heartbeat's time and spool state in the host record (a spool state
    /// that fails its checks is counted and left out).
    pub(crate) async fn record_heartbeat(&self, host: &str, beat: pb::Heartbeat) -> Result<(), Status> {
        let mut spool = beat.spool.map(model::SpoolHealth::from);
        if let Some(invalid) = spool.as_ref().and_then(|s| facets::check_spool_health(s).err()) {
            // The heartbeat still counts; its spool state is not kept.
            note(
                &self.counters,
                &Refusal::InvalidHeartbeat {
                    host: host.to_owned(),
                    invalid,
                },
            );
            spool = None;
        }
        let store = self.store.clone();
        let host = host.to_owned();
        blocking(move || {
            store.update_host(&host, |info| {
                info.last_heartbeat_unix_ns = now_unix_ns();
                if spool.is_some() {
                    info.spool = spool;
                }
            })
        })
        .await?;
        Ok(())
    }

    /// Check a batch: refused whole when it is over the event limit or names
    /// another host than the certificate (nothing of it stored); otherwise each
    /// event on its own: the invalid ones are refused one by one (counted, logged,
    /// named in the Ack), the others are stored, those far ahead of the server's
    /// clock with the `ingest/time_ahead` note.
    pub(crate) fn check_batch(
        &self,
        host: &str,
        events: Vec<pb::Event>,
        received: u64,
    ) -> Result<Checked, Refusal> {
        check_batch(
            &self.metrics,
            &self.counters,
            self.max_batch_events,
            host,
            events,
            received,
        )
    }

    /// Store what a checked batch holds (one synced write per group of events
    /// with the same labels: the ones far ahead carry a note), publish it to
    /// live tails, and build the Ack.
    pub(crate) async fn store_checked(
        &self,
        host: &str,
        labels: &std::collections::HashMap<String, String>,
        batch_id: u64,
        checked: Checked,
        received: u64,
    ) -> Result<Ack, Status> {
        let Checked {
            ok,
            ahead,
            refused,
            last_seq,
        } = checked;
        self.metrics.refused(refused.len());
        self.metrics.time_ahead(ahead.len());
        let mut ahead_labels = labels.clone();
        ahead_labels.insert(TIME_AHEAD_NOTE.to_owned(), "true".to_owned());
        let groups: Vec<_> = [(labels.clone(), ok), (ahead_labels, ahead)]
            .into_iter()
            .filter(|(_, events)| !events.is_empty())
            .collect();
        let store = self.store.clone();
        let owned_host = host.to_owned();
        let cutoff = self.counters.retention_cutoff.load(Relaxed);
        let parts = blocking(move || {
            groups
                .into_iter()
                .map(|(labels, events)| store.append_labelled(&owned_host, &labels, events, received, cutoff))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        // Stored and duplicate counts live in the host records (Stats sums them).
        self.counters.batches.fetch_add(1, Relaxed);
        let mut ack = Ack {
            batch_id,
            last_seq,
            refused,
            ..Ack::default()
        };
        let mut stored_events = Vec::new();
        let mut conflicts = Vec::new();
        for appended in parts {
            let again = appended.duplicates + appended.expired;
            ack.duplicates += again;
            if !appended.stored.is_empty() {
                if stored_events.is_empty() {
                    ack.first_leaf = appended.first_leaf;
                }
                ack.log_size = appended.log_size;
            }
            self.metrics.stored(&appended.stored, again);
            if !appended.conflicts.is_empty() {
                tracing::error!(
                    host,
                    conflicts = appended.conflicts.len(),
                    "events with the id of stored ones and other content: kept as evidence, the first records stay"
                );
            }
            ack.receipts
                .extend(appended.receipts.into_iter().map(pb::Receipt::from));
            stored_events.extend(appended.stored);
            conflicts.extend(appended.conflicts);
        }
        ack.stored = u32::try_from(stored_events.len()).unwrap_or(u32::MAX);
        tracing::debug!(
            host,
            stored = ack.stored,
            duplicates = ack.duplicates,
            refused = ack.refused.len(),
            last_seq,
            "batch stored"
        );
        // Receipts are in leaf order, naming stored events and conflicts in turn.
        let mut stored_events = stored_events.into_iter();
        let mut conflicts = conflicts.into_iter();
        let mut committed = Vec::with_capacity(ack.receipts.len());
        for receipt in &ack.receipts {
            let item = if receipt.conflict {
                conflicts.next().map(LiveItem::Conflict)
            } else {
                stored_events.next().map(LiveItem::Stored)
            };
            let Some(item) = item else { break };
            let item = Arc::new(item);
            if !receipt.conflict {
                // No subscriber is not an error.
                let _ = self.live.send(item.clone());
            }
            committed.push((receipt.leaf_index, item));
        }
        if let Some(alerts) = &self.alerts {
            alerts.committed(committed);
        }
        Ok(ack)
    }

    /// The caller must be an agent.
    fn agent<T>(&self, request: &Request<T>) -> Result<watchtower_pki::Identity, Status> {
        authorize(request, &[Role::Agent]).map_err(|status| {
            refuse(
                &self.counters,
                Refusal::NotAnAgent {
                    peer: request.remote_addr(),
                    denied: status.into(),
                },
            )
        })
    }
}

/// A witness request over [`MAX_WITNESS_LEAVES`] (leaves and events together).
pub(crate) fn witness_too_large(host: &str, request: &WitnessRequest) -> Option<Refusal> {
    let asked = request.leaves.len() + request.receipts_for.len();
    (asked > MAX_WITNESS_LEAVES).then(|| Refusal::WitnessTooLarge {
        host: host.to_owned(),
        leaves: asked,
        max: MAX_WITNESS_LEAVES,
    })
}

/// The latest signed checkpoint, proven to extend the one `host`'s agent kept,
/// the receipts of the events it asks for (those logged and kept by event), and
/// the inclusion proofs of the leaves it names and of those receipts' leaves that
/// the checkpoint covers; `None` while the log has not been signed.
pub(crate) fn witness(
    store: &EventStore,
    verifier_key: String,
    host: &str,
    request: &WitnessRequest,
) -> Result<Option<WitnessReply>, StoreError> {
    let Some(checkpoint) = store.latest_checkpoint()? else {
        return Ok(None);
    };
    let size = checkpoint.size;
    let consistency = (request.kept_size > 0 && request.kept_size < size)
        .then(|| store.consistency_proof(request.kept_size, size))
        .transpose()?
        .map(proof);
    let events: Vec<(String, u64)> = request
        .receipts_for
        .iter()
        .map(|e| (e.boot_id.clone(), e.seq))
        .collect();
    let receipts = if events.is_empty() {
        Vec::new()
    } else {
        store.receipts_of(host, &events)?
    };
    let leaves = request
        .leaves
        .iter()
        .copied()
        .chain(receipts.iter().map(|r| r.leaf_index));
    let mut inclusions = Vec::new();
    for leaf_index in leaves.filter(|&leaf| leaf < size) {
        inclusions.push(LeafProof {
            leaf_index,
            hashes: proof(store.inclusion_proof(leaf_index, size)?).hashes,
        });
    }
    Ok(Some(WitnessReply {
        checkpoint: Some(checkpoint.into()),
        verifier_key,
        consistency,
        inclusions,
        receipts: receipts.into_iter().map(Into::into).collect(),
    }))
}

/// [`IngestService::check_batch`], for the front door too.
pub(crate) fn check_batch(
    metrics: &Metrics,
    counters: &ServerCounters,
    max_batch_events: usize,
    host: &str,
    events: Vec<pb::Event>,
    received: u64,
) -> Result<Checked, Refusal> {
    if events.len() > max_batch_events {
        return Err(Refusal::BatchTooLarge {
            host: host.to_owned(),
            events: events.len(),
            max: max_batch_events,
        });
    }
    if let Some(other) = events.iter().find(|e| e.host_id != host) {
        return Err(Refusal::InvalidEvent {
            host: host.to_owned(),
            invalid: InvalidEvent::HostMismatch {
                seq: other.seq,
                claimed: other.host_id.clone(),
                certified: host.to_owned(),
            },
        });
    }
    let mut checked = Checked {
        last_seq: events.iter().map(|e| e.seq).max().unwrap_or(0),
        ..Checked::default()
    };
    for (position, event) in events.into_iter().enumerate() {
        let encoded_bytes = event.encoded_len();
        let event = model::Event::from(event);
        match facets::check(&event, encoded_bytes, host) {
            Ok(()) if facets::time_ahead(&event, received) => checked.ahead.push(event),
            Ok(()) => checked.ok.push(event),
            Err(invalid) => {
                metrics.refused_event(invalid.reason());
                checked.refused.push(RefusedEvent {
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                    seq: event.seq,
                    reason: invalid.reason().to_owned(),
                    detail: invalid.to_string(),
                });
                note(
                    counters,
                    &Refusal::EventRefused {
                        host: host.to_owned(),
                        position,
                        invalid,
                    },
                );
            }
        }
    }
    Ok(checked)
}

/// The server's note on a stored event whose time is far ahead of its receive
/// time (see `StoredEvent.labels` in the proto).
pub const TIME_AHEAD_NOTE: &str = "ingest/time_ahead";

/// A batch after [`IngestService::check_batch`].
#[derive(Default)]
pub(crate) struct Checked {
    pub(crate) ok: Vec<model::Event>,
    /// Valid, but far ahead of the server's clock: stored with a note.
    pub(crate) ahead: Vec<model::Event>,
    pub(crate) refused: Vec<RefusedEvent>,
    /// The highest seq in the batch, refused events included.
    pub(crate) last_seq: u64,
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let identity = self.agent(&request)?;
        let host = identity.name;
        let certified = Certified::of(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            this.counters.connect(&host);
            tracing::info!(host, "agent connected");
            if let Err(status) = this.serve_agent(&host, &certified, &mut inbound, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
            this.counters.disconnect(&host);
            tracing::info!(host, "agent disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn witness(&self, request: Request<WitnessRequest>) -> Result<Response<WitnessReply>, Status> {
        let identity = self.agent(&request)?;
        if let Some(standing) = Standing::of(&request)
            && let Some(why) = standing.lapsed(&self.revocations)
        {
            return Err(refuse(&self.counters, lapsed(&standing, why)));
        }
        let request = request.into_inner();
        if let Some(refusal) = witness_too_large(&identity.name, &request) {
            return Err(refuse(&self.counters, refusal));
        }
        let store = self.store.clone();
        let verifier_key = self.verifier_key.clone();
        let host = identity.name;
        match blocking(move || witness(&store, verifier_key, &host, &request)).await? {
            Some(reply) => Ok(Response::new(reply)),
            None => Err(Status::unavailable("the log has not been signed yet")),
        }
    }
}
