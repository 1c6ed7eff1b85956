//! The storms: a process that knows exactly how many execs or connects it made.
//! Run inside an ssh login so the agent's session scope covers it.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a storm did: printed as one JSON line by `watchtower-bench workload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormResult {
    pub kind: String,
    /// Operations that succeeded (execs of /bin/true that ran, connects accepted).
    pub made: u64,
    pub failed: u64,
    pub parallel: usize,
    pub secs: f64,
    /// The listener's port (connect storm), to find its connects in the store.
    pub port: u16,
}

impl StormResult {
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.made as f64 / self.secs
    }
}

/// Split `count` over `parallel` workers.
fn shares(count: u64, parallel: usize) -> Vec<u64> {
    let p = parallel.max(1) as u64;
    (0..p).map(|i| count / p + u64::from(i < count % p)).collect()
}

/// fork+exec of /bin/true `count` times from `parallel` threads, each waiting for its child.
#[must_use]
pub fn exec_storm(count: u64, parallel: usize) -> StormResult {
    let failed = AtomicU64::new(0);
    let made = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for share in shares(count, parallel) {
            let (failed, made) = (&failed, &made);
            scope.spawn(move || {
                for _ in 0..share {
                    match Command::new("/bin/true").status() {
                        Ok(status) if status.success() => made.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    StormResult {
        kind: "exec".into(),
        made: made.into_inner(),
        failed: failed.into_inner(),
        parallel,
        secs: start.elapsed().as_secs_f64(),
        port: 0,
    }
}

/// Close with a reset: no `TIME_WAIT` left behind by thousands of connects.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// `count` loopback connects from `parallel` threads to a listener of our own; a
/// connect counts as made when connect(2) succeeded (what the agent records). The
/// listener accepts and drops what reaches its queue until every client is done (a
/// connection whose final ACK the full accept queue dropped never reaches accept).
#[must_use]
pub fn connect_storm(count: u64, parallel: usize) -> StormResult {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    listener.set_nonblocking(true).expect("nonblocking listener");
    let address = listener.local_addr().expect("listener address");
    let failed = AtomicU64::new(0);
    let made = AtomicU64::new(0);
    let clients_done = std::sync::atomic::AtomicBool::new(false);
    let start = Instant::now();
    let secs = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut byte = [0u8; 1];
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(true);
                        let _ = stream.read(&mut byte);
                    }
                    Err(_) if clients_done.load(Ordering::Acquire) => return,
                    Err(_) => std::thread::sleep(std::time::Duration::from_micros(50)),
                }
            }
        });
        let clients: Vec<_> = shares(count, parallel)
            .into_iter()
            .map(|share| {
                let (failed, made) = (&failed, &made);
                scope.spawn(move || {
                    for _ in 0..share {
                        match TcpStream::connect(address) {
                            Ok(stream) => {
                                made.fetch_add(1, Ordering::Relaxed);
                                reset_on_close(&stream);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client");
        }
        let secs = start.elapsed().as_secs_f64();
        clients_done.store(true, Ordering::Release);
        secs
    });
    StormResult {
        kind: "connect".into(),
        made: made.into_inner(),
        failed: failed.into_inner(),
        parallel,
        secs,
        port: address.port(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(shares(5, 0), vec![5]);
    }

    #[test]
    fn storms_count_exactly() {
        let execs = exec_storm(20, 2);
        assert_eq!((execs.made, execs.failed), (20, 0));
        let connects = connect_storm(50, 3);
        assert_eq!((connects.made, connects.failed), (50, 0));
        assert_ne!(connects.port, 0);
    }
}
