//! `export`: matching events as CSV (the rows of [`crate::render::row`]), JSON
//! Lines (the stored events) or OCSF (one OCSF event a line), to a file or
//! standard output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::ValueEnum;
use watchtower_model::{EventFilter, StoredEvent};

use crate::client::Client;
use crate::commands::{Filters, Period, filter_of, range};
use crate::logins::Logins;
use crate::render::row;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// The file to write (default: standard output).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub period: Period,
    /// Write a proof bundle instead (JSON: the signed checkpoint, and each matching
    /// record with its leaf entry and inclusion proof), checkable offline with
    /// `watchtowerctl verify --bundle` or a few lines of another language. Needs
    /// `--public-key` and `--output`.
    #[arg(long, requires_all = ["public_key", "output"])]
    pub proofs: bool,
    /// The log's pinned verifier key: the bundle is written only when the server's
    /// checkpoint is signed by it and the log matches it.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    /// One OCSF 1.8.0 event a line (Authentication, Process Activity, Network
    /// Activity; Base Event for verdicts and health), for a SIEM.
    Ocsf,
}

pub async fn run(args: &Args, client: &mut Client) -> anyhow::Result<()> {
    let filter = filter_of(&args.filters, range(&args.period)?)?;
    if let (true, Some(key), Some(out)) = (args.proofs, &args.public_key, &args.output) {
        let verifier = crate::commands::verify::read_key(key)?;
        let n = crate::commands::bundle::write(client, &filter, &verifier, out).await?;
        eprintln!("exported {n} records with their proofs to {}", out.display());
        return Ok(());
    }
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    if args.format == Format::Ocsf {
        return export_ocsf(client, &filter, std::io::BufWriter::new(sink)).await;
    }
    let mut writer = Exporter::new(args.format, std::io::BufWriter::new(sink));
    let mut n = 0u64;
    client
        .events(&filter, |stored| {
            writer.write(&stored)?;
            n += 1;
            Ok(true)
        })
        .await?;
    writer.flush()?;
    eprintln!("exported {n} events");
    Ok(())
}

/// Events as OCSF lines, each attributed to the login it belongs to (looked up
/// once per session).
async fn export_ocsf(client: &mut Client, filter: &EventFilter, mut sink: impl Write) -> anyhow::Result<()> {
    let mut logins = Logins::default();
    let mut token = Vec::new();
    let mut n = 0u64;
    loop {
        let (events, next) = client.page(filter, token).await?;
        for stored in &events {
            let event = logins.ocsf(client, stored).await;
            super::write_json_line(&mut sink, &event)?;
            n += 1;
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    sink.flush()?;
    eprintln!("exported {n} events");
    Ok(())
}

/// Events written one by one in a format.
enum Exporter<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> Exporter<W> {
    fn new(format: Format, sink: W) -> Self {
        match format {
            Format::Csv => Exporter::Csv(Box::new(csv::Writer::from_writer(sink))),
            // Written by `export_ocsf`, which looks up each event's login.
            Format::Jsonl | Format::Ocsf => Exporter::Jsonl(sink),
        }
    }

    fn write(&mut self, stored: &StoredEvent) -> anyhow::Result<()> {
        match self {
            Exporter::Csv(writer) => writer.serialize(row(stored))?,
            Exporter::Jsonl(sink) => super::write_json_line(sink, stored)?,
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Exporter::Csv(writer) => writer.flush()?,
            Exporter::Jsonl(sink) => sink.flush()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures;

    fn export(format: Format) -> String {
        let mut out = Vec::new();
        let mut writer = Exporter::new(format, &mut out);
        for stored in [fixtures::failed_login(), fixtures::exec()] {
            writer.write(&stored).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn two_events_as_csv() {
        assert_eq!(
            export(Format::Csv),
            "\
time,time_unix_ns,host_id,boot_id,seq,kind,user,session,remote,outcome,service,detail,received_unix_ns
2023-11-14T22:13:20.000Z,1700000000000000000,web-1,b,9,login_attempt,alice,,10.0.0.9,failure,sshd,tty=ssh PAM_AUTH_ERR at authenticate,1700000000000000001
2023-11-14T22:13:21.500Z,1700000001500000000,web-1,b,10,exec,alice,00000000000000ab,,,,id -un [/usr/bin/id],1700000001500000001
"
        );
    }

    #[test]
    fn two_events_as_json_lines() {
        let text = export(Format::Jsonl);
        assert_eq!(
            text,
            concat!(
                r#"{"event":{"host_id":"web-1","boot_id":"b","seq":9,"time_unix_ns":1700000000000000000,"body":{"login_attempt":{"service":"sshd","user":"alice","user_known":null,"remote_host":"10.0.0.9","tty":"ssh","remote_user":null,"outcome":"failure","failed_step":"authenticate","pam_code":0,"pam_code_name":"PAM_AUTH_ERR","authenticate_code":null,"account_code":null,"from_session":null,"process":null}}},"received_unix_ns":1700000000000000001,"labels":{}}"#,
                "\n",
                r#"{"event":{"host_id":"web-1","boot_id":"b","seq":10,"time_unix_ns":1700000001500000000,"body":{"exec":{"session":"00000000000000ab","session_user":"alice","filename":"/usr/bin/id","argv":["id","-un"],"argv_truncated":false,"argv_incomplete":false,"result":0,"error":null,"process":null}}},"received_unix_ns":1700000001500000001,"labels":{}}"#,
                "\n",
            )
        );
        // One object per line, each the stored event as the server sends it.
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["event"]["host_id"], "web-1");
        }
    }

    #[test]
    fn two_events_as_ocsf_lines() {
        let events: Vec<serde_json::Value> = [fixtures::failed_login(), fixtures::exec()]
            .iter()
            .map(crate::render::ocsf_event)
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["class_uid"], 3002);
        assert_eq!(events[0]["status_id"], 2);
        assert_eq!(events[0]["user"]["name"], "alice");
        assert_eq!(events[0]["src_endpoint"]["ip"], "10.0.0.9");
        assert_eq!(events[0]["metadata"]["uid"], "web-1/b/9");
        assert_eq!(
            events[0]["message"],
            "login_attempt alice 10.0.0.9 failure sshd tty=ssh PAM_AUTH_ERR at authenticate"
        );
        assert_eq!(events[1]["class_uid"], 1007);
        assert_eq!(events[1]["process"]["cmd_line"], "id -un");
        assert_eq!(events[1]["actor"]["session"]["uid"], "00000000000000ab");
        assert_eq!(events[1]["actor"]["user"]["name"], "alice");
    }
}
