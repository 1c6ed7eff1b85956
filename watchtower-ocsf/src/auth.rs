//! Logins as OCSF Authentication (3002): a login attempt and a session start
//! are a Logon, a session end a Logoff.

use serde_json::{Value, json};
use watchtower_model::{Event, LoginAttempt, Process, SessionEnd, SessionStart};

use super::{
    AUTHENTICATION, Id, OTHER, Record, SUCCESS, endpoint, extend, ms, non_empty, object, outcome_status,
    process, session, session_hex,
};

const LOGON: Id = super::id(1, "Logon");
const LOGOFF: Id = super::id(2, "Logoff");

/// `loginuid` when the process has none (`(uid_t)-1`).
const NO_LOGINUID: u32 = u32::MAX;

/// What every login event says alike: where from (`is_remote`, `src_endpoint`),
/// to which host (`dst_endpoint`), through which PAM service, by which process;
/// returns whether the login is remote.
fn login(
    r: &mut Record,
    event: &Event,
    service: &str,
    remote_host: Option<&str>,
    logon_process: Option<&Process>,
) -> bool {
    let remote = remote_host.filter(|h| !h.is_empty());
    r.set("is_remote", json!(remote.is_some()));
    r.set("src_endpoint", remote.map_or(Value::Null, endpoint));
    r.set(
        "dst_endpoint",
        json!(non_empty(&event.host_id).map(|host| json!({ "hostname": host }))),
    );
    r.set("auth_protocol_id", json!(OTHER.id));
    r.set(
        "auth_protocol",
        json!(non_empty(service).map_or_else(|| "PAM".to_owned(), |s| format!("PAM/{s}"))),
    );
    r.set(
        "service",
        json!(non_empty(service).map(|name| json!({ "name": name }))),
    );
    r.set("logon_process", logon_process.map_or(Value::Null, process));
    remote.is_some()
}

/// The PAM code name and the step a failed attempt stopped at:
/// `PAM_AUTH_ERR at authenticate`.
fn pam_detail(code_name: &str, failed_step: Option<&str>) -> Option<String> {
    match (non_empty(code_name), failed_step.and_then(non_empty)) {
        (None, None) => None,
        (Some(name), None) => Some(name.to_owned()),
        (None, Some(step)) => Some(format!("at {step}")),
        (Some(name), Some(step)) => Some(format!("{name} at {step}")),
    }
}

/// A parent session's 16 hex digits (null for none).
/// A session event's `session` and `user`, which are also its actor's.
fn opened_by(r: &mut Record, session: Value, user: Value) {
    r.set("user", user.clone());
    r.set("session", session.clone());
    r.actor("session", session);
    r.actor("user", user);
}

fn parent(parent_session: Option<u64>) -> Value {
    json!(non_empty(&session_hex(parent_session)))
}

pub(super) fn login_attempt(event: &Event, a: &LoginAttempt) -> Record {
    let mut r = Record::new(AUTHENTICATION, LOGON);
    login(
        &mut r,
        event,
        &a.service,
        a.remote_host.as_deref(),
        a.process.as_ref(),
    );
    r.status(outcome_status(a.outcome));
    r.set("status_code", json!(non_empty(&a.pam_code_name)));
    r.set(
        "status_detail",
        json!(pam_detail(&a.pam_code_name, a.failed_step.as_deref())),
    );
    r.set("user", json!({ "name": a.user }));
    // The session the attempt was made from (su or sudo inside a login).
    if let Some(from) = a.from_session {
        r.actor("session", session(event, from));
    }
    r.note("tty", json!(a.tty));
    r.note("remote_user", json!(a.remote_user));
    r.note("user_known", json!(a.user_known));
    r.note("failed_step", json!(a.failed_step));
    r.note("pam_code", json!(a.pam_code));
    r.note("authenticate_code", json!(a.authenticate_code));
    r.note("account_code", json!(a.account_code));
    r
}

/// A session's Logon or Logoff (always a success), and whether it is remote.
fn session_record(
    event: &Event,
    activity: Id,
    service: &str,
    remote_host: Option<&str>,
    process: Option<&Process>,
) -> (Record, bool) {
    let mut r = Record::new(AUTHENTICATION, activity);
    let remote = login(&mut r, event, service, remote_host, process);
    r.status(SUCCESS);
    (r, remote)
}

pub(super) fn session_start(event: &Event, s: &SessionStart) -> Record {
    let (mut r, remote) = session_record(
        event,
        LOGON,
        &s.service,
        s.remote_host.as_deref(),
        s.process.as_ref(),
    );
    let user = object([
        ("name", json!(s.user)),
        (
            "uid",
            json!(
                s.loginuid
                    .filter(|uid| *uid != NO_LOGINUID)
                    .map(|uid| uid.to_string())
            ),
        ),
    ]);
    let mut opened = session(event, s.session);
    extend(
        &mut opened,
        [
            ("created_time", json!(ms(event.time_unix_ns))),
            ("is_remote", json!(remote)),
            ("terminal", json!(s.tty)),
        ],
    );
    opened_by(&mut r, opened, user);
    r.note("parent_session", parent(s.parent_session));
    r.note("remote_user", json!(s.remote_user));
    r.note("audit_session_id", json!(s.audit_session_id));
    r.note("adopted", json!(s.adopted));
    r
}

pub(super) fn session_end(event: &Event, s: &SessionEnd) -> Record {
    let (mut r, remote) = session_record(
        event,
        LOGOFF,
        &s.service,
        s.remote_host.as_deref(),
        s.process.as_ref(),
    );
    r.set("status_detail", json!(non_empty(&s.reason)));
    let end = ms(event.time_unix_ns);
    let start = (s.duration_ns > 0).then(|| ms(event.time_unix_ns.saturating_sub(s.duration_ns)));
    let mut closed = session(event, s.session);
    extend(
        &mut closed,
        [("created_time", json!(start)), ("is_remote", json!(remote))],
    );
    opened_by(&mut r, closed, json!({ "name": s.user }));
    r.set("duration", json!((s.duration_ns > 0).then(|| ms(s.duration_ns))));
    r.set("start_time", json!(start));
    r.set("end_time", json!(end));
    r.note("parent_session", parent(s.parent_session));
    r.note("execs", json!(s.execs));
    r.note("connects", json!(s.connects));
    r.note("processes", json!(s.processes));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_details_name_the_code_and_the_step() {
        assert_eq!(
            pam_detail("PAM_AUTH_ERR", Some("authenticate")).as_deref(),
            Some("PAM_AUTH_ERR at authenticate")
        );
        assert_eq!(pam_detail("PAM_SUCCESS", None).as_deref(), Some("PAM_SUCCESS"));
        assert_eq!(pam_detail("", Some("account")).as_deref(), Some("at account"));
        assert_eq!(pam_detail("", Some("")), None);
        assert_eq!(pam_detail("", None), None);
    }
}
