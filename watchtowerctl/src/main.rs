//! `watchtowerctl`: the operators' client of watchtower-server.
//!
//! Layout:
//! - `main.rs` (this file): the command line ([`Cli`], [`Command`]) and the
//!   dispatch to one module per command; the global options (server, TLS files,
//!   `--json`) live here.
//! - [`commands`]: one file per command, each with its clap arguments (`Args`)
//!   and a `run`: `events`, `sessions` (and `sessions show`), `hosts`, `tail`,
//!   `stats`, `alerts`, `report`, `export`, `verify` (these talk to the server),
//!   and `ca` (`ca init`), `enroll`, `revoke` (offline, on the CA directory).
//!   `commands/mod.rs` holds what several share: the `--host/--user/--kind/...`
//!   filters, the `--since/--from/--to` period, JSON lines.
//! - [`client`]: the gRPC client of the server's query service: the mutual-TLS
//!   connection, paging through events, one method per call, server errors as
//!   one line.
//! - [`render`]: events as rows (tables, tails, CSV); [`report`]: the access
//!   review built from events; [`enrol`]: the offline certificate authority;
//!   [`timearg`]: times and durations on the command line and in output.
//!
//! Exit codes: 0 done, 1 `verify` found tampering, 2 an error (one line on stderr).

mod client;
mod commands;
mod enrol;
mod logins;
mod render;
mod report;
#[cfg(test)]
mod tests;
mod timearg;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::commands::{
    alerts, ca, enroll, events, export, hosts, report as review, revoke, rules, sessions, stats, tail,
    verify, who,
};

use watchtower_proto::VERSION;

/// Query Watchtower's central store: who logged in to which host, when, from
/// where, and what they did; live tails with alerts; the periodic access review;
/// exports; and the tamper-evidence check.
///
/// Connects over mutual TLS with a reader (or admin) certificate, by default the
/// one `cargo xtask certs` made (certs/clients/operator.pem).
#[derive(Parser, Debug)]
#[command(version = VERSION)]
struct Cli {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "WATCHTOWER_SERVER",
        default_value = "https://127.0.0.1:7443"
    )]
    server: String,
    /// The name the server's certificate must carry.
    #[arg(long, global = true, default_value = "localhost")]
    server_name: String,
    /// The CA that signed the server's certificate.
    #[arg(long, global = true, env = "WATCHTOWER_CA", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// This client's certificate (reader or admin).
    #[arg(
        long,
        global = true,
        env = "WATCHTOWER_CERT",
        default_value = "certs/clients/operator.pem"
    )]
    cert: PathBuf,
    /// This client's private key.
    #[arg(
        long,
        global = true,
        env = "WATCHTOWER_KEY",
        default_value = "certs/clients/operator.key"
    )]
    key: PathBuf,
    /// Machine output: one JSON object per line (or one object).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stored events, oldest first.
    Events(events::Args),
    /// Logins as sessions: who, from where, how long, how much they ran.
    Sessions(sessions::Args),
    /// Hosts: last heartbeat, stale agents, spool and loss counters.
    Hosts(hosts::Args),
    /// Follow events as they are stored (and alerts as they are raised).
    Tail(tail::Args),
    /// The server's counters.
    Stats,
    /// Alerts the server's rules raised (failed logins, root logins, new addresses,
    /// kernel/journal disagreements, stale agents), oldest first.
    Alerts(alerts::Args),
    /// The access review of a period (ISO 27001 A.12.4): failed logins by source
    /// and by user, root logins, new source addresses per user, kernel/journal
    /// disagreements, agents that lost events.
    Report(review::Args),
    /// Write events as CSV or JSON Lines.
    Export(export::Args),
    /// The certificate authority (offline; run where the CA key is kept).
    Ca(ca::Args),
    /// Enrol a host: issue its agent certificate (host id in the SAN, labels bound
    /// into the certificate so the agent cannot change them) and write the bundle
    /// to copy to the host's /etc/watchtower: ca.pem, agent.pem, agent.key,
    /// agent.toml (which points at --server / --server-name). Offline.
    Enroll(enroll::Args),
    /// Revoke a host: add every certificate issued to it (or one --serial) to the
    /// deny list the server re-reads within a second; its connections are refused
    /// from then on, counted and logged. Offline.
    Revoke(revoke::Args),
    /// Check the stored events against the tamper-evidence log and its signed
    /// checkpoints; exits 1 and names every record changed or removed.
    Verify(verify::Args),
    /// The login sessions open now on every host (like who(1)): host, user, from,
    /// tty, since, and the su/sudo chain inside each login.
    Who(who::Args),
    /// Sigma rules: `rules test RULE --since 7d` runs one over stored events;
    /// `rules check DIR` loads a directory as the server does (offline).
    Rules(rules::Args),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("watchtowerctl: {e:#}");
            std::process::exit(2);
        }
    }
}

/// One command; its exit code.
async fn run(cli: &Cli) -> anyhow::Result<i32> {
    let json = cli.json;
    // The commands that work on local files only (no server).
    match &cli.command {
        Command::Ca(args) => return ca::run(args).map(|()| 0),
        Command::Verify(
            args @ verify::Args {
                bundle: Some(bundle), ..
            },
        ) => return verify::run_bundle(args, bundle, json),
        Command::Enroll(args) => return enroll::run(args, &cli.server, &cli.server_name, json).map(|()| 0),
        Command::Revoke(args) => return revoke::run(args).map(|()| 0),
        Command::Rules(rules::Args {
            command: rules::RulesCommand::Check { dir },
        }) => return rules::check(dir, json),
        _ => {}
    }
    watchtower_pki::install_crypto_provider();
    let mut client = Client::connect(cli).await?;
    match &cli.command {
        Command::Events(args) => events::run(args, &mut client, json).await?,
        Command::Sessions(args) => sessions::run(args, &mut client, json).await?,
        Command::Hosts(args) => hosts::run(args, &mut client, json).await?,
        Command::Tail(args) => tail::run(args, &mut client, json).await?,
        Command::Stats => stats::run(&mut client, json).await?,
        Command::Alerts(args) => alerts::run(args, &mut client, json).await?,
        Command::Report(args) => review::run(args, &mut client, json).await?,
        Command::Export(args) => export::run(args, &mut client).await?,
        Command::Verify(args) => return verify::run(args, &mut client, json).await,
        Command::Who(args) => who::run(args, &mut client, json).await?,
        Command::Rules(args) => rules::run(args, &mut client, json).await?,
        Command::Ca(_) | Command::Enroll(_) | Command::Revoke(_) => {
            unreachable!("the commands that need no server are handled above")
        }
    }
    Ok(0)
}
