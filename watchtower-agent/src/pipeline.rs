//! The agent's stages, connected by bounded channels:
//! ring buffer reader (+ decoder) -> session assembler (+ stamping) -> output.
//!
//! A slow output back-pressures the assembler and the reader; the ring buffer
//! then fills and the kernel counts what it cannot take: loss is never silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{MapData, RingBuf};
use tokio::io::{AsyncWriteExt as _, unix::AsyncFd};
use tokio::sync::{mpsc, watch};

use crate::assemble::{Assembler, ProcFs};
use crate::clock;
use crate::decode::{KernelRecord, decode};
use crate::event::{AgentHealth, Event, EventBody};
use crate::probes::KernelCounters;
use crate::reconcile::{LoginVerdict, Reconciler};
use crate::seq::SeqAllocator;

/// Messages into the assembler stage.
pub enum Input {
    Records(Vec<KernelRecord>),
    /// Emit a health record (`start`, `periodic`, `shutdown`).
    Health(&'static str),
    /// Sessions found running at start-up.
    Adopt(Vec<crate::adopt::AdoptedSession>),
    /// A login the journal told of.
    Journal(Box<watchtower_journal::JournalLogin>),
    /// Time passes: close the reconciliation window on old logins.
    Tick,
}

/// Counters of the reader stage.
#[derive(Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
}

const BATCH: usize = 256;

/// Read the ring buffer until `stop` turns true; then drain what is left and
/// return.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Input>,
    stats: Arc<ReaderStats>,
    mut stop: watch::Receiver<bool>,
    mut raw: Option<RawRecorder>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring
    // buffer, and as_raw_fd always returns that same descriptor.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)? };
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &tx, &stats, raw.as_mut()).await;
                guard.clear_ready();
                false
            }
            _ = stop.changed() => true,
        };
        if stopping {
            drain(fd.get_mut(), &tx, &stats, raw.as_mut()).await;
            if let Some(raw) = raw.as_mut() {
                raw.flush();
            }
            return Ok(());
        }
    }
}

/// Writes every raw kernel record to a file (`u32` little-endian length, then the
/// bytes), for replay with `watchtower-agent replay` and for bug reports.
pub struct RawRecorder {
    file: std::io::BufWriter<std::fs::File>,
    failed: bool,
}

impl RawRecorder {
    pub fn create(path: &std::path::Path) -> std::io::Result<RawRecorder> {
        Ok(RawRecorder {
            file: std::io::BufWriter::new(std::fs::File::create(path)?),
            failed: false,
        })
    }

    fn write(&mut self, record: &[u8]) {
        use std::io::Write as _;
        if self.failed {
            return;
        }
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes();
        if let Err(error) = self
            .file
            .write_all(&len)
            .and_then(|()| self.file.write_all(record))
        {
            tracing::error!(%error, "raw record file failed; no longer recording");
            self.failed = true;
        }
    }

    fn flush(&mut self) {
        use std::io::Write as _;
        if let Err(error) = self.file.flush() {
            tracing::error!(%error, "raw record file failed to flush");
        }
    }
}

/// Split a raw record file into its records; a torn tail is reported, not fatal.
#[must_use]
pub fn split_raw(data: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let Some(len) = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        else {
            return (records, Some(at));
        };
        let Some(record) = data.get(at + 4..at + 4 + len) else {
            return (records, Some(at));
        };
        records.push(record);
        at += 4 + len;
    }
    (records, None)
}

async fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Input>,
    stats: &ReaderStats,
    mut raw: Option<&mut RawRecorder>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(item) = ring.next() else { break };
        stats.records.fetch_add(1, Ordering::Relaxed);
        if let Some(raw) = raw.as_deref_mut() {
            raw.write(&item);
        }
        match decode(&item) {
            Ok(record) => batch.push(record),
            Err(error) => {
                let n = stats.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(%error, rejected = n, "kernel record rejected");
                }
            }
        }
        drop(item);
        if batch.len() >= BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(Input::Records(full)).await.is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Input::Records(batch)).await;
    }
}

/// Gives each event its identity and wall-clock time.
pub struct Stamper {
    pub host_id: String,
    pub boot_id: String,
    pub seq: SeqAllocator,
}

impl Stamper {
    pub fn stamp(&mut self, ktime_ns: u64, body: EventBody) -> std::io::Result<Event> {
        let unix_ns = clock::boot_to_unix_ns(ktime_ns);
        Ok(Event {
            host_id: self.host_id.clone(),
            boot_id: self.boot_id.clone(),
            seq: self.seq.next()?,
            time: clock::rfc3339(unix_ns),
            time_unix_ns: unix_ns,
            body,
        })
    }
}

/// Static facts reported in every health record.
pub struct HealthContext {
    pub scope: &'static str,
    pub probes: Vec<String>,
    /// `kernel+journal`, `kernel` or `journal`.
    pub mode: &'static str,
    pub kernel_unavailable: Option<String>,
}

/// The kernel witness, when it runs.
pub struct KernelWitness {
    pub counters: KernelCounters,
    pub reader: Arc<ReaderStats>,
}

/// The journal witness: following (with the reconciler), or why not.
pub enum JournalWitness {
    Following {
        stats: Arc<crate::journal::JournalStats>,
        reconciler: Reconciler,
    },
    Unavailable(String),
}

/// The assembler stage: kernel records and journal logins in, stamped events out.
pub async fn assemble(
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Event>,
    mut stamper: Stamper,
    kernel: Option<KernelWitness>,
    mut journal: JournalWitness,
    context: HealthContext,
) -> anyhow::Result<()> {
    let mut assembler = Assembler::new(ProcFs);
    let mut out = Vec::new();
    let mut verdicts = Vec::new();
    let resumed_after = stamper.seq.resumed_after();
    while let Some(input) = rx.recv().await {
        match input {
            Input::Records(records) => {
                for record in records {
                    assembler.push(record, &mut out);
                }
            }
            Input::Adopt(sessions) => {
                let now = clock::boottime_ns();
                for session in &sessions {
                    assembler.adopt(session, now, &mut out);
                }
            }
            Input::Journal(login) => {
                if let JournalWitness::Following { reconciler, .. } = &mut journal {
                    reconciler.journal(*login, &mut verdicts);
                }
            }
            Input::Tick => {
                if let JournalWitness::Following { reconciler, .. } = &mut journal {
                    let now = clock::boot_to_unix_ns(clock::boottime_ns());
                    reconciler.expire(now, crate::journal::journald_accepting, &mut verdicts);
                }
            }
            Input::Health(reason) => {
                if reason == "shutdown"
                    && let JournalWitness::Following { reconciler, .. } = &mut journal
                {
                    reconciler.flush(&mut verdicts);
                }
                let verdict_events = std::mem::take(&mut verdicts);
                if !send_verdicts(&mut stamper, &tx, verdict_events).await? {
                    return Ok(());
                }
                let health = health(
                    reason,
                    &assembler,
                    kernel.as_ref(),
                    &journal,
                    &context,
                    resumed_after,
                );
                out.push((clock::boottime_ns(), EventBody::AgentHealth(health)));
            }
        }
        for (ktime, body) in out.drain(..) {
            let event = stamper.stamp(ktime, body)?;
            if let (EventBody::LoginAttempt(attempt), JournalWitness::Following { reconciler, .. }) =
                (&event.body, &mut journal)
            {
                reconciler.kernel(event.seq, event.time_unix_ns, attempt, &mut verdicts);
            }
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
        let verdict_events = std::mem::take(&mut verdicts);
        if !send_verdicts(&mut stamper, &tx, verdict_events).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// Stamp and send verdicts (timed when they were reached); false when the output closed.
async fn send_verdicts(
    stamper: &mut Stamper,
    tx: &mpsc::Sender<Event>,
    verdicts: Vec<LoginVerdict>,
) -> anyhow::Result<bool> {
    for verdict in verdicts {
        let event = stamper.stamp(clock::boottime_ns(), EventBody::LoginVerdict(Box::new(verdict)))?;
        if tx.send(event).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn health(
    reason: &'static str,
    assembler: &Assembler<ProcFs>,
    kernel: Option<&KernelWitness>,
    journal: &JournalWitness,
    context: &HealthContext,
    resumed_after: Option<u64>,
) -> AgentHealth {
    let (journal_health, verdicts) = match journal {
        JournalWitness::Following { stats, reconciler } => (stats.health(), Some(reconciler.counters())),
        JournalWitness::Unavailable(why) => (crate::journal::unavailable(why), None),
    };
    AgentHealth {
        reason,
        mode: context.mode,
        kernel_unavailable: context.kernel_unavailable.clone(),
        journal: Some(journal_health),
        verdicts,
        scope: context.scope,
        probes: if reason == "start" {
            context.probes.clone()
        } else {
            Vec::new()
        },
        lost: kernel.map(|k| k.counters.lost()).unwrap_or_default(),
        out_of_scope: kernel.map(|k| k.counters.out_of_scope()).unwrap_or_default(),
        decode_errors: kernel.map_or(0, |k| k.reader.decode_errors.load(Ordering::Relaxed)),
        records: kernel.map_or(0, |k| k.reader.records.load(Ordering::Relaxed)),
        pam_orphans: assembler.counters().pam_orphans,
        open_sessions: assembler.open_sessions() as u64,
        resumed_after_seq: if reason == "start" { resumed_after } else { None },
    }
}

/// The output stage: one JSON object per line on stdout, flushed whenever the
/// stage has caught up.
pub async fn write_stdout(mut rx: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut line = Vec::with_capacity(1024);
    while let Some(event) = rx.recv().await {
        let mut next = Some(event);
        while let Some(event) = next {
            line.clear();
            serde_json::to_writer(&mut line, &event)?;
            line.push(b'\n');
            stdout.write_all(&line).await?;
            next = rx.try_recv().ok();
        }
        stdout.flush().await?;
    }
    stdout.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::{Assembler, NoProcessInfo};
    use crate::event::Outcome::{Failure, Success};

    /// Raw records captured on kernel 6.18 / OpenSSH 9.2 / Debian 12 with
    /// `--record-raw`: a password login running `id` and a TCP connect to port 2399,
    /// a wrong password, then a public-key login running `su -c 'id -un' wt_bob`.
    const CAPTURED: &[u8] = include_bytes!("../tests/fixtures/ssh_login_failed_login_su.raw");

    fn replay() -> Vec<EventBody> {
        let (records, torn) = split_raw(CAPTURED);
        assert_eq!(torn, None);
        let mut assembler = Assembler::new(NoProcessInfo);
        let mut out = Vec::new();
        for record in records {
            assembler.push(decode(record).expect("every captured record decodes"), &mut out);
        }
        assert_eq!(assembler.open_sessions(), 0, "every session was closed");
        out.into_iter().map(|(_, e)| e).collect()
    }

    #[test]
    fn captured_logins_assemble_into_the_expected_events() {
        let events = replay();
        let logins: Vec<_> = events.iter().filter_map(EventBody::as_login_attempt).collect();
        let summary: Vec<_> = logins
            .iter()
            .map(|a| {
                (
                    a.service.as_str(),
                    a.user.as_str(),
                    a.outcome,
                    a.pam_code_name,
                    a.authenticate_code,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("sshd", "wt_alice", Success, "PAM_SUCCESS", Some(0)),
                ("sshd", "wt_alice", Failure, "PAM_AUTH_ERR", Some(7)),
                ("sshd", "wt_alice", Success, "PAM_SUCCESS", None),
                ("su", "wt_bob", Success, "PAM_SUCCESS", Some(0)),
            ]
        );
        assert!(
            logins[..3]
                .iter()
                .all(|a| a.remote_host.as_deref() == Some("127.0.0.1"))
        );
        assert_eq!(logins[3].remote_user.as_deref(), Some("wt_alice"));

        let starts: Vec<_> = events.iter().filter_map(EventBody::as_session_start).collect();
        assert_eq!(starts.len(), 3);
        assert_eq!(
            starts[2].parent_session,
            Some(starts[1].session),
            "su is a child of the second ssh login"
        );
        assert_eq!(logins[3].from_session, Some(starts[1].session));

        let execs: Vec<_> = events
            .iter()
            .filter_map(|e| {
                if let EventBody::Exec(x) = e {
                    Some((x.session, x.filename.as_str(), x.session_user.clone()))
                } else {
                    None
                }
            })
            .collect();
        let bob = Some("wt_bob".to_string());
        let alice = Some("wt_alice".to_string());
        assert_eq!(
            execs,
            vec![
                (Some(starts[0].session), "/bin/bash", alice.clone()),
                (Some(starts[0].session), "/usr/bin/id", alice.clone()),
                (Some(starts[1].session), "/bin/bash", alice.clone()),
                (Some(starts[1].session), "/usr/bin/su", alice),
                (Some(starts[2].session), "/bin/bash", bob.clone()),
                (Some(starts[2].session), "/usr/bin/id", bob),
            ]
        );
        let tcp: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                EventBody::Connect(c) if c.family == "inet" => {
                    Some((c.session, c.address.as_str(), c.port, c.result))
                }
                _ => None,
            })
            .collect();
        assert_eq!(tcp, vec![(Some(starts[0].session), "127.0.0.1", Some(2399), 0)]);

        let ends: Vec<_> = events
            .iter()
            .filter_map(|e| {
                if let EventBody::SessionEnd(s) = e {
                    Some((s.session, s.execs))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            ends,
            vec![
                (starts[0].session, 2),
                (starts[2].session, 2),
                (starts[1].session, 4)
            ]
        );
    }

    #[test]
    fn torn_and_corrupted_raw_files_are_reported_not_fatal() {
        let (records, torn) = split_raw(&CAPTURED[..CAPTURED.len() - 10]);
        assert!(torn.is_some());
        assert!(!records.is_empty());
        let mut corrupted = CAPTURED.to_vec();
        corrupted[4] = 0xee; // the first record's kind
        let (records, _) = split_raw(&corrupted);
        assert!(decode(records[0]).is_err());
    }
}
