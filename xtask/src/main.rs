//! Developer tasks: `cargo xtask setup | certs | test | run | fuzz | bench | dist | proto`.

mod certs;
mod dist;
mod fuzz;
mod journald;
mod proto;
mod setup;
mod test;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Watchtower's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install every prerequisite on a fresh Debian machine (apt packages, the nightly
    /// rust-src component, bpf-linker built against LLVM 22). Idempotent: only what is
    /// missing is installed, and it says what it did.
    Setup,
    /// Make (or extend) the certificates: a CA, the server's, one per host agent and
    /// one per reader/admin client. What exists is kept unless --force.
    ///
    /// Layout: OUT/ca.pem, ca.key, server.pem, server.key, agents/<host>.pem/.key,
    /// clients/<name>.pem/.key. Identities are URI SANs <spiffe://watchtower>/<role>/<name>.
    Certs {
        /// Output directory (default: certs/ in the workspace).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A host id to issue an agent certificate for (repeatable; default: this
        /// machine's hostname, lowercased).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// A reader client (may query; repeatable; default: operator).
        #[arg(long = "reader")]
        readers: Vec<String>,
        /// An admin client (repeatable; default: admin).
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// A DNS name or IP address on the server certificate (repeatable; default:
        /// localhost, 127.0.0.1, `::1`).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Validity of issued certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Issue everything again, the CA included.
        #[arg(long)]
        force: bool,
    },
    /// Check, build, package, then run every test: `cargo fmt --check`, the
    /// generated protobuf code is current, one release build of every target,
    /// `cargo clippy -- -D warnings`, the Debian packages, the unit tests of all
    /// crates and the privileged end-to-end tests (real sshd, su, sudo and eBPF
    /// probes; root), one at a time. Prints the time of each phase.
    Test {
        /// Only run end-to-end tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Fuzz the journal parsers (cargo-fuzz, installed if missing; nightly) from
    /// seeds made of real captured journal records. A crash stops it with the input
    /// saved under watchtower-journal/fuzz/artifacts/.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (`journal_record` or `auth_message`).
        #[arg(long)]
        target: Option<String>,
    },
    /// Build release binaries and run the benchmarks (root; about 30 minutes): agent
    /// overhead on exec and connect storms against no agent, probes counting only,
    /// the full pipeline and auditd; completeness at rising parallelism; ingest over
    /// mTLS against raw `RocksDB` and plaintext gRPC; query time on 100k/1M/10M-event
    /// stores against a full scan. Writes BENCHMARKS.md (median ratios of
    /// alternating rounds). Arguments go to `watchtower-bench run` (e.g. --rounds,
    /// --only ingest).
    Bench {
        /// Arguments for `watchtower-bench run` (see `watchtower-bench run --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build what operators install into dist/: release binaries (the agent with its
    /// eBPF object), SHA256SUMS, VERSION (from git), example configs, systemd units,
    /// and Debian packages watchtower-server, watchtower-agent, watchtowerctl.
    Dist {
        /// Build twice (recompiling the programs) and fail unless the checksums match.
        #[arg(long)]
        check_reproducible: bool,
    },
    /// Regenerate the checked-in `watchtower.v1` code (proto/src/generated/) from
    /// proto/watchtower.proto, with protox (no protoc needed).
    Proto {
        /// Only check that the checked-in code is current.
        #[arg(long)]
        check: bool,
    },
    /// Set up, make certificates if missing, build, and run the server (127.0.0.1:7443,
    /// data in data/server) with this host's agent shipping to it; the agent prints
    /// the events as JSON lines, the server logs each batch it stored (root). Starts
    /// systemd-journald first where none runs.
    Run {
        /// Extra arguments for watchtower-agent.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// The workspace root: of the checkout `cargo xtask` runs in (cargo sets
/// `CARGO_MANIFEST_DIR` for the program it runs), so an xtask binary built in a
/// target directory shared with another checkout never works on that one.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where cargo puts build output.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Run a command, inheriting stdio; the error names the failing command line.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

/// `cargo` with the workspace as its directory.
#[must_use]
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::setup(),
        Task::Test { filter } => test::test(filter.as_deref()),
        Task::Fuzz { seconds, target } => fuzz::fuzz(seconds, target.as_deref()),
        Task::Certs {
            out,
            hosts,
            readers,
            admins,
            server_names,
            days,
            force,
        } => certs::certs(&certs::CertsRequest {
            out: out.unwrap_or_else(|| root().join("certs")),
            hosts: or_default(hosts, vec![certs::default_host_id()]),
            readers: or_default(readers, vec!["operator".into()]),
            admins: or_default(admins, vec!["admin".into()]),
            server_names: or_default(
                server_names,
                vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            ),
            days,
            force,
        }),
        Task::Run { args } => run_server_and_agent(&args),
        Task::Proto { check } => {
            if check {
                proto::check()
            } else {
                proto::regenerate()
            }
        }
        Task::Bench { args } => bench(&args),
        Task::Dist { check_reproducible } => {
            if check_reproducible {
                dist::check_reproducible()
            } else {
                dist::dist().map(|_| ())
            }
        }
    }
}

fn or_default(given: Vec<String>, default: Vec<String>) -> Vec<String> {
    if given.is_empty() { default } else { given }
}

/// `cargo xtask bench`: release binaries, then `watchtower-bench run`.
fn bench(args: &[String]) -> anyhow::Result<()> {
    setup::setup()?;
    // The same build as `test` and `dist` (one RocksDB compile).
    dist::build(&dist::stamp()?)?;
    let release = target_dir().join("release");
    let work = Path::new("/var/tmp/watchtower-bench");
    std::fs::create_dir_all(work)?;
    run(Command::new(release.join("watchtower-bench"))
        .current_dir(root())
        .arg("run")
        .args(args)
        .env("WATCHTOWER_AGENT_BIN", release.join("watchtower-agent"))
        .env("WATCHTOWER_SERVER_BIN", release.join("watchtower-server"))
        // Scratch stores on a real disk (not a tmpfs): a synced write costs what it costs.
        .env("TMPDIR", work))
}

/// `cargo xtask run`: the server and a local agent shipping to it.
fn run_server_and_agent(args: &[String]) -> anyhow::Result<()> {
    setup::setup()?;
    let host = certs::default_host_id();
    certs::certs(&certs::CertsRequest {
        out: root().join("certs"),
        hosts: vec![host.clone()],
        readers: vec!["operator".into()],
        admins: vec!["admin".into()],
        server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        days: 365,
        force: false,
    })?;
    // The same build as `cargo xtask test` (RocksDB's C++ is compiled once).
    dist::build(&dist::stamp()?)?;
    // The agent's second witness: logins need somewhere to be logged.
    journald::ensure_running()?;
    let mut server = Command::new(target_dir().join("release/watchtower-server"))
        .current_dir(root())
        .env("RUST_LOG", "info,watchtower_server=debug")
        .spawn()
        .context("starting watchtower-server")?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    if let Some(status) = server.try_wait()? {
        bail!("watchtower-server exited at start ({status})");
    }
    let mut agent = Command::new(target_dir().join("release/watchtower-agent"));
    agent.current_dir(root()).args([
        "--server",
        "https://127.0.0.1:7443",
        "--host-id",
        &host,
        "--stdout",
        "--state-dir",
        "/var/lib/watchtower-agent",
        // The key the server created beside its TLS key at its first start.
        "--checkpoint-key",
        "certs/checkpoint-signing.pub",
    ]);
    agent.args(args);
    let result = run(&mut agent);
    // Ctrl-C reached both; a server still running after the agent is stopped here.
    if server.try_wait()?.is_none() {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    }
    let _ = server.wait();
    result
}
