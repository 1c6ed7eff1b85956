//! Canonical JSON: the one byte string a JSON value is hashed as.
//!
//! Objects have their keys sorted (by code point), there is no whitespace,
//! strings escape `"`, `\` and the control characters below U+0020 (as `\b`,
//! `\f`, `\n`, `\r`, `\t`, else `\u00xx` in lower case) and nothing else, and
//! numbers are integers written in decimal. This is exactly what Python's
//! `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
//! writes, so an auditor needs no library of ours to recompute a hash.

use std::io::Write as _;

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("canonical JSON holds integers only, not {0}")]
pub struct NotCanonical(pub String);

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, NotCanonical> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value)?;
    Ok(out)
}

fn write(out: &mut Vec<u8>, value: &Value) -> Result<(), NotCanonical> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(NotCanonical(n.to_string()));
            }
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // serde_json's map is usually sorted already (a BTreeMap unless a crate
            // asks for insertion order): sort only when it is not.
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                write(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Runs of bytes that need no escape are copied whole. Every byte of a multi-byte
    // UTF-8 character is 0x80 or above, so only ASCII bytes are ever escaped.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &Value) -> String {
        String::from_utf8(to_vec(value).unwrap()).unwrap()
    }

    #[test]
    fn keys_are_sorted_at_every_depth_and_there_is_no_whitespace() {
        let value = json!({"b": 1, "a": {"z": [true, null], "y": "x"}, "A": -3});
        assert_eq!(text(&value), r#"{"A":-3,"a":{"y":"x","z":[true,null]},"b":1}"#);
    }

    #[test]
    fn strings_escape_exactly_what_python_escapes() {
        // Python: json.dumps("q\"\\\b\f\n\r\t\x01\x1f\x7fé😀", ensure_ascii=False)
        let value = json!("q\"\\\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é😀");
        assert_eq!(
            text(&value),
            "\"q\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}é😀\""
        );
    }

    #[test]
    fn big_integers_stay_exact_and_floats_are_refused() {
        assert_eq!(text(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(text(&json!(i64::MIN)), "-9223372036854775808");
        assert!(to_vec(&json!(1.5)).is_err());
    }
}
