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
    alerts: Family<RuleLabels, Counter>,
    webhook: Family<ResultLabels, Counter>,
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
        let m = Metrics {
            registry: Registry::default(),
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
            alerts: Family::default(),
            webhook: Family::default(),
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
            "ingest_batches",
            "Batches stored and acknowledged",
            m.batches.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Streams, messages and batches refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "ingest_refused_events",
            "Events refused one by one at ingest, by reason (the rest of their batch is stored, \
             the agent quarantines them)",
            m.refused_events.clone(),
        );
        registry.register(
            "events_time_ahead",
            "Events stored whose time was more than 10 minutes ahead of the server's clock \
             (stored with the note ingest/time_ahead)",
            m.time_ahead.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes refused (no, expired or foreign certificate, ...)",
            m.tls_failures.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections to the gRPC listener closed before their TLS handshake, by the cap they \
             met (connections_full, handshakes_full, source_handshakes_full)",
            m.connections_refused.clone(),
        );
        registry.register(
            "connections_open",
            "Connections to the gRPC listener open now (handshaking or established)",
            m.connections_open.clone(),
        );
        registry.register(
            "tls_handshakes_open",
            "TLS handshakes in progress on the gRPC listener",
            m.handshakes_open.clone(),
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
        registry.register(
            "connected_agents",
            "Agents connected now",
            m.connected_agents.clone(),
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
        registry.register(
            "exporter_unauthorized_requests",
            "Requests to the exporter without the right bearer token",
            m.exporter_unauthorized.clone(),
        );
        Metrics { registry, ..m }
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

    /// Bring the scrape-time values up to date and encode everything.
    pub fn render(&self, counters: &ServerCounters, snapshot: &Snapshot<'_>) -> String {
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
            let mut causes: BTreeMap<&'static str, u64> = BTreeMap::new();
            for (cause, n) in &host.kernel_lost {
                kernel += n;
                *causes.entry(fixed(&KERNEL_CAUSES, cause)).or_default() += n;
            }
            for (cause, n) in causes {
                self.host_kernel_lost
                    .get_or_create(&HostCauseLabels {
                        host: host.host_id.clone(),
                        cause,
                    })
                    .set(n as i64);
            }
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
mod tests {
    use super::*;
    use watchtower_model::{Event, LoginAttempt, Outcome, SessionStart, SpoolHealth};

    #[test]
    fn every_metric_the_grafana_dashboard_reads_is_exported() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../grafana/watchtower-dashboard.json")).unwrap();
        // A fleet with one of everything (families without series are not listed).
        let metrics = Metrics::new(0);
        metrics.stored(&[stored(1, failed(Some("10.0.0.9")))], 0);
        metrics.alert("failed_logins");
        metrics.webhook("delivered");
        let counters = ServerCounters::default();
        counters.reject("malformed");
        counters.refuse_connection("source_handshakes_full");
        let hosts = [HostInfo {
            host_id: "web-1".into(),
            spool: Some(SpoolHealth::default()),
            kernel_lost: [("exec".to_owned(), 1)].into(),
            ..HostInfo::default()
        }];
        let text = classic_text(&metrics.render(
            &counters,
            &Snapshot {
                hosts: &hosts,
                stale_after_ns: 1,
                now_unix_ns: 1,
                log_size: 0,
                last_checkpoint_unix_ns: 0,
            },
        ));
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for (at, _) in expr.match_indices("watchtower_") {
                    let name: String = expr[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let family = name.strip_suffix("_bucket").unwrap_or(&name);
                    assert!(
                        families.contains(&family),
                        "{} reads {name}, which is not exported",
                        panel["title"]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "{checked}");
    }

    #[test]
    fn the_classic_format_names_counter_families_with_total() {
        let om = "# HELP x_logins Logins.\n# TYPE x_logins counter\nx_logins_total{a=\"b\"} 2\n\
                  # HELP x_lag Lag.\n# TYPE x_lag_seconds histogram\n# UNIT x_lag_seconds seconds\nx_lag_seconds_count 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP x_logins_total Logins.\n# TYPE x_logins_total counter\nx_logins_total{a=\"b\"} 2\n\
             # HELP x_lag_seconds Lag.\n# TYPE x_lag_seconds histogram\nx_lag_seconds_count 1\n"
        );
    }

    fn stored(seq: u64, body: Body) -> StoredEvent {
        StoredEvent {
            event: Some(Event {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq,
                time_unix_ns: 1_000_000_000,
                body: Some(body),
            }),
            received_unix_ns: 1_500_000_000,
            ..StoredEvent::default()
        }
    }

    fn failed(remote: Option<&str>) -> Body {
        Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: remote.map(Into::into),
            outcome: Outcome::Failure,
            ..LoginAttempt::default()
        })
    }

    #[test]
    fn logins_sessions_hosts_and_losses_are_exported_without_user_or_address_labels() {
        let metrics = Metrics::new(2);
        metrics.stored(
            &[
                stored(1, failed(Some("10.0.0.9"))),
                stored(2, failed(Some("10.0.0.9"))),
                stored(3, failed(None)),
                stored(4, Body::SessionStart(SessionStart::default())),
            ],
            1,
        );
        metrics.refused(7);
        let counters = ServerCounters::default();
        counters.reject("malformed");
        let hosts = [HostInfo {
            host_id: "web-1".into(),
            last_heartbeat_unix_ns: 10_000_000_000,
            spool: Some(SpoolHealth {
                pending: 4,
                bytes: 4096,
                dropped: [("spool_full".to_owned(), 3)].into(),
                ..SpoolHealth::default()
            }),
            kernel_lost: [("exec".to_owned(), 5)].into(),
            ..HostInfo::default()
        }];
        let text = metrics.render(
            &counters,
            &Snapshot {
                hosts: &hosts,
                stale_after_ns: 120_000_000_000,
                now_unix_ns: 200_000_000_000,
                log_size: 4,
                last_checkpoint_unix_ns: 0,
            },
        );
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        has(r#"watchtower_logins_total{service="sshd",outcome="failure",origin="remote"} 2"#);
        has(r#"watchtower_logins_total{service="sshd",outcome="failure",origin="local"} 1"#);
        has("watchtower_active_sessions 3");
        has("watchtower_events_duplicate_total 1");
        has(r#"watchtower_ingest_rejected_total{reason="malformed"} 1"#);
        has(r#"watchtower_events_lost{cause="kernel"} 5"#);
        has(r#"watchtower_events_lost{cause="spool"} 3"#);
        has(r#"watchtower_events_lost{cause="transport"} 7"#);
        has(r#"watchtower_host_stale{host="web-1"} 1"#);
        has("watchtower_stale_hosts 1");
        has(r#"watchtower_host_spool_pending_events{host="web-1"} 4"#);
        has("watchtower_ingest_lag_seconds_count 4");
        assert!(!text.contains("alice") && !text.contains("10.0.0.9"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn payload_text_never_becomes_a_label_value() {
        let metrics = Metrics::new(0);
        let login = |service: &str| {
            Body::LoginAttempt(LoginAttempt {
                service: service.into(),
                outcome: Outcome::Failure,
                ..LoginAttempt::default()
            })
        };
        let hostile = ["sshd-evil", "x\"} 1\nwatchtower_fake 1", &"s".repeat(10_000), ""];
        let mut batch: Vec<StoredEvent> = SERVICES
            .iter()
            .copied()
            .chain(hostile.iter().copied())
            .enumerate()
            .map(|(i, service)| stored(i as u64 + 1, login(service)))
            .collect();
        // Thousands of distinct services make no new series.
        batch.extend((0..2_000).map(|i| stored(100 + i, login(&format!("svc-{i}")))));
        metrics.stored(&batch, 0);
        let hosts = [HostInfo {
            host_id: "web-1".into(),
            kernel_lost: [("exec".to_owned(), 1), ("made-up-cause".to_owned(), 2)].into(),
            ..HostInfo::default()
        }];
        let text = metrics.render(
            &ServerCounters::default(),
            &Snapshot {
                hosts: &hosts,
                stale_after_ns: 1,
                now_unix_ns: 1,
                log_size: 0,
                last_checkpoint_unix_ns: 0,
            },
        );
        let services: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("watchtower_logins_total{"))
            .map(|l| l.split("service=\"").nth(1).unwrap().split('"').next().unwrap())
            .collect();
        assert_eq!(services.len(), SERVICES.len(), "{text}");
        assert!(services.iter().all(|s| SERVICES.contains(s)), "{services:?}");
        let other = r#"watchtower_logins_total{service="other",outcome="failure",origin="local"}"#;
        // "other" itself, the 4 hostile ones and the 2,000 made-up ones.
        assert!(text.contains(&format!("{other} 2005")), "{text}");
        assert!(!text.contains("evil") && !text.contains("watchtower_fake") && !text.contains("svc-"));
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        has(r#"watchtower_host_kernel_lost_events{host="web-1",cause="exec"} 1"#);
        has(r#"watchtower_host_kernel_lost_events{host="web-1",cause="other"} 2"#);
        assert!(!text.contains("made-up-cause"));
    }

    #[test]
    fn refused_events_are_counted_by_a_fixed_set_of_reasons() {
        let metrics = Metrics::new(0);
        metrics.refused_event("field_too_long");
        metrics.refused_event("field_too_long");
        metrics.refused(2);
        metrics.time_ahead(3);
        let text = metrics.render(
            &ServerCounters::default(),
            &Snapshot {
                hosts: &[HostInfo {
                    host_id: "web-1".into(),
                    spool: Some(SpoolHealth {
                        quarantined: 2,
                        ..SpoolHealth::default()
                    }),
                    ..HostInfo::default()
                }],
                stale_after_ns: 1,
                now_unix_ns: 1,
                log_size: 0,
                last_checkpoint_unix_ns: 0,
            },
        );
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        has(r#"watchtower_ingest_refused_events_total{reason="field_too_long"} 2"#);
        has(r#"watchtower_ingest_refused_events_total{reason="event_too_large"} 0"#);
        has(r#"watchtower_events_lost{cause="transport"} 2"#);
        has("watchtower_events_time_ahead_total 3");
        has(r#"watchtower_host_spool_quarantined_events{host="web-1"} 2"#);
        let reasons = text
            .lines()
            .filter(|l| l.starts_with("watchtower_ingest_refused_events_total{"))
            .count();
        assert_eq!(reasons, InvalidEvent::REASONS.len() - 1, "{text}");
    }
}
