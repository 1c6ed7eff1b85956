//! The ticker stage: the clock's inputs to the assembler (and on to the
//! reconciler): a periodic health record, and a tick every second that closes
//! the reconciliation window on old logins.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::stages::assembler::Input;

/// Run until the assembler's inputs close (or the task is aborted).
pub async fn run(tx: mpsc::Sender<Input>, health_interval: Duration) {
    let mut health = tokio::time::interval(health_interval);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    health.tick().await;
    loop {
        let input = tokio::select! {
            _ = health.tick() => Input::Health("periodic"),
            _ = tick.tick() => Input::Tick,
        };
        if tx.send(input).await.is_err() {
            return;
        }
    }
}
