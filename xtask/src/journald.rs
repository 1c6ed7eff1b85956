//! A running systemd-journald for `cargo xtask run`: these machines have no
//! systemd as PID 1, so nothing starts journald, and without it sshd, su and sudo
//! log nowhere and every login the agent sees would be `kernel_only`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const SOCKET: &str = "/run/systemd/journal/socket";
const DEV_LOG_TARGET: &str = "/run/systemd/journal/dev-log";

fn accepting() -> bool {
    std::os::unix::net::UnixDatagram::unbound().is_ok_and(|s| s.connect(SOCKET).is_ok())
}

/// Start journald (left running: it is the machine's log) unless one accepts
/// messages already, with `/dev/log` pointing at its syslog socket.
pub fn ensure_running() -> anyhow::Result<()> {
    if accepting() {
        return Ok(());
    }
    if !Path::new(JOURNALD).exists() {
        bail!("no journald runs and {JOURNALD} is missing: run `cargo xtask setup`");
    }
    std::fs::create_dir_all("/run/systemd/journal").context("creating /run/systemd/journal")?;
    let dev_log = Path::new("/dev/log");
    if std::fs::read_link(dev_log).map_or(true, |t| t != Path::new(DEV_LOG_TARGET)) {
        let _ = std::fs::remove_file(dev_log);
        std::os::unix::fs::symlink(DEV_LOG_TARGET, dev_log).context("linking /dev/log to journald")?;
    }
    eprintln!("xtask: no journald runs here; starting {JOURNALD}");
    Command::new(JOURNALD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {JOURNALD}"))?;
    let start = Instant::now();
    while !accepting() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("{JOURNALD} did not open {SOCKET} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
