//! The one mutual-TLS client set-up: the agent's sender, watchtowerctl, the
//! end-to-end tests and the benchmarks all reach the server through it.
//!
//! A [`ClientTls`] holds the CA that must have signed the server, this client's
//! own certificate and key (absent only for tests that show a client without one
//! is refused), and the name the server's certificate must carry.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Why a client's TLS material or address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server address {address:?}: {source}")]
    Address {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// What a client presents and expects on a mutual-TLS connection.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: String,
}

fn read(path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl ClientTls {
    /// The CA, certificate and key from PEM files.
    pub fn from_files(
        ca: &Path,
        cert: &Path,
        key: &Path,
        server_name: impl Into<String>,
    ) -> Result<ClientTls, ClientTlsError> {
        Ok(ClientTls::from_pem(
            read(ca)?,
            read(cert)?,
            read(key)?,
            server_name,
        ))
    }

    /// The CA, certificate and key as PEM text.
    #[must_use]
    pub fn from_pem(
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        server_name: impl Into<String>,
    ) -> ClientTls {
        ClientTls {
            ca_pem,
            identity: Some((cert_pem, key_pem)),
            server_name: server_name.into(),
        }
    }

    /// A client that checks the server but presents no certificate of its own
    /// (the server must refuse it).
    #[must_use]
    pub fn without_identity(ca_pem: Vec<u8>, server_name: impl Into<String>) -> ClientTls {
        ClientTls {
            ca_pem,
            identity: None,
            server_name: server_name.into(),
        }
    }

    /// tonic's TLS configuration (rustls with the ring provider).
    #[must_use]
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(self.server_name.clone());
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }

    /// An endpoint for `address` (`https://HOST:PORT`) with this TLS and a connect
    /// timeout; callers add keepalives or limits of their own before connecting.
    pub fn endpoint(&self, address: &str, connect_timeout: Duration) -> Result<Endpoint, ClientTlsError> {
        let address_error = |source| ClientTlsError::Address {
            address: address.to_owned(),
            source,
        };
        Ok(Endpoint::from_shared(address.to_owned())
            .map_err(address_error)?
            .tls_config(self.config())
            .map_err(address_error)?
            .connect_timeout(connect_timeout))
    }
}

/// Install ring as the process's rustls provider (a no-op when one is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
