//! The reader stage: reads the kernel's two ring buffers (a login's own records
//! in `LOGINS`, exec, connect, fork and exit records in `EVENTS`, so that a flood
//! of the latter cannot drop a login), decodes each record ([`crate::decode`], in
//! this task: a record is decoded while the ring buffer still holds it, so it is
//! never copied), puts the records of both back in the order they happened and
//! sends them, in batches, to the assembler. With `--record-raw` every record is
//! also written to a file ([`crate::raw_file`]).
//!
//! The order matters to the assembler: a session's `open_session` must come before
//! the first exec of its shell, and its root's exit after its last. Each wake-up
//! reads `LOGINS` first, then `EVENTS`, and forwards the records stamped up to the
//! moment it began, in time order; a later record waits for the next wake-up, so a
//! login record written while `EVENTS` was being read still comes first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::decode::{KernelRecord, decode};
use crate::probes::Rings;
use crate::raw_file::RawRecorder;
use crate::stages::assembler::Input;

/// Counters of the reader stage.
#[derive(Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
}

const BATCH: usize = 256;

/// At most this many records are taken from one ring in one read, so a storm that
/// outpaces the reader holds a bounded number in memory; the rest wait in the ring
/// (and its loss counter) for the next read, which follows after [`GATHER`].
const MAX_PER_READ: usize = 16_384;

/// How long the reader lets records gather after a ring buffer woke it. The kernel
/// wakes a reader only when it finds the ring empty, so while records gather no
/// further wake-ups happen: a storm costs one wake-up, one batch through the stages
/// and one spool fsync per window instead of one per record. It delays an event by at
/// most this much (twice, for a record stamped while its wake-up was reading).
const GATHER: std::time::Duration = std::time::Duration::from_millis(4);

/// Read both ring buffers until `stop` turns true; then drain what is left and
/// return.
pub async fn read_rings(
    rings: Rings,
    tx: mpsc::Sender<Input>,
    stats: Arc<ReaderStats>,
    mut stop: watch::Receiver<bool>,
    mut raw: Option<RawRecorder>,
) -> anyhow::Result<()> {
    // SAFETY: each ring buffer owns its map fd for as long as its AsyncFd owns it,
    // and as_raw_fd always returns that same descriptor.
    let mut events = unsafe { AsyncFd::register_with_interest(rings.events, tokio::io::Interest::READABLE)? };
    // SAFETY: as above.
    let mut logins = unsafe { AsyncFd::register_with_interest(rings.logins, tokio::io::Interest::READABLE)? };
    let mut order = InOrder::default();
    loop {
        let holding = !order.held.is_empty() || order.unread;
        let ready = tokio::select! {
            guard = events.readable_mut() => {
                let mut guard = guard?;
                tokio::time::sleep(GATHER).await;
                // Cleared before reading: a record that arrives meanwhile wakes us again.
                guard.clear_ready();
                order.read(logins.get_mut(), guard.get_inner_mut(), &stats, raw.as_mut(), false)
            }
            guard = logins.readable_mut() => {
                let mut guard = guard?;
                tokio::time::sleep(GATHER).await;
                guard.clear_ready();
                order.read(guard.get_inner_mut(), events.get_mut(), &stats, raw.as_mut(), false)
            }
            () = tokio::time::sleep(GATHER), if holding => {
                order.read(logins.get_mut(), events.get_mut(), &stats, raw.as_mut(), false)
            }
            _ = stop.changed() => {
                let rest = order.read(logins.get_mut(), events.get_mut(), &stats, raw.as_mut(), true);
                let _ = forward(rest, &tx).await;
                if let Some(raw) = raw.as_mut() {
                    raw.flush();
                }
                return Ok(());
            }
        };
        if forward(ready, &tx).await.is_err() {
            return Ok(());
        }
    }
}

/// Send records to the assembler in batches; `Err` once it is gone.
async fn forward(records: Vec<KernelRecord>, tx: &mpsc::Sender<Input>) -> Result<(), ()> {
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let batch: Vec<KernelRecord> = records.by_ref().take(BATCH).collect();
        tx.send(Input::Records(batch)).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Records of both rings put back in time order, with those stamped after the
/// current read began held for the next.
#[derive(Default)]
struct InOrder {
    held: Vec<KernelRecord>,
    /// A ring still held records when the last read stopped at [`MAX_PER_READ`].
    unread: bool,
}

impl InOrder {
    /// Read `logins`, then `events`; the records up to the moment the read began
    /// (all of them when `all`), in time order.
    fn read(
        &mut self,
        logins: &mut RingBuf<MapData>,
        events: &mut RingBuf<MapData>,
        stats: &ReaderStats,
        mut raw: Option<&mut RawRecorder>,
        all: bool,
    ) -> Vec<KernelRecord> {
        let began = clock::boottime_ns();
        let mut records = std::mem::take(&mut self.held);
        let logins_left = read_ring(logins, &mut records, stats, raw.as_deref_mut(), all);
        let events_left = read_ring(events, &mut records, stats, raw, all);
        self.unread = logins_left.is_some() || events_left.is_some();
        // A ring read only in part may still hold records stamped before its last one
        // read: those wait with the rest.
        let until = [Some(began), logins_left, events_left]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(began);
        let (ready, held) = split_at_time(records, if all { u64::MAX } else { until });
        self.held = held;
        ready
    }
}

/// Sort `records` by the time they were stamped (stable: one ring's order is kept
/// among equal stamps) and split them at `until`: those stamped up to it, then the
/// later ones.
fn split_at_time(mut records: Vec<KernelRecord>, until: u64) -> (Vec<KernelRecord>, Vec<KernelRecord>) {
    records.sort_by_key(KernelRecord::ktime_ns);
    let ready = records.partition_point(|r| r.ktime_ns() <= until);
    let later = records.split_off(ready);
    (records, later)
}

/// Decode the records of `ring` into `records`: all of them when `all`, else at
/// most [`MAX_PER_READ`]. When it stopped there, the stamp of the last one read.
fn read_ring(
    ring: &mut RingBuf<MapData>,
    records: &mut Vec<KernelRecord>,
    stats: &ReaderStats,
    mut raw: Option<&mut RawRecorder>,
    all: bool,
) -> Option<u64> {
    let mut taken = 0;
    let mut last = 0;
    loop {
        if !all && taken == MAX_PER_READ {
            return Some(last);
        }
        let item = ring.next()?;
        taken += 1;
        stats.records.fetch_add(1, Ordering::Relaxed);
        if let Some(raw) = raw.as_deref_mut() {
            raw.write(&item);
        }
        match decode(&item) {
            Ok(record) => {
                last = record.ktime_ns();
                records.push(record);
            }
            Err(error) => {
                let n = stats.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(%error, rejected = n, "kernel record rejected");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Task;

    fn fork_at(ktime_ns: u64, child: u32) -> KernelRecord {
        KernelRecord::Fork {
            task: Task {
                ktime_ns,
                ..Task::default()
            },
            child_tid: child,
        }
    }

    fn stamps(records: &[KernelRecord]) -> Vec<(u64, u32)> {
        records
            .iter()
            .map(|r| match r {
                KernelRecord::Fork { task, child_tid } => (task.ktime_ns, *child_tid),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn records_of_both_rings_come_in_time_order_and_later_ones_wait() {
        // logins read first (30), then events (10, 20, 40, 30).
        let records = vec![
            fork_at(30, 1),
            fork_at(10, 2),
            fork_at(20, 3),
            fork_at(40, 4),
            fork_at(30, 5),
        ];
        let (ready, held) = split_at_time(records, 30);
        assert_eq!(stamps(&ready), [(10, 2), (20, 3), (30, 1), (30, 5)]);
        assert_eq!(stamps(&held), [(40, 4)]);
    }

    #[test]
    fn everything_goes_when_all_is_asked() {
        let (ready, held) = split_at_time(vec![fork_at(u64::MAX - 1, 1), fork_at(5, 2)], u64::MAX);
        assert_eq!(stamps(&ready), [(5, 2), (u64::MAX - 1, 1)]);
        assert!(held.is_empty());
    }
}
