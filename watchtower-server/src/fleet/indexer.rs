//! The indexer: owns one shard of hosts. It consumes the shard's subject with a
//! durable consumer (its position is kept by JetStream, replicated: a restarted
//! or replaced indexer goes on where the last one stopped), stores what it
//! reads exactly as a single server stores an agent's batch, and acknowledges
//! JetStream only after the synced write. A message that fails (the store is
//! busy) is handed back and comes again; one that no front door wrote is
//! counted, logged and not delivered again.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, PullConsumer, pull},
    message::AckKind,
};
use prost::Message as _;
use tokio_stream::StreamExt as _;
use watchtower_proto::pb;

use super::{Envelope, Kind};
use crate::config::FleetSection;
use crate::grpc::ingest::IngestService;
use crate::grpc::status::note;

/// Messages read and stored at a time.
const FETCH: usize = 512;
/// Unacknowledged messages JetStream lets the indexer hold.
const MAX_ACK_PENDING: i64 = 20_000;
/// How long JetStream waits for an ack before it delivers a message again.
const ACK_WAIT: Duration = Duration::from_mins(1);

/// What becomes of one message once its group is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    Stored,
    /// Not a front door's message: never delivered again.
    Malformed,
}

/// The durable consumer of `fleet.shard`.
async fn consumer(js: &jetstream::Context, fleet: &FleetSection) -> anyhow::Result<PullConsumer> {
    let stream = super::ensure_stream(js, fleet).await?;
    let name = format!("indexer-{}", fleet.shard);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: super::subject(fleet, fleet.shard),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                num_replicas: fleet.replicas,
                ..pull::Config::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the consumer {name}: {e}"))
}

/// Consume the shard until `stopping`; a broken connection or consumer is opened
/// again (the messages not acknowledged come again).
pub async fn run(
    js: jetstream::Context,
    fleet: FleetSection,
    ingest: IngestService,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(shard = fleet.shard, subject = %super::subject(&fleet, fleet.shard), "indexer consuming");
    loop {
        let result = tokio::select! {
            result = consume(&js, &fleet, &ingest) => result,
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "indexer: consuming failed, again in a second");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume(
    js: &jetstream::Context,
    fleet: &FleetSection,
    ingest: &IngestService,
) -> anyhow::Result<()> {
    let consumer = consumer(js, fleet).await?;
    loop {
        let mut fetched = consumer
            .fetch()
            .max_messages(FETCH)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
        let mut messages = Vec::new();
        while let Some(message) = fetched.next().await {
            messages.push(message.map_err(|e| anyhow::anyhow!("fetch: {e}"))?);
        }
        if messages.is_empty() {
            continue;
        }
        match store(ingest, &messages).await {
            Ok(dispositions) => {
                for (message, disposition) in messages.iter().zip(dispositions) {
                    let kind = match disposition {
                        Disposition::Stored => AckKind::Ack,
                        Disposition::Malformed => AckKind::Term,
                    };
                    // A lost ack only brings the message again; the store drops it then.
                    if let Err(e) = message.ack_with(kind).await {
                        tracing::warn!(error = %e, "indexer: ack not sent");
                    }
                }
            }
            Err(status) => {
                ingest.metrics.fleet("store_retry", messages.len() as u64);
                tracing::warn!(error = %status.message(), messages = messages.len(), "indexer: not stored, handed back");
                for message in &messages {
                    let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
        }
    }
}

/// One message read: its envelope and body, or why it is not a front door's.
enum Read {
    Hello(Envelope, pb::Hello),
    Heartbeat(Envelope, pb::Heartbeat),
    Event(Envelope, Box<pb::Event>),
    Malformed(String),
}

fn read(message: &async_nats::Message) -> Read {
    let envelope = match Envelope::of(message.headers.as_ref()) {
        Ok(envelope) => envelope,
        Err(e) => return Read::Malformed(e.to_string()),
    };
    let payload = &message.payload[..];
    match envelope.kind {
        Kind::Hello => pb::Hello::decode(payload).map(|h| Read::Hello(envelope, h)),
        Kind::Heartbeat => pb::Heartbeat::decode(payload).map(|b| Read::Heartbeat(envelope, b)),
        Kind::Event => pb::Event::decode(payload).map(|e| Read::Event(envelope, Box::new(e))),
    }
    .unwrap_or_else(|e| Read::Malformed(format!("undecodable body: {e}")))
}

/// Store `messages` in order: runs of events from one agent batch (same host,
/// receive time and certificate) as one batch; the disposition of each.
async fn store(
    ingest: &IngestService,
    messages: &[jetstream::Message],
) -> Result<Vec<Disposition>, tonic::Status> {
    let mut dispositions = vec![Disposition::Stored; messages.len()];
    let mut run: Option<(Envelope, Vec<pb::Event>, Vec<usize>)> = None;
    for (position, message) in messages.iter().enumerate() {
        let read = read(message);
        if let Some((envelope, _, _)) = &run {
            let same = matches!(&read, Read::Event(next, _) if next == envelope);
            if !same {
                let (envelope, events, positions) = run.take().expect("a run");
                store_events(ingest, &envelope, events, &positions, &mut dispositions).await?;
            }
        }
        match read {
            Read::Hello(envelope, hello) => {
                if hello.host_id == envelope.host {
                    ingest
                        .record_hello(&envelope.host, hello, &envelope.certified)
                        .await?;
                } else {
                    dispositions[position] = malformed(ingest, message, "a Hello for another host");
                }
            }
            Read::Heartbeat(envelope, beat) => ingest.record_heartbeat(&envelope.host, beat).await?,
            Read::Event(envelope, event) => match &mut run {
                Some((_, events, positions)) => {
                    events.push(*event);
                    positions.push(position);
                }
                None => run = Some((envelope, vec![*event], vec![position])),
            },
            Read::Malformed(why) => dispositions[position] = malformed(ingest, message, &why),
        }
    }
    if let Some((envelope, events, positions)) = run {
        store_events(ingest, &envelope, events, &positions, &mut dispositions).await?;
    }
    ingest.metrics.fleet(
        "stored",
        dispositions.iter().filter(|d| **d == Disposition::Stored).count() as u64,
    );
    Ok(dispositions)
}

fn malformed(ingest: &IngestService, message: &jetstream::Message, why: &str) -> Disposition {
    ingest.metrics.fleet("malformed", 1);
    let sequence = message
        .info()
        .map(|info| info.stream_sequence)
        .unwrap_or_default();
    tracing::error!(
        subject = %message.subject,
        stream_sequence = sequence,
        why,
        "indexer: a message on the ingest stream that no front door wrote: not stored, not delivered again"
    );
    Disposition::Malformed
}

/// Check and store the events of one agent batch as a single server does.
async fn store_events(
    ingest: &IngestService,
    envelope: &Envelope,
    events: Vec<pb::Event>,
    positions: &[usize],
    dispositions: &mut [Disposition],
) -> Result<(), tonic::Status> {
    match ingest.check_batch(&envelope.host, events, envelope.received_unix_ns) {
        Ok(checked) => {
            ingest
                .store_checked(
                    &envelope.host,
                    &envelope.certified.labels,
                    0,
                    checked,
                    envelope.received_unix_ns,
                )
                .await?;
        }
        Err(refusal) => {
            note(&ingest.counters, &refusal);
            for &position in positions {
                dispositions[position] = Disposition::Malformed;
            }
            ingest.metrics.fleet("malformed", positions.len() as u64);
        }
    }
    Ok(())
}
