//! The events users read: what the agent prints (and, later, ships).
//!
//! Every event is wrapped in an [`Event`] envelope carrying `(host_id, boot_id,
//! seq)`, so loss and duplicates are exactly countable downstream.

use std::collections::BTreeMap;

use serde::Serialize;
use watchtower_journal::{JournalLogin, Program};

/// A session key as users see it: 16 hex digits, unique within one boot of one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl SessionId {
    /// `None` for the kernel's "no session" key 0.
    #[must_use]
    pub fn from_key(key: u64) -> Option<Self> {
        (key != 0).then_some(SessionId(key))
    }
}

/// The process an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    /// 0 when the kernel's task layout could not be read.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Effective uid (a setuid program's owner; absent when the kernel's layout is unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    /// Audit login uid: who logged in, kept across su and sudo (absent when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loginuid: Option<u32>,
    pub comm: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// The PAM step a failed login stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamStep {
    Start,
    Authenticate,
    Account,
    OpenSession,
}

impl PamStep {
    /// Its one name: in the JSON output and on the wire.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            PamStep::Start => "start",
            PamStep::Authenticate => "authenticate",
            PamStep::Account => "account",
            PamStep::OpenSession => "open_session",
        }
    }
}

impl Serialize for PamStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One attempt to log in (or to switch user) through PAM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoginAttempt {
    pub service: String,
    pub user: String,
    /// Whether this host knows the user (`false`: an invalid user, as sshd says).
    pub user_known: Option<bool>,
    pub remote_host: Option<String>,
    pub tty: Option<String>,
    pub remote_user: Option<String>,
    pub outcome: Outcome,
    /// The step that failed (absent on success).
    pub failed_step: Option<PamStep>,
    /// The deciding PAM return code and its name.
    pub pam_code: i32,
    pub pam_code_name: &'static str,
    /// Return code of `pam_authenticate`, absent when the application did not call it
    /// (e.g. sshd with a public key).
    pub authenticate_code: Option<i32>,
    /// Return code of `pam_acct_mgmt`, when called.
    pub account_code: Option<i32>,
    /// The session the attempt was made from (su or sudo inside an ssh login).
    pub from_session: Option<SessionId>,
    pub process: Process,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionStart {
    pub session: SessionId,
    /// The session this one was opened inside (su/sudo within an ssh login).
    pub parent_session: Option<SessionId>,
    pub service: String,
    pub user: String,
    pub remote_host: Option<String>,
    pub tty: Option<String>,
    pub remote_user: Option<String>,
    /// `/proc/<pid>/loginuid` of the session's process (absent when unset or unreadable).
    pub loginuid: Option<u32>,
    /// `/proc/<pid>/sessionid`, the audit session id.
    pub audit_session_id: Option<u32>,
    /// The session began before the agent started and was found through its audit
    /// session id (its service and remote host are then unknown, its time is the
    /// agent's start).
    pub adopted: bool,
    pub process: Process,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEndReason {
    /// `pam_close_session` was called.
    Closed,
    /// The process that opened the session exited without closing it.
    ProcessExited,
}

impl SessionEndReason {
    /// Its one name: in the JSON output and on the wire.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            SessionEndReason::Closed => "closed",
            SessionEndReason::ProcessExited => "process_exited",
        }
    }
}

impl Serialize for SessionEndReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionEnd {
    pub session: SessionId,
    pub parent_session: Option<SessionId>,
    pub service: String,
    pub user: String,
    pub remote_host: Option<String>,
    pub reason: SessionEndReason,
    pub duration_ns: u64,
    /// Programs run, connections made and processes created inside the session
    /// (child sessions included) while the agent watched.
    pub execs: u64,
    pub connects: u64,
    pub processes: u64,
    pub process: Process,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exec {
    pub session: Option<SessionId>,
    /// The user who logged in to that session.
    pub session_user: Option<String>,
    pub filename: String,
    pub argv: Vec<String>,
    /// Arguments were dropped or cut to the kernel record's bounds.
    pub argv_truncated: bool,
    /// Some argument could not be read from the process's memory (empty in `argv`).
    pub argv_incomplete: bool,
    /// The new image's environment variables that change what runs (`LD_PRELOAD`,
    /// `LD_LIBRARY_PATH`, `LD_AUDIT`, `BASH_ENV`), as `NAME=value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The environment was longer than the probe looks through: such a variable
    /// may lie beyond it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub env_cut: bool,
    /// 0, or `-errno`.
    pub result: i64,
    pub error: Option<&'static str>,
    pub process: Process,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connect {
    pub session: Option<SessionId>,
    pub session_user: Option<String>,
    /// `inet`, `inet6` or `unix`.
    pub family: &'static str,
    pub address: String,
    pub port: Option<u16>,
    /// 0, or `-errno` (`-EINPROGRESS`: a non-blocking connect under way, counts as made).
    /// Not known (0) when `via` is set.
    pub result: i64,
    pub error: Option<&'static str>,
    /// `u32::MAX` when `via` is set.
    pub fd: u32,
    /// Absent for `connect(2)`; `send` for a destination given to `sendto`/`sendmsg`
    /// (the first per process and destination each minute); `kernel` for a connect
    /// the system call tracepoints do not see (`io_uring`, a 32-bit `socketcall`),
    /// from the cgroup socket hook (likewise once a minute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    pub process: Process,
}

/// The agent's own state: what it runs, and everything it could not deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgentHealth {
    /// `start`, `periodic` or `shutdown`.
    pub reason: &'static str,
    /// Which witnesses run: `kernel+journal`, `kernel` (journald not readable:
    /// no cross-check) or `journal` (probes could not load: degraded).
    pub mode: &'static str,
    /// Why the kernel witness is not running (journal-only mode).
    pub kernel_unavailable: Option<String>,
    /// The journal witness: its state, counters and why it is off.
    pub journal: Option<JournalHealth>,
    /// Cross-check verdicts so far, and logins still waiting for the other witness.
    pub verdicts: Option<VerdictCounters>,
    /// `sessions` (logins plus what they do) or `all`.
    pub scope: &'static str,
    pub probes: Vec<String>,
    /// Kernel records lost because the ring buffer was full, by record kind.
    pub lost: BTreeMap<&'static str, u64>,
    /// Activity seen outside the capture scope and not shipped, by record kind.
    pub out_of_scope: BTreeMap<&'static str, u64>,
    /// Records rejected by the decoder.
    pub decode_errors: u64,
    /// Records read from the ring buffer.
    pub records: u64,
    /// PAM calls whose transaction started before the agent did.
    pub pam_orphans: u64,
    /// Open sessions the agent knows of.
    pub open_sessions: u64,
    /// On start: the last sequence number an earlier run could have used.
    pub resumed_after_seq: Option<u64>,
    /// The spool's state, when events are shipped to a server. Carried on the wire
    /// only (not in the JSON lines).
    #[serde(skip)]
    pub spool: Option<SpoolHealth>,
    /// The agent as a witness of the server's log, when events are shipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_witness: Option<LogWitnessHealth>,
    /// How the kernel witness began (absent in journal-only mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_start: Option<CaptureStartHealth>,
    /// What the assembler let go because its bounds were reached, by reason
    /// (`unprivileged_pam_transaction`, `pam_transaction`, `session`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evicted: BTreeMap<&'static str, u64>,
}

/// How the kernel witness began ([`crate::pins::CaptureStart`]): `fresh`,
/// `resumed`, `gap` (nothing captured between the two times, Unix ns) or
/// `unpinned`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStartHealth {
    pub how: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_from_unix_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_to_unix_ns: Option<u64>,
}

/// What the agent verified of the server's tamper-evidence log, and what it
/// found wrong (see [`crate::log_witness`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogWitnessHealth {
    /// The size of the last signed checkpoint verified.
    pub checkpoint_size: u64,
    pub receipts_verified: u64,
    pub receipts_pending: u64,
    /// Findings by kind (`rewound`, `forked`, ...).
    pub findings: BTreeMap<String, u64>,
    pub last_finding: String,
}

/// The on-disk spool's state in health records and heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolHealth {
    pub bytes: u64,
    pub max_bytes: u64,
    /// Events not yet acknowledged by the server.
    pub pending: u64,
    /// Events dropped, by reason (`spool_full`, `write_error`, ...).
    pub dropped: BTreeMap<&'static str, u64>,
    pub corrupt_records: u64,
    /// The highest index the server has stored.
    pub acked: u64,
    /// Times the link to the server was lost and made again.
    pub reconnects: u64,
}

/// The journal reader's state in health records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalHealth {
    /// `following`, `restarting` or `unavailable`.
    pub state: &'static str,
    /// Why the journal is not followed (kernel-only mode), or the last reader error.
    pub error: Option<String>,
    /// Whether journald accepts messages right now (its socket answers): when it
    /// does not, logins go unlogged and come out `kernel_only`.
    pub journald_accepting: bool,
    pub records: u64,
    /// Records that were not valid journal export JSON (or too large), skipped.
    pub malformed: u64,
    /// Records of the watched programs whose message was understood.
    pub recognised: u64,
    /// Logins the journal told of.
    pub logins: u64,
    /// Times journalctl had to be restarted.
    pub restarts: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    KernelOnly,
    JournalOnly,
    Unchecked,
}

/// What the kernel witness said, as carried in a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelWitness {
    /// The program the PAM service stands for (looked up once, not shipped).
    #[serde(skip)]
    pub program: Program,
    /// The `seq` of the kernel's `login_attempt` event.
    pub seq: u64,
    pub time_unix_ns: u64,
    pub service: String,
    pub user: String,
    pub outcome: Outcome,
    pub remote_host: Option<String>,
    pub pid: u32,
    pub ppid: u32,
    pub from_session: Option<SessionId>,
    /// The journal could not be read when the kernel saw this login (journald
    /// not accepting messages, or its files not followed): a missing journal
    /// record then says nothing about suppression.
    #[serde(skip)]
    pub journal_unreadable: bool,
}

/// A cross-check verdict about one login (reached by [`crate::reconcile`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoginVerdict {
    pub verdict: Verdict,
    /// Why, in a word: `both_witnesses`, `no_journal_record`,
    /// `journald_not_accepting`, `no_kernel_record`, `writer_not_the_program`,
    /// `kernel_witness_off`, `before_kernel_watch`, `agent_stopping`,
    /// `no_pam_authentication`.
    pub reason: &'static str,
    pub program: Program,
    pub user: String,
    pub outcome: Outcome,
    /// Failed tries the verdict stands for (sudo's `3 incorrect password attempts`).
    pub attempts: u32,
    /// When the login happened (the kernel's time when it saw it, else the journal's).
    pub login_time_unix_ns: u64,
    /// What only the log knows, lifted for convenience.
    pub auth_method: Option<String>,
    pub key_fingerprint: Option<String>,
    pub remote_address: Option<String>,
    pub remote_port: Option<u16>,
    /// sudo's `COMMAND=`.
    pub command: Option<String>,
    /// The witnesses name different users (beyond sudo/su's own two users).
    pub user_mismatch: bool,
    pub kernel: Option<KernelWitness>,
    pub journal: Option<JournalLogin>,
}

/// Verdict counts for health records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounters {
    pub confirmed: u64,
    pub kernel_only: u64,
    pub journal_only: u64,
    pub unchecked: u64,
    /// Kernel logins waiting for their journal line now.
    pub pending_kernel: u64,
    /// Journal logins waiting for their kernel record now.
    pub pending_journal: u64,
    /// Pending logins dropped because too many were waiting (each still got a verdict).
    pub overflow: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    LoginAttempt(LoginAttempt),
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    Exec(Exec),
    Connect(Connect),
    LoginVerdict(Box<LoginVerdict>),
    /// Boxed: far larger than the other kinds, and rare (one a minute).
    AgentHealth(Box<AgentHealth>),
}

#[cfg(test)]
impl EventBody {
    pub fn as_login_attempt(&self) -> Option<&LoginAttempt> {
        if let EventBody::LoginAttempt(a) = self {
            Some(a)
        } else {
            None
        }
    }
    pub fn as_session_start(&self) -> Option<&SessionStart> {
        if let EventBody::SessionStart(s) = self {
            Some(s)
        } else {
            None
        }
    }
}

/// An event with its identity and time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub host_id: String,
    pub boot_id: String,
    pub seq: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub time_unix_ns: u64,
    #[serde(flatten)]
    pub body: EventBody,
}

/// Name of a Linux-PAM return code.
#[must_use]
pub fn pam_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 32] = [
        "PAM_SUCCESS",
        "PAM_OPEN_ERR",
        "PAM_SYMBOL_ERR",
        "PAM_SERVICE_ERR",
        "PAM_SYSTEM_ERR",
        "PAM_BUF_ERR",
        "PAM_PERM_DENIED",
        "PAM_AUTH_ERR",
        "PAM_CRED_INSUFFICIENT",
        "PAM_AUTHINFO_UNAVAIL",
        "PAM_USER_UNKNOWN",
        "PAM_MAXTRIES",
        "PAM_NEW_AUTHTOK_REQD",
        "PAM_ACCT_EXPIRED",
        "PAM_SESSION_ERR",
        "PAM_CRED_UNAVAIL",
        "PAM_CRED_EXPIRED",
        "PAM_CRED_ERR",
        "PAM_NO_MODULE_DATA",
        "PAM_CONV_ERR",
        "PAM_AUTHTOK_ERR",
        "PAM_AUTHTOK_RECOVERY_ERR",
        "PAM_AUTHTOK_LOCK_BUSY",
        "PAM_AUTHTOK_DISABLE_AGING",
        "PAM_TRY_AGAIN",
        "PAM_IGNORE",
        "PAM_ABORT",
        "PAM_AUTHTOK_EXPIRED",
        "PAM_MODULE_UNKNOWN",
        "PAM_BAD_ITEM",
        "PAM_CONV_AGAIN",
        "PAM_INCOMPLETE",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("PAM_UNKNOWN")
}

/// Name of an errno carried as a negative syscall result.
#[must_use]
pub fn errno_name(result: i64) -> Option<&'static str> {
    if result >= 0 {
        return None;
    }
    Some(match -result {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        26 => "ETXTBSY",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        88 => "ENOTSOCK",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        106 => "EISCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => "EOTHER",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_codes() {
        assert_eq!(pam_code_name(0), "PAM_SUCCESS");
        assert_eq!(pam_code_name(7), "PAM_AUTH_ERR");
        assert_eq!(pam_code_name(10), "PAM_USER_UNKNOWN");
        assert_eq!(pam_code_name(-1), "PAM_UNKNOWN");
        assert_eq!(pam_code_name(99), "PAM_UNKNOWN");
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(-111), Some("ECONNREFUSED"));
        assert_eq!(errno_name(-115), Some("EINPROGRESS"));
    }

    #[test]
    fn envelope_serializes_flat_with_kind_tag() {
        let event = Event {
            host_id: "h1".into(),
            boot_id: "b".into(),
            seq: 7,
            time: "2026-01-01T00:00:00.000000000Z".into(),
            time_unix_ns: 1,
            body: EventBody::Exec(Exec {
                session: SessionId::from_key(0xab),
                session_user: Some("alice".into()),
                filename: "/usr/bin/id".into(),
                argv: vec!["id".into()],
                argv_truncated: false,
                argv_incomplete: false,
                env: Vec::new(),
                env_cut: false,
                result: 0,
                error: None,
                process: Process {
                    pid: 1,
                    tid: 1,
                    ppid: 0,
                    uid: 0,
                    gid: 0,
                    comm: "bash".into(),
                    euid: None,
                    loginuid: None,
                },
            }),
        };
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "exec");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["session"], "00000000000000ab");
        assert_eq!(json["process"]["comm"], "bash");
    }
}
