//! The assembler stage: kernel records (and sessions adopted at start-up) into
//! events ([`crate::assemble`]). Everything else that comes in (the journal's
//! logins, the clock, requests for health records) is passed on to the
//! reconciler in the order it came, so the reconciler sees one ordered stream.

use tokio::sync::mpsc;

use crate::assemble::{Assembler, AssemblerState, LiveSession};
use crate::clock;
use crate::decode::KernelRecord;
use crate::event::EventBody;
use crate::host_lookup::ProcFs;

/// Messages into the assembler stage.
pub enum Input {
    Records(Vec<KernelRecord>),
    /// Emit a health record (`start`, `periodic`, `shutdown`).
    Health(&'static str),
    /// Sessions found running at start-up.
    Adopt(Vec<crate::adopt::AdoptedSession>),
    /// Sessions an earlier agent followed, when its probes are resumed.
    Resume(Vec<LiveSession>),
    /// A login the journal told of.
    Journal(Box<watchtower_journal::JournalLogin>),
    /// Time passes: close the reconciliation window on old logins.
    Tick,
}

/// Messages from the assembler to the reconciler stage.
pub enum Assembled {
    /// The events one input completed (not yet stamped), each with the kernel
    /// time it happened at.
    Events(Vec<(u64, EventBody)>),
    /// A login the journal told of.
    Journal(Box<watchtower_journal::JournalLogin>),
    /// Time passes.
    Tick,
    /// Emit a health record, with the assembler's state at this point.
    Health {
        reason: &'static str,
        assembler: AssemblerState,
    },
}

/// The sessions the assembler follows, kept in the state directory for an agent
/// that resumes the probes ([`crate::pins`]): written whenever a session begins or
/// ends, and at each tick when only their counts changed (so a session's counts
/// may miss up to a second of activity across a crash).
pub struct SessionsFile {
    path: std::path::PathBuf,
}

impl SessionsFile {
    #[must_use]
    pub fn in_dir(state_dir: &std::path::Path) -> SessionsFile {
        SessionsFile {
            path: state_dir.join("sessions.json"),
        }
    }

    /// The sessions kept (none when the file is missing or unreadable).
    #[must_use]
    pub fn read(&self) -> Vec<LiveSession> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        serde_json::from_str(&text).unwrap_or_else(|error| {
            tracing::warn!(%error, path = %self.path.display(), "ignoring unreadable kept sessions");
            Vec::new()
        })
    }

    fn write(&self, sessions: &[LiveSession]) {
        let partial = self.path.with_extension("json.partial");
        let written = serde_json::to_vec(sessions)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&partial, bytes))
            .and_then(|()| std::fs::rename(&partial, &self.path));
        if let Err(error) = written {
            tracing::warn!(%error, path = %self.path.display(), "cannot keep the sessions");
        }
    }
}

/// Run until the inputs close (or the reconciler stopped); the sessions followed
/// are kept in `sessions_file` when given.
pub async fn run(
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Assembled>,
    sessions_file: Option<SessionsFile>,
) -> anyhow::Result<()> {
    let mut assembler = Assembler::new(ProcFs);
    while let Some(input) = rx.recv().await {
        let tick = matches!(input, Input::Tick);
        let message = match input {
            Input::Records(records) => {
                let mut out = Vec::new();
                for record in records {
                    assembler.push(record, &mut out);
                }
                Assembled::Events(out)
            }
            Input::Adopt(sessions) => {
                let mut out = Vec::new();
                let now = clock::boottime_ns();
                for session in &sessions {
                    assembler.adopt(session, now, &mut out);
                }
                Assembled::Events(out)
            }
            Input::Resume(sessions) => {
                tracing::info!(
                    sessions = sessions.len(),
                    "following on the sessions of the previous agent"
                );
                assembler.resume(sessions);
                Assembled::Events(Vec::new())
            }
            Input::Journal(login) => Assembled::Journal(login),
            Input::Tick => Assembled::Tick,
            Input::Health(reason) => Assembled::Health {
                reason,
                assembler: AssemblerState {
                    counters: assembler.counters(),
                    open_sessions: assembler.open_sessions() as u64,
                },
            },
        };
        if let Some(file) = &sessions_file {
            let (changed, counted) = assembler.take_session_changes();
            if changed || (counted && tick) {
                file.write(&assembler.live_sessions());
            } else if counted {
                // Counts alone wait for the next tick.
                assembler.note_counted();
            }
        }
        if matches!(&message, Assembled::Events(out) if out.is_empty()) {
            continue;
        }
        if tx.send(message).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
