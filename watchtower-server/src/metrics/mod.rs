//! What /metrics shows, in the `OpenMetrics` text format (prometheus-client).
//!
//! Cardinality is kept bounded on purpose: no metric is labelled by user, address
//! or session, and `host` appears only on a few per-host health gauges (last
//! heartbeat, spool, kernel losses, stale). Fleet-wide counters carry the service,
//! outcome, kind, cause or reason only, and every label value that comes from an
//! agent's payload is mapped onto a fixed set first: the PAM service onto
//! [`SERVICES`] (anything else is `other`), a kernel loss cause onto
//! [`KERNEL_CAUSES`]. The other label values are the server's own names.

pub mod exporter;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use watchtower_model::{Body, HostInfo, StoredEvent};

use crate::counters::ServerCounters;
use crate::facets::InvalidEvent;

/// The PAM services logins are counted under; any other is `other`.
pub const SERVICES: [&str; 9] = [
    "sshd",
    "su",
    "su-l",
    "sudo",
    "sudo-i",
    "login",
    "cron",
    "systemd-user",
    "other",
];

/// The kernel loss causes (the agent's record kinds) a host's losses are shown
/// under; any other is `other`.
pub const KERNEL_CAUSES: [&str; 9] = [
    "pam_start",
    "pam_item",
    "pam_call",
    "exec",
    "connect",
    "fork",
    "exit",
    "session_link",
    "other",
];

/// Why a host's assembler let records go (its bounds reached); any other is `other`.
pub const EVICTION_REASONS: [&str; 4] = [
    "unprivileged_pam_transaction",
    "pam_transaction",
    "session",
    "other",
];

/// Set `family`'s gauges of `host` from `counts`, each under its cause if it is one
/// of `allowed`, else summed under `other`.
fn set_by_cause<const N: usize>(
    family: &Family<HostCauseLabels, Gauge>,
    host: &str,
    allowed: &[&'static str; N],
    counts: &std::collections::HashMap<String, u64>,
) {
    let mut by_cause: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (cause, n) in counts {
        *by_cause.entry(fixed(allowed, cause)).or_default() += n;
    }
    for (cause, n) in by_cause {
        family
            .get_or_create(&HostCauseLabels {
                host: host.to_owned(),
                cause,
            })
            .set(n as i64);
    }
}

/// `value` if it is one of `allowed`, else `other` (the last of `allowed`).
fn fixed<const N: usize>(allowed: &[&'static str; N], value: &str) -> &'static str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or(allowed[N - 1])
}

/// The `service` label of a login: the PAM service if it is a known one, else `other`.
#[must_use]
pub fn service_label(service: &str) -> &'static str {
    fixed(&SERVICES, service)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    service: &'static str,
    outcome: &'static str,
    /// remote (the attempt names a remote host) or local (su, sudo, a console).
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostCauseLabels {
    host: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SigmaLabels {
    state: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The state of the fleet at scrape time, read from the store.
pub struct Snapshot<'a> {
    pub hosts: &'a [HostInfo],
    pub stale_after_ns: u64,
    pub now_unix_ns: u64,
    pub log_size: u64,
    pub last_checkpoint_unix_ns: u64,
}

pub struct Metrics {
    registry: Registry,
    /// What a front door shows: its ingest edge and its NATS connection (it has
    /// no store, so no hosts, sessions or log).
    front_door_registry: Registry,
    nats_connected: Gauge,
    logins: Family<LoginLabels, Counter>,
    events: Family<KindLabels, Counter>,
    duplicates: Counter,
    batches: Counter,
    rejected: Family<ReasonLabels, Counter>,
    refused_events: Family<ReasonLabels, Counter>,
    time_ahead: Counter,
    tls_failures: Counter,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_open: Gauge,
    handshakes_open: Gauge,
    retention_removed: Counter,
    lag: Histogram,
    active_sessions: Gauge,
    lost: Family<CauseLabels, Gauge>,
    /// Events refused one by one since the server started (never stored).
    lost_refused: AtomicU64,
    hosts: Gauge,
    stale_hosts: Gauge,
    connected_agents: Gauge,
    subscribers: Gauge,
    host_last_heartbeat: Family<HostLabels, FloatGauge>,
    host_stale: Family<HostLabels, Gauge>,
    host_spool_pending: Family<HostLabels, Gauge>,
    host_spool_bytes: Family<HostLabels, Gauge>,
    host_spool_quarantined: Family<HostLabels, Gauge>,
    host_kernel_lost: Family<HostCauseLabels, Gauge>,
    host_assembler_evicted: Family<HostCauseLabels, Gauge>,
    alerts: Family<RuleLabels, Counter>,
    webhook: Family<ResultLabels, Counter>,
    fleet: Family<ResultLabels, Counter>,
    log_size: Gauge,
    last_checkpoint: FloatGauge,
    alert_read_back: Counter,
    sigma_rules: Family<SigmaLabels, Gauge>,
    exporter_unauthorized: Counter,
}

impl Metrics {
    /// The registry with every metric; `open_sessions` is the store's count at start.
    #[must_use]
    #[expect(clippy::too_many_lines, reason = "one registration per metric")]
    pub fn new(open_sessions: u64) -> Metrics {
        let mut registry = Registry::with_prefix("watchtower");
        let mut front_door_registry = Registry::with_prefix("watchtower");
        let m = Metrics {
            registry: Registry::default(),
            front_door_registry: Registry::default(),
            nats_connected: Gauge::default(),
            logins: Family::default(),
            events: Family::default(),
            duplicates: Counter::default(),
            batches: Counter::default(),
            rejected: Family::default(),
            refused_events: Family::default(),
            time_ahead: Counter::default(),
            tls_failures: Counter::default(),
            connections_refused: Family::default(),
            connections_open: Gauge::default(),
            handshakes_open: Gauge::default(),
            retention_removed: Counter::default(),
            lag: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
            ]),
            active_sessions: Gauge::default(),
            lost: Family::default(),
            lost_refused: AtomicU64::new(0),
            hosts: Gauge::default(),
            stale_hosts: Gauge::default(),
            connected_agents: Gauge::default(),
            subscribers: Gauge::default(),
            host_last_heartbeat: Family::default(),
            host_stale: Family::default(),
            host_spool_pending: Family::default(),
            host_spool_bytes: Family::default(),
            host_spool_quarantined: Family::default(),
            host_kernel_lost: Family::default(),
            host_assembler_evicted: Family::default(),
            alerts: Family::default(),
            webhook: Family::default(),
            fleet: Family::default(),
            log_size: Gauge::default(),
            last_checkpoint: FloatGauge::default(),
            alert_read_back: Counter::default(),
            sigma_rules: Family::default(),
            exporter_unauthorized: Counter::default(),
        };
        m.active_sessions.set(open_sessions as i64);
        // Every reason a single event is refused for is shown, zero or not.
        for reason in InvalidEvent::REASONS {
            if reason != "host_mismatch" {
                m.refused_events.get_or_create(&ReasonLabels { reason }).inc_by(0);
            }
        }
        registry.register(
            "logins",
            "Login attempts stored, by PAM service, outcome and origin (remote or local)",
            m.logins.clone(),
        );
        registry.register("events_ingested", "Events stored, by kind", m.events.clone());
        registry.register(
            "events_duplicate",
            "Events received again (resent after a cut) and not stored twice",
            m.duplicates.clone(),
        );
        registry.register(
            "events_time_ahead",
            "Events stored whose time was more than 10 minutes ahead of the server's clock \
             (stored with the note ingest/time_ahead)",
            m.time_ahead.clone(),
        );
        registry.register(
            "retention_removed_events",
            "Events removed by retention by age (each cut announced by a signed checkpoint)",
            m.retention_removed.clone(),
        );
        registry.register_with_unit(
            "ingest_lag",
            "Time from an event happening on its host to it being stored",
            prometheus_client::registry::Unit::Seconds,
            m.lag.clone(),
        );
        registry.register(
            "active_sessions",
            "Login sessions started and not yet ended, fleet-wide",
            m.active_sessions.clone(),
        );
        registry.register(
            "events_lost",
            "Events lost, by cause: kernel (ring buffer full) and spool (dropped by the agent) as \
             the agents last reported them; transport (events the server refused, each kept in its \
             agent's quarantine) since the server started",
            m.lost.clone(),
        );
        registry.register("hosts", "Hosts that ever sent events", m.hosts.clone());
        registry.register(
            "stale_hosts",
            "Hosts whose agent is not connected and has not been heard from within the stale limit",
            m.stale_hosts.clone(),
        );
        registry.register("live_subscribers", "Live tails open now", m.subscribers.clone());
        registry.register_with_unit(
            "host_last_heartbeat_timestamp",
            "When each host's agent was last heard from (Unix time)",
            prometheus_client::registry::Unit::Seconds,
            m.host_last_heartbeat.clone(),
        );
        registry.register(
            "host_stale",
            "1 when the host's agent is stale",
            m.host_stale.clone(),
        );
        registry.register(
            "host_spool_pending_events",
            "Events in the host's spool waiting for the server's acknowledgement",
            m.host_spool_pending.clone(),
        );
        registry.register_with_unit(
            "host_spool",
            "Size of the host's spool",
            prometheus_client::registry::Unit::Bytes,
            m.host_spool_bytes.clone(),
        );
        registry.register(
            "host_spool_quarantined_events",
            "Events the host's agent keeps in quarantine (refused by the server as invalid)",
            m.host_spool_quarantined.clone(),
        );
        registry.register(
            "host_kernel_lost_events",
            "Ring-buffer losses in the host's kernel by record kind, as its agent last reported",
            m.host_kernel_lost.clone(),
        );
        registry.register(
            "host_assembler_evicted",
            "PAM transactions and sessions the host's agent let go because its bounds were \
             reached, by reason, as its agent last reported (what a let-go session runs after \
             is no longer attributed to its login)",
            m.host_assembler_evicted.clone(),
        );
        registry.register("alerts", "Alerts raised, by rule", m.alerts.clone());
        registry.register(
            "webhook_deliveries",
            "Alert webhook deliveries, by result (delivered, retried, failed, dropped)",
            m.webhook.clone(),
        );
        registry.register(
            "log_leaves",
            "Leaves in the tamper-evidence log (every event ever stored)",
            m.log_size.clone(),
        );
        registry.register_with_unit(
            "log_last_checkpoint_timestamp",
            "When the tamper-evidence log was last signed (Unix time)",
            prometheus_client::registry::Unit::Seconds,
            m.last_checkpoint.clone(),
        );
        registry.register(
            "sigma_rules",
            "Sigma rules of the rules directory, by state (loaded, failed: each failure is logged by file)",
            m.sigma_rules.clone(),
        );
        registry.register(
            "alert_read_back_events",
            "Stored records the alert rules read back from the log because they were not handed over in time (none is skipped)",
            m.alert_read_back.clone(),
        );
        m.register_ingest_edge(&mut registry);
        m.register_ingest_edge(&mut front_door_registry);
        front_door_registry.register(
            "nats_connected",
            "Fleet mode, front door: 1 while its NATS connection is up (without it no batch is \
             acknowledged)",
            m.nats_connected.clone(),
        );
        Metrics {
            registry,
            front_door_registry,
            ..m
        }
    }

    /// The metrics of the ingest edge (a single server, an indexer and a front
    /// door alike): connections, TLS, batches and what was refused, fleet messages.
    fn register_ingest_edge(&self, registry: &mut Registry) {
        registry.register(
            "ingest_batches",
            "Batches acknowledged to their agents (stored; at a front door, held by JetStream)",
            self.batches.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Streams, messages and batches refused, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "ingest_refused_events",
            "Events refused one by one at ingest, by reason (the rest of their batch is stored, \
             the agent quarantines them)",
            self.refused_events.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes refused (no, expired or foreign certificate, ...)",
            self.tls_failures.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections to the gRPC listener closed before their TLS handshake, by the cap they \
             met (connections_full, handshakes_full, source_handshakes_full)",
            self.connections_refused.clone(),
        );
        registry.register(
            "connections_open",
            "Connections to the gRPC listener open now (handshaking or established)",
            self.connections_open.clone(),
        );
        registry.register(
            "tls_handshakes_open",
            "TLS handshakes in progress on the gRPC listener",
            self.handshakes_open.clone(),
        );
        registry.register(
            "connected_agents",
            "Agents connected now",
            self.connected_agents.clone(),
        );
        registry.register(
            "fleet_messages",
            "Fleet mode: messages through the JetStream ingest stream, by result (published, \
             duplicate, publish_failed, stream_full at a front door; stored, malformed, \
             store_retry at an indexer)",
            self.fleet.clone(),
        );
        registry.register(
            "exporter_unauthorized_requests",
            "Requests to the exporter without the right bearer token",
            self.exporter_unauthorized.clone(),
        );
    }

    /// Count what a batch newly stored.
    pub fn stored(&self, stored: &[StoredEvent], duplicates: u32) {
        self.duplicates.inc_by(u64::from(duplicates));
        for s in stored {
            let Some(event) = &s.event else { continue };
            self.events
                .get_or_create(&KindLabels {
                    kind: event.kind().name(),
                })
                .inc();
            let lag = s.received_unix_ns.saturating_sub(event.time_unix_ns);
            self.lag.observe(lag as f64 / 1e9);
            match &event.body {
                Some(Body::LoginAttempt(attempt)) => {
                    let outcome = attempt.outcome;
                    self.logins
                        .get_or_create(&LoginLabels {
                            service: service_label(&attempt.service),
                            outcome: outcome.name(),
                            origin: if attempt.remote_host.as_deref().is_some_and(|r| !r.is_empty()) {
                                "remote"
                            } else {
                                "local"
                            },
                        })
                        .inc();
                }
                Some(Body::SessionStart(_)) => {
                    self.active_sessions.inc();
                }
                Some(Body::SessionEnd(_)) if self.active_sessions.get() > 0 => {
                    self.active_sessions.dec();
                }
                _ => {}
            }
        }
    }

    /// Events the server refused one by one (they will not be stored).
    pub fn refused(&self, events: usize) {
        self.lost_refused.fetch_add(events as u64, Relaxed);
    }

    /// One event refused for `reason` (one of [`InvalidEvent::REASONS`]).
    pub fn refused_event(&self, reason: &'static str) {
        self.refused_events.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Events stored with the `ingest/time_ahead` note.
    pub fn time_ahead(&self, events: usize) {
        self.time_ahead.inc_by(events as u64);
    }

    pub fn alert(&self, rule: &str) {
        self.alerts
            .get_or_create(&RuleLabels {
                rule: rule.to_owned(),
            })
            .inc();
    }

    /// `n` fleet messages with `result` (see `fleet_messages`).
    pub fn fleet(&self, result: &'static str, n: u64) {
        self.fleet.get_or_create(&ResultLabels { result }).inc_by(n);
    }

    pub fn webhook(&self, result: &'static str) {
        self.webhook.get_or_create(&ResultLabels { result }).inc();
    }

    /// The Sigma rule set now: how many rules loaded and how many files failed.
    pub fn sigma_rules(&self, loaded: u64, failed: u64) {
        for (state, n) in [("loaded", loaded), ("failed", failed)] {
            self.sigma_rules
                .get_or_create(&SigmaLabels { state })
                .set(n as i64);
        }
    }

    pub fn alert_read_back(&self, n: u64) {
        self.alert_read_back.inc_by(n);
    }

    pub fn unauthorized(&self) {
        self.exporter_unauthorized.inc();
    }

    /// Bring the values kept in `counters` up to date.
    fn take_counters(&self, counters: &ServerCounters) {
        self.batches
            .inner()
            .store(counters.batches.load(Relaxed), Relaxed);
        self.tls_failures
            .inner()
            .store(counters.tls_failures.load(Relaxed), Relaxed);
        self.retention_removed
            .inner()
            .store(counters.retention_removed.load(Relaxed), Relaxed);
        for (reason, n) in counters.connections_refused() {
            self.connections_refused
                .get_or_create(&ReasonLabels { reason })
                .inner()
                .store(n, Relaxed);
        }
        self.connections_open
            .set(counters.connections_open.load(Relaxed) as i64);
        self.handshakes_open
            .set(counters.handshakes_open.load(Relaxed) as i64);
        for (reason, n) in counters.rejected() {
            self.rejected
                .get_or_create(&ReasonLabels { reason })
                .inner()
                .store(n, Relaxed);
        }
        self.connected_agents.set(counters.connected_hosts() as i64);
        self.subscribers.set(counters.subscribers.load(Relaxed) as i64);
    }

    /// What a front door's /metrics shows; `nats_connected` is its connection's state.
    pub fn render_front_door(&self, counters: &ServerCounters, nats_connected: bool) -> String {
        self.take_counters(counters);
        self.nats_connected.set(i64::from(nats_connected));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.front_door_registry)
            .expect("encoding into a String cannot fail");
        out
    }

    /// Bring the scrape-time values up to date and encode everything.
    pub fn render(&self, counters: &ServerCounters, snapshot: &Snapshot<'_>) -> String {
        self.take_counters(counters);
        self.log_size.set(snapshot.log_size as i64);
        self.last_checkpoint
            .set(snapshot.last_checkpoint_unix_ns as f64 / 1e9);

        // Per-host gauges are rebuilt so hosts that vanished (never, today) leave no stale series.
        self.host_last_heartbeat.clear();
        self.host_stale.clear();
        self.host_spool_pending.clear();
        self.host_spool_bytes.clear();
        self.host_spool_quarantined.clear();
        self.host_kernel_lost.clear();
        self.host_assembler_evicted.clear();
        let (mut kernel, mut spool, mut stale) = (0u64, 0u64, 0i64);
        for host in snapshot.hosts {
            let labels = HostLabels {
                host: host.host_id.clone(),
            };
            // Heartbeats alone tell (a connection held open without them is stale).
            let is_stale =
                snapshot.now_unix_ns.saturating_sub(host.last_heartbeat_unix_ns) > snapshot.stale_after_ns;
            stale += i64::from(is_stale);
            self.host_last_heartbeat
                .get_or_create(&labels)
                .set(host.last_heartbeat_unix_ns as f64 / 1e9);
            self.host_stale.get_or_create(&labels).set(i64::from(is_stale));
            if let Some(s) = &host.spool {
                self.host_spool_pending
                    .get_or_create(&labels)
                    .set(s.pending as i64);
                self.host_spool_bytes.get_or_create(&labels).set(s.bytes as i64);
                self.host_spool_quarantined
                    .get_or_create(&labels)
                    .set(s.quarantined as i64);
                spool += s.dropped.values().sum::<u64>();
            }
            kernel += host.kernel_lost.values().sum::<u64>();
            set_by_cause(
                &self.host_kernel_lost,
                &host.host_id,
                &KERNEL_CAUSES,
                &host.kernel_lost,
            );
            set_by_cause(
                &self.host_assembler_evicted,
                &host.host_id,
                &EVICTION_REASONS,
                &host.assembler_evicted,
            );
        }
        self.hosts.set(snapshot.hosts.len() as i64);
        self.stale_hosts.set(stale);
        self.lost
            .get_or_create(&CauseLabels { cause: "kernel" })
            .set(kernel as i64);
        self.lost
            .get_or_create(&CauseLabels { cause: "spool" })
            .set(spool as i64);
        self.lost
            .get_or_create(&CauseLabels { cause: "transport" })
            .set(self.lost_refused.load(Relaxed) as i64);

        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }
}

/// The same metrics in the classic Prometheus text format (0.0.4), for scrapers
/// and tools that do not ask for `OpenMetrics` (promtool, curl): a counter's family
/// is named with its `_total` suffix, and `# UNIT` / `# EOF` are left out.
#[must_use]
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let family = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(help) = help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.split_once(' '))
                    .map_or("", |(_, text)| text);
                let _ = writeln!(out, "# HELP {family} {text}");
            }
            let _ = writeln!(out, "# TYPE {family} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
