//! The exporter: plain HTTP on its own port (loopback by default) with `/metrics`
//! for Prometheus and `/healthz` for load balancers and service managers. Off
//! loopback a bearer token is required (the config refuses to start otherwise).
//! A single server and an indexer show their store; a front door, which has none,
//! shows its ingest edge and its NATS connection.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Metrics, Snapshot};
use crate::config::ExporterSection;
use crate::counters::ServerCounters;
use crate::now_unix_ns;
use crate::store::EventStore;

/// What the exporter reads besides the counters.
pub enum Source {
    /// A single server or an indexer: its store (hosts, log, checkpoints).
    Store(Arc<EventStore>),
    /// A front door: its NATS connection (it keeps no store).
    FrontDoor(async_nats::Client),
}

pub struct Exporter {
    pub metrics: Arc<Metrics>,
    pub counters: Arc<ServerCounters>,
    pub source: Source,
    /// The bearer token scrapers must send, when set.
    pub token: Option<String>,
    pub stale_after_secs: u64,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Compare without leaking where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Exporter {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let ok = same(sent.trim().as_bytes(), token.as_bytes());
        if !ok {
            self.metrics.unauthorized();
        }
        ok
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required\n",
    )
        .into_response()
}

async fn metrics(State(exporter): State<Arc<Exporter>>, headers: HeaderMap) -> Response {
    if !exporter.authorized(&headers) {
        return unauthorized();
    }
    let store = match &exporter.source {
        Source::Store(store) => store.clone(),
        Source::FrontDoor(nats) => {
            let connected = nats.connection_state() == async_nats::connection::State::Connected;
            let text = exporter.metrics.render_front_door(&exporter.counters, connected);
            return formatted(&headers, text);
        }
    };
    let reading = store.clone();
    let read = tokio::task::spawn_blocking(move || {
        let hosts = reading.hosts()?;
        let last = reading.latest_checkpoint()?;
        Ok::<_, crate::store::StoreError>((hosts, last))
    })
    .await;
    let (hosts, last) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "/metrics cannot read the store");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store cannot be read: {e}\n"),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let log_size = store.log_head().size;
    let text = exporter.metrics.render(
        &exporter.counters,
        &Snapshot {
            hosts: &hosts,
            stale_after_ns: exporter.stale_after_secs.saturating_mul(1_000_000_000),
            now_unix_ns: now_unix_ns(),
            log_size,
            last_checkpoint_unix_ns: last.map_or(0, |c| c.time_unix_ns),
        },
    );
    formatted(&headers, text)
}

/// Prometheus asks for `OpenMetrics`; promtool and curl get the classic format.
fn formatted(headers: &HeaderMap, text: String) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, CLASSIC)], super::classic_text(&text)).into_response()
    }
}

async fn healthz(State(exporter): State<Arc<Exporter>>, headers: HeaderMap) -> Response {
    if !exporter.authorized(&headers) {
        return unauthorized();
    }
    let store = match &exporter.source {
        Source::Store(store) => store.clone(),
        Source::FrontDoor(nats) => return front_door_health(&exporter, nats),
    };
    let read = store.clone();
    match tokio::task::spawn_blocking(move || read.oldest_event()).await {
        Ok(Ok(_)) => {
            let log_size = store.log_head().size;
            let body = serde_json::json!({
                "status": "ok",
                "log_leaves": log_size,
                "connected_agents": exporter.counters.connected_hosts(),
            });
            ([(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                "{}\n",
                serde_json::json!({"status": "unavailable", "error": e.to_string()})
            ),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A front door is healthy while NATS is connected: without it no batch can be
/// acknowledged, and a load balancer should send agents to another.
fn front_door_health(exporter: &Exporter, nats: &async_nats::Client) -> Response {
    let state = nats.connection_state();
    let connected = state == async_nats::connection::State::Connected;
    let body = serde_json::json!({
        "status": if connected { "ok" } else { "unavailable" },
        "role": "front-door",
        "nats": state.to_string(),
        "connected_agents": exporter.counters.connected_hosts(),
    });
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Start the exporter `section` asks for (none when it has no address), serving
/// until `stopping` turns true.
///
/// # Errors
/// The token file cannot be read or is too short, or the address cannot be bound.
pub async fn start(
    section: &ExporterSection,
    metrics: Arc<Metrics>,
    counters: Arc<ServerCounters>,
    source: Source,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(listen) = section.listen else {
        return Ok(None);
    };
    let token = match &section.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the exporter token {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    anyhow::ensure!(
        token.as_ref().is_none_or(|t| t.len() >= 16),
        "the exporter token must be at least 16 characters"
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("exporter: cannot listen on {listen}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, token = token.is_some(), "exporter listening (/metrics, /healthz)");
    let state = Arc::new(Exporter {
        metrics,
        counters,
        source,
        token,
        stale_after_secs: section.stale_after_secs,
    });
    Ok(Some(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        if let Err(e) = serve(listener, state, shutdown).await {
            tracing::error!(error = %e, "the exporter stopped");
        }
    })))
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(exporter);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_exactly() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
        assert!(!same(b"", b"x"));
    }
}
