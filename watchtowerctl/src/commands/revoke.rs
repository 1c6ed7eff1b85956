//! `revoke`: add a host's certificates (or one) to the deny list the server
//! re-reads within a second (offline; see [`crate::enrol`]).

use std::path::PathBuf;

use crate::commands::ca::DEFAULT_CA_DIR;
use crate::enrol;
use crate::timearg::{format_ns, now_ns};

#[derive(clap::Args, Debug)]
pub struct Args {
    pub host: String,
    /// Only this certificate (hex serial, as `hosts` shows it).
    #[arg(long)]
    pub serial: Option<String>,
    #[arg(long, default_value = DEFAULT_CA_DIR)]
    pub ca_dir: PathBuf,
    /// The deny list the server reads ([tls] revoked; default CA_DIR/revoked).
    #[expect(clippy::doc_markdown, reason = "--help text, shown as written")]
    #[arg(long)]
    pub revoked_file: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let Args {
        host,
        serial,
        ca_dir,
        revoked_file,
    } = args;
    let file = revoked_file.clone().unwrap_or_else(|| ca_dir.join("revoked"));
    let today = format_ns(now_ns());
    let today = today.split(['T', ' ']).next().unwrap_or(&today);
    let added = enrol::revoke(ca_dir, host, serial.as_deref(), &file, today)?;
    if added.is_empty() {
        println!("{host}: already revoked in {}", file.display());
    } else {
        println!(
            "revoked {host}: {} (in {}; the server refuses it within a second)",
            added.join(", "),
            file.display()
        );
    }
    Ok(())
}
