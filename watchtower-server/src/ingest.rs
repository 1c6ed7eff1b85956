//! The ingest service: one bidirectional stream per agent. A batch is checked
//! whole (every event must name the host in the agent's certificate), written in
//! one synced `RocksDB` write, and only then acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use watchtower_pki::Role;
use watchtower_proto::ingest_server::Ingest;
use watchtower_proto::{
    Ack, AgentMessage, LiveItem, ServerMessage, agent_message, live_item, server_message,
};

use crate::counters::ServerCounters;
use crate::facets::{self, InvalidEvent};
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

/// What a failed read of the agent's stream means.
fn classify(status: &Status) -> Option<&'static str> {
    match status.code() {
        // tonic: "decoded message length too large".
        Code::OutOfRange => Some("oversized"),
        // tonic-prost: "failed to decode Protobuf message".
        Code::Internal if status.message().contains("decode") => Some("malformed"),
        // The peer went away or the connection broke: not the agent's fault.
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
                    if let Some(reason) = classify(&status) {
                        self.counters.reject(reason);
                        tracing::warn!(host, reason, error = %status.message(), "rejected a message from the agent");
                        return Err(if reason == "oversized" {
                            Status::resource_exhausted(status.message().to_owned())
                        } else {
                            Status::invalid_argument(format!("malformed message: {}", status.message()))
                        });
                    }
                    tracing::info!(host, error = %status.message(), "agent stream ended");
                    return Ok(());
                }
            };
            // A certificate revoked while its stream is open: cut it at the next message
            // (heartbeats come every few seconds), nothing more stored.
            if !certified.serial.is_empty() && self.revocations.is_revoked(&certified.serial) {
                self.counters.reject("revoked");
                tracing::error!(host, serial = %certified.serial, "the agent's certificate was revoked: stream closed");
                return Err(Status::permission_denied("this certificate has been revoked"));
            }
            match message.msg {
                None => {
                    self.counters.reject("malformed");
                    tracing::warn!(host, "rejected an empty agent message");
                    return Err(Status::invalid_argument("empty agent message"));
                }
                Some(agent_message::Msg::Hello(hello)) => {
                    if hello.host_id != host {
                        self.counters.reject("host_mismatch");
                        tracing::error!(host, claimed = %hello.host_id, "agent certificate names one host, its Hello another: refused");
                        return Err(Status::permission_denied(format!(
                            "this certificate is for host {host:?}, not {:?}",
                            hello.host_id
                        )));
                    }
                    let store = self.store.clone();
                    let host = host.to_owned();
                    let certified = certified.clone();
                    spawn_store(move || {
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
                    spawn_store(move || {
                        store.update_host(&host, |info| {
                            info.last_heartbeat_unix_ns = now_unix_ns();
                            info.spool = beat.spool;
                        })
                    })
                    .await?;
                }
                Some(agent_message::Msg::Batch(batch)) => {
                    if batch.events.len() > self.max_batch_events {
                        self.counters.reject("batch_too_large");
                        self.metrics.refused(batch.events.len());
                        tracing::warn!(
                            host,
                            events = batch.events.len(),
                            "rejected a batch over the limit"
                        );
                        return Err(Status::invalid_argument(format!(
                            "a batch holds at most {} events, this one {}",
                            self.max_batch_events,
                            batch.events.len()
                        )));
                    }
                    for event in &batch.events {
                        if let Err(invalid) = facets::check(event, host) {
                            self.metrics.refused(batch.events.len());
                            return Err(self.refuse(host, &invalid));
                        }
                    }
                    let store = self.store.clone();
                    let owned_host = host.to_owned();
                    let cutoff = self.counters.retention_cutoff.load(Relaxed);
                    let events = batch.events;
                    let labels = certified.labels.clone();
                    let appended = spawn_store(move || {
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

    fn refuse(&self, host: &str, invalid: &InvalidEvent) -> Status {
        if let InvalidEvent::HostMismatch { .. } = invalid {
            self.counters.reject("host_mismatch");
            tracing::error!(host, error = %invalid, "refused a batch claiming another host; nothing of it stored");
            Status::permission_denied(invalid.to_string())
        } else {
            self.counters.reject("invalid_event");
            tracing::warn!(host, error = %invalid, "refused a batch with an invalid event; nothing of it stored");
            Status::invalid_argument(invalid.to_string())
        }
    }
}

/// Run a store call off the async threads; a store failure is `unavailable` (the
/// agent keeps the batch and retries).
async fn spawn_store<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "store write failed");
            Err(Status::unavailable(format!("store write failed: {e}")))
        }
        Err(e) => Err(Status::internal(format!("store task failed: {e}"))),
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let identity = authorize(&request, &[Role::Agent]).inspect_err(|status| {
            self.counters.reject("not_an_agent");
            tracing::warn!(error = %status.message(), peer = ?request.remote_addr(), "refused an ingest stream");
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
