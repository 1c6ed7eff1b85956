//! Hand-built events for the rendering tests.

use watchtower_model::{Body, Event, Exec, LoginAttempt, Outcome, StoredEvent};

fn stored(seq: u64, time_unix_ns: u64, body: Body) -> StoredEvent {
    StoredEvent {
        event: Some(Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            time_unix_ns,
            body: Some(body),
        }),
        received_unix_ns: time_unix_ns + 1,
        ..StoredEvent::default()
    }
}

/// alice failing to log in over ssh from 10.0.0.9.
pub fn failed_login() -> StoredEvent {
    stored(
        9,
        1_700_000_000_000_000_000,
        Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("10.0.0.9".into()),
            tty: Some("ssh".into()),
            outcome: Outcome::Failure,
            failed_step: Some("authenticate".into()),
            pam_code_name: "PAM_AUTH_ERR".into(),
            ..LoginAttempt::default()
        }),
    )
}

/// `id -un` in alice's session ab.
pub fn exec() -> StoredEvent {
    stored(
        10,
        1_700_000_001_500_000_000,
        Body::Exec(Exec {
            session: Some(0xab),
            session_user: Some("alice".into()),
            filename: "/usr/bin/id".into(),
            argv: vec!["id".into(), "-un".into()],
            ..Exec::default()
        }),
    )
}
