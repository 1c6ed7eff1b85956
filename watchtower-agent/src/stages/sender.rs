//! The sender stage: delivers the spool ([`super::spool_writer`]) to the server. It
//! streams the events over gRPC with mutual TLS and removes them from the spool
//! only when the server acknowledges that they are stored. After any failure the
//! sender reconnects with backoff and resends everything not acknowledged (the
//! server drops what it already has).
//!
//! No event stops the host's shipping: an event the server refuses as invalid
//! (named in its Ack), a record that cannot be sent at all (undecodable, larger
//! than any batch), and a single event whose batch the server refuses whole are
//! moved to the spool's quarantine (kept on disk, counted in `spool.dropped` as
//! `quarantined`, on the wire as `quarantined`), and the records after them go on.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use watchtower_pki::ClientTls;
use watchtower_proto::pb::ingest_client::IngestClient;
use watchtower_proto::pb::{
    Ack, AgentMessage, EventBatch, Heartbeat, Hello, ServerMessage, agent_message, server_message,
};

use watchtower_tlog::RecordId;

use crate::config::Config;
use crate::log_witness::LogWitness;
use crate::stages::spool_writer::SharedSpool;

/// Batches sent and not yet acknowledged, at most.
const WINDOW: usize = 8;
/// Events per batch, at most.
const BATCH_EVENTS: usize = 512;
/// Bytes of events per batch, at most (the server refuses messages over 4 MiB).
const BATCH_BYTES: usize = 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a stopping agent keeps trying to deliver what it holds.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Where and how to reach the server.
#[derive(Clone, Debug)]
pub struct ServerLink {
    /// `https://host:port`
    pub address: String,
    /// The servers to move to in turn when the current one is down.
    pub failover: Vec<String>,
    /// The name the server's certificate must carry.
    pub server_name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub heartbeat: Duration,
}

impl ServerLink {
    /// The link to `address` as configured; checks that the TLS files exist
    /// (default certificate and key: `certs/agents/<host_id>.pem`/`.key`).
    pub fn from_config(config: &Config, address: &str, host_id: &str) -> anyhow::Result<ServerLink> {
        let cert = config
            .server
            .cert
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("certs/agents/{host_id}.pem")));
        let key = config
            .server
            .key
            .clone()
            .unwrap_or_else(|| cert.with_extension("key"));
        for path in [&config.server.ca, &cert, &key] {
            std::fs::metadata(path).with_context(|| {
                format!(
                    "TLS file {} (make certificates with `cargo xtask certs --host {host_id}`)",
                    path.display()
                )
            })?;
        }
        Ok(ServerLink {
            address: address.to_owned(),
            failover: config.server.failover.clone(),
            server_name: config.server.server_name.clone(),
            ca: config.server.ca.clone(),
            cert,
            key,
            heartbeat: Duration::from_secs(config.server.heartbeat_secs),
        })
    }
}

impl ServerLink {
    /// The link the log is proven over: `server.witness_url` when set (a fleet's
    /// query node), else this one.
    #[must_use]
    pub fn witnessed_by(&self, server: &crate::config::ServerSection) -> ServerLink {
        let mut link = self.clone();
        if let Some(url) = &server.witness_url {
            link.address.clone_from(url);
            link.failover.clear();
        }
        if let Some(name) = &server.witness_server_name {
            link.server_name.clone_from(name);
        }
        link
    }
}

pub(super) fn tls_of(link: &ServerLink) -> anyhow::Result<ClientTls> {
    Ok(ClientTls::from_files(
        &link.ca,
        &link.cert,
        &link.key,
        link.server_name.clone(),
    )?)
}

pub(super) async fn connect(link: &ServerLink, tls: &ClientTls) -> anyhow::Result<Channel> {
    connect_to(&link.address, tls).await
}

async fn connect_to(address: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    let channel = tls
        .endpoint(address, Duration::from_secs(5))?
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .connect()
        .await
        .with_context(|| format!("connecting to {address}"))?;
    Ok(channel)
}

/// A batch sent and not yet acknowledged.
struct InFlight {
    /// Its id: the spool index of the last record it covers.
    last: u64,
    /// The spool index of each event it holds, in order (quarantined records it
    /// covers are not sent).
    indexes: Vec<u64>,
    /// The id of each event it holds, in order: what the receipts name.
    ids: Vec<RecordId>,
}

/// How large batches are. Halved when the server refuses a batch whole as too
/// large or unacceptable; a single event it still refuses is quarantined, and
/// batches are full-sized again.
#[derive(Clone, Copy, Debug)]
struct BatchShape {
    events: usize,
    bytes: usize,
}

const FULL_BATCHES: BatchShape = BatchShape {
    events: BATCH_EVENTS,
    bytes: BATCH_BYTES,
};

/// Why a connection ended.
enum Ended {
    /// Stopping and everything was delivered (or the grace ran out).
    Stopped,
    Failed(anyhow::Error),
    /// The server ended the stream with `status` while `front` was the oldest batch
    /// not acknowledged (the one the server was reading).
    Refused {
        status: tonic::Status,
        front: Option<InFlight>,
    },
}

/// Stage: deliver the spool to the server until `stop` is set (then keep trying
/// for a short grace while anything is pending).
pub async fn run(
    link: ServerLink,
    identity: (String, String),
    shared: Arc<SharedSpool>,
    witness: Option<Arc<Mutex<LogWitness>>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let tls = tls_of(&link)?;
    let addresses: Vec<&str> = std::iter::once(link.address.as_str())
        .chain(link.failover.iter().map(String::as_str))
        .collect();
    let mut current = 0;
    let mut backoff = BACKOFF_MIN;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut shape = FULL_BATCHES;
    loop {
        if *stop.borrow() && drain_until.is_none() {
            drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
        }
        if let Some(deadline) = drain_until
            && (tokio::time::Instant::now() >= deadline || pending(&shared) == 0)
        {
            break;
        }
        let acked_before = shared.spool.lock().expect("spool lock").acked();
        let link_state = Link {
            server: &link,
            address: addresses[current],
            tls: &tls,
            identity: &identity,
            shared: &shared,
            shape,
            witness: witness.as_ref(),
        };
        let ended = session(&link_state, &mut stop, drain_until).await;
        if shared.spool.lock().expect("spool lock").acked() > acked_before {
            // The link worked for a while: retry fast.
            backoff = BACKOFF_MIN;
        } else if addresses.len() > 1 && !matches!(ended, Ended::Stopped) {
            // Nothing stored there: the next front door, at once.
            current = (current + 1) % addresses.len();
            tracing::warn!(server = addresses[current], "moving to the next server");
            backoff = BACKOFF_MIN;
        }
        let error = match ended {
            Ended::Stopped => break,
            Ended::Failed(e) => e,
            Ended::Refused { status, front } => {
                if after_refusal(&shared, &mut shape, &status, front).await {
                    // Progress (smaller batches, or the one bad event set aside).
                    backoff = BACKOFF_MIN;
                }
                anyhow::anyhow!("the server refused: {}: {}", status.code(), status.message())
            }
        };
        shared
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            "server link down, retrying in {:?} (events stay in the spool): {error:#}",
            backoff
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed(), if drain_until.is_none() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    if let Err(e) = shared.spool.lock().expect("spool lock").sync_acked() {
        tracing::warn!("the last ack could not be made durable (its events will be sent again): {e}");
    }
    let left = pending(&shared);
    if left > 0 {
        tracing::warn!(
            pending = left,
            "stopping with events not yet acknowledged: they stay in the spool and are sent on the next start"
        );
    }
    Ok(())
}

/// What to do when the server ended the stream reading batch `front`. A batch
/// refused whole as too large (`RESOURCE_EXHAUSTED`: the server's event or
/// message limit) or unacceptable (`INVALID_ARGUMENT`) is sent again in smaller
/// batches; a single event refused so is quarantined, so that one event never
/// stops the host's shipping. Other refusals (identity, revocation, the server's
/// own trouble) are retried as they are. Returns whether anything changed.
async fn after_refusal(
    shared: &Arc<SharedSpool>,
    shape: &mut BatchShape,
    status: &tonic::Status,
    front: Option<InFlight>,
) -> bool {
    let batch_refused = matches!(
        status.code(),
        tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
    );
    let Some(front) = front.filter(|_| batch_refused) else {
        return false;
    };
    if front.indexes.len() > 1 {
        let smaller = BatchShape {
            events: (front.indexes.len() / 2).max(1),
            bytes: (shape.bytes / 2).max(1),
        };
        tracing::warn!(
            events = front.indexes.len(),
            next_events = smaller.events,
            "the server refused a batch whole ({}: {}): sending smaller batches",
            status.code(),
            status.message()
        );
        *shape = smaller;
        return true;
    }
    let Some(&index) = front.indexes.first() else {
        return false;
    };
    let reason = format!("refused_whole: {}: {}", status.code(), status.message());
    tracing::error!(
        index,
        %reason,
        "the server refused a batch of one event: quarantined, the rest goes on"
    );
    let writer = shared.clone();
    let quarantined = tokio::task::spawn_blocking(move || {
        writer
            .spool
            .lock()
            .expect("spool lock")
            .quarantine(&[(index, reason)])
    })
    .await;
    match quarantined {
        Ok(Ok(_)) => {
            // The bad event is set aside: full batches again (if the server's batch
            // limit is what made them smaller, they shrink again in a few tries).
            *shape = FULL_BATCHES;
            true
        }
        Ok(Err(e)) => {
            tracing::error!("could not quarantine spool record {index}: {e}");
            false
        }
        Err(e) => {
            tracing::error!("spool task: {e}");
            false
        }
    }
}

fn pending(shared: &SharedSpool) -> u64 {
    shared.spool.lock().expect("spool lock").pending()
}

/// What one connection works with.
struct Link<'a> {
    server: &'a ServerLink,
    /// The server this connection goes to (`server.address` or a failover).
    address: &'a str,
    tls: &'a ClientTls,
    identity: &'a (String, String),
    shared: &'a Arc<SharedSpool>,
    shape: BatchShape,
    /// Where the Acks' receipts go, when the agent witnesses the log.
    witness: Option<&'a Arc<Mutex<LogWitness>>>,
}

/// The next batch from spool index `from`, and what it covers; None when nothing
/// waits. Records that can never be sent (undecodable, larger than any batch) are
/// quarantined here, and records already quarantined are covered but not sent.
fn next_batch(
    shared: &SharedSpool,
    from: u64,
    shape: BatchShape,
) -> anyhow::Result<Option<(InFlight, Vec<watchtower_proto::pb::Event>)>> {
    let mut spool = shared.spool.lock().expect("spool lock");
    let records = spool.read_from(from, shape.events, shape.bytes)?;
    let Some(&(last, _)) = records.last() else {
        return Ok(None);
    };
    let mut batch = InFlight {
        last,
        indexes: Vec::with_capacity(records.len()),
        ids: Vec::with_capacity(records.len()),
    };
    let mut events = Vec::with_capacity(records.len());
    let mut unsendable = Vec::new();
    for (index, bytes) in records {
        if spool.is_quarantined(index) {
            continue;
        }
        if bytes.len() > BATCH_BYTES {
            unsendable.push((
                index,
                format!(
                    "too_large_to_send: {} bytes, a batch holds at most {BATCH_BYTES}",
                    bytes.len()
                ),
            ));
            continue;
        }
        match watchtower_proto::pb::Event::decode(bytes.as_slice()) {
            Ok(event) => {
                batch.indexes.push(index);
                batch.ids.push(RecordId {
                    host_id: event.host_id.clone(),
                    boot_id: event.boot_id.clone(),
                    seq: event.seq,
                    time_unix_ns: event.time_unix_ns,
                });
                events.push(event);
            }
            // Passed its checksum but does not decode: it can never be delivered.
            Err(e) => unsendable.push((index, format!("undecodable: {e}"))),
        }
    }
    if !unsendable.is_empty() {
        for (index, reason) in &unsendable {
            tracing::error!(index, %reason, "spool record cannot be sent: quarantined");
        }
        spool.quarantine(&unsendable)?;
    }
    Ok(Some((batch, events)))
}

/// Record the server's ack of `batch`: quarantine the events it refused, then
/// let the spool delete what the ack covers (in that order, so a refused event
/// is on disk in the quarantine before its segment can go).
fn record_ack(shared: &SharedSpool, batch: &InFlight, ack: &Ack) -> anyhow::Result<()> {
    let mut refused = Vec::with_capacity(ack.refused.len());
    for r in &ack.refused {
        let Some(&index) = usize::try_from(r.position)
            .ok()
            .and_then(|p| batch.indexes.get(p))
        else {
            anyhow::bail!(
                "the server refused event {} of batch {}, which holds {} events",
                r.position,
                batch.last,
                batch.indexes.len()
            );
        };
        tracing::warn!(
            seq = r.seq,
            index,
            reason = %r.reason,
            detail = %r.detail,
            "the server refused an event as invalid: quarantined, the rest goes on"
        );
        refused.push((index, format!("{}: {}", r.reason, r.detail)));
    }
    let mut spool = shared.spool.lock().expect("spool lock");
    if !refused.is_empty() {
        let kept = spool.quarantine(&refused)?;
        if kept < refused.len() as u64 {
            tracing::error!(
                refused = refused.len(),
                kept,
                "not every refused event could be kept (quarantine full, counted as quarantine_full, or already there)"
            );
        }
    }
    spool.ack(ack.batch_id)?;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| anyhow::anyhow!("spool task: {e}"))?
}

async fn session(
    link: &Link<'_>,
    stop: &mut watch::Receiver<bool>,
    mut drain_until: Option<tokio::time::Instant>,
) -> Ended {
    let shared = link.shared;
    let (tx, mut acks) = match open_stream(link).await {
        Ok(opened) => opened,
        Err(ended) => return ended,
    };
    // Everything not acknowledged is sent again on a new stream.
    let mut next = shared.spool.lock().expect("spool lock").acked() + 1;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut heartbeat = tokio::time::interval(link.server.heartbeat);
    loop {
        // Fill the window.
        while in_flight.len() < WINDOW {
            let reader = shared.clone();
            let (from, shape) = (next, link.shape);
            let (batch, events) = match blocking(move || next_batch(&reader, from, shape)).await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => return Ended::Failed(e.context("reading the spool")),
            };
            let message = AgentMessage {
                msg: Some(agent_message::Msg::Batch(EventBatch {
                    batch_id: batch.last,
                    events,
                })),
            };
            if tx.send(message).await.is_err() {
                return closed(link, &mut acks, &mut in_flight).await;
            }
            next = batch.last + 1;
            in_flight.push_back(batch);
        }
        if let Some(deadline) = drain_until
            && ((in_flight.is_empty() && pending(shared) == 0) || tokio::time::Instant::now() >= deadline)
        {
            return Ended::Stopped;
        }
        let deadline = drain_until.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_hours(1));
        tokio::select! {
            message = acks.message() => {
                if let Err(ended) = on_answer(link, message, &mut in_flight).await {
                    return ended;
                }
            }
            () = shared.added.notified(), if in_flight.len() < WINDOW => {}
            _ = heartbeat.tick() => {
                let beat = AgentMessage {
                    msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                        time_unix_ns: crate::clock::boot_to_unix_ns(crate::clock::boottime_ns()),
                        spool: Some(crate::wire::spool_health(&shared.health())),
                    })),
                };
                if tx.send(beat).await.is_err() {
                    return closed(link, &mut acks, &mut in_flight).await;
                }
            }
            _ = stop.changed(), if drain_until.is_none() => {
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Handle one answer of the server: an ack is recorded (refused events
/// quarantined first); the end of the stream, or its refusal naming the oldest
/// batch in flight, ends the connection.
async fn on_answer(
    link: &Link<'_>,
    answer: Result<Option<ServerMessage>, tonic::Status>,
    in_flight: &mut VecDeque<InFlight>,
) -> Result<(), Ended> {
    let message = match answer {
        Ok(Some(message)) => message,
        Ok(None) => return Err(Ended::Failed(anyhow::anyhow!("the server ended the stream"))),
        Err(status) => {
            return Err(Ended::Refused {
                status,
                front: in_flight.pop_front(),
            });
        }
    };
    let Some(server_message::Msg::Ack(mut ack)) = message.msg else {
        return Ok(());
    };
    let Some(batch) = in_flight.pop_front().filter(|b| b.last == ack.batch_id) else {
        return Err(Ended::Failed(anyhow::anyhow!(
            "the server acknowledged batch {} out of order",
            ack.batch_id
        )));
    };
    let writer = link.shared.clone();
    let duplicates = ack.duplicates;
    let receipts = std::mem::take(&mut ack.receipts);
    let receipts_later = ack.receipts_later;
    let refused: Vec<u64> = ack.refused.iter().map(|r| r.seq).collect();
    let batch = match blocking(move || record_ack(&writer, &batch, &ack).map(|()| batch)).await {
        Ok(batch) => batch,
        Err(e) => return Err(Ended::Failed(e.context("recording the ack in the spool"))),
    };
    if let Some(witness) = link.witness
        && receipts_later
    {
        witness
            .lock()
            .expect("log witness lock")
            .await_receipt(&batch.ids, &refused);
    } else if let Some(witness) = link.witness {
        for finding in witness
            .lock()
            .expect("log witness lock")
            .receipts(&batch.ids, &receipts)
        {
            tracing::error!(
                kind = finding.kind,
                "the server's receipt is wrong: {}",
                finding.detail
            );
        }
    }
    if duplicates > 0 {
        tracing::debug!(duplicates, "server already had some resent events");
    }
    Ok(())
}

/// The stream to the server closed while sending: the server ended it, so read
/// what it answered before (acks) and why (its refusal names the oldest batch
/// in flight), for a short while.
async fn closed(
    link: &Link<'_>,
    acks: &mut tonic::Streaming<ServerMessage>,
    in_flight: &mut VecDeque<InFlight>,
) -> Ended {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, acks.message()).await {
            Ok(answer) => {
                if let Err(ended) = on_answer(link, answer, in_flight).await {
                    return ended;
                }
            }
            Err(_) => return Ended::Failed(anyhow::anyhow!("the stream to the server closed")),
        }
    }
}

/// Connect, say Hello and open the ingest stream.
async fn open_stream(
    link: &Link<'_>,
) -> Result<(mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>), Ended> {
    let channel = connect_to(link.address, link.tls).await.map_err(Ended::Failed)?;
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel::<AgentMessage>(WINDOW + 4);
    let (host_id, boot_id) = link.identity;
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            host_id: host_id.clone(),
            boot_id: boot_id.clone(),
            agent_version: watchtower_proto::VERSION.to_owned(),
        })),
    };
    if tx.send(hello).await.is_err() {
        return Err(Ended::Failed(anyhow::anyhow!("stream closed before Hello")));
    }
    let acks = match client.stream(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return Err(Ended::Failed(anyhow::anyhow!(
                "the server refused the stream: {}: {}",
                status.code(),
                status.message()
            )));
        }
    };
    tracing::info!(server = link.address, "connected to the server");
    Ok((tx, acks))
}

#[cfg(test)]
mod tests {
    use watchtower_proto::pb::{Event, RefusedEvent};

    use super::*;
    use crate::spool::{Spool, SpoolConfig, read_quarantine};

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn spool_with(name: &str, records: &[Vec<u8>]) -> (Scratch, Arc<SharedSpool>) {
        let dir = std::env::temp_dir().join(format!("wt-sender-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut spool, _) = Spool::open(SpoolConfig {
            dir: dir.clone(),
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
        })
        .unwrap();
        spool.append(records).unwrap();
        (Scratch(dir), SharedSpool::new(spool))
    }

    fn event(seq: u64) -> Vec<u8> {
        Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            time_unix_ns: 1,
            body: None,
        }
        .encode_to_vec()
    }

    #[test]
    fn records_that_cannot_be_sent_are_quarantined_and_covered_not_sent() {
        let too_large = [event(4), vec![0u8; BATCH_BYTES]].concat();
        let (dir, shared) = spool_with(
            "unsendable",
            &[event(1), vec![0xff, 0xff], event(3), too_large, event(5)],
        );
        let (batch, events) = next_batch(&shared, 1, FULL_BATCHES).unwrap().unwrap();
        assert_eq!(
            (batch.last, &batch.indexes[..]),
            (3, &[1, 3][..]),
            "covers 2, sends 1 and 3"
        );
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
        // The record larger than any batch comes alone: covered, not sent.
        let (batch, events) = next_batch(&shared, 4, FULL_BATCHES).unwrap().unwrap();
        assert_eq!((batch.last, batch.indexes.len(), events.len()), (4, 0, 0));
        let (batch, _) = next_batch(&shared, 5, FULL_BATCHES).unwrap().unwrap();
        assert_eq!((batch.last, &batch.indexes[..]), (5, &[5][..]));
        let held: Vec<_> = read_quarantine(&dir.0)
            .unwrap()
            .into_iter()
            .map(|q| (q.index, q.reason.split(':').next().unwrap().to_owned()))
            .collect();
        assert_eq!(held, [(2, "undecodable".into()), (4, "too_large_to_send".into())]);
        // Read again (a new stream after a cut): the quarantined ones are not sent.
        let (batch, _) = next_batch(&shared, 1, FULL_BATCHES).unwrap().unwrap();
        assert_eq!((batch.last, &batch.indexes[..]), (3, &[1, 3][..]));
        let (batch, _) = next_batch(&shared, 4, FULL_BATCHES).unwrap().unwrap();
        assert_eq!((batch.last, batch.indexes.len()), (4, 0));
        assert_eq!(shared.health().dropped["quarantined"], 2);
    }

    #[test]
    fn refused_events_are_quarantined_by_position_before_the_ack() {
        let (dir, shared) = spool_with("refused", &[event(1), event(2), event(3)]);
        let (batch, _) = next_batch(&shared, 1, FULL_BATCHES).unwrap().unwrap();
        let refusal = |position| RefusedEvent {
            position,
            seq: 2,
            reason: "field_too_long".into(),
            detail: "event seq 2: login_attempt.user is 600 bytes, at most 512 are stored".into(),
        };
        // A position the batch does not have: nothing is acknowledged.
        let bad = Ack {
            batch_id: 3,
            refused: vec![refusal(3)],
            ..Ack::default()
        };
        assert!(record_ack(&shared, &batch, &bad).is_err());
        assert_eq!(shared.spool.lock().unwrap().acked(), 0);
        let ack = Ack {
            batch_id: 3,
            stored: 2,
            refused: vec![refusal(1)],
            ..Ack::default()
        };
        record_ack(&shared, &batch, &ack).unwrap();
        let spool = shared.spool.lock().unwrap();
        assert_eq!((spool.acked(), spool.pending(), spool.quarantined()), (3, 0, 1));
        drop(spool);
        let held = read_quarantine(&dir.0).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].index, 2);
        assert!(
            held[0].reason.starts_with("field_too_long: event seq 2"),
            "{}",
            held[0].reason
        );
        assert_eq!(Event::decode(held[0].record.as_slice()).unwrap().seq, 2);
    }
}
