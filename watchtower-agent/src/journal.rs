//! The journal witness: follows `journalctl -o json --follow` for sshd, sudo, su,
//! login and systemd-logind, groups each login's lines by PID and hands every
//! login to the reconciler.
//!
//! Position: the cursor of the last record read is kept in the state directory
//! (`journal.cursor`, saved at most once a second and at shutdown), so a restart
//! resumes after it; the first start begins at the agent's start time. journalctl
//! is restarted with backoff if it ends; malformed records are counted and
//! skipped.
//!
//! Where the journal appears: journalctl reads the journal directories that
//! exist when it starts and never notices one created later (an agent started
//! before journald ever ran, or `/run/log/journal` recreated), so the follower
//! looks at the journal directories every [`DIRECTORY_CHECK`] and reopens the
//! journal from its cursor when one appears or is replaced. Rotation and vacuuming
//! within a directory, and journald restarts, journalctl follows by itself. Until
//! a journal exists the state is `no_journal`, and logins the kernel sees then are
//! `kernel_only` for `journald_not_accepting`, not `no_journal_record`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{mpsc, watch};
use watchtower_journal::{LoginStories, Program, parse_entry};

use crate::event::JournalHealth;
use crate::stages::assembler::Input;

/// journald's native socket: when nothing listens on it, nothing is logged.
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// A record longer than this is not one journalctl writes for the fields asked.
const MAX_RECORD: usize = 1 << 20;
const CURSOR_FILE: &str = "journal.cursor";
/// Where journald keeps its files: volatile, then persistent.
const JOURNAL_ROOTS: [&str; 2] = ["/run/log/journal", "/var/log/journal"];
/// How often the journal directories are looked at.
const DIRECTORY_CHECK: Duration = Duration::from_secs(2);
const FIELDS: &str = "MESSAGE,_PID,_UID,_COMM,_EXE,SYSLOG_IDENTIFIER,_TRANSPORT,_BOOT_ID";

pub struct JournalSettings {
    pub journalctl: PathBuf,
    pub state_dir: PathBuf,
    /// Where to begin when no cursor was saved (the agent's start, unix seconds).
    pub since_unix_s: u64,
}

/// Whether this process can read the system journal: `journalctl -n 0` succeeds.
pub fn probe(journalctl: &Path) -> Result<(), String> {
    let out = std::process::Command::new(journalctl)
        .args(["-n", "0", "--quiet", "--no-pager"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", journalctl.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() && !stderr.contains("No journal files") {
        Ok(())
    } else if stderr.is_empty() {
        Err(format!("{} exited with {}", journalctl.display(), out.status))
    } else {
        Err(stderr)
    }
}

/// Whether journald accepts messages now (its socket has a listener).
#[must_use]
pub fn journald_accepting() -> bool {
    std::os::unix::net::UnixDatagram::unbound().is_ok_and(|s| s.connect(JOURNALD_SOCKET).is_ok())
}

const FOLLOWING: u8 = 1;
const RESTARTING: u8 = 2;
const NO_JOURNAL: u8 = 3;

/// The journal directories under `roots` (one per machine id or namespace), by
/// path and inode: a directory removed and made again is another directory.
#[must_use]
pub fn journal_directories(roots: &[&Path]) -> BTreeSet<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    roots
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.is_dir().then(|| (entry.path(), meta.ino()))
        })
        .collect()
}

/// Whether journalctl, started when `opened` were the journal directories, must
/// be started again to see `now`: a directory appeared (or was replaced).
#[must_use]
pub fn must_reopen(opened: &BTreeSet<(PathBuf, u64)>, now: &BTreeSet<(PathBuf, u64)>) -> bool {
    !now.is_subset(opened)
}

fn system_journal_directories() -> BTreeSet<(PathBuf, u64)> {
    journal_directories(&JOURNAL_ROOTS.map(Path::new))
}

/// The reader's counters, shared with the health records.
#[derive(Default)]
pub struct JournalStats {
    state: AtomicU8,
    records: AtomicU64,
    malformed: AtomicU64,
    recognised: AtomicU64,
    logins: AtomicU64,
    restarts: AtomicU64,
    error: Mutex<Option<String>>,
}

impl JournalStats {
    #[must_use]
    pub fn health(&self) -> JournalHealth {
        JournalHealth {
            state: match self.state.load(Ordering::Relaxed) {
                FOLLOWING => "following",
                RESTARTING => "restarting",
                NO_JOURNAL => "no_journal",
                _ => "starting",
            },
            error: self.error.lock().map(|e| e.clone()).unwrap_or_default(),
            journald_accepting: journald_accepting(),
            records: self.records.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            recognised: self.recognised.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Whether the journal is read now: followed, a journal exists, and journald
    /// accepts messages.
    #[must_use]
    pub fn readable(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FOLLOWING && journald_accepting()
    }

    fn set_error(&self, error: String) {
        if let Ok(mut e) = self.error.lock() {
            *e = Some(error);
        }
    }
}

/// The health entry for a journal that is not followed at all.
#[must_use]
pub fn unavailable(reason: &str) -> JournalHealth {
    JournalHealth {
        state: "unavailable",
        error: Some(reason.to_string()),
        journald_accepting: journald_accepting(),
        ..JournalHealth::default()
    }
}

struct Cursor {
    path: PathBuf,
    last: Option<String>,
    saved: Option<String>,
}

impl Cursor {
    fn load(state_dir: &Path) -> Cursor {
        let path = state_dir.join(CURSOR_FILE);
        let last = std::fs::read_to_string(&path)
            .ok()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty() && !c.contains(char::is_whitespace));
        Cursor {
            path,
            saved: last.clone(),
            last,
        }
    }

    /// Write the cursor (temporary file, fsync, rename) if it moved.
    fn save(&mut self) {
        if self.last == self.saved {
            return;
        }
        let Some(cursor) = &self.last else { return };
        let tmp = self.path.with_extension("tmp");
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                use std::io::Write as _;
                f.write_all(cursor.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        match result {
            Ok(()) => self.saved.clone_from(&self.last),
            Err(error) => {
                tracing::warn!(%error, path = %self.path.display(), "could not save the journal cursor");
            }
        }
    }
}

fn command(settings: &JournalSettings, cursor: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&settings.journalctl);
    // `--no-tail`: in follow mode journalctl otherwise shows only the first 10
    // records after a cursor and then waits until something new is written to the
    // journal (systemd#4739): a restarted agent would miss the rest of what happened
    // while it was down for as long as the journal stays quiet.
    cmd.args(["--output=json", "--follow", "--no-tail", "--no-pager", "--quiet"])
        .arg(format!("--output-fields={FIELDS}"));
    match cursor {
        Some(c) => cmd.arg(format!("--after-cursor={c}")),
        None => cmd.arg(format!("--since=@{}", settings.since_unix_s)),
    };
    for identifier in Program::IDENTIFIERS {
        cmd.arg(format!("SYSLOG_IDENTIFIER={identifier}"));
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Follow the journal until `stop` turns true.
pub async fn follow(
    settings: JournalSettings,
    tx: mpsc::Sender<Input>,
    stats: Arc<JournalStats>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut cursor = Cursor::load(&settings.state_dir);
    if let Some(c) = &cursor.last {
        tracing::info!(cursor = %c, "journal: resuming after the saved cursor");
    }
    let mut stories = LoginStories::new();
    let mut backoff = Duration::from_secs(1);
    loop {
        // Before journalctl starts: a directory made while it starts is then new.
        let opened = system_journal_directories();
        let mut child = match command(&settings, cursor.last.as_deref()).spawn() {
            Ok(child) => child,
            Err(error) => {
                stats.set_error(format!("cannot run {}: {error}", settings.journalctl.display()));
                stats.state.store(RESTARTING, Ordering::Relaxed);
                if wait_or_stop(&mut stop, backoff).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        stats.state.store(
            if opened.is_empty() { NO_JOURNAL } else { FOLLOWING },
            Ordering::Relaxed,
        );
        let stdout = child.stdout.take().expect("piped");
        let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, stdout);
        let mut line = Vec::with_capacity(4096);
        let mut save = tokio::time::interval(Duration::from_secs(1));
        let mut look = tokio::time::interval(DIRECTORY_CHECK);
        let mut reopen = false;
        let stopping = loop {
            tokio::select! {
                read = reader.read_until(b'\n', &mut line) => {
                    match read {
                        Ok(0) => break false,
                        Ok(_) => {
                            if !record(&line, &mut stories, &mut cursor, &stats, &tx).await {
                                break true;
                            }
                            backoff = Duration::from_secs(1);
                            line.clear();
                        }
                        Err(error) => {
                            stats.set_error(format!("reading journalctl: {error}"));
                            break false;
                        }
                    }
                }
                _ = save.tick() => cursor.save(),
                _ = look.tick() => {
                    if must_reopen(&opened, &system_journal_directories()) {
                        reopen = true;
                        break false;
                    }
                }
                _ = stop.changed() => break true,
            }
        };
        let _ = child.start_kill();
        let exit = child.wait().await;
        cursor.save();
        if stopping {
            return Ok(());
        }
        if reopen {
            // Not a failure: read on from the cursor, at once, in the new directory too.
            tracing::info!(
                "journal: a journal directory appeared; reopening the journal after the last record read"
            );
            stats.restarts.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt as _;
            let _ = e.read_to_string(&mut stderr).await;
        }
        let why = format!(
            "journalctl ended ({}): {}",
            exit.map_or_else(|e| e.to_string(), |s| s.to_string()),
            stderr.trim()
        );
        tracing::warn!("{why}; restarting in {backoff:?}");
        stats.set_error(why);
        stats.restarts.fetch_add(1, Ordering::Relaxed);
        stats.state.store(RESTARTING, Ordering::Relaxed);
        if wait_or_stop(&mut stop, backoff).await {
            return Ok(());
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Sleep, or return true at once if the agent is stopping.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// One line of journalctl's output; false when the pipeline has closed.
async fn record(
    line: &[u8],
    stories: &mut LoginStories,
    cursor: &mut Cursor,
    stats: &JournalStats,
    tx: &mpsc::Sender<Input>,
) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.is_empty() {
        return true;
    }
    let parsed = if line.len() > MAX_RECORD {
        Err(format!(
            "record of {} bytes is larger than {MAX_RECORD}",
            line.len()
        ))
    } else {
        parse_entry(line).map_err(|e| e.to_string())
    };
    let entry = match parsed {
        Ok(entry) => entry,
        Err(error) => {
            let n = stats.malformed.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= 10 || n.is_power_of_two() {
                tracing::warn!(%error, malformed = n, "journal record skipped");
            }
            return true;
        }
    };
    stats.records.fetch_add(1, Ordering::Relaxed);
    cursor.last = Some(entry.cursor.clone());
    let login = stories.push(&entry);
    let counters = stories.counters();
    stats.recognised.store(counters.recognised, Ordering::Relaxed);
    stats.logins.store(counters.logins, Ordering::Relaxed);
    match login {
        Some(login) => tx.send(Input::Journal(Box::new(login))).await.is_ok(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cursor: Option<&str>) -> Vec<String> {
        let settings = JournalSettings {
            journalctl: PathBuf::from("journalctl"),
            state_dir: PathBuf::from("/nonexistent"),
            since_unix_s: 1_700_000_000,
        };
        command(&settings, cursor)
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_resume_reads_everything_after_the_cursor() {
        let resumed = args(Some("s=1;i=2"));
        assert!(
            resumed.contains(&"--after-cursor=s=1;i=2".to_owned()),
            "{resumed:?}"
        );
        assert!(resumed.contains(&"--no-tail".to_owned()), "{resumed:?}");
        assert!(!resumed.iter().any(|a| a.starts_with("--since")), "{resumed:?}");
    }

    #[test]
    fn a_journal_directory_that_appears_or_is_replaced_reopens_the_journal() {
        let root = std::env::temp_dir().join(format!("wt-journal-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let roots = [root.as_path(), Path::new("/nonexistent/journal")];
        let none = journal_directories(&roots);
        assert!(none.is_empty());
        let machine = root.join("3d1219c7c4c5404aaa1f6d2a48adfda4");
        std::fs::create_dir(&machine).unwrap();
        // A file beside the directories is not a journal directory.
        std::fs::write(root.join("stray"), b"x").unwrap();
        let one = journal_directories(&roots);
        assert_eq!(one.len(), 1);
        assert!(must_reopen(&none, &one), "a journal appeared");
        assert!(!must_reopen(&one, &one));
        assert!(
            !must_reopen(&one, &none),
            "a journal removed: nothing new to read"
        );
        // Removed and made again (a new inode): journalctl still holds the old one.
        let keep = root.join("keep-inode-busy");
        std::fs::rename(&machine, &keep).unwrap();
        std::fs::create_dir(&machine).unwrap();
        let again: BTreeSet<_> = journal_directories(&roots)
            .into_iter()
            .filter(|(p, _)| *p == machine)
            .collect();
        assert!(must_reopen(&one, &again));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_first_start_begins_at_the_agent_start() {
        let first = args(None);
        assert!(first.contains(&"--since=@1700000000".to_owned()), "{first:?}");
        assert!(first.contains(&"--no-tail".to_owned()), "{first:?}");
        assert!(first.contains(&"SYSLOG_IDENTIFIER=sshd".to_owned()), "{first:?}");
    }
}
