//! `watchtower-bench`: the benchmarks behind `cargo xtask bench`, and the storm
//! workload they run inside an ssh login.

mod capacity;
mod fleet;
mod ingest;
mod memory;
mod profile;
mod query;
mod report;
mod rig;
mod stats;
mod storms;
mod synth;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::rig::Storm;

#[derive(Debug, Parser)]
#[command(
    about = "Watchtower's benchmarks: agent overhead and completeness on exec and connect \
storms, ingest throughput, query time. Every comparison alternates its arms in rounds and \
reports median ratios; `run` writes BENCHMARKS.md. Needs root (probes, sshd, auditd)."
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Overhead,
    Completeness,
    Ingest,
    /// Ingest through a front door and a three-node NATS JetStream cluster into one
    /// indexer and into two, against one server (needs nats-server).
    Fleet,
    Query,
    /// The agent's resident size, idle and with its spool full.
    Memory,
    /// What one host sends, idle and per ssh login, in each capture scope (the
    /// inputs of the fleet's capacity model).
    Capacity,
    /// A CPU profile of the agent and the server in one full-pipeline storm of each
    /// kind (needs perf; not part of the default run).
    Profile,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// The storm itself (run inside an ssh login by `run`): prints one JSON line with
    /// how many operations it made and how long they took.
    Workload {
        #[arg(value_enum)]
        kind: Kind,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        parallel: usize,
    },
    /// Run the benchmarks and write the report.
    Run {
        /// The report to write.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Where stores and scratch data go (a real disk: fsync must cost what it costs).
        #[arg(long, default_value = "/var/tmp/watchtower-bench")]
        work_dir: PathBuf,
        /// Rounds per comparison (at least 10 for the report).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Only these parts (repeatable; default all).
        #[arg(long, value_enum)]
        only: Vec<Part>,
        /// Operations per storm run.
        #[arg(long, default_value_t = 2000)]
        storm_count: u64,
        /// Store sizes of the query benchmark (the first is the baseline).
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
        query_sizes: Vec<u64>,
        /// Events per host per ingest run of 4 hosts (the run of 64 hosts sends as many in
        /// all); batches of 512 as the agent sends.
        #[arg(long, default_value_t = 50_000)]
        ingest_events_per_host: usize,
        /// Profiles of an earlier build to show beside this run's (JSON written by the
        /// profile part, `<work-dir>/profiles.json`), as `LABEL=PATH`.
        #[arg(long)]
        profile_before: Option<String>,
        /// The command line named in the report.
        #[arg(long, default_value = "cargo xtask bench")]
        command_line: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Exec,
    Connect,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Workload {
            kind,
            count,
            parallel,
        } => {
            let result = match kind {
                Kind::Exec => workload::exec_storm(count, parallel),
                Kind::Connect => workload::connect_storm(count, parallel),
            };
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Task::Run {
            out,
            work_dir,
            rounds,
            only,
            storm_count,
            query_sizes,
            ingest_events_per_host,
            profile_before,
            command_line,
        } => {
            let wants = |part: Part| (only.is_empty() && part != Part::Profile) || only.contains(&part);
            // The report is rewritten after each part, so a long run that is stopped
            // keeps what it measured.
            let write = |results: &report::Results| -> anyhow::Result<()> {
                std::fs::write(
                    &out,
                    report::render(results, &report::shell_date(), &command_line),
                )
                .with_context(|| format!("writing {}", out.display()))
            };
            std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
            let mut results = report::Results::default();
            if let Some(before) = &profile_before {
                results.profiles_before = profile::load(before)?;
            }
            if wants(Part::Profile) {
                results.profiles = profile::run_both(storm_count, &work_dir)?;
                write(&results)?;
            }
            storm_parts(&mut results, &wants, storm_count, rounds)?;
            if wants(Part::Memory) {
                let mut rig = rig::Rig::start()?;
                results.memory = Some(memory::run(&mut rig, 16 * 1024 * 1024, 5000)?);
                write(&results)?;
            }
            if wants(Part::Capacity) {
                let mut rig = rig::Rig::start()?;
                results.capacity = Some(capacity::run(&mut rig, 20, Duration::from_secs(30))?);
                write(&results)?;
            }
            if wants(Part::Ingest) {
                // The same events in all, from 4 hosts and from 64.
                for hosts in [4, 64] {
                    results.ingest.push(ingest::run(
                        &ingest::Settings {
                            hosts,
                            events_per_host: ingest_events_per_host * 4 / hosts,
                            batch: 512,
                            window: 4,
                            rounds,
                        },
                        &work_dir,
                    )?);
                    write(&results)?;
                }
            }
            if wants(Part::Fleet) {
                results.fleet = Some(fleet::run(ingest_events_per_host, rounds)?);
                write(&results)?;
            }
            if wants(Part::Query) {
                let scan = query_sizes.get(1).or(query_sizes.first()).copied().unwrap_or(0);
                results.query = Some(query::run(&query_sizes, scan, rounds, &work_dir)?);
            }
            write(&results)?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// The exec and connect storms: overhead and completeness, as `wants` asks.
fn storm_parts(
    results: &mut report::Results,
    wants: &dyn Fn(Part) -> bool,
    storm_count: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    if wants(Part::Overhead) || wants(Part::Completeness) {
        let mut rig = rig::Rig::start()?;
        for storm in [Storm::Exec, Storm::Connect] {
            let count = if storm == Storm::Connect {
                storm_count * 2
            } else {
                storm_count
            };
            if wants(Part::Overhead) {
                results
                    .overhead
                    .push(storms::overhead(&mut rig, storm, count, rounds)?);
            }
            if wants(Part::Completeness) {
                results.completeness.push(storms::completeness(
                    &mut rig,
                    storm,
                    count * 2,
                    &[1, 2, 4, 8, 16, 32, 64],
                )?);
            }
        }
    }
    Ok(())
}
