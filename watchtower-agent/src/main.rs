//! watchtower-agent: watches logins on this host at the kernel boundary.
//!
//! main only parses the command line and wires the stages together; each stage
//! is a task in [`stages`], connected to the next by a bounded channel:
//!
//! - the kernel side: [`probes`] loads the eBPF programs (with [`btf`], [`tracefs`],
//!   [`libpam`], and [`adopt`] for the sessions already running); [`witness`]
//!   starts them, and the journal check;
//! - [`stages::reader`] reads the ring buffer and [`decode`] turns each kernel
//!   record into a typed [`decode::KernelRecord`] (`--record-raw` also writes them
//!   to a [`raw_file`]);
//! - [`stages::assembler`] turns those records into events ([`event`]) with the
//!   rules in [`assemble`]: PAM transactions and login outcomes in `assemble/pam.rs`,
//!   sessions in `assemble/session.rs`; what only the live system knows (/proc,
//!   the user database) comes from [`host_lookup`];
//! - [`journal`] follows the journal, the second witness;
//! - [`stages::reconciler`] stamps every event ([`stamp`]: host, boot, [`seq`]),
//!   cross-checks logins with the journal ([`reconcile`]) and emits the health
//!   records ([`health`]);
//! - the output: [`stages::stdout`] (JSON lines), or [`stages::spool_writer`] into
//!   the on-disk [`spool`] and [`stages::sender`] to the server over gRPC (the
//!   protobuf form of events in [`wire`]);
//! - [`stages::log_witness`] has the server prove its signed log to this agent
//!   ([`log_witness`]: the Acks' receipts, consistency, rewinds and forks).
//!
//! Besides running: [`config`] (the file and the flags over it), [`replay`] (the
//! `replay` subcommand) and [`count_only`] (`--count-only`).

mod adopt;
mod assemble;
mod btf;
mod clock;
mod config;
mod count_only;
mod decode;
mod event;
mod health;
mod host_lookup;
mod journal;
mod libpam;
mod log_witness;
mod mounts;
mod pins;
mod probes;
mod raw_file;
mod reconcile;
mod replay;
mod seq;
mod spool;
mod stages;
mod stamp;
mod tracefs;
mod wire;
mod witness;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Flags, Scope};
use crate::health::{HealthContext, HealthSources, JournalState, KernelStats};
use crate::stages::assembler::Input;
use crate::stages::log_witness as log_witness_stage;
use crate::stages::reader::ReaderStats;
use crate::stages::{assembler, probe_keeper, reader, reconciler, sender, spool_writer, stdout, ticker};
use crate::stamp::Stamper;

use watchtower_proto::VERSION;

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
#[expect(
    clippy::struct_excessive_bools,
    reason = "command-line switches: each bool is one flag"
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
    /// Where in bpffs the probes are kept across agent restarts (default
    /// /sys/fs/bpf/watchtower; one directory per agent).
    #[arg(long)]
    pin_dir: Option<PathBuf>,
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
    /// Repeatable: the others are a fleet's other front doors, moved to in turn
    /// when the current one is down.
    #[arg(long = "server")]
    servers: Vec<String>,
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
    /// The file with the verifier key of the server's checkpoints (its
    /// checkpoint-signing.pub); unset: the first key the server names is kept.
    #[arg(long)]
    checkpoint_key: Option<PathBuf>,
    /// Seconds between checks of the server's tamper-evidence log (signed
    /// checkpoint, consistency, this agent's receipts); 0: off (default 60).
    #[arg(long)]
    witness_interval_secs: Option<u64>,
    /// Where the log is proven to this agent when not by --server: in a fleet,
    /// a query node, `https://HOST:PORT` (front doors keep no log).
    #[arg(long)]
    witness_url: Option<String>,
    /// The name the witness server's certificate must carry (default: --server-name).
    #[arg(long)]
    witness_server_name: Option<String>,
    /// Most bytes the spool may hold; beyond it events are dropped and counted.
    #[arg(long)]
    spool_max_bytes: Option<u64>,
    /// Benchmark arm: attach the probes and only read and count the kernel's records
    /// (no sessions, no journal, no output) until stopped, then print the counts
    /// as one JSON line. Measures what the probes alone cost (`cargo xtask bench`).
    #[arg(long, conflicts_with_all = ["stdout", "servers"])]
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

/// The flags that override the configuration file.
fn flags(cli: &Cli) -> Flags {
    Flags {
        scope: cli.scope,
        host_id: cli.host_id.clone(),
        state_dir: cli.state_dir.clone(),
        ring_buffer_bytes: cli.ring_buffer_bytes,
        pin_dir: cli.pin_dir.clone(),
        health_interval_secs: cli.health_interval_secs,
        no_journal: cli.no_journal,
        journal_window_secs: cli.journal_window_secs,
        require_kernel: cli.require_kernel,
        servers: cli.servers.clone(),
        server_name: cli.server_name.clone(),
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        checkpoint_key: cli.checkpoint_key.clone(),
        witness_interval_secs: cli.witness_interval_secs,
        witness_url: cli.witness_url.clone(),
        witness_server_name: cli.witness_server_name.clone(),
        spool_max_bytes: cli.spool_max_bytes,
    }
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
    let config = Config::load(cli.config.as_deref(), &flags(&cli))?;
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
        Some(Command::Replay { file }) => return replay::run(&file),
        None => {}
    }
    if cli.count_only {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(count_only::run(&config));
    }
    if !cli.stdout && config.server.address.is_none() {
        bail!(
            "no output selected: pass --server https://HOST:PORT to ship events, or --stdout to print them as JSON lines"
        );
    }
    watchtower_pki::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(config, cli.record_raw, cli.stdout))
}

#[expect(
    clippy::too_many_lines,
    reason = "wiring of the stages, in the order they start and stop"
)]
async fn run(config: Config, record_raw: Option<PathBuf>, stdout: bool) -> anyhow::Result<()> {
    // The two witnesses: each may be missing, not both.
    let witness::Witnesses {
        kernel,
        kernel_since_ns,
        journal: journal_probe,
        mode,
    } = witness::start(&config)?;
    let seq = seq::SeqAllocator::open(&config.agent.state_dir)
        .with_context(|| format!("opening state in {}", config.agent.state_dir.display()))?;
    let resumed_after = seq.resumed_after();
    let stamper = Stamper {
        host_id: config.agent.host_id.clone().unwrap_or_else(host_lookup::hostname),
        boot_id: host_lookup::boot_id()?,
        seq,
    };
    let delivery = match &config.server.address {
        Some(address) => {
            let link = sender::ServerLink::from_config(&config, address, &stamper.host_id)?;
            Some((spool_writer::open(&config)?, link))
        }
        None => None,
    };
    let log_witness = match (&delivery, config.server.witness_interval_secs) {
        (Some(_), 1..) => Some(Arc::new(Mutex::new(open_log_witness(&config)?))),
        _ => None,
    };

    let (records_tx, records_rx) = mpsc::channel::<Input>(1024);
    let (assembled_tx, assembled_rx) = mpsc::channel(1024);
    let (events_tx, events_rx) = mpsc::channel(4096);
    let (stop_kernel_tx, stop_kernel_rx) = watch::channel(false);
    let (stop_journal_tx, stop_journal_rx) = watch::channel(false);
    records_tx.send(Input::Health("start")).await?;

    let keep_sessions = kernel.as_ref().is_ok_and(|k| k.kept.is_some());
    let capture_start = kernel.as_ref().ok().map(|k| k.start.clone());
    let (kernel_stats, kernel_unavailable, probes_attached, ebpf, reader) = match kernel {
        Ok(k) => {
            if k.start == pins::CaptureStart::Resumed {
                records_tx
                    .send(Input::Resume(
                        assembler::SessionsFile::in_dir(&config.agent.state_dir).read(),
                    ))
                    .await?;
            } else {
                records_tx.send(Input::Adopt(k.adopted)).await?;
            }
            let raw = match &record_raw {
                Some(path) => Some(
                    raw_file::RawRecorder::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => None,
            };
            let reader_stats = Arc::new(ReaderStats::default());
            let reader = tokio::spawn(reader::read_rings(
                k.rings,
                records_tx.clone(),
                reader_stats.clone(),
                stop_kernel_rx,
                raw,
            ));
            let probes: probe_keeper::SharedProbes = Arc::new(Mutex::new(Some(probe_keeper::LiveProbes {
                ebpf: k.ebpf,
                kept: k.kept,
            })));
            let keeper = tokio::spawn(probe_keeper::keep(
                probes.clone(),
                k.libpam,
                stop_kernel_tx.subscribe(),
            ));
            (
                Some(KernelStats {
                    counters: k.counters,
                    reader: reader_stats,
                }),
                None,
                k.attached,
                Some((probes, keeper)),
                Some(reader),
            )
        }
        Err(why) => (None, Some(why), Vec::new(), None, None),
    };
    let (journal_state, reconciler, follower) = match journal_probe {
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
                kernel_stats.is_some().then_some(kernel_since_ns),
            );
            (JournalState::Following(stats), Some(reconciler), Some(follower))
        }
        Err(why) => (JournalState::Unavailable(why), None, None),
    };
    let identity = (stamper.host_id.clone(), stamper.boot_id.clone());
    let health = HealthSources {
        context: HealthContext {
            scope: config.capture.scope.name(),
            probes: probes_attached,
            mode,
            kernel_unavailable,
            capture_start,
        },
        kernel: kernel_stats,
        journal: journal_state,
        spool: delivery.as_ref().map(|(shared, _)| shared.clone()),
        resumed_after,
        log_witness: log_witness.clone(),
    };
    let assembler = tokio::spawn(assembler::run(
        records_rx,
        assembled_tx,
        keep_sessions.then(|| assembler::SessionsFile::in_dir(&config.agent.state_dir)),
    ));
    let reconciler = tokio::spawn(reconciler::run(
        assembled_rx,
        events_tx,
        stamper,
        reconciler,
        health,
    ));
    let (stop_ship_tx, stop_ship_rx) = watch::channel(false);
    let (stop_witness_tx, stop_witness_rx) = watch::channel(false);
    let (output, shipper, witnessing) = match delivery {
        Some((shared, link)) => {
            let witnessing = log_witness.clone().map(|witness| {
                tokio::spawn(log_witness_stage::run(
                    link.witnessed_by(&config.server),
                    witness,
                    Duration::from_secs(config.server.witness_interval_secs),
                    stop_witness_rx,
                ))
            });
            (
                tokio::spawn(spool_writer::run(events_rx, shared.clone(), stdout)),
                Some(tokio::spawn(sender::run(
                    link,
                    identity,
                    shared,
                    log_witness,
                    stop_ship_rx,
                ))),
                witnessing,
            )
        }
        None => (tokio::spawn(stdout::run(events_rx)), None, None),
    };
    let ticker = tokio::spawn(ticker::run(
        records_tx.clone(),
        Duration::from_secs(config.health.interval_secs),
    ));

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
    if let Some((probes, keeper)) = ebpf {
        keeper.abort();
        let _ = keeper.await;
        // Stopped on purpose: the probes stop with the agent (see crate::pins).
        if let Some(live) = probes.lock().expect("probes").take() {
            if let Some(kept) = live.kept {
                kept.release();
            }
            drop(live.ebpf);
        }
    }
    let _ = stop_kernel_tx.send(true);
    if let Some(reader) = reader {
        reader.await??;
    }
    records_tx.send(Input::Health("shutdown")).await?;
    drop(records_tx);
    assembler.await??;
    reconciler.await??;
    output.await??;
    // Everything is in the spool now; give the sender a short grace to deliver it.
    let _ = stop_ship_tx.send(true);
    if let Some(shipper) = shipper {
        shipper.await??;
    }
    let _ = stop_witness_tx.send(true);
    if let Some(witnessing) = witnessing {
        witnessing.await??;
    }
    Ok(())
}

/// The log witness's state, with the configured checkpoint key.
fn open_log_witness(config: &Config) -> anyhow::Result<log_witness::LogWitness> {
    let pinned = match &config.server.checkpoint_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the checkpoint key {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    log_witness::LogWitness::open(&config.agent.state_dir, pinned)
}
