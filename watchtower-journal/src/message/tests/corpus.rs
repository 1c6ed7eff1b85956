//! The parser over real sshd lines: ours (every line sshd 9.2 wrote here at INFO
//! and VERBOSE, keyboard-interactive on and off, with `AllowUsers`, `DenyUsers`,
//! `AllowGroups`, `DenyGroups`, `MaxAuthTries`, refused root, an expired account,
//! an empty and crafted user names), each record carrying the class it must get,
//! and fail2ban's public corpus of sshd lines (Debian's `fail2ban` package, read
//! where it is installed), whose every line's class is counted and whose expected
//! addresses and users (its `failJSON` comments) are checked.
//!
//! `WATCHTOWER_CORPUS_DUMP=1` prints each fail2ban line with its class.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::entry::parse_entry;
use crate::message::{AuthMessage, Program, parse_message};

/// Ours: `journalctl -o json` of the sshd records of one run, each with the
/// extra field `WATCHTOWER_EXPECTED_KIND` (the parser ignores unknown fields).
const OURS: &str = include_str!("../../../tests/fixtures/debian12_openssh92_info_verbose.jsonl");

/// Where Debian's fail2ban keeps its sshd test logs.
const FAIL2BAN_LOGS: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";

/// The class of a line: its message kind, or `other`.
fn kind_of(message: Option<&AuthMessage>) -> &'static str {
    message.map_or("other", AuthMessage::kind)
}

fn counts<'a>(kinds: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

#[test]
fn every_line_of_our_capture_gets_its_class() {
    let mut wrong = Vec::new();
    let mut kinds = Vec::new();
    for (n, line) in OURS.lines().enumerate() {
        let record: Value = serde_json::from_str(line).unwrap();
        let expected = record["WATCHTOWER_EXPECTED_KIND"].as_str().unwrap_or("(none)");
        let entry = parse_entry(line.as_bytes()).unwrap();
        let parsed = parse_message(Program::Sshd, &entry.message);
        let kind = kind_of(parsed.as_ref());
        if kind != expected {
            wrong.push(format!(
                "line {}: {kind} (expected {expected}): {}",
                n + 1,
                entry.message
            ));
        }
        // Every address in our capture is the client's, 127.0.0.1: none planted.
        if let Some(address) = parsed.as_ref().and_then(AuthMessage::remote_address) {
            assert_eq!(address, "127.0.0.1", "line {}: {}", n + 1, entry.message);
        }
        kinds.push(kind);
    }
    assert!(
        wrong.is_empty(),
        "{} lines misread:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let expected: BTreeMap<&str, usize> = [
        ("other", 49),
        ("pam_account_expired", 3),
        ("pam_auth_failure", 31),
        ("pam_more_failures", 1),
        ("pam_session_closed", 6),
        ("pam_session_opened", 6),
        ("sshd_accepted", 6),
        ("sshd_connection", 11),
        ("sshd_connection_closed", 25),
        ("sshd_disconnected", 6),
        ("sshd_disconnecting", 1),
        ("sshd_failed", 31),
        ("sshd_invalid_user", 11),
        ("sshd_key_found", 2),
        ("sshd_pam_account_denied", 2),
        ("sshd_pam_failure", 17),
        ("sshd_postponed", 16),
        ("sshd_received_disconnect", 6),
        ("sshd_root_login_refused", 2),
        ("sshd_too_many_attempts", 1),
        ("sshd_user_not_allowed", 7),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts(kinds.into_iter()), expected);
}

/// The message of one line of fail2ban's logs (syslog, journal short, RFC 5424).
fn syslog_message(line: &str) -> Option<&str> {
    if let Some(at) = line.find("sshd[") {
        let rest = &line[at..];
        return rest.split_once("]: ").map(|(_, m)| m);
    }
    if let Some((_, m)) = line.split_once("[sshd]: ").or_else(|| line.split_once("[sshd] ")) {
        return Some(m);
    }
    // RFC 5424: `<PRI>1 TIME HOST sshd PID MSGID SD MSG`.
    let (_, rest) = line.split_once(" sshd ")?;
    let (_pid, rest) = rest.split_once(' ')?;
    let (_msgid, rest) = rest.split_once(' ')?;
    match rest.strip_prefix("- ") {
        Some(message) => Some(message),
        None => rest.rsplit_once("] ").map(|(_, m)| m),
    }
}

/// (failJSON, message) for every log line of one fail2ban test file.
fn fail2ban_lines(text: &str) -> Vec<(Option<Value>, String)> {
    let mut out = Vec::new();
    let mut expectation = None;
    for line in text.lines() {
        if let Some(json) = line.strip_prefix("# failJSON: ") {
            expectation = Some(serde_json::from_str(json).expect("failJSON is JSON"));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let message = syslog_message(line).unwrap_or_else(|| panic!("no sshd message in {line:?}"));
        out.push((expectation.take(), message.to_string()));
    }
    out
}

/// Lines where fail2ban's expectation is not what OpenSSH's format says, and why.
const DISAGREEMENTS: &[(&str, &str)] = &[(
    // auth_log() never writes `: EXTRA` after a password method: the user name
    // is `test from 127.0.0.1 port 58946 ssh2:` and the address the last one.
    "Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from 10.10.1.2 port 55555 ssh2",
    "10.10.1.2",
)];

#[test]
fn fail2ban_corpus_classes_addresses_and_users() {
    let dir = Path::new(FAIL2BAN_LOGS);
    if !dir.join("sshd").exists() {
        let ci = std::env::var_os("CI").is_some() || running_as_root();
        assert!(
            !ci,
            "{FAIL2BAN_LOGS}/sshd is missing: `cargo xtask setup` installs fail2ban (CI and root runs need it)"
        );
        eprintln!("\n**********************************************************************");
        eprintln!("*** SKIPPED: fail2ban's sshd corpus is not installed ({FAIL2BAN_LOGS}).");
        eprintln!("*** Install it with `sudo cargo xtask setup` (apt-get install fail2ban).");
        eprintln!("**********************************************************************\n");
        return;
    }
    let mut kinds = Vec::new();
    let mut checked = 0;
    for file in ["sshd", "sshd-journal"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for (expectation, message) in fail2ban_lines(&text) {
            let parsed = parse_message(Program::Sshd, &message);
            if std::env::var_os("WATCHTOWER_CORPUS_DUMP").is_some() {
                eprintln!("CORPUS\t{}\t{message}", kind_of(parsed.as_ref()));
            }
            kinds.push(kind_of(parsed.as_ref()));
            let (Some(expectation), Some(parsed)) = (expectation, parsed) else {
                continue;
            };
            let json = serde_json::to_value(&parsed).unwrap();
            if let (Some(host), Some(address)) = (expectation["host"].as_str(), parsed.remote_address()) {
                let agreed = DISAGREEMENTS
                    .iter()
                    .find(|(line, _)| *line == message)
                    .map_or(host, |(_, ours)| *ours);
                assert_eq!(address, agreed, "{file}: {message}");
                checked += 1;
            }
            if let (Some(user), Some(ours)) = (expectation["user"].as_str(), json["user"].as_str()) {
                assert_eq!(ours, user, "{file}: {message}");
            }
        }
    }
    // fail2ban 1.0.2 (Debian 12). `other`: formats older than OpenSSH 8 (no
    // port, `ssh1`, `Disconnecting: ...`), other systems' (Solaris, macOS), and
    // lines not about authentication (key exchange, banners).
    let expected: BTreeMap<&str, usize> = [
        ("other", 141),
        ("pam_auth_failure", 12),
        ("pam_session_opened", 4),
        ("sshd_accepted", 8),
        ("sshd_connection", 8),
        ("sshd_connection_closed", 8),
        ("sshd_connection_reset", 4),
        ("sshd_disconnected", 5),
        ("sshd_disconnecting", 2),
        ("sshd_failed", 36),
        ("sshd_invalid_user", 5),
        ("sshd_pam_failure", 12),
        ("sshd_postponed", 2),
        ("sshd_received_disconnect", 7),
        ("sshd_root_login_refused", 2),
        ("sshd_too_many_attempts", 2),
        ("sshd_user_not_allowed", 19),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts(kinds.into_iter()), expected);
    assert!(checked > 50, "only {checked} addresses compared");
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}
