//! The agent's stages, connected by bounded channels:
//! ring buffer reader (+ decoder) -> session assembler (+ stamping) -> output.
//!
//! A slow output back-pressures the assembler and the reader; the ring buffer
//! then fills and the kernel counts what it cannot take: loss is never silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{MapData, RingBuf};
use tokio::io::{AsyncWriteExt as _, unix::AsyncFd};
use tokio::sync::{mpsc, watch};

use crate::assemble::{Assembler, ProcFs};
use crate::clock;
use crate::decode::{KernelRecord, decode};
use crate::event::{AgentHealth, Event, EventBody};
use crate::probes::KernelCounters;
use crate::seq::SeqAllocator;

/// Messages into the assembler stage.
pub enum Input {
    Records(Vec<KernelRecord>),
    /// Emit a health record (`start`, `periodic`, `shutdown`).
    Health(&'static str),
    /// Sessions found running at start-up.
    Adopt(Vec<crate::adopt::AdoptedSession>),
}

/// Counters of the reader stage.
#[derive(Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
}

const BATCH: usize = 256;

/// Read the ring buffer until `stop` turns true; then drain what is left, ask
/// for the final health record and return (closing the channel).
pub async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Input>,
    stats: Arc<ReaderStats>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring
    // buffer, and as_raw_fd always returns that same descriptor.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)? };
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &tx, &stats).await;
                guard.clear_ready();
                false
            }
            _ = stop.changed() => true,
        };
        if stopping {
            drain(fd.get_mut(), &tx, &stats).await;
            let _ = tx.send(Input::Health("shutdown")).await;
            return Ok(());
        }
    }
}

async fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Input>, stats: &ReaderStats) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(item) = ring.next() else { break };
        stats.records.fetch_add(1, Ordering::Relaxed);
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

/// Gives each event its identity and wall-clock time.
pub struct Stamper {
    pub host_id: String,
    pub boot_id: String,
    pub seq: SeqAllocator,
}

impl Stamper {
    pub fn stamp(&mut self, ktime_ns: u64, body: EventBody) -> std::io::Result<Event> {
        let unix_ns = clock::boot_to_unix_ns(ktime_ns);
        Ok(Event {
            host_id: self.host_id.clone(),
            boot_id: self.boot_id.clone(),
            seq: self.seq.next()?,
            time: clock::rfc3339(unix_ns),
            time_unix_ns: unix_ns,
            body,
        })
    }
}

/// Static facts reported in every health record.
pub struct HealthContext {
    pub scope: &'static str,
    pub probes: Vec<String>,
}

/// The assembler stage: kernel records in, stamped events out.
pub async fn assemble(
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Event>,
    mut stamper: Stamper,
    counters: KernelCounters,
    reader: Arc<ReaderStats>,
    context: HealthContext,
) -> anyhow::Result<()> {
    let mut assembler = Assembler::new(ProcFs);
    let mut out = Vec::new();
    let resumed_after = stamper.seq.resumed_after();
    while let Some(input) = rx.recv().await {
        match input {
            Input::Records(records) => {
                for record in records {
                    assembler.push(record, &mut out);
                }
            }
            Input::Adopt(sessions) => {
                let now = clock::boottime_ns();
                for session in &sessions {
                    assembler.adopt(session, now, &mut out);
                }
            }
            Input::Health(reason) => {
                let assembler_counters = assembler.counters();
                let health = AgentHealth {
                    reason,
                    mode: "kernel",
                    scope: context.scope,
                    probes: if reason == "start" {
                        context.probes.clone()
                    } else {
                        Vec::new()
                    },
                    lost: counters.lost(),
                    out_of_scope: counters.out_of_scope(),
                    decode_errors: reader.decode_errors.load(Ordering::Relaxed),
                    records: reader.records.load(Ordering::Relaxed),
                    pam_orphans: assembler_counters.pam_orphans,
                    open_sessions: assembler.open_sessions() as u64,
                    resumed_after_seq: if reason == "start" { resumed_after } else { None },
                };
                out.push((clock::boottime_ns(), EventBody::AgentHealth(health)));
            }
        }
        for (ktime, body) in out.drain(..) {
            let event = stamper.stamp(ktime, body)?;
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The output stage: one JSON object per line on stdout, flushed whenever the
/// stage has caught up.
pub async fn write_stdout(mut rx: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut line = Vec::with_capacity(1024);
    while let Some(event) = rx.recv().await {
        let mut next = Some(event);
        while let Some(event) = next {
            line.clear();
            serde_json::to_writer(&mut line, &event)?;
            line.push(b'\n');
            stdout.write_all(&line).await?;
            next = rx.try_recv().ok();
        }
        stdout.flush().await?;
    }
    stdout.flush().await?;
    Ok(())
}
