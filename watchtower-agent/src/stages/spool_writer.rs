//! The spool writer stage (with a server): makes each event durable in the
//! on-disk [`Spool`] before the sender ([`super::sender`]) delivers it, and
//! optionally echoes it as a JSON line (`--stdout`).

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use prost::Message as _;
use tokio::sync::{Notify, mpsc};

use crate::config::Config;
use crate::event::{Event, SpoolHealth};
use crate::spool::{self, Spool};

/// The spool as the writer and the sender share it, with delivery counters.
pub struct SharedSpool {
    pub spool: Mutex<Spool>,
    /// Wakes the sender when events were added.
    pub added: Notify,
    pub reconnects: std::sync::atomic::AtomicU64,
}

impl SharedSpool {
    pub fn new(spool: Spool) -> Arc<SharedSpool> {
        Arc::new(SharedSpool {
            spool: Mutex::new(spool),
            added: Notify::new(),
            reconnects: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The spool's state for health records and heartbeats.
    pub fn health(&self) -> SpoolHealth {
        let spool = self.spool.lock().expect("spool lock");
        SpoolHealth {
            bytes: spool.bytes(),
            max_bytes: spool.max_bytes(),
            pending: spool.pending(),
            dropped: spool.dropped().clone(),
            corrupt_records: spool.corrupt_records(),
            acked: spool.acked(),
            reconnects: self.reconnects.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Open the spool in `<state_dir>/spool`, saying what an earlier run left in it.
pub fn open(config: &Config) -> anyhow::Result<Arc<SharedSpool>> {
    let dir = config.agent.state_dir.join("spool");
    let (spool, report) = spool::Spool::open(spool::SpoolConfig {
        dir: dir.clone(),
        max_bytes: config.spool.max_bytes,
        segment_bytes: config.spool.segment_bytes,
    })
    .with_context(|| format!("opening the spool in {}", dir.display()))?;
    if report.corrupt_records > 0 {
        tracing::error!(
            corrupt = report.corrupt_records,
            truncated_bytes = report.truncated_bytes,
            "the spool had a torn or corrupt tail (a crash mid-write): cut and counted"
        );
    }
    if report.pending > 0 {
        tracing::info!(
            pending = report.pending,
            "events from an earlier run wait in the spool: sending them first"
        );
    }
    Ok(SharedSpool::new(spool))
}

/// Most events in one spool append (one fsync).
const GROUP_MAX: usize = 4096;

/// Stage: make each event durable in the spool (one fsync per group of events
/// that arrived together), optionally echo it as a JSON line, then wake the sender.
pub async fn run(
    mut rx: mpsc::Receiver<Event>,
    shared: Arc<SharedSpool>,
    echo_stdout: bool,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        // What came together, and what the stage before is still handing over: a
        // batch of kernel records arrives as many events in a row.
        let mut yielded = false;
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(event) => {
                    group.push(event);
                    yielded = false;
                }
                Err(_) if !yielded => {
                    tokio::task::yield_now().await;
                    yielded = true;
                }
                Err(_) => break,
            }
        }
        let records: Vec<Vec<u8>> = group
            .iter()
            .map(|event| crate::wire::to_wire(event).encode_to_vec())
            .collect();
        let writer = shared.clone();
        let appended =
            tokio::task::spawn_blocking(move || writer.spool.lock().expect("spool lock").append(&records))
                .await?;
        match appended {
            Ok(appended) if appended.dropped_full > 0 => {
                tracing::error!(
                    dropped = appended.dropped_full,
                    "spool full: events dropped (counted as spool_full); the server has been unreachable too long"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!("spool write failed, events dropped (counted as write_error): {e}"),
        }
        shared.added.notify_one();
        if echo_stdout {
            let mut line = Vec::with_capacity(1024);
            for event in &group {
                super::stdout::json_line(event, &mut line)?;
                stdout.write_all(&line).await?;
            }
            stdout.flush().await?;
        }
    }
    Ok(())
}
