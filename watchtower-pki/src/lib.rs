//! Watchtower's certificates: a CA, the server, one certificate per host agent
//! and per reader/admin client (made with rcgen), and who a certificate names.
//!
//! An identity is one URI SAN, `spiffe://watchtower/<role>/<name>`: the server
//! takes a host's identity from its certificate, never from what it sends.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub use client::{ClientTls, ClientTlsError, install_crypto_provider};

use std::io::Read as _;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

const PREFIX: &str = "spiffe://watchtower/";
/// A label bound into an agent's certificate: one URI SAN `urn:watchtower:label:KEY=VALUE`.
const LABEL_PREFIX: &str = "urn:watchtower:label:";

/// A host's labels (region, group, ...), bound into its certificate by the CA.
pub type Labels = std::collections::BTreeMap<String, String>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkiError {
    #[error("invalid name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("{0:?} is not a watchtower identity (spiffe://watchtower/agent|reader|admin/NAME)")]
    BadUri(String),
    #[error("the certificate names no watchtower identity (no spiffe://watchtower/ URI SAN)")]
    NoIdentity,
    #[error("the certificate names several watchtower identities")]
    SeveralIdentities,
    #[error("not a usable certificate: {0}")]
    Certificate(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("invalid label {0:?}: KEY=VALUE, the key [a-z0-9_-] (1-32), the value [A-Za-z0-9._-] (1-63)")]
    BadLabel(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generate(e.to_string())
    }
}

/// What a certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A host's agent: may only ingest, and only as its own host.
    Agent,
    /// May query.
    Reader,
    /// May query (and, later, administer).
    Admin,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

/// Who a certificate names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub role: Role,
    /// The host id for agents, the client's name otherwise.
    pub name: String,
}

/// Names of hosts and clients: 1 to 63 characters of `[a-z0-9._-]`, starting with a
/// letter or digit.
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let bad = |why| {
        Err(PkiError::BadName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 63 {
        return bad("must be 1 to 63 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return bad("must start with a lowercase letter or a digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return bad("may hold only lowercase letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

impl Identity {
    fn new(role: Role, name: &str) -> Result<Identity, PkiError> {
        validate_name(name)?;
        Ok(Identity {
            role,
            name: name.to_owned(),
        })
    }

    pub fn agent(host_id: &str) -> Result<Identity, PkiError> {
        Identity::new(Role::Agent, host_id)
    }

    pub fn reader(name: &str) -> Result<Identity, PkiError> {
        Identity::new(Role::Reader, name)
    }

    pub fn admin(name: &str) -> Result<Identity, PkiError> {
        Identity::new(Role::Admin, name)
    }

    /// `spiffe://watchtower/<role>/<name>`
    #[must_use]
    pub fn uri(&self) -> String {
        format!("{PREFIX}{}/{}", self.role.as_str(), self.name)
    }

    pub fn parse_uri(uri: &str) -> Result<Identity, PkiError> {
        let bad = || PkiError::BadUri(uri.to_owned());
        let rest = uri.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (role, name) = rest.split_once('/').ok_or_else(bad)?;
        let role = match role {
            "agent" => Role::Agent,
            "reader" => Role::Reader,
            "admin" => Role::Admin,
            _ => return Err(bad()),
        };
        Identity::new(role, name).map_err(|_| bad())
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role.as_str(), self.name)
    }
}

/// Who a (chain-verified) DER certificate names: exactly one watchtower URI SAN.
pub fn identity_of(cert_der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::Certificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    let mut found = None;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && uri.starts_with(PREFIX)
        {
            if found.is_some() {
                return Err(PkiError::SeveralIdentities);
            }
            found = Some(Identity::parse_uri(uri)?);
        }
    }
    found.ok_or(PkiError::NoIdentity)
}

/// Parse `KEY=VALUE` into a label, checking both halves.
pub fn parse_label(text: &str) -> Result<(String, String), PkiError> {
    let bad = || PkiError::BadLabel(text.to_owned());
    let (key, value) = text.split_once('=').ok_or_else(bad)?;
    let key_ok = (1..=32).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let value_ok = (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !key_ok || !value_ok {
        return Err(bad());
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// What the server needs to know of a verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    pub identity: Identity,
    /// Labels the CA bound into the certificate (agents' region, group, ...).
    pub labels: Labels,
    /// The serial number, lower-case hex without separators.
    pub serial: String,
    /// Seconds since the epoch after which the certificate is no longer valid.
    pub not_after_unix_s: i64,
}

/// The identity, labels, serial and expiry of a certificate (DER).
pub fn cert_facts(cert_der: &[u8]) -> Result<CertFacts, PkiError> {
    let identity = identity_of(cert_der)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::Certificate(e.to_string()))?;
    let mut labels = Labels::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Certificate(e.to_string()))?
    {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && let Some(label) = uri.strip_prefix(LABEL_PREFIX)
            {
                let (key, value) = parse_label(label)?;
                labels.insert(key, value);
            }
        }
    }
    Ok(CertFacts {
        identity,
        labels,
        serial: serial_hex(cert.raw_serial()),
        not_after_unix_s: cert.validity().not_after.timestamp(),
    })
}

/// The facts of the first certificate in a PEM text.
pub fn cert_facts_pem(pem: &str) -> Result<CertFacts, PkiError> {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Certificate(format!("PEM: {e}")))?;
    cert_facts(der.as_ref())
}

/// A serial number as lower-case hex, leading zero bytes dropped.
#[must_use]
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw.iter().position(|&b| b != 0) {
        Some(start) => &raw[start..],
        None => &[0],
    };
    trimmed
        .iter()
        .fold(String::with_capacity(trimmed.len() * 2), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A serial number as an operator writes it (hex, `:` allowed, any case) in the
/// form of [`serial_hex`]; `None` when it is not hex.
#[must_use]
pub fn normalize_serial(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// The serials of a deny list (`watchtowerctl revoke` writes it, the server reads
/// it): the first word of each line, `#` starts a comment, normalized; lines whose
/// first word is not hex are skipped.
#[must_use]
pub fn revoked_serials(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| normalize_serial(line.split('#').next()?.split_whitespace().next()?))
        .collect()
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew) for `n` days.
    #[must_use]
    pub fn days(n: u32) -> Validity {
        let now = time::OffsetDateTime::now_utc();
        Validity {
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(i64::from(n)),
        }
    }

    /// Ended a day ago (for tests of refusal).
    #[must_use]
    pub fn expired() -> Validity {
        let now = time::OffsetDateTime::now_utc();
        Validity {
            not_before: now - time::Duration::days(30),
            not_after: now - time::Duration::days(1),
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that issues Watchtower's certificates.
pub struct Authority {
    cert_pem: String,
    key: KeyPair,
    issuer: Issuer<'static, KeyPair>,
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| PkiError::Generate(format!("reading /dev/urandom: {e}")))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn base_params(common_name: &str, validity: Validity) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Watchtower");
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl Authority {
    /// A new self-signed CA (ECDSA P-256).
    pub fn generate(common_name: &str, validity: Validity) -> Result<Authority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = base_params(common_name, validity)?;
        params.use_authority_key_identifier_extension = false;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Authority::load(&cert.pem(), &key.serialize_pem())
    }

    /// An existing CA, to issue more certificates.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Certificate(format!("CA key: {e}")))?;
        let signing =
            KeyPair::from_pem(key_pem).map_err(|e| PkiError::Certificate(format!("CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, signing)
            .map_err(|e| PkiError::Certificate(format!("CA certificate: {e}")))?;
        Ok(Authority {
            cert_pem: cert_pem.to_owned(),
            key,
            issuer,
        })
    }

    #[must_use]
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    #[must_use]
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The server's certificate: each name is an IP address or a DNS name.
    pub fn issue_server(&self, names: &[String], validity: Validity) -> Result<Issued, PkiError> {
        self.issue_named(names, validity, vec![ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A certificate for a node of the fleet's NATS cluster or one of its clients
    /// (front doors, indexers): server and client authentication, each name an IP
    /// address or a DNS name. NATS maps a client to its user by the DNS name.
    pub fn issue_node(&self, names: &[String], validity: Validity) -> Result<Issued, PkiError> {
        self.issue_named(
            names,
            validity,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    fn issue_named(
        &self,
        names: &[String],
        validity: Validity,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Issued, PkiError> {
        let mut params = base_params(
            names.first().map_or("watchtower-server", String::as_str),
            validity,
        )?;
        for name in names {
            params
                .subject_alt_names
                .push(match name.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        name.clone()
                            .try_into()
                            .map_err(|e| PkiError::Generate(format!("DNS name {name:?}: {e}")))?,
                    ),
                });
        }
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(&params)
    }

    /// A client's certificate naming `identity` (URI SAN), CN = its name.
    pub fn issue_client(&self, identity: &Identity, validity: Validity) -> Result<Issued, PkiError> {
        self.issue_labelled(identity, &Labels::new(), validity)
    }

    /// A client's certificate naming `identity` with `labels` bound into it (one
    /// `urn:watchtower:label:KEY=VALUE` URI SAN each): the agent cannot change them.
    pub fn issue_labelled(
        &self,
        identity: &Identity,
        labels: &Labels,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut params = base_params(&identity.name, validity)?;
        for (key, value) in labels {
            let text = format!("{key}={value}");
            parse_label(&text)?;
            params.subject_alt_names.push(SanType::URI(
                format!("{LABEL_PREFIX}{text}")
                    .try_into()
                    .map_err(|e| PkiError::Generate(format!("URI: {e}")))?,
            ));
        }
        params.subject_alt_names.push(SanType::URI(
            identity
                .uri()
                .try_into()
                .map_err(|e| PkiError::Generate(format!("URI: {e}")))?,
        ));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Write `contents` to `path` (parents created; written to a temporary and
/// renamed); private keys are mode 0600.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    file.write_all(contents.as_ref())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Create `path` with `contents`, failing if anything (a file or a link) is there
/// already: `O_EXCL` and `O_NOFOLLOW`, so a planted symlink is never written
/// through. For keys, which must never be overwritten.
pub fn create_new_file(path: &Path, contents: impl AsRef<[u8]>, private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc_o_nofollow())
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)?;
    file.write_all(contents.as_ref())?;
    file.sync_all()
}

/// `O_NOFOLLOW` on Linux (all architectures Watchtower builds for).
const fn libc_o_nofollow() -> i32 {
    if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        0o100_000
    } else {
        0o400_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_never_written_over_or_through_a_link() {
        let dir = std::env::temp_dir().join(format!("wt-pki-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("a.key");
        create_new_file(&key, b"one", true).unwrap();
        assert!(create_new_file(&key, b"two", true).is_err());
        assert_eq!(std::fs::read(&key).unwrap(), b"one");
        let target = dir.join("target");
        std::os::unix::fs::symlink(&target, dir.join("link.key")).unwrap();
        assert!(create_new_file(&dir.join("link.key"), b"x", true).is_err());
        assert!(!target.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn der(pem_text: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn labels_are_bound_into_agent_certificates() {
        let ca = Authority::generate("test CA", Validity::days(1)).unwrap();
        let labels: Labels = [("group", "web"), ("region", "eu-west-1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let issued = ca
            .issue_labelled(&Identity::agent("web-1").unwrap(), &labels, Validity::days(30))
            .unwrap();
        let facts = cert_facts_pem(&issued.cert_pem).unwrap();
        assert_eq!(facts.identity, Identity::agent("web-1").unwrap());
        assert_eq!(facts.labels, labels);
        assert_eq!(facts.serial.len(), 32, "16 random bytes, top bit clear");
        let days = (facts.not_after_unix_s - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        // An unlabelled certificate has none; bad labels are refused.
        let plain = ca
            .issue_client(&Identity::reader("ops").unwrap(), Validity::days(1))
            .unwrap();
        assert!(cert_facts_pem(&plain.cert_pem).unwrap().labels.is_empty());
        for bad in ["region", "=x", "Region=x", "region=", "region=a b", "region=a,b"] {
            assert_eq!(parse_label(bad), Err(PkiError::BadLabel(bad.to_owned())), "{bad}");
        }
        assert_eq!(serial_hex(&[0, 0, 0x0a, 0xff]), "0aff");
    }

    #[test]
    fn client_certificates_name_their_identity() {
        let ca = Authority::generate("test CA", Validity::days(1)).unwrap();
        for identity in [
            Identity::agent("web-1").unwrap(),
            Identity::reader("auditor").unwrap(),
            Identity::admin("ops.team").unwrap(),
        ] {
            let issued = ca.issue_client(&identity, Validity::days(1)).unwrap();
            assert_eq!(identity_of(&der(&issued.cert_pem)).unwrap(), identity);
        }
        let server = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into()], Validity::days(1))
            .unwrap();
        assert_eq!(identity_of(&der(&server.cert_pem)), Err(PkiError::NoIdentity));
        assert!(identity_of(b"not a certificate").is_err());
    }

    #[test]
    fn issued_by_a_loaded_ca_chain_to_it() {
        let ca = Authority::generate("test CA", Validity::days(1)).unwrap();
        let loaded = Authority::load(&ca.cert_pem(), &ca.key_pem()).unwrap();
        let issued = loaded
            .issue_client(&Identity::agent("db-2").unwrap(), Validity::days(1))
            .unwrap();
        let ca_der = der(&ca.cert_pem());
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let leaf_der = der(&issued.cert_pem);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf.issuer(), ca_cert.subject());
        leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
        let expired = ca
            .issue_client(&Identity::agent("db-2").unwrap(), Validity::expired())
            .unwrap();
        let expired_der = der(&expired.cert_pem);
        let (_, expired) = x509_parser::parse_x509_certificate(&expired_der).unwrap();
        assert!(!expired.validity().is_valid());
        assert!(leaf.validity().is_valid());
    }

    #[test]
    fn names_and_uris_are_checked() {
        for bad in ["", "Web", "-a", "a/b", "a b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "web-1", "db.example", "x_y", &"a".repeat(63)] {
            validate_name(good).unwrap();
        }
        assert_eq!(
            Identity::parse_uri("spiffe://watchtower/agent/web-1").unwrap(),
            Identity::agent("web-1").unwrap()
        );
        for bad in [
            "spiffe://other/agent/web-1",
            "spiffe://watchtower/root/web-1",
            "spiffe://watchtower/agent/Web",
            "spiffe://watchtower/agent",
            "https://watchtower/agent/web-1",
        ] {
            assert!(Identity::parse_uri(bad).is_err(), "{bad}");
        }
        assert_eq!(Identity::agent("web-1").unwrap().to_string(), "agent web-1");
    }
}
