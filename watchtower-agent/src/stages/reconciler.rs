//! The reconciler stage: stamps every event ([`crate::stamp`]), in the order it is
//! output, and cross-checks each login the kernel saw with the journal's account of
//! it ([`crate::reconcile`]), emitting the verdicts; it also builds the health
//! records ([`crate::health`]).
//!
//! Verdicts follow the events of the input that reached them; on `shutdown` the
//! logins still waiting get their verdict before the last health record.

use tokio::sync::mpsc;

use crate::clock;
use crate::event::{Event, EventBody, LoginVerdict};
use crate::health::HealthSources;
use crate::reconcile::Reconciler;
use crate::stages::assembler::Assembled;
use crate::stamp::Stamper;

/// Run until the assembler's output closes (or the output stopped). `reconciler`
/// is `None` when the journal is not followed.
pub async fn run(
    mut rx: mpsc::Receiver<Assembled>,
    tx: mpsc::Sender<Event>,
    mut stamper: Stamper,
    mut reconciler: Option<Reconciler>,
    health: HealthSources,
) -> anyhow::Result<()> {
    let mut verdicts = Vec::new();
    while let Some(message) = rx.recv().await {
        let out = match message {
            Assembled::Events(out) => out,
            Assembled::Journal(login) => {
                if let Some(reconciler) = &mut reconciler {
                    reconciler.journal(*login, &mut verdicts);
                }
                Vec::new()
            }
            Assembled::Tick => {
                if let Some(reconciler) = &mut reconciler {
                    let now = clock::boot_to_unix_ns(clock::boottime_ns());
                    reconciler.expire(now, || health.journal_readable(), &mut verdicts);
                }
                Vec::new()
            }
            Assembled::Health { reason, assembler } => {
                if reason == "shutdown"
                    && let Some(reconciler) = &mut reconciler
                {
                    reconciler.flush(&mut verdicts);
                }
                let verdict_events = std::mem::take(&mut verdicts);
                if !send_verdicts(&mut stamper, &tx, verdict_events).await? {
                    return Ok(());
                }
                let record = health.record(reason, assembler, reconciler.as_ref().map(Reconciler::counters));
                vec![(clock::boottime_ns(), EventBody::AgentHealth(Box::new(record)))]
            }
        };
        for (ktime, body) in out {
            let event = stamper.stamp(ktime, body)?;
            if let (EventBody::LoginAttempt(attempt), Some(reconciler)) = (&event.body, &mut reconciler) {
                reconciler.journal_readable(health.journal_readable());
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
