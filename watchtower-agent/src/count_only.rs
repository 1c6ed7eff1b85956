//! `--count-only` (the benchmark arm): the probes attached, their records read,
//! decoded and counted by kind until the agent is stopped, then the counts as one
//! JSON line. No sessions, no journal, no output: what the probes alone cost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::stages::assembler::Input;
use crate::stages::reader::{self, ReaderStats};
use crate::witness;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let kernel = witness::start_kernel(config)?;
    let (tx, mut rx) = mpsc::channel::<Input>(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(ReaderStats::default());
    let reader = tokio::spawn(reader::read_rings(kernel.rings, tx, stats.clone(), stop_rx, None));
    let counter = tokio::spawn(async move {
        let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
        while let Some(input) = rx.recv().await {
            if let Input::Records(records) = input {
                for record in records {
                    *by_kind.entry(record.kind_name()).or_default() += 1;
                }
            }
        }
        by_kind
    });
    tracing::info!("counting only: probes attached, records are counted and dropped");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    if let Some(kept) = kernel.kept {
        kept.release();
    }
    drop(kernel.ebpf);
    let _ = stop_tx.send(true);
    reader.await??;
    let by_kind = counter.await?;
    let summary = serde_json::json!({
        "records": by_kind,
        "decode_errors": stats.decode_errors.load(Ordering::Relaxed),
        "lost": kernel.counters.lost(),
        "out_of_scope": kernel.counters.out_of_scope(),
    });
    println!("{summary}");
    Ok(())
}
