//! The log-witness stage: at intervals, asks the server to prove its log (the
//! latest signed checkpoint, consistency with the last one this agent verified,
//! the inclusion of this agent's receipts) and checks the answer with
//! [`crate::log_witness`]. A finding is logged as an error here and reported in
//! every health record after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use watchtower_proto::pb::ingest_client::IngestClient;

use super::sender::{ServerLink, connect, tls_of};
use crate::log_witness::LogWitness;

/// Stage: check the server's log every `every` until `stop` is set, then save
/// the witness's state.
pub async fn run(
    link: ServerLink,
    witness: Arc<Mutex<LogWitness>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let tls = tls_of(&link)?;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        let Some(request) = witness.lock().expect("log witness lock").request() else {
            continue;
        };
        let reply = async {
            let channel = connect(&link, &tls).await?;
            let reply = IngestClient::new(channel).witness(request).await?;
            anyhow::Ok(reply.into_inner())
        };
        let reply = match tokio::time::timeout(Duration::from_secs(30), reply).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!("cannot witness the server's log now: {e:#}");
                continue;
            }
            Err(_) => {
                tracing::debug!("the server's log witness answer timed out");
                continue;
            }
        };
        let checked = {
            let witness = witness.clone();
            tokio::task::spawn_blocking(move || witness.lock().expect("log witness lock").check(&reply))
                .await?
        };
        match checked {
            Ok(findings) => {
                for finding in findings {
                    tracing::error!(
                        kind = finding.kind,
                        "the server's tamper-evidence log failed a check: {} (this agent checks it no more; \
                         remove log-witness.json in the state directory once investigated)",
                        finding.detail
                    );
                }
            }
            Err(e) => tracing::error!("cannot keep the log witness's state: {e:#}"),
        }
    }
    let witness = witness.clone();
    tokio::task::spawn_blocking(move || witness.lock().expect("log witness lock").save()).await?
}
