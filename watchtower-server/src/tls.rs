//! Mutual TLS on every listener: a rustls server that demands a client
//! certificate from our CA (with CRLs), and the identity a certificate names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::Status;
use watchtower_pki::{Identity, Role};

use crate::admission::{Admission, AdmittedStream};
use crate::counters::ServerCounters;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the CA certificate in {path} is not usable: {source}")]
    BadCa { path: PathBuf, source: rustls::Error },
    #[error("cannot build the client verifier (CA or CRLs): {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the server certificate or key is not usable: {0}")]
    ServerCert(rustls::Error),
}

/// Where the server's TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub crls: Vec<PathBuf>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The rustls server configuration: our CA's client certificates only (minus
/// revoked ones), HTTP/2.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certs(&files.ca)? {
        roots.add(ca).map_err(|source| TlsError::BadCa {
            path: files.ca.clone(),
            source,
        })?;
    }
    let mut crls = Vec::new();
    for path in &files.crls {
        let read = |source| TlsError::Read {
            path: path.clone(),
            source,
        };
        for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(read)? {
            crls.push(crl.map_err(read)?);
        }
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .with_crls(crls)
        .build()?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key)
        .map_err(TlsError::ServerCert)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The deny list of revoked certificates: one serial number (hex, `:` allowed)
/// per line, `#` starts a comment (`watchtowerctl revoke` writes the host and the
/// date there). Re-read whenever the file changes, without a restart; a missing
/// file is an empty list, an unreadable one keeps the last list and is logged.
pub struct Revocations {
    path: Option<PathBuf>,
    state: std::sync::RwLock<RevokedState>,
}

#[derive(Default)]
struct RevokedState {
    serials: std::collections::HashSet<String>,
    /// (modification time, length) of the file last read.
    seen: Option<(std::time::SystemTime, u64)>,
}

/// Serial numbers in a deny list's text.
fn parse_revoked(text: &str) -> std::collections::HashSet<String> {
    watchtower_pki::revoked_serials(text).into_iter().collect()
}

impl Revocations {
    /// The list in `path` (none: nothing is revoked).
    #[must_use]
    pub fn load(path: Option<PathBuf>) -> Arc<Revocations> {
        let revocations = Arc::new(Revocations {
            path,
            state: std::sync::RwLock::new(RevokedState::default()),
        });
        revocations.reload();
        revocations
    }

    /// Whether the certificate with this serial (as [`watchtower_pki::serial_hex`]) is revoked.
    #[must_use]
    pub fn is_revoked(&self, serial: &str) -> bool {
        watchtower_pki::normalize_serial(serial)
            .is_some_and(|serial| self.state.read().expect("revocations").serials.contains(&serial))
    }

    /// Re-read the file if it changed; returns the number of revoked serials when it did.
    pub fn reload(&self) -> Option<usize> {
        let path = self.path.as_ref()?;
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len()));
        if self.state.read().expect("revocations").seen == stamp && stamp.is_some() {
            return None;
        }
        let serials = match std::fs::read_to_string(path) {
            Ok(text) => parse_revoked(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::collections::HashSet::new(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the revocation list; keeping the last one");
                return None;
            }
        };
        let mut state = self.state.write().expect("revocations");
        let changed = state.seen != stamp || state.serials != serials;
        state.seen = stamp;
        if !changed {
            return None;
        }
        let n = serials.len();
        state.serials = serials;
        tracing::info!(path = %path.display(), revoked = n, "revocation list loaded");
        Some(n)
    }

    /// Re-read the list every second while the server runs.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let revocations = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                revocations.reload();
            }
        })
    }
}

/// A caller's certificate as far as its standing goes: checked at the handshake,
/// and again on every call and every second of a live stream, so that a
/// certificate revoked or expired while its connection stays open stops working.
#[derive(Clone, Debug, Default)]
pub struct Standing {
    /// Who the certificate names.
    pub name: String,
    pub serial: String,
    pub not_after_unix_s: i64,
}

/// Why a certificate may no longer be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lapsed {
    Revoked,
    Expired,
}

impl Standing {
    /// The standing of the request's client certificate (`None` for an identity
    /// set in-process, which has no certificate).
    #[must_use]
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Standing> {
        let certs = request.peer_certs()?;
        let facts = watchtower_pki::cert_facts(certs.first()?.as_ref()).ok()?;
        Some(Standing {
            name: facts.identity.name,
            serial: facts.serial,
            not_after_unix_s: facts.not_after_unix_s,
        })
    }

    /// Whether the certificate is revoked or expired now.
    #[must_use]
    pub fn lapsed(&self, revocations: &Revocations) -> Option<Lapsed> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if !self.serial.is_empty() && revocations.is_revoked(&self.serial) {
            Some(Lapsed::Revoked)
        } else if self.not_after_unix_s > 0 && now > self.not_after_unix_s {
            Some(Lapsed::Expired)
        } else {
            None
        }
    }
}

/// The facts of the client certificate a TLS connection presented.
fn peer_facts(stream: &TlsStream<TcpStream>) -> Option<watchtower_pki::CertFacts> {
    let leaf = stream.get_ref().1.peer_certificates()?.first()?;
    watchtower_pki::cert_facts(leaf.as_ref()).ok()
}

/// Accept TCP connections and finish their TLS handshakes off the accept loop.
/// A connection over one of [`Admission`]'s caps is closed at once (counted);
/// connections that fail the handshake (no certificate, another CA, expired,
/// revoked) or do not finish it in time are logged and counted, and never reach
/// a service.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    admission: Arc<Admission>,
    counters: Arc<ServerCounters>,
    revocations: Arc<Revocations>,
) -> tokio_stream::wrappers::ReceiverStream<Result<AdmittedStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshake_timeout = admission.limits().handshake_timeout();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admitted = match admission.admit(peer.ip()) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    tracing::debug!(%peer, reason = refusal.reason(), "connection refused before its handshake");
                    drop(tcp);
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let counters = counters.clone();
            let revocations = revocations.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        if let Some(facts) = peer_facts(&stream)
                            && revocations.is_revoked(&facts.serial)
                        {
                            counters.reject("revoked");
                            tracing::error!(%peer, identity = %facts.identity, serial = %facts.serial, "refused a revoked certificate");
                            return;
                        }
                        let _ = tx.send(Ok(admitted.established(stream))).await;
                    }
                    Ok(Err(e)) => {
                        counters.tls_failure();
                        tracing::warn!(%peer, error = %e, "TLS handshake refused: the client has no valid certificate from this server's CA");
                    }
                    Err(_) => {
                        counters.tls_failure();
                        tracing::warn!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The identity in the verified client certificate of a request, if its role is
/// one of `allowed`.
///
/// A process that embeds the services on a listener of its own (the benchmark's
/// plaintext arm) may instead establish the identity itself by inserting an
/// [`Identity`] into the request's extensions; extensions are set only by
/// server-side code, never by a peer, and the server binary inserts none.
pub fn authorize<T>(request: &tonic::Request<T>, allowed: &[Role]) -> Result<Identity, Status> {
    if let Some(identity) = request.extensions().get::<Identity>() {
        if !allowed.contains(&identity.role) {
            return Err(Status::permission_denied(format!(
                "{identity} may not call this service"
            )));
        }
        return Ok(identity.clone());
    }
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let identity = watchtower_pki::identity_of(leaf.as_ref()).map_err(|e| {
        Status::unauthenticated(format!(
            "the client certificate names no watchtower identity: {e}"
        ))
    })?;
    if !allowed.contains(&identity.role) {
        return Err(Status::permission_denied(format!(
            "{identity} may not call this service"
        )));
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list_lines_name_serials() {
        let text = "# revoked by watchtowerctl\n\
                    4F:A0:01  web-1 2026-11-23 # lost laptop\n\
                    00c0ffee\n\
                    not-hex host\n\
                    \n";
        let serials = parse_revoked(text);
        assert_eq!(serials.len(), 2, "{serials:?}");
        assert!(serials.contains("4fa001") && serials.contains("c0ffee"));
    }

    #[test]
    fn the_list_is_reloaded_when_the_file_changes() {
        let dir = crate::Scratch::new("revoked");
        let path = dir.0.join("revoked");
        let list = Revocations::load(Some(path.clone()));
        assert!(!list.is_revoked("abc1"), "a missing file revokes nothing");
        std::fs::write(&path, "abc1 web-1\n").unwrap();
        assert_eq!(list.reload(), Some(1));
        assert!(list.is_revoked("abc1") && list.is_revoked("0abc1") && !list.is_revoked("abc2"));
        assert_eq!(list.reload(), None, "unchanged");
        std::fs::write(&path, "abc1 web-1\nabc2 web-2\n").unwrap();
        assert_eq!(list.reload(), Some(2));
        assert!(list.is_revoked("abc2"));
    }
}
