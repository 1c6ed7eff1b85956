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
