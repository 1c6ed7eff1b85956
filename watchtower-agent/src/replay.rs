//! `watchtower-agent replay FILE`: decode and assemble a file written with
//! `--record-raw` ([`crate::raw_file`]) and print the events as JSON lines. No
//! privileges needed; /proc facts such as loginuid are left out
//! ([`NoProcessInfo`]), and the events are not stamped.

use std::path::Path;

use anyhow::Context as _;

use crate::assemble::Assembler;
use crate::decode::decode;
use crate::host_lookup::NoProcessInfo;
use crate::raw_file::split_raw;

pub fn run(file: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (records, torn) = split_raw(&data);
    let mut assembler = Assembler::new(NoProcessInfo);
    let mut out = Vec::new();
    let mut rejected = 0u64;
    for record in records {
        match decode(record) {
            Ok(record) => assembler.push(record, &mut out),
            Err(error) => {
                rejected += 1;
                tracing::warn!(%error, "record rejected");
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::with_capacity(1024);
    for (_, body) in out {
        crate::stages::stdout::json_line(&body, &mut line)?;
        stdout.write_all(&line)?;
    }
    if let Some(at) = torn {
        tracing::warn!(offset = at, "the file ends in a torn record");
    }
    if rejected > 0 {
        tracing::warn!(rejected, "records rejected by the decoder");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use crate::event::Outcome::{Failure, Success};

    /// Raw records captured on kernel 6.18 / OpenSSH 9.2 / Debian 12 with
    /// `--record-raw`: a password login running `id` and a TCP connect to port 2399,
    /// a wrong password, then a public-key login running `su -c 'id -un' wt_bob`.
    /// Captured with the 64-byte record header; its records were given the 72-byte
    /// header's euid, login uid and audit session as unset (what an agent writes where
    /// the kernel's layout is unknown) when the header grew, and empty environment
    /// slots when exec records gained them.
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
