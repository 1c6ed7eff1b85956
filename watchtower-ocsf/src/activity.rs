//! What a login did: a program run is OCSF Process Activity (1007) Launch, an
//! outbound connection Network Activity (4001) Open (Refuse or Fail when it
//! did not go through).

use std::borrow::Cow;

use serde_json::{Value, json};
use watchtower_model::{Connect, Event, Exec};

use super::{
    FAILURE, Id, NETWORK_ACTIVITY, OTHER, PROCESS_ACTIVITY, Record, SUCCESS, UNKNOWN, endpoint, extend,
    non_empty, object, process, session,
};

const LAUNCH: Id = super::id(1, "Launch");
const OPEN: Id = super::id(1, "Open");
const FAIL: Id = super::id(4, "Fail");
const REFUSE: Id = super::id(5, "Refuse");
const TRAFFIC: Id = super::id(6, "Traffic");
/// `connection_info.direction_id`.
const OUTBOUND: Id = super::id(2, "Outbound");
/// `file.type_id`.
const REGULAR_FILE: Id = super::id(1, "Regular File");

/// A connect's results (`-errno`) that name themselves: under way (a
/// non-blocking connect, counted as made) and refused.
const EINPROGRESS: i64 = -115;
const ECONNREFUSED: i64 = -111;

/// The login an exec or a connect belongs to, as the actor's `session` and `user`.
fn attribute(r: &mut Record, event: &Event, key: Option<u64>, user: Option<&str>) {
    if let Some(key) = key {
        r.actor("session", session(event, key));
    }
    r.actor(
        "user",
        json!(user.and_then(non_empty).map(|name| json!({ "name": name }))),
    );
}

/// A failed call's `status_code`: the errno's name, or the result's number.
fn status_code(result: i64, error: Option<&str>) -> Value {
    match error.and_then(non_empty) {
        Some(name) => json!(name),
        None if result != 0 => json!(result.to_string()),
        None => Value::Null,
    }
}

/// `argv` as one command line: the arguments joined with spaces, each one that
/// is empty or holds white space, a quote or a backslash in double quotes (with
/// `"` and `\` escaped by a backslash).
pub(super) fn cmd_line(argv: &[String]) -> String {
    argv.iter()
        .map(String::as_str)
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &str) -> Cow<'_, str> {
    let plain =
        !arg.is_empty() && !arg.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if plain {
        return Cow::Borrowed(arg);
    }
    let mut quoted = String::with_capacity(arg.len() + 2);
    quoted.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Cow::Owned(quoted)
}

/// An exec: `process` is the program it ran (its file, command line, the
/// caller's pid, parent, user and group), `actor.process` the process that
/// called exec, named as it was then.
pub(super) fn exec(event: &Event, e: &Exec) -> Record {
    let mut r = Record::new(PROCESS_ACTIVITY, LAUNCH);
    let ran = e.result == 0;
    r.status(if ran { SUCCESS } else { FAILURE });
    r.set("status_code", status_code(e.result, e.error.as_deref()));
    let name = e.filename.rsplit('/').next().unwrap_or_default();
    let file_type = if ran { REGULAR_FILE } else { UNKNOWN };
    let file = non_empty(&e.filename).map(|path| {
        json!({
            "name": name,
            "path": path,
            "type_id": file_type.id,
            "type": file_type.name,
        })
    });
    let cmd_line = if e.argv.is_empty() {
        e.filename.clone()
    } else {
        cmd_line(&e.argv)
    };
    let mut target = e.process.as_ref().map_or_else(|| object([]), process);
    extend(
        &mut target,
        [
            ("name", json!(non_empty(name))),
            ("cmd_line", json!(non_empty(&cmd_line))),
            ("file", json!(file)),
        ],
    );
    r.set("process", target);
    if let Some(p) = &e.process {
        r.actor(
            "process",
            object([("pid", json!(p.pid)), ("name", json!(non_empty(&p.comm)))]),
        );
    }
    attribute(&mut r, event, e.session, e.session_user.as_deref());
    r.note("argv", json!(e.argv));
    r.note("argv_truncated", json!(e.argv_truncated));
    r.note("argv_incomplete", json!(e.argv_incomplete));
    r.note("result", json!((!ran).then_some(e.result)));
    r
}

/// A connect: `dst_endpoint` where it went (a unix socket's path as `name`),
/// `src_endpoint` the host, `actor.process` the process that connected.
pub(super) fn connect(event: &Event, c: &Connect) -> Record {
    let (activity, status) = match (c.via.as_deref(), c.result, c.error.as_deref()) {
        // A connect seen by the socket hook, without the system call's result.
        (Some("kernel"), _, _) => (OPEN, UNKNOWN),
        // A send: traffic, without a result.
        (Some(_), _, _) => (TRAFFIC, UNKNOWN),
        (None, 0 | EINPROGRESS, _) | (None, _, Some("EINPROGRESS")) => (OPEN, SUCCESS),
        (None, ECONNREFUSED, _) | (None, _, Some("ECONNREFUSED")) => (REFUSE, FAILURE),
        _ => (FAIL, FAILURE),
    };
    let mut r = Record::new(NETWORK_ACTIVITY, activity);
    r.status(status);
    r.set("status_code", status_code(c.result, c.error.as_deref()));
    let mut dst = match c.family.as_str() {
        "inet" | "inet6" => endpoint(&c.address),
        _ => json!({ "name": c.address }),
    };
    extend(&mut dst, [("port", json!(c.port))]);
    r.set("dst_endpoint", dst);
    r.set(
        "src_endpoint",
        json!(non_empty(&event.host_id).map(|host| json!({ "hostname": host }))),
    );
    let version = match c.family.as_str() {
        "inet" => super::id(4, "Internet Protocol version 4 (IPv4)"),
        "inet6" => super::id(6, "Internet Protocol version 6 (IPv6)"),
        "" => UNKNOWN,
        _ => OTHER,
    };
    r.set(
        "connection_info",
        json!({
            "direction_id": OUTBOUND.id,
            "direction": OUTBOUND.name,
            "protocol_ver_id": version.id,
            "protocol_ver": if version.id == OTHER.id { c.family.as_str() } else { version.name },
        }),
    );
    r.actor("process", json!(c.process.as_ref().map(process)));
    attribute(&mut r, event, c.session, c.session_user.as_deref());
    r.note("family", json!(non_empty(&c.family)));
    r.note("fd", json!(c.via.is_none().then_some(c.fd)));
    r.note("via", json!(c.via));
    r.note("result", json!((c.result != 0).then_some(c.result)));
    r
}
