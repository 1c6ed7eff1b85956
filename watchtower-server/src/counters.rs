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
    /// At an indexer: the streams front doors hold for each host (their link
    /// ids) and when each was last heard from, ns.
    relayed: Mutex<HashMap<String, Vec<(u64, u64)>>>,
    /// At an indexer: a relayed stream silent for longer is taken as gone (its
    /// front door died without saying so), ns.
    pub relayed_silence_ns: AtomicU64,
}

/// The relayed streams one host keeps at most (the oldest goes first).
const RELAYED_PER_HOST: usize = 8;

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

    /// A front door relayed a message of `host`'s stream `link` at `now_ns`
    /// (0: a front door that names no stream).
    pub fn relayed(&self, host: &str, link: u64, now_ns: u64) {
        if link == 0 {
            return;
        }
        let mut relayed = self.relayed.lock().expect("counters");
        let links = relayed.entry(host.to_owned()).or_default();
        links.retain(|(l, _)| *l != link);
        if links.len() == RELAYED_PER_HOST {
            links.remove(0);
        }
        links.push((link, now_ns));
    }

    /// A front door relayed the Hello of `host`'s new stream `link`: an agent
    /// keeps one stream, so the ones before it are over (their front door may
    /// have died without saying so).
    pub fn relayed_hello(&self, host: &str, link: u64, now_ns: u64) {
        if link == 0 {
            return;
        }
        self.relayed
            .lock()
            .expect("counters")
            .insert(host.to_owned(), vec![(link, now_ns)]);
    }

    /// The front door said `host`'s stream `link` ended.
    pub fn relayed_ended(&self, host: &str, link: u64) {
        let mut relayed = self.relayed.lock().expect("counters");
        if let Some(links) = relayed.get_mut(host) {
            links.retain(|(l, _)| *l != link);
            if links.is_empty() {
                relayed.remove(host);
            }
        }
    }

    /// Whether one of `links` was heard from within the silence limit.
    fn heard_lately(&self, links: &[(u64, u64)], now_ns: u64) -> bool {
        let silence = self.relayed_silence_ns.load(Relaxed);
        links
            .iter()
            .any(|(_, seen)| now_ns.saturating_sub(*seen) <= silence)
    }

    /// Whether `host`'s agent is connected: here, or (at an indexer) through a
    /// front door.
    #[must_use]
    pub fn is_connected(&self, host: &str) -> bool {
        self.connected.lock().expect("counters").contains_key(host)
            || self
                .relayed
                .lock()
                .expect("counters")
                .get(host)
                .is_some_and(|links| self.heard_lately(links, crate::now_unix_ns()))
    }

    #[must_use]
    pub fn connected_hosts(&self) -> u64 {
        let now = crate::now_unix_ns();
        let mut hosts: std::collections::HashSet<String> =
            self.connected.lock().expect("counters").keys().cloned().collect();
        for (host, links) in self.relayed.lock().expect("counters").iter() {
            if self.heard_lately(links, now) {
                hosts.insert(host.clone());
            }
        }
        hosts.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_stream_counts_until_it_ends_or_falls_silent() {
        let counters = ServerCounters::default();
        counters.relayed_silence_ns.store(10_000_000_000, Relaxed);
        let now = crate::now_unix_ns();
        counters.relayed("web-1", 7, now);
        assert!(counters.is_connected("web-1"));
        assert_eq!(counters.connected_hosts(), 1);
        // The agent moved to another front door; the first one's goodbye comes late.
        counters.relayed("web-1", 9, now);
        counters.relayed_ended("web-1", 7);
        assert!(
            counters.is_connected("web-1"),
            "still through the other front door"
        );
        counters.relayed_ended("web-1", 9);
        assert!(!counters.is_connected("web-1"));
        // A front door that died says nothing: its stream falls silent.
        counters.relayed("web-2", 1, now - 60_000_000_000);
        assert!(!counters.is_connected("web-2"));
        assert_eq!(counters.connected_hosts(), 0);
        // One host keeps a bounded number of streams.
        for link in 0..100 {
            counters.relayed("web-3", link, now);
        }
        assert_eq!(counters.relayed.lock().unwrap()["web-3"].len(), RELAYED_PER_HOST);
        // A new stream's Hello: the agent left its earlier front door, which
        // died without a goodbye.
        counters.relayed("web-4", 1, now);
        counters.relayed_hello("web-4", 2, now);
        counters.relayed_ended("web-4", 2);
        assert!(!counters.is_connected("web-4"));
    }
}
