//! Picking events out of what an agent wrote.

use serde_json::Value;

/// Events of one kind.
#[must_use]
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// The session an event is attributed to ("" when none).
#[must_use]
pub fn session_of(event: &Value) -> &str {
    event["session"].as_str().unwrap_or("")
}

/// The ssh login of `user` that succeeded, and its session.
///
/// # Panics
/// Unless there is exactly one of each.
#[must_use]
pub fn ssh_login<'a>(events: &'a [Value], user: &str) -> (&'a Value, &'a Value) {
    let logins: Vec<_> = of_kind(events, "login_attempt")
        .into_iter()
        .filter(|e| e["service"] == "sshd" && e["user"] == user && e["outcome"] == "success")
        .collect();
    assert_eq!(logins.len(), 1, "one successful ssh login of {user}: {logins:#?}");
    let starts: Vec<_> = of_kind(events, "session_start")
        .into_iter()
        .filter(|e| e["service"] == "sshd" && e["user"] == user)
        .collect();
    assert_eq!(starts.len(), 1, "one ssh session of {user}: {starts:#?}");
    (logins[0], starts[0])
}
