//! The sender stage: delivers the spool ([`super::spool_writer`]) to the server. It
//! streams the events over gRPC with mutual TLS and removes them from the spool
//! only when the server acknowledges that they are stored. After any failure the
//! sender reconnects with backoff and resends everything not acknowledged (the
//! server drops what it already has).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use watchtower_pki::ClientTls;
use watchtower_proto::pb::ingest_client::IngestClient;
use watchtower_proto::pb::{AgentMessage, EventBatch, Heartbeat, Hello, agent_message, server_message};

use crate::config::Config;
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
            server_name: config.server.server_name.clone(),
            ca: config.server.ca.clone(),
            cert,
            key,
            heartbeat: Duration::from_secs(config.server.heartbeat_secs),
        })
    }
}

fn tls_of(link: &ServerLink) -> anyhow::Result<ClientTls> {
    Ok(ClientTls::from_files(
        &link.ca,
        &link.cert,
        &link.key,
        link.server_name.clone(),
    )?)
}

async fn connect(link: &ServerLink, tls: &ClientTls) -> anyhow::Result<Channel> {
    let channel = tls
        .endpoint(&link.address, Duration::from_secs(5))?
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", link.address))?;
    Ok(channel)
}

/// Why a connection ended.
enum Ended {
    /// Stopping and everything was delivered (or the grace ran out).
    Stopped,
    Failed(anyhow::Error),
}

/// Stage: deliver the spool to the server until `stop` is set (then keep trying
/// for a short grace while anything is pending).
pub async fn run(
    link: ServerLink,
    identity: (String, String),
    shared: Arc<SharedSpool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let tls = tls_of(&link)?;
    let mut backoff = BACKOFF_MIN;
    let mut drain_until: Option<tokio::time::Instant> = None;
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
        let ended = session(&link, &tls, &identity, &shared, &mut stop, drain_until).await;
        if shared.spool.lock().expect("spool lock").acked() > acked_before {
            // The link worked for a while: retry fast.
            backoff = BACKOFF_MIN;
        }
        match ended {
            Ended::Stopped => break,
            Ended::Failed(e) => {
                shared
                    .reconnects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "server link down, retrying in {:?} (events stay in the spool): {e:#}",
                    backoff
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed(), if drain_until.is_none() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
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

fn pending(shared: &SharedSpool) -> u64 {
    shared.spool.lock().expect("spool lock").pending()
}

#[expect(
    clippy::too_many_lines,
    reason = "one connection's life: hello, window, acks, heartbeats, stop"
)]
async fn session(
    link: &ServerLink,
    tls: &ClientTls,
    (host_id, boot_id): &(String, String),
    shared: &Arc<SharedSpool>,
    stop: &mut watch::Receiver<bool>,
    mut drain_until: Option<tokio::time::Instant>,
) -> Ended {
    let channel = match connect(link, tls).await {
        Ok(channel) => channel,
        Err(e) => return Ended::Failed(e),
    };
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel::<AgentMessage>(WINDOW + 4);
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            host_id: host_id.clone(),
            boot_id: boot_id.clone(),
            agent_version: watchtower_proto::VERSION.to_owned(),
        })),
    };
    if tx.send(hello).await.is_err() {
        return Ended::Failed(anyhow::anyhow!("stream closed before Hello"));
    }
    let mut acks = match client.stream(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return Ended::Failed(anyhow::anyhow!(
                "the server refused the stream: {}: {}",
                status.code(),
                status.message()
            ));
        }
    };
    tracing::info!(server = %link.address, "connected to the server");
    // Everything not acknowledged is sent again on a new stream.
    let mut next = shared.spool.lock().expect("spool lock").acked() + 1;
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut heartbeat = tokio::time::interval(link.heartbeat);
    loop {
        // Fill the window.
        while in_flight.len() < WINDOW {
            let reader = shared.clone();
            let from = next;
            let records = match tokio::task::spawn_blocking(move || {
                reader
                    .spool
                    .lock()
                    .expect("spool lock")
                    .read_from(from, BATCH_EVENTS, BATCH_BYTES)
            })
            .await
            {
                Ok(Ok(records)) => records,
                Ok(Err(e)) => return Ended::Failed(anyhow::anyhow!("reading the spool: {e}")),
                Err(e) => return Ended::Failed(anyhow::anyhow!("spool task: {e}")),
            };
            let Some(&(last, _)) = records.last() else {
                break;
            };
            let mut events = Vec::with_capacity(records.len());
            for (index, bytes) in records {
                match watchtower_proto::pb::Event::decode(bytes.as_slice()) {
                    Ok(event) => events.push(event),
                    // A record that passed its checksum but does not decode: it can
                    // never be delivered; say so loudly and go on.
                    Err(e) => tracing::error!(index, "undecodable spool record skipped: {e}"),
                }
            }
            let batch = AgentMessage {
                msg: Some(agent_message::Msg::Batch(EventBatch {
                    batch_id: last,
                    events,
                })),
            };
            if tx.send(batch).await.is_err() {
                return Ended::Failed(anyhow::anyhow!("the stream to the server closed"));
            }
            in_flight.push_back(last);
            next = last + 1;
        }
        if let Some(deadline) = drain_until {
            if in_flight.is_empty() && pending(shared) == 0 {
                return Ended::Stopped;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ended::Stopped;
            }
        }
        let deadline = drain_until.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_hours(1));
        tokio::select! {
            message = acks.message() => match message {
                Ok(Some(message)) => {
                    let Some(server_message::Msg::Ack(ack)) = message.msg else { continue };
                    if in_flight.front() != Some(&ack.batch_id) {
                        return Ended::Failed(anyhow::anyhow!(
                            "the server acknowledged batch {} while {:?} was expected",
                            ack.batch_id, in_flight.front()
                        ));
                    }
                    in_flight.pop_front();
                    let writer = shared.clone();
                    let acked = tokio::task::spawn_blocking(move || {
                        writer.spool.lock().expect("spool lock").ack(ack.batch_id)
                    }).await;
                    match acked {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Ended::Failed(anyhow::anyhow!("recording the ack in the spool: {e}")),
                        Err(e) => return Ended::Failed(anyhow::anyhow!("spool task: {e}")),
                    }
                    if ack.duplicates > 0 {
                        tracing::debug!(duplicates = ack.duplicates, "server already had some resent events");
                    }
                }
                Ok(None) => return Ended::Failed(anyhow::anyhow!("the server ended the stream")),
                Err(status) => return Ended::Failed(anyhow::anyhow!(
                    "the server refused: {}: {}", status.code(), status.message()
                )),
            },
            () = shared.added.notified(), if in_flight.len() < WINDOW => {}
            _ = heartbeat.tick() => {
                let beat = AgentMessage {
                    msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                        time_unix_ns: crate::clock::boot_to_unix_ns(crate::clock::boottime_ns()),
                        spool: Some(crate::wire::spool_health(&shared.health())),
                    })),
                };
                if tx.send(beat).await.is_err() {
                    return Ended::Failed(anyhow::anyhow!("the stream to the server closed"));
                }
            }
            _ = stop.changed(), if drain_until.is_none() => {
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
