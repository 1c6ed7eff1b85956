//! Fleet mode on a real three-node NATS JetStream cluster (mutual TLS, users
//! by certificate): two front doors, two indexers, agents that fail over
//! between front doors, and a NATS node, an indexer and a front door killed
//! with -9 during the run. Every event made must be stored in exactly one
//! shard, exactly once, in order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use watchtower_e2e::central::{Pki, Reader, Server};
use watchtower_e2e::central::{curl, sample};
use watchtower_e2e::fleet::{self, NatsCluster, try_ingest_batch};
use watchtower_proto::pb::event::Body;

const HOSTS: [&str; 4] = ["fleet-a", "fleet-b", "fleet-c", "fleet-d"];
const BOOT: &str = "fleet-boot";
const EVENTS_PER_BATCH: u64 = 100;
const BATCHES_PER_PHASE: u64 = 5;

/// An agent's delivery: each batch to the first front door that answers, resent
/// to the next one when a front door is gone or did not confirm, until acked.
struct Agents {
    next_batch: BTreeMap<&'static str, u64>,
    /// Which front door each agent uses now.
    door: BTreeMap<&'static str, usize>,
    failovers: usize,
}

impl Agents {
    fn new() -> Agents {
        Agents {
            next_batch: HOSTS.iter().map(|h| (*h, 1)).collect(),
            door: HOSTS.iter().enumerate().map(|(n, h)| (*h, n % 2)).collect(),
            failovers: 0,
        }
    }

    fn send_phase(&mut self, pki: &Pki, doors: &[String]) {
        for host in HOSTS {
            for _ in 0..BATCHES_PER_PHASE {
                let id = self.next_batch[host];
                let first = (id - 1) * EVENTS_PER_BATCH + 1;
                let start = Instant::now();
                loop {
                    let door = self.door[host];
                    match try_ingest_batch(
                        pki,
                        &doors[door],
                        host,
                        BOOT,
                        id,
                        fleet::execs(host, BOOT, first..first + EVENTS_PER_BATCH),
                    ) {
                        Ok(ack) => {
                            assert_eq!(ack.last_seq, first + EVENTS_PER_BATCH - 1);
                            assert!(ack.refused.is_empty(), "{:?}", ack.refused);
                            break;
                        }
                        Err(e) => {
                            eprintln!("[agent {host}] front door {door}: {e}; failing over");
                            self.failovers += 1;
                            self.door.insert(host, (door + 1) % doors.len());
                            assert!(
                                start.elapsed() < Duration::from_mins(2),
                                "batch {id} of {host} never acknowledged"
                            );
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                self.next_batch.insert(host, id + 1);
            }
        }
    }

    fn made(&self, host: &str) -> u64 {
        (self.next_batch[host] - 1) * EVENTS_PER_BATCH
    }
}

/// One view of every shard through a query node: every event once, in time
/// order, each host complete; the hosts and stats of all shards.
/// A query node over `indexers` (with the reader certificate).
fn start_query_node(pki: &Pki, indexers: &[Server]) -> Server {
    let addresses: Vec<String> = indexers.iter().map(Server::address).collect();
    query_node_over(pki, &addresses)
}

/// A query node whose shards are the indexers at `addresses`, in order.
fn query_node_over(pki: &Pki, addresses: &[String]) -> Server {
    let mut query_args = fleet::server_args(&[], "query", None);
    for address in addresses {
        query_args.extend(["--indexer".to_owned(), address.clone()]);
    }
    for (flag, value) in [
        ("--indexer-cert", pki.path("reader.pem")),
        ("--indexer-key", pki.path("reader.key")),
    ] {
        query_args.extend([flag.to_owned(), value.display().to_string()]);
    }
    query_args.extend(["--indexer-server-name".to_owned(), "localhost".to_owned()]);
    fleet::start(pki, &query_args)
}

fn check_query_view(pki: &Pki, indexers: &[Server], agents: &Agents) {
    let query_node = start_query_node(pki, indexers);
    let mut view = Reader::connect(pki, &query_node);
    let all = view.events(&watchtower_proto::pb::EventFilter::default());
    let made: u64 = HOSTS.iter().map(|h| agents.made(h)).sum();
    assert_eq!(
        all.len() as u64,
        made,
        "the query node returns every event of every shard once"
    );
    assert!(
        all.windows(2).all(|w| w[0].time_unix_ns <= w[1].time_unix_ns),
        "events come in time order across shards"
    );
    for host in HOSTS {
        let seqs: Vec<u64> = all.iter().filter(|e| e.host_id == host).map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=agents.made(host)).collect::<Vec<_>>(),
            "{host} through the query node"
        );
        assert_eq!(view.host_events(host).len() as u64, agents.made(host));
    }
    let hosts: Vec<String> = view.hosts().into_iter().map(|h| h.host_id).collect();
    assert_eq!(hosts, HOSTS.map(str::to_owned).to_vec());
    assert_eq!(view.stats().events_stored, made);
}

#[test]
fn a_fleet_survives_a_nats_node_an_indexer_and_a_front_door_killed_and_one_query_view_holds_every_event_once()
{
    if !fleet::nats_available() {
        return;
    }
    let pki = Pki::new();
    fleet::add_certificates(&pki, &HOSTS);
    let mut cluster = NatsCluster::start(&pki);
    let indexer_args = cluster.server_args(&pki, "indexer");
    let door_args = cluster.server_args(&pki, "front-door");
    let mut indexers: Vec<Server> = ["0", "1"]
        .iter()
        .map(|shard| fleet::start(&pki, &fleet::server_args(&indexer_args, "indexer", Some(shard))))
        .collect();
    let mut doors: Vec<Server> = (0..2)
        .map(|_| fleet::start(&pki, &fleet::server_args(&door_args, "front-door", None)))
        .collect();
    let addresses: Vec<String> = doors.iter().map(Server::address).collect();
    let mut agents = Agents::new();

    agents.send_phase(&pki, &addresses);
    eprintln!("--- kill -9 NATS node n3");
    cluster.nodes[2].kill9();
    agents.send_phase(&pki, &addresses);
    eprintln!("--- kill -9 indexer of shard 0; its shard waits in the stream");
    indexers[0].kill9();
    agents.send_phase(&pki, &addresses);
    indexers[0].restart();
    eprintln!("--- kill -9 front door 0; its agents move to front door 1");
    doors[0].kill9();
    agents.send_phase(&pki, &addresses);
    assert!(agents.failovers >= 2, "the agents of front door 0 failed over");
    // A batch resent after an Ack that never arrived: JetStream knows its ids.
    let resent = try_ingest_batch(
        &pki,
        &addresses[1],
        HOSTS[0],
        BOOT,
        1,
        fleet::execs(HOSTS[0], BOOT, 1..1 + EVENTS_PER_BATCH),
    )
    .expect("resend acknowledged");
    assert_eq!((resent.stored, resent.duplicates), (0, EVENTS_PER_BATCH as u32));
    cluster.nodes[2].restart();

    let mut readers: Vec<Reader> = indexers.iter().map(|i| Reader::connect(&pki, i)).collect();
    let deadline = Instant::now() + Duration::from_mins(2);
    let found = loop {
        let found = fleet::stored(&mut readers, &HOSTS);
        let complete = HOSTS.iter().all(|host| {
            found.get(*host).is_some_and(|shards| {
                shards.iter().map(|(_, s)| s.len() as u64).sum::<u64>() >= agents.made(host)
            })
        });
        if complete || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut shards_used = [0usize; 2];
    for host in HOSTS {
        let shards = found
            .get(host)
            .unwrap_or_else(|| panic!("nothing of {host} stored"));
        assert_eq!(
            shards.len(),
            1,
            "{host} is stored in exactly one shard: {:?}",
            shards.iter().map(|(s, e)| (s, e.len())).collect::<Vec<_>>()
        );
        let (shard, seqs) = &shards[0];
        shards_used[*shard] += 1;
        let want: Vec<u64> = (1..=agents.made(host)).collect();
        assert_eq!(seqs, &want, "{host}: every event once, in order");
    }
    assert!(
        shards_used.iter().all(|&n| n > 0),
        "both shards hold hosts: {shards_used:?}"
    );
    check_query_view(&pki, &indexers, &agents);
    for (shard, reader) in readers.iter_mut().enumerate() {
        let hosts = reader.hosts();
        for host in &hosts {
            assert_eq!(host.boot_id, BOOT, "shard {shard} keeps {}'s Hello", host.host_id);
        }
    }
    for indexer in &indexers {
        let metrics = curl(&[&indexer.exporter_url("/metrics")]);
        assert!(
            !metrics.lines().any(
                |l| l.starts_with("watchtower_fleet_messages_total{result=\"malformed\"}")
                    && !l.ends_with(" 0")
            ),
            "no malformed message:\n{metrics}"
        );
    }
    drop(doors);
}

#[test]
fn only_front_doors_publish_and_only_indexers_consume() {
    if !fleet::nats_available() {
        return;
    }
    let pki = Pki::new();
    fleet::add_certificates(&pki, &HOSTS);
    let cluster = NatsCluster::start(&pki);
    // An indexer's key used as a front door: its publishes are refused, the agent
    // is not acknowledged and keeps its batch.
    let as_indexer = cluster.server_args(&pki, "indexer");
    let mut door = fleet::start(&pki, &fleet::server_args(&as_indexer, "front-door", None));
    let refused = try_ingest_batch(
        &pki,
        &door.address(),
        HOSTS[0],
        BOOT,
        1,
        fleet::execs(HOSTS[0], BOOT, 1..11),
    );
    let error = refused.expect_err("an indexer's identity cannot publish events");
    assert!(
        error.contains("did not confirm") || error.contains("stream"),
        "{error}"
    );
    door.kill9();
    // A front door's key used as an indexer: it may not open a consumer.
    let as_door = cluster.server_args(&pki, "front-door");
    let indexer = fleet::start(&pki, &fleet::server_args(&as_door, "indexer", Some("0")));
    let began = Instant::now();
    while !indexer.log().contains("cannot open the consumer") {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the consumer was opened:\n{}",
            indexer.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A certificate of the same CA that names no NATS user is turned away.
    let stranger = cluster.server_args(&pki, "nats-stranger");
    let out = std::process::Command::new(watchtower_e2e::central::server_binary())
        .args(["--listen", "127.0.0.1:0", "--no-exporter", "--ca"])
        .arg(pki.path("ca.pem"))
        .arg("--cert")
        .arg(pki.path("server.pem"))
        .arg("--key")
        .arg(pki.path("server.key"))
        .args(fleet::server_args(&stranger, "front-door", None))
        .output()
        .expect("run the server");
    assert!(!out.status.success(), "a stranger's front door started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stream"), "{stderr}");
}

/// The real agent with two front doors: front door 0 is killed with -9 while an
/// exec burst streams; the agent moves to front door 1 and every event it made
/// is stored once, found through the query node.
#[test]
fn the_real_agent_fails_over_to_another_front_door_and_loses_nothing() {
    use serde_json::Value;
    use watchtower_e2e::central::HOST;
    if !watchtower_e2e::privileged() || !fleet::nats_available() {
        return;
    }
    let pki = Pki::new();
    fleet::add_certificates(&pki, &[]);
    let cluster = NatsCluster::start(&pki);
    let indexer_args = cluster.server_args(&pki, "indexer");
    let door_args = cluster.server_args(&pki, "front-door");
    let indexers: Vec<Server> = ["0", "1"]
        .iter()
        .map(|shard| fleet::start(&pki, &fleet::server_args(&indexer_args, "indexer", Some(shard))))
        .collect();
    let mut doors: Vec<Server> = (0..2)
        .map(|_| fleet::start(&pki, &fleet::server_args(&door_args, "front-door", None)))
        .collect();
    let mut flags = pki.agent_args(&doors[0].address());
    flags.extend(
        [
            "--server",
            &doors[1].address(),
            "--no-journal",
            "--scope",
            "all",
            "--witness-interval-secs",
            "0",
        ]
        .map(str::to_owned),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = watchtower_e2e::Agent::start(&flags);
    let is_true = |e: &Value| e["kind"] == "exec" && e["filename"] == "/bin/true";
    let burst = std::thread::spawn(|| {
        let script = "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done";
        assert!(
            std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .status()
                .unwrap()
                .success()
        );
    });
    agent.wait_for_count("the first 500 execs", 500, is_true);
    eprintln!("--- kill -9 front door 0");
    doors[0].kill9();
    burst.join().unwrap();
    agent.wait_for_count("all 3,000 execs", 3000, is_true);
    let query_node = start_query_node(&pki, &indexers);
    let mut view = Reader::connect(&pki, &query_node);
    let connected = |view: &mut Reader| view.hosts().iter().any(|h| h.host_id == HOST && h.connected);
    assert!(
        connected(&mut view),
        "the agent shows connected through the query node"
    );
    let printed = agent.stop();
    // Its front door says the stream ended: no longer connected.
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected(&mut view) {
        assert!(Instant::now() < deadline, "the agent stopped but shows connected");
        std::thread::sleep(Duration::from_millis(200));
    }
    let want: Vec<u64> = {
        let mut seqs: Vec<u64> = printed.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        seqs.sort_unstable();
        seqs
    };
    let deadline = Instant::now() + Duration::from_mins(2);
    let stored = loop {
        let stored = view.host_events(HOST);
        if stored.len() >= want.len() || Instant::now() > deadline {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, want, "every event the agent made is stored once");
    let trues = stored
        .iter()
        .filter(|e| matches!(&e.body, Some(Body::Exec(x)) if x.filename == "/bin/true"))
        .count();
    assert_eq!(trues, 3000);
    assert!(agent_moved(&doors[1]), "the agent reached front door 1");
}

fn agent_moved(door: &Server) -> bool {
    door.log().contains("agent connected (front door)")
}

/// `watchtowerctl verify --json` through `server` with both shards' keys.
fn verify_fleet(pki: &Pki, server: &Server, state: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let (k0, k1) = (fleet::shard_key(0), fleet::shard_key(1));
    let args = [
        &[
            "verify",
            "--json",
            "--public-key",
            &k0,
            "--public-key",
            &k1,
            "--state",
            state,
        ][..],
        extra,
    ]
    .concat();
    let (code, out, err) = watchtower_e2e::central::ctl(pki, server, &args);
    assert_ne!(code, 2, "{err}");
    (
        code,
        serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}")),
    )
}

/// Change one stored exec of `host` in the stopped indexer's `RocksDB`, as an
/// intruder with its files would. Returns its seq.
fn rewrite_an_exec(data: &std::path::Path, host: &str) -> u64 {
    use prost::Message as _;
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, data).expect("list column families");
    let db = rocksdb::DB::open_cf(&options, data, &families).expect("open the indexer's RocksDB");
    let events = db.cf_handle("events").expect("events family");
    let prefix = format!("{host}\0");
    for item in db.iterator_cf(
        events,
        rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
    ) {
        let (key, value) = item.unwrap();
        assert!(key.starts_with(prefix.as_bytes()), "no exec of {host} stored");
        let mut stored = watchtower_proto::pb::StoredEvent::decode(&*value).unwrap();
        let event = stored.event.as_mut().unwrap();
        if let Some(Body::Exec(exec)) = &mut event.body {
            exec.filename = "/usr/bin/innocent".into();
            let seq = event.seq;
            db.put_cf(events, &key, stored.encode_to_vec()).unwrap();
            db.flush_cf(events).unwrap();
            return seq;
        }
    }
    panic!("no exec of {host} stored");
}

/// Each shard keeps and signs its own log. The real agent gets its receipts
/// and proofs through the query node and proves them against its shard's key;
/// `watchtowerctl verify` through the query node checks both shards' logs; a
/// record rewritten in one indexer's files is named in that shard's report; and
/// a query node that shows one shard's log in place of the other is caught.
#[test]
fn every_shards_log_is_proven_through_the_query_node_to_its_agent_and_to_an_auditor() {
    use watchtower_e2e::central::HOST;
    if !watchtower_e2e::privileged() || !fleet::nats_available() {
        return;
    }
    let pki = Pki::new();
    fleet::add_certificates(&pki, &[]);
    let cluster = NatsCluster::start(&pki);
    let mut indexer_args = cluster.server_args(&pki, "indexer");
    indexer_args.extend(["--checkpoint-interval-secs".to_owned(), "1".to_owned()]);
    let door_args = cluster.server_args(&pki, "front-door");
    let mut indexers: Vec<Server> = ["0", "1"]
        .iter()
        .map(|shard| fleet::start(&pki, &fleet::server_args(&indexer_args, "indexer", Some(shard))))
        .collect();
    let door = fleet::start(&pki, &fleet::server_args(&door_args, "front-door", None));
    let query_node = start_query_node(&pki, &indexers);

    let state = agent_proves_its_receipts(&pki, &door, &query_node);

    // The agent's host lives in one shard; the agent kept that shard's checkpoint.
    let mut readers: Vec<Reader> = indexers.iter().map(|i| Reader::connect(&pki, i)).collect();
    let home = (0..2)
        .find(|&s| !readers[s].host_events(HOST).is_empty())
        .expect("the agent's events are in a shard");
    drop(readers);
    let kept = std::fs::read_to_string(state.0.join("log-witness.checkpoint")).unwrap();
    let home_key = std::fs::read_to_string(fleet::shard_key(home)).unwrap();
    assert!(
        home_key.starts_with(kept.lines().next().unwrap()),
        "the agent's checkpoint is its shard's log: {kept:?} vs {home_key:?}"
    );

    // The auditor: both shards' logs through the query node, and the agent's
    // checkpoint proven consistent with its shard's log.
    let audit = watchtower_e2e::TempDir::new("fleet-audit");
    let audit_state = audit.0.join("checkpoints.json").display().to_string();
    let agent_copy = state.0.join("log-witness.checkpoint").display().to_string();
    let (code, report) = verify_fleet(&pki, &query_node, &audit_state, &["--witness", &agent_copy]);
    assert_eq!(code, 0, "{report}");
    let logs = report["logs"].as_array().expect("one report per shard");
    assert_eq!(logs.len(), 2, "{report}");
    for (shard, log) in logs.iter().enumerate() {
        assert_eq!(log["ok"], true, "shard {shard}: {log}");
        assert!(
            log["origin"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/shard-{shard}")),
            "{log}"
        );
    }
    assert!(logs[home]["records_intact"].as_u64() > Some(5), "{report}");

    // The intruder with one indexer's files rewrites an exec of the agent's host.
    indexers[home].terminate();
    let seq = rewrite_an_exec(&indexers[home].data.0, HOST);
    indexers[home].restart();
    let (code, report) = verify_fleet(&pki, &query_node, &audit_state, &[]);
    assert_eq!(code, 1, "{report}");
    let logs = report["logs"].as_array().unwrap();
    assert_eq!(logs[1 - home]["ok"], true, "the other shard is intact: {report}");
    let findings: Vec<(&str, u64)> = logs[home]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["problem"].as_str().unwrap(), f["seq"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(findings, vec![("changed", seq)], "{report}");

    a_log_shown_twice_is_caught(&pki, &indexers[1 - home]);
}

/// The real agent ships through `door` with `--witness-url` at `query_node`,
/// pins the first key it is shown (no --checkpoint-key: its shard's) and proves
/// at least five receipts with no finding. Returns its state directory.
fn agent_proves_its_receipts(
    pki: &Pki,
    door: &Server,
    query_node: &Server,
) -> std::sync::Arc<watchtower_e2e::TempDir> {
    use serde_json::Value;
    let state = std::sync::Arc::new(watchtower_e2e::TempDir::new("fleet-witness-agent"));
    let mut flags = pki.agent_args(&door.address());
    flags.extend(
        [
            "--no-journal",
            "--scope",
            "all",
            "--witness-url",
            &query_node.address(),
            "--witness-interval-secs",
            "1",
        ]
        .map(str::to_owned),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = watchtower_e2e::Agent::start_with(&[], state.clone(), &flags);
    for _ in 0..5 {
        assert!(
            std::process::Command::new("/bin/true")
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let witness = |e: &Value| e["kind"] == "agent_health" && e["log_witness"].is_object();
    let proven = agent.wait_for("receipts asked for and proven through the query node", |e| {
        witness(e) && e["log_witness"]["receipts_verified"].as_u64() >= Some(5)
    });
    assert_eq!(
        proven["log_witness"]["findings"],
        serde_json::json!({}),
        "{proven}"
    );
    drop(agent.stop());
    assert!(
        door.log().contains("agent connected (front door)"),
        "the agent shipped through the front door"
    );

    state
}

/// A query node that shows one shard's log as both shards (misconfigured, or
/// an intruder's) cannot pass the other shard off as checked.
fn a_log_shown_twice_is_caught(pki: &Pki, shown: &Server) {
    let twice = query_node_over(pki, &[shown.address(), shown.address()]);
    let fresh = watchtower_e2e::TempDir::new("fleet-audit-twice");
    let fresh_state = fresh.0.join("checkpoints.json").display().to_string();
    let (code, report) = verify_fleet(pki, &twice, &fresh_state, &[]);
    assert_eq!(code, 1, "{report}");
    let problems: Vec<&str> = report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["findings"].as_array().unwrap().iter())
        .map(|f| f["problem"].as_str().unwrap())
        .collect();
    assert!(problems.contains(&"missing_log"), "{report}");
    assert!(problems.contains(&"duplicate_log"), "{report}");
}

/// Batch `id` of `HOSTS[0]`: 100 execs of ~12 KiB, cut into three messages.
fn send_large(pki: &Pki, door: &Server, id: u64) -> Result<watchtower_proto::pb::Ack, String> {
    let first = (id - 1) * EVENTS_PER_BATCH + 1;
    let events = fleet::large_execs(HOSTS[0], BOOT, first..first + EVENTS_PER_BATCH);
    try_ingest_batch(pki, &door.address(), HOSTS[0], BOOT, id, events)
}

/// Fill the stream, which nothing consumes: large batches of `HOSTS[0]` until
/// one is refused, then small ones of `HOSTS[1]` until even one of those is.
/// Returns the refused large batch and how many small ones were acknowledged.
fn fill(pki: &Pki, door: &Server) -> (u64, u64) {
    // Batch `id` until it is acknowledged (true) or refused as full (false);
    // other refusals (the new stream still electing its leader) are retried.
    let fits = |id: u64| {
        for _ in 0..20 {
            match send_large(pki, door, id) {
                Ok(ack) => {
                    assert_eq!(ack.stored + ack.duplicates, EVENTS_PER_BATCH as u32, "batch {id}");
                    return true;
                }
                Err(e) if e.contains("ingest stream is full") => {
                    assert!(
                        e.contains("The service is currently unavailable"),
                        "batch {id} refused with UNAVAILABLE (retry later): {e}"
                    );
                    return false;
                }
                Err(e) => {
                    eprintln!("batch {id}: {e}; again");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        panic!("batch {id} neither stored nor refused as full");
    };
    let full_at = (1..=20)
        .find(|&id| !fits(id))
        .expect("a 4 MiB stream fills within 20 batches of 1.2 MB");
    assert!(full_at > 1, "the first batch fits");
    // What room is left is then less than any real batch of execs.
    let topped_up = (1..=200)
        .find(|&id| {
            let first = (id - 1) * EVENTS_PER_BATCH + 1;
            let events = fleet::execs(HOSTS[1], BOOT, first..first + EVENTS_PER_BATCH);
            try_ingest_batch(pki, &door.address(), HOSTS[1], BOOT, id, events).is_err()
        })
        .expect("a small batch refused within 200")
        - 1;
    let again = send_large(pki, door, full_at).expect_err("still full while nothing consumes");
    assert!(again.contains("ingest stream is full"), "{again}");
    (full_at, topped_up)
}

/// The front door's exporter counts the refusals and stays healthy (NATS is up).
fn front_door_says_full(door: &Server) {
    let metrics = curl(&[&door.exporter_url("/metrics")]);
    assert!(
        sample(
            &metrics,
            "watchtower_fleet_messages_total{result=\"stream_full\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "the refusals are counted:\n{metrics}"
    );
    assert_eq!(
        sample(&metrics, "watchtower_nats_connected"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("watchtower_log_leaves"),
        "a front door shows no store:\n{metrics}"
    );
    let health = curl(&[&door.exporter_url("/healthz")]);
    assert!(
        health.contains("\"status\":\"ok\"") && health.contains("front-door"),
        "{health}"
    );
}

#[test]
fn a_full_stream_refuses_batches_with_a_clear_status_and_loses_none_of_them() {
    if !fleet::nats_available() {
        return;
    }
    let pki = Pki::new();
    fleet::add_certificates(&pki, &HOSTS);
    let cluster = NatsCluster::start(&pki);
    let door_args = cluster.server_args(&pki, "front-door");
    let door = fleet::start(
        &pki,
        &fleet::small_stream(fleet::server_args(&door_args, "front-door", None)),
    );
    let (full_at, topped_up) = fill(&pki, &door);
    front_door_says_full(&door);
    let agent = watchtower_e2e::privileged().then(|| agent_against_a_full_stream(&pki, &door));

    // The indexers drain the stream; the refused batch, resent as an agent does, lands once.
    let indexer_args = cluster.server_args(&pki, "indexer");
    let indexers: Vec<Server> = ["0", "1"]
        .iter()
        .map(|shard| {
            let args = fleet::server_args(&indexer_args, "indexer", Some(shard));
            fleet::start(&pki, &fleet::small_stream(args))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_mins(2);
    let resent = loop {
        match send_large(&pki, &door, full_at) {
            Ok(ack) => break ack,
            Err(e) => {
                assert!(Instant::now() < deadline, "the stream never drained: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    assert_eq!(
        resent.stored + resent.duplicates,
        EVENTS_PER_BATCH as u32,
        "every event of the resent batch is accounted for ({} new, {} already held)",
        resent.stored,
        resent.duplicates
    );
    send_large(&pki, &door, full_at + 1).expect("the next batch");
    let made = (full_at + 1) * EVENTS_PER_BATCH;
    let mut readers: Vec<Reader> = indexers.iter().map(|i| Reader::connect(&pki, i)).collect();
    let shards = fleet::stored_of(&mut readers, HOSTS[0], made);
    assert_eq!(shards.len(), 1, "{} is in one shard", HOSTS[0]);
    assert_eq!(
        shards[0].1,
        (1..=made).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let small: Vec<u64> = fleet::stored_of(&mut readers, HOSTS[1], topped_up * EVENTS_PER_BATCH)
        .into_iter()
        .flat_map(|(_, seqs)| seqs)
        .collect();
    assert_eq!(
        small,
        (1..=topped_up * EVENTS_PER_BATCH).collect::<Vec<_>>(),
        "{}: the batches acknowledged, none of the refused one",
        HOSTS[1]
    );
    if let Some(agent) = agent {
        fleet::every_event_of_the_agent_lands(agent, &mut readers);
    }
}

/// The real agent (`--scope all`) ships to a front door whose stream is full:
/// 300 execs made, its sends refused. It must keep its events
/// and retry, not take the refusal for a batch too large (halving its batches
/// down to single events, then quarantining them).
fn agent_against_a_full_stream(pki: &Pki, door: &Server) -> watchtower_e2e::Agent {
    use watchtower_e2e::central::HOST;
    let mut flags = pki.agent_args(&door.address());
    flags.extend(["--no-journal", "--scope", "all", "--witness-interval-secs", "0"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = watchtower_e2e::Agent::start(&flags);
    let script = "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done";
    assert!(
        std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .status()
            .unwrap()
            .success()
    );
    agent.wait_for_count("300 execs", 300, |e| {
        e["kind"] == "exec" && e["filename"] == "/bin/true"
    });
    let refusals = || {
        door.log()
            .lines()
            .filter(|l| l.contains("did not confirm a batch") && l.contains(HOST))
            .count()
    };
    let deadline = Instant::now() + Duration::from_mins(1);
    while refusals() == 0 {
        assert!(Instant::now() < deadline, "the agent was never refused");
        std::thread::sleep(Duration::from_millis(200));
    }
    // It retries (JetStream may take small batches into what room is left).
    std::thread::sleep(Duration::from_secs(2));
    let stderr = agent.stderr();
    assert!(
        !stderr.contains("refused a batch whole") && !stderr.contains(": quarantined"),
        "a full stream is not a batch too large:\n{stderr}"
    );
    agent
}
