//! The `watchtower.v1` contract, generated from `proto/watchtower.proto`.
//!
//! Messages are plain prost structs; `ingest_*` and `query_*` modules hold the tonic
//! clients and servers.

#![allow(clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("watchtower.v1");
}

pub use v1::*;

impl v1::Event {
    /// The kind of the event's body (`Unspecified` when it has none).
    #[must_use]
    pub fn kind(&self) -> v1::EventKind {
        use v1::event::Body;
        match &self.body {
            None => v1::EventKind::Unspecified,
            Some(Body::LoginAttempt(_)) => v1::EventKind::LoginAttempt,
            Some(Body::SessionStart(_)) => v1::EventKind::SessionStart,
            Some(Body::SessionEnd(_)) => v1::EventKind::SessionEnd,
            Some(Body::Exec(_)) => v1::EventKind::Exec,
            Some(Body::Connect(_)) => v1::EventKind::Connect,
            Some(Body::LoginVerdict(_)) => v1::EventKind::LoginVerdict,
            Some(Body::AgentHealth(_)) => v1::EventKind::AgentHealth,
        }
    }
}

impl v1::EventKind {
    /// The snake_case name used in configs and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            v1::EventKind::Unspecified => "unspecified",
            v1::EventKind::LoginAttempt => "login_attempt",
            v1::EventKind::SessionStart => "session_start",
            v1::EventKind::SessionEnd => "session_end",
            v1::EventKind::Exec => "exec",
            v1::EventKind::Connect => "connect",
            v1::EventKind::LoginVerdict => "login_verdict",
            v1::EventKind::AgentHealth => "agent_health",
        }
    }

    /// Parse a snake_case name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [
            v1::EventKind::LoginAttempt,
            v1::EventKind::SessionStart,
            v1::EventKind::SessionEnd,
            v1::EventKind::Exec,
            v1::EventKind::Connect,
            v1::EventKind::LoginVerdict,
            v1::EventKind::AgentHealth,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}
