//! Our events as Sigma sees them: one flat map per event, named after Sigma's
//! Linux conventions (the `process_creation` and `network_connection` categories
//! of the Sigma taxonomy) where one exists.
//!
//! | field | from | events |
//! |-------|------|--------|
//! | `Image` | the executed file (`filename`) | exec |
//! | `CommandLine` | the arguments, joined by spaces | exec |
//! | `OriginalFileName` | the file name without its directory | exec |
//! | `ProcessId` / `ParentProcessId` | pid / ppid | exec, connect, login |
//! | `User` | the login's user where known (else the process uid as a number) | exec, connect |
//! | `UserId` | the process uid | exec, connect, login |
//! | `LogonId` | the login session id (hex) | exec, connect, session |
//! | `DestinationIp` / `DestinationPort` / `Protocol` | the address connected to | connect |
//! | `Initiated` | `true` (connects are outbound) | connect |
//! | `TargetUserName` | the user logging in | login, session start |
//! | `IpAddress` / `SourceHostname` | where the login came from | login, session start |
//! | `Outcome` | `success` / `failure` | login |
//! | `Service` | the PAM service (sshd, su, sudo, ...) | login, session start |
//! | `LoginUser` / `LoginSource` / `LoginService` | the login the event belongs to (Watchtower only) | exec, connect (from the session, when the caller has it) |
//! | `SessionService` / `SessionUser` | the session the event is in: `sudo`/`su` and its target user inside a login, else the login's (Watchtower only) | exec, connect (as above) |
//! | `Host` | the host id | every event |
//! | `EventKind` | `exec`, `connect`, `login_attempt`, `session_start`, ... | every event |
//!
//! `ParentImage` and `CurrentDirectory` are not captured by the probes and are
//! never set: a rule that needs them does not match.

use sigma_rust::Event as Fields;
use watchtower_model::{Body, Outcome, StoredEvent};

/// What kind of event, for a rule's `logsource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Connect,
    Login,
    SessionStart,
    SessionEnd,
    Other,
}

impl Kind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Connect => "connect",
            Kind::Login => "login_attempt",
            Kind::SessionStart => "session_start",
            Kind::SessionEnd => "session_end",
            Kind::Other => "other",
        }
    }
}

/// The login an event belongs to, as the store knows it: who logged in, from
/// where, through which service (the outermost session), and the session the
/// event itself is in (su or sudo inside the login, or the login itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub source: Option<String>,
    pub service: String,
    pub session_service: String,
    pub session_user: String,
}

/// One event's Sigma fields.
#[derive(Debug)]
pub struct SigmaEvent {
    pub kind: Kind,
    pub fields: Fields,
    /// The login session it belongs to, if any.
    pub session: Option<u64>,
}

/// The arguments as one command line: each argument that holds a space or a
/// quote is quoted, so `CommandLine|contains` sees what a shell would.
#[must_use]
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '\t', '"', '\'']) {
                format!("\"{}\"", a.replace('"', "\\\""))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn insert_process(f: &mut Fields, p: Option<&watchtower_model::Process>) {
    if let Some(p) = p {
        f.insert("ProcessId", i64::from(p.pid));
        f.insert("ParentProcessId", i64::from(p.ppid));
        f.insert("UserId", i64::from(p.uid));
        f.insert("ProcessName", p.comm.clone());
    }
}

fn insert_login(f: &mut Fields, session: Option<u64>, session_user: Option<&String>, login: Option<&Login>) {
    if let Some(session) = session {
        f.insert("LogonId", format!("{session:016x}"));
    }
    match (login, session_user) {
        (Some(login), _) => {
            f.insert("LoginUser", login.user.clone());
            f.insert("User", login.user.clone());
            if let Some(source) = &login.source {
                f.insert("LoginSource", source.clone());
            }
            f.insert("LoginService", login.service.clone());
            f.insert("SessionService", login.session_service.clone());
            f.insert("SessionUser", login.session_user.clone());
        }
        (None, Some(user)) => {
            f.insert("LoginUser", user.clone());
            f.insert("User", user.clone());
        }
        (None, None) => {}
    }
}

impl SigmaEvent {
    /// A field's value as text.
    #[must_use]
    #[expect(
        clippy::redundant_closure_for_method_calls,
        reason = "sigma-rust does not export the value type the method path would name"
    )]
    pub fn text(&self, field: &str) -> Option<String> {
        self.fields.get(field).map(|value| value.value_to_string())
    }

    /// The Sigma fields of `stored`; `login` is the login its session began with,
    /// when the caller looked it up.
    #[must_use]
    pub fn of(stored: &StoredEvent, login: Option<&Login>) -> Option<SigmaEvent> {
        let event = stored.event.as_ref()?;
        let mut f = Fields::new();
        f.insert("Host", event.host_id.clone());
        let (kind, session) = match event.body.as_ref() {
            Some(Body::Exec(exec)) => {
                f.insert("Image", exec.filename.clone());
                let name = exec.filename.rsplit('/').next().unwrap_or_default().to_owned();
                f.insert("OriginalFileName", name);
                f.insert("CommandLine", command_line(&exec.argv));
                insert_process(&mut f, exec.process.as_ref());
                if exec.session_user.is_none()
                    && login.is_none()
                    && let Some(p) = &exec.process
                {
                    f.insert("User", p.uid.to_string());
                }
                insert_login(&mut f, exec.session, exec.session_user.as_ref(), login);
                (Kind::Exec, exec.session)
            }
            Some(Body::Connect(connect)) => {
                f.insert("DestinationIp", connect.address.clone());
                if let Some(port) = connect.port {
                    f.insert("DestinationPort", i64::from(port));
                }
                f.insert("Protocol", connect.family.clone());
                f.insert("Initiated", true);
                insert_process(&mut f, connect.process.as_ref());
                insert_login(&mut f, connect.session, connect.session_user.as_ref(), login);
                (Kind::Connect, connect.session)
            }
            Some(Body::LoginAttempt(a)) => {
                f.insert("TargetUserName", a.user.clone());
                f.insert("Service", a.service.clone());
                let outcome = match a.outcome {
                    Outcome::Success => "success",
                    Outcome::Failure => "failure",
                    _ => "unknown",
                };
                f.insert("Outcome", outcome);
                if let Some(remote) = &a.remote_host {
                    f.insert("IpAddress", remote.clone());
                    f.insert("SourceHostname", remote.clone());
                }
                insert_process(&mut f, a.process.as_ref());
                (Kind::Login, a.from_session)
            }
            Some(Body::SessionStart(s)) => {
                f.insert("TargetUserName", s.user.clone());
                f.insert("Service", s.service.clone());
                if let Some(remote) = &s.remote_host {
                    f.insert("IpAddress", remote.clone());
                    f.insert("SourceHostname", remote.clone());
                }
                f.insert("LogonId", format!("{:016x}", s.session));
                insert_process(&mut f, s.process.as_ref());
                (Kind::SessionStart, Some(s.session))
            }
            Some(Body::SessionEnd(s)) => {
                f.insert("LogonId", format!("{:016x}", s.session));
                (Kind::SessionEnd, Some(s.session))
            }
            _ => (Kind::Other, None),
        };
        f.insert("EventKind", kind.name());
        Some(SigmaEvent {
            kind,
            fields: f,
            session,
        })
    }
}
