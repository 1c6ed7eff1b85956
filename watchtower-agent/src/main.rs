//! watchtower-agent: watches logins on this host at the kernel boundary.
//!
//! main only parses the command line and wires the stages together; each stage
//! lives in its own module.

mod adopt;
mod assemble;
mod btf;
mod clock;
mod config;
mod decode;
mod event;
mod journal;
mod libpam;
mod pipeline;
mod probes;
mod reconcile;
mod seq;
mod spool;
mod tracefs;
mod transport;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Scope};
use crate::pipeline::{HealthContext, Input, JournalWitness, ReaderStats, Stamper};

/// The version: the git description `cargo xtask dist` stamps in, else the crate's.
pub const VERSION: &str = match option_env!("WATCHTOWER_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// Watchtower host agent.
///
/// Attaches eBPF probes to libpam (pam_start, pam_set_item and the result of every
/// PAM step), to execve/execveat, connect, fork and exit, and turns what they see
/// into login, session, exec and connect events. Every exec and connect made inside
/// a login session (including after su or sudo) carries that session. Events carry
/// (host_id, boot_id, seq) so loss and duplicates can be counted exactly; records the
/// kernel could not deliver are counted and reported in `agent_health` events.
///
/// It also follows the systemd journal (sshd, sudo, su, login, systemd-logind) as a
/// second witness and gives every sshd/su/sudo/login attempt a `login_verdict`:
/// confirmed (both saw it, with the log's method, key fingerprint, port or sudo
/// command), kernel_only (the log was suppressed: alert), journal_only (a login
/// the probes did not see, or a forged line: alert), or unchecked.
///
/// Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN + CAP_DAC_READ_SEARCH (and
/// read access to the journal). Without the capabilities it runs on the journal alone (degraded)
/// unless --require-kernel; without a readable journal it runs on the kernel alone.
#[derive(Debug, Parser)]
#[command(version = VERSION, about, long_about)]
#[expect(
    clippy::doc_markdown,
    reason = "this doc comment is the --help text, read in a terminal"
)]
struct Cli {
    /// TOML configuration file ([agent], [capture], [health] sections).
    #[arg(long, short, env = "WATCHTOWER_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Print events as JSON lines on standard output.
    #[arg(long)]
    stdout: bool,
    /// Which exec/connect activity to ship: `sessions` (inside logins, the default)
    /// or `all`.
    #[arg(long, value_enum)]
    scope: Option<Scope>,
    /// This host's id in events (default: the hostname).
    #[arg(long)]
    host_id: Option<String>,
    /// Directory for the agent's state (sequence numbers).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long)]
    ring_buffer_bytes: Option<u32>,
    /// Seconds between health records.
    #[arg(long)]
    health_interval_secs: Option<u64>,
    /// Also write every raw kernel record to this file, for `replay` and bug reports.
    #[arg(long)]
    record_raw: Option<PathBuf>,
    /// Do not read the journal (kernel-only mode: no cross-check verdicts).
    #[arg(long)]
    no_journal: bool,
    /// Seconds a login seen by one witness waits for the other before it is
    /// reported kernel_only or journal_only.
    #[arg(long)]
    journal_window_secs: Option<u64>,
    /// Exit when the probes cannot be loaded instead of running on the journal alone.
    #[arg(long)]
    require_kernel: bool,
    /// Ship events to this server, `https://HOST:PORT` (mutual TLS). Events wait in
    /// an on-disk spool (<state-dir>/spool) until the server has stored them.
    #[arg(long)]
    server: Option<String>,
    /// The name the server's certificate must carry (default localhost).
    #[arg(long)]
    server_name: Option<String>,
    /// CA certificate of the server and of this agent (default certs/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This host's certificate (default certs/agents/<host-id>.pem).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// This host's private key (default certs/agents/<host-id>.key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Most bytes the spool may hold; beyond it events are dropped and counted.
    #[arg(long)]
    spool_max_bytes: Option<u64>,
    /// Benchmark arm: attach the probes and only read and count the kernel's records
    /// (no sessions, no journal, no output) until stopped, then print the counts
    /// as one JSON line. Measures what the probes alone cost (`cargo xtask bench`).
    #[arg(long, conflicts_with_all = ["stdout", "server"])]
    count_only: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the effective configuration (file plus flags) as TOML and exit.
    PrintConfig,
    /// Check this machine (capabilities, tracefs, BTF, tracepoint layouts, libpam)
    /// without loading anything, and print what was found.
    Check,
    /// Decode and assemble a file written with --record-raw, printing the events as
    /// JSON lines (no privileges needed; /proc facts such as loginuid are left out).
    Replay {
        /// The raw record file.
        file: PathBuf,
    },
}

fn effective_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config {}", path.display()))?;
            Config::from_toml(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(scope) = cli.scope {
        config.capture.scope = scope;
    }
    if let Some(host) = &cli.host_id {
        config.agent.host_id = Some(host.clone());
    }
    if let Some(dir) = &cli.state_dir {
        config.agent.state_dir.clone_from(dir);
    }
    if let Some(bytes) = cli.ring_buffer_bytes {
        config.capture.ring_buffer_bytes = bytes;
    }
    if let Some(secs) = cli.health_interval_secs {
        config.health.interval_secs = secs;
    }
    if cli.no_journal {
        config.journal.enabled = false;
        config.journal.required = false;
    }
    if let Some(secs) = cli.journal_window_secs {
        config.journal.window_secs = secs;
    }
    if cli.require_kernel {
        config.capture.required = true;
    }
    if let Some(server) = &cli.server {
        config.server.address = Some(server.clone());
    }
    if let Some(name) = &cli.server_name {
        config.server.server_name.clone_from(name);
    }
    if let Some(ca) = &cli.ca {
        config.server.ca.clone_from(ca);
    }
    if let Some(cert) = &cli.cert {
        config.server.cert = Some(cert.clone());
    }
    if let Some(key) = &cli.key {
        config.server.key = Some(key.clone());
    }
    if let Some(bytes) = cli.spool_max_bytes {
        config.spool.max_bytes = bytes;
        config.spool.segment_bytes = config.spool.segment_bytes.min(bytes);
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(config)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn boot_id() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("reading /proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WATCHTOWER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = effective_config(&cli)?;
    match cli.command {
        Some(Command::PrintConfig) => {
            print!("{}", toml::to_string_pretty(&config)?);
            return Ok(());
        }
        Some(Command::Check) => {
            let found = probes::preflight()?;
            println!(
                "tracefs: {} (mounted now: {})",
                found.tracefs.display(),
                found.mounted_tracefs
            );
            println!("libpam: {}", found.libpam.display());
            println!("tracepoint offsets: {:?}", found.tracepoint_offsets);
            println!("task_struct offsets: {:?}", found.task_offsets);
            if let Some(note) = found.btf_note {
                println!("BTF: {note}");
            }
            return Ok(());
        }
        Some(Command::Replay { file }) => return replay(&file),
        None => {}
    }
    if cli.count_only {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(count_only(&config));
    }
    if !cli.stdout && config.server.address.is_none() {
        bail!(
            "no output selected: pass --server https://HOST:PORT to ship events, or --stdout to print them as JSON lines"
        );
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(config, cli.record_raw, cli.stdout))
}

fn replay(file: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (records, torn) = pipeline::split_raw(&data);
    let mut assembler = assemble::Assembler::new(assemble::NoProcessInfo);
    let mut out = Vec::new();
    let mut rejected = 0u64;
    for record in records {
        match decode::decode(record) {
            Ok(record) => assembler.push(record, &mut out),
            Err(error) => {
                rejected += 1;
                tracing::warn!(%error, "record rejected");
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    for (_, body) in out {
        serde_json::to_writer(&mut stdout, &body)?;
        stdout.write_all(b"\n")?;
    }
    if let Some(at) = torn {
        tracing::warn!(offset = at, "the file ends in a torn record");
    }
    if rejected > 0 {
        tracing::warn!(rejected, "records rejected by the decoder");
    }
    Ok(())
}

/// `--count-only`: the probes attached, their records read, decoded and counted.
async fn count_only(config: &Config) -> anyhow::Result<()> {
    let kernel = start_kernel(config)?;
    let (tx, mut rx) = mpsc::channel::<Input>(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(ReaderStats::default());
    let reader = tokio::spawn(pipeline::read_ring(kernel.ring, tx, stats.clone(), stop_rx, None));
    let counter = tokio::spawn(async move {
        let mut by_kind: std::collections::BTreeMap<&'static str, u64> = std::collections::BTreeMap::new();
        while let Some(input) = rx.recv().await {
            if let Input::Records(records) = input {
                for record in records {
                    *by_kind.entry(record.kind_name()).or_default() += 1;
                }
            }
        }
        by_kind
    });
    tracing::info!("counting only: probes attached, records are counted and dropped");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    drop(kernel.ebpf);
    let _ = stop_tx.send(true);
    reader.await??;
    let by_kind = counter.await?;
    let summary = serde_json::json!({
        "records": by_kind,
        "decode_errors": stats.decode_errors.load(std::sync::atomic::Ordering::Relaxed),
        "lost": kernel.counters.lost(),
        "out_of_scope": kernel.counters.out_of_scope(),
    });
    println!("{summary}");
    Ok(())
}

/// The kernel witness, started: its probes (kept alive until shutdown) and the
/// ring buffer to read.
struct KernelStarted {
    ebpf: aya::Ebpf,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    counters: probes::KernelCounters,
    attached: Vec<String>,
    adopted: Vec<adopt::AdoptedSession>,
}

fn start_kernel(config: &Config) -> anyhow::Result<KernelStarted> {
    let found = probes::preflight()?;
    if found.mounted_tracefs {
        tracing::info!(path = %found.tracefs.display(), "mounted tracefs");
    }
    if let Some(note) = &found.btf_note {
        tracing::warn!("{note}");
    }
    let probes = probes::load(
        &found,
        config.capture.scope == Scope::All,
        config.capture.ring_buffer_bytes,
    )?;
    tracing::info!(
        probes = probes.attached.len(),
        libpam = %found.libpam.display(),
        scope = config.capture.scope.name(),
        "probes attached"
    );
    let probes::Probes {
        ebpf,
        ring,
        counters,
        attached,
        adopted,
    } = probes;
    if !adopted.is_empty() {
        tracing::info!(
            sessions = adopted.len(),
            "adopted login sessions that began before the agent"
        );
    }
    Ok(KernelStarted {
        ebpf,
        ring,
        counters,
        attached,
        adopted,
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "wiring of the stages, in the order they start and stop"
)]
async fn run(config: Config, record_raw: Option<PathBuf>, stdout: bool) -> anyhow::Result<()> {
    // The two witnesses: each may be missing, not both.
    let kernel = match start_kernel(&config) {
        Ok(kernel) => Ok(kernel),
        Err(error) if config.capture.required => return Err(error),
        Err(error) => {
            tracing::error!("kernel witness unavailable, degraded to journal-only: {error:#}");
            Err(format!("{error:#}"))
        }
    };
    let kernel_since_ns = clock::boot_to_unix_ns(clock::boottime_ns());
    let journal_probe = if config.journal.enabled {
        journal::probe(&config.journal.journalctl)
    } else {
        Err("disabled by configuration".to_string())
    };
    match (&kernel, &journal_probe) {
        (Err(k), Err(j)) => bail!("neither witness can run. kernel: {k}. journal: {j}"),
        (_, Err(j)) if config.journal.required => bail!("the journal cannot be read: {j}"),
        (Ok(_), Err(j)) => tracing::warn!("journal witness unavailable, kernel-only (no cross-check): {j}"),
        _ => {}
    }
    let mode = match (&kernel, &journal_probe) {
        (Ok(_), Ok(())) => "kernel+journal",
        (Ok(_), Err(_)) => "kernel",
        _ => "journal",
    };
    tracing::info!(mode, "witnesses running");
    let seq = seq::SeqAllocator::open(&config.agent.state_dir)
        .with_context(|| format!("opening state in {}", config.agent.state_dir.display()))?;
    let stamper = Stamper {
        host_id: config.agent.host_id.clone().unwrap_or_else(hostname),
        boot_id: boot_id()?,
        seq,
    };
    let delivery = match &config.server.address {
        Some(address) => Some(open_delivery(&config, address, &stamper.host_id)?),
        None => None,
    };

    let (records_tx, records_rx) = mpsc::channel::<Input>(1024);
    let (events_tx, events_rx) = mpsc::channel(4096);
    let (stop_kernel_tx, stop_kernel_rx) = watch::channel(false);
    let (stop_journal_tx, stop_journal_rx) = watch::channel(false);
    records_tx.send(Input::Health("start")).await?;

    let (kernel_witness, kernel_unavailable, probes_attached, ebpf, reader) = match kernel {
        Ok(k) => {
            records_tx.send(Input::Adopt(k.adopted)).await?;
            let raw = match &record_raw {
                Some(path) => Some(
                    pipeline::RawRecorder::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => None,
            };
            let reader_stats = Arc::new(ReaderStats::default());
            let reader = tokio::spawn(pipeline::read_ring(
                k.ring,
                records_tx.clone(),
                reader_stats.clone(),
                stop_kernel_rx,
                raw,
            ));
            (
                Some(pipeline::KernelWitness {
                    counters: k.counters,
                    reader: reader_stats,
                }),
                None,
                k.attached,
                Some(k.ebpf),
                Some(reader),
            )
        }
        Err(why) => (None, Some(why), Vec::new(), None, None),
    };
    let (journal_witness, follower) = match journal_probe {
        Ok(()) => {
            let stats = Arc::new(journal::JournalStats::default());
            let since_unix_s = kernel_since_ns / 1_000_000_000;
            let follower = tokio::spawn(journal::follow(
                journal::JournalSettings {
                    journalctl: config.journal.journalctl.clone(),
                    state_dir: config.agent.state_dir.clone(),
                    since_unix_s: since_unix_s.saturating_sub(1),
                },
                records_tx.clone(),
                stats.clone(),
                stop_journal_rx,
            ));
            let reconciler = reconcile::Reconciler::new(
                config.journal.window_secs * 1_000_000_000,
                kernel_witness.is_some().then_some(kernel_since_ns),
            );
            (JournalWitness::Following { stats, reconciler }, Some(follower))
        }
        Err(why) => (JournalWitness::Unavailable(why), None),
    };
    let (stamper_host, stamper_boot) = (stamper.host_id.clone(), stamper.boot_id.clone());
    let assembler = tokio::spawn(pipeline::assemble(
        records_rx,
        events_tx,
        stamper,
        kernel_witness,
        journal_witness,
        HealthContext {
            scope: config.capture.scope.name(),
            probes: probes_attached,
            mode,
            kernel_unavailable,
        },
    ));
    let (stop_ship_tx, stop_ship_rx) = watch::channel(false);
    let (output, shipper) = match delivery {
        Some((shared, link)) => (
            tokio::spawn(transport::write_spool(events_rx, shared.clone(), stdout)),
            Some(tokio::spawn(transport::ship(
                link,
                (stamper_host.clone(), stamper_boot.clone()),
                shared,
                stop_ship_rx,
            ))),
        ),
        None => (tokio::spawn(pipeline::write_stdout(events_rx)), None),
    };

    let health_tx = records_tx.clone();
    let interval = Duration::from_secs(config.health.interval_secs);
    let ticker = tokio::spawn(async move {
        let mut health = tokio::time::interval(interval);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        health.tick().await;
        loop {
            let input = tokio::select! {
                _ = health.tick() => Input::Health("periodic"),
                _ = tick.tick() => Input::Tick,
            };
            if health_tx.send(input).await.is_err() {
                return;
            }
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
        _ = sigterm.recv() => tracing::info!("terminated, shutting down"),
    }
    // Stop the producers first (the journal, then the probes, detached before the
    // ring is drained), so the final health record counts everything and is last.
    ticker.abort();
    let _ = stop_journal_tx.send(true);
    if let Some(follower) = follower {
        follower.await??;
    }
    drop(ebpf);
    let _ = stop_kernel_tx.send(true);
    if let Some(reader) = reader {
        reader.await??;
    }
    records_tx.send(Input::Health("shutdown")).await?;
    drop(records_tx);
    assembler.await??;
    output.await??;
    // Everything is in the spool now; give the sender a short grace to deliver it.
    let _ = stop_ship_tx.send(true);
    if let Some(shipper) = shipper {
        shipper.await??;
    }
    Ok(())
}

/// Open the spool and check the TLS files before anything runs.
fn open_delivery(
    config: &Config,
    address: &str,
    host_id: &str,
) -> anyhow::Result<(Arc<transport::SharedSpool>, transport::ServerLink)> {
    let cert = config
        .server
        .cert
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("certs/agents/{host_id}.pem")));
    let key = config
        .server
        .key
        .clone()
        .unwrap_or_else(|| cert.with_extension("key"));
    for path in [&config.server.ca, &cert, &key] {
        std::fs::metadata(path).with_context(|| {
            format!(
                "TLS file {} (make certificates with `cargo xtask certs --host {host_id}`)",
                path.display()
            )
        })?;
    }
    let dir = config.agent.state_dir.join("spool");
    let (spool, report) = spool::Spool::open(spool::SpoolConfig {
        dir: dir.clone(),
        max_bytes: config.spool.max_bytes,
        segment_bytes: config.spool.segment_bytes,
    })
    .with_context(|| format!("opening the spool in {}", dir.display()))?;
    if report.corrupt_records > 0 {
        tracing::error!(
            corrupt = report.corrupt_records,
            truncated_bytes = report.truncated_bytes,
            "the spool had a torn or corrupt tail (a crash mid-write): cut and counted"
        );
    }
    if report.pending > 0 {
        tracing::info!(
            pending = report.pending,
            "events from an earlier run wait in the spool: sending them first"
        );
    }
    Ok((
        transport::SharedSpool::new(spool),
        transport::ServerLink {
            address: address.to_owned(),
            server_name: config.server.server_name.clone(),
            ca: config.server.ca.clone(),
            cert,
            key,
            heartbeat: Duration::from_secs(config.server.heartbeat_secs),
        },
    ))
}
