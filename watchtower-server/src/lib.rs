//! Watchtower's central store: agents stream events over gRPC with mutual TLS,
//! the server keeps them in `RocksDB` indexed by host, time, user, session and
//! remote address, and answers queries and live tails.

pub mod config;
pub mod counters;
pub mod facets;
pub mod ingest;
pub mod keys;
pub mod query;
pub mod store;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::broadcast;
use watchtower_proto::ingest_server::IngestServer;
use watchtower_proto::query_server::QueryServer;

use crate::config::ServerConfig;
use crate::counters::ServerCounters;
use crate::store::EventStore;

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
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate()?;
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
    let counters = Arc::new(ServerCounters::default());
    let (live, _) = broadcast::channel(LIVE_BUFFER);

    let retention = spawn_retention(store.clone(), counters.clone(), &config);

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, data_dir = %config.server.data_dir.display(), "watchtower-server listening (mutual TLS)");

    let ingest = ingest::IngestService {
        store: store.clone(),
        counters: counters.clone(),
        live: live.clone(),
        max_batch_events: config.ingest.max_batch_events,
    };
    let query = query::QueryService {
        store: store.clone(),
        counters: counters.clone(),
        live,
    };
    let max = config.ingest.max_message_bytes;
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .add_service(IngestServer::new(ingest).max_decoding_message_size(max))
        .add_service(QueryServer::new(query).max_decoding_message_size(max))
        .serve_with_incoming_shutdown(tls::incoming(listener, tls, counters), async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        });
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
    retention.abort();
    result?;
    tracing::info!("watchtower-server stopped");
    Ok(())
}

/// Retention by age: explicit, logged, recorded in the store.
fn spawn_retention(
    store: Arc<EventStore>,
    counters: Arc<ServerCounters>,
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
            match tokio::task::spawn_blocking(move || {
                let removed = store.prune_before(cutoff)?;
                let record = format!(
                    "cutoff_unix_ns={cutoff} removed={removed} at_unix_ns={}",
                    now_unix_ns()
                );
                store.put_meta("retention", record.as_bytes())?;
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
