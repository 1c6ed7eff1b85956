//! What an event is about, for the indexes and for filters: its users, sessions
//! and remote addresses, and whether it matches an [`EventFilter`].

use watchtower_proto::pb::{Event, EventFilter, EventKind, Outcome, event::Body};

/// The users an event concerns: who logged in, or the user of the session it
/// happened in.
#[must_use]
pub fn users(event: &Event) -> Vec<&str> {
    let user = match &event.body {
        Some(Body::LoginAttempt(a)) => Some(a.user.as_str()),
        Some(Body::SessionStart(s)) => Some(s.user.as_str()),
        Some(Body::SessionEnd(s)) => Some(s.user.as_str()),
        Some(Body::Exec(e)) => e.session_user.as_deref(),
        Some(Body::Connect(c)) => c.session_user.as_deref(),
        Some(Body::LoginVerdict(v)) => Some(v.user.as_str()),
        Some(Body::AgentHealth(_)) | None => None,
    };
    user.filter(|u| !u.is_empty()).into_iter().collect()
}

/// The sessions an event belongs to: its own, and the session it was started
/// from (a su inside an ssh login belongs to both).
#[must_use]
pub fn sessions(event: &Event) -> Vec<u64> {
    let mut out = Vec::with_capacity(2);
    match &event.body {
        Some(Body::LoginAttempt(a)) => out.extend(a.from_session),
        Some(Body::SessionStart(s)) => {
            out.push(s.session);
            out.extend(s.parent_session);
        }
        Some(Body::SessionEnd(s)) => {
            out.push(s.session);
            out.extend(s.parent_session);
        }
        Some(Body::Exec(e)) => out.extend(e.session),
        Some(Body::Connect(c)) => out.extend(c.session),
        Some(Body::LoginVerdict(v)) => {
            out.extend(v.kernel.as_ref().and_then(|k| k.from_session));
        }
        Some(Body::AgentHealth(_)) | None => {}
    }
    out.retain(|s| *s != 0);
    out.dedup();
    out
}

/// The remote addresses an event involves: where a login came from, or where a
/// connection went (inet and inet6 only).
#[must_use]
pub fn remotes(event: &Event) -> Vec<&str> {
    let remote = match &event.body {
        Some(Body::LoginAttempt(a)) => a.remote_host.as_deref(),
        Some(Body::SessionStart(s)) => s.remote_host.as_deref(),
        Some(Body::SessionEnd(s)) => s.remote_host.as_deref(),
        Some(Body::LoginVerdict(v)) => v.remote_address.as_deref(),
        Some(Body::Connect(c)) if c.family != "unix" => Some(c.address.as_str()),
        _ => None,
    };
    remote.filter(|r| !r.is_empty()).into_iter().collect()
}

/// The outcome of a login attempt or verdict.
#[must_use]
pub fn outcome(event: &Event) -> Option<Outcome> {
    match &event.body {
        Some(Body::LoginAttempt(a)) => Some(a.outcome()),
        Some(Body::LoginVerdict(v)) => Some(v.outcome()),
        _ => None,
    }
}

/// Whether `event` passes every field the filter sets.
#[must_use]
pub fn matches(filter: &EventFilter, event: &Event) -> bool {
    if !filter.host_id.is_empty() && filter.host_id != event.host_id {
        return false;
    }
    if event.time_unix_ns < filter.from_unix_ns {
        return false;
    }
    if filter.to_unix_ns != 0 && event.time_unix_ns >= filter.to_unix_ns {
        return false;
    }
    if !filter.user.is_empty() && !users(event).contains(&filter.user.as_str()) {
        return false;
    }
    if !filter.kinds.is_empty() {
        let kind = event.kind();
        if !filter.kinds().any(|k| k == kind) {
            return false;
        }
    }
    if filter.outcome() != Outcome::Unspecified && outcome(event) != Some(filter.outcome()) {
        return false;
    }
    if let Some(session) = filter.session
        && !sessions(event).contains(&session)
    {
        return false;
    }
    if !filter.remote_address.is_empty() && !remotes(event).contains(&filter.remote_address.as_str()) {
        return false;
    }
    true
}

/// Why an event cannot be stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEvent {
    #[error("event seq {seq} names host {claimed:?}, but the agent's certificate names {certified:?}")]
    HostMismatch {
        seq: u64,
        claimed: String,
        certified: String,
    },
    #[error("event seq {0} has no body (unknown or missing event kind)")]
    NoBody(u64),
    #[error("an event has seq 0 (sequence numbers start at 1)")]
    NoSeq,
    #[error("event seq {0} has no boot id")]
    NoBootId(u64),
    #[error("event seq {0} has a boot id longer than 64 bytes or with a NUL byte")]
    BadBootId(u64),
    #[error("event seq {0} has no time")]
    NoTime(u64),
}

/// Check an event before it is stored for the certified `host`.
pub fn check(event: &Event, host: &str) -> Result<(), InvalidEvent> {
    if event.seq == 0 {
        return Err(InvalidEvent::NoSeq);
    }
    if event.host_id != host {
        return Err(InvalidEvent::HostMismatch {
            seq: event.seq,
            claimed: event.host_id.clone(),
            certified: host.to_owned(),
        });
    }
    if event.body.is_none() || event.kind() == EventKind::Unspecified {
        return Err(InvalidEvent::NoBody(event.seq));
    }
    if event.boot_id.is_empty() {
        return Err(InvalidEvent::NoBootId(event.seq));
    }
    if event.boot_id.len() > 64 || event.boot_id.contains('\0') {
        return Err(InvalidEvent::BadBootId(event.seq));
    }
    if event.time_unix_ns == 0 {
        return Err(InvalidEvent::NoTime(event.seq));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::pb::{Connect, Exec, LoginAttempt};

    fn attempt(user: &str, remote: &str, outcome: Outcome, from: Option<u64>) -> Event {
        Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq: 1,
            time_unix_ns: 100,
            body: Some(Body::LoginAttempt(LoginAttempt {
                service: "sshd".into(),
                user: user.into(),
                remote_host: Some(remote.into()),
                outcome: outcome as i32,
                from_session: from,
                ..LoginAttempt::default()
            })),
        }
    }

    #[test]
    fn filters_narrow_on_every_field() {
        let e = attempt("alice", "127.0.0.1", Outcome::Failure, Some(7));
        assert!(matches(&EventFilter::default(), &e));
        let f = |edit: &dyn Fn(&mut EventFilter)| {
            let mut filter = EventFilter::default();
            edit(&mut filter);
            matches(&filter, &e)
        };
        assert!(f(&|x| x.host_id = "web-1".into()));
        assert!(!f(&|x| x.host_id = "web-2".into()));
        assert!(f(&|x| x.from_unix_ns = 100));
        assert!(!f(&|x| x.from_unix_ns = 101));
        assert!(!f(&|x| x.to_unix_ns = 100));
        assert!(f(&|x| x.to_unix_ns = 101));
        assert!(f(&|x| x.user = "alice".into()));
        assert!(!f(&|x| x.user = "bob".into()));
        assert!(f(
            &|x| x.kinds = vec![EventKind::Exec as i32, EventKind::LoginAttempt as i32]
        ));
        assert!(!f(&|x| x.kinds = vec![EventKind::Exec as i32]));
        assert!(f(&|x| x.set_outcome(Outcome::Failure)));
        assert!(!f(&|x| x.set_outcome(Outcome::Success)));
        assert!(f(&|x| x.session = Some(7)));
        assert!(!f(&|x| x.session = Some(8)));
        assert!(f(&|x| x.remote_address = "127.0.0.1".into()));
        assert!(!f(&|x| x.remote_address = "127.0.0.2".into()));
    }

    #[test]
    fn exec_and_connect_facets() {
        let exec = Event {
            body: Some(Body::Exec(Exec {
                session: Some(9),
                session_user: Some("bob".into()),
                ..Exec::default()
            })),
            ..Event::default()
        };
        assert_eq!(users(&exec), vec!["bob"]);
        assert_eq!(sessions(&exec), vec![9]);
        assert!(remotes(&exec).is_empty());
        assert_eq!(outcome(&exec), None);
        let unix = Event {
            body: Some(Body::Connect(Connect {
                family: "unix".into(),
                address: "/run/x".into(),
                ..Connect::default()
            })),
            ..Event::default()
        };
        assert!(remotes(&unix).is_empty());
        let inet = Event {
            body: Some(Body::Connect(Connect {
                family: "inet".into(),
                address: "10.0.0.1".into(),
                session: Some(0),
                ..Connect::default()
            })),
            ..Event::default()
        };
        assert_eq!(remotes(&inet), vec!["10.0.0.1"]);
        assert!(sessions(&inet).is_empty());
        // A filter on outcome never matches events without one.
        let mut filter = EventFilter::default();
        filter.set_outcome(Outcome::Success);
        assert!(!matches(&filter, &inet));
    }

    #[test]
    fn checks_name_what_is_wrong() {
        let good = attempt("alice", "::1", Outcome::Success, None);
        assert_eq!(check(&good, "web-1"), Ok(()));
        assert!(matches!(
            check(&good, "web-2"),
            Err(InvalidEvent::HostMismatch { .. })
        ));
        let mut e = good.clone();
        e.seq = 0;
        assert_eq!(check(&e, "web-1"), Err(InvalidEvent::NoSeq));
        let mut e = good.clone();
        e.body = None;
        assert_eq!(check(&e, "web-1"), Err(InvalidEvent::NoBody(1)));
        let mut e = good.clone();
        e.boot_id.clear();
        assert_eq!(check(&e, "web-1"), Err(InvalidEvent::NoBootId(1)));
        let mut e = good.clone();
        e.boot_id = "a\0b".into();
        assert_eq!(check(&e, "web-1"), Err(InvalidEvent::BadBootId(1)));
        let mut e = good;
        e.time_unix_ns = 0;
        assert_eq!(check(&e, "web-1"), Err(InvalidEvent::NoTime(1)));
    }
}
