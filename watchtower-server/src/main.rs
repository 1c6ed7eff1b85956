//! `watchtower-server`: the central store. Agents stream their events to it over
//! gRPC with mutual TLS; operators query it with reader/admin certificates.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use watchtower_server::config::{FleetRole, ServerConfig};

use watchtower_proto::VERSION;

/// Watchtower's central store: receives agents' events over gRPC with mutual TLS,
/// keeps them durably in `RocksDB` (acknowledging only what is written), indexes
/// them by host, time, user, session and remote address, and answers queries and
/// live tails.
///
/// Every listener demands a client certificate from the configured CA: agents
/// (<spiffe://watchtower/agent/HOST>) may only ingest, and only as their own host;
/// readers and admins may only query. Make certificates with `cargo xtask certs`.
///
/// Every stored event is a leaf of a Merkle log whose heads the server signs with
/// its Ed25519 key (`<data_dir>/checkpoint-signing.key`, public half in `.pub`);
/// `watchtowerctl verify` names any record changed or removed behind its back.
/// Prometheus scrapes the exporter; alert rules (`[alerts]`) post to a webhook.
#[derive(Parser, Debug)]
#[command(version = VERSION)]
struct Cli {
    /// TOML config file (all fields optional; see `print-config`).
    #[arg(long, short, env = "WATCHTOWER_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Address for the gRPC listener (default 127.0.0.1:7443).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of the `RocksDB` event store (default data/server).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// CA certificate whose client certificates are accepted (default certs/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Server certificate (default certs/server.pem).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Server private key (default certs/server.key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// A certificate revocation list (PEM) of the CA; repeatable.
    #[arg(long = "crl")]
    crls: Vec<PathBuf>,
    /// The deny list of revoked certificate serials (written by `watchtowerctl
    /// revoke`), re-read whenever it changes: no restart needed.
    #[arg(long)]
    revoked_file: Option<PathBuf>,
    /// Remove events older than this many days (0: keep forever; default 400).
    #[arg(long)]
    retention_days: Option<u32>,
    /// How often retention runs, in seconds (default 3600).
    #[arg(long)]
    retention_interval_secs: Option<u64>,
    /// Largest message accepted, in bytes (default 4 MiB).
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// HTTP address of the exporter (/metrics, /healthz; default 127.0.0.1:9470).
    /// Off loopback it needs --exporter-token-file.
    #[arg(long, conflicts_with = "no_exporter")]
    exporter_listen: Option<SocketAddr>,
    /// Do not serve /metrics and /healthz.
    #[arg(long)]
    no_exporter: bool,
    /// File with the bearer token Prometheus must send to the exporter.
    #[arg(long)]
    exporter_token_file: Option<PathBuf>,
    /// POST alerts as JSON (Slack-compatible) to this http(s) URL.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Failed logins from one address within the window that raise an alert (default 5).
    #[arg(long)]
    failed_logins_threshold: Option<u32>,
    /// How often the tamper-evidence log is signed when it grew (default 60 s).
    #[arg(long)]
    checkpoint_interval_secs: Option<u64>,
    /// The key that signs the log's checkpoints (default: beside the TLS key,
    /// `checkpoint-signing.key`; each shard's indexer needs its own).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Also write every new checkpoint to this file (an offsite copy, for
    /// `watchtowerctl verify --witness`).
    #[arg(long)]
    publish_checkpoint_to: Option<PathBuf>,
    /// Fleet mode (see the README): `front-door` publishes agents' batches to the
    /// NATS JetStream stream; `indexer` stores one shard of it; `query` serves
    /// queries over every shard. Unset: one server.
    #[arg(long, value_enum)]
    fleet_role: Option<FleetRoleArg>,
    /// A NATS server of the cluster (`tls://host:port`); repeatable.
    #[arg(long = "nats-url")]
    nats_urls: Vec<String>,
    /// The CA of the NATS servers' certificates.
    #[arg(long)]
    nats_ca: Option<PathBuf>,
    /// This server's client certificate for NATS (mutual TLS).
    #[arg(long)]
    nats_cert: Option<PathBuf>,
    /// This server's client key for NATS.
    #[arg(long)]
    nats_key: Option<PathBuf>,
    /// How many shards the hosts are spread over (default 1).
    #[arg(long)]
    shards: Option<u32>,
    /// An indexer's shard (0 ..< shards).
    #[arg(long)]
    shard: Option<u32>,
    /// Copies JetStream keeps of every message (default 3).
    #[arg(long)]
    fleet_replicas: Option<usize>,
    /// The stream's size limit in bytes (default 8 GiB); when full, agents keep their spool.
    #[arg(long)]
    fleet_max_bytes: Option<i64>,
    /// A query node's indexer (`https://host:port`), one per shard in shard order; repeatable.
    #[arg(long = "indexer")]
    indexers: Vec<String>,
    /// The reader or admin certificate a query node shows its indexers.
    #[arg(long)]
    indexer_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    indexer_key: Option<PathBuf>,
    /// The name in the indexers' certificates (default: each address's host).
    #[arg(long)]
    indexer_server_name: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FleetRoleArg {
    FrontDoor,
    Indexer,
    Query,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the effective configuration (file plus flags) as TOML and exit.
    PrintConfig,
}

fn config_of(cli: &Cli) -> anyhow::Result<ServerConfig> {
    let mut config = match &cli.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
    }
    if let Some(dir) = &cli.data_dir {
        config.server.data_dir.clone_from(dir);
    }
    if let Some(ca) = &cli.ca {
        config.tls.ca.clone_from(ca);
    }
    if let Some(cert) = &cli.cert {
        config.tls.cert.clone_from(cert);
    }
    if let Some(key) = &cli.key {
        config.tls.key.clone_from(key);
    }
    if let Some(path) = &cli.revoked_file {
        config.tls.revoked = Some(path.clone());
    }
    if !cli.crls.is_empty() {
        config.tls.crls.clone_from(&cli.crls);
    }
    if let Some(days) = cli.retention_days {
        config.retention.days = days;
    }
    if let Some(secs) = cli.retention_interval_secs {
        config.retention.check_interval_secs = secs;
    }
    if let Some(max) = cli.max_message_bytes {
        config.ingest.max_message_bytes = max;
    }
    if let Some(listen) = cli.exporter_listen {
        config.exporter.listen = Some(listen);
    }
    if cli.no_exporter {
        config.exporter.listen = None;
    }
    if let Some(path) = &cli.exporter_token_file {
        config.exporter.token_file = Some(path.clone());
    }
    if let Some(url) = &cli.webhook_url {
        config.alerts.webhook_url = Some(url.clone());
    }
    if let Some(n) = cli.failed_logins_threshold {
        config.alerts.failed_logins_threshold = n;
    }
    if let Some(secs) = cli.checkpoint_interval_secs {
        config.log.checkpoint_interval_secs = secs;
    }
    if let Some(path) = &cli.signing_key {
        config.log.signing_key = Some(path.clone());
    }
    if let Some(path) = &cli.publish_checkpoint_to {
        config.log.publish_checkpoint_to = Some(path.clone());
    }
    if let Some(role) = cli.fleet_role {
        config.fleet.role = Some(match role {
            FleetRoleArg::FrontDoor => FleetRole::FrontDoor,
            FleetRoleArg::Indexer => FleetRole::Indexer,
            FleetRoleArg::Query => FleetRole::Query,
        });
    }
    if !cli.indexers.is_empty() {
        config.fleet.indexers.clone_from(&cli.indexers);
    }
    if let Some(name) = &cli.indexer_server_name {
        config.fleet.indexer_server_name = Some(name.clone());
    }
    if !cli.nats_urls.is_empty() {
        config.fleet.nats_urls.clone_from(&cli.nats_urls);
    }
    for (flag, field) in [
        (&cli.nats_ca, &mut config.fleet.nats_ca),
        (&cli.nats_cert, &mut config.fleet.nats_cert),
        (&cli.nats_key, &mut config.fleet.nats_key),
        (&cli.indexer_cert, &mut config.fleet.indexer_cert),
        (&cli.indexer_key, &mut config.fleet.indexer_key),
    ] {
        if let Some(path) = flag {
            *field = Some(path.clone());
        }
    }
    if let Some(n) = cli.shards {
        config.fleet.shards = n;
    }
    if let Some(n) = cli.shard {
        config.fleet.shard = n;
    }
    if let Some(n) = cli.fleet_replicas {
        config.fleet.replicas = n;
    }
    if let Some(n) = cli.fleet_max_bytes {
        config.fleet.max_bytes = n;
    }
    config.validate()?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = config_of(&cli)?;
    if let Some(Command::PrintConfig) = cli.command {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(watchtower_server::serve(config, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
    }))
}
