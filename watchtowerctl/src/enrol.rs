//! The operator's certificate authority, offline: `ca init` (the CA, the server's
//! certificate and an operator's), `enroll` (a host's agent certificate with its
//! labels bound in, and the bundle to copy to the host), and `revoke` (the deny
//! list the server re-reads without a restart).
//!
//! Layout of the CA directory: ca.pem, ca.key (0600), server.pem, server.key,
//! clients/NAME.pem/.key, issued/HOST-SERIAL.pem (every agent certificate issued,
//! to revoke by host), revoked (the deny list: `SERIAL HOST DATE`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use watchtower_pki::{Authority, Identity, Labels, Validity, cert_facts_pem, write_file};

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn authority(dir: &Path) -> anyhow::Result<Authority> {
    let cert = read(&dir.join("ca.pem"))?;
    let key =
        read(&dir.join("ca.key")).context("the CA's private key (enrolment runs where the CA is kept)")?;
    Ok(Authority::load(&cert, &key)?)
}

/// Make the CA, the server's certificate for `server_names`, and a reader
/// certificate for `operator`. Refuses to replace an existing CA.
pub fn init(dir: &Path, server_names: &[String], operator: &str, days: u32) -> anyhow::Result<Vec<PathBuf>> {
    if dir.join("ca.key").exists() {
        bail!(
            "{} already holds a CA (ca.key); refusing to replace it",
            dir.display()
        );
    }
    let ca = Authority::generate("Watchtower CA", Validity::days(days.max(3650)))?;
    let server = ca.issue_server(server_names, Validity::days(days))?;
    let client = ca.issue_client(&Identity::reader(operator)?, Validity::days(days))?;
    let files = [
        ("ca.pem", ca.cert_pem(), false),
        ("ca.key", ca.key_pem(), true),
        ("server.pem", server.cert_pem, false),
        ("server.key", server.key_pem, true),
        (&*format!("clients/{operator}.pem"), client.cert_pem, false),
        (&*format!("clients/{operator}.key"), client.key_pem, true),
    ]
    .map(|(name, text, private)| (dir.join(name), text, private));
    for (path, text, private) in &files {
        write_file(path, text, *private).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _, _)| path).collect())
}

/// Where the enrolled agent will find its files once the bundle is installed.
pub const INSTALLED_DIR: &str = "/etc/watchtower";

/// The agent's configuration in the bundle.
#[must_use]
pub fn agent_config(host: &str, server: &str, server_name: &str) -> String {
    format!(
        "# Written by `watchtowerctl enroll` for host {host}. Install the bundle in {INSTALLED_DIR}.\n\
         [agent]\nhost_id = \"{host}\"\nstate_dir = \"/var/lib/watchtower-agent\"\n\n\
         [server]\naddress = \"{server}\"\nserver_name = \"{server_name}\"\n\
         ca = \"{INSTALLED_DIR}/ca.pem\"\ncert = \"{INSTALLED_DIR}/agent.pem\"\nkey = \"{INSTALLED_DIR}/agent.key\"\n"
    )
}

/// What `enroll` wrote.
pub struct Enrolled {
    pub bundle: PathBuf,
    pub serial: String,
    pub not_after_unix_s: i64,
}

/// Issue `host`'s agent certificate with `labels` and write its bundle to `out`
/// (ca.pem, agent.pem, agent.key, agent.toml); keep a copy of the certificate in
/// the CA directory's issued/ (for `revoke --host`).
pub fn enroll(
    dir: &Path,
    host: &str,
    labels: &Labels,
    server: &str,
    server_name: &str,
    days: u32,
    out: &Path,
) -> anyhow::Result<Enrolled> {
    let ca = authority(dir)?;
    let issued = ca.issue_labelled(&Identity::agent(host)?, labels, Validity::days(days))?;
    let facts = cert_facts_pem(&issued.cert_pem)?;
    write_file(
        &dir.join(format!("issued/{host}-{}.pem", facts.serial)),
        &issued.cert_pem,
        false,
    )?;
    write_file(&out.join("ca.pem"), ca.cert_pem(), false)?;
    write_file(&out.join("agent.pem"), &issued.cert_pem, false)?;
    write_file(&out.join("agent.key"), &issued.key_pem, true)?;
    write_file(
        &out.join("agent.toml"),
        agent_config(host, server, server_name),
        false,
    )?;
    Ok(Enrolled {
        bundle: out.to_owned(),
        serial: facts.serial,
        not_after_unix_s: facts.not_after_unix_s,
    })
}

/// Add every certificate issued to `host` (or just `serial`) to the deny list at
/// `revoked` (written to a temporary file and renamed, so the server never reads
/// half a list). Returns the serials newly revoked.
pub fn revoke(
    dir: &Path,
    host: &str,
    serial: Option<&str>,
    revoked: &Path,
    today: &str,
) -> anyhow::Result<Vec<String>> {
    let mut serials = Vec::new();
    let issued = dir.join("issued");
    if let Some(serial) = serial {
        serials.push(
            watchtower_pki::normalize_serial(serial)
                .with_context(|| format!("{serial:?} is not a hex serial number"))?,
        );
    } else {
        let prefix = format!("{host}-");
        for entry in std::fs::read_dir(&issued).with_context(|| format!("reading {}", issued.display()))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".pem"))
                && rest.bytes().all(|b| b.is_ascii_hexdigit())
            {
                serials.push(rest.to_owned());
            }
        }
        if serials.is_empty() {
            bail!("no certificate issued to {host:?} in {}", issued.display());
        }
    }
    let mut text = match std::fs::read_to_string(revoked) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Revoked Watchtower certificates: SERIAL HOST DATE. Written by watchtowerctl revoke;\n\
             # watchtower-server re-reads it within a second ([tls] revoked).\n"
                .to_owned()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", revoked.display())),
    };
    let already = watchtower_pki::revoked_serials(&text);
    serials.retain(|s| !already.contains(s));
    serials.sort();
    for serial in &serials {
        let _ = writeln!(text, "{serial} {host} {today}");
    }
    write_file(revoked, &text, false).with_context(|| format!("writing {}", revoked.display()))?;
    Ok(serials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrol_then_revoke_by_host() {
        let dir = std::env::temp_dir().join(format!("wtctl-enrol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca_dir = dir.join("ca");
        init(&ca_dir, &["central.example".to_owned()], "ops", 30).unwrap();
        assert!(
            init(&ca_dir, &["x".to_owned()], "ops", 30).is_err(),
            "never replaces a CA"
        );
        let labels: Labels = [
            ("region".to_owned(), "eu-west".to_owned()),
            ("group".to_owned(), "web".to_owned()),
        ]
        .into();
        let first = enroll(
            &ca_dir,
            "web-1",
            &labels,
            "https://central.example:7443",
            "central.example",
            90,
            &dir.join("b1"),
        )
        .unwrap();
        let second = enroll(
            &ca_dir,
            "web-1",
            &labels,
            "https://central.example:7443",
            "central.example",
            90,
            &dir.join("b2"),
        )
        .unwrap();
        enroll(
            &ca_dir,
            "db-1",
            &Labels::new(),
            "https://c:7443",
            "c",
            90,
            &dir.join("b3"),
        )
        .unwrap();
        let facts = cert_facts_pem(&std::fs::read_to_string(dir.join("b1/agent.pem")).unwrap()).unwrap();
        assert_eq!(facts.labels, labels);
        assert_eq!(facts.serial, first.serial);
        let config = std::fs::read_to_string(dir.join("b1/agent.toml")).unwrap();
        assert!(
            config.contains("host_id = \"web-1\"")
                && config.contains("address = \"https://central.example:7443\"")
        );
        let revoked = dir.join("revoked");
        let mut both = vec![first.serial.clone(), second.serial.clone()];
        both.sort();
        assert_eq!(
            revoke(&ca_dir, "web-1", None, &revoked, "2026-11-23").unwrap(),
            both
        );
        assert_eq!(
            revoke(&ca_dir, "web-1", None, &revoked, "2026-11-23").unwrap(),
            Vec::<String>::new(),
            "once"
        );
        let text = std::fs::read_to_string(&revoked).unwrap();
        assert_eq!(watchtower_pki::revoked_serials(&text), both, "db-1 untouched");
        assert!(revoke(&ca_dir, "nobody", None, &revoked, "2026-11-23").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
