//! Login sessions: opened by a successful `pam_open_session` (see [`super::pam`])
//! or adopted at start-up, they count the execs, connects and processes inside
//! them (and inside the sessions nested in them) and end on `pam_close_session`,
//! or when the process that opened them exits without closing them.

use super::{Assembler, process};
use crate::decode::Task;
use crate::event::{EventBody, Process, SessionEnd, SessionEndReason, SessionId, SessionStart};
use crate::host_lookup::ProcessInfo;

/// Bound on what is remembered for sessions whose end was never seen.
const MAX_SESSIONS: usize = 65_536;
/// Nesting followed when counting activity into enclosing sessions.
const MAX_NESTING: usize = 16;

/// A login session the assembler follows; kept in the state directory so an agent
/// that resumes the probes (see [`crate::pins`]) follows it on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveSession {
    /// The session's key (its id).
    pub(super) key: u64,
    pub(super) parent: u64,
    pub(super) service: String,
    pub(super) user: String,
    pub(super) remote_host: Option<String>,
    pub(super) root_tgid: u32,
    pub(super) opened_ns: u64,
    pub(super) execs: u64,
    pub(super) connects: u64,
    pub(super) processes: u64,
}

/// What a session takes over from the PAM transaction that opened it.
pub(super) struct Login {
    pub(super) service: String,
    pub(super) user: String,
    pub(super) remote_host: Option<String>,
    pub(super) tty: Option<String>,
    pub(super) remote_user: Option<String>,
}

impl<P: ProcessInfo> Assembler<P> {
    pub(super) fn session_user(&self, key: u64) -> Option<String> {
        self.sessions.get(&key).map(|s| s.user.clone())
    }

    pub(super) fn count_in_sessions(&mut self, key: u64, mut bump: impl FnMut(&mut LiveSession)) {
        let mut key = key;
        for _ in 0..MAX_NESTING {
            let Some(session) = self.sessions.get_mut(&key) else {
                return;
            };
            bump(session);
            self.sessions_counted = true;
            key = session.parent;
        }
    }

    /// The sessions followed now, to keep across an agent restart.
    #[must_use]
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        let mut sessions: Vec<LiveSession> = self.sessions.values().cloned().collect();
        sessions.sort_by_key(|s| s.opened_ns);
        sessions
    }

    /// Follow on the sessions an earlier agent kept (their starts were reported then).
    pub fn resume(&mut self, sessions: Vec<LiveSession>) {
        for session in sessions {
            self.sessions.insert(session.key, session);
        }
    }

    /// Whether a session began or ended (`.0`) or was counted into (`.1`) since the
    /// last call.
    pub fn take_session_changes(&mut self) -> (bool, bool) {
        let changes = (self.sessions_changed, self.sessions_counted);
        self.sessions_changed = false;
        self.sessions_counted = false;
        changes
    }

    /// Put back a count change [`Self::take_session_changes`] took, to be kept later.
    pub fn note_counted(&mut self) {
        self.sessions_counted = true;
    }

    /// A session opened by a PAM transaction: remembered, and its `session_start`.
    pub(super) fn start_session(
        &mut self,
        login: Login,
        task: &Task,
        session_key: u64,
        parent_session_key: u64,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let now = task.ktime_ns;
        let start = SessionStart {
            session: SessionId(session_key),
            parent_session: SessionId::from_key(parent_session_key),
            service: login.service.clone(),
            user: login.user.clone(),
            remote_host: login.remote_host.clone(),
            tty: login.tty,
            remote_user: login.remote_user,
            // The kernel's ids at the time of the call; /proc (racing the process's
            // exit) only where the kernel's layout was unknown.
            loginuid: task.loginuid.or_else(|| self.info.loginuid(task.tgid)),
            audit_session_id: task
                .audit_session_id
                .or_else(|| self.info.audit_session_id(task.tgid)),
            adopted: false,
            process: process(task),
        };
        let live = LiveSession {
            key: session_key,
            parent: parent_session_key,
            service: login.service,
            user: login.user,
            remote_host: login.remote_host,
            root_tgid: task.tgid,
            opened_ns: now,
            execs: 0,
            connects: 0,
            processes: 0,
        };
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.opened_ns)
                .map(|(k, _)| *k)
        {
            self.sessions.remove(&oldest);
            self.counters.evicted_sessions += 1;
        }
        self.sessions.insert(session_key, live);
        self.sessions_changed = true;
        out.push((now, EventBody::SessionStart(start)));
    }

    /// Register a session that began before the agent (see [`crate::adopt`]).
    pub fn adopt(
        &mut self,
        session: &crate::adopt::AdoptedSession,
        now_ns: u64,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let user = session
            .loginuid
            .and_then(|uid| self.info.user_name(uid).or_else(|| Some(uid.to_string())))
            .unwrap_or_default();
        let leader = session
            .root
            .or_else(|| session.members.first().copied())
            .unwrap_or(0);
        let comm = self.info.comm(leader).unwrap_or_default();
        self.sessions_changed = true;
        self.sessions.insert(
            session.key,
            LiveSession {
                key: session.key,
                parent: 0,
                service: "unknown".into(),
                user: user.clone(),
                remote_host: None,
                root_tgid: session.root.unwrap_or(0),
                opened_ns: now_ns,
                execs: 0,
                connects: 0,
                processes: 0,
            },
        );
        out.push((
            now_ns,
            EventBody::SessionStart(SessionStart {
                session: SessionId(session.key),
                parent_session: None,
                service: "unknown".into(),
                user,
                remote_host: None,
                tty: None,
                remote_user: None,
                loginuid: session.loginuid,
                audit_session_id: Some(session.audit_session_id),
                adopted: true,
                process: Process {
                    pid: leader,
                    tid: leader,
                    ppid: 0,
                    uid: session.loginuid.unwrap_or(0),
                    gid: 0,
                    euid: None,
                    loginuid: session.loginuid,
                    comm,
                },
            }),
        ));
    }

    pub(super) fn end_session(
        &mut self,
        key: u64,
        task: &Task,
        reason: SessionEndReason,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let Some(s) = self.sessions.remove(&key) else {
            return;
        };
        self.sessions_changed = true;
        out.push((
            task.ktime_ns,
            EventBody::SessionEnd(SessionEnd {
                session: SessionId(key),
                parent_session: SessionId::from_key(s.parent),
                service: s.service,
                user: s.user,
                remote_host: s.remote_host,
                reason,
                duration_ns: task.ktime_ns.saturating_sub(s.opened_ns),
                execs: s.execs,
                connects: s.connects,
                processes: s.processes,
                process: process(task),
            }),
        ));
    }

    pub(super) fn exit(&mut self, task: &Task, out: &mut Vec<(u64, EventBody)>) {
        let mut orphaned: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.root_tgid == task.tgid)
            .map(|(k, _)| *k)
            .collect();
        // Innermost (latest) first, so a child session ends before its parent.
        orphaned.sort_by_key(|k| std::cmp::Reverse(self.sessions[k].opened_ns));
        for key in orphaned {
            self.end_session(key, task, SessionEndReason::ProcessExited, out);
        }
        self.transactions.retain(|(tgid, _), _| *tgid != task.tgid);
    }
}
