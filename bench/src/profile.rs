//! Where the time goes: a CPU profile (`perf record -e cpu-clock -g`) of the agent
//! and of the server during one full-pipeline storm, reduced to the symbols with
//! the largest self time and the largest inclusive time.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::rig::{Arm, Rig, Storm};

/// One symbol's share of a process's samples.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub percent: f64,
    pub symbol: String,
}

/// The top entries of one process's profile.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Top {
    pub process: String,
    pub samples: u64,
    /// Time in the symbol itself.
    pub self_time: Vec<Entry>,
    /// Time in the symbol and everything it calls (only user-space symbols of ours
    /// and of our libraries, so the top is not just `main` and the syscall entry).
    pub inclusive: Vec<Entry>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub storm: String,
    pub count: u64,
    pub rate: f64,
    pub tops: Vec<Top>,
}

const ENTRIES: usize = 14;

/// What the inclusive view shows: symbols of our crates, of the libraries that do
/// the work (storage, TLS, HTTP/2, encoding, eBPF), and the libc calls into the
/// kernel that cost the most here.
const INCLUSIVE: &[&str] = &[
    "watchtower",
    "<watchtower",
    "rocksdb",
    "rustls",
    "<rustls",
    "aws_lc",
    "h2::",
    "<h2",
    "hyper",
    "<hyper",
    "tonic",
    "<tonic",
    "prost",
    "<prost",
    "serde_json",
    "aya",
    "<aya",
    "fsync",
    "fdatasync",
    "__GI___libc_write",
    "__GI___writev",
    "__libc_pwrite",
    "rename",
    "__GI___rename",
    "epoll_wait",
    "__GI___libc_read",
    "read",
];

fn perf_record(pid: u32, out: &Path) -> anyhow::Result<Child> {
    let child = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf record (is perf installed?)")?;
    // perf needs a moment to attach before the storm starts.
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

fn perf_stop(mut child: Child) -> anyhow::Result<()> {
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait()?;
    if status.success() || status.code().is_none() || status.code() == Some(130) {
        Ok(())
    } else {
        bail!("perf record ended with {status}")
    }
}

/// `perf report` of one recording, `children` for inclusive time.
fn perf_report(data: &Path, children: bool) -> anyhow::Result<(u64, Vec<Entry>)> {
    let output = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--sort",
            "symbol",
            "-g",
            "none",
            "--percent-limit",
            "0.5",
            "-i",
        ])
        .arg(data)
        .arg(if children { "--children" } else { "--no-children" })
        .output()
        .context("perf report")?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(parse_report(&text, children))
}

/// The sample count and entries of `perf report --stdio --sort symbol` output.
#[must_use]
pub fn parse_report(text: &str, children: bool) -> (u64, Vec<Entry>) {
    let samples = text
        .lines()
        .find_map(|l| l.strip_prefix("# Samples: "))
        .and_then(|rest| {
            let number = rest.split_whitespace().next()?;
            let (digits, unit) =
                number.split_at(number.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
            let value: f64 = digits.parse().ok()?;
            Some(match unit {
                "K" => value * 1e3,
                "M" => value * 1e6,
                _ => value,
            } as u64)
        })
        .unwrap_or(0);
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && l.contains('%')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // --children: "children% self% [k] symbol"; --no-children: "self% [k] symbol".
        let Some(percent) = fields
            .first()
            .and_then(|f| f.trim_end_matches('%').parse::<f64>().ok())
        else {
            continue;
        };
        let Some(at) = fields.iter().position(|f| f.starts_with('[') && f.ends_with(']')) else {
            continue;
        };
        // The IPC columns perf cannot fill here are shown as `-`.
        let mut words = &fields[at + 1..];
        while let [rest @ .., "-"] = words {
            words = rest;
        }
        let symbol = words.join(" ");
        if symbol.starts_with("0x") || symbol.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        if symbol.is_empty() {
            continue;
        }
        // Inclusive time of the runtime and the entry points says nothing: only our
        // code, the libraries doing the work and the libc calls into the kernel.
        if children && (fields[at] == "[k]" || !INCLUSIVE.iter().any(|p| symbol.starts_with(p))) {
            continue;
        }
        entries.push(Entry {
            percent,
            symbol: format!("{} {}", fields[at], shorten(&symbol)),
        });
        if entries.len() == ENTRIES {
            break;
        }
    }
    (samples, entries)
}

/// A Rust symbol without its generic arguments and hash, so a table stays readable.
fn shorten(symbol: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in symbol.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = match out.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head.to_owned()
        }
        _ => out,
    };
    out.chars().take(90).collect()
}

/// Profile an exec storm of `storm_count` and a connect storm ten times as long
/// (connects are ~30 times cheaper than execs, and the profile needs samples);
/// also kept as `<work_dir>/profiles.json` for a later `--profile-before`.
pub fn run_both(storm_count: u64, work_dir: &Path) -> anyhow::Result<Vec<Profile>> {
    let mut rig = Rig::start()?;
    let profiles = vec![
        run(&mut rig, Storm::Exec, storm_count, work_dir)?,
        run(&mut rig, Storm::Connect, storm_count * 10, work_dir)?,
    ];
    std::fs::write(
        work_dir.join("profiles.json"),
        serde_json::to_string_pretty(&profiles)?,
    )?;
    Ok(profiles)
}

/// The profiles of `LABEL=PATH` (a `profiles.json` of an earlier run).
pub fn load(labelled: &str) -> anyhow::Result<Vec<(String, Profile)>> {
    let (label, path) = labelled.split_once('=').context("--profile-before LABEL=PATH")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str::<Vec<Profile>>(&text)?
        .into_iter()
        .map(|p| (label.to_owned(), p))
        .collect())
}

/// Profile the agent and the server during one full-pipeline storm.
pub fn run(rig: &mut Rig, storm: Storm, count: u64, work_dir: &Path) -> anyhow::Result<Profile> {
    let agent = rig.agent(Arm::Full)?;
    let agent_data = work_dir.join(format!("perf-agent-{}.data", storm.name()));
    let server_data = work_dir.join(format!("perf-server-{}.data", storm.name()));
    let agent_perf = perf_record(agent.pid(), &agent_data)?;
    let server_perf = perf_record(rig.server_pid(), &server_data)?;
    let before = rig.stored_total();
    let result = rig.storm(storm, count, 1)?;
    rig.wait_stored(before, result.made);
    perf_stop(agent_perf)?;
    perf_stop(server_perf)?;
    agent.terminate().context("the agent")?;
    let mut tops = Vec::new();
    for (process, data) in [("agent", &agent_data), ("server", &server_data)] {
        let (samples, self_time) = perf_report(data, false)?;
        let (_, inclusive) = perf_report(data, true)?;
        eprintln!(
            "{} storm profile of the {process}: {samples} samples",
            storm.name()
        );
        for entry in &self_time {
            eprintln!("  self {:>6.2}% {}", entry.percent, entry.symbol);
        }
        for entry in &inclusive {
            eprintln!("  incl {:>6.2}% {}", entry.percent, entry.symbol);
        }
        tops.push(Top {
            process: process.to_owned(),
            samples,
            self_time,
            inclusive,
        });
    }
    Ok(Profile {
        storm: storm.name().to_owned(),
        count,
        rate: result.rate(),
        tops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_gives_its_samples_and_entries_without_generics() {
        let text = "# Samples: 12K of event 'cpu-clock'\n\
                    #\n\
                    \x20   10.50%  [k] do_syscall_64\n\
                    \x20    3.25%  [.] watchtower_agent::spool::Spool::ack::h0123456789abcdef   -   -\n\
                    \x20    2.00%  [.] 0x0000000000000001\n\
                    \x20    1.00%  [.] core::ptr::drop_in_place<alloc::vec::Vec<u8>>\n";
        let (samples, entries) = parse_report(text, false);
        assert_eq!(samples, 12_000);
        let shown: Vec<(f64, &str)> = entries.iter().map(|e| (e.percent, e.symbol.as_str())).collect();
        assert_eq!(
            shown,
            [
                (10.5, "[k] do_syscall_64"),
                (3.25, "[.] watchtower_agent::spool::Spool::ack"),
                (1.0, "[.] core::ptr::drop_in_place")
            ]
        );
    }

    #[test]
    fn inclusive_entries_skip_the_kernel_and_the_entry_points() {
        let text = "    95.00%     0.00%  [.] tokio::runtime::blocking::pool::Inner::run\n\
                    \x20   90.00%     0.00%  [.] main\n\
                    \x20   40.00%    10.00%  [k] entry_SYSCALL_64\n\
                    \x20   30.00%     1.00%  [.] watchtower_agent::stages::sender::run\n";
        let (_, entries) = parse_report(text, true);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].symbol, "[.] watchtower_agent::stages::sender::run");
        assert!((entries[0].percent - 30.0).abs() < 1e-9);
    }
}
