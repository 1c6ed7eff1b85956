//! `cargo xtask dist`: what operators install. Release binaries (the agent with its
//! eBPF object embedded), a SHA-256 file, the version stamped from git, example
//! configs, systemd units, and one Debian package per program (dpkg-deb, the
//! Debian tool itself): each installs its binary, unit, config and system user.
//!
//! Reproducible from a commit: the version and `SOURCE_DATE_EPOCH` come from the
//! commit, every packaged file gets that mtime and root ownership, so two runs
//! from the same commit give the same checksums.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, root, run, target_dir};

/// One Debian package.
struct Package {
    name: &'static str,
    binaries: &'static [&'static str],
    unit: Option<&'static str>,
    config: Option<&'static str>,
    depends: &'static str,
    recommends: &'static str,
    description: &'static str,
}

const PACKAGES: [Package; 3] = [
    Package {
        name: "watchtower-server",
        binaries: &["watchtower-server"],
        unit: Some("watchtower-server.service"),
        config: Some("server.toml"),
        depends: "libc6 (>= 2.34), libgcc-s1, libstdc++6, passwd",
        recommends: "watchtowerctl",
        description: "Watchtower central store: logins and sessions of a fleet, tamper-evident\n \
                      Receives agents' events over gRPC with mutual TLS, stores them durably in\n \
                      RocksDB indexed by host and time, signs a Merkle log of them, serves\n \
                      queries, live tails, alerts and a Prometheus exporter. Runs as the\n \
                      unprivileged user watchtower in a strict systemd sandbox.",
    },
    Package {
        name: "watchtower-agent",
        binaries: &["watchtower-agent"],
        unit: Some("watchtower-agent.service"),
        config: Some("agent.toml"),
        depends: "libc6 (>= 2.34), libgcc-s1, passwd",
        recommends: "systemd",
        description: "Watchtower host agent: eBPF probes on PAM, execve and connect\n \
                      Turns logins, sessions, execs and connects into events, cross-checks\n \
                      them against the journal and ships them to watchtower-server over\n \
                      mutual TLS. Runs as the user watchtower-agent with CAP_BPF,\n \
                      CAP_PERFMON and CAP_SYS_ADMIN only.",
    },
    Package {
        name: "watchtowerctl",
        binaries: &["watchtowerctl"],
        unit: None,
        config: None,
        depends: "libc6 (>= 2.34), libgcc-s1",
        recommends: "",
        description: "Watchtower operators' client: queries, tails, reports, enrolment\n \
                      Queries watchtower-server (events, sessions, hosts, alerts, the access\n \
                      review, exports, tamper verification) and runs the CA: ca init,\n \
                      enroll (host certificates with bound labels) and revoke.",
    },
];

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let line = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot start {line}"))?;
    if !out.status.success() {
        bail!("{line} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("git").current_dir(root()).args(args))
}

/// What this build is: the crate version, commits on the branch, the commit.
pub struct Stamp {
    /// e.g. `0.1.0+42.g1a2b3c4` (`.dirty` when the tree has changes): binaries'
    /// --version, the agent's Hello, and the Debian version (ordered by commit count).
    pub version: String,
    pub commit: String,
    /// The commit's time: every packaged file's mtime, and `SOURCE_DATE_EPOCH`.
    pub epoch: String,
}

pub fn stamp() -> anyhow::Result<Stamp> {
    let commit = git(&["rev-parse", "HEAD"])?;
    let count = git(&["rev-list", "--count", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok(Stamp {
        version: format!(
            "{}+{count}.g{}{}",
            env!("CARGO_PKG_VERSION"),
            &commit[..12],
            if dirty { ".dirty" } else { "" }
        ),
        epoch: git(&["log", "-1", "--format=%ct"])?,
        commit,
    })
}

/// The one build: every target of the default members in the release profile,
/// with the version stamped in. `test`, `run`, `bench` and `dist` all use it, so
/// the C++ of `RocksDB` and every program are compiled once per change.
///
/// `SOURCE_DATE_EPOCH` is deliberately not passed to cargo: librocksdb-sys reruns
/// its build script (13+ minutes of C++) whenever it changes, i.e. on every commit.
pub fn build(stamp: &Stamp) -> anyhow::Result<()> {
    run(stamped(
        cargo().args(["build", "--release", "--all-targets"]),
        stamp,
    ))
}

/// A cargo command with the version stamped in: every build of the workspace goes
/// through this, so the tests, clippy and the packages share one set of outputs.
pub fn stamped<'a>(cmd: &'a mut Command, stamp: &Stamp) -> &'a mut Command {
    cmd.env("WATCHTOWER_VERSION", &stamp.version)
        .env_remove("SOURCE_DATE_EPOCH")
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    let mut perms = std::fs::metadata(to)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, mode);
    std::fs::set_permissions(to, perms)?;
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    let mut perms = std::fs::metadata(path)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, mode);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}

/// Debian's version from ours: `0.1.0+42.g1a2b3c4` sorts by the commit count.
fn debian_version(version: &str) -> String {
    version.replace('+', "+git")
}

fn build_deb(package: &Package, stamp: &Stamp, release: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let packaging = root().join("packaging");
    let stage = target_dir().join("dist-stage").join(package.name);
    let _ = std::fs::remove_dir_all(&stage);
    for binary in package.binaries {
        copy(&release.join(binary), &stage.join("usr/bin").join(binary), 0o755)?;
    }
    let mut conffiles = String::new();
    if let Some(unit) = package.unit {
        copy(
            &packaging.join("systemd").join(unit),
            &stage.join("lib/systemd/system").join(unit),
            0o644,
        )?;
    }
    if let Some(config) = package.config {
        copy(
            &packaging.join("config").join(config),
            &stage.join("etc/watchtower").join(config),
            0o644,
        )?;
        writeln!(conffiles, "/etc/watchtower/{config}")?;
    }
    let doc = stage.join("usr/share/doc").join(package.name);
    write(
        &doc.join("copyright"),
        &format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: watchtower\nSource: commit {}\n\nFiles: *\nLicense: MIT or Apache-2.0\n",
            stamp.commit
        ),
        0o644,
    )?;
    let debian = stage.join("DEBIAN");
    let scripts = packaging.join("debian").join(package.name);
    for script in ["postinst", "prerm", "postrm"] {
        let from = scripts.join(script);
        if from.exists() {
            copy(&from, &debian.join(script), 0o755)?;
        }
    }
    if !conffiles.is_empty() {
        write(&debian.join("conffiles"), &conffiles, 0o644)?;
    }
    let installed_kib = dir_size(&stage)? / 1024;
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: amd64\nMaintainer: Watchtower developers <watchtower@example.invalid>\n\
         Installed-Size: {installed_kib}\nDepends: {}\n",
        package.name,
        debian_version(&stamp.version),
        package.depends
    );
    if !package.recommends.is_empty() {
        writeln!(control, "Recommends: {}", package.recommends)?;
    }
    writeln!(
        control,
        "Section: admin\nPriority: optional\nHomepage: https://example.invalid/watchtower\nDescription: {}",
        package.description
    )?;
    write(&debian.join("control"), &control, 0o644)?;
    // Every file and directory: the commit's time.
    run(Command::new("find")
        .arg(&stage)
        .args(["-exec", "touch", "--no-dereference", "-d"])
        .arg(format!("@{}", stamp.epoch))
        .args(["{}", "+"]))?;
    let deb = out.join(format!(
        "{}_{}_amd64.deb",
        package.name,
        debian_version(&stamp.version)
    ));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb)
        .env("SOURCE_DATE_EPOCH", &stamp.epoch))?;
    Ok(deb)
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Build dist/ twice (the second time after removing the three programs' release
/// outputs, so they are compiled and linked again) and compare SHA256SUMS.
pub fn check_reproducible() -> anyhow::Result<()> {
    let first = std::fs::read_to_string(dist()?.join("SHA256SUMS"))?;
    run(cargo().args([
        "clean",
        "--release",
        "-p",
        "watchtower-agent",
        "-p",
        "watchtower-server",
        "-p",
        "watchtowerctl",
    ]))?;
    let second = std::fs::read_to_string(dist()?.join("SHA256SUMS"))?;
    if first != second {
        bail!("dist is not reproducible:\nfirst build:\n{first}\nsecond build:\n{second}");
    }
    println!("dist: reproducible (both builds gave the same SHA256SUMS)");
    Ok(())
}

/// Build and lay out dist/; returns its path.
pub fn dist() -> anyhow::Result<PathBuf> {
    let stamp = stamp()?;
    build(&stamp)?;
    package(&stamp)
}

/// Lay out dist/ from the release binaries already built with `stamp` (by
/// [`build`], or by `cargo xtask test`'s one build of every target).
pub fn package(stamp: &Stamp) -> anyhow::Result<PathBuf> {
    let release = target_dir().join("release");
    let out = root().join("dist");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    for binary in ["watchtower-agent", "watchtower-server", "watchtowerctl"] {
        copy(&release.join(binary), &out.join("bin").join(binary), 0o755)?;
    }
    for config in ["server.toml", "agent.toml"] {
        copy(
            &root().join("packaging/config").join(config),
            &out.join("config").join(config),
            0o644,
        )?;
    }
    for unit in ["watchtower-server.service", "watchtower-agent.service"] {
        copy(
            &root().join("packaging/systemd").join(unit),
            &out.join("systemd").join(unit),
            0o644,
        )?;
    }
    write(
        &out.join("VERSION"),
        &format!(
            "version {}\ncommit {}\nsource_date_epoch {}\n",
            stamp.version, stamp.commit, stamp.epoch
        ),
        0o644,
    )?;
    let mut debs = Vec::new();
    for package in &PACKAGES {
        debs.push(build_deb(package, stamp, &release, &out)?);
    }
    // Checksums of everything an operator installs, relative to dist/.
    let mut files: Vec<String> = ["watchtower-agent", "watchtower-server", "watchtowerctl"]
        .iter()
        .map(|b| format!("bin/{b}"))
        .collect();
    files.extend(
        debs.iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
    );
    let sums = output(Command::new("sha256sum").current_dir(&out).args(&files))?;
    write(&out.join("SHA256SUMS"), &format!("{sums}\n"), 0o644)?;
    println!("dist: {} ({})\n{sums}", out.display(), stamp.version);
    Ok(out)
}
