//! `ca init`: a new certificate authority, the server's certificate and the
//! operator's (offline; see [`crate::enrol`]).

use std::path::PathBuf;

use clap::Subcommand;

use crate::enrol;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Make a new CA in --dir: ca.pem, ca.key (keep it offline or root-only),
    /// the server's certificate for its names, and a reader certificate for the
    /// operator (clients/NAME.pem). Never replaces an existing CA.
    Init {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_CA_DIR)]
        dir: PathBuf,
        /// A DNS name or IP address agents use to reach the server (repeatable).
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
        /// The operator's reader certificate name.
        #[arg(long, default_value = "operator")]
        operator: String,
        /// Validity of the server and operator certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Where `ca init`, `enroll` and `revoke` keep the CA by default.
pub const DEFAULT_CA_DIR: &str = "/etc/watchtower/ca";

pub fn run(args: &Args) -> anyhow::Result<()> {
    let CaCommand::Init {
        dir,
        server_names,
        operator,
        days,
    } = &args.command;
    for path in enrol::init(dir, server_names, operator, *days)? {
        println!("wrote {}", path.display());
    }
    println!(
        "keep {} secret (root only or offline); point the server's [tls] at ca.pem, server.pem, server.key",
        dir.join("ca.key").display()
    );
    Ok(())
}
