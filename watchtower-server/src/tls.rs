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

use crate::counters::ServerCounters;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Accept TCP connections and finish their TLS handshakes off the accept loop;
/// connections that fail the handshake (no certificate, another CA, expired,
/// revoked) are logged and counted, and never reach a service.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    counters: Arc<ServerCounters>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
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
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
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
pub fn authorize<T>(request: &tonic::Request<T>, allowed: &[Role]) -> Result<Identity, Status> {
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
