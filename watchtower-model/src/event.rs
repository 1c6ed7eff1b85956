//! What an agent saw: one event, its body, and the process it is about.

use crate::{AgentHealth, EventKind, Outcome, Verdict};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub host_id: String,
    /// /proc/sys/kernel/random/boot_id of the boot the event happened in.
    pub boot_id: String,
    pub seq: u64,
    /// Wall-clock time of the fact, nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    pub body: Option<Body>,
}

/// What an event tells of; `None` in [`Event::body`] when it is of a kind this
/// build does not know (a newer agent's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    LoginAttempt(LoginAttempt),
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    Exec(Exec),
    Connect(Connect),
    LoginVerdict(LoginVerdict),
    AgentHealth(AgentHealth),
}

impl Event {
    /// The kind of the event's body (`Unspecified` when it has none).
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match &self.body {
            None => EventKind::Unspecified,
            Some(Body::LoginAttempt(_)) => EventKind::LoginAttempt,
            Some(Body::SessionStart(_)) => EventKind::SessionStart,
            Some(Body::SessionEnd(_)) => EventKind::SessionEnd,
            Some(Body::Exec(_)) => EventKind::Exec,
            Some(Body::Connect(_)) => EventKind::Connect,
            Some(Body::LoginVerdict(_)) => EventKind::LoginVerdict,
            Some(Body::AgentHealth(_)) => EventKind::AgentHealth,
        }
    }
}

/// The process an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    /// 0 when the kernel's task layout could not be read.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// Effective uid (a setuid program's owner); unset when the kernel's layout is unknown.
    pub euid: Option<u32>,
    /// Audit login uid: who logged in, kept across su and sudo; unset when never set.
    pub loginuid: Option<u32>,
}

/// One attempt to log in (or to switch user) through PAM.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoginAttempt {
    pub service: String,
    pub user: String,
    /// Whether the host knows the user; unset when unknown.
    pub user_known: Option<bool>,
    pub remote_host: Option<String>,
    pub tty: Option<String>,
    pub remote_user: Option<String>,
    pub outcome: Outcome,
    /// The PAM step a failed attempt stopped at: start, authenticate, account, open_session.
    pub failed_step: Option<String>,
    pub pam_code: i32,
    pub pam_code_name: String,
    pub authenticate_code: Option<i32>,
    pub account_code: Option<i32>,
    /// The session the attempt was made from (su or sudo inside an ssh login).
    #[serde(serialize_with = "crate::json::optional_session")]
    pub from_session: Option<u64>,
    pub process: Option<Process>,
}

/// Session keys are unique within one boot of one host; shown as 16 hex digits.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStart {
    #[serde(serialize_with = "crate::json::session")]
    pub session: u64,
    #[serde(serialize_with = "crate::json::optional_session")]
    pub parent_session: Option<u64>,
    pub service: String,
    pub user: String,
    pub remote_host: Option<String>,
    pub tty: Option<String>,
    pub remote_user: Option<String>,
    pub loginuid: Option<u32>,
    pub audit_session_id: Option<u32>,
    /// Began before the agent started; found through its audit session id.
    pub adopted: bool,
    pub process: Option<Process>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionEnd {
    #[serde(serialize_with = "crate::json::session")]
    pub session: u64,
    #[serde(serialize_with = "crate::json::optional_session")]
    pub parent_session: Option<u64>,
    pub service: String,
    pub user: String,
    pub remote_host: Option<String>,
    /// closed (pam_close_session) or process_exited.
    pub reason: String,
    pub duration_ns: u64,
    pub execs: u64,
    pub connects: u64,
    pub processes: u64,
    pub process: Option<Process>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Exec {
    #[serde(serialize_with = "crate::json::optional_session")]
    pub session: Option<u64>,
    pub session_user: Option<String>,
    pub filename: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub argv_incomplete: bool,
    /// 0, or -errno.
    pub result: i64,
    pub error: Option<String>,
    pub process: Option<Process>,
    /// The new image's environment variables that change what runs, as
    /// NAME=value (absent from the JSON when none, as in records made before).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The environment went on past what the probe looked through.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub env_cut: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Connect {
    #[serde(serialize_with = "crate::json::optional_session")]
    pub session: Option<u64>,
    pub session_user: Option<String>,
    /// inet, inet6 or unix.
    pub family: String,
    pub address: String,
    pub port: Option<u32>,
    pub result: i64,
    pub error: Option<String>,
    /// u32::MAX when via is set.
    pub fd: u32,
    pub process: Option<Process>,
    /// Unset for connect(2); "send": a destination given to sendto/sendmsg (UDP, TCP
    /// fast open), the first per process and destination each minute; "kernel": a
    /// connect the system call tracepoints do not see (`io_uring`, 32-bit `socketcall`),
    /// from the cgroup socket hook, likewise once a minute. With via set, result is
    /// not known.
    pub via: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelWitness {
    /// The seq of the kernel's login_attempt event.
    pub seq: u64,
    pub time_unix_ns: u64,
    pub service: String,
    pub user: String,
    pub outcome: Outcome,
    pub remote_host: Option<String>,
    pub pid: u32,
    pub ppid: u32,
    #[serde(serialize_with = "crate::json::optional_session")]
    pub from_session: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct JournalWitness {
    pub program: String,
    pub outcome: Outcome,
    pub attempts: u32,
    pub user: String,
    pub invalid_user: bool,
    pub method: Option<String>,
    pub key_type: Option<String>,
    pub key_fingerprint: Option<String>,
    pub key_certificate: Option<String>,
    pub remote_address: Option<String>,
    pub remote_port: Option<u32>,
    pub local_port: Option<u32>,
    pub tty: Option<String>,
    pub by_user: Option<String>,
    pub sudo_user: Option<String>,
    pub sudo_decision: Option<String>,
    pub sudo_pwd: Option<String>,
    pub sudo_target_user: Option<String>,
    pub sudo_command: Option<String>,
    pub kernel_expected: bool,
    pub time_us: u64,
    pub cursor: String,
    pub writer_pid: u32,
    pub writer_uid: Option<u32>,
    pub writer_comm: Option<String>,
    pub writer_exe: Option<String>,
    pub writer_identifier: String,
    pub identity_mismatch: bool,
    pub lines: Vec<String>,
}

/// The journald cross-check's verdict about one login.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoginVerdict {
    pub verdict: Verdict,
    pub reason: String,
    pub program: String,
    pub user: String,
    pub outcome: Outcome,
    pub attempts: u32,
    pub login_time_unix_ns: u64,
    pub auth_method: Option<String>,
    pub key_fingerprint: Option<String>,
    pub remote_address: Option<String>,
    pub remote_port: Option<u32>,
    pub command: Option<String>,
    pub user_mismatch: bool,
    pub kernel: Option<KernelWitness>,
    pub journal: Option<JournalWitness>,
}
