//! The front door: an agent's ingest stream, checked as a single server checks
//! it, published to the JetStream stream of its host's shard. It holds no state:
//! any number of front doors can take agents, and an agent that loses one
//! connects to another.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, publish::PublishAck};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use watchtower_pki::Role;
use watchtower_proto::pb::ingest_server::{Ingest, IngestServer};
use watchtower_proto::pb::{
    self, Ack, AgentMessage, ServerMessage, WitnessReply, WitnessRequest, agent_message, server_message,
};

use super::{Envelope, Kind};
use crate::config::{FleetSection, ServerConfig};
use crate::counters::ServerCounters;
use crate::grpc::ingest::{Certified, check_batch};
use crate::grpc::status::{Refusal, lapsed, refuse, unconfirmed};
use crate::metrics::Metrics;
use crate::now_unix_ns;
use crate::tls::{self, Revocations, Standing, authorize};

/// How long a front door waits for JetStream to confirm a batch.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct FrontDoor {
    pub js: jetstream::Context,
    pub fleet: FleetSection,
    pub counters: Arc<ServerCounters>,
    pub metrics: Arc<Metrics>,
    pub max_batch_events: usize,
    pub revocations: Arc<Revocations>,
}

/// What became of a batch's publishes, in events.
#[derive(Default)]
struct Confirmed {
    stored: u32,
    duplicates: u32,
}

impl FrontDoor {
    /// Publish one message of `host` on its shard's subject; the future confirms it.
    async fn publish(
        &self,
        envelope: &Envelope,
        id: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<jetstream::context::PublishAckFuture, Status> {
        let subject = super::subject(&self.fleet, super::shard_of(&envelope.host, self.fleet.shards));
        self.js
            .publish_with_headers(subject, envelope.headers(id), payload.into())
            .await
            .map_err(|e| {
                self.metrics.fleet("publish_failed", 1);
                unconfirmed(&envelope.host, false, &e.to_string())
            })
    }

    /// Wait until JetStream confirmed every publish of a batch.
    /// Each publish comes with the events it carries (none for a Hello or a heartbeat).
    async fn confirm(
        &self,
        host: &str,
        pending: Vec<(jetstream::context::PublishAckFuture, u32)>,
    ) -> Result<Confirmed, Status> {
        let mut confirmed = Confirmed::default();
        let (mut published, mut again) = (0, 0);
        for (future, events) in pending {
            let ack: Result<PublishAck, _> = tokio::time::timeout(CONFIRM_TIMEOUT, future.into_future())
                .await
                .map_err(|_| unconfirmed(host, false, "no confirmation within 30 s"))?;
            match ack {
                Ok(ack) if ack.duplicate => {
                    confirmed.duplicates += events;
                    again += 1;
                }
                Ok(_) => {
                    confirmed.stored += events;
                    published += 1;
                }
                Err(e) => {
                    // JetStream answers a full `discard: new` stream with an API error
                    // naming the limit ("maximum bytes exceeded", "... messages ...").
                    let text = e.to_string();
                    let full = text.contains("maximum") || text.contains("insufficient resources");
                    let timed_out = e.kind() == PublishErrorKind::TimedOut;
                    self.metrics
                        .fleet(if full { "stream_full" } else { "publish_failed" }, 1);
                    return Err(unconfirmed(host, full && !timed_out, &text));
                }
            }
        }
        self.metrics.fleet("published", published);
        self.metrics.fleet("duplicate", again);
        Ok(confirmed)
    }

    async fn serve_agent(
        &self,
        host: &str,
        certified: &Certified,
        link: u64,
        inbound: &mut Streaming<AgentMessage>,
        tx: &mpsc::Sender<Result<ServerMessage, Status>>,
    ) -> Result<(), Status> {
        let standing = Standing {
            name: host.to_owned(),
            serial: certified.serial.clone(),
            not_after_unix_s: certified.not_after_unix_s,
        };
        let envelope = |kind: Kind, received_unix_ns: u64| Envelope {
            host: host.to_owned(),
            kind,
            received_unix_ns,
            certified: certified.clone(),
            link,
        };
        loop {
            let message = match inbound.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(status) => {
                    tracing::info!(host, error = %status.message(), "agent stream ended");
                    return Ok(());
                }
            };
            if let Some(why) = standing.lapsed(&self.revocations) {
                return Err(refuse(&self.counters, lapsed(&standing, why)));
            }
            let received = now_unix_ns();
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
                    let future = self
                        .publish(&envelope(Kind::Hello, received), None, hello.encode_to_vec())
                        .await?;
                    self.confirm(host, vec![(future, 0)]).await?;
                }
                Some(agent_message::Msg::Heartbeat(beat)) => {
                    let future = self
                        .publish(&envelope(Kind::Heartbeat, received), None, beat.encode_to_vec())
                        .await?;
                    self.confirm(host, vec![(future, 0)]).await?;
                }
                Some(agent_message::Msg::Batch(batch)) => {
                    let ack = self
                        .publish_batch(host, &envelope(Kind::Events, received), batch)
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

    /// Tell the host's indexer that this stream of its agent ended, so it no
    /// longer shows the agent connected through it. Best effort: a front door
    /// that cannot say so (NATS down, or killed) lets the stream fall silent,
    /// which the indexer also reads as gone.
    async fn say_goodbye(&self, host: &str, certified: Certified, link: u64) {
        let goodbye = Envelope {
            host: host.to_owned(),
            kind: Kind::Goodbye,
            received_unix_ns: now_unix_ns(),
            certified,
            link,
        };
        let said = async {
            let future = self.publish(&goodbye, None, Vec::new()).await?;
            self.confirm(host, vec![(future, 0)]).await
        };
        if let Err(status) = said.await {
            tracing::debug!(host, error = %status.message(), "the stream's end could not be published");
        }
    }

    /// Check a batch as a single server does and publish its valid events, in
    /// messages of at most [`super::CHUNK_BYTES`] (each with the id of its first
    /// and last event); the Ack once JetStream confirmed them all.
    async fn publish_batch(
        &self,
        host: &str,
        envelope: &Envelope,
        batch: pb::EventBatch,
    ) -> Result<Ack, Status> {
        let checked = check_batch(
            &self.metrics,
            &self.counters,
            self.max_batch_events,
            host,
            batch.events,
            envelope.received_unix_ns,
        )
        .map_err(|refusal| refuse(&self.counters, refusal))?;
        self.metrics.refused(checked.refused.len());
        // The indexer checks again and puts the time-ahead note on: both go out alike.
        let events = checked.ok.into_iter().chain(checked.ahead).map(pb::Event::from);
        let mut pending = Vec::new();
        for chunk in super::chunks(events, super::CHUNK_BYTES) {
            let id = super::chunk_id(&chunk);
            let count = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            let payload = pb::EventBatch {
                batch_id: batch.batch_id,
                events: chunk,
            }
            .encode_to_vec();
            pending.push((self.publish(envelope, Some(&id), payload).await?, count));
        }
        let confirmed = self.confirm(host, pending).await?;
        self.counters
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Ack {
            batch_id: batch.batch_id,
            last_seq: checked.last_seq,
            refused: checked.refused,
            stored: confirmed.stored,
            duplicates: confirmed.duplicates,
            receipts_later: true,
            ..Ack::default()
        })
    }
}

/// A random, non-zero id for one agent stream.
fn new_link() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source");
    u64::from_le_bytes(bytes).max(1)
}

#[tonic::async_trait]
impl Ingest for FrontDoor {
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
        let link = new_link();
        tokio::spawn(async move {
            this.counters.connect(&host);
            tracing::info!(
                host,
                link = format!("{link:016x}"),
                "agent connected (front door)"
            );
            if let Err(status) = this.serve_agent(&host, &certified, link, &mut inbound, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
            this.counters.disconnect(&host);
            this.say_goodbye(&host, certified, link).await;
            tracing::info!(host, "agent disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn witness(&self, _request: Request<WitnessRequest>) -> Result<Response<WitnessReply>, Status> {
        Err(Status::unimplemented(
            "fleet mode: each shard's indexer keeps its own log, and the query node proves it: \
             set the agent's server.witness_url to a query node",
        ))
    }
}

/// Serve agents as a front door until `shutdown`.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let nats = super::connect(&config.fleet).await?;
    let js = jetstream::new(nats.clone());
    super::ensure_stream(&js, &config.fleet).await?;
    super::refuse_lossy_nats(&nats, &config.fleet)?;
    let counters = Arc::new(ServerCounters::default());
    let metrics = Arc::new(Metrics::new(0));
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let exporter = crate::metrics::exporter::start(
        &config.exporter,
        metrics.clone(),
        counters.clone(),
        crate::metrics::exporter::Source::FrontDoor(nats),
        stopping,
    )
    .await?;
    let revocations = Revocations::load(config.tls.revoked.clone());
    let revocation_watch = revocations.watch();
    let (listener, admission, tls) = super::listen(&config, &counters).await?;
    let address = listener.local_addr()?;
    let front_door = FrontDoor {
        js,
        fleet: config.fleet.clone(),
        counters: counters.clone(),
        metrics,
        max_batch_events: config.ingest.max_batch_events,
        revocations: revocations.clone(),
    };
    tracing::info!(%address, stream = %config.fleet.stream, shards = config.fleet.shards, "watchtower-server front door listening (mutual TLS)");
    let result = super::grpc_server()
        .add_service(IngestServer::new(front_door).max_decoding_message_size(config.ingest.max_message_bytes))
        .serve_with_incoming_shutdown(
            tls::incoming(listener, tls, admission, counters, revocations),
            shutdown,
        )
        .await;
    revocation_watch.abort();
    let _ = stopping_tx.send(true);
    if let Some(exporter) = exporter {
        let _ = exporter.await;
    }
    result?;
    tracing::info!("front door stopped");
    Ok(())
}
