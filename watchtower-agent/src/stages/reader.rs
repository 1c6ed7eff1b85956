//! The reader stage: reads the kernel's ring buffer, decodes each record
//! ([`crate::decode`], in this task: a record is decoded while the ring buffer still
//! holds it, so it is never copied) and sends them, in batches, to the assembler.
//! With `--record-raw` every record is also written to a file ([`crate::raw_file`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::decode::decode;
use crate::raw_file::RawRecorder;
use crate::stages::assembler::Input;

/// Counters of the reader stage.
#[derive(Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
}

const BATCH: usize = 256;

/// How long the reader lets records gather after the ring buffer woke it. The kernel
/// wakes a reader only when it finds the ring empty, so while records gather no
/// further wake-ups happen: a storm costs one wake-up, one batch through the stages
/// and one spool fsync per window instead of one per record. It delays an event by at
/// most this much.
const GATHER: std::time::Duration = std::time::Duration::from_millis(4);

/// Read the ring buffer until `stop` turns true; then drain what is left and
/// return.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Input>,
    stats: Arc<ReaderStats>,
    mut stop: watch::Receiver<bool>,
    mut raw: Option<RawRecorder>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring
    // buffer, and as_raw_fd always returns that same descriptor.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)? };
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                tokio::time::sleep(GATHER).await;
                drain(guard.get_inner_mut(), &tx, &stats, raw.as_mut()).await;
                guard.clear_ready();
                false
            }
            _ = stop.changed() => true,
        };
        if stopping {
            drain(fd.get_mut(), &tx, &stats, raw.as_mut()).await;
            if let Some(raw) = raw.as_mut() {
                raw.flush();
            }
            return Ok(());
        }
    }
}

async fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Input>,
    stats: &ReaderStats,
    mut raw: Option<&mut RawRecorder>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(item) = ring.next() else { break };
        stats.records.fetch_add(1, Ordering::Relaxed);
        if let Some(raw) = raw.as_deref_mut() {
            raw.write(&item);
        }
        match decode(&item) {
            Ok(record) => batch.push(record),
            Err(error) => {
                let n = stats.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(%error, rejected = n, "kernel record rejected");
                }
            }
        }
        drop(item);
        if batch.len() >= BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(Input::Records(full)).await.is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Input::Records(batch)).await;
    }
}
