//! The server's counters: what it stored, dropped and refused, for Stats (and,
//! later, /metrics).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct ServerCounters {
    pub batches: AtomicU64,
    pub tls_failures: AtomicU64,
    pub subscribers: AtomicU64,
    pub retention_removed: AtomicU64,
    pub retention_cutoff: AtomicU64,
    /// Connections to the gRPC listener open now, and those of them in their TLS handshake.
    pub connections_open: AtomicU64,
    pub handshakes_open: AtomicU64,
    /// Connections closed before their handshake, by the cap they met.
    connections_refused: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Open ingest streams per host.
    connected: Mutex<HashMap<String, u32>>,
}

impl ServerCounters {
    pub fn reject(&self, reason: &'static str) {
        *self.rejected.lock().expect("counters").entry(reason).or_default() += 1;
    }

    pub fn refuse_connection(&self, reason: &'static str) {
        *self
            .connections_refused
            .lock()
            .expect("counters")
            .entry(reason)
            .or_default() += 1;
    }

    #[must_use]
    pub fn connections_refused(&self) -> BTreeMap<&'static str, u64> {
        self.connections_refused.lock().expect("counters").clone()
    }

    pub fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Relaxed);
    }

    #[must_use]
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.lock().expect("counters").clone()
    }

    pub fn connect(&self, host: &str) {
        *self
            .connected
            .lock()
            .expect("counters")
            .entry(host.to_owned())
            .or_default() += 1;
    }

    pub fn disconnect(&self, host: &str) {
        let mut connected = self.connected.lock().expect("counters");
        if let Some(n) = connected.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                connected.remove(host);
            }
        }
    }

    #[must_use]
    pub fn is_connected(&self, host: &str) -> bool {
        self.connected.lock().expect("counters").contains_key(host)
    }

    #[must_use]
    pub fn connected_hosts(&self) -> u64 {
        self.connected.lock().expect("counters").len() as u64
    }
}
