//! The ingest service: one bidirectional stream per agent. A batch is checked
//! whole (every event must name the host in the agent's certificate), written in
//! one synced `RocksDB` write, and only then acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use watchtower_pki::Role;
use watchtower_proto::pb::ingest_server::Ingest;
use watchtower_proto::pb::{
    Ack, AgentMessage, LiveItem, ServerMessage, agent_message, live_item, server_message,
};

use super::blocking;
use super::status::{Refusal, refuse};
use crate::counters::ServerCounters;
use crate::facets;
use crate::metrics::Metrics;
use crate::now_unix_ns;
use crate::store::EventStore;
use crate::tls::authorize;

#[derive(Clone)]
pub struct IngestService {
    pub store: Arc<EventStore>,
    pub counters: Arc<ServerCounters>,
    pub metrics: Arc<Metrics>,
    pub live: broadcast::Sender<Arc<LiveItem>>,
    pub max_batch_events: usize,
    pub revocations: Arc<crate::tls::Revocations>,
}

/// What the agent's certificate says beyond its host: bound by the CA.
#[derive(Clone, Debug, Default)]
struct Certified {
    labels: std::collections::HashMap<String, String>,
    serial: String,
    not_after_unix_s: i64,
}

impl Certified {
    fn of<T>(request: &Request<T>) -> Certified {
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
    #[expect(
        clippy::too_many_lines,
        reason = "one match over the agent's message kinds, each step in order"
    )]
    async fn serve_agent(
        &self,
        host: &str,
        certified: &Certified,
        inbound: &mut Streaming<AgentMessage>,
        tx: &mpsc::Sender<Result<ServerMessage, Status>>,
    ) -> Result<(), Status> {
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
            // A certificate revoked while its stream is open: cut it at the next message
            // (heartbeats come every few seconds), nothing more stored.
            if !certified.serial.is_empty() && self.revocations.is_revoked(&certified.serial) {
                return Err(refuse(
                    &self.counters,
                    Refusal::Revoked {
                        host: host.to_owned(),
                        serial: certified.serial.clone(),
                    },
                ));
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
                }
                Some(agent_message::Msg::Heartbeat(beat)) => {
                    let store = self.store.clone();
                    let host = host.to_owned();
                    blocking(move || {
                        store.update_host(&host, |info| {
                            info.last_heartbeat_unix_ns = now_unix_ns();
                            info.spool = beat.spool;
                        })
                    })
                    .await?;
                }
                Some(agent_message::Msg::Batch(batch)) => {
                    if let Err(refusal) = self.check_batch(host, &batch.events) {
                        self.metrics.refused(batch.events.len());
                        return Err(refuse(&self.counters, refusal));
                    }
                    let store = self.store.clone();
                    let owned_host = host.to_owned();
                    let cutoff = self.counters.retention_cutoff.load(Relaxed);
                    let events = batch.events;
                    let labels = certified.labels.clone();
                    let appended = blocking(move || {
                        store.append_labelled(&owned_host, &labels, events, now_unix_ns(), cutoff)
                    })
                    .await?;
                    // Stored and duplicate counts live in the host records (Stats sums them).
                    self.counters.batches.fetch_add(1, Relaxed);
                    tracing::debug!(
                        host,
                        stored = appended.stored.len(),
                        duplicates = appended.duplicates,
                        expired = appended.expired,
                        last_seq = appended.last_seq,
                        "batch stored"
                    );
                    let ack = Ack {
                        batch_id: batch.batch_id,
                        stored: appended.stored.len() as u32,
                        duplicates: appended.duplicates + appended.expired,
                        last_seq: appended.last_seq,
                        first_leaf: if appended.stored.is_empty() {
                            0
                        } else {
                            appended.first_leaf
                        },
                        log_size: if appended.stored.is_empty() {
                            0
                        } else {
                            appended.log_size
                        },
                    };
                    self.metrics
                        .stored(&appended.stored, appended.duplicates + appended.expired);
                    for stored in appended.stored {
                        // No subscriber is not an error.
                        let _ = self.live.send(Arc::new(LiveItem {
                            item: Some(live_item::Item::Stored(stored)),
                        }));
                    }
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

    /// A batch is stored whole or not at all: within the size limit, every event
    /// valid and of the certified host.
    fn check_batch(&self, host: &str, events: &[watchtower_proto::pb::Event]) -> Result<(), Refusal> {
        if events.len() > self.max_batch_events {
            return Err(Refusal::BatchTooLarge {
                host: host.to_owned(),
                events: events.len(),
                max: self.max_batch_events,
            });
        }
        for event in events {
            facets::check(event, host).map_err(|invalid| Refusal::InvalidEvent {
                host: host.to_owned(),
                invalid,
            })?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let identity = authorize(&request, &[Role::Agent]).map_err(|status| {
            refuse(
                &self.counters,
                Refusal::NotAnAgent {
                    peer: request.remote_addr(),
                    denied: status.into(),
                },
            )
        })?;
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
}
