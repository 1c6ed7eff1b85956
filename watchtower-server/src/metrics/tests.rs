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
        assembler_evicted: [("session".to_owned(), 3), ("made-up-reason".to_owned(), 4)].into(),
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
    has(r#"watchtower_host_assembler_evicted{host="web-1",cause="session"} 3"#);
    has(r#"watchtower_host_assembler_evicted{host="web-1",cause="other"} 4"#);
    assert!(!text.contains("made-up-cause") && !text.contains("made-up-reason"));
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

#[test]
fn a_front_door_shows_its_ingest_edge_and_nats_but_no_store() {
    let metrics = Metrics::new(0);
    metrics.fleet("published", 3);
    metrics.fleet("stream_full", 1);
    let counters = ServerCounters::default();
    counters.connect("web-1");
    let text = classic_text(&metrics.render_front_door(&counters, true));
    for line in [
        "watchtower_fleet_messages_total{result=\"published\"} 3",
        "watchtower_fleet_messages_total{result=\"stream_full\"} 1",
        "watchtower_nats_connected 1",
        "watchtower_connected_agents 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // A front door holds no store: nothing that would read as an empty one.
    for absent in [
        "watchtower_hosts ",
        "watchtower_log_leaves",
        "watchtower_events_lost",
        "watchtower_active_sessions",
    ] {
        assert!(!text.contains(absent), "{absent} shown:\n{text}");
    }
    let down = classic_text(&metrics.render_front_door(&counters, false));
    assert!(down.lines().any(|l| l == "watchtower_nats_connected 0"), "{down}");
    // A single server or an indexer does not show a NATS gauge it does not keep.
    let full = classic_text(&metrics.render(
        &counters,
        &Snapshot {
            hosts: &[],
            stale_after_ns: 1,
            now_unix_ns: 1,
            log_size: 0,
            last_checkpoint_unix_ns: 0,
        },
    ));
    assert!(!full.contains("nats_connected"), "{full}");
    assert!(
        full.contains("watchtower_fleet_messages_total{result=\"published\"} 3"),
        "{full}"
    );
}
