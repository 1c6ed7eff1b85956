//! One journal record, as `journalctl -o json` exports it.
//!
//! journald stores two kinds of fields: those the writer chose (`MESSAGE`,
//! `SYSLOG_IDENTIFIER`) and trusted ones journald added itself from the sending
//! socket's credentials (`_PID`, `_UID`, `_COMM`, `_EXE`, underscore-prefixed).
//! A process can claim to be `sshd` in its identifier; it cannot fake `_PID` or
//! `_COMM`. Both are kept so the reconciler can tell them apart.
//!
//! The export format writes a field as a string, as an array of byte values when
//! it is not valid UTF-8, as an array of those when the field repeats, and as
//! `null` when it is larger than journalctl's field limit.

use serde_json::Value;

/// The fields of one journal record the cross-check uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// `__CURSOR`: where to resume after this record.
    pub cursor: String,
    /// `__REALTIME_TIMESTAMP`: when journald received the record (µs since the epoch).
    pub realtime_us: u64,
    /// `_BOOT_ID`, with dashes removed as journald writes it.
    pub boot_id: Option<String>,
    /// `_PID`: the sending process, from the socket's credentials (trusted).
    pub pid: Option<u32>,
    /// `_UID` (trusted).
    pub uid: Option<u32>,
    /// `_COMM` (trusted, up to 15 bytes as the kernel keeps it).
    pub comm: Option<String>,
    /// `_EXE` (trusted).
    pub exe: Option<String>,
    /// `SYSLOG_IDENTIFIER`: what the writer says it is (not trusted).
    pub identifier: Option<String>,
    /// `_TRANSPORT`: syslog, journal, stdout, kernel, driver, audit.
    pub transport: Option<String>,
    /// `MESSAGE` (lossy UTF-8 when the writer sent other bytes).
    pub message: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("the record has no {0} field")]
    Missing(&'static str),
    #[error("field {field} is not valid: {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("MESSAGE is larger than journalctl's field limit (exported as null)")]
    MessageTooLarge,
}

/// A field's value as text: strings as they are, byte arrays decoded lossily, the
/// last value of a repeated field.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(Value::as_u64)
                .map(|b| u8::try_from(b).unwrap_or(b'?'))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => items.iter().rev().find_map(text),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(
    object: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<T>, EntryError> {
    match object.get(field).and_then(text) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| EntryError::Invalid { field, value: s }),
    }
}

/// Parse one line of `journalctl -o json`.
pub fn parse_entry(line: &[u8]) -> Result<JournalEntry, EntryError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| EntryError::NotJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(EntryError::NotJson("a JSON value that is not an object".into()));
    };
    let cursor = object
        .get("__CURSOR")
        .and_then(text)
        .filter(|c| !c.is_empty())
        .ok_or(EntryError::Missing("__CURSOR"))?;
    let realtime_us =
        number(&object, "__REALTIME_TIMESTAMP")?.ok_or(EntryError::Missing("__REALTIME_TIMESTAMP"))?;
    let message = match object.get("MESSAGE") {
        None => return Err(EntryError::Missing("MESSAGE")),
        Some(Value::Null) => return Err(EntryError::MessageTooLarge),
        Some(value) => text(value).ok_or(EntryError::Invalid {
            field: "MESSAGE",
            value: value.to_string().chars().take(80).collect(),
        })?,
    };
    Ok(JournalEntry {
        cursor,
        realtime_us,
        boot_id: object.get("_BOOT_ID").and_then(text),
        pid: number(&object, "_PID")?,
        uid: number(&object, "_UID")?,
        comm: object.get("_COMM").and_then(text),
        exe: object.get("_EXE").and_then(text),
        identifier: object.get("SYSLOG_IDENTIFIER").and_then(text),
        transport: object.get("_TRANSPORT").and_then(text),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real records from systemd 252 (Debian 12): sshd through /dev/log, and a
    /// `logger -t sshd` forgery (trusted fields show the writer was logger).
    const SSHD: &str = r#"{"_PID":"22139","_UID":"0","_COMM":"sshd","SYSLOG_IDENTIFIER":"sshd","_EXE":"/usr/sbin/sshd","__REALTIME_TIMESTAMP":"1795390739989235","_BOOT_ID":"47a565868d3b4f22b9edeb556b905dba","_TRANSPORT":"syslog","MESSAGE":"Accepted password for wt_alice from 127.0.0.1 port 33744 ssh2","__CURSOR":"s=745ded710d984e878960e026c71c26e4;i=160;b=47a565868d3b4f22b9edeb556b905dba;m=15a0c5a1b;t=660e5fa4bd0f3;x=1"}"#;

    #[test]
    fn a_real_sshd_record() {
        let e = parse_entry(SSHD.as_bytes()).unwrap();
        assert_eq!(e.pid, Some(22139));
        assert_eq!(e.uid, Some(0));
        assert_eq!(e.comm.as_deref(), Some("sshd"));
        assert_eq!(e.identifier.as_deref(), Some("sshd"));
        assert_eq!(e.realtime_us, 1_795_390_739_989_235);
        assert_eq!(
            e.message,
            "Accepted password for wt_alice from 127.0.0.1 port 33744 ssh2"
        );
        assert!(e.cursor.starts_with("s=745ded71"));
    }

    #[test]
    fn binary_repeated_and_oversized_fields() {
        let binary = r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255],"SYSLOG_IDENTIFIER":["a","sshd"]}"#;
        let e = parse_entry(binary.as_bytes()).unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert_eq!(e.identifier.as_deref(), Some("sshd"));
        assert_eq!(e.pid, None);
        let null = r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":null}"#;
        assert_eq!(parse_entry(null.as_bytes()), Err(EntryError::MessageTooLarge));
    }

    #[test]
    fn malformed_records_are_errors_with_the_reason() {
        assert!(matches!(parse_entry(b"{not json"), Err(EntryError::NotJson(_))));
        assert!(matches!(parse_entry(b"[1,2]"), Err(EntryError::NotJson(_))));
        assert_eq!(
            parse_entry(br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"x"}"#),
            Err(EntryError::Missing("__CURSOR"))
        );
        assert_eq!(
            parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"soon","MESSAGE":"x"}"#),
            Err(EntryError::Invalid {
                field: "__REALTIME_TIMESTAMP",
                value: "soon".into()
            })
        );
        assert_eq!(
            parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":"x","_PID":"-3"}"#),
            Err(EntryError::Invalid {
                field: "_PID",
                value: "-3".into()
            })
        );
    }
}
