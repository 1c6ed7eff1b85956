//! Admission to the gRPC listener: how many connections may be open, how many may
//! be in their TLS handshake at once (in all and from one source), and how long a
//! handshake may take.
//!
//! A connection over a cap is closed at once, before any TLS work, and counted by
//! reason (`watchtower_connections_refused_total`): a flood holds no more file
//! descriptors than its share, and a source that opens connections without
//! finishing handshakes fills only its own share, so agents from other addresses
//! still connect. IPv6 sources are grouped by their /64 (what one host is usually
//! given). The connection cap is also held under the process's open-file limit
//! (raised to its hard limit at start), so `accept` never fails for want of one.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::counters::ServerCounters;

/// File descriptors kept back from connections: `RocksDB`'s files, the journal of
/// the log, listeners, the deny list, the exporter's clients (or half the limit,
/// when it is lower than twice this).
pub const RESERVED_FILES: u64 = 512;

/// The caps, from the `[server.connections]` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Connections open at once (handshaking or established).
    pub max_connections: usize,
    /// TLS handshakes in progress at once, from all sources.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one address (an IPv6 /64).
    pub max_handshakes_per_source: usize,
    /// Connections open at once from one address (an IPv6 /64): what one key's
    /// holder may take of `max_connections`. Raise it for a fleet behind one NAT.
    pub max_connections_per_source: usize,
    /// How long a client may take to finish its TLS handshake.
    pub handshake_timeout_secs: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_handshakes: 512,
            max_handshakes_per_source: 32,
            max_connections_per_source: 1024,
            handshake_timeout_secs: 10,
        }
    }
}

impl ConnectionLimits {
    #[must_use]
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Every cap at least one.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("max_connections", self.max_connections),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_source", self.max_handshakes_per_source),
            ("max_connections_per_source", self.max_connections_per_source),
        ] {
            if value == 0 {
                return Err(format!("server.connections.{name} must be at least 1"));
            }
        }
        if self.handshake_timeout_secs == 0 {
            return Err("server.connections.handshake_timeout_secs must be at least 1".to_owned());
        }
        Ok(())
    }

    /// These limits with `max_connections` held under `open_files`, the process's
    /// open-file limit, less [`RESERVED_FILES`] (or half of it, when smaller).
    #[must_use]
    pub fn within_open_files(mut self, open_files: u64) -> Self {
        let reserved = RESERVED_FILES.min(open_files / 2);
        let room = usize::try_from(open_files - reserved)
            .unwrap_or(usize::MAX)
            .max(1);
        self.max_connections = self.max_connections.min(room);
        self.max_handshakes = self.max_handshakes.min(self.max_connections);
        self
    }
}

/// Why a connection was closed before its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// [`ConnectionLimits::max_connections`] are open.
    Connections,
    /// [`ConnectionLimits::max_handshakes`] are in progress.
    Handshakes,
    /// [`ConnectionLimits::max_handshakes_per_source`] are in progress from its source.
    SourceHandshakes,
    /// [`ConnectionLimits::max_connections_per_source`] are open from its source.
    SourceConnections,
}

impl Refusal {
    /// The metric label (a fixed set).
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Connections => "connections_full",
            Self::Handshakes => "handshakes_full",
            Self::SourceHandshakes => "source_handshakes_full",
            Self::SourceConnections => "source_connections_full",
        }
    }
}

/// The caps in force and what holds them.
pub struct Admission {
    limits: ConnectionLimits,
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    per_source: Mutex<HashMap<IpAddr, SourceLoad>>,
    counters: Arc<ServerCounters>,
}

/// What one source holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SourceLoad {
    handshakes: usize,
    connections: usize,
}

/// The group a source address is capped in: IPv4 whole, IPv6 by its /64.
fn source_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
    }
}

impl Admission {
    #[must_use]
    pub fn new(limits: ConnectionLimits, counters: Arc<ServerCounters>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            per_source: Mutex::new(HashMap::new()),
            counters,
        })
    }

    #[must_use]
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Admit a connection from `peer` to its handshake, or say which cap it meets
    /// (counted). Nothing waits: a refused connection is closed by its caller.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let refused = |refusal: Refusal| {
            self.counters.refuse_connection(refusal.reason());
            refusal
        };
        let source = source_of(peer);
        {
            let mut per_source = self.per_source.lock().expect("admission");
            let held = per_source.entry(source).or_default();
            let refusal = if held.handshakes >= self.limits.max_handshakes_per_source {
                Some(Refusal::SourceHandshakes)
            } else if held.connections >= self.limits.max_connections_per_source {
                Some(Refusal::SourceConnections)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                if *held == SourceLoad::default() {
                    per_source.remove(&source);
                }
                return Err(refused(refusal));
            }
            held.handshakes += 1;
            held.connections += 1;
        }
        let source_connection = SourceShare {
            admission: self.clone(),
            source,
            count: |held| &mut held.connections,
        };
        let handshake = SourceShare {
            admission: self.clone(),
            source,
            count: |held| &mut held.handshakes,
        };
        let Ok(global) = self.handshakes.clone().try_acquire_owned() else {
            return Err(refused(Refusal::Handshakes));
        };
        let Ok(connection) = self.connections.clone().try_acquire_owned() else {
            return Err(refused(Refusal::Connections));
        };
        self.counters.handshakes_open.fetch_add(1, Relaxed);
        self.counters.connections_open.fetch_add(1, Relaxed);
        Ok(Admitted {
            handshake: Some(Handshake {
                _global: global,
                _source: handshake,
                counters: self.counters.clone(),
            }),
            connection: Connection {
                _permit: connection,
                _source: source_connection,
                counters: self.counters.clone(),
            },
        })
    }

    fn release_source(&self, source: IpAddr, release: impl FnOnce(&mut SourceLoad)) {
        let mut per_source = self.per_source.lock().expect("admission");
        if let Some(held) = per_source.get_mut(&source) {
            release(held);
            if *held == SourceLoad::default() {
                per_source.remove(&source);
            }
        }
    }
}

/// One handshake's or one connection's share of its source's caps, given back
/// when dropped.
struct SourceShare {
    admission: Arc<Admission>,
    source: IpAddr,
    /// Which count of the source's load it holds.
    count: fn(&mut SourceLoad) -> &mut usize,
}

impl Drop for SourceShare {
    fn drop(&mut self) {
        let count = self.count;
        self.admission
            .release_source(self.source, |held| *count(held) -= 1);
    }
}

/// A handshake in progress: both its caps, given back when it ends either way.
struct Handshake {
    _global: OwnedSemaphorePermit,
    _source: SourceShare,
    counters: Arc<ServerCounters>,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.counters.handshakes_open.fetch_sub(1, Relaxed);
    }
}

/// An open connection's place under the connection cap.
struct Connection {
    _permit: OwnedSemaphorePermit,
    _source: SourceShare,
    counters: Arc<ServerCounters>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters.connections_open.fetch_sub(1, Relaxed);
    }
}

/// A connection admitted to its handshake.
pub struct Admitted {
    handshake: Option<Handshake>,
    connection: Connection,
}

impl Admitted {
    /// The handshake is over: its caps are given back, the connection's is kept
    /// by the stream for as long as it is open.
    #[must_use]
    pub fn established(mut self, stream: TlsStream<TcpStream>) -> AdmittedStream {
        self.handshake = None;
        AdmittedStream {
            inner: stream,
            _connection: self.connection,
        }
    }
}

/// A TLS connection holding its place under the connection cap until it closes.
pub struct AdmittedStream {
    inner: TlsStream<TcpStream>,
    _connection: Connection,
}

impl AsyncRead for AdmittedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The same connection facts as the TLS stream itself (the peer's address and
/// certificates), so `Request::peer_certs` works unchanged.
impl Connected for AdmittedStream {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Raise the soft open-file limit to the hard one; returns the limit in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %io::Error::last_os_error(), soft = limit.rlim_cur, hard = limit.rlim_max, "cannot raise the open-file limit");
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_source: usize, handshakes: usize, connections: usize) -> Arc<Admission> {
        Admission::new(
            ConnectionLimits {
                max_connections: connections,
                max_handshakes: handshakes,
                max_handshakes_per_source: per_source,
                max_connections_per_source: 3,
                handshake_timeout_secs: 10,
            },
            Arc::new(ServerCounters::default()),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_source_fills_only_its_share_of_handshakes() {
        let admission = admission(2, 10, 10);
        let flood: Vec<_> = (0..2)
            .map(|_| admission.admit(ip("127.0.0.2")).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip("127.0.0.2")).err(),
            Some(Refusal::SourceHandshakes)
        );
        let agent = admission.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(admission.counters.handshakes_open.load(Relaxed), 3);
        assert_eq!(
            admission
                .counters
                .connections_refused()
                .get("source_handshakes_full"),
            Some(&1)
        );
        drop(flood);
        admission.admit(ip("127.0.0.2")).unwrap();
        drop(agent);
        assert!(admission.per_source.lock().unwrap().is_empty());
        assert_eq!(admission.counters.connections_open.load(Relaxed), 0);
    }

    #[test]
    fn one_source_holds_only_its_share_of_connections() {
        let admission = admission(10, 10, 10);
        let mut open = Vec::new();
        for _ in 0..3 {
            let admitted = admission.admit(ip("10.0.0.1")).unwrap();
            open.push(admitted.connection);
        }
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refusal::SourceConnections)
        );
        admission.admit(ip("10.0.0.2")).unwrap();
        open.pop();
        let _again = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission
                .counters
                .connections_refused()
                .get("source_connections_full"),
            Some(&1)
        );
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        let admission = admission(1, 10, 10);
        let _held = admission.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::SourceHandshakes)
        );
        admission.admit(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn the_total_caps_refuse_and_give_back_the_source_share() {
        let admission = admission(10, 2, 3);
        let a = admission.admit(ip("10.0.0.1")).unwrap();
        let b = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.3")).err(), Some(Refusal::Handshakes));
        // The refused one's share of its source was given back.
        assert!(!admission.per_source.lock().unwrap().contains_key(&ip("10.0.0.3")));
        // A finished handshake frees its handshake place, not its connection place.
        drop(a.handshake);
        let _c = admission.admit(ip("10.0.0.3")).unwrap();
        drop(b.handshake);
        assert_eq!(admission.admit(ip("10.0.0.4")).err(), Some(Refusal::Connections));
        let refused = admission.counters.connections_refused();
        assert_eq!(refused.get("handshakes_full"), Some(&1));
        assert_eq!(refused.get("connections_full"), Some(&1));
    }

    #[test]
    fn connections_stay_under_the_open_file_limit() {
        let limits = ConnectionLimits::default().within_open_files(1024);
        assert_eq!(limits.max_connections, 512);
        assert_eq!(limits.max_handshakes, 512);
        let small = ConnectionLimits::default().within_open_files(256);
        assert_eq!((small.max_connections, small.max_handshakes), (128, 128));
        let none = ConnectionLimits::default().within_open_files(0);
        assert_eq!((none.max_connections, none.max_handshakes), (1, 1));
        let roomy = ConnectionLimits::default().within_open_files(1 << 20);
        assert_eq!(roomy, ConnectionLimits::default());
        assert!(ConnectionLimits::default().validate().is_ok());
        let zero = ConnectionLimits {
            max_handshakes_per_source: 0,
            ..ConnectionLimits::default()
        };
        assert!(zero.validate().unwrap_err().contains("max_handshakes_per_source"));
    }
}
