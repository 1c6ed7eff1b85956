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
    /// A chunk of one agent batch (`events`), or one event (`event`).
    Events(Envelope, Vec<pb::Event>),
    Goodbye(Envelope),
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
        Kind::Event => pb::Event::decode(payload).map(|e| Read::Events(envelope, vec![e])),
        Kind::Goodbye if payload.is_empty() => Ok(Read::Goodbye(envelope)),
        Kind::Goodbye => return Read::Malformed("a goodbye with a body".to_owned()),
        Kind::Events => pb::EventBatch::decode(payload).map(|batch| {
            if batch.events.is_empty() {
                Read::Malformed("a batch of no events".to_owned())
            } else {
                Read::Events(envelope, batch.events)
            }
        }),
    }
    .unwrap_or_else(|e| Read::Malformed(format!("undecodable body: {e}")))
}

/// What an indexer does for one host, in the order of its messages.
#[derive(Debug)]
enum Step {
    Hello(usize, Envelope, pb::Hello),
    Heartbeat(Envelope, pb::Heartbeat),
    /// Events of one agent batch (same host, receive time and certificate),
    /// from the messages at `positions`: stored with one write.
    Events {
        envelope: Envelope,
        events: Vec<pb::Event>,
        positions: Vec<usize>,
    },
    /// The agent's stream at a front door ended.
    Goodbye(Envelope),
}

/// The messages fetched, sorted: each host's steps in the order of its
/// messages (hosts in the order they first come), and the messages that are no
/// front door's.
#[derive(Debug, Default)]
struct Plan {
    hosts: Vec<(String, Vec<Step>)>,
    malformed: Vec<(usize, String)>,
}

/// Sort `reads` into steps: the chunks of one agent batch (and single events
/// of one, as older front doors wrote them) joined into one store, up to
/// `max_batch_events`.
fn plan(reads: Vec<Read>, max_batch_events: usize) -> Plan {
    let mut plan = Plan::default();
    let mut host_at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (position, read) in reads.into_iter().enumerate() {
        let host = match &read {
            Read::Hello(envelope, _)
            | Read::Heartbeat(envelope, _)
            | Read::Events(envelope, _)
            | Read::Goodbye(envelope) => envelope.host.clone(),
            Read::Malformed(why) => {
                plan.malformed.push((position, why.clone()));
                continue;
            }
        };
        let at = *host_at.entry(host.clone()).or_insert_with(|| {
            plan.hosts.push((host, Vec::new()));
            plan.hosts.len() - 1
        });
        let steps = &mut plan.hosts[at].1;
        match read {
            Read::Hello(envelope, hello) => steps.push(Step::Hello(position, envelope, hello)),
            Read::Heartbeat(envelope, beat) => steps.push(Step::Heartbeat(envelope, beat)),
            Read::Goodbye(envelope) => steps.push(Step::Goodbye(envelope)),
            Read::Events(envelope, more) => match steps.last_mut() {
                Some(Step::Events {
                    envelope: same,
                    events,
                    positions,
                }) if *same == envelope && events.len() + more.len() <= max_batch_events => {
                    events.extend(more);
                    positions.push(position);
                }
                _ => steps.push(Step::Events {
                    envelope,
                    events: more,
                    positions: vec![position],
                }),
            },
            Read::Malformed(_) => unreachable!("sorted out above"),
        }
    }
    plan
}

/// Store `messages`: each host's in order, the hosts side by side (their
/// writes share the store's group commits); the disposition of each message.
async fn store(
    ingest: &IngestService,
    messages: &[jetstream::Message],
) -> Result<Vec<Disposition>, tonic::Status> {
    let mut dispositions = vec![Disposition::Stored; messages.len()];
    let plan = plan(
        messages.iter().map(|m| read(m)).collect(),
        ingest.max_batch_events,
    );
    let mut not_stored = plan.malformed;
    let mut hosts = tokio::task::JoinSet::new();
    for (_, steps) in plan.hosts {
        let ingest = ingest.clone();
        hosts.spawn(async move { store_host(&ingest, steps).await });
    }
    let mut failed = None;
    while let Some(joined) = hosts.join_next().await {
        match joined {
            Ok(Ok(refused)) => not_stored.extend(refused),
            Ok(Err(status)) => failed = Some(status),
            Err(e) => failed = Some(tonic::Status::internal(format!("indexer task: {e}"))),
        }
    }
    if let Some(status) = failed {
        return Err(status);
    }
    for (position, why) in not_stored {
        dispositions[position] = malformed(ingest, &messages[position], &why);
    }
    ingest.metrics.fleet(
        "stored",
        dispositions.iter().filter(|d| **d == Disposition::Stored).count() as u64,
    );
    Ok(dispositions)
}

/// One host's steps in order; the messages refused (with why).
async fn store_host(ingest: &IngestService, steps: Vec<Step>) -> Result<Vec<(usize, String)>, tonic::Status> {
    let mut refused = Vec::new();
    // Which agents are connected: the streams front doors hold for them.
    let counters = &ingest.counters;
    for step in steps {
        match step {
            Step::Hello(position, envelope, hello) => {
                counters.relayed_hello(&envelope.host, envelope.link, crate::now_unix_ns());
                if hello.host_id == envelope.host {
                    ingest
                        .record_hello(&envelope.host, hello, &envelope.certified)
                        .await?;
                } else {
                    refused.push((position, "a Hello for another host".to_owned()));
                }
            }
            Step::Heartbeat(envelope, beat) => {
                counters.relayed(&envelope.host, envelope.link, crate::now_unix_ns());
                ingest.record_heartbeat(&envelope.host, beat).await?;
            }
            Step::Goodbye(envelope) => counters.relayed_ended(&envelope.host, envelope.link),
            Step::Events {
                envelope,
                events,
                positions,
            } => {
                counters.relayed(&envelope.host, envelope.link, crate::now_unix_ns());
                if let Err(why) = store_events(ingest, &envelope, events).await? {
                    refused.extend(positions.into_iter().map(|p| (p, why.clone())));
                }
            }
        }
    }
    Ok(refused)
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

/// Check and store the events of one agent batch as a single server does;
/// `Ok(Err(why))` when the batch is refused whole.
async fn store_events(
    ingest: &IngestService,
    envelope: &Envelope,
    events: Vec<pb::Event>,
) -> Result<Result<(), String>, tonic::Status> {
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
            Ok(Ok(()))
        }
        Err(refusal) => {
            note(&ingest.counters, &refusal);
            Ok(Err(format!("a batch refused whole ({})", refusal.reason())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::ingest::Certified;

    fn envelope(host: &str, received_unix_ns: u64) -> Envelope {
        Envelope {
            host: host.to_owned(),
            kind: Kind::Events,
            received_unix_ns,
            certified: Certified::default(),
            link: 0,
        }
    }

    fn events(host: &str, seqs: std::ops::Range<u64>) -> Vec<pb::Event> {
        seqs.map(|seq| pb::Event {
            host_id: host.to_owned(),
            seq,
            ..pb::Event::default()
        })
        .collect()
    }

    /// What a plan does, in short: per host, each step's kind, seqs and messages.
    fn outline(plan: &Plan) -> Vec<(String, Vec<String>)> {
        plan.hosts
            .iter()
            .map(|(host, steps)| {
                let steps = steps
                    .iter()
                    .map(|step| match step {
                        Step::Hello(p, ..) => format!("hello@{p}"),
                        Step::Heartbeat(..) => "heartbeat".to_owned(),
                        Step::Goodbye(..) => "goodbye".to_owned(),
                        Step::Events {
                            events, positions, ..
                        } => format!(
                            "events {}..={} @{positions:?}",
                            events[0].seq,
                            events[events.len() - 1].seq
                        ),
                    })
                    .collect();
                (host.clone(), steps)
            })
            .collect()
    }

    #[test]
    fn the_chunks_of_one_batch_are_stored_together_each_host_in_its_order() {
        let reads = vec![
            Read::Hello(envelope("a", 1), pb::Hello::default()),
            Read::Events(envelope("a", 1), events("a", 1..4)),
            Read::Events(envelope("b", 1), events("b", 1..3)),
            Read::Events(envelope("a", 1), events("a", 4..6)),
            Read::Malformed("forged".into()),
            // The next agent batch (another receive time) is a store of its own.
            Read::Events(envelope("a", 2), events("a", 6..7)),
            Read::Heartbeat(envelope("b", 3), pb::Heartbeat::default()),
            // Over the batch limit with what came before: a store of its own.
            Read::Events(envelope("a", 2), events("a", 7..13)),
        ];
        let plan = plan(reads, 6);
        assert_eq!(plan.malformed, vec![(4, "forged".to_owned())]);
        let want = vec![
            (
                "a".to_owned(),
                vec![
                    "hello@0".to_owned(),
                    "events 1..=5 @[1, 3]".to_owned(),
                    "events 6..=6 @[5]".to_owned(),
                    "events 7..=12 @[7]".to_owned(),
                ],
            ),
            (
                "b".to_owned(),
                vec!["events 1..=2 @[2]".to_owned(), "heartbeat".to_owned()],
            ),
        ];
        assert_eq!(outline(&plan), want);
    }

    #[test]
    fn a_message_of_either_kind_reads_back_and_an_empty_batch_is_malformed() {
        let message = |kind: Kind, payload: Vec<u8>| {
            let mut envelope = envelope("a", 1);
            envelope.kind = kind;
            async_nats::Message {
                subject: "watchtower.0".into(),
                reply: None,
                payload: payload.into(),
                headers: Some(envelope.headers(None)),
                status: None,
                description: None,
                length: 0,
            }
        };
        let batch = pb::EventBatch {
            batch_id: 1,
            events: events("a", 1..3),
        };
        let read_seqs = |read: Read| match read {
            Read::Events(_, events) => events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            _ => panic!("not events"),
        };
        assert_eq!(
            read_seqs(read(&message(Kind::Events, batch.encode_to_vec()))),
            vec![1, 2]
        );
        let one = events("a", 5..6).remove(0).encode_to_vec();
        assert_eq!(read_seqs(read(&message(Kind::Event, one))), vec![5]);
        let empty = pb::EventBatch::default().encode_to_vec();
        assert!(matches!(read(&message(Kind::Events, empty)), Read::Malformed(_)));
        assert!(matches!(
            read(&message(Kind::Goodbye, Vec::new())),
            Read::Goodbye(_)
        ));
        assert!(matches!(
            read(&message(Kind::Goodbye, vec![1])),
            Read::Malformed(_)
        ));
    }
}
