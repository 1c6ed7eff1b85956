//! Events and alerts as OCSF events (Open Cybersecurity Schema Framework,
//! schema 1.8.0), for a SIEM: pure functions from the protobuf types to
//! `serde_json::Value`s, one OCSF event each ([`event`], [`alert`]).
//!
//! | Watchtower | OCSF class (`class_uid`, category) | activity | key attributes |
//! | --- | --- | --- | --- |
//! | `login_attempt` | Authentication (3002, 3 Identity & Access Management) | 1 Logon | `status_id` 1/2 from the outcome, `status_code` the PAM code name, `status_detail` code and failed step, `user`, `is_remote`, `src_endpoint` (remote host), `service`, `auth_protocol` `PAM/<service>`, `logon_process`, `actor.session` the session it was made from (su or sudo inside a login) |
//! | `session_start` | Authentication (3002) | 1 Logon | `session` and `actor.session` (the new session: created, remote, terminal), `user` (with the loginuid) |
//! | `session_end` | Authentication (3002) | 2 Logoff | `status_detail` the reason (`closed`, `process_exited`), `session` and `actor.session`, `duration`, `start_time`/`end_time` |
//! | `exec` | Process Activity (1007, 1 System Activity) | 1 Launch | `process` (the program: `pid`, `name`, `cmd_line`, `file`, `parent_process`, `user` with its `groups`), `actor.process` (the process that called exec, by its name then), `actor.session`/`actor.user` the login, `status_code` the errno name of a failed exec |
//! | `connect` | Network Activity (4001, 4 Network Activity) | 1 Open, 5 Refuse (`ECONNREFUSED`), 4 Fail (other errors); a destination given to sendto/sendmsg (`via` `send`): 6 Traffic with `status_id` 0 Unknown | `dst_endpoint` (`ip` and `port`; a unix socket's path as `name`), `connection_info` (outbound, IP version), `actor.process`, `actor.session`/`actor.user` |
//! | alert | Detection Finding (2004, 2 Findings) | 1 Create | `finding_info` (`uid` the alert id, `title` the rule or the Sigma rule's title, `desc` the summary, `analytic`, `related_events`), `severity_id` (info 1, low 2, warning/medium 3, high 4, critical 5), `count`, `evidences` (user, source address, the seqs) |
//! | `login_verdict`, `agent_health`, an event of a kind this build does not know | Base Event (0, 0 Uncategorized) | 99 Other (`activity_name` the kind), 0 Unknown | everything in `unmapped`: the record in Watchtower's own JSON form under its kind's name |
//!
//! No OCSF class fits the journal cross-check's verdicts or the agent's health
//! records (a verdict is a fact about a login, not a detection: the alerts that
//! kernel-only and journal-only verdicts raise are the findings), so they are
//! Base Events; kernel-only and journal-only verdicts have severity 3 Medium.
//!
//! Every event has `time` (ms since the epoch), `timezone_offset` 0 (UTC),
//! `severity_id`, `type_uid` (`class_uid` × 100 + `activity_id`), the captions
//! (`class_name`, `type_name`, ...), `message` (the event's row, as a tail shows
//! it), and `metadata`: `version` 1.8.0, `product` Watchtower at this build's
//! version, `uid` the event's stable id `host/boot/seq` (`alert/<id>` for
//! alerts), `sequence` the seq, `event_code` the kind, `logged_time` when the
//! server stored it, `labels` the host's certificate labels as `key=value`, and
//! `profiles` `host` and `linux/linux_users` (a process's `euid` and `auid`, its
//! login uid). `device` is the host (`hostname` and `uid` the host id, `boot_uid` its boot);
//! `actor.session` is the login session the event is attributed to (`uid` its
//! 16 hex digits, `uid_alt` `host/boot/session`, which is unique across hosts)
//! and `actor.user` that login's user, where the event carries them.
//! What has no OCSF attribute is in `unmapped` (an object, always present), by
//! the field's name in `watchtower.proto`: `labels` (as an object),
//! the PAM return codes, `tty`, `parent_session`, `argv`, ...

mod activity;
mod auth;
mod finding;
pub mod schema_check;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use serde_json::{Map, Value, json};
use watchtower_model::{Body, Event, Outcome, Process, SessionSummary, StoredEvent, Verdict};
use watchtower_proto::VERSION;

pub use finding::alert;

/// The OCSF schema version of the events.
pub const SCHEMA_VERSION: &str = "1.8.0";

/// An OCSF class and its category.
#[derive(Clone, Copy, Debug)]
struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const fn class(uid: u32, name: &'static str, category_uid: u32, category_name: &'static str) -> Class {
    Class {
        uid,
        name,
        category_uid,
        category_name,
    }
}

const AUTHENTICATION: Class = class(3002, "Authentication", 3, "Identity & Access Management");
const PROCESS_ACTIVITY: Class = class(1007, "Process Activity", 1, "System Activity");
const NETWORK_ACTIVITY: Class = class(4001, "Network Activity", 4, "Network Activity");
const DETECTION_FINDING: Class = class(2004, "Detection Finding", 2, "Findings");
const BASE_EVENT: Class = class(0, "Base Event", 0, "Uncategorized");

/// A value of an OCSF enum attribute (`*_id`) and its caption (the sibling
/// attribute without `_id`).
#[derive(Clone, Copy, Debug)]
struct Id {
    id: u32,
    name: &'static str,
}

const fn id(id: u32, name: &'static str) -> Id {
    Id { id, name }
}

const UNKNOWN: Id = id(0, "Unknown");
const OTHER: Id = id(99, "Other");
/// `status_id` of the event classes.
const SUCCESS: Id = id(1, "Success");
const FAILURE: Id = id(2, "Failure");
/// `severity_id`.
const INFORMATIONAL: Id = id(1, "Informational");
const LOW: Id = id(2, "Low");
const MEDIUM: Id = id(3, "Medium");
const HIGH: Id = id(4, "High");
const CRITICAL: Id = id(5, "Critical");

/// One OCSF event being built: its class, activity and severity, the class's
/// own attributes, the actor, and what has no OCSF attribute.
struct Record {
    class: Class,
    activity: Id,
    severity: Id,
    attrs: Map<String, Value>,
    actor: Map<String, Value>,
    unmapped: Map<String, Value>,
}

/// What every event says about where it comes from.
struct Header<'a> {
    /// `metadata.uid`.
    uid: Option<String>,
    host_id: &'a str,
    boot_id: Option<&'a str>,
    time_unix_ns: u64,
    /// When the server stored it.
    logged_unix_ns: Option<u64>,
    sequence: Option<u64>,
    event_code: &'static str,
    /// The host's labels, sorted.
    labels: Vec<(&'a str, &'a str)>,
    message: Option<String>,
}

impl Record {
    fn new(class: Class, activity: Id) -> Self {
        Record {
            class,
            activity,
            severity: INFORMATIONAL,
            attrs: Map::new(),
            actor: Map::new(),
            unmapped: Map::new(),
        }
    }

    /// A class attribute (nothing when `value` is null).
    fn set(&mut self, key: &str, value: Value) {
        put(&mut self.attrs, key, value);
    }

    /// An attribute of `actor`.
    fn actor(&mut self, key: &str, value: Value) {
        put(&mut self.actor, key, value);
    }

    /// A field with no OCSF attribute, in `unmapped`.
    fn note(&mut self, key: &str, value: Value) {
        put(&mut self.unmapped, key, value);
    }

    fn status(&mut self, status: Id) {
        self.set("status_id", json!(status.id));
        self.set("status", json!(status.name));
    }

    /// The OCSF event: the common attributes around the class's own.
    fn finish(mut self, header: &Header<'_>) -> Value {
        let type_caption = if self.activity.id == OTHER.id {
            OTHER.name
        } else {
            self.activity.name
        };
        let labels: Vec<String> = header.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let metadata = object([
            ("version", json!(SCHEMA_VERSION)),
            (
                "product",
                json!({"name": "Watchtower", "vendor_name": "Watchtower", "version": VERSION}),
            ),
            ("uid", json!(header.uid)),
            ("sequence", json!(header.sequence)),
            ("event_code", json!(header.event_code)),
            (
                "original_time",
                json!((header.time_unix_ns != 0).then(|| format_ns(header.time_unix_ns))),
            ),
            (
                "logged_time",
                json!(header.logged_unix_ns.filter(|ns| *ns != 0).map(ms)),
            ),
            ("labels", json!((!labels.is_empty()).then_some(labels))),
            ("profiles", json!(["host", "linux/linux_users"])),
        ]);
        let mut out = Map::new();
        put(&mut out, "class_uid", json!(self.class.uid));
        put(&mut out, "class_name", json!(self.class.name));
        put(&mut out, "category_uid", json!(self.class.category_uid));
        put(&mut out, "category_name", json!(self.class.category_name));
        put(&mut out, "activity_id", json!(self.activity.id));
        put(&mut out, "activity_name", json!(self.activity.name));
        put(
            &mut out,
            "type_uid",
            json!(u64::from(self.class.uid) * 100 + u64::from(self.activity.id)),
        );
        put(
            &mut out,
            "type_name",
            json!(format!("{}: {type_caption}", self.class.name)),
        );
        put(&mut out, "time", json!(ms(header.time_unix_ns)));
        put(&mut out, "timezone_offset", json!(0));
        put(&mut out, "severity_id", json!(self.severity.id));
        put(&mut out, "severity", json!(self.severity.name));
        put(&mut out, "message", json!(header.message));
        put(&mut out, "metadata", metadata);
        let device = device(header.host_id, header.boot_id);
        let actor = if self.actor.is_empty() {
            Value::Null
        } else {
            Value::Object(std::mem::take(&mut self.actor))
        };
        put(&mut out, "device", device);
        put(&mut out, "actor", actor);
        if !header.labels.is_empty() {
            let labels: Map<String, Value> = header
                .labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            self.note("labels", Value::Object(labels));
        }
        out.extend(self.attrs);
        out.insert("unmapped".into(), Value::Object(self.unmapped));
        Value::Object(out)
    }
}

/// A stored event as one OCSF event (a Base Event when it has no body), with
/// `message` (one line for people, e.g. the event as a tail shows it).
#[must_use]
pub fn event(stored: &StoredEvent, message: Option<String>) -> Value {
    let none = Event::default();
    let event = stored.event.as_ref().unwrap_or(&none);
    let mut record = match &event.body {
        Some(Body::LoginAttempt(a)) => auth::login_attempt(event, a),
        Some(Body::SessionStart(s)) => auth::session_start(event, s),
        Some(Body::SessionEnd(s)) => auth::session_end(event, s),
        Some(Body::Exec(e)) => activity::exec(event, e),
        Some(Body::Connect(c)) => activity::connect(event, c),
        Some(Body::LoginVerdict(v)) => {
            let mut r = base("login_verdict", to_json(v));
            r.status(outcome_status(v.outcome));
            let verdict = v.verdict;
            r.set("status_code", json!(verdict.name()));
            r.set("status_detail", json!(non_empty(&v.reason)));
            if matches!(verdict, Verdict::KernelOnly | Verdict::JournalOnly) {
                r.severity = MEDIUM;
            }
            r
        }
        Some(Body::AgentHealth(h)) => base("agent_health", to_json(h)),
        None => Record::new(BASE_EVENT, UNKNOWN),
    };
    if event.body.is_none() {
        record.note("kind", json!(event.kind().name()));
    }
    let mut labels: Vec<(&str, &str)> = stored
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.sort_unstable();
    record.finish(&Header {
        uid: (!event.host_id.is_empty()).then(|| event_uid(event)),
        host_id: &event.host_id,
        boot_id: Some(&event.boot_id),
        time_unix_ns: if event.time_unix_ns == 0 {
            stored.received_unix_ns
        } else {
            event.time_unix_ns
        },
        logged_unix_ns: Some(stored.received_unix_ns),
        sequence: stored.event.as_ref().map(|e| e.seq),
        event_code: event.kind().name(),
        labels,
        message,
    })
}

/// [`event`], attributed to `login`, the session at the root of the event's
/// su/sudo chain (the login it belongs to, as the store's session summaries
/// tell): `actor.session` becomes that login (`created_time`, `is_remote`,
/// `terminal`), `actor.user` its user, and `unmapped.login` says who logged in
/// from where through what; the event's own session, when another (a sudo
/// inside the login), stays as `unmapped.session`.
#[must_use]
pub fn event_in_login(stored: &StoredEvent, message: Option<String>, login: &SessionSummary) -> Value {
    let mut value = event(stored, message);
    let Value::Object(out) = &mut value else {
        return value;
    };
    let login_value = login_session(login);
    let own = out
        .get_mut("actor")
        .and_then(|actor| actor.as_object_mut())
        .and_then(|actor| actor.remove("session"));
    if let Some(own) = own.filter(|own| own.get("uid") != login_value.get("uid"))
        && let Some(Value::Object(unmapped)) = out.get_mut("unmapped")
    {
        unmapped.insert("session".into(), own);
    }
    let actor = out.entry("actor").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(actor) = actor {
        actor.insert("session".into(), login_value);
        actor.insert("user".into(), json!({ "name": login.user }));
    }
    if let Some(Value::Object(unmapped)) = out.get_mut("unmapped") {
        unmapped.insert(
            "login".into(),
            object([
                ("user", json!(login.user)),
                ("source", json!(login.remote_host.as_deref().and_then(non_empty))),
                ("service", json!(login.service)),
            ]),
        );
    }
    value
}

/// A login session (a session summary) as an OCSF `session`.
fn login_session(login: &SessionSummary) -> Value {
    let remote = login.remote_host.as_deref().and_then(non_empty);
    let uid = session_hex(Some(login.session));
    object([
        (
            "uid_alt",
            json!(format!("{}/{}/{uid}", login.host_id, login.boot_id)),
        ),
        ("uid", json!(uid)),
        (
            "created_time",
            json!((login.start_unix_ns != 0).then(|| ms(login.start_unix_ns))),
        ),
        ("is_remote", json!(remote.is_some())),
        ("terminal", json!(login.tty.as_deref().and_then(non_empty))),
    ])
}

/// An event's stable id, `host/boot/seq` (its `metadata.uid`).
fn event_uid(event: &Event) -> String {
    format!("{}/{}/{}", event.host_id, event.boot_id, event.seq)
}

/// A Base Event of activity 99 Other named `kind`, with the record in
/// Watchtower's own JSON form under `unmapped.<kind>`.
fn base(kind: &'static str, json: Value) -> Record {
    let mut r = Record::new(BASE_EVENT, id(OTHER.id, kind));
    r.note(kind, json);
    r
}

/// A record in Watchtower's own JSON form (null if it cannot be one).
fn to_json(record: &impl serde::Serialize) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

/// `status_id` of a login's outcome.
fn outcome_status(outcome: Outcome) -> Id {
    match outcome {
        Outcome::Success => SUCCESS,
        Outcome::Failure => FAILURE,
        Outcome::Unspecified | Outcome::Unknown(_) => UNKNOWN,
    }
}

/// Insert `value` unless it is null.
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        map.insert(key.to_owned(), value);
    }
}

/// Add the pairs whose value is not null to `value` (an object).
fn extend(value: &mut Value, pairs: impl IntoIterator<Item = (&'static str, Value)>) {
    if let Value::Object(map) = value {
        for (key, v) in pairs {
            put(map, key, v);
        }
    }
}

/// An object of the pairs whose value is not null.
fn object(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut value = Value::Object(Map::new());
    extend(&mut value, pairs);
    value
}

/// A time as RFC 3339 in UTC, to the millisecond (`original_time`).
fn format_ns(ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns - ns % 1_000_000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_else(|_| ns.to_string())
}

/// A session key as its 16 hex digits (empty for none or 0).
fn session_hex(key: Option<u64>) -> String {
    key.filter(|k| *k != 0)
        .map(|k| format!("{k:016x}"))
        .unwrap_or_default()
}

/// Nanoseconds to OCSF's timestamps, milliseconds since the epoch.
fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// An address or a host name as a `network_endpoint`: `ip` when it is an IP
/// address, else `hostname`.
fn endpoint(address: &str) -> Value {
    if address.parse::<IpAddr>().is_ok() {
        json!({ "ip": address })
    } else {
        json!({ "hostname": address })
    }
}

/// The host as a `device`, with the boot the event was made in (null when there
/// is no host id).
fn device(host_id: &str, boot_id: Option<&str>) -> Value {
    non_empty(host_id).map_or(Value::Null, |host| {
        object([
            ("hostname", json!(host)),
            ("uid", json!(host)),
            ("boot_uid", json!(boot_id.and_then(non_empty))),
            ("type_id", json!(UNKNOWN.id)),
            ("type", json!(UNKNOWN.name)),
        ])
    })
}

/// A login session as a `session`: `uid` its 16 hex digits, `uid_alt` unique
/// across hosts and boots (null for no session).
fn session(event: &Event, key: u64) -> Value {
    let uid = session_hex(Some(key));
    if uid.is_empty() {
        return Value::Null;
    }
    json!({
        "uid_alt": format!("{}/{}/{uid}", event.host_id, event.boot_id),
        "uid": uid,
    })
}

/// A process as an OCSF `process`: `pid`, `ptid` (the thread), `name` (its
/// comm), `parent_process` (by pid), its `user` with its group (by id).
fn process(p: &Process) -> Value {
    object([
        ("pid", json!(p.pid)),
        ("ptid", json!((p.tid != 0).then_some(p.tid))),
        ("name", json!(non_empty(&p.comm))),
        (
            "parent_process",
            json!((p.ppid != 0).then(|| json!({ "pid": p.ppid }))),
        ),
        (
            "user",
            json!({ "uid": p.uid.to_string(), "groups": [{ "uid": p.gid.to_string() }] }),
        ),
        ("euid", json!(p.euid)),
        ("auid", json!(p.loginuid)),
    ])
}

/// An alert's severity word as `severity_id`.
fn severity(word: &str) -> Id {
    match word.to_ascii_lowercase().as_str() {
        "" => UNKNOWN,
        "info" | "informational" => INFORMATIONAL,
        "low" => LOW,
        "warning" | "medium" => MEDIUM,
        "high" => HIGH,
        "critical" => CRITICAL,
        _ => OTHER,
    }
}
