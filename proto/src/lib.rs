//! The `watchtower.v1` contract, generated from `proto/watchtower.proto`.
//!
//! Everything generated is under [`pb`]: messages are plain prost structs;
//! `pb::ingest_*` and `pb::query_*` hold the tonic clients and servers. Beside it:
//! [`VERSION`], hex helpers, the JSON forms the generated code's serde
//! attributes name, and [`convert`]: the messages to and from the domain types
//! of watchtower-model, which the server and watchtowerctl work with.

#![allow(clippy::pedantic)]

/// The generated messages, clients and servers (`cargo xtask proto` writes
/// `src/generated/watchtower.v1.rs`; `cargo xtask test` checks it is current).
#[allow(clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pb {
    include!("generated/watchtower.v1.rs");
}

/// `From` both ways between the messages and the domain types of
/// watchtower-model (re-exported as [`model`]).
pub mod convert;

pub use convert::UnknownItem;
pub use watchtower_model as model;

/// This build's version: what `cargo xtask dist` (and `test`) stamp in through
/// `WATCHTOWER_VERSION`, else the crate version. Every binary's `--version`, the
/// agent's Hello and the webhook's user agent.
pub const VERSION: &str = match option_env!("WATCHTOWER_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

pub use watchtower_tlog::{hex, unhex};

/// How the generated messages' JSON shows enums, session keys and byte strings:
/// the domain types' forms (watchtower-model), so a message and its domain
/// type print alike.
pub mod json {
    use serde::{Serialize as _, Serializer};
    pub use watchtower_model::json::{hex, hex_list, optional_session, session, sessions, text};
    use watchtower_model::{EventKind, Outcome, Verdict};

    pub fn outcome<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
        Outcome::from(*value).serialize(s)
    }

    pub fn verdict<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
        Verdict::from(*value).serialize(s)
    }

    pub fn kinds<S: Serializer>(values: &[i32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| EventKind::from(*v)))
    }
}

#[cfg(test)]
mod tests {
    use super::pb::*;
    use super::*;

    #[test]
    fn events_serialize_as_readable_json() {
        let event = Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq: 7,
            time_unix_ns: 1,
            body: Some(event::Body::LoginAttempt(LoginAttempt {
                service: "sshd".into(),
                user: "alice".into(),
                outcome: Outcome::Failure as i32,
                from_session: Some(0xab),
                ..LoginAttempt::default()
            })),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["body"]["login_attempt"]["outcome"], "failure");
        assert_eq!(json["body"]["login_attempt"]["from_session"], "00000000000000ab");
        assert_eq!(json["body"]["login_attempt"]["user"], "alice");
        assert_eq!(json["seq"], 7);
    }

    #[test]
    fn hex_round_trips_and_refuses_odd_text() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn an_unknown_enum_value_shows_as_its_number() {
        let attempt = LoginAttempt {
            outcome: 7,
            ..LoginAttempt::default()
        };
        let json = serde_json::to_value(&attempt).unwrap();
        assert_eq!(json["outcome"], 7);
    }
}
