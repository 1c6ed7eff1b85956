//! Agent configuration: a TOML file with defaults for every field, overridden by
//! command-line flags, validated before anything is loaded.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Which exec/connect activity is shipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Logins, plus the execs and connects made inside login sessions (daemons' own
    /// activity is counted, not shipped).
    #[default]
    Sessions,
    /// Every exec and connect on the host.
    All,
}

impl Scope {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Scope::Sessions => "sessions",
            Scope::All => "all",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// This host's identity in events (default: the hostname).
    pub host_id: Option<String>,
    /// Where the agent keeps its state (sequence numbers).
    pub state_dir: PathBuf,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            host_id: None,
            state_dir: PathBuf::from("/var/lib/watchtower-agent"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureSection {
    pub scope: Scope,
    /// Size of the kernel ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Refuse to start without the kernel witness. When false (the default) an
    /// agent whose probes cannot load runs on the journal alone, degraded, and
    /// says so in every health record.
    pub required: bool,
    /// Where in bpffs the probes are kept while no agent runs (programs stay
    /// attached, ring buffers keep filling; the next agent resumes them). Removing
    /// the directory detaches them.
    pub pin_dir: PathBuf,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            scope: Scope::Sessions,
            ring_buffer_bytes: 16 * 1024 * 1024,
            required: false,
            pin_dir: PathBuf::from("/sys/fs/bpf/watchtower"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSection {
    /// Read the journal as the second witness (kernel-only mode when false or when
    /// the journal cannot be read).
    pub enabled: bool,
    /// Refuse to start when the journal cannot be read.
    pub required: bool,
    /// The journalctl program.
    pub journalctl: PathBuf,
    /// How long a login seen by one witness waits for the other before it is
    /// reported `kernel_only` or `journal_only` (seconds).
    pub window_secs: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            journalctl: PathBuf::from("journalctl"),
            window_secs: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// Seconds between health records (loss counters and state).
    pub interval_secs: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self { interval_secs: 60 }
    }
}

/// Where events are shipped: the central server, over gRPC with mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The server, `https://HOST:PORT`; unset: events are not shipped (--stdout only).
    pub address: Option<String>,
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// The CA that signed the server's certificate (and this agent's).
    pub ca: PathBuf,
    /// This host's certificate and key (default: certs/agents/<`host_id>.pem/.key`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Seconds between heartbeats (they carry the spool's state).
    pub heartbeat_secs: u64,
    /// The file holding the verifier key of the server's checkpoints (the
    /// server's `checkpoint-signing.pub`). Unset: the first key the server names
    /// is kept in `<state_dir>/log-witness.json` (trust on first use).
    pub checkpoint_key: Option<PathBuf>,
    /// Seconds between the agent's checks of the server's log (its signed
    /// checkpoint, consistency with the last one verified, the inclusion of this
    /// agent's receipts); 0: off.
    pub witness_interval_secs: u64,
    /// More servers (the other front doors of a fleet) to move to in turn when
    /// the current one cannot be reached or ends the stream before storing
    /// anything; what is not acknowledged stays in the spool either way.
    pub failover: Vec<String>,
    /// Where the log is proven to this agent, when not by `address`: in a fleet,
    /// a query node (front doors keep no log; their Acks say `receipts_later`).
    pub witness_url: Option<String>,
    /// The name the witness server's certificate must carry (default: `server_name`).
    pub witness_server_name: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            address: None,
            server_name: "localhost".into(),
            ca: PathBuf::from("certs/ca.pem"),
            cert: None,
            key: None,
            heartbeat_secs: 10,
            checkpoint_key: None,
            witness_interval_secs: 60,
            failover: Vec::new(),
            witness_url: None,
            witness_server_name: None,
        }
    }
}

/// The on-disk spool (in `<state_dir>/spool`) that keeps events until the server
/// has stored them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    /// Bytes on disk at most; beyond it new events are dropped and counted
    /// (`spool_full`) until the server acknowledges older ones.
    pub max_bytes: u64,
    /// Size of one segment file.
    pub segment_bytes: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub agent: AgentSection,
    pub capture: CaptureSection,
    pub journal: JournalSection,
    pub health: HealthSection,
    pub server: ServerSection,
    pub spool: SpoolSection,
}

/// The command-line flags that override the configuration file; `None`/`false`:
/// keep the file's value.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub scope: Option<Scope>,
    pub host_id: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub ring_buffer_bytes: Option<u32>,
    pub pin_dir: Option<PathBuf>,
    pub health_interval_secs: Option<u64>,
    pub no_journal: bool,
    pub journal_window_secs: Option<u64>,
    pub require_kernel: bool,
    /// The server, then the ones to fail over to.
    pub servers: Vec<String>,
    pub server_name: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub checkpoint_key: Option<PathBuf>,
    pub witness_interval_secs: Option<u64>,
    pub witness_url: Option<String>,
    pub witness_server_name: Option<String>,
    pub spool_max_bytes: Option<u64>,
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The effective configuration: the file (or the defaults), the flags over it,
    /// validated.
    pub fn load(path: Option<&Path>, flags: &Flags) -> anyhow::Result<Config> {
        let config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                Config::from_toml(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        let config = config.with_flags(flags);
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(config)
    }

    /// This configuration with the command-line flags laid over it.
    #[must_use]
    pub fn with_flags(mut self, flags: &Flags) -> Config {
        if let Some(scope) = flags.scope {
            self.capture.scope = scope;
        }
        if let Some(host) = &flags.host_id {
            self.agent.host_id = Some(host.clone());
        }
        if let Some(dir) = &flags.state_dir {
            self.agent.state_dir.clone_from(dir);
        }
        if let Some(bytes) = flags.ring_buffer_bytes {
            self.capture.ring_buffer_bytes = bytes;
        }
        if let Some(dir) = &flags.pin_dir {
            self.capture.pin_dir.clone_from(dir);
        }
        if let Some(secs) = flags.health_interval_secs {
            self.health.interval_secs = secs;
        }
        if flags.no_journal {
            self.journal.enabled = false;
            self.journal.required = false;
        }
        if let Some(secs) = flags.journal_window_secs {
            self.journal.window_secs = secs;
        }
        if flags.require_kernel {
            self.capture.required = true;
        }
        if let Some((first, failover)) = flags.servers.split_first() {
            self.server.address = Some(first.clone());
            self.server.failover = failover.to_vec();
        }
        if let Some(name) = &flags.server_name {
            self.server.server_name.clone_from(name);
        }
        if let Some(ca) = &flags.ca {
            self.server.ca.clone_from(ca);
        }
        if let Some(cert) = &flags.cert {
            self.server.cert = Some(cert.clone());
        }
        if let Some(key) = &flags.key {
            self.server.key = Some(key.clone());
        }
        if let Some(key) = &flags.checkpoint_key {
            self.server.checkpoint_key = Some(key.clone());
        }
        if let Some(secs) = flags.witness_interval_secs {
            self.server.witness_interval_secs = secs;
        }
        if let Some(url) = &flags.witness_url {
            self.server.witness_url = Some(url.clone());
        }
        if let Some(name) = &flags.witness_server_name {
            self.server.witness_server_name = Some(name.clone());
        }
        if let Some(bytes) = flags.spool_max_bytes {
            self.spool.max_bytes = bytes;
            self.spool.segment_bytes = self.spool.segment_bytes.min(bytes);
        }
        self
    }

    /// Reject settings that cannot work, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        let ring = self.capture.ring_buffer_bytes;
        if ring < 4096 || !ring.is_power_of_two() {
            return Err(format!(
                "capture.ring_buffer_bytes = {ring}: must be a power of two of at least 4096 (one page)"
            ));
        }
        if !(1..=3600).contains(&self.journal.window_secs) {
            return Err(format!(
                "journal.window_secs = {}: must be between 1 and 3600",
                self.journal.window_secs
            ));
        }
        if self.journal.required && !self.journal.enabled {
            return Err("journal.required = true needs journal.enabled = true".into());
        }
        if self.health.interval_secs == 0 {
            return Err("health.interval_secs must be at least 1".into());
        }
        if let Some(address) = self
            .server
            .address
            .iter()
            .chain(&self.server.failover)
            .find(|a| !a.starts_with("https://"))
        {
            return Err(format!(
                "server.address {address:?} must be https://HOST:PORT (mutual TLS only)"
            ));
        }
        if self.server.heartbeat_secs == 0 {
            return Err("server.heartbeat_secs must be at least 1".into());
        }
        if self.spool.segment_bytes < 4096 || self.spool.max_bytes < self.spool.segment_bytes {
            return Err(format!(
                "spool.segment_bytes = {} must be at least 4096 and at most spool.max_bytes = {}",
                self.spool.segment_bytes, self.spool.max_bytes
            ));
        }
        if let Some(host) = &self.agent.host_id
            && (host.is_empty()
                || host.len() > 253
                || host.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!(
                "agent.host_id {host:?} must be 1-253 characters without spaces"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_from_toml() {
        let config = Config::from_toml("[capture]\nscope = \"all\"\n").unwrap();
        assert_eq!(config.capture.scope, Scope::All);
        assert_eq!(config.capture.ring_buffer_bytes, 16 * 1024 * 1024);
        assert_eq!(config.health.interval_secs, 60);
        assert!(config.journal.enabled);
        assert_eq!(config.journal.window_secs, 10);
        assert!(config.validate().is_ok());
        let config = Config::from_toml("[journal]\nwindow_secs = 3\nenabled = false\n").unwrap();
        assert_eq!((config.journal.window_secs, config.journal.enabled), (3, false));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let err = Config::from_toml("[capture]\nscop = \"all\"\n").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let mut config = Config::default();
        config.capture.ring_buffer_bytes = 5000;
        assert!(config.validate().unwrap_err().contains("power of two"));
        config.capture.ring_buffer_bytes = 4096;
        config.health.interval_secs = 0;
        assert!(config.validate().is_err());
        config.health.interval_secs = 1;
        config.journal.window_secs = 0;
        assert!(config.validate().unwrap_err().contains("window_secs"));
        config.journal.window_secs = 1;
        config.server.address = Some("http://127.0.0.1:7443".into());
        assert!(config.validate().unwrap_err().contains("mutual TLS"));
        config.server.address = Some("https://127.0.0.1:7443".into());
        assert!(config.validate().is_ok());
        config.spool.max_bytes = 1000;
        assert!(config.validate().unwrap_err().contains("spool"));
    }
}
