//! The alert rules against the real server over mutual TLS, fed as agents feed it
//! (each host's records on a stream with that host's certificate) and read back
//! as operators read them (the query service's `ListAlerts`): an address a
//! stolen agent key registered for a user is still news on the other hosts the
//! user logs in on, and an agent whose stream is held open without heartbeats
//! is stale all the same.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use watchtower_e2e::central::{HOST, OTHER_HOST, Pki, Server, channel, runtime};
use watchtower_e2e::{PATIENCE, TempDir, privileged};
use watchtower_proto::pb::event::Body;
use watchtower_proto::pb::ingest_client::IngestClient;
use watchtower_proto::pb::query_client::QueryClient;
use watchtower_proto::pb::{
    Ack, AgentHealth, AgentMessage, Alert, Event, Heartbeat, ListAlertsRequest, LoginAttempt, Outcome,
    ServerMessage, agent_message, server_message,
};

/// The boot id of every record these tests send.
const BOOT: &str = "e2e-alerts-boot";
/// The user of the forged logins (no account on this machine: nothing logs in).
const USER: &str = "alice";
/// The stale-agent limit of the idle-stream test's server.
const STALE_SECS: u64 = 3;
/// How long after the limit the alert may take: the rule checks every second at
/// this limit; the rest is for a slow machine.
const MARGIN: Duration = Duration::from_secs(10);

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A successful sshd login of [`USER`] on `host` from `remote`.
fn login(host: &str, seq: u64, remote: &str) -> Event {
    Event {
        host_id: host.into(),
        boot_id: BOOT.into(),
        seq,
        time_unix_ns: now_ns(),
        body: Some(Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: USER.into(),
            remote_host: Some(remote.into()),
            outcome: Outcome::Success as i32,
            ..LoginAttempt::default()
        })),
    }
}

/// Send `batches` on one ingest stream as `host`, with its certificate; the Acks
/// in order (the stream ends when they are all in).
fn ingest(pki: &Pki, server: &Server, host: &str, batches: Vec<Vec<Event>>) -> Vec<Ack> {
    watchtower_e2e::central::ingest_batches(pki, server, host, BOOT, batches)
}

/// A query client with the reader's certificate.
async fn reader(pki: &Pki, server: &Server) -> QueryClient<Channel> {
    QueryClient::new(
        channel(&server.address(), pki.client_tls(Some("reader")))
            .await
            .expect("reader connects"),
    )
}

/// Every alert the server keeps, oldest first.
async fn kept_alerts(reader: &mut QueryClient<Channel>) -> Vec<Alert> {
    reader
        .list_alerts(ListAlertsRequest {
            from_unix_ns: 0,
            to_unix_ns: 0,
            limit: 0,
        })
        .await
        .expect("ListAlerts")
        .into_inner()
        .alerts
}

/// (rule, severity, host, user, address, seqs, summary) of an alert.
type Facts = (String, String, String, String, String, Vec<u64>, String);

fn facts(alert: &Alert) -> Facts {
    (
        alert.rule.clone(),
        alert.severity.clone(),
        alert.host_id.clone(),
        alert.user.clone().unwrap_or_default(),
        alert.remote_address.clone().unwrap_or_default(),
        alert.seqs.clone(),
        alert.summary.clone(),
    )
}

/// Wait until the server keeps at least `n` alerts, then a little longer for
/// any that should not come; every alert kept.
fn settled_alerts(pki: &Pki, server: &Server, n: usize) -> Vec<Alert> {
    runtime().block_on(async {
        let mut reader = reader(pki, server).await;
        let start = Instant::now();
        loop {
            let alerts = kept_alerts(&mut reader).await;
            if alerts.len() >= n {
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {n} alerts, {} kept: {:#?}",
                alerts.len(),
                alerts.iter().map(facts).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        kept_alerts(&mut reader).await
    })
}

/// An attacker with host A's key forges a login of alice from 6.6.6.6 there
/// (after one that makes her known), so the address is alice's fleet-wide. When
/// they then log in as alice on host B, where she is known from elsewhere,
/// 6.6.6.6 is still new for her on B: alerted there.
#[test]
fn an_address_pre_registered_by_another_host_still_alerts() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    // Host A: alice's first login anywhere (no alert), then the pre-registration
    // (new for her fleet-wide: the alert the forgery cannot avoid, on host A).
    let acks = ingest(
        &pki,
        &server,
        HOST,
        vec![vec![login(HOST, 1, "10.0.0.1")], vec![login(HOST, 2, "6.6.6.6")]],
    );
    let stored: Vec<(u64, u32)> = acks.iter().map(|a| (a.batch_id, a.stored)).collect();
    assert_eq!(stored, [(1, 1), (2, 1)], "{acks:?}");
    // Host B: alice as she is there (known fleet-wide, her first login on B: no
    // alert), then from 6.6.6.6 (known fleet-wide, new for her on B).
    let acks = ingest(
        &pki,
        &server,
        OTHER_HOST,
        vec![
            vec![login(OTHER_HOST, 1, "10.0.0.1")],
            vec![login(OTHER_HOST, 2, "6.6.6.6")],
        ],
    );
    let stored: Vec<(u64, u32)> = acks.iter().map(|a| (a.batch_id, a.stored)).collect();
    assert_eq!(stored, [(1, 1), (2, 1)], "{acks:?}");

    let alerts = settled_alerts(&pki, &server, 2);
    let expected = |host: &str, what: &str| -> Facts {
        (
            "new_address".into(),
            "warning".into(),
            host.into(),
            USER.into(),
            "6.6.6.6".into(),
            vec![2],
            format!("{USER} logged in on {host} through sshd from 6.6.6.6, {what}"),
        )
    };
    assert_eq!(
        alerts.iter().map(facts).collect::<Vec<_>>(),
        [
            expected(HOST, "an address new for this user"),
            expected(OTHER_HOST, "an address new for this user on this host"),
        ]
    );
    server.stop();
}

/// Open an ingest stream as `host`: hello, one heartbeat, one health record (its
/// Ack awaited), then nothing, ever, with the stream kept open. The task returned
/// ends only if the stream does (with how it ended).
async fn idle_stream(pki: &Pki, server: &Server, host: &str) -> tokio::task::JoinHandle<String> {
    let agent = channel(&server.address(), pki.client_tls(Some(host)))
        .await
        .expect("agent connects");
    let health = Event {
        host_id: host.into(),
        boot_id: BOOT.into(),
        seq: 1,
        time_unix_ns: now_ns(),
        body: Some(Body::AgentHealth(AgentHealth {
            reason: "periodic".into(),
            ..AgentHealth::default()
        })),
    };
    let messages = vec![
        watchtower_e2e::central::hello(host, BOOT),
        AgentMessage {
            msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                time_unix_ns: now_ns(),
                ..Heartbeat::default()
            })),
        },
        watchtower_e2e::central::batch(1, vec![health]),
    ];
    let outbound = tokio_stream::iter(messages).chain(tokio_stream::pending::<AgentMessage>());
    let mut answers = IngestClient::new(agent)
        .stream(outbound)
        .await
        .expect("the stream opens")
        .into_inner();
    let ack = match answers.message().await.expect("no stream error") {
        Some(ServerMessage {
            msg: Some(server_message::Msg::Ack(ack)),
        }) => ack,
        other => panic!("expected the health record's Ack, got {other:?}"),
    };
    assert_eq!((ack.batch_id, ack.stored), (1, 1), "{ack:?}");
    // The server sends nothing more on it.
    tokio::spawn(async move { format!("{:?}", answers.message().await) })
}

/// An agent that said hello, sent one heartbeat and one health record, and then
/// holds its stream open sending nothing (killed with its connection kept, or a
/// forger keeping the host "connected"): the stale-agent rule goes by heartbeats,
/// so exactly one `stale_agent` alert is raised for it after the limit, while the
/// stream is still open.
#[test]
fn an_idle_stream_held_open_does_not_hide_a_stale_agent() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let config = TempDir::new("server-config");
    let config_file = config.0.join("server.toml");
    std::fs::write(
        &config_file,
        format!("[alerts]\nstale_agent_secs = {STALE_SECS}\n"),
    )
    .unwrap();
    let server = Server::start(&pki, "127.0.0.1", &["--config", config_file.to_str().unwrap()]);
    let limit = Duration::from_secs(STALE_SECS);

    let rt = runtime();
    let (stale, all, waited) = rt.block_on(async {
        // Before the server can have heard the heartbeat: every time measured from
        // here is longer than the host's silence.
        let sent = Instant::now();
        let open = idle_stream(&pki, &server, HOST).await;
        let mut reader = reader(&pki, &server).await;
        let stale = loop {
            let alerts = kept_alerts(&mut reader).await;
            let stale: Vec<Alert> = alerts.into_iter().filter(|a| a.rule == "stale_agent").collect();
            if !stale.is_empty() {
                break stale;
            }
            if open.is_finished() {
                let end = open.await.unwrap();
                panic!("the stream ended before the agent was stale: {end}");
            }
            assert!(
                sent.elapsed() < limit + MARGIN,
                "no stale_agent alert {:?} after the last heartbeat (limit {limit:?})",
                sent.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let waited = sent.elapsed();
        // Two more checks of the rule: still one alert, the stream still open.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        if open.is_finished() {
            let end = open.await.unwrap();
            panic!("the stream ended after the alert: {end}");
        }
        let all = kept_alerts(&mut reader).await;
        open.abort();
        (stale, all, waited)
    });
    drop(rt);

    eprintln!("stale_agent raised {waited:?} after the heartbeat was sent (limit {limit:?})");
    assert!(waited > limit, "raised before the limit: {waited:?}");
    assert_eq!(stale.len(), 1, "{stale:#?}");
    let alert = &stale[0];
    assert_eq!(
        (
            alert.rule.as_str(),
            alert.severity.as_str(),
            alert.host_id.as_str()
        ),
        ("stale_agent", "critical", HOST)
    );
    let silent = format!("the agent on {HOST} has not been heard from for ");
    assert!(alert.summary.starts_with(&silent), "{}", alert.summary);
    assert!(
        alert.summary.ends_with(&format!("(limit {STALE_SECS} s)")),
        "{}",
        alert.summary
    );
    // Nothing else was raised: one alert in all.
    assert_eq!(all.iter().map(facts).collect::<Vec<_>>(), [facts(alert)]);
    server.stop();
}

/// A failed login of bob from `failure_from`, or a login the burst hides in.
fn burst_event(seq: u64, failure_from: Option<&str>) -> Event {
    let body = match failure_from {
        Some(remote) => Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: "bob".into(),
            remote_host: Some(remote.into()),
            outcome: Outcome::Failure as i32,
            ..LoginAttempt::default()
        }),
        // Each a first login of its own user: work for the new-address rule (a
        // store read and write each), none an alert.
        None => Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: format!("user-{seq}"),
            remote_host: Some(format!("10.{}.{}.{}", seq >> 16 & 255, seq >> 8 & 255, seq & 255)),
            outcome: Outcome::Success as i32,
            ..LoginAttempt::default()
        }),
    };
    Event {
        host_id: HOST.into(),
        boot_id: BOOT.into(),
        seq,
        time_unix_ns: now_ns(),
        body: Some(body),
    }
}

/// Five failed logins from one address inside 40,000 events (one batch of 10,000,
/// more than the live buffer, then 300 batches of 100 sent as fast as the server
/// takes them, more than the rules' queue): the rules evaluate every record in
/// commit order, so the alert fires, exactly once, naming the five; after a crash
/// and restart it is not raised again.
#[test]
fn a_failed_login_burst_inside_more_events_than_any_buffer_alerts_exactly_once() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let mut server = Server::start(&pki, "127.0.0.1", &[]);
    let failing = [2_000, 7_000, 15_050, 20_050, 25_050];
    let attacker = "203.0.113.5";
    let mut seq = 0;
    let mut next = |n: usize| -> Vec<Event> {
        (0..n)
            .map(|_| {
                seq += 1;
                burst_event(seq, failing.contains(&seq).then_some(attacker))
            })
            .collect()
    };
    let mut batches = vec![next(10_000)];
    for _ in 0..300 {
        batches.push(next(100));
    }
    let acks = ingest(&pki, &server, HOST, batches);
    assert_eq!(acks.len(), 301);
    assert_eq!(acks.iter().map(|a| u64::from(a.stored)).sum::<u64>(), 40_000);

    let alerts = settled_alerts(&pki, &server, 1);
    let got: Vec<_> = alerts
        .iter()
        .map(|a| (a.rule.as_str(), a.seqs.clone(), a.count))
        .collect();
    assert_eq!(got, vec![("failed_logins", failing.to_vec(), 5)], "{alerts:#?}");
    assert_eq!(alerts[0].remote_address.as_deref(), Some(attacker));

    server.kill9();
    server.restart();
    let alerts = settled_alerts(&pki, &server, 1);
    assert_eq!(alerts.len(), 1, "raised again after the restart: {alerts:#?}");
}
