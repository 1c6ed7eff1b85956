//! `enroll`: issue a host's agent certificate with its labels bound in and write
//! the bundle to copy to the host (offline; see [`crate::enrol`]).

use std::path::PathBuf;

use crate::commands::ca::DEFAULT_CA_DIR;
use crate::commands::json_line;
use crate::enrol::{self, Enrolled};
use crate::timearg::format_ns;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The host id (the agent's --host-id; [a-z0-9._-]).
    pub host: String,
    /// A label KEY=VALUE (repeatable), e.g. region=eu-west, group=web.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The CA directory (see `ca init`).
    #[arg(long, default_value = DEFAULT_CA_DIR)]
    pub ca_dir: PathBuf,
    /// Validity of the certificate, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Where to write the bundle (default: ./HOST-bundle).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Enrol `args.host` for the agent to reach `server` by `server_name`.
pub fn run(args: &Args, server: &str, server_name: &str, json: bool) -> anyhow::Result<()> {
    let Args {
        host,
        labels,
        ca_dir,
        days,
        out,
    } = args;
    let labels = labels
        .iter()
        .map(|l| watchtower_pki::parse_label(l))
        .collect::<Result<watchtower_pki::Labels, _>>()?;
    let out = out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{host}-bundle")));
    let enrolled = enrol::enroll(ca_dir, host, &labels, server, server_name, *days, &out)?;
    let labels_text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if json {
        json_line(&serde_json::json!({
            "host": host,
            "serial": enrolled.serial,
            "not_after_unix_s": enrolled.not_after_unix_s,
            "labels": labels,
            "bundle": enrolled.bundle,
        }))?;
    } else {
        println!("{}", enrolled_text(host, &enrolled, &labels_text));
    }
    Ok(())
}

/// What was enrolled and what to do with the bundle.
fn enrolled_text(host: &str, enrolled: &Enrolled, labels_text: &[String]) -> String {
    format!(
        "enrolled {host}: certificate {} valid until {}, labels [{}]\n  \
         bundle: {} (ca.pem, agent.pem, agent.key, agent.toml): copy it to {}:{}/ \
         (agent.key mode 0640, group watchtower-agent), then start watchtower-agent",
        enrolled.serial,
        format_ns(enrolled.not_after_unix_s.max(0) as u64 * 1_000_000_000),
        labels_text.join(", "),
        enrolled.bundle.display(),
        host,
        enrol::INSTALLED_DIR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_enroll_prints() {
        let enrolled = Enrolled {
            bundle: PathBuf::from("web-1-bundle"),
            serial: "1a2b".into(),
            not_after_unix_s: 1_700_000_000,
        };
        assert_eq!(
            enrolled_text("web-1", &enrolled, &["group=web".into(), "region=eu-west".into()]),
            "enrolled web-1: certificate 1a2b valid until 2023-11-14T22:13:20.000Z, labels [group=web, region=eu-west]\n  \
             bundle: web-1-bundle (ca.pem, agent.pem, agent.key, agent.toml): copy it to web-1:/etc/watchtower/ \
             (agent.key mode 0640, group watchtower-agent), then start watchtower-agent"
        );
    }
}
