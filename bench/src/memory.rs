//! The agent's resident size: idle, and with its spool full (the server
//! unreachable while exec storms run in an ssh login until the spool drops).

use std::path::Path;
use std::time::Duration;

use watchtower_e2e::TempDir;

use crate::rig::{Rig, Storm};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    /// The spool's limit (`--spool-max-bytes`).
    pub spool_max_bytes: u64,
    /// Resident size after start, no session open, KiB.
    pub idle_rss_kib: u64,
    /// Resident size and its peak once the spool is full, KiB.
    pub full_rss_kib: u64,
    pub full_peak_kib: u64,
    /// Bytes of spool segments on disk at the end.
    pub spool_bytes: u64,
    /// Execs made in all.
    pub execs: u64,
}

/// `VmRSS` and `VmHWM` of `pid`, KiB.
fn resident_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Fill a spool of `spool_max_bytes` with exec storms of `storm` execs and read
/// the agent's resident size before and after.
pub fn run(rig: &mut Rig, spool_max_bytes: u64, storm: u64) -> anyhow::Result<Memory> {
    let state = TempDir::new("bench-memory-state");
    let limit = spool_max_bytes.to_string();
    // Port 1 on loopback: nothing listens, every connection is refused.
    let agent = rig.agent_to("https://127.0.0.1:1", &state.0, &["--spool-max-bytes", &limit])?;
    std::thread::sleep(Duration::from_secs(2));
    let (idle_rss_kib, _) = resident_kib(agent.pid());
    let spool = state.0.join("spool");
    let mut execs = 0;
    let mut last = 0;
    // Until the spool stops growing (full: new events are dropped and counted).
    for _ in 0..200 {
        execs += rig.storm(Storm::Exec, storm, 4)?.made;
        std::thread::sleep(Duration::from_millis(300));
        let now = dir_bytes(&spool);
        eprintln!("memory: spool {now} of {spool_max_bytes} bytes after {execs} execs");
        if now == last && now > spool_max_bytes / 2 {
            break;
        }
        last = now;
    }
    let (full_rss_kib, full_peak_kib) = resident_kib(agent.pid());
    agent.terminate()?;
    Ok(Memory {
        spool_max_bytes,
        idle_rss_kib,
        full_rss_kib,
        full_peak_kib,
        spool_bytes: dir_bytes(&spool),
        execs,
    })
}
