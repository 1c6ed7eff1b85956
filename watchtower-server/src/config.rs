//! Server configuration: a TOML file with a default for every field (matching
//! `cargo xtask certs` output), overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::admission::ConnectionLimits;
use crate::alerts::webhook::WebhookFormat;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub ingest: IngestSection,
    pub retention: RetentionSection,
    pub log: LogSection,
    pub exporter: ExporterSection,
    pub alerts: AlertSection,
    pub fleet: FleetSection,
}

/// What a server does in fleet mode (see the README's "Past one server").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleetRole {
    /// Authenticates agents, checks their batches and publishes them to the
    /// JetStream ingest stream; acknowledges an agent only after JetStream did.
    /// Holds no state.
    FrontDoor,
    /// Owns one shard: consumes it, stores it exactly as a single server does and
    /// acknowledges JetStream after the synced write; serves the Query service over
    /// its shard.
    Indexer,
    /// Serves the Query service over every shard, asking each shard's indexer.
    Query,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetSection {
    /// Unset: a single server with its own store (the default).
    pub role: Option<FleetRole>,
    /// NATS servers (`tls://host:port`), any of the cluster's nodes.
    pub nats_urls: Vec<String>,
    /// The CA of the NATS servers' certificates.
    pub nats_ca: Option<PathBuf>,
    /// This server's client certificate and key for NATS (mutual TLS).
    pub nats_cert: Option<PathBuf>,
    pub nats_key: Option<PathBuf>,
    /// The JetStream stream of agents' messages; subjects `<stream>.<shard>` in
    /// lower case.
    pub stream: String,
    /// How many shards the hosts are spread over (by a hash of the host name).
    /// Changing it moves hosts between shards: see the README.
    pub shards: u32,
    /// An indexer's shard (0 ..< shards).
    pub shard: u32,
    /// Copies JetStream keeps of every message (3 for a three-node cluster).
    pub replicas: usize,
    /// The stream's size limit in bytes: when it is full, publishes are refused
    /// and agents are told (they keep their spool); nothing unconsumed is dropped.
    pub max_bytes: i64,
    /// A query node's indexers (`https://host:port`), in shard order.
    pub indexers: Vec<String>,
    /// The reader or admin certificate and key a query node shows its indexers.
    pub indexer_cert: Option<PathBuf>,
    pub indexer_key: Option<PathBuf>,
    /// The name the indexers' certificates carry (default: each address's host).
    pub indexer_server_name: Option<String>,
}

impl Default for FleetSection {
    fn default() -> Self {
        Self {
            role: None,
            nats_urls: Vec::new(),
            nats_ca: None,
            nats_cert: None,
            nats_key: None,
            stream: "WATCHTOWER".to_owned(),
            shards: 1,
            shard: 0,
            replicas: 3,
            max_bytes: 8 << 30,
            indexers: Vec::new(),
            indexer_cert: None,
            indexer_key: None,
            indexer_server_name: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// The Ed25519 key (a signed-note signer key) that signs checkpoints; created
    /// on the first start of an empty log, its verifier key written beside it as
    /// `.pub` for auditors to pin. A missing key with a non-empty log stops the
    /// server. Default: beside the server's TLS key, outside the data directory
    /// (`certs/checkpoint-signing.key`).
    pub signing_key: Option<PathBuf>,
    /// The log's name, the first line of every checkpoint (C2SP origin) and the
    /// key's name. Default: `watchtower/<this machine's host name>`.
    pub origin: Option<String>,
    /// How often a checkpoint is signed when the log has grown.
    pub checkpoint_interval_secs: u64,
    /// A file outside the server's machine (a mounted share, a synced directory)
    /// where every new checkpoint is written, replacing the last one: an offsite
    /// copy that `watchtowerctl verify --witness` proves the log consistent with.
    pub publish_checkpoint_to: Option<PathBuf>,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            signing_key: None,
            origin: None,
            checkpoint_interval_secs: 60,
            publish_checkpoint_to: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExporterSection {
    /// The HTTP listener for /metrics and /healthz; off when unset. A non-loopback
    /// address needs `token_file`.
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token scrapers must send
    /// (`Authorization: Bearer <token>`).
    pub token_file: Option<PathBuf>,
    /// A host whose agent has not been heard from for this long is stale.
    pub stale_after_secs: u64,
}

impl Default for ExporterSection {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9470))),
            token_file: None,
            stale_after_secs: 120,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSection {
    /// Where alerts are posted as JSON (Slack-compatible: a `text` field, plus the
    /// alert itself under `alert`); http:// or https://. Unset: alerts are kept and
    /// shown in tails only.
    pub webhook_url: Option<String>,
    /// `slack` (default: the body above) or `ocsf` (one OCSF Detection Finding).
    pub webhook_format: WebhookFormat,
    /// Failed logins from one address within the window that raise an alert (0: off).
    pub failed_logins_threshold: u32,
    pub failed_logins_window_secs: u64,
    /// A successful login as root.
    pub root_login: bool,
    /// A successful login from an address the user never logged in from before
    /// (users seen for the first time do not raise it).
    pub new_address: bool,
    /// Journald cross-check verdicts `kernel_only` and `journal_only`.
    pub verdicts: bool,
    /// An agent not heard from for this long (0: off).
    pub stale_agent_secs: u64,
    /// Attempts per alert before the webhook delivery is given up (each counted).
    pub webhook_attempts: u32,
    pub webhook_timeout_secs: u64,
    /// A directory of Sigma rules (`*.yml`, `*.yaml`) evaluated on every stored
    /// event; reloaded when its files change. Unset: no Sigma rules.
    pub sigma_rules_dir: Option<std::path::PathBuf>,
    /// How often the Sigma rules directory is checked for changes.
    pub sigma_reload_secs: u64,
}

impl Default for AlertSection {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_format: WebhookFormat::default(),
            failed_logins_threshold: 5,
            failed_logins_window_secs: 300,
            root_login: true,
            new_address: true,
            verdicts: true,
            stale_agent_secs: 300,
            webhook_attempts: 5,
            webhook_timeout_secs: 5,
            sigma_rules_dir: None,
            sigma_reload_secs: 5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The gRPC listener (ingest and query), mutual TLS only.
    pub listen: SocketAddr,
    /// Where `RocksDB` keeps the events.
    pub data_dir: PathBuf,
    /// Caps on connections and TLS handshakes (`[server.connections]`).
    pub connections: ConnectionLimits,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: PathBuf::from("data/server"),
            connections: ConnectionLimits::default(),
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
    /// Certificate revocation lists (PEM) of that CA (read at start).
    pub crls: Vec<PathBuf>,
    /// The deny list of revoked certificate serials (`watchtowerctl revoke` writes
    /// it), re-read every second: a revoked agent is refused at once, no restart.
    pub revoked: Option<PathBuf>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            ca: PathBuf::from("certs/ca.pem"),
            cert: PathBuf::from("certs/server.pem"),
            key: PathBuf::from("certs/server.key"),
            crls: Vec::new(),
            revoked: None,
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
        self.server.connections.validate().map_err(anyhow::Error::msg)?;
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
        anyhow::ensure!(
            self.log.checkpoint_interval_secs >= 1,
            "log.checkpoint_interval_secs must be at least 1"
        );
        if let Some(listen) = self.exporter.listen {
            anyhow::ensure!(
                listen.ip().is_loopback() || self.exporter.token_file.is_some(),
                "exporter.listen {listen} is not a loopback address: set exporter.token_file so \
                 scrapers must present a bearer token (or keep the exporter on 127.0.0.1)"
            );
        }
        if let Some(url) = &self.alerts.webhook_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "alerts.webhook_url must be an http:// or https:// URL, not {url:?}"
            );
        }
        anyhow::ensure!(
            self.alerts.webhook_attempts >= 1,
            "alerts.webhook_attempts must be at least 1"
        );
        if self.fleet.role == Some(FleetRole::Query) {
            anyhow::ensure!(
                self.fleet.indexers.len() == self.fleet.shards as usize,
                "a query node needs one fleet.indexers address per shard ({} shards, {} indexers)",
                self.fleet.shards,
                self.fleet.indexers.len()
            );
        } else if self.fleet.role.is_some() {
            let fleet = &self.fleet;
            anyhow::ensure!(!fleet.nats_urls.is_empty(), "fleet.role needs fleet.nats_urls");
            anyhow::ensure!(fleet.shards >= 1, "fleet.shards must be at least 1");
            anyhow::ensure!(
                fleet.shard < fleet.shards,
                "fleet.shard {} is not below fleet.shards {}",
                fleet.shard,
                fleet.shards
            );
            anyhow::ensure!(
                !fleet.stream.is_empty()
                    && fleet
                        .stream
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "fleet.stream must be letters, digits and _ (a JetStream stream name)"
            );
            anyhow::ensure!(fleet.replicas >= 1, "fleet.replicas must be at least 1");
            anyhow::ensure!(fleet.max_bytes > 0, "fleet.max_bytes must be positive");
        }
        Ok(())
    }

    /// The checkpoint signing key's path.
    #[must_use]
    pub fn signing_key(&self) -> PathBuf {
        self.log.signing_key.clone().unwrap_or_else(|| {
            self.tls
                .key
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("checkpoint-signing.key")
        })
    }

    /// The log's origin line.
    #[must_use]
    pub fn origin(&self) -> String {
        self.log.origin.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host: String = host
                .trim()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '+')
                .collect();
            let host = if host.is_empty() { "server" } else { &host };
            match self.fleet.role {
                // Each shard keeps its own log: its own name.
                Some(FleetRole::Indexer) => format!("watchtower/{host}/shard-{}", self.fleet.shard),
                _ => format!("watchtower/{host}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_fleet_configs_load_and_name_their_roles() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/fleet");
        for (file, role) in [
            ("front-door.toml", FleetRole::FrontDoor),
            ("indexer.toml", FleetRole::Indexer),
            ("query.toml", FleetRole::Query),
        ] {
            let config = ServerConfig::load(&dir.join(file)).unwrap();
            assert_eq!(config.fleet.role, Some(role), "{file}");
            config.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let indexer = ServerConfig::load(&dir.join("indexer.toml")).unwrap();
        assert!(indexer.origin().ends_with("/shard-0"), "{}", indexer.origin());
        let mut query = ServerConfig::load(&dir.join("query.toml")).unwrap();
        query.fleet.indexers.pop();
        assert!(query.validate().is_err(), "one indexer per shard");
    }

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

    #[test]
    fn an_exporter_off_loopback_needs_a_token() {
        let open: ServerConfig = toml::from_str("[exporter]\nlisten = \"0.0.0.0:9470\"").unwrap();
        let error = open.validate().unwrap_err().to_string();
        assert!(error.contains("token_file"), "{error}");
        let guarded: ServerConfig =
            toml::from_str("[exporter]\nlisten = \"0.0.0.0:9470\"\ntoken_file = \"/etc/wt/token\"").unwrap();
        guarded.validate().unwrap();
        let hook: ServerConfig = toml::from_str("[alerts]\nwebhook_url = \"ftp://x\"").unwrap();
        assert!(hook.validate().is_err());
        assert_eq!(
            ServerConfig::default().signing_key(),
            PathBuf::from("certs/checkpoint-signing.key")
        );
    }
}
