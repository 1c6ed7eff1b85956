//! The stdout stage (`--stdout` without a server): one JSON object per line,
//! flushed whenever the stage has caught up.

use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::event::Event;

/// The output stage: one JSON object per line on stdout, flushed whenever the
/// stage has caught up.
pub async fn run(mut rx: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut line = Vec::with_capacity(1024);
    while let Some(event) = rx.recv().await {
        let mut next = Some(event);
        while let Some(event) = next {
            json_line(&event, &mut line)?;
            stdout.write_all(&line).await?;
            next = rx.try_recv().ok();
        }
        stdout.flush().await?;
    }
    stdout.flush().await?;
    Ok(())
}

/// `value` as one JSON line (ending in a newline) in `line`, which is cleared first:
/// the one JSON-lines form of the agent's output (`--stdout`, the spool writer's
/// echo, `replay`).
pub fn json_line(value: &impl serde::Serialize, line: &mut Vec<u8>) -> serde_json::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, value)?;
    line.push(b'\n');
    Ok(())
}
