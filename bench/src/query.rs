//! Query time: one host, one hour, on stores of 100k, 1M and 10M events (an index
//! must keep it flat), and against a full scan of the store.
//!
//! Every store holds the same 1,000 events of host `q-000` in the queried hour;
//! the rest are other hosts and other hours, so each query returns exactly 1,000.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use watchtower_model::EventFilter;
use watchtower_server::store::EventStore;

use crate::stats::Ratios;

const HOSTS: u64 = 100;
const TARGET_HOST: &str = "q-000";
/// Events of the target host inside the queried hour.
const IN_HOUR: u64 = 1_000;
/// The queried hour starts here (2026-01-01T12:00:00Z); the store spans 7 days after 2026-01-01.
const DAY0: u64 = 1_767_225_600_000_000_000;
const HOUR: u64 = 3_600_000_000_000;
const HOUR_START: u64 = DAY0 + 3 * 24 * HOUR + 12 * HOUR;
/// Stores are kept between runs under this layout version.
const LAYOUT: &str = "v1";

fn target_filter() -> EventFilter {
    EventFilter {
        host_id: TARGET_HOST.into(),
        from_unix_ns: HOUR_START,
        to_unix_ns: HOUR_START + HOUR,
        ..EventFilter::default()
    }
}

/// The store of `size` events, built once (kept in `work_dir` for later runs).
fn store_of(size: u64, work_dir: &Path) -> anyhow::Result<(PathBuf, f64)> {
    let dir = work_dir.join(format!("query-{size}-{LAYOUT}"));
    let done = dir.join("BUILT");
    if done.exists() {
        return Ok((dir, 0.0));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let start = Instant::now();
    let store = EventStore::open(&dir)?;
    // The target hour: IN_HOUR events of q-000, 3.6 s apart.
    let hour = crate::synth::execs(
        TARGET_HOST,
        "boot-q",
        1,
        IN_HOUR as usize,
        HOUR_START,
        HOUR / IN_HOUR,
    );
    store.append(TARGET_HOST, hour, HOUR_START, 0)?;
    // The rest: every host, spread over 7 days, never inside the target hour of q-000.
    let background = size - IN_HOUR;
    let per_host = background / HOSTS;
    let span = 7 * 24 * HOUR;
    for h in 0..HOSTS {
        let host = format!("q-{h:03}");
        let n = per_host + u64::from(h < background % HOSTS);
        let step = span / n.max(1);
        let first_seq = if h == 0 { IN_HOUR + 1 } else { 1 };
        let mut batch = Vec::with_capacity(10_000);
        for (seq, i) in (first_seq..).zip(0..n) {
            // An offset so hosts do not share timestamps.
            let mut time = DAY0 + i * step + h * 7_919;
            if h == 0 && (HOUR_START..HOUR_START + HOUR).contains(&time) {
                time += HOUR;
            }
            batch.push(crate::synth::exec(&host, "boot-q", seq, time));
            if batch.len() == 10_000 {
                store.append(&host, std::mem::take(&mut batch), time, 0)?;
            }
        }
        if !batch.is_empty() {
            store.append(&host, batch, DAY0 + span, 0)?;
        }
    }
    drop(store);
    std::fs::write(&done, format!("{size}\n"))?;
    Ok((dir, start.elapsed().as_secs_f64()))
}

/// Seconds for one indexed query of the target host-hour (mean over `repeat`).
fn indexed(store: &EventStore, repeat: u32) -> anyhow::Result<f64> {
    let filter = target_filter();
    let start = Instant::now();
    for _ in 0..repeat {
        // One page larger than the answer: all of it, and no next page.
        let (events, next) = store.query(&filter, IN_HOUR as usize + 1, &[])?;
        if events.len() as u64 != IN_HOUR || !next.is_empty() {
            bail!("the query returned {} events (want {IN_HOUR})", events.len());
        }
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(repeat))
}

fn full_scan(store: &EventStore) -> anyhow::Result<f64> {
    let start = Instant::now();
    let found = store.full_scan_count(&target_filter())?;
    if found != IN_HOUR {
        bail!("the full scan found {found} events (want {IN_HOUR})");
    }
    Ok(start.elapsed().as_secs_f64())
}

#[derive(Debug, Default, serde::Serialize)]
pub struct QueryResult {
    pub sizes: Vec<u64>,
    /// Seconds to build each store (0 when an earlier run's store was reused).
    pub build_secs: Vec<f64>,
    /// Per round: seconds per query on each store.
    pub query_secs: Vec<Vec<f64>>,
    pub full_scan_secs: Vec<f64>,
    pub vs_smallest: Vec<Ratios>,
    /// Indexed query / full scan, on the largest store the full scan ran on.
    pub vs_full_scan: Ratios,
    pub full_scan_size: u64,
}

pub fn run(
    sizes: &[u64],
    full_scan_size: u64,
    rounds: usize,
    work_dir: &Path,
) -> anyhow::Result<QueryResult> {
    let mut result = QueryResult {
        sizes: sizes.to_vec(),
        full_scan_size,
        vs_smallest: vec![Ratios::default(); sizes.len()],
        ..QueryResult::default()
    };
    let mut stores = Vec::new();
    for &size in sizes {
        let (dir, secs) = store_of(size, work_dir)?;
        eprintln!("query: store of {size} events ready ({secs:.0} s to build)");
        result.build_secs.push(secs);
        stores.push(EventStore::open(&dir)?);
    }
    let scan_index = sizes.iter().position(|&s| s == full_scan_size);
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut this = vec![0.0; sizes.len()];
        for i in order {
            indexed(&stores[i], 5)?; // warm the block cache as a repeated query would
            this[i] = indexed(&stores[i], 50)?;
        }
        for (i, secs) in this.iter().enumerate() {
            result.vs_smallest[i].push(*secs, this[0]);
        }
        if let Some(s) = scan_index {
            let scan = full_scan(&stores[s])?;
            result.full_scan_secs.push(scan);
            result.vs_full_scan.push(this[s], scan);
        }
        eprintln!("query round {round}: {this:?} s per query");
        result.query_secs.push(this);
    }
    Ok(result)
}
