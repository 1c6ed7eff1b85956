//! Developer tasks: `cargo xtask setup | test | run | fuzz`.

mod fuzz;
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
    /// Build, then run every test: unit tests of all crates, then the privileged
    /// end-to-end tests (real sshd, su, sudo and eBPF probes; root), one at a time.
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
    /// Set up, build, and run the agent printing this host's live login, session,
    /// exec and connect events as JSON lines (root).
    Run {
        /// Extra arguments for watchtower-agent.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
        Task::Run { args } => {
            setup::setup()?;
            run(cargo().args(["build", "--package", "watchtower-agent"]))?;
            let agent = target_dir().join("debug/watchtower-agent");
            let mut cmd = Command::new(agent);
            if args.is_empty() {
                cmd.args(["--stdout", "--state-dir", "/var/lib/watchtower-agent"]);
            } else {
                cmd.args(args);
            }
            run(&mut cmd)
        }
    }
}
