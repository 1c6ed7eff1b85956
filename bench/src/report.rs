//! BENCHMARKS.md: the machine, a summary table (what, arms, median ratio, spread),
//! and the absolute numbers behind each ratio.

use std::fmt::Write as _;
use std::process::Command;

use crate::ingest::IngestResult;
use crate::profile::Profile;
use crate::query::QueryResult;
use crate::stats::{Ratios, median};
use crate::storms::{Completeness, Overhead};

#[derive(Default)]
pub struct Results {
    pub overhead: Vec<Overhead>,
    pub completeness: Vec<Completeness>,
    /// One per number of hosts sending at once.
    pub ingest: Vec<IngestResult>,
    pub query: Option<QueryResult>,
    pub fleet: Option<crate::fleet::FleetResult>,
    pub profiles: Vec<Profile>,
    pub memory: Option<crate::memory::Memory>,
    pub capacity: Option<crate::capacity::Capacity>,
    /// The profiles of an earlier build, shown beside this run's (`--profile-before`).
    pub profiles_before: Vec<(String, Profile)>,
}

fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// CPU model, cores, memory, kernel, distribution and the commit measured.
#[must_use]
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB RAM, kernel {}, {os}; commit {}",
        shell("uname", &["-r"]),
        shell("git", &["describe", "--always", "--dirty"]),
    )
}

fn ratio_row(out: &mut String, what: &str, arms: &str, ratios: &Ratios, target: &str) {
    let _ = writeln!(
        out,
        "| {what} | {arms} | {:.3} | {:.3}–{:.3} | {} | {target} |",
        ratios.median(),
        ratios.min(),
        ratios.max(),
        ratios.0.len()
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

#[expect(clippy::too_many_lines, reason = "one section per benchmark, in order")]
#[must_use]
pub fn render(results: &Results, date: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `{command}` on {date} (release build). Machine: {}.\n",
        machine()
    );
    let _ = writeln!(
        out,
        "Every comparison alternates its arms in rounds (the order rotates and reverses \
         from round to round, so no arm always runs first or last) and reports the median \
         of the per-round ratios with their spread (lowest–highest round). Absolute numbers \
         follow the summary; they vary between machines, the ratios much less.\n"
    );
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "| What | Arms (arm / baseline) | Median ratio | Spread | Rounds | Target |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for o in &results.overhead {
        for (arm, ratios) in &o.vs_no_agent {
            let target = match *arm {
                "full pipeline to server" => {
                    let auditd = o
                        .vs_no_agent
                        .iter()
                        .find(|(a, _)| *a == "auditd rule")
                        .map_or(0.0, |(_, r)| r.median());
                    format!(
                        "≥ 0.95 and above auditd: {}",
                        verdict(ratios.median() >= 0.95 && ratios.median() > auditd)
                    )
                }
                _ => "—".to_owned(),
            };
            ratio_row(
                &mut out,
                &format!("{} storm rate ({} ops/run, 1 thread)", o.storm, o.count),
                &format!("{arm} / no agent"),
                ratios,
                &target,
            );
        }
    }
    for c in &results.completeness {
        let _ = writeln!(
            out,
            "| {} storm completeness | highest loss-free rate, full pipeline / best rate with no agent | {:.3} | — | {} steps | zero loss to the machine's ceiling: {} |",
            c.storm,
            c.loss_free_fraction,
            c.steps.len(),
            verdict(c.first_loss_at.is_none())
        );
    }
    for i in &results.ingest {
        let best = i
            .rates
            .iter()
            .find(|(n, _)| n.starts_with("watchtower-server binary"))
            .map_or(0.0, |(_, r)| median(r));
        ratio_row(
            &mut out,
            &format!(
                "ingest events/s, durable acks ({} hosts, batches of 512)",
                i.hosts
            ),
            "server binary over mTLS / raw RocksDB WriteBatch",
            &i.binary_vs_raw,
            &format!(
                "≥ 0.5 and ≥ 100,000/s ({best:.0}/s): {}",
                verdict(i.binary_vs_raw.median() >= 0.5 && best >= 100_000.0)
            ),
        );
        ratio_row(
            &mut out,
            &format!("ingest events/s ({} hosts)", i.hosts),
            "in-process mTLS / in-process plaintext gRPC",
            &i.mtls_vs_plaintext,
            "— (the cost of TLS)",
        );
        ratio_row(
            &mut out,
            &format!("ingest events/s ({} hosts)", i.hosts),
            "in-process mTLS / raw RocksDB WriteBatch",
            &i.mtls_vs_raw,
            "—",
        );
        ratio_row(
            &mut out,
            &format!("ingest events/s ({} hosts)", i.hosts),
            "EventStore::append / raw RocksDB WriteBatch",
            &i.store_vs_raw,
            "— (indexes, dedup, Merkle log)",
        );
    }
    if let Some(f) = &results.fleet {
        ratio_row(
            &mut out,
            &format!("ingest events/s until stored ({} hosts, batches of 512)", f.hosts),
            "front door + JetStream R3 + one indexer / one server",
            &f.fleet_vs_single,
            "— (the price of replication)",
        );
        ratio_row(
            &mut out,
            &format!("ingest events/s until stored ({} hosts, batches of 512)", f.hosts),
            "two indexers (2 shards) / one indexer",
            &f.two_vs_one,
            "— (the shards' gain on one machine)",
        );
    }
    if let Some(q) = &results.query {
        for (i, size) in q.sizes.iter().enumerate().skip(1) {
            let ratio = &q.vs_smallest[i];
            ratio_row(
                &mut out,
                "one host, one hour query (1,000 events)",
                &format!("store of {size} / store of {}", q.sizes[0]),
                ratio,
                &format!("flat (≤ 1.5): {}", verdict(ratio.median() <= 1.5)),
            );
        }
        ratio_row(
            &mut out,
            "one host, one hour query",
            &format!("indexed / full scan, store of {}", q.full_scan_size),
            &q.vs_full_scan,
            "—",
        );
    }

    for o in &results.overhead {
        let _ = writeln!(out, "\n## {} storm: overhead\n", o.storm);
        let _ = writeln!(
            out,
            "{} {}s of a loop inside a real ssh login of wt_alice (so the agent's session scope \
             covers them) per run. Full pipeline: the agent with the journal, shipping to a \
             watchtower-server on the same machine (its CPU competes with the workload here; on a \
             fleet it runs elsewhere). auditd: `auditctl -a always,exit -F arch=b64 -S {}`.\n",
            o.count,
            o.storm,
            if o.storm == "exec" {
                "execve -S execveat"
            } else {
                "connect"
            }
        );
        let _ = writeln!(out, "| Arm | Median rate (/s) | Watcher CPU s per 1,000 ops |");
        let _ = writeln!(out, "|---|---|---|");
        let arms: Vec<&str> = o
            .rounds
            .first()
            .map(|r| r.iter().map(|a| a.arm).collect())
            .unwrap_or_default();
        for arm in arms {
            let rates: Vec<f64> = o
                .rounds
                .iter()
                .flatten()
                .filter(|r| r.arm == arm)
                .map(|r| r.rate)
                .collect();
            let cpu = o
                .cpu_per_1000
                .iter()
                .find(|(a, _)| *a == arm)
                .map_or("—".to_owned(), |(_, c)| format!("{c:.4}"));
            let _ = writeln!(out, "| {arm} | {:.0} | {cpu} |", median(&rates));
        }
        let _ = writeln!(
            out,
            "\nServer CPU (full pipeline): {:.4} s per 1,000 ops. Full pipeline, all rounds: \
             {} {}s made, {} stored with their session, {} lost by the agent's counters.",
            o.server_cpu_per_1000, o.made, o.storm, o.stored, o.lost
        );
    }
    for c in &results.completeness {
        let _ = writeln!(
            out,
            "\n## {} storm: completeness at rising parallelism\n",
            c.storm
        );
        let _ = writeln!(
            out,
            "| Threads | Rate, no agent (/s) | Rate, full pipeline (/s) | Stored / made | Lost (agent counters) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for s in &c.steps {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {} / {} | {} |",
                s.parallel, s.no_agent_rate, s.full_rate, s.stored, s.made, s.lost
            );
        }
        let _ = writeln!(
            out,
            "\n{}",
            match c.first_loss_at {
                Some(p) => format!("Loss first appeared at {p} threads."),
                None =>
                    "No loss at any step: every operation made was stored, and the agent counted no loss."
                        .to_owned(),
            }
        );
    }
    for i in &results.ingest {
        let _ = writeln!(out, "\n## Ingest, {} hosts at once\n", i.hosts);
        let _ = writeln!(out, "| Arm | Median events/s | Spread |");
        let _ = writeln!(out, "|---|---|---|");
        for (arm, rates) in &i.rates {
            let (lo, hi) = rates
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            let _ = writeln!(out, "| {arm} | {:.0} | {lo:.0}–{hi:.0} |", median(rates));
        }
    }
    if let Some(f) = &results.fleet {
        let _ = writeln!(
            out,
            "\n## Fleet ingest, {} hosts, {} events per run\n\nEach fleet run starts a fresh three-node NATS cluster on this machine (mutual TLS, replicas 3) and is timed from the first batch until the indexers' stores hold every event.\n",
            f.hosts, f.events_per_run
        );
        let _ = writeln!(out, "| Arm | Median events/s | Spread |");
        let _ = writeln!(out, "|---|---|---|");
        for (arm, rates) in &f.rates {
            let (lo, hi) = rates
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            let _ = writeln!(out, "| {arm} | {:.0} | {lo:.0}–{hi:.0} |", median(rates));
        }
    }
    if let Some(q) = &results.query {
        let _ = writeln!(out, "\n## Query\n");
        let _ = writeln!(
            out,
            "| Store (events) | Median ms per query | Build s (0: reused) |"
        );
        let _ = writeln!(out, "|---|---|---|");
        for (i, size) in q.sizes.iter().enumerate() {
            let per: Vec<f64> = q.query_secs.iter().map(|r| r[i]).collect();
            let _ = writeln!(
                out,
                "| {size} | {:.3} | {:.0} |",
                median(&per) * 1000.0,
                q.build_secs[i]
            );
        }
        let _ = writeln!(
            out,
            "\nFull scan of the store of {} events (every record read and decoded): median {:.0} ms.",
            q.full_scan_size,
            median(&q.full_scan_secs) * 1000.0
        );
    }
    if let Some(m) = &results.memory {
        let _ = writeln!(out, "\n## Agent memory\n");
        let _ = writeln!(
            out,
            "The agent shipping to an address where nothing listens, with `--spool-max-bytes {}`, \
             while exec storms (4 threads, inside an ssh login) run until the spool stops growing \
             (full: further events are dropped and counted as `spool_full`).\n",
            m.spool_max_bytes
        );
        let _ = writeln!(out, "| State | Resident (MiB) | Peak (MiB) |");
        let _ = writeln!(out, "|---|---|---|");
        let mib = |kib: u64| kib as f64 / 1024.0;
        let _ = writeln!(out, "| idle, no session | {:.1} | — |", mib(m.idle_rss_kib));
        let _ = writeln!(
            out,
            "| spool full ({} of {} bytes, after {} execs) | {:.1} | {:.1} |",
            m.spool_bytes,
            m.spool_max_bytes,
            m.execs,
            mib(m.full_rss_kib),
            mib(m.full_peak_kib)
        );
    }
    if let Some(c) = &results.capacity {
        render_capacity(&mut out, c, results.fleet.as_ref());
    }
    render_profiles(&mut out, results);
    out
}

fn kinds(by_kind: &std::collections::BTreeMap<String, f64>, digits: usize) -> String {
    by_kind
        .iter()
        .map(|(kind, n)| format!("{kind} {n:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The inputs of the capacity model, and what they give with this run's fleet rate.
fn render_capacity(
    out: &mut String,
    c: &crate::capacity::Capacity,
    fleet: Option<&crate::fleet::FleetResult>,
) {
    let Some(first) = c.scopes.first() else { return };
    let _ = writeln!(out, "\n## What one host sends (capacity inputs)\n");
    let _ = writeln!(
        out,
        "The real agent with the journal, shipping to a server on this machine. Idle: {:.0} s with \
         nobody logged in (this machine's own daemons, timers and the agent's health records). Per \
         login: {} ssh logins of wt_alice one after another, each running `{}`, less the idle rate \
         over their time. With `--scope all` the ssh client on this machine is captured too (on a \
         server it runs elsewhere).\n",
        first.idle_secs, first.logins, first.command
    );
    let _ = writeln!(
        out,
        "| Scope | Idle events/s | By kind | Events per login | By kind | Mean event bytes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for s in &c.scopes {
        let _ = writeln!(
            out,
            "| {} | {:.3} | {} | {:.1} | {} | {:.0} |",
            s.scope,
            // An empty sum is -0.0.
            s.idle_total() + 0.0,
            kinds(&s.idle_per_s, 3),
            s.login_total(),
            kinds(&s.per_login, 1),
            s.mean_event_bytes
        );
    }
    if let Some(f) = fleet {
        let one = f
            .rates
            .iter()
            .find(|(arm, _)| arm.contains("one indexer"))
            .map(|(_, rates)| median(rates));
        if let Some(rate) = one {
            let idle = if first.idle_total() > 0.0 {
                format!(
                    "{:.0} idle hosts per indexer in scope `{}`",
                    rate * 0.5 / first.idle_total(),
                    first.scope
                )
            } else {
                "an idle host sends no event (its heartbeats are messages, not events)".to_owned()
            };
            let _ = writeln!(
                out,
                "\nWith this run's fleet rate of one indexer ({rate:.0} events/s, everything on this \
                 machine) kept at half load: {idle}; {:.0} logins per second fleet-wide in scope `{}`.",
                rate * 0.5 / first.login_total().max(1e-9),
                first.scope
            );
        }
    }
}

fn render_profiles(out: &mut String, results: &Results) {
    if results.profiles.is_empty() && results.profiles_before.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Where the time goes\n");
    let _ = writeln!(
        out,
        "`perf record -e cpu-clock -F 499 --call-graph dwarf` on the agent and on the server during one \
         full-pipeline storm (1 thread, inside an ssh login). Self: samples in the symbol \
         itself; inclusive: in the symbol and what it calls (user-space symbols only). `[k]` \
         is the kernel, `[.]` user space. Percent of the process's samples.\n"
    );
    let mut all: Vec<(String, &Profile)> = results
        .profiles_before
        .iter()
        .map(|(label, p)| (label.clone(), p))
        .collect();
    all.extend(results.profiles.iter().map(|p| ("this run".to_owned(), p)));
    for (label, p) in all {
        for top in &p.tops {
            let _ = writeln!(
                out,
                "\n### {} storm, {} ({label}; {} ops at {:.0}/s, {} samples)\n",
                p.storm, top.process, p.count, p.rate, top.samples
            );
            let _ = writeln!(out, "| Self % | Symbol | Inclusive % | Symbol |");
            let _ = writeln!(out, "|---|---|---|---|");
            for i in 0..top.self_time.len().max(top.inclusive.len()) {
                let cell = |e: Option<&crate::profile::Entry>| {
                    e.map_or((String::new(), String::new()), |e| {
                        (
                            format!("{:.1}", e.percent),
                            format!("`{}`", e.symbol.replace('|', "\\|")),
                        )
                    })
                };
                let (sp, ss) = cell(top.self_time.get(i));
                let (ip, is) = cell(top.inclusive.get(i));
                let _ = writeln!(out, "| {sp} | {ss} | {ip} | {is} |");
            }
        }
    }
}

/// Today's date (UTC) for the report.
#[must_use]
pub fn shell_date() -> String {
    shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}
