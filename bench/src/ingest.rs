//! Ingest throughput: events per second stored with durable acknowledgements,
//! over mutual TLS (the server binary, and the same services in-process), against
//! plaintext gRPC (the cost of TLS), `EventStore::append` alone, and a raw synced
//! `RocksDB` `WriteBatch` of the same encoded events.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use prost::Message as _;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use watchtower_e2e::TempDir;
use watchtower_e2e::central::{Pki, Server};
use watchtower_pki::{Authority, Role, Validity};
use watchtower_proto::pb::ingest_client::IngestClient;
use watchtower_proto::pb::ingest_server::IngestServer;
use watchtower_proto::pb::{
    AgentMessage, Event, EventBatch, Hello, StoredEvent, agent_message, server_message,
};
use watchtower_server::counters::ServerCounters;
use watchtower_server::ingest::IngestService;
use watchtower_server::metrics::Metrics;
use watchtower_server::store::EventStore;

use crate::stats::Ratios;

/// Largest gRPC message either side accepts here.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    RawRocksDb,
    EventStore,
    GrpcPlaintext,
    GrpcMtls,
    ServerBinary,
}

impl Arm {
    pub const ALL: [Arm; 5] = [
        Arm::RawRocksDb,
        Arm::EventStore,
        Arm::GrpcPlaintext,
        Arm::GrpcMtls,
        Arm::ServerBinary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arm::RawRocksDb => "raw RocksDB WriteBatch (in-process, synced)",
            Arm::EventStore => "EventStore::append (in-process: indexes, dedup, Merkle log)",
            Arm::GrpcPlaintext => "gRPC plaintext (in-process server)",
            Arm::GrpcMtls => "gRPC mutual TLS (in-process server)",
            Arm::ServerBinary => "watchtower-server binary, mutual TLS",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub hosts: usize,
    pub events_per_host: usize,
    pub batch: usize,
    /// Batches a stream keeps in flight before waiting for an ack.
    pub window: usize,
    pub rounds: usize,
}

/// The outcome: events/s per arm per round, and the ratios asked for.
#[derive(Debug, Default, serde::Serialize)]
pub struct IngestResult {
    /// Hosts sending at once.
    pub hosts: usize,
    pub rates: Vec<(String, Vec<f64>)>,
    pub mtls_vs_raw: Ratios,
    pub mtls_vs_plaintext: Ratios,
    pub binary_vs_raw: Ratios,
    pub store_vs_raw: Ratios,
}

/// Agent certificates for `hosts`, a server certificate for localhost, one CA.
fn bench_pki(hosts: &[String]) -> anyhow::Result<Pki> {
    let dir = TempDir::new("bench-pki");
    let write = |name: &str, text: &str| {
        watchtower_pki::write_file(
            &dir.0.join(name),
            text,
            std::path::Path::new(name).extension().is_some_and(|e| e == "key"),
        )
        .with_context(|| format!("writing {name}"))
    };
    let ca = Authority::generate("watchtower bench CA", Validity::days(2))?;
    write("ca.pem", &ca.cert_pem())?;
    let server = ca.issue_server(
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
        Validity::days(2),
    )?;
    write("server.pem", &server.cert_pem)?;
    write("server.key", &server.key_pem)?;
    for host in hosts {
        let issued = ca.issue_client(&watchtower_pki::Identity::agent(host)?, Validity::days(2))?;
        write(&format!("{host}.pem"), &issued.cert_pem)?;
        write(&format!("{host}.key"), &issued.key_pem)?;
    }
    Ok(Pki { dir })
}

/// The batches of every host for one arm of one round (a boot id of their own, so
/// nothing is a duplicate of an earlier run).
pub(crate) fn workload(settings: &Settings, hosts: &[String], boot: &str) -> Vec<(String, Vec<Vec<Event>>)> {
    let t0 = watchtower_server::now_unix_ns() - 3_600_000_000_000;
    hosts
        .iter()
        .map(|host| {
            // As an agent sends them: the server's arms convert them as its edge does.
            let events: Vec<Event> = crate::synth::execs(host, boot, 1, settings.events_per_host, t0, 1_000)
                .into_iter()
                .map(Event::from)
                .collect();
            let batches = events.chunks(settings.batch).map(<[Event]>::to_vec).collect();
            (host.clone(), batches)
        })
        .collect()
}

pub(crate) fn total(work: &[(String, Vec<Vec<Event>>)]) -> u64 {
    work.iter()
        .map(|(_, b)| b.iter().map(Vec::len).sum::<usize>() as u64)
        .sum()
}

/// One writer thread per host, each storing its batches with `store`; the events stored.
fn per_host_writers<F>(work: Vec<(String, Vec<Vec<Event>>)>, store: F) -> anyhow::Result<u64>
where
    F: Fn(&str, Vec<Event>) -> anyhow::Result<u64> + Sync,
{
    let stored = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = work
            .into_iter()
            .map(|(host, batches)| {
                let (store, stored) = (&store, &stored);
                scope.spawn(move || -> anyhow::Result<()> {
                    for batch in batches {
                        stored.fetch_add(store(&host, batch)?, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("writer thread")?;
        }
        Ok(())
    })?;
    Ok(stored.into_inner())
}

/// One synced write per batch, the same encoded records, a key per event.
fn raw_rocksdb(dir: &Path, work: Vec<(String, Vec<Vec<Event>>)>) -> anyhow::Result<u64> {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, dir)?;
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    per_host_writers(work, |host, batch| {
        let mut write = rocksdb::WriteBatch::default();
        let received = watchtower_server::now_unix_ns();
        for event in batch {
            let mut key = host.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&event.time_unix_ns.to_be_bytes());
            key.extend_from_slice(&event.seq.to_be_bytes());
            let record = StoredEvent {
                event: Some(event),
                received_unix_ns: received,
                ..StoredEvent::default()
            };
            write.put(key, record.encode_to_vec());
        }
        let n = write.len() as u64;
        db.write_opt(write, &sync)?;
        Ok(n)
    })
}

fn event_store(dir: &Path, work: Vec<(String, Vec<Vec<Event>>)>) -> anyhow::Result<u64> {
    let store = EventStore::open(dir)?;
    per_host_writers(work, |host, batch| {
        let appended = store.append(
            host,
            batch.into_iter().map(Into::into).collect(),
            watchtower_server::now_unix_ns(),
            0,
        )?;
        Ok(appended.stored.len() as u64)
    })
}

/// The ingest service on a loopback listener of this process: mutual TLS with the
/// server's own acceptor, or plaintext with the host taken from a header (the
/// identity a certificate would give).
async fn serve_in_process(
    store: Arc<EventStore>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<(SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let counters = Arc::new(ServerCounters::default());
    let service = IngestService {
        store,
        counters: counters.clone(),
        metrics: Arc::new(Metrics::new(0)),
        live: broadcast::channel(16).0,
        alerts: None,
        max_batch_events: 10_000,
        revocations: watchtower_server::tls::Revocations::load(None),
        verifier_key: String::new(),
    };
    let ingest = IngestServer::new(service).max_decoding_message_size(MAX_MESSAGE);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let task = match tls {
        Some(config) => tokio::spawn(async move {
            let incoming = watchtower_server::tls::incoming(
                listener,
                config,
                watchtower_server::admission::Admission::new(
                    watchtower_server::admission::ConnectionLimits::default(),
                    counters.clone(),
                ),
                counters,
                watchtower_server::tls::Revocations::load(None),
            );
            let _ = tonic::transport::Server::builder()
                .add_service(ingest)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
        }),
        None => tokio::spawn(async move {
            let identify = |mut request: tonic::Request<()>| {
                let host = request
                    .metadata()
                    .get("x-bench-host")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| tonic::Status::unauthenticated("no x-bench-host"))?;
                request.extensions_mut().insert(watchtower_pki::Identity {
                    role: Role::Agent,
                    name: host,
                });
                Ok(request)
            };
            let _ = tonic::transport::Server::builder()
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    ingest, identify,
                ))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await;
        }),
    };
    Ok((address, stop_tx, task))
}

/// How a client reaches the server.
pub(crate) enum Link<'a> {
    Plain,
    Tls(&'a Pki),
}

async fn connect(address: &str, link: &Link<'_>, host: &str) -> anyhow::Result<Channel> {
    Ok(match link {
        Link::Plain => {
            Endpoint::from_shared(format!("http://{address}"))?
                .connect()
                .await?
        }
        Link::Tls(pki) => {
            watchtower_e2e::central::channel(&format!("https://{address}"), pki.client_tls(Some(host)))
                .await
                .map_err(|e| anyhow::anyhow!(e))?
        }
    })
}

/// One agent stream: Hello, then the batches with `window` in flight, until every
/// one is acknowledged. Returns the events the server said it stored.
async fn drive(
    channel: Channel,
    host: String,
    batches: Vec<Vec<Event>>,
    window: usize,
    plain: bool,
) -> anyhow::Result<u64> {
    let boot_id = batches
        .first()
        .and_then(|b| b.first())
        .map(|e| e.boot_id.clone())
        .unwrap_or_default();
    let mut client = IngestClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel(window + 2);
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            host_id: host.clone(),
            boot_id,
            agent_version: "bench".into(),
        })),
    })
    .await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if plain {
        request.metadata_mut().insert("x-bench-host", host.parse()?);
    }
    let mut acks = client.stream(request).await?.into_inner();
    let expected = batches.len();
    let mut pending = batches.into_iter().enumerate();
    let send = |(id, events): (usize, Vec<Event>)| AgentMessage {
        msg: Some(agent_message::Msg::Batch(EventBatch {
            batch_id: id as u64,
            events,
        })),
    };
    for next in pending.by_ref().take(window) {
        tx.send(send(next)).await?;
    }
    let (mut acked, mut stored) = (0usize, 0u64);
    while acked < expected {
        let message = acks.message().await?.context("the server ended the stream")?;
        if let Some(server_message::Msg::Ack(ack)) = message.msg {
            acked += 1;
            stored += u64::from(ack.stored);
            if let Some(next) = pending.next() {
                tx.send(send(next)).await?;
            }
        }
    }
    Ok(stored)
}

pub(crate) async fn grpc_clients(
    address: &str,
    link: Link<'_>,
    work: Vec<(String, Vec<Vec<Event>>)>,
    window: usize,
) -> anyhow::Result<u64> {
    let plain = matches!(link, Link::Plain);
    let mut channels = Vec::new();
    for (host, _) in &work {
        channels.push(connect(address, &link, host).await?);
    }
    let mut tasks = Vec::new();
    for ((host, batches), channel) in work.into_iter().zip(channels) {
        tasks.push(tokio::spawn(drive(channel, host, batches, window, plain)));
    }
    let mut stored = 0;
    for task in tasks {
        stored += task.await??;
    }
    Ok(stored)
}

/// Run one arm once; events per second.
fn run_arm(
    arm: Arm,
    settings: &Settings,
    hosts: &[String],
    pki: &Pki,
    work_dir: &Path,
    tag: &str,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<f64> {
    let work = workload(settings, hosts, tag);
    let expected = total(&work);
    let dir: PathBuf = work_dir.join(format!("ingest-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (stored, secs) = match arm {
        Arm::RawRocksDb => {
            let start = Instant::now();
            let stored = raw_rocksdb(&dir, work)?;
            (stored, start.elapsed().as_secs_f64())
        }
        Arm::EventStore => {
            let start = Instant::now();
            let stored = event_store(&dir, work)?;
            (stored, start.elapsed().as_secs_f64())
        }
        Arm::GrpcPlaintext | Arm::GrpcMtls => runtime.block_on(async {
            let store = Arc::new(EventStore::open(&dir)?);
            let tls = if arm == Arm::GrpcMtls {
                Some(watchtower_server::tls::server_config(
                    &watchtower_server::tls::TlsFiles {
                        ca: pki.path("ca.pem"),
                        cert: pki.path("server.pem"),
                        key: pki.path("server.key"),
                        crls: Vec::new(),
                    },
                )?)
            } else {
                None
            };
            let (address, stop, task) = serve_in_process(store, tls).await?;
            let link = if arm == Arm::GrpcMtls {
                Link::Tls(pki)
            } else {
                Link::Plain
            };
            let start = Instant::now();
            let stored = grpc_clients(&address.to_string(), link, work, settings.window).await?;
            let secs = start.elapsed().as_secs_f64();
            let _ = stop.send(());
            let _ = task.await;
            anyhow::Ok((stored, secs))
        })?,
        Arm::ServerBinary => {
            // Every bench host connects from 127.0.0.1: one source, so its share of
            // handshakes is raised to let 64 hosts connect at once.
            let config = work_dir.join("bench-server.toml");
            std::fs::write(&config, "[server.connections]\nmax_handshakes_per_source = 256\n")?;
            let config = config.to_string_lossy().into_owned();
            let server = Server::start(
                pki,
                "127.0.0.1",
                &["--max-message-bytes", "16777216", "--config", &config],
            );
            let address = server.listen.to_string();
            let (stored, secs) = runtime.block_on(async {
                let start = Instant::now();
                let stored = grpc_clients(&address, Link::Tls(pki), work, settings.window).await?;
                anyhow::Ok((stored, start.elapsed().as_secs_f64()))
            })?;
            server.stop();
            (stored, secs)
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    if stored != expected {
        bail!("{}: {stored} of {expected} events stored", arm.name());
    }
    Ok(stored as f64 / secs)
}

pub fn run(settings: &Settings, work_dir: &Path) -> anyhow::Result<IngestResult> {
    watchtower_pki::install_crypto_provider();
    let hosts: Vec<String> = (0..settings.hosts).map(|i| format!("bench-{i:02}")).collect();
    let pki = bench_pki(&hosts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Arm::ALL.len()];
    let mut result = IngestResult {
        hosts: settings.hosts,
        ..IngestResult::default()
    };
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..Arm::ALL.len()).collect();
        order.rotate_left(round % Arm::ALL.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut this = [0.0; 5];
        for i in order {
            let arm = Arm::ALL[i];
            let rate = run_arm(
                arm,
                settings,
                &hosts,
                &pki,
                work_dir,
                &format!("r{round}a{i}"),
                &runtime,
            )?;
            eprintln!(
                "ingest ({} hosts) round {round}: {:<60} {rate:>10.0} events/s",
                settings.hosts,
                arm.name()
            );
            this[i] = rate;
            rates[i].push(rate);
        }
        result.mtls_vs_raw.push(this[3], this[0]);
        result.mtls_vs_plaintext.push(this[3], this[2]);
        result.binary_vs_raw.push(this[4], this[0]);
        result.store_vs_raw.push(this[1], this[0]);
    }
    result.rates = Arm::ALL
        .iter()
        .zip(rates)
        .map(|(arm, r)| (arm.name().to_owned(), r))
        .collect();
    Ok(result)
}
