//! The fleet arm: the same agents' batches into one watchtower-server, and through
//! a front door and a three-node NATS JetStream cluster (replicas 3) into one
//! indexer and into two (two shards), alternating in rounds. A fleet run is timed
//! from the first batch until the indexers hold every event (their own synced
//! writes), not until the front door's acks.

use std::time::{Duration, Instant};

use anyhow::bail;
use watchtower_e2e::central::{Pki, Reader, Server};
use watchtower_e2e::fleet::{self, NatsCluster};

use crate::ingest::{Link, Settings, grpc_clients, total, workload};
use crate::stats::Ratios;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arm {
    Single,
    OneIndexer,
    TwoIndexers,
}

const ARMS: [Arm; 3] = [Arm::Single, Arm::OneIndexer, Arm::TwoIndexers];

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::Single => "one watchtower-server (RocksDB), mutual TLS",
            Arm::OneIndexer => "front door → JetStream (R3) → one indexer",
            Arm::TwoIndexers => "front door → JetStream (R3) → two indexers (2 shards)",
        }
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct FleetResult {
    pub hosts: usize,
    pub events_per_run: u64,
    pub rates: Vec<(String, Vec<f64>)>,
    pub fleet_vs_single: Ratios,
    pub two_vs_one: Ratios,
}

fn stored_in(readers: &mut [Reader]) -> u64 {
    readers.iter_mut().map(|r| r.stats().events_stored).sum()
}

fn run_arm(arm: Arm, settings: &Settings, hosts: &[String], pki: &Pki, tag: &str) -> anyhow::Result<f64> {
    let work = workload(settings, hosts, tag);
    let expected = total(&work);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if arm == Arm::Single {
        let server = Server::start(pki, "127.0.0.1", &["--max-message-bytes", "16777216"]);
        let address = server.listen.to_string();
        let start = Instant::now();
        let stored = runtime.block_on(grpc_clients(&address, Link::Tls(pki), work, settings.window))?;
        let secs = start.elapsed().as_secs_f64();
        server.stop();
        if stored != expected {
            bail!("{}: {stored} of {expected} events stored", arm.name());
        }
        return Ok(expected as f64 / secs);
    }
    let shards = if arm == Arm::TwoIndexers { 2 } else { 1 };
    let cluster = NatsCluster::start(pki);
    let common = |role: &str| {
        let mut args: Vec<String> = vec![
            "--fleet-role".into(),
            role.into(),
            "--shards".into(),
            shards.to_string(),
            "--fleet-max-bytes".into(),
            "536870912".into(),
            "--max-message-bytes".into(),
            "16777216".into(),
        ];
        args.extend(cluster.server_args(pki, role));
        args
    };
    let keys = watchtower_e2e::TempDir::new("bench-fleet-keys");
    let indexers: Vec<Server> = (0..shards)
        .map(|shard| {
            let mut args = common("indexer");
            args.extend([
                "--shard".into(),
                shard.to_string(),
                "--signing-key".into(),
                keys.0.join(format!("shard-{shard}.key")).display().to_string(),
            ]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Server::start(pki, "127.0.0.1", &args)
        })
        .collect();
    let door_args = common("front-door");
    let door_args: Vec<&str> = door_args.iter().map(String::as_str).collect();
    let door = Server::start(pki, "127.0.0.1", &door_args);
    let mut readers: Vec<Reader> = indexers.iter().map(|i| Reader::connect(pki, i)).collect();
    let address = door.listen.to_string();
    let start = Instant::now();
    let published = runtime.block_on(grpc_clients(&address, Link::Tls(pki), work, settings.window))?;
    while stored_in(&mut readers) < expected {
        if start.elapsed() > Duration::from_mins(5) {
            bail!(
                "{}: {} of {expected} events stored after 5 minutes",
                arm.name(),
                stored_in(&mut readers)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let stored = stored_in(&mut readers);
    if published != expected || stored != expected {
        bail!(
            "{}: {published} published, {stored} stored of {expected}",
            arm.name()
        );
    }
    drop(door);
    drop(indexers);
    drop(cluster);
    Ok(expected as f64 / secs)
}

/// Four hosts of `events_per_host` each, in batches of 512, over `rounds`.
pub fn run(events_per_host: usize, rounds: usize) -> anyhow::Result<FleetResult> {
    let settings = &Settings {
        hosts: 4,
        events_per_host,
        batch: 512,
        window: 4,
        rounds,
    };
    watchtower_pki::install_crypto_provider();
    let hosts: Vec<String> = (0..settings.hosts).map(|i| format!("fleet-{i:02}")).collect();
    let pki = Pki::new();
    let host_names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    fleet::add_certificates(&pki, &host_names);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ARMS.len()];
    let mut result = FleetResult {
        hosts: settings.hosts,
        events_per_run: (settings.hosts * settings.events_per_host) as u64,
        ..FleetResult::default()
    };
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..ARMS.len()).collect();
        order.rotate_left(round % ARMS.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut this = [0.0; 3];
        for i in order {
            let rate = run_arm(ARMS[i], settings, &hosts, &pki, &format!("fleet-r{round}a{i}"))?;
            eprintln!(
                "fleet round {round}: {:<60} {rate:>10.0} events/s",
                ARMS[i].name()
            );
            this[i] = rate;
            rates[i].push(rate);
        }
        result.fleet_vs_single.push(this[1], this[0]);
        result.two_vs_one.push(this[2], this[1]);
    }
    result.rates = ARMS
        .iter()
        .zip(rates)
        .map(|(arm, r)| (arm.name().to_owned(), r))
        .collect();
    Ok(result)
}
