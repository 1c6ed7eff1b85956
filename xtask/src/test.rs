//! `cargo xtask test`: the checks, the one build, the packages and every test of
//! the workspace (the privileged end-to-end tests included, one at a time), with
//! the time of each phase printed at the end.
//!
//! One build profile (release) and one package selection (the default members,
//! every target) for clippy, the tests and the packages, so cargo resolves
//! features once and the C++ of `RocksDB` is compiled once. The deployment tests
//! install the Debian packages laid out from that same build; whether two builds
//! give the same packages is `cargo xtask dist --check-reproducible`'s job.

use std::time::{Duration, Instant};

use crate::{cargo, dist, proto, root, run, target_dir};

/// The phases run so far and how long each took.
#[derive(Default)]
struct Phases(Vec<(&'static str, Duration)>);

impl Phases {
    fn run(&mut self, name: &'static str, phase: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        println!("test: {name}");
        let started = Instant::now();
        let result = phase();
        self.0.push((name, started.elapsed()));
        if result.is_err() {
            self.print();
        }
        result
    }

    fn print(&self) {
        let total: Duration = self.0.iter().map(|(_, took)| *took).sum();
        println!("test: phase times");
        for (name, took) in &self.0 {
            println!("  {name:<8} {:>6.1} min", took.as_secs_f64() / 60.0);
        }
        println!("  {:<8} {:>6.1} min", "total", total.as_secs_f64() / 60.0);
    }
}

pub fn test(filter: Option<&str>) -> anyhow::Result<()> {
    let stamp = dist::stamp()?;
    let mut phases = Phases::default();
    phases.run("fmt", || run(cargo().args(["fmt", "--all", "--check"])))?;
    phases.run("proto", proto::check)?;
    // The binaries the end-to-end tests start, every test target, the packages' programs.
    phases.run("build", || dist::build(&stamp))?;
    phases.run("clippy", || {
        run(dist::stamped(
            cargo().args(["clippy", "--release", "--all-targets", "--", "-D", "warnings"]),
            &stamp,
        ))
    })?;
    phases.run("dist", || dist::package(&stamp).map(|_| ()))?;
    phases.run("tests", || {
        let release = target_dir().join("release");
        let mut tests = cargo();
        dist::stamped(&mut tests, &stamp)
            .args(["test", "--release", "--all-targets", "--", "--test-threads=1"])
            .env("WATCHTOWER_AGENT_BIN", release.join("watchtower-agent"))
            .env("WATCHTOWER_SERVER_BIN", release.join("watchtower-server"))
            .env("WATCHTOWERCTL_BIN", release.join("watchtowerctl"))
            .env("WATCHTOWER_DIST", root().join("dist"));
        if let Some(filter) = filter {
            tests.arg(filter);
        }
        run(&mut tests)
    })?;
    phases.print();
    Ok(())
}
