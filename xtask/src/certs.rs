//! `cargo xtask certs`: a CA and the certificates of the server, of each host's
//! agent and of each reader/admin client. Idempotent: what exists is kept.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use watchtower_pki::{Authority, Identity, Validity};

pub struct CertsRequest {
    pub out: PathBuf,
    pub hosts: Vec<String>,
    pub readers: Vec<String>,
    pub admins: Vec<String>,
    pub server_names: Vec<String>,
    pub days: u32,
    pub force: bool,
}

/// This machine's hostname as a valid host id (lowercase; other characters become '-').
pub fn default_host_id() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = id
        .trim_start_matches(['.', '_', '-'])
        .chars()
        .take(63)
        .collect::<String>();
    if id.is_empty() { "localhost".into() } else { id }
}

fn pair(
    out: &Path,
    stem: &str,
    force: bool,
    issue: impl FnOnce() -> anyhow::Result<watchtower_pki::Issued>,
) -> anyhow::Result<()> {
    let cert = out.join(format!("{stem}.pem"));
    let key = out.join(format!("{stem}.key"));
    if cert.exists() && key.exists() && !force {
        println!("kept    {}", cert.display());
        return Ok(());
    }
    let issued = issue()?;
    watchtower_pki::write_file(&cert, &issued.cert_pem, false)
        .with_context(|| format!("writing {}", cert.display()))?;
    watchtower_pki::write_file(&key, &issued.key_pem, true)
        .with_context(|| format!("writing {}", key.display()))?;
    println!("issued  {}", cert.display());
    Ok(())
}

pub fn certs(request: &CertsRequest) -> anyhow::Result<()> {
    let out = &request.out;
    for name in &request.readers {
        if request.admins.contains(name) {
            bail!("{name:?} is given as both a reader and an admin");
        }
    }
    let validity = || Validity::days(request.days);
    let (ca_pem, ca_key) = (out.join("ca.pem"), out.join("ca.key"));
    let ca = if ca_pem.exists() && ca_key.exists() && !request.force {
        println!("kept    {}", ca_pem.display());
        Authority::load(
            &std::fs::read_to_string(&ca_pem)?,
            &std::fs::read_to_string(&ca_key)?,
        )
        .with_context(|| format!("loading the CA in {}", out.display()))?
    } else {
        let ca = Authority::generate("Watchtower CA", Validity::days(request.days.max(3650)))?;
        watchtower_pki::write_file(&ca_pem, ca.cert_pem(), false)?;
        watchtower_pki::write_file(&ca_key, ca.key_pem(), true)?;
        println!("issued  {} (keep ca.key offline in production)", ca_pem.display());
        ca
    };
    pair(out, "server", request.force, || {
        Ok(ca.issue_server(&request.server_names, validity())?)
    })?;
    for host in &request.hosts {
        let identity = Identity::agent(host)?;
        pair(&out.join("agents"), host, request.force, || {
            Ok(ca.issue_client(&identity, validity())?)
        })?;
    }
    for (names, make) in [
        (&request.readers, Identity::reader as fn(&str) -> _),
        (&request.admins, Identity::admin as fn(&str) -> _),
    ] {
        for name in names {
            let identity = make(name)?;
            pair(&out.join("clients"), name, request.force, || {
                Ok(ca.issue_client(&identity, validity())?)
            })?;
        }
    }
    println!(
        "certificates in {}: ca.pem, server.pem/.key, agents/<host>.pem/.key, clients/<name>.pem/.key",
        out.display()
    );
    Ok(())
}
