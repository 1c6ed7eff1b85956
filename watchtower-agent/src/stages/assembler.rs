//! The assembler stage: kernel records (and sessions adopted at start-up) into
//! events ([`crate::assemble`]). Everything else that comes in (the journal's
//! logins, the clock, requests for health records) is passed on to the
//! reconciler in the order it came, so the reconciler sees one ordered stream.

use tokio::sync::mpsc;

use crate::assemble::{Assembler, AssemblerState};
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

/// Run until the inputs close (or the reconciler stopped).
pub async fn run(mut rx: mpsc::Receiver<Input>, tx: mpsc::Sender<Assembled>) -> anyhow::Result<()> {
    let mut assembler = Assembler::new(ProcFs);
    while let Some(input) = rx.recv().await {
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
        if matches!(&message, Assembled::Events(out) if out.is_empty()) {
            continue;
        }
        if tx.send(message).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
