//! Ingest under invalid and hostile input, with the real daemons: an event the
//! server refuses does not stop the agent's shipping (it is quarantined on the
//! host, counted and shown), an oversized field gets its precise refusal, an
//! event of an unknown kind and one far in the future are stored (the latter
//! flagged), metric labels stay within their fixed sets, and an event resent with
//! other content is kept as evidence, alerted and named by verify.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::Value;
use watchtower_e2e::central::{HOST, Pki, Reader, Server, ctl_binary, curl};
use watchtower_e2e::{Agent, PATIENCE, TempDir, privileged};
use watchtower_proto::pb::event::Body;
use watchtower_proto::pb::query_client::QueryClient;
use watchtower_proto::pb::{
    Ack, Event, EventFilter, EventKind, Exec, LoginAttempt, Outcome, QueryEventsRequest, StoredEvent,
};

/// The boot id of the events seeded into the agent's spool (the agent's own
/// events carry the machine's).
const SEEDED_BOOT: &str = "e2e-seeded-boot";

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn login(seq: u64, user: &str, service: &str) -> Event {
    Event {
        host_id: HOST.into(),
        boot_id: SEEDED_BOOT.into(),
        seq,
        time_unix_ns: now_ns() - 60_000_000_000,
        body: Some(Body::LoginAttempt(LoginAttempt {
            service: service.into(),
            user: user.into(),
            outcome: Outcome::Failure as i32,
            remote_host: Some("10.9.9.9".into()),
            ..LoginAttempt::default()
        })),
    }
}

/// CRC-32 (IEEE), as the spool's frames carry it.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Write records into a fresh spool in `dir` as an earlier run of the agent
/// would have left them (format: watchtower-agent's spool module), indexes from 1.
fn seed_spool(dir: &Path, records: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut segment = b"WTSPOOL1".to_vec();
    for (at, record) in records.iter().enumerate() {
        let index = at as u64 + 1;
        segment.extend_from_slice(&(record.len() as u32).to_le_bytes());
        segment.extend_from_slice(&crc32(&[&index.to_le_bytes(), record]).to_le_bytes());
        segment.extend_from_slice(&index.to_le_bytes());
        segment.extend_from_slice(record);
    }
    std::fs::write(dir.join(format!("{:020}.seg", 1)), segment).unwrap();
}

/// `(index, reason, record)` of every record in the agent's quarantine file.
fn read_quarantine(path: &Path) -> Vec<(u64, String, Vec<u8>)> {
    let raw = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    if raw.len() < 8 {
        return out;
    }
    assert_eq!(&raw[..8], b"WTQUAR01", "the quarantine's magic");
    let mut at = 8;
    let word = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
    while raw.len() - at >= 16 {
        let len = word(at) as usize;
        let index = u64::from_le_bytes(raw[at + 8..at + 16].try_into().unwrap());
        let payload = &raw[at + 16..at + 16 + len];
        assert_eq!(word(at + 4), crc32(&[&index.to_le_bytes(), payload]), "checksum");
        let reason_len = usize::from(u16::from_le_bytes([payload[0], payload[1]]));
        let reason = String::from_utf8(payload[2..2 + reason_len].to_vec()).unwrap();
        out.push((index, reason, payload[2 + reason_len..].to_vec()));
        at += 16 + len;
    }
    out
}

/// Every stored record of `host` with its labels (the Reader keeps only events).
fn stored_records(pki: &Pki, server: &Server, host: &str) -> Vec<StoredEvent> {
    let rt = watchtower_e2e::central::runtime();
    rt.block_on(async {
        let channel = watchtower_e2e::central::channel(&server.address(), pki.client_tls(Some("reader")))
            .await
            .expect("reader connects");
        let mut client = QueryClient::new(channel);
        let mut out = Vec::new();
        let mut token = Vec::new();
        loop {
            let page = client
                .query_events(QueryEventsRequest {
                    filter: Some(EventFilter {
                        host_id: host.into(),
                        ..EventFilter::default()
                    }),
                    page_size: 1000,
                    page_token: token,
                })
                .await
                .expect("QueryEvents")
                .into_inner();
            out.extend(page.events);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    })
}

fn ctl(pki: &Pki, server: &Server, args: &[&str]) -> String {
    let out = Command::new(ctl_binary())
        .args(pki.ctl_args(server, "reader"))
        .args(args)
        .output()
        .expect("run watchtowerctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story from refusal to quarantine to delivery"
)]
fn a_refused_event_is_quarantined_and_every_other_event_arrives() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    // What an earlier run (or an older, or a buggy, agent) left in the spool: good
    // events around one the server must refuse (a 600-byte user), one the agent
    // cannot decode, one of a kind from the future, and one stamped a day ahead.
    let mut future_kind = login(4, "from_a_newer_agent", "sshd");
    future_kind.body = None;
    let mut future_kind = future_kind.encode_to_vec();
    // Field 99, length-delimited: a body this build does not know.
    future_kind.extend_from_slice(&[0x9a, 0x06, 3, 0x0a, 1, b'x']);
    let mut ahead = login(5, "clock_ahead", "sshd");
    ahead.time_unix_ns = now_ns() + 86_400_000_000_000;
    let long_user = "u".repeat(600);
    let seeded = [
        login(1, "seeded_before", "sshd").encode_to_vec(),
        login(2, &long_user, "sshd").encode_to_vec(),
        vec![0xff, 0xff, 0xff],
        future_kind,
        ahead.encode_to_vec(),
        login(6, "seeded_after", "sshd").encode_to_vec(),
    ];
    let state = Arc::new(TempDir::new("agent-state"));
    seed_spool(&state.0.join("spool"), &seeded);

    let mut flags = pki.agent_args(&server.address());
    flags.push("--no-journal".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start_with(&[], state.clone(), &flags);
    // The agent says so in its health records (their spool state is on the wire
    // only), and goes on shipping its own events.
    let mut reader = Reader::connect(&pki, &server);
    let quarantine_shown = |reader: &mut Reader| {
        reader.host_events(HOST).into_iter().find_map(|e| match e.body {
            Some(Body::AgentHealth(h)) => h.spool.filter(|s| s.quarantined == 2),
            _ => None,
        })
    };
    wait_until(
        "a stored health record of the agent's showing the quarantine",
        || quarantine_shown(&mut reader).is_some(),
    );
    let spool = quarantine_shown(&mut reader).unwrap();
    assert_eq!(spool.dropped.get("quarantine_full"), Some(&0), "{spool:?}");
    assert!(
        !spool.dropped.contains_key("quarantined"),
        "not a loss: {spool:?}"
    );
    let printed = agent.stop();

    // Every event but the refused and the undecodable one is stored, exactly once.
    let records = stored_records(&pki, &server, HOST);
    let seeded_stored: BTreeSet<u64> = records
        .iter()
        .filter_map(|r| r.event.as_ref())
        .filter(|e| e.boot_id == SEEDED_BOOT)
        .map(|e| e.seq)
        .collect();
    assert_eq!(seeded_stored, BTreeSet::from([1, 4, 5, 6]), "{records:#?}");
    let own_stored: Vec<u64> = records
        .iter()
        .filter_map(|r| r.event.as_ref())
        .filter(|e| e.boot_id != SEEDED_BOOT)
        .map(|e| e.seq)
        .collect();
    let own_printed: BTreeSet<u64> = printed.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        own_stored.iter().copied().collect::<BTreeSet<_>>(),
        own_printed,
        "every event the agent made arrived"
    );
    assert_eq!(own_stored.len(), own_printed.len(), "none twice");
    let by_seq = |seq: u64| {
        records
            .iter()
            .find(|r| {
                r.event
                    .as_ref()
                    .is_some_and(|e| e.boot_id == SEEDED_BOOT && e.seq == seq)
            })
            .unwrap()
    };
    // The unknown kind is stored as such; the one far ahead with the server's note.
    let unknown = by_seq(4).event.as_ref().unwrap();
    assert_eq!(
        (
            watchtower_model::Event::from(unknown.clone()).kind(),
            unknown.body.is_none()
        ),
        (watchtower_model::EventKind::Unspecified, true)
    );
    assert_eq!(
        by_seq(5).labels.get("ingest/time_ahead").map(String::as_str),
        Some("true")
    );
    assert!(!by_seq(1).labels.contains_key("ingest/time_ahead"));

    // The refused and the undecodable record are kept on the host, with their reasons.
    let quarantined = read_quarantine(&state.0.join("spool/quarantine"));
    let summary: Vec<(u64, &str)> = quarantined
        .iter()
        .map(|(index, reason, _)| (*index, reason.split(':').next().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [(3, "undecodable"), (2, "field_too_long")],
        "{quarantined:?}"
    );
    assert!(
        quarantined[1]
            .1
            .contains("login_attempt.user is 600 bytes, at most 512"),
        "{quarantined:?}"
    );
    let refused = Event::decode(quarantined[1].2.as_slice()).unwrap();
    assert_eq!((refused.seq, refused.boot_id.as_str()), (2, SEEDED_BOOT));
    assert_eq!(quarantined[0].2, [0xff, 0xff, 0xff]);

    // Counted and shown: the server's stats and metrics, and `watchtowerctl hosts`.
    let stats = reader.stats();
    assert_eq!(stats.rejected.get("invalid_event"), Some(&1), "{stats:?}");
    let metrics = curl(&[&server.exporter_url("/metrics")]);
    assert!(
        metrics.contains("watchtower_ingest_refused_events_total{reason=\"field_too_long\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchtower_events_time_ahead_total 1"),
        "{metrics}"
    );
    let hosts: Vec<Value> = ctl(&pki, &server, &["--json", "hosts"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let host = hosts.iter().find(|h| h["host_id"] == HOST).expect("the host");
    assert_eq!(host["spool"]["quarantined"], 2, "{host}");
    let table = ctl(&pki, &server, &["hosts"]);
    let header = table.lines().next().unwrap();
    let column = header.find("QUARANTINED").expect("a QUARANTINED column");
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with(HOST))
        .expect("the host's row");
    let cell = row.get(column..).and_then(|rest| rest.split_whitespace().next());
    assert_eq!(cell, Some("2"), "{table}");
    server.stop();
}

/// Send `batches` on one ingest stream as [`HOST`]; the Acks in order.
fn ingest(pki: &Pki, server: &Server, batches: Vec<Vec<Event>>) -> Vec<Ack> {
    watchtower_e2e::central::ingest_batches(pki, server, HOST, SEEDED_BOOT, batches)
}

#[test]
fn an_oversized_field_gets_its_precise_refusal_and_the_rest_of_the_batch_is_stored() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let mut many_args = login(3, "alice", "sshd");
    many_args.body = Some(Body::Exec(Exec {
        filename: "/bin/echo".into(),
        argv: vec!["x".into(); 65],
        ..Exec::default()
    }));
    let acks = ingest(
        &pki,
        &server,
        vec![
            vec![
                login(1, "alice", "sshd"),
                login(2, &"u".repeat(600), "sshd"),
                many_args,
                login(4, "bob", "made-up-service-1"),
            ],
            // The stream goes on after a refusal.
            vec![login(5, "carol", "made-up-service-2"), login(6, "dave", "su")],
        ],
    );
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!((acks[0].batch_id, acks[0].stored, acks[0].last_seq), (1, 2, 4));
    let refused: Vec<_> = acks[0]
        .refused
        .iter()
        .map(|r| (r.position, r.seq, r.reason.as_str(), r.detail.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (
                1,
                2,
                "field_too_long",
                "event seq 2: login_attempt.user is 600 bytes, at most 512 are stored"
            ),
            (
                2,
                3,
                "too_many_values",
                "event seq 3: exec.argv has 65 values, at most 64 are stored"
            ),
        ]
    );
    assert_eq!((acks[1].stored, acks[1].refused.len()), (2, 0));
    let mut reader = Reader::connect(&pki, &server);
    let stored: BTreeSet<u64> = reader.host_events(HOST).iter().map(|e| e.seq).collect();
    assert_eq!(stored, BTreeSet::from([1, 4, 5, 6]));
    let stats = reader.stats();
    assert_eq!(stats.rejected.get("invalid_event"), Some(&2), "{stats:?}");

    // Each reason counted; the service label only from the fixed set.
    let metrics = curl(&[&server.exporter_url("/metrics")]);
    for line in [
        "watchtower_ingest_refused_events_total{reason=\"field_too_long\"} 1",
        "watchtower_ingest_refused_events_total{reason=\"too_many_values\"} 1",
        "watchtower_ingest_refused_events_total{reason=\"event_too_large\"} 0",
        "watchtower_events_lost{cause=\"transport\"} 2",
        "watchtower_logins_total{service=\"other\",outcome=\"failure\",origin=\"remote\"} 2",
        "watchtower_logins_total{service=\"sshd\",outcome=\"failure\",origin=\"remote\"} 1",
        "watchtower_logins_total{service=\"su\",outcome=\"failure\",origin=\"remote\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    assert!(!metrics.contains("made-up-service"), "{metrics}");
    server.stop();
}

#[test]
fn batches_refused_whole_are_split_and_one_event_too_large_for_the_server_is_quarantined() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    // A server that takes at most 3 events a batch and 64 KiB a message.
    let config = TempDir::new("server-config");
    let config_file = config.0.join("server.toml");
    std::fs::write(
        &config_file,
        "[ingest]\nmax_batch_events = 3\nmax_message_bytes = 65536\n",
    )
    .unwrap();
    let server = Server::start(&pki, "127.0.0.1", &["--config", config_file.to_str().unwrap()]);
    // A 100 KB exec: within every field limit and the event limit, but no message
    // this server takes can hold it.
    let mut big = login(7, "alice", "sshd");
    big.body = Some(Body::Exec(Exec {
        filename: "/bin/echo".into(),
        argv: vec!["a".repeat(3_400); 30],
        ..Exec::default()
    }));
    let seeded: Vec<Vec<u8>> = (1..=12)
        .map(|seq| {
            if seq == 7 {
                big.encode_to_vec()
            } else {
                login(seq, "seeded", "sshd").encode_to_vec()
            }
        })
        .collect();
    let state = Arc::new(TempDir::new("agent-state"));
    seed_spool(&state.0.join("spool"), &seeded);
    let mut flags = pki.agent_args(&server.address());
    flags.push("--no-journal".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start_with(&[], state.clone(), &flags);
    let mut reader = Reader::connect(&pki, &server);
    let seeded_stored = |reader: &mut Reader| -> BTreeSet<u64> {
        reader
            .host_events(HOST)
            .iter()
            .filter(|e| e.boot_id == SEEDED_BOOT)
            .map(|e| e.seq)
            .collect()
    };
    wait_until("every seeded event but the one too large", || {
        seeded_stored(&mut reader).len() == 11
    });
    let printed = agent.stop();
    let expected: BTreeSet<u64> = (1..=12).filter(|s| *s != 7).collect();
    assert_eq!(seeded_stored(&mut reader), expected);
    let own: BTreeSet<u64> = reader
        .host_events(HOST)
        .iter()
        .filter(|e| e.boot_id != SEEDED_BOOT)
        .map(|e| e.seq)
        .collect();
    let own_printed: BTreeSet<u64> = printed.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(own, own_printed, "every event the agent made arrived");
    let quarantined = read_quarantine(&state.0.join("spool/quarantine"));
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let (index, reason, record) = &quarantined[0];
    assert_eq!(*index, 7);
    assert!(reason.starts_with("refused_whole: "), "{reason}");
    assert_eq!(Event::decode(record.as_slice()).unwrap().seq, 7);
    let stats = reader.stats();
    assert!(
        stats.rejected.get("batch_too_large").is_some_and(|n| *n >= 1),
        "{stats:?}"
    );
    assert!(
        stats.rejected.get("oversized").is_some_and(|n| *n >= 1),
        "{stats:?}"
    );
    server.stop();
}

/// An event sent again with the id (host, boot, seq) of a stored one and other
/// content: the first record stays, the second is kept as evidence under its own
/// leaf (its receipt says so), the `conflicting_duplicate` alert is raised and
/// `verify` names it. An exact resend is a plain duplicate.
#[test]
fn a_resent_seq_with_other_content_is_kept_as_evidence_alerted_and_named() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &["--checkpoint-interval-secs", "1"]);
    let first = login(1, "alice", "sshd");
    let acks = ingest(
        &pki,
        &server,
        vec![
            vec![first.clone(), login(2, "bob", "sshd")],
            vec![first, login(1, "mallory", "sshd")],
        ],
    );
    assert_eq!(acks.len(), 2, "{acks:?}");
    let receipts = |ack: &Ack| -> Vec<(u64, u64, bool)> {
        ack.receipts
            .iter()
            .map(|r| (r.seq, r.leaf_index, r.conflict))
            .collect()
    };
    let base = acks[0].receipts[0].leaf_index;
    assert_eq!(receipts(&acks[0]), [(1, base, false), (2, base + 1, false)]);
    assert_eq!((acks[1].stored, acks[1].duplicates), (0, 1));
    assert_eq!(receipts(&acks[1]), [(1, base + 2, true)]);
    assert!(acks[1].receipts[0].record_sha256.len() == 32);

    let mut reader = Reader::connect(&pki, &server);
    let mut users: Vec<(u64, String)> = reader
        .host_events(HOST)
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::LoginAttempt(a)) => Some((e.seq, a.user.clone())),
            _ => None,
        })
        .collect();
    users.sort();
    assert_eq!(users, [(1, "alice".to_owned()), (2, "bob".to_owned())]);
    wait_until("the conflicting_duplicate alert", || {
        ctl(&pki, &server, &["alerts", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|a| a["rule"] == "conflicting_duplicate" && a["host_id"] == HOST)
    });

    // Once a checkpoint covers the conflict's leaf, verify names it.
    let key = pki.path("checkpoint-signing.pub").display().to_string();
    let state = TempDir::new("conflict-auditor");
    let state_arg = state.0.join("checkpoints.json").display().to_string();
    let mut report = Value::Null;
    wait_until("a checkpoint covering the conflict", || {
        let out = Command::new(ctl_binary())
            .args(pki.ctl_args(&server, "reader"))
            .args(["verify", "--json", "--public-key", &key, "--state", &state_arg])
            .output()
            .expect("run watchtowerctl");
        report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        report["checkpoint_size"].as_u64() > Some(base + 2)
    });
    let problems: Vec<(&str, u64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["problem"].as_str().unwrap(), f["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(problems, [("conflict", 1)], "{report}");
    assert_eq!(report["ok"], false, "{report}");
    server.stop();
}

/// Connections from 127.0.0.2 that never begin a TLS handshake, held at `target`
/// open: each one the server closes is opened again (at most 100 every 250 ms).
struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<FloodCount>>,
}

#[derive(Debug, Default)]
struct FloodCount {
    opened: usize,
    closed_by_server: usize,
    most_open: usize,
}

impl Flood {
    fn start(server: std::net::SocketAddr, target: usize) -> Flood {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = watchtower_e2e::central::runtime();
            rt.block_on(async move {
                let mut open: Vec<tokio::net::TcpStream> = Vec::new();
                let mut count = FloodCount::default();
                while !stopping.load(Relaxed) {
                    let before = open.len();
                    open.retain(|s| {
                        let mut byte = [0u8; 1];
                        matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                    });
                    count.closed_by_server += before - open.len();
                    for _ in 0..100.min(target.saturating_sub(open.len())) {
                        let socket = tokio::net::TcpSocket::new_v4().unwrap();
                        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(Duration::from_millis(50), socket.connect(server)).await
                        {
                            open.push(stream);
                            count.opened += 1;
                        }
                    }
                    count.most_open = count.most_open.max(open.len());
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                count
            })
        });
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> FloodCount {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_connection_flood_from_one_address_does_not_keep_an_agent_from_delivering() {
    if !privileged() {
        return;
    }
    // 600 sockets here fit the smallest usual soft limit (1024).
    let pki = Pki::new();
    // A server under an open-file limit of 256 (a small machine's), which 600
    // connections that never handshake would exhaust.
    let server = Server::start_with_open_files(256, &pki, "127.0.0.1", &[]);
    let flood = Flood::start(server.listen, 600);
    std::thread::sleep(Duration::from_secs(2));

    let mut flags = pki.agent_args(&server.address());
    flags.extend(["--no-journal", "--scope", "all"].map(String::from));
    let agent = Agent::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let marker = "flood-marker";
    let filter = EventFilter {
        host_id: HOST.into(),
        kinds: vec![EventKind::Exec as i32],
        ..EventFilter::default()
    };
    let mut reader = Reader::connect(&pki, &server);
    let start = Instant::now();
    let delivered = loop {
        let status = Command::new("/bin/true").arg(marker).status().unwrap();
        assert!(status.success());
        let stored = reader
            .events(&filter)
            .into_iter()
            .find(|e| matches!(&e.body, Some(Body::Exec(exec)) if exec.argv.iter().any(|a| a == marker)));
        if let Some(event) = stored {
            break event;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the agent delivered nothing in {PATIENCE:?} under the flood:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let metrics = curl(&[&server.exporter_url("/metrics")]);
    let count = flood.stop();
    eprintln!("flood: {count:?}");
    assert_eq!(delivered.host_id, HOST);
    // The flood was refused at its source's share, at once, and went on trying.
    assert!(count.opened > 600, "{count:?}");
    assert!(count.closed_by_server > 0, "{count:?}");
    let refused = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("watchtower_connections_refused_total{reason=\"source_handshakes_full\"} ")
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused > 0, "no refusal counted:\n{metrics}");
    // The flood never filled the connection cap (it holds only its share).
    assert!(!metrics.contains("reason=\"connections_full\""), "{metrics}");
    drop(agent);
}
