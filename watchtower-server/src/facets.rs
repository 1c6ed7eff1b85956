//! What an event is about, for the indexes and for filters: its users, sessions
//! and remote addresses, and whether it matches an [`EventFilter`].

use watchtower_model::{Body, Event, EventFilter, Outcome};

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
        Some(Body::LoginAttempt(a)) => Some(a.outcome),
        Some(Body::LoginVerdict(v)) => Some(v.outcome),
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
        if !filter.kinds.iter().copied().any(|k| k == kind) {
            return false;
        }
    }
    if filter.outcome != Outcome::Unspecified && outcome(event) != Some(filter.outcome) {
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

mod limits;

pub use limits::{
    MAX_AHEAD_NS, MAX_EVENT_BYTES, MAX_NAME_BYTES, MAX_TEXT_BYTES, MAX_VALUES, check_spool_health, time_ahead,
};

/// Why an event cannot be stored. Each has a reason from a fixed set
/// ([`InvalidEvent::reason`], [`InvalidEvent::REASONS`]) and names the event
/// (its seq) and, for size limits, the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEvent {
    #[error("event seq {seq} names host {claimed:?}, but the agent's certificate names {certified:?}")]
    HostMismatch {
        seq: u64,
        claimed: String,
        certified: String,
    },
    #[error("an event has seq 0 (sequence numbers start at 1)")]
    NoSeq,
    #[error("event seq {0} has no boot id")]
    NoBootId(u64),
    #[error("event seq {0} has a boot id longer than 64 bytes or with a NUL byte")]
    BadBootId(u64),
    #[error("event seq {0} has no time")]
    NoTime(u64),
    #[error("event seq {seq}: {field} is {len} bytes, at most {max} are stored")]
    FieldTooLong {
        seq: u64,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("event seq {seq}: {field} has {count} values, at most {max} are stored")]
    TooManyValues {
        seq: u64,
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("event seq {seq} is {bytes} bytes encoded, at most {max} are stored")]
    EventTooLarge { seq: u64, bytes: usize, max: usize },
    #[error("event seq {seq}: a {field} holds a NUL byte (it would be an index key)")]
    NulInField { seq: u64, field: &'static str },
}

impl InvalidEvent {
    /// Every reason [`InvalidEvent::reason`] gives: the fixed label set of the
    /// refusal counters.
    pub const REASONS: [&'static str; 9] = [
        "host_mismatch",
        "no_seq",
        "no_boot_id",
        "bad_boot_id",
        "no_time",
        "field_too_long",
        "too_many_values",
        "event_too_large",
        "nul_in_field",
    ];

    /// The reason it is counted and answered under.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidEvent::HostMismatch { .. } => "host_mismatch",
            InvalidEvent::NoSeq => "no_seq",
            InvalidEvent::NoBootId(_) => "no_boot_id",
            InvalidEvent::BadBootId(_) => "bad_boot_id",
            InvalidEvent::NoTime(_) => "no_time",
            InvalidEvent::FieldTooLong { .. } => "field_too_long",
            InvalidEvent::TooManyValues { .. } => "too_many_values",
            InvalidEvent::EventTooLarge { .. } => "event_too_large",
            InvalidEvent::NulInField { .. } => "nul_in_field",
        }
    }
}

/// Check an event before it is stored for the certified `host`: its identity
/// (seq, host, boot id, time), then its size as it came (`encoded_bytes`) and
/// every variable-size field against the ingest limits ([`limits`]), then the
/// texts that become index keys. An event without a body, or with a body of a
/// kind this server does not know (prost leaves it `None`), passes: it is stored
/// with kind unspecified.
pub fn check(event: &Event, encoded_bytes: usize, host: &str) -> Result<(), InvalidEvent> {
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
    if event.boot_id.is_empty() {
        return Err(InvalidEvent::NoBootId(event.seq));
    }
    if event.boot_id.len() > 64 || event.boot_id.contains('\0') {
        return Err(InvalidEvent::BadBootId(event.seq));
    }
    if event.time_unix_ns == 0 {
        return Err(InvalidEvent::NoTime(event.seq));
    }
    limits::check_sizes(event, encoded_bytes)?;
    let nul = |field| InvalidEvent::NulInField {
        seq: event.seq,
        field,
    };
    if users(event).iter().any(|u| u.contains('\0')) {
        return Err(nul("user"));
    }
    if remotes(event).iter().any(|r| r.contains('\0')) {
        return Err(nul("remote address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_model::{
        AgentHealth, Connect, EventKind, Exec, JournalWitness, LoginAttempt, LoginVerdict, SpoolHealth,
    };
    use watchtower_proto::pb;

    /// [`super::check`] with the event's size as its wire encoding has it.
    fn check(event: &Event, host: &str) -> Result<(), InvalidEvent> {
        use prost::Message as _;
        super::check(event, pb::Event::from(event.clone()).encoded_len(), host)
    }

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
                outcome,
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
        assert!(f(&|x| x.kinds = vec![EventKind::Exec, EventKind::LoginAttempt]));
        assert!(!f(&|x| x.kinds = vec![EventKind::Exec]));
        assert!(f(&|x| x.outcome = Outcome::Failure));
        assert!(!f(&|x| x.outcome = Outcome::Success));
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
        let filter = EventFilter {
            outcome: Outcome::Success,
            ..EventFilter::default()
        };
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
        // No body, or one of a kind this server does not know: stored as such.
        let mut e = good.clone();
        e.body = None;
        assert_eq!(check(&e, "web-1"), Ok(()));
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

    /// An event of a newer agent's kind: its body's field number is unknown here, so
    /// prost leaves the body `None`; it is checked like any other event.
    #[test]
    fn an_unknown_event_kind_decodes_without_a_body_and_passes() {
        use prost::Message as _;
        let mut known = pb::Event::from(attempt("alice", "::1", Outcome::Success, None));
        known.body = None;
        let mut bytes = known.encode_to_vec();
        // Field 99, length-delimited: a body kind from the future.
        bytes.extend_from_slice(&[0x9a, 0x06, 3, 0x0a, 1, b'x']);
        let future = Event::from(pb::Event::decode(bytes.as_slice()).unwrap());
        assert_eq!(
            (future.body.is_none(), future.kind()),
            (true, EventKind::Unspecified)
        );
        assert_eq!(check(&future, "web-1"), Ok(()));
    }

    fn with_body(body: Body) -> Event {
        Event {
            body: Some(body),
            ..attempt("alice", "::1", Outcome::Success, None)
        }
    }

    #[test]
    fn every_limit_names_the_event_the_field_and_the_sizes() {
        let long_name = "u".repeat(MAX_NAME_BYTES + 1);
        let e = attempt(&long_name, "::1", Outcome::Failure, None);
        let refused = check(&e, "web-1").unwrap_err();
        assert_eq!(
            refused,
            InvalidEvent::FieldTooLong {
                seq: 1,
                field: "login_attempt.user",
                len: MAX_NAME_BYTES + 1,
                max: MAX_NAME_BYTES
            }
        );
        assert_eq!(refused.reason(), "field_too_long");
        assert_eq!(
            refused.to_string(),
            format!(
                "event seq 1: login_attempt.user is {} bytes, at most {MAX_NAME_BYTES} are stored",
                MAX_NAME_BYTES + 1
            )
        );
        // Exactly at the limit is stored, and a PAM string of 128 invalid bytes, as
        // the agent decodes it (each byte a U+FFFD), is within it.
        let lossy = String::from_utf8_lossy(&[0xff; 128]).into_owned();
        assert_eq!(
            check(&attempt(&lossy, "::1", Outcome::Failure, None), "web-1"),
            Ok(())
        );
        let at_limit = attempt(&"u".repeat(MAX_NAME_BYTES), "::1", Outcome::Failure, None);
        assert_eq!(check(&at_limit, "web-1"), Ok(()));

        let field = |e: &Event| match check(e, "web-1") {
            Err(InvalidEvent::FieldTooLong { field, .. } | InvalidEvent::TooManyValues { field, .. }) => {
                field
            }
            other => panic!("{other:?}"),
        };
        let service = with_body(Body::LoginAttempt(LoginAttempt {
            service: long_name.clone(),
            ..LoginAttempt::default()
        }));
        assert_eq!(field(&service), "login_attempt.service");
        let remote = attempt("alice", &long_name, Outcome::Failure, None);
        assert_eq!(field(&remote), "login_attempt.remote_host");
        let argv_item = with_body(Body::Exec(Exec {
            argv: vec!["ls".into(), "a".repeat(MAX_TEXT_BYTES + 1)],
            ..Exec::default()
        }));
        assert_eq!(field(&argv_item), "exec.argv");
        let argv_count = with_body(Body::Exec(Exec {
            argv: vec!["a".into(); MAX_VALUES + 1],
            ..Exec::default()
        }));
        assert_eq!(
            check(&argv_count, "web-1"),
            Err(InvalidEvent::TooManyValues {
                seq: 1,
                field: "exec.argv",
                count: MAX_VALUES + 1,
                max: MAX_VALUES
            })
        );
        let lines = with_body(Body::LoginVerdict(LoginVerdict {
            journal: Some(JournalWitness {
                lines: vec!["l".repeat(MAX_TEXT_BYTES + 1)],
                ..JournalWitness::default()
            }),
            ..LoginVerdict::default()
        }));
        assert_eq!(field(&lines), "login_verdict.journal.lines");
        let counters = with_body(Body::AgentHealth(AgentHealth {
            spool: Some(SpoolHealth {
                dropped: (0..=MAX_VALUES).map(|i| (i.to_string(), 1)).collect(),
                ..SpoolHealth::default()
            }),
            ..AgentHealth::default()
        }));
        assert_eq!(field(&counters), "agent_health.spool.dropped");
        let key = with_body(Body::AgentHealth(AgentHealth {
            lost: [(long_name.clone(), 1)].into(),
            ..AgentHealth::default()
        }));
        assert_eq!(field(&key), "agent_health.lost");
        // The whole event: every field within its limit, together too large.
        let huge = with_body(Body::Exec(Exec {
            argv: vec!["a".repeat(MAX_TEXT_BYTES); MAX_VALUES],
            ..Exec::default()
        }));
        assert!(matches!(
            check(&huge, "web-1"),
            Err(InvalidEvent::EventTooLarge {
                seq: 1,
                max: MAX_EVENT_BYTES,
                ..
            })
        ));
    }

    #[test]
    fn index_texts_with_a_nul_are_refused() {
        let e = attempt("ali\0ce", "::1", Outcome::Success, None);
        assert_eq!(
            check(&e, "web-1"),
            Err(InvalidEvent::NulInField {
                seq: 1,
                field: "user"
            })
        );
        let e = attempt("alice", "10.0.0.1\0x", Outcome::Success, None);
        assert_eq!(check(&e, "web-1").unwrap_err().reason(), "nul_in_field");
        // A unix socket path is not an index key: an abstract socket's NUL passes.
        let unix = with_body(Body::Connect(Connect {
            family: "unix".into(),
            address: "\0abstract".into(),
            ..Connect::default()
        }));
        assert_eq!(check(&unix, "web-1"), Ok(()));
    }

    #[test]
    fn reasons_are_a_fixed_set() {
        let all = [
            InvalidEvent::HostMismatch {
                seq: 1,
                claimed: String::new(),
                certified: String::new(),
            },
            InvalidEvent::NoSeq,
            InvalidEvent::NoBootId(1),
            InvalidEvent::BadBootId(1),
            InvalidEvent::NoTime(1),
            InvalidEvent::FieldTooLong {
                seq: 1,
                field: "x",
                len: 2,
                max: 1,
            },
            InvalidEvent::TooManyValues {
                seq: 1,
                field: "x",
                count: 2,
                max: 1,
            },
            InvalidEvent::EventTooLarge {
                seq: 1,
                bytes: 2,
                max: 1,
            },
            InvalidEvent::NulInField {
                seq: 1,
                field: "user",
            },
        ];
        let reasons: Vec<_> = all.iter().map(InvalidEvent::reason).collect();
        assert_eq!(reasons, InvalidEvent::REASONS);
    }

    #[test]
    fn times_far_ahead_of_the_server_are_flagged() {
        let mut e = attempt("alice", "::1", Outcome::Success, None);
        let now = 1_700_000_000_000_000_000;
        e.time_unix_ns = now + MAX_AHEAD_NS;
        assert!(!time_ahead(&e, now));
        e.time_unix_ns += 1;
        assert!(time_ahead(&e, now));
        // Old events (a spool sent days later) are not.
        e.time_unix_ns = now - 86_400_000_000_000;
        assert!(!time_ahead(&e, now));
    }
}
