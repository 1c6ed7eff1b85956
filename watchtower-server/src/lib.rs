//! Watchtower's central store: agents stream events over gRPC with mutual TLS,
//! the server keeps them in `RocksDB` indexed by host, time, user, session and
//! remote address, and answers queries and live tails.
//!
//! # Layout
//!
//! - [`grpc`]: the edge, and the only module that sees protobuf messages:
//!   [`grpc::ingest`] takes each agent's stream, [`grpc::query`] answers
//!   readers, each converting to and from the domain types of watchtower-model
//!   (everything behind the edge works with those); [`grpc::status`] is the one
//!   place a failure becomes a `tonic::Status` (and a refusal is counted and
//!   logged).
//! - [`store`]: the only code that touches `RocksDB`.
//!   **[`store::append`] turns an ingested batch into `RocksDB` writes**;
//!   [`store::keys`] holds every key and value encoding with a table of all 15
//!   column families; [`store::query`] reads events back, [`store::hosts`] keeps
//!   host records, [`store::log`] the tamper-evidence leaves, subtree hashes,
//!   proofs and checkpoints, [`store::alerts`] the alerts, [`store::retention`]
//!   removes by age. The log's format (leaf entries, proofs, checkpoints) is the
//!   watchtower-tlog crate's.
//! - [`tamper`]: signed checkpoints ([`tamper::checkpoint`]) and the server's
//!   own audit of the store ([`tamper::verify`]).
//! - [`alerts`]: the alert rules over the stored events, and their
//!   [`alerts::webhook`] delivery.
//! - [`metrics`]: what `/metrics` shows, and the HTTP [`metrics::exporter`].
//! - [`facets`]: what an event is about (users, sessions, addresses), filters
//!   and the checks an event passes before it is stored.
//! - [`tls`]: mutual TLS, identities and revocation; [`config`]: the server's
//!   configuration; [`counters`]: what the server stored, dropped and refused.
//!
//! Dependencies run one way: `grpc` → `store`, `tamper`, `facets`; `alerts` and
//! `metrics` → `store`; `tamper::verify` and `tamper::checkpoint` → `store`; the
//! store uses only `facets` and watchtower-tlog.

pub mod admission;
pub mod alerts;
pub mod config;
pub mod counters;
pub mod facets;
pub mod fleet;
pub mod grpc;
pub mod metrics;
pub mod store;
pub mod tamper;
pub mod tls;

/// The ingest service at its former path (the benchmark embeds it).
pub use grpc::ingest;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::broadcast;
use watchtower_proto::pb::ingest_server::IngestServer;
use watchtower_proto::pb::query_server::QueryServer;

use crate::config::ServerConfig;
use crate::counters::ServerCounters;
use crate::metrics::Metrics;
use crate::store::EventStore;
use crate::tamper::CheckpointSigner;

/// A fresh directory for a unit test's real `RocksDB`, removed afterwards.
#[cfg(test)]
pub(crate) struct Scratch(pub std::path::PathBuf);

#[cfg(test)]
impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("wt-{name}-{}-{}", std::process::id(), now_unix_ns()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

#[cfg(test)]
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Nanoseconds since the Unix epoch.
#[must_use]
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How long open connections may finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Events a live tail may fall behind before it is cut off.
const LIVE_BUFFER: usize = 16_384;

/// Run the server until `shutdown` resolves.
#[expect(
    clippy::too_many_lines,
    reason = "start-up and shutdown of every part, in order"
)]
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate()?;
    match config.fleet.role {
        Some(config::FleetRole::FrontDoor) => return fleet::front_door::serve(config, shutdown).await,
        Some(config::FleetRole::Query) => return fleet::query_node::serve(config, shutdown).await,
        Some(config::FleetRole::Indexer) | None => {}
    }
    let tls = tls::server_config(&tls::TlsFiles {
        ca: config.tls.ca.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        crls: config.tls.crls.clone(),
    })?;
    std::fs::create_dir_all(&config.server.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", config.server.data_dir.display()))?;
    let store = Arc::new(EventStore::open(&config.server.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the event store in {}: {e}",
            config.server.data_dir.display()
        )
    })?);
    // An indexer joins the stream before it listens: a NATS it cannot reach stops it here.
    let fleet_js = if config.fleet.role == Some(config::FleetRole::Indexer) {
        let nats = fleet::connect(&config.fleet).await?;
        let js = async_nats::jetstream::new(nats.clone());
        fleet::ensure_stream(&js, &config.fleet).await?;
        fleet::refuse_lossy_nats(&nats, &config.fleet)?;
        // Its agents' Acks come from front doors, before their events are logged:
        // their receipts are kept by event, for the agents to ask for.
        store.keep_receipts_by_event();
        Some(js)
    } else {
        None
    };
    let signer = Arc::new(
        CheckpointSigner::load(&config.signing_key(), &config.origin(), &store)?
            .publishing_to(config.log.publish_checkpoint_to.clone()),
    );
    tracing::info!(
        verifier_key = %signer.verifier_key(),
        file = %tamper::checkpoint::public_key_path(&config.signing_key()).display(),
        "tamper-evidence log: checkpoints are signed with this key (pin its verifier key to verify)"
    );
    signer.checkpoint(&store, "start")?;
    let counters = Arc::new(ServerCounters::default());
    // An indexer's agents are connected through front doors: a stream of theirs
    // silent for longer than a host takes to go stale is taken as gone.
    counters.relayed_silence_ns.store(
        config.exporter.stale_after_secs.saturating_mul(1_000_000_000),
        std::sync::atomic::Ordering::Relaxed,
    );
    let revocations = tls::Revocations::load(config.tls.revoked.clone());
    let revocation_watch = revocations.watch();
    let open_sessions = store.open_sessions()?;
    let metrics = Arc::new(Metrics::new(open_sessions));
    let (live, _) = broadcast::channel(LIVE_BUFFER);

    let (alerts, webhook_queue) = alerts::AlertEngine::new(
        config.alerts.clone(),
        store.clone(),
        metrics.clone(),
        live.clone(),
    )?;
    let rules = alerts.spawn();
    let delivery = match (&config.alerts.webhook_url, webhook_queue) {
        (Some(url), Some(queue)) => {
            let hook =
                alerts::webhook::Webhook::new(url, Duration::from_secs(config.alerts.webhook_timeout_secs))?
                    .with_format(config.alerts.webhook_format);
            tracing::info!(url = hook.shown(), "alerts are sent to the webhook");
            Some(alerts::webhook::spawn(
                hook,
                queue,
                config.alerts.webhook_attempts,
                metrics.clone(),
            ))
        }
        _ => None,
    };
    let retention = spawn_retention(store.clone(), counters.clone(), signer.clone(), &config);
    let checkpoints = spawn_checkpoints(store.clone(), signer.clone(), &config);

    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let exporter = metrics::exporter::start(
        &config.exporter,
        metrics.clone(),
        counters.clone(),
        metrics::exporter::Source::Store(store.clone()),
        stopping.clone(),
    )
    .await?;

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    let address = listener.local_addr()?;
    let open_files = admission::raise_open_file_limit()
        .map_err(|e| anyhow::anyhow!("cannot read the open-file limit: {e}"))?;
    let limits = config.server.connections.within_open_files(open_files);
    if limits != config.server.connections {
        tracing::warn!(
            open_files,
            max_connections = limits.max_connections,
            max_handshakes = limits.max_handshakes,
            "connection caps lowered to fit the open-file limit"
        );
    }
    let admission = admission::Admission::new(limits, counters.clone());
    tracing::info!(%address, data_dir = %config.server.data_dir.display(), "watchtower-server listening (mutual TLS)");

    let ingest = grpc::ingest::IngestService {
        store: store.clone(),
        counters: counters.clone(),
        metrics: metrics.clone(),
        live: live.clone(),
        alerts: Some(alerts.clone()),
        max_batch_events: config.ingest.max_batch_events,
        revocations: revocations.clone(),
        verifier_key: signer.verifier_key().to_owned(),
    };
    // An indexer stores what its shard of the stream holds; agents reach front doors.
    let indexer = fleet_js.map(|js| {
        tokio::spawn(fleet::indexer::run(
            js,
            config.fleet.clone(),
            ingest.clone(),
            stopping.clone(),
        ))
    });
    let ingest = indexer.is_none().then_some(ingest);
    let query = grpc::query::QueryService {
        store: store.clone(),
        counters: counters.clone(),
        signer: signer.clone(),
        live,
        revocations: revocations.clone(),
    };
    let max = config.ingest.max_message_bytes;
    let mut stopping = stopping.clone();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .add_optional_service(ingest.map(|ingest| IngestServer::new(ingest).max_decoding_message_size(max)))
        .add_service(QueryServer::new(query).max_decoding_message_size(max))
        .serve_with_incoming_shutdown(
            tls::incoming(listener, tls, admission, counters, revocations),
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            },
        );
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            // Every acknowledged batch is already synced: idle clients (a reader
            // holding its connection) get a short grace, not a veto.
            let _ = stopping_tx.send(true);
            if let Ok(result) = tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                result
            } else {
                tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}: closing them");
                Ok(())
            }
        }
    };
    if let Some(indexer) = indexer {
        // Stops at its next fetch; what it stored is acknowledged or comes again.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, indexer).await;
    }
    retention.abort();
    checkpoints.abort();
    revocation_watch.abort();
    rules.abort();
    if let Some(delivery) = delivery {
        delivery.abort();
    }
    if let Some(exporter) = exporter {
        let _ = exporter.await;
    }
    result?;
    let store_at_stop = store.clone();
    match tokio::task::spawn_blocking(move || signer.checkpoint(&store_at_stop, "shutdown")).await {
        Ok(Ok(signed)) => tracing::info!(size = signed.size, "signed the log at shutdown"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot sign the log at shutdown"),
        Err(e) => tracing::error!(error = %e, "shutdown checkpoint task failed"),
    }
    tracing::info!("watchtower-server stopped");
    Ok(())
}

/// Sign the log at intervals when it has grown since the last checkpoint.
fn spawn_checkpoints(
    store: Arc<EventStore>,
    signer: Arc<CheckpointSigner>,
    config: &ServerConfig,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(config.log.checkpoint_interval_secs);
    tokio::spawn(async move {
        loop {
            let store = store.clone();
            let signer = signer.clone();
            let signed = tokio::task::spawn_blocking(move || {
                let last = store.latest_checkpoint()?.map(|c| c.size);
                if last == Some(store.log_head().size) {
                    return Ok(None);
                }
                signer.checkpoint(&store, "periodic").map(Some)
            })
            .await;
            match signed {
                Ok(Ok(Some(signed))) => tracing::debug!(size = signed.size, "signed a checkpoint of the log"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot sign a checkpoint"),
                Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Retention by age: explicit, logged, announced in the log and signed, recorded
/// in the store.
fn spawn_retention(
    store: Arc<EventStore>,
    counters: Arc<ServerCounters>,
    signer: Arc<CheckpointSigner>,
    config: &ServerConfig,
) -> tokio::task::JoinHandle<()> {
    let days = u64::from(config.retention.days);
    let every = Duration::from_secs(config.retention.check_interval_secs);
    tokio::spawn(async move {
        if days == 0 {
            tracing::info!("retention off: events are kept forever");
            return;
        }
        loop {
            let cutoff = now_unix_ns().saturating_sub(days * 86_400 * 1_000_000_000);
            counters.retention_cutoff.store(cutoff, Relaxed);
            let store = store.clone();
            let signer = signer.clone();
            match tokio::task::spawn_blocking(move || {
                // The cut-off is a leaf of the log, signed, before anything is
                // removed: no removal is silent, and an audit knows which missing
                // records retention took.
                if store.oldest_event()?.is_some_and(|oldest| oldest < cutoff) {
                    store.log_retention(cutoff, now_unix_ns())?;
                    signer.checkpoint(&store, "retention")?;
                }
                let removed = store.prune_before(cutoff)?;
                let record = format!(
                    "cutoff_unix_ns={cutoff} removed={removed} at_unix_ns={}",
                    now_unix_ns()
                );
                store.put_meta(store::keys::RETENTION, record.as_bytes())?;
                Ok::<_, store::StoreError>(removed)
            })
            .await
            {
                Ok(Ok(removed)) => {
                    counters.retention_removed.fetch_add(removed, Relaxed);
                    if removed > 0 {
                        tracing::warn!(
                            removed,
                            cutoff_unix_ns = cutoff,
                            days,
                            "retention removed events older than the cut-off"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
                Err(e) => tracing::error!(error = %e, "retention task failed"),
            }
            tokio::time::sleep(every).await;
        }
    })
}
