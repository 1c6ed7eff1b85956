//! Server configuration: a TOML file with a default for every field (matching
//! `cargo xtask certs` output), overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub ingest: IngestSection,
    pub retention: RetentionSection,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The gRPC listener (ingest and query), mutual TLS only.
    pub listen: SocketAddr,
    /// Where `RocksDB` keeps the events.
    pub data_dir: PathBuf,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: PathBuf::from("data/server"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// The CA whose client certificates are accepted (agents, readers, admins).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate revocation lists (PEM) of that CA.
    pub crls: Vec<PathBuf>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            ca: PathBuf::from("certs/ca.pem"),
            cert: PathBuf::from("certs/server.pem"),
            key: PathBuf::from("certs/server.key"),
            crls: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// Largest gRPC message accepted (bytes); larger ones are refused and counted.
    pub max_message_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_batch_events: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Events older than this many days are removed (0: keep forever).
    pub days: u32,
    /// How often retention runs.
    pub check_interval_secs: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            days: 400,
            check_interval_secs: 3600,
        }
    }
}

impl ServerConfig {
    /// Read a config file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Check values that would fail later.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ingest.max_message_bytes >= 64 * 1024,
            "ingest.max_message_bytes must be at least 65536"
        );
        anyhow::ensure!(
            self.ingest.max_batch_events >= 1,
            "ingest.max_batch_events must be at least 1"
        );
        anyhow::ensure!(
            self.retention.check_interval_secs >= 1,
            "retention.check_interval_secs must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_xtask_certs_and_round_trip() {
        let config = ServerConfig::default();
        assert_eq!(config.tls.ca, PathBuf::from("certs/ca.pem"));
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:7443");
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<ServerConfig>(&text).unwrap(), config);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<ServerConfig>("[server]\nlisten_on = \"x\"").is_err());
        let config: ServerConfig =
            toml::from_str("[retention]\ndays = 30\n[ingest]\nmax_batch_events = 0").unwrap();
        assert_eq!(config.retention.days, 30);
        assert!(config.validate().is_err());
    }
}
