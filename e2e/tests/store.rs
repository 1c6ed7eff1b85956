//! The central store with the real daemons: the agent ships over gRPC with mutual
//! TLS to watchtower-server, which keeps events in `RocksDB`; tests read them back
//! with a reader certificate, crash either side, cut the network, and present
//! bad certificates and bad messages.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::Code;
use watchtower_e2e::central::{HOST, NETNS_HOST_ADDR, NetNs, OTHER_HOST, Pki, Reader, Server};
use watchtower_e2e::{ALICE, ALICE_PASSWORD, Agent, BOB, BOB_PASSWORD, Sshd, TempDir, of_kind, privileged};
use watchtower_proto::pb::event::Body;
use watchtower_proto::pb::{Event, EventFilter, EventKind, Outcome};

fn agent_flags(pki: &Pki, server: &Server, extra: &[&str]) -> Vec<String> {
    let mut flags = pki.agent_args(&server.address());
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    flags
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

fn seqs_printed(events: &[Value]) -> BTreeSet<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// The stored seqs, asserting each is stored exactly once.
fn seqs_stored(events: &[Event]) -> BTreeSet<u64> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events {
        *counts.entry(e.seq).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored more than once: {twice:?}");
    counts.into_keys().collect()
}

/// Run `/bin/true` `n` times from one shell (n exec events under `--scope all`).
fn run_true(n: usize) {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let status = Command::new("/bin/sh").args(["-c", &script]).status().unwrap();
    assert!(status.success());
}

fn is_true_exec(e: &Value) -> bool {
    e["kind"] == "exec" && e["filename"] == "/bin/true"
}

fn true_execs(reader: &mut Reader) -> usize {
    reader
        .events(&EventFilter {
            host_id: HOST.into(),
            kinds: vec![EventKind::Exec as i32],
            ..EventFilter::default()
        })
        .iter()
        .filter(|e| matches!(&e.body, Some(Body::Exec(x)) if x.filename == "/bin/true"))
        .count()
}

/// Wait until every seq in `want` is stored for [`HOST`]; returns the stored events.
fn wait_until_stored(reader: &mut Reader, want: &BTreeSet<u64>, patience: Duration) -> Vec<Event> {
    let start = Instant::now();
    loop {
        let stored = reader.host_events(HOST);
        let have = seqs_stored(&stored);
        let missing: Vec<_> = want.difference(&have).take(10).collect();
        if missing.is_empty() {
            return stored;
        }
        assert!(
            start.elapsed() < patience,
            "after {patience:?}, {} of {} events are not stored (first: {missing:?})",
            want.difference(&have).count(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn session_of(e: &Value) -> u64 {
    u64::from_str_radix(e["session"].as_str().unwrap(), 16).unwrap()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, checked field by field")]
fn ssh_su_and_sudo_read_back_through_query_events() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let sshd = Sshd::start();
    let flags = agent_flags(&pki, &server, &["--no-journal"]);
    let agent = Agent::start(&strs(&flags));
    let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "/usr/bin/id -un");
    assert_eq!((code, out.trim()), (0, ALICE));
    let out = sshd.ssh_key_tty(&format!("su -c 'id -un' {BOB}"), &[("Password:", BOB_PASSWORD)]);
    assert!(out.contains(BOB), "{out}");
    let out = sshd.ssh_key_tty("sudo -k; sudo id -un", &[("password for", ALICE_PASSWORD)]);
    assert!(out.contains("root"), "{out}");
    agent.wait_for_count("three ssh session ends", 3, |e| {
        e["kind"] == "session_end" && e["service"] == "sshd"
    });
    let printed = agent.stop();

    let mut reader = Reader::connect(&pki, &server);
    let stored = wait_until_stored(&mut reader, &seqs_printed(&printed), Duration::from_secs(30));
    // Exactly what the agent emitted, each once: its final health record included.
    assert_eq!(seqs_stored(&stored), seqs_printed(&printed));
    let by_seq: BTreeMap<u64, &Event> = stored.iter().map(|e| (e.seq, e)).collect();
    for p in &printed {
        let s = by_seq[&p["seq"].as_u64().unwrap()];
        assert_eq!(s.host_id, HOST);
        assert_eq!(s.boot_id, p["boot_id"].as_str().unwrap());
        assert_eq!(s.time_unix_ns, p["time_unix_ns"].as_u64().unwrap());
        assert_eq!(
            watchtower_model::Event::from(s.clone()).kind().name(),
            p["kind"].as_str().unwrap()
        );
    }

    // Every login attempt, field by field.
    let attempts = of_kind(&printed, "login_attempt");
    assert_eq!(attempts.len(), 5, "3 ssh logins, su, sudo: {attempts:#?}");
    for p in &attempts {
        let Some(Body::LoginAttempt(s)) = &by_seq[&p["seq"].as_u64().unwrap()].body else {
            panic!("stored kind differs");
        };
        assert_eq!(s.service, p["service"].as_str().unwrap());
        assert_eq!(s.user, p["user"].as_str().unwrap());
        assert_eq!(s.remote_host.as_deref(), p["remote_host"].as_str());
        assert_eq!(s.tty.as_deref(), p["tty"].as_str());
        assert_eq!(s.remote_user.as_deref(), p["remote_user"].as_str());
        assert_eq!(s.outcome(), Outcome::Success);
        assert_eq!(i64::from(s.pam_code), p["pam_code"].as_i64().unwrap());
        assert_eq!(
            s.authenticate_code.map(i64::from),
            p["authenticate_code"].as_i64()
        );
        assert_eq!(
            s.from_session,
            p["from_session"]
                .as_str()
                .map(|h| u64::from_str_radix(h, 16).unwrap())
        );
        let process = s.process.as_ref().unwrap();
        assert_eq!(u64::from(process.pid), p["process"]["pid"].as_u64().unwrap());
        assert_eq!(u64::from(process.uid), p["process"]["uid"].as_u64().unwrap());
        assert_eq!(process.comm, p["process"]["comm"].as_str().unwrap());
    }

    // Filters, each answered from the server.
    let logins = reader.events(&EventFilter {
        host_id: HOST.into(),
        kinds: vec![EventKind::LoginAttempt as i32],
        remote_address: "127.0.0.1".into(),
        ..EventFilter::default()
    });
    assert_eq!(logins.len(), 3, "the three ssh logins came from 127.0.0.1");
    assert!(
        logins.iter().all(
            |e| matches!(&e.body, Some(Body::LoginAttempt(a)) if a.service == "sshd" && a.user == ALICE)
        )
    );
    let bob = reader.events(&EventFilter {
        user: BOB.into(),
        ..EventFilter::default()
    });
    let bob_kinds: Vec<_> = bob
        .iter()
        .map(|e| watchtower_model::Event::from(e.clone()).kind().name())
        .collect();
    assert_eq!(
        bob_kinds.iter().filter(|k| **k == "login_attempt").count(),
        1,
        "su to bob: {bob_kinds:?}"
    );
    assert!(bob_kinds.contains(&"session_start") && bob_kinds.contains(&"session_end"));
    let bob_ids: Vec<_> = bob
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::Exec(x)) if x.filename == "/usr/bin/id" => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(bob_ids.len(), 1);
    assert_eq!(bob_ids[0].argv, vec!["id", "-un"]);
    let failed = reader.events(&EventFilter {
        host_id: HOST.into(),
        outcome: Outcome::Failure as i32,
        ..EventFilter::default()
    });
    assert!(failed.is_empty(), "no failed logins: {failed:?}");

    // The su login's session tree: the ssh session holds su's child session and
    // the id run inside it.
    let su_start = of_kind(&printed, "session_start")
        .into_iter()
        .find(|e| e["service"] == "su")
        .unwrap();
    let ssh_session = u64::from_str_radix(su_start["parent_session"].as_str().unwrap(), 16).unwrap();
    let su_session = session_of(su_start);
    let tree = reader.session(HOST, ssh_session);
    let summary = tree.summary.unwrap();
    assert_eq!((summary.user.as_str(), summary.service.as_str()), (ALICE, "sshd"));
    assert_eq!(summary.remote_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(summary.child_sessions, vec![su_session]);
    assert!(summary.end_unix_ns > summary.start_unix_ns);
    assert_eq!(summary.end_reason.as_deref(), Some("closed"));
    let ssh_end = of_kind(&printed, "session_end")
        .into_iter()
        .find(|e| session_of(e) == ssh_session)
        .unwrap();
    assert_eq!(summary.execs, ssh_end["execs"].as_u64().unwrap());
    assert!(
        tree.events
            .iter()
            .filter_map(|s| s.event.as_ref())
            .any(|e| matches!(&e.body,
        Some(Body::Exec(x)) if x.filename == "/usr/bin/id" && x.session == Some(su_session)))
    );

    // The sudo session: root's, a child of its ssh login.
    let sudo = reader.events(&EventFilter {
        host_id: HOST.into(),
        user: "root".into(),
        kinds: vec![EventKind::SessionStart as i32],
        ..EventFilter::default()
    });
    assert_eq!(sudo.len(), 1);
    let Some(Body::SessionStart(sudo)) = &sudo[0].body else {
        unreachable!()
    };
    assert_eq!(
        (sudo.service.as_str(), sudo.remote_user.as_deref()),
        ("sudo", Some(ALICE))
    );
    assert!(sudo.parent_session.is_some());

    let hosts = reader.hosts();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].host_id, HOST);
    assert_eq!(hosts[0].events_stored, printed.len() as u64);
    assert!(hosts[0].last_heartbeat_unix_ns > 0);
    server.stop();
}

#[test]
fn server_killed_mid_stream_loses_and_duplicates_nothing() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let mut server = Server::start(&pki, "127.0.0.1", &[]);
    let flags = agent_flags(&pki, &server, &["--no-journal", "--scope", "all"]);
    let agent = Agent::start(&strs(&flags));
    let burst = std::thread::spawn(|| run_true(10_000));
    // Kill the server while events stream, keep it down a while, bring it back.
    agent.wait_for_count("the first thousand execs", 1000, is_true_exec);
    server.kill9();
    std::thread::sleep(Duration::from_secs(3));
    server.restart();
    burst.join().unwrap();
    let execs = agent.wait_for_count("all 10,000 execs", 10_000, is_true_exec);
    assert_eq!(execs.len(), 10_000, "the kernel side lost nothing");

    let mut reader = Reader::connect(&pki, &server);
    let start = Instant::now();
    while true_execs(&mut reader) < 10_000 {
        assert!(start.elapsed() < Duration::from_secs(90), "not all execs arrived");
        std::thread::sleep(Duration::from_millis(250));
    }
    let printed = agent.stop();
    let stored = wait_until_stored(&mut reader, &seqs_printed(&printed), Duration::from_secs(30));
    // stored = sent, each once.
    assert_eq!(seqs_stored(&stored), seqs_printed(&printed));
    assert_eq!(stored.len(), printed.len());
    // The agent did reconnect (its last health record, as stored, says so).
    let Some(Body::AgentHealth(last)) = &stored.last().unwrap().body else {
        panic!("the last stored event is the shutdown record");
    };
    assert_eq!(last.reason, "shutdown");
    let spool = last.spool.as_ref().expect("health carries the spool");
    assert!(spool.reconnects >= 1, "{spool:?}");
    assert!(spool.dropped.values().all(|n| *n == 0), "{spool:?}");
    let stats = reader.stats();
    eprintln!("after the crash: {stats:?}");
    assert_eq!(stats.events_stored, printed.len() as u64);
    server.stop();
}

#[test]
fn agent_killed_resends_its_spool_and_marks_the_restart() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let mut server = Server::start(&pki, "127.0.0.1", &[]);
    let state = std::sync::Arc::new(TempDir::new("agent-state"));
    let flags = agent_flags(&pki, &server, &["--no-journal", "--scope", "all"]);
    let agent = Agent::start_with(&[], state.clone(), &strs(&flags));
    // With the server down, events can only wait in the spool.
    server.kill9();
    run_true(2000);
    agent.wait_for_count("2000 execs spooled", 2000, is_true_exec);
    let before = agent.kill9();
    let last_before = before.iter().map(|e| e["seq"].as_u64().unwrap()).max().unwrap();

    server.restart();
    let again = Agent::start_with(&[], state, &strs(&flags));
    let mut reader = Reader::connect(&pki, &server);
    let stored = wait_until_stored(&mut reader, &seqs_printed(&before), Duration::from_mins(1));
    let after = again.stop();
    let stored_after = wait_until_stored(&mut reader, &seqs_printed(&after), Duration::from_secs(30));
    assert!(stored_after.len() >= stored.len());
    let all = seqs_stored(&stored_after);
    let printed: BTreeSet<u64> = seqs_printed(&before)
        .union(&seqs_printed(&after))
        .copied()
        .collect();
    assert_eq!(
        all, printed,
        "every spooled event arrived, nothing else, nothing twice"
    );

    // The gap between the runs is marked by the restart record.
    let restart = stored_after
        .iter()
        .find_map(|e| match &e.body {
            Some(Body::AgentHealth(h)) if h.reason == "start" && e.seq > last_before => Some((e.seq, h)),
            _ => None,
        })
        .expect("the second run's start record is stored");
    let resumed = restart
        .1
        .resumed_after_seq
        .expect("a restart names where numbering resumed");
    assert!(
        resumed >= last_before,
        "resumed after {resumed}, the first run printed up to {last_before}"
    );
    let first_after = after.iter().map(|e| e["seq"].as_u64().unwrap()).min().unwrap();
    assert_eq!(
        restart.0, first_after,
        "the restart record is the second run's first event"
    );
    assert!(first_after > resumed);
    // Nothing stored falls in the explained gap.
    assert!(all.iter().all(|s| *s <= last_before || *s > resumed));
    server.stop();
}

#[test]
fn thirty_second_network_cut_loses_nothing() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let netns = NetNs::create();
    let server = Server::start(&pki, NETNS_HOST_ADDR, &[]);
    let flags = agent_flags(&pki, &server, &["--no-journal", "--scope", "all"]);
    let wrapper = netns.wrapper();
    let agent = Agent::start_with(
        &strs(&wrapper),
        std::sync::Arc::new(TempDir::new("agent-state")),
        &strs(&flags),
    );
    let mut reader = Reader::connect(&pki, &server);
    run_true(300);
    let start = Instant::now();
    while true_execs(&mut reader) < 300 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the link works before the cut"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    netns.cut();
    let cut_at = Instant::now();
    run_true(1000);
    agent.wait_for_count("1300 execs", 1300, is_true_exec);
    let stored_during = true_execs(&mut reader);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(cut_at.elapsed()));
    assert!(
        stored_during < 1300,
        "nothing should cross a cut link ({stored_during} stored)"
    );
    netns.heal();

    let start = Instant::now();
    while true_execs(&mut reader) < 1300 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "after the link healed, not all execs arrived:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let printed = agent.stop();
    let stored = wait_until_stored(&mut reader, &seqs_printed(&printed), Duration::from_secs(30));
    assert_eq!(seqs_stored(&stored), seqs_printed(&printed));
    assert_eq!(true_execs(&mut reader), 1300);
    server.stop();
}

/// An agent's stream as a test drives it: send messages, read the server's answer.
mod raw {
    use std::time::Duration;

    use bytes::{Buf as _, BufMut as _};
    use prost::Message as _;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use watchtower_pki::ClientTls;
    use watchtower_proto::pb::ServerMessage;

    /// Sends bytes as they are (a malformed or oversized message), decodes answers.
    #[derive(Default)]
    pub struct RawCodec;
    pub struct RawEncoder;
    pub struct AnswerDecoder;

    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for AnswerDecoder {
        type Item = ServerMessage;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ServerMessage>, tonic::Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            ServerMessage::decode(bytes)
                .map(Some)
                .map_err(|e| tonic::Status::internal(e.to_string()))
        }
    }

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = ServerMessage;
        type Encoder = RawEncoder;
        type Decoder = AnswerDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> AnswerDecoder {
            AnswerDecoder
        }
    }

    /// Open an ingest stream with `tls`, send `messages` (encoded bytes), and return
    /// the answers until the stream ends, or the status that ended it.
    pub async fn exchange(
        address: &str,
        tls: ClientTls,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<ServerMessage>, tonic::Status> {
        let channel = watchtower_e2e::central::channel(address, tls)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("ready: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let path = http::uri::PathAndQuery::from_static("/watchtower.v1.Ingest/Stream");
        let call = grpc.streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path,
            RawCodec,
        );
        let sender = tokio::spawn(async move {
            for m in messages {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            // Keep the stream open until the server answers or ends it.
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        let mut answers = Vec::new();
        let mut stream = call.await?.into_inner();
        let result = loop {
            match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                Ok(Ok(Some(m))) => answers.push(m),
                Ok(Ok(None)) | Err(_) => break Ok(answers),
                Ok(Err(status)) => break Err(status),
            }
        };
        sender.abort();
        result
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn hello(host: &str) -> Vec<u8> {
    use prost::Message as _;
    watchtower_proto::pb::AgentMessage {
        msg: Some(watchtower_proto::pb::agent_message::Msg::Hello(
            watchtower_proto::pb::Hello {
                host_id: host.into(),
                boot_id: "b".into(),
                agent_version: "test".into(),
            },
        )),
    }
    .encode_to_vec()
}

fn batch(host: &str, id: u64, seqs: std::ops::Range<u64>) -> Vec<u8> {
    use prost::Message as _;
    let events = seqs
        .map(|seq| Event {
            host_id: host.into(),
            boot_id: "test-boot".into(),
            seq,
            time_unix_ns: now_ns() + seq,
            body: Some(Body::Exec(watchtower_proto::pb::Exec {
                filename: "/bin/true".into(),
                ..watchtower_proto::pb::Exec::default()
            })),
        })
        .collect();
    watchtower_proto::pb::AgentMessage {
        msg: Some(watchtower_proto::pb::agent_message::Msg::Batch(
            watchtower_proto::pb::EventBatch { batch_id: id, events },
        )),
    }
    .encode_to_vec()
}

#[test]
fn bad_certificates_and_host_claims_are_refused_and_nothing_is_stored() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let rt = watchtower_e2e::central::runtime();
    let address = server.address();
    let attempt = |cert: Option<&str>, messages: Vec<Vec<u8>>| {
        rt.block_on(raw::exchange(&address, pki.client_tls(cert), messages))
    };
    // No certificate, another CA's, an expired one: the TLS handshake fails.
    for cert in [None, Some("rogue"), Some("expired")] {
        let result = attempt(cert, vec![hello(HOST), batch(HOST, 1, 1..4)]);
        assert!(result.is_err(), "{cert:?} must be refused, got {result:?}");
    }
    // A valid agent certificate claiming another host: in its Hello, in a batch.
    let refused = attempt(Some(HOST), vec![hello(OTHER_HOST)]).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = attempt(Some(HOST), vec![batch(OTHER_HOST, 1, 1..4)]).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains(OTHER_HOST), "{refused:?}");
    // A reader may not ingest.
    let refused = attempt(Some("reader"), vec![batch(HOST, 1, 1..4)]).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let mut reader = Reader::connect(&pki, &server);
    assert!(
        reader.events(&EventFilter::default()).is_empty(),
        "nothing stored"
    );
    assert!(reader.hosts().iter().all(|h| h.events_stored == 0));
    let stats = reader.stats();
    assert_eq!(stats.events_stored, 0);
    // (a client may try a refused handshake more than once: count what the log says)
    assert_eq!(stats.rejected.get("host_mismatch"), Some(&2), "{stats:?}");
    assert_eq!(stats.rejected.get("not_an_agent"), Some(&1), "{stats:?}");
    let log = server.log();
    assert!(stats.tls_handshake_failures >= 3, "{stats:?}");
    assert_eq!(
        log.matches("TLS handshake refused").count() as u64,
        stats.tls_handshake_failures,
        "every refused handshake is logged and counted: {log}"
    );
    for cause in [
        "peer sent no certificates",
        // Another CA with the very same name: the signature gives it away.
        "invalid peer certificate: BadSignature",
        "certificate expired",
    ] {
        assert!(log.contains(cause), "the log names the cause {cause:?}: {log}");
    }
    assert!(log.contains("claiming another host"), "{log}");

    // The real owner of the certificate still gets through.
    let answers = attempt(Some(HOST), vec![hello(HOST), batch(HOST, 7, 1..4)]).unwrap();
    assert_eq!(answers.len(), 1);
    let Some(watchtower_proto::pb::server_message::Msg::Ack(ack)) = &answers[0].msg else {
        panic!("{answers:?}")
    };
    assert_eq!(
        (ack.batch_id, ack.stored, ack.duplicates, ack.last_seq),
        (7, 3, 0, 3)
    );
    assert_eq!(reader.host_events(HOST).len(), 3);
    server.stop();
}

#[test]
fn malformed_and_oversized_messages_are_refused_counted_and_survived() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let rt = watchtower_e2e::central::runtime();
    let address = server.address();
    let attempt =
        |messages: Vec<Vec<u8>>| rt.block_on(raw::exchange(&address, pki.client_tls(Some(HOST)), messages));
    // Not protobuf at all.
    let refused = attempt(vec![vec![0xff; 32]]).unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // Over the 4 MiB limit.
    let refused = attempt(vec![vec![0u8; 5 * 1024 * 1024]]).unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Valid protobuf, one invalid event (seq 0): that event is refused by name, the
    // other two are stored.
    let answers = attempt(vec![batch(HOST, 1, 0..3)]).unwrap();
    let Some(watchtower_proto::pb::server_message::Msg::Ack(ack)) =
        answers.first().and_then(|a| a.msg.clone())
    else {
        panic!("an ack: {answers:?}");
    };
    assert_eq!(ack.stored, 2, "{ack:?}");
    let refused: Vec<(u32, &str)> = ack
        .refused
        .iter()
        .map(|r| (r.position, r.reason.as_str()))
        .collect();
    assert_eq!(refused, [(0, "no_seq")], "{ack:?}");

    // The server keeps serving.
    let answers = attempt(vec![batch(HOST, 1, 1..101)]).unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let mut reader = Reader::connect(&pki, &server);
    assert_eq!(reader.host_events(HOST).len(), 100);
    let stats = reader.stats();
    assert_eq!(stats.rejected.get("malformed"), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.get("oversized"), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.get("invalid_event"), Some(&1), "{stats:?}");
    assert_eq!(stats.events_stored, 100);
    server.stop();
}

#[test]
fn subscribers_see_exactly_the_matching_events_as_they_are_stored() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let rt = watchtower_e2e::central::runtime();
    let address = server.address();
    let channel = rt
        .block_on(watchtower_e2e::central::channel(
            &address,
            pki.client_tls(Some("reader")),
        ))
        .expect("reader connects");
    let mut client = watchtower_proto::pb::query_client::QueryClient::new(channel);
    let mut live = rt
        .block_on(client.subscribe(watchtower_proto::pb::SubscribeRequest {
            filter: Some(EventFilter {
                host_id: HOST.into(),
                kinds: vec![EventKind::Exec as i32],
                ..EventFilter::default()
            }),
            alerts: false,
        }))
        .expect("Subscribe")
        .into_inner();
    // Another host's events, then ours in two batches.
    let other = rt.block_on(raw::exchange(
        &address,
        pki.client_tls(Some(OTHER_HOST)),
        vec![batch(OTHER_HOST, 1, 1..4)],
    ));
    assert_eq!(other.unwrap().len(), 1);
    let ours = rt.block_on(raw::exchange(
        &address,
        pki.client_tls(Some(HOST)),
        vec![batch(HOST, 1, 1..4), batch(HOST, 2, 4..6)],
    ));
    assert_eq!(ours.unwrap().len(), 2);
    let received = rt.block_on(async {
        let mut seen = Vec::new();
        while let Ok(Ok(Some(item))) = tokio::time::timeout(Duration::from_secs(2), live.message()).await {
            match item.item {
                Some(watchtower_proto::pb::live_item::Item::Stored(stored)) => {
                    seen.push(stored.event.unwrap());
                }
                other => panic!("only stored events were asked for, got {other:?}"),
            }
        }
        seen
    });
    let seqs: Vec<_> = received.iter().map(|e| (e.host_id.as_str(), e.seq)).collect();
    assert_eq!(
        seqs,
        (1..6).map(|s| (HOST, s)).collect::<Vec<_>>(),
        "exactly ours, in order"
    );
    let mut reader = Reader::connect(&pki, &server);
    assert_eq!(reader.stats().subscribers, 1);
    drop(live);
    server.stop();
}
