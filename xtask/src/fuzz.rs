//! `cargo xtask fuzz`: coverage-guided fuzzing of the journal parsers with
//! cargo-fuzz (libFuzzer, nightly), seeded with the real captured journal records.

use std::path::Path;
use std::process::Command;

use crate::{root, run};

pub const TARGETS: &[&str] = &["journal_record", "auth_message"];

fn cargo_fuzz_installed() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Seed each target's corpus from the captured records (one file per record, and
/// one per message), so the fuzzer starts from real sshd/sudo/su lines.
fn seed(fuzz_dir: &Path) -> anyhow::Result<()> {
    let fixture = root().join("watchtower-journal/tests/fixtures/debian12_sshd_su_sudo.jsonl");
    let text = std::fs::read_to_string(&fixture)?;
    let records = fuzz_dir.join("corpus/journal_record");
    let messages = fuzz_dir.join("corpus/auth_message");
    std::fs::create_dir_all(&records)?;
    std::fs::create_dir_all(&messages)?;
    for (i, line) in text.lines().enumerate() {
        std::fs::write(records.join(format!("seed-{i:03}")), line)?;
        if let Ok(entry) = watchtower_journal::parse_entry(line.as_bytes()) {
            std::fs::write(messages.join(format!("seed-{i:03}")), entry.message)?;
        }
    }
    Ok(())
}

pub fn fuzz(seconds: u64, target: Option<&str>) -> anyhow::Result<()> {
    if cargo_fuzz_installed() {
        println!("fuzz: cargo-fuzz already installed");
    } else {
        println!("fuzz: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let crate_dir = root().join("watchtower-journal");
    seed(&crate_dir.join("fuzz"))?;
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => anyhow::bail!("no fuzz target {t:?}; targets: {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    for target in targets {
        println!("fuzz: {target} for {seconds} s");
        run(Command::new("cargo")
            .current_dir(&crate_dir)
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-max_len=4096"))?;
    }
    Ok(())
}
