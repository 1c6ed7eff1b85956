//! Fleet mode: past one server, on NATS JetStream.
//!
//! Agents keep their protocol (gRPC over mutual TLS to a [`front_door`]). A front
//! door checks each batch as a single server does and publishes every message of
//! an agent (its Hello, heartbeats and each batch's valid events, in messages of
//! at most [`CHUNK_BYTES`]) to the replicated stream on the subject of the host's
//! shard, the events with the de-duplication id of their first and last event
//! (`host/boot/seq..boot/seq`); it acknowledges the agent only after JetStream
//! confirmed every publish. An [`indexer`] owns one shard: it consumes it with a durable
//! consumer, stores it exactly as a single server stores a batch (same checks,
//! same `RocksDB` writes, same tamper-evidence log) and acknowledges JetStream
//! only after its synced write.
//!
//! The stream is a work queue (a message goes when its shard's indexer has
//! acknowledged it), with no age limit and `discard: new`: when it is full a
//! publish is refused and the agent keeps its spool, so nothing unconsumed is
//! ever dropped. Deletes and purges are denied on the stream.

pub mod front_door;
pub mod indexer;
pub mod query_node;
mod witness_relay;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};

use watchtower_proto::pb;

use crate::config::FleetSection;
use crate::grpc::ingest::Certified;

/// JetStream's window for de-duplicating a resent event by its id; later
/// resends are dropped by the indexer's store as at a single server.
pub const DUPLICATE_WINDOW: Duration = Duration::from_mins(10);

/// The shard of `host` among `shards` (FNV-1a of the name: stable across
/// versions and machines).
#[must_use]
pub fn shard_of(host: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in host.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards.max(1)
}

/// The subject of `shard`'s messages.
#[must_use]
pub fn subject(fleet: &FleetSection, shard: u32) -> String {
    format!("{}.{shard}", fleet.stream.to_ascii_lowercase())
}

/// The header names of a message on the stream.
pub mod header {
    pub const HOST: &str = "Watchtower-Host";
    /// `hello`, `heartbeat`, `events` (a chunk of an agent batch) or `event`
    /// (one event, as front doors before 0.2 wrote it: still read).
    pub const KIND: &str = "Watchtower-Kind";
    /// When the front door received the agent's message (ns since the epoch).
    pub const RECEIVED: &str = "Watchtower-Received";
    /// The agent certificate's labels, serial and expiry (JSON).
    pub const CERTIFIED: &str = "Watchtower-Certified";
    /// The front door's id of the agent's stream (hex; absent from front doors
    /// before 0.2): an indexer tells which agents are connected by it.
    pub const LINK: &str = "Watchtower-Link";
}

/// What a message on the stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Hello,
    Heartbeat,
    /// One event (read, no longer written).
    Event,
    /// A chunk of one agent batch: a `pb::EventBatch`.
    Events,
    /// The agent's stream at this front door ended (no body).
    Goodbye,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Heartbeat => "heartbeat",
            Kind::Event => "event",
            Kind::Events => "events",
            Kind::Goodbye => "goodbye",
        }
    }
}

/// Most bytes of events in one message on the stream: well under NATS's
/// default `max_payload` (1 MiB) with the headers, and above the largest event
/// a front door passes (128 KiB), so every event fits in a message.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// `events` in order, cut into runs of at most `limit` encoded bytes (an event
/// larger than `limit` alone in its run).
pub fn chunks(events: impl IntoIterator<Item = pb::Event>, limit: usize) -> Vec<Vec<pb::Event>> {
    let mut chunks: Vec<Vec<pb::Event>> = Vec::new();
    let mut bytes = 0;
    for event in events {
        // The event's length as a field of the batch: its tag and length prefix too.
        let size = prost::Message::encoded_len(&event);
        let size = size + prost::encoding::encoded_len_varint(size as u64) + 1;
        match chunks.last_mut() {
            Some(chunk) if bytes + size <= limit => {
                chunk.push(event);
                bytes += size;
            }
            _ => {
                chunks.push(vec![event]);
                bytes = size;
            }
        }
    }
    chunks
}

/// The de-duplication id of a chunk: its host and first and last event. An
/// agent that sends a batch again after a lost Ack sends the same chunks.
#[must_use]
pub fn chunk_id(chunk: &[pb::Event]) -> String {
    match (chunk.first(), chunk.last()) {
        (Some(first), Some(last)) => format!(
            "{}/{}/{}..{}/{}",
            first.host_id, first.boot_id, first.seq, last.boot_id, last.seq
        ),
        _ => String::new(),
    }
}

/// The headers of one message: who sent it, when, and what its certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub host: String,
    pub kind: Kind,
    pub received_unix_ns: u64,
    pub certified: Certified,
    /// The front door's id of the agent's stream (0: not given).
    pub link: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CertifiedJson {
    labels: HashMap<String, String>,
    serial: String,
    not_after_unix_s: i64,
}

/// Why a message on the stream is not one a front door wrote.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("header {0} missing")]
    Missing(&'static str),
    #[error("header {name} is not valid: {value:?}")]
    Invalid { name: &'static str, value: String },
}

impl Envelope {
    /// The message's headers, with `id` as JetStream's de-duplication id.
    #[must_use]
    pub fn headers(&self, id: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, self.host.as_str());
        headers.insert(header::KIND, self.kind.as_str());
        headers.insert(header::RECEIVED, self.received_unix_ns.to_string().as_str());
        let certified = CertifiedJson {
            labels: self.certified.labels.clone(),
            serial: self.certified.serial.clone(),
            not_after_unix_s: self.certified.not_after_unix_s,
        };
        let json = serde_json::to_string(&certified).expect("labels serialize");
        headers.insert(header::CERTIFIED, json.as_str());
        if self.link != 0 {
            headers.insert(header::LINK, format!("{:016x}", self.link).as_str());
        }
        if let Some(id) = id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        }
        headers
    }

    /// Read the headers a front door wrote.
    pub fn of(headers: Option<&HeaderMap>) -> Result<Envelope, EnvelopeError> {
        let get = |name: &'static str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .ok_or(EnvelopeError::Missing(name))
        };
        let invalid = |name: &'static str, value: String| EnvelopeError::Invalid { name, value };
        let host = get(header::HOST)?;
        watchtower_pki::validate_name(&host).map_err(|_| invalid(header::HOST, host.clone()))?;
        let kind = match get(header::KIND)?.as_str() {
            "hello" => Kind::Hello,
            "heartbeat" => Kind::Heartbeat,
            "event" => Kind::Event,
            "events" => Kind::Events,
            "goodbye" => Kind::Goodbye,
            other => return Err(invalid(header::KIND, other.to_owned())),
        };
        let received = get(header::RECEIVED)?;
        let received_unix_ns = received
            .parse()
            .map_err(|_| invalid(header::RECEIVED, received))?;
        let json = get(header::CERTIFIED)?;
        let certified: CertifiedJson =
            serde_json::from_str(&json).map_err(|_| invalid(header::CERTIFIED, json.clone()))?;
        let link = match headers.and_then(|h| h.get(header::LINK)) {
            None => 0,
            Some(value) => u64::from_str_radix(value.as_str(), 16)
                .map_err(|_| invalid(header::LINK, value.as_str().to_owned()))?,
        };
        Ok(Envelope {
            host,
            kind,
            received_unix_ns,
            certified: Certified {
                labels: certified.labels,
                serial: certified.serial,
                not_after_unix_s: certified.not_after_unix_s,
            },
            link,
        })
    }
}

/// The gRPC listener of a front door or query node: bound, with its
/// connection caps and mutual TLS.
pub async fn listen(
    config: &crate::config::ServerConfig,
    counters: &std::sync::Arc<crate::counters::ServerCounters>,
) -> anyhow::Result<(
    tokio::net::TcpListener,
    std::sync::Arc<crate::admission::Admission>,
    std::sync::Arc<rustls::ServerConfig>,
)> {
    let tls = crate::tls::server_config(&crate::tls::TlsFiles {
        ca: config.tls.ca.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        crls: config.tls.crls.clone(),
    })?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    let open_files = crate::admission::raise_open_file_limit()
        .map_err(|e| anyhow::anyhow!("cannot read the open-file limit: {e}"))?;
    let limits = config.server.connections.within_open_files(open_files);
    Ok((
        listener,
        crate::admission::Admission::new(limits, counters.clone()),
        tls,
    ))
}

/// tonic's server with the keepalives a single server uses.
#[must_use]
pub fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(30)))
}

/// Connect to NATS with mutual TLS as `fleet` says (`jetstream::new` of the
/// client is the stream's side; the client itself tells whether it is connected).
pub async fn connect(fleet: &FleetSection) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .require_tls(true)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS connection");
        });
    if let Some(ca) = &fleet.nats_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&fleet.nats_cert, &fleet.nats_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let client = options
        .connect(fleet.nats_urls.as_slice())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {}: {e}", fleet.nats_urls.join(",")))?;
    Ok(client)
}

/// Refuse a nats-server that loses acknowledged messages. Called once the
/// connection is up (after [`ensure_stream`]: the server's version is known).
///
/// # Errors
/// The server's version is older than the first one that keeps them.
pub fn refuse_lossy_nats(client: &async_nats::Client, fleet: &FleetSection) -> anyhow::Result<()> {
    let version = client.server_info().version;
    anyhow::ensure!(
        !loses_acknowledged_messages(&version),
        "nats-server {version} at {} silently drops acknowledged messages from a stream with \
         discard: new once it reaches max_bytes (nats-server issues 4771 and 4775): run {}.{}.{} or newer",
        fleet.nats_urls.join(","),
        FIXED_NATS.0,
        FIXED_NATS.1,
        FIXED_NATS.2
    );
    Ok(())
}

/// The first nats-server that keeps every acknowledged message of a full
/// `discard: new` stream (before it, JetStream underestimated a message's size,
/// admitted it, then pruned the stream's oldest messages to fit).
const FIXED_NATS: (u32, u32, u32) = (2, 10, 6);

/// Whether nats-server `version` (`2.9.10`, `v2.15.1`, `2.11.0-beta.1`) is one
/// that loses acknowledged messages; a version that does not read is not trusted.
fn loses_acknowledged_messages(version: &str) -> bool {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => (major, minor, patch) < FIXED_NATS,
        _ => true,
    }
}

/// The stream's configuration (the same from every front door and indexer).
#[must_use]
pub fn stream_config(fleet: &FleetSection) -> stream::Config {
    stream::Config {
        name: fleet.stream.clone(),
        subjects: vec![format!("{}.*", fleet.stream.to_ascii_lowercase())],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_bytes: fleet.max_bytes,
        max_age: Duration::ZERO,
        storage: stream::StorageType::File,
        num_replicas: fleet.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        ..stream::Config::default()
    }
}

/// Create the stream if it is not there yet; an existing one is used as it is.
pub async fn ensure_stream(js: &jetstream::Context, fleet: &FleetSection) -> anyhow::Result<stream::Stream> {
    // A cluster that is starting or electing its leader times requests out for a
    // while: keep asking for a minute before giving up.
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        match js.get_or_create_stream(stream_config(fleet)).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(stream = %fleet.stream, error = %e, "JetStream not ready yet: asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => anyhow::bail!("cannot open the JetStream stream {}: {e}", fleet.stream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_server_that_drops_acknowledged_messages_is_refused() {
        for lossy in ["2.9.10", "v2.10.5", "2.10.5-RC.1", "1.4.1", "", "two"] {
            assert!(loses_acknowledged_messages(lossy), "{lossy}");
        }
        for fixed in ["2.10.6", "v2.15.1", "2.11.0-beta.1", "3.0.0"] {
            assert!(!loses_acknowledged_messages(fixed), "{fixed}");
        }
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("web-1", 1), 0);
        assert_eq!(shard_of("web-1", 2), shard_of("web-1", 2));
        let counts = (0..1000).fold([0u32; 4], |mut counts, n| {
            counts[shard_of(&format!("host-{n}"), 4) as usize] += 1;
            counts
        });
        assert!(counts.iter().all(|&c| c > 200), "{counts:?}");
    }

    #[test]
    fn an_envelope_reads_back_and_a_foreign_one_is_named() {
        let envelope = Envelope {
            host: "web-1".into(),
            kind: Kind::Event,
            received_unix_ns: 42,
            certified: Certified {
                labels: [("env".to_owned(), "prod \"eu\"".to_owned())].into(),
                serial: "0a".into(),
                not_after_unix_s: 7,
            },
            link: 0x5eed,
        };
        let headers = envelope.headers(Some("web-1/b/1"));
        assert_eq!(Envelope::of(Some(&headers)), Ok(envelope.clone()));
        // Older front doors gave no link; a goodbye has no body.
        let mut old = headers.clone();
        old.insert(header::LINK, "not-hex");
        assert!(matches!(
            Envelope::of(Some(&old)),
            Err(EnvelopeError::Invalid {
                name: header::LINK,
                ..
            })
        ));
        let goodbye = Envelope {
            kind: Kind::Goodbye,
            link: 0,
            ..envelope
        };
        let headers_of_goodbye = goodbye.headers(None);
        assert!(headers_of_goodbye.get(header::LINK).is_none());
        assert_eq!(Envelope::of(Some(&headers_of_goodbye)), Ok(goodbye));
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(async_nats::HeaderValue::as_str),
            Some("web-1/b/1")
        );
        assert_eq!(Envelope::of(None), Err(EnvelopeError::Missing(header::HOST)));
        let mut forged = headers.clone();
        forged.insert(header::KIND, "truncate");
        assert_eq!(
            Envelope::of(Some(&forged)),
            Err(EnvelopeError::Invalid {
                name: header::KIND,
                value: "truncate".into()
            })
        );
        let mut forged = headers;
        forged.insert(header::HOST, "../etc");
        assert!(Envelope::of(Some(&forged)).is_err());
    }

    #[test]
    fn the_stream_never_drops_what_is_not_consumed() {
        let config = stream_config(&FleetSection::default());
        assert_eq!(config.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(config.discard, stream::DiscardPolicy::New);
        assert_eq!(config.max_age, Duration::ZERO);
        assert!(config.deny_delete && config.deny_purge);
        assert_eq!(config.subjects, vec!["watchtower.*".to_owned()]);
    }

    fn exec(seq: u64, filename_bytes: usize) -> pb::Event {
        pb::Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            body: Some(pb::event::Body::Exec(pb::Exec {
                filename: "x".repeat(filename_bytes),
                ..pb::Exec::default()
            })),
            ..pb::Event::default()
        }
    }

    #[test]
    fn a_batch_is_cut_into_messages_that_fit_and_keep_every_event_in_order() {
        let events: Vec<pb::Event> = (1..=40).map(|seq| exec(seq, 30_000)).collect();
        let cut = chunks(events.clone(), CHUNK_BYTES);
        assert!(cut.len() > 1, "{}", cut.len());
        for chunk in &cut {
            let payload = prost::Message::encoded_len(&pb::EventBatch {
                batch_id: 7,
                events: chunk.clone(),
            });
            assert!(payload <= CHUNK_BYTES + 16, "{payload}");
        }
        let again: Vec<pb::Event> = cut.iter().flatten().cloned().collect();
        assert_eq!(again, events);
        assert_eq!(chunk_id(&cut[0]), format!("web-1/b/1..b/{}", cut[0].len()));
        // One event over the limit travels alone; nothing is left out.
        let big = chunks(vec![exec(1, 10), exec(2, 2000), exec(3, 10)], 1000);
        let sizes: Vec<usize> = big.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(chunks(Vec::new(), CHUNK_BYTES).is_empty());
    }
}
