//! Session assembly: turns the kernel's PAM, exec, connect, fork and exit facts
//! into the events users read.
//!
//! A PAM transaction is followed by its handle, keyed by `(tgid, handle)` (a
//! handle address alone repeats across forked processes). A call from a forked
//! helper (sshd's keyboard-interactive child) is matched through its parent.
//!
//! Login outcome rules:
//! - a failed `pam_authenticate` is a failed attempt at once (an application may
//!   retry on the same handle: each try is an attempt);
//! - `pam_acct_mgmt` decides success or failure (`PAM_NEW_AUTHTOK_REQD` waits for
//!   `pam_chauthtok`);
//! - a successful `pam_open_session` without an earlier verdict is a success (the
//!   session proves it), a failed one is a failure at that step;
//! - `pam_end` after a successful `pam_authenticate` with no account check is a
//!   success (applications that only authenticate).
//!
//! Sessions end on `pam_close_session`, or when the process that opened them
//! exits without closing them.

use std::collections::HashMap;

use watchtower_common::PamFunction;

use crate::decode::{Destination, KernelRecord, PamItem, Task};
use crate::event::{
    Connect, EventBody, Exec, LoginAttempt, Outcome, PamStep, Process, SessionEnd, SessionEndReason,
    SessionId, SessionStart, errno_name, pam_code_name,
};

const PAM_SUCCESS: i32 = 0;
const PAM_NEW_AUTHTOK_REQD: i32 = 12;
/// Bounds on what is remembered for transactions and sessions whose end was never seen.
const MAX_TRANSACTIONS: usize = 8192;
const MAX_SESSIONS: usize = 65_536;
/// Nesting followed when counting activity into enclosing sessions.
const MAX_NESTING: usize = 16;

/// Facts that only the running system knows (/proc, the user database).
pub trait ProcessInfo {
    fn loginuid(&self, pid: u32) -> Option<u32>;
    fn audit_session_id(&self, pid: u32) -> Option<u32>;
    /// The arguments of a live process (`/proc/<pid>/cmdline`).
    fn cmdline(&self, pid: u32) -> Option<Vec<String>>;
    /// Whether this host knows the user name (None: could not tell).
    fn user_exists(&self, name: &str) -> Option<bool>;
    /// The name of a uid.
    fn user_name(&self, uid: u32) -> Option<String>;
    /// The command name of a live process.
    fn comm(&self, pid: u32) -> Option<String>;
}

/// [`ProcessInfo`] read from `/proc`.
pub struct ProcFs;

/// [`ProcessInfo`] that knows nothing (replaying records captured elsewhere).
pub struct NoProcessInfo;

impl ProcessInfo for NoProcessInfo {
    fn loginuid(&self, _: u32) -> Option<u32> {
        None
    }
    fn audit_session_id(&self, _: u32) -> Option<u32> {
        None
    }
    fn cmdline(&self, _: u32) -> Option<Vec<String>> {
        None
    }
    fn user_exists(&self, _: &str) -> Option<bool> {
        None
    }
    fn user_name(&self, _: u32) -> Option<String> {
        None
    }
    fn comm(&self, _: u32) -> Option<String> {
        None
    }
}

/// A number from `/proc/<pid>/<file>`; `None` when unreadable or unset ((unsigned)-1).
pub(crate) fn read_proc_u32(pid: u32, file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let value: u32 = text.trim().parse().ok()?;
    // (uid_t)-1 / (unsigned)-1: not set.
    (value != u32::MAX).then_some(value)
}

impl ProcessInfo for ProcFs {
    fn loginuid(&self, pid: u32) -> Option<u32> {
        read_proc_u32(pid, "loginuid")
    }
    fn audit_session_id(&self, pid: u32) -> Option<u32> {
        read_proc_u32(pid, "sessionid")
    }
    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
        Some(
            raw.split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        )
    }
    fn user_exists(&self, name: &str) -> Option<bool> {
        if name.is_empty() {
            return None;
        }
        let c_name = std::ffi::CString::new(name).ok()?;
        // SAFETY: passwd is plain C data; all-zero is a valid initial value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r with buffers we own, sized as declared.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &raw mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &raw mut result,
            )
        };
        match rc {
            0 => Some(!result.is_null()),
            _ => None,
        }
    }
    fn user_name(&self, uid: u32) -> Option<String> {
        // SAFETY: passwd is plain C data; all-zero is a valid initial value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r with buffers we own, sized as declared.
        let rc = unsafe { libc::getpwuid_r(uid, &raw mut pwd, buf.as_mut_ptr(), buf.len(), &raw mut result) };
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
        Some(
            unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned(),
        )
    }
    fn comm(&self, pid: u32) -> Option<String> {
        Some(
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()?
                .trim_end()
                .to_string(),
        )
    }
}

/// Arguments read from /proc can replace a partial kernel copy only if they agree
/// with every argument the kernel did read (cut ones as prefixes).
fn consistent_with_kernel(kernel: &[String], proc: &[String], truncated: bool) -> bool {
    if proc.len() < kernel.len() || (!truncated && proc.len() != kernel.len()) {
        return false;
    }
    kernel
        .iter()
        .zip(proc)
        .all(|(k, p)| k.is_empty() || p.starts_with(k.as_str()))
}

#[derive(Debug, Default)]
struct Transaction {
    service: String,
    user: String,
    remote_host: Option<String>,
    tty: Option<String>,
    remote_user: Option<String>,
    started_ns: u64,
    authenticate_code: Option<i32>,
    account_code: Option<i32>,
    verdict_reported: bool,
    from_session: u64,
    session: Option<u64>,
}

#[derive(Debug)]
struct LiveSession {
    parent: u64,
    service: String,
    user: String,
    remote_host: Option<String>,
    root_tgid: u32,
    opened_ns: u64,
    execs: u64,
    connects: u64,
    processes: u64,
}

/// Counters of the assembler, reported in health records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerCounters {
    /// PAM calls on a handle whose `pam_start` was not seen.
    pub pam_orphans: u64,
    /// Transactions or sessions forgotten because the bounds were reached.
    pub evicted: u64,
}

pub struct Assembler<P> {
    transactions: HashMap<(u32, u64), Transaction>,
    sessions: HashMap<u64, LiveSession>,
    info: P,
    counters: AssemblerCounters,
}

fn process(task: &Task) -> Process {
    Process {
        pid: task.tgid,
        tid: task.tid,
        ppid: task.ppid,
        uid: task.uid,
        gid: task.gid,
        comm: task.comm.clone(),
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

impl<P: ProcessInfo> Assembler<P> {
    pub fn new(info: P) -> Self {
        Self {
            transactions: HashMap::new(),
            sessions: HashMap::new(),
            info,
            counters: AssemblerCounters::default(),
        }
    }

    #[must_use]
    pub fn counters(&self) -> AssemblerCounters {
        self.counters
    }

    #[must_use]
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Feed one kernel record; the events it completes are appended to `out`
    /// with the kernel time they happened at.
    #[expect(clippy::too_many_lines, reason = "one arm per kernel record kind")]
    pub fn push(&mut self, record: KernelRecord, out: &mut Vec<(u64, EventBody)>) {
        match record {
            KernelRecord::PamStart {
                task,
                handle,
                retval,
                service,
                user,
            } => {
                self.pam_start(&task, handle, retval, service, user, out);
            }
            KernelRecord::PamItem {
                task,
                handle,
                item,
                value,
            } => {
                let key = self.transaction_key(&task, handle);
                let t = self.transactions.entry(key).or_default();
                match item {
                    PamItem::User => t.user = value,
                    PamItem::Tty => t.tty = non_empty(&value),
                    PamItem::RemoteHost => t.remote_host = non_empty(&value),
                    PamItem::RemoteUser => t.remote_user = non_empty(&value),
                }
            }
            KernelRecord::PamCall {
                task,
                handle,
                function,
                retval,
                session_key,
                parent_session_key,
            } => {
                self.pam_call(
                    &task,
                    handle,
                    function,
                    retval,
                    session_key,
                    parent_session_key,
                    out,
                );
            }
            KernelRecord::Exec {
                task,
                retval,
                filename,
                argv,
                truncated,
                partial,
            } => {
                self.count_in_sessions(task.session_key, |s| s.execs += 1);
                // Arguments in pages not yet faulted in cannot be read by the probe; after a
                // successful exec the same arguments are in /proc while the process lives.
                let (argv, truncated, incomplete) = if partial && retval == 0 {
                    match self.info.cmdline(task.tgid) {
                        Some(proc) if consistent_with_kernel(&argv, &proc, truncated) => (proc, false, false),
                        _ => (argv, truncated, true),
                    }
                } else {
                    (argv, truncated, partial)
                };
                out.push((
                    task.ktime_ns,
                    EventBody::Exec(Exec {
                        session: SessionId::from_key(task.session_key),
                        session_user: self.session_user(task.session_key),
                        filename,
                        argv,
                        argv_truncated: truncated,
                        argv_incomplete: incomplete,
                        result: retval,
                        error: errno_name(retval),
                        process: process(&task),
                    }),
                ));
            }
            KernelRecord::Connect {
                task,
                retval,
                fd,
                destination,
            } => {
                self.count_in_sessions(task.session_key, |s| s.connects += 1);
                let (family, address, port) = match destination {
                    Destination::Inet(a) => ("inet", a.ip().to_string(), Some(a.port())),
                    Destination::Inet6(a) => ("inet6", a.ip().to_string(), Some(a.port())),
                    Destination::Unix(path) => ("unix", path, None),
                };
                out.push((
                    task.ktime_ns,
                    EventBody::Connect(Connect {
                        session: SessionId::from_key(task.session_key),
                        session_user: self.session_user(task.session_key),
                        family,
                        address,
                        port,
                        result: retval,
                        error: errno_name(retval),
                        fd,
                        process: process(&task),
                    }),
                ));
            }
            KernelRecord::Fork { task, .. } => {
                self.count_in_sessions(task.session_key, |s| s.processes += 1);
            }
            KernelRecord::Exit { task, .. } => self.exit(&task, out),
        }
    }

    fn session_user(&self, key: u64) -> Option<String> {
        self.sessions.get(&key).map(|s| s.user.clone())
    }

    fn count_in_sessions(&mut self, key: u64, mut bump: impl FnMut(&mut LiveSession)) {
        let mut key = key;
        for _ in 0..MAX_NESTING {
            let Some(session) = self.sessions.get_mut(&key) else {
                return;
            };
            bump(session);
            key = session.parent;
        }
    }

    /// The transaction a call on `handle` belongs to: this process's, else its parent's
    /// (a forked PAM helper), else a new orphan for a transaction started before us.
    fn transaction_key(&mut self, task: &Task, handle: u64) -> (u32, u64) {
        let own = (task.tgid, handle);
        if self.transactions.contains_key(&own) {
            return own;
        }
        let parents = (task.ppid, handle);
        if task.ppid != 0 && self.transactions.contains_key(&parents) {
            return parents;
        }
        self.counters.pam_orphans += 1;
        self.bound_transactions();
        self.transactions.insert(
            own,
            Transaction {
                service: task.comm.clone(),
                started_ns: task.ktime_ns,
                from_session: task.session_key,
                ..Transaction::default()
            },
        );
        own
    }

    fn bound_transactions(&mut self) {
        while self.transactions.len() >= MAX_TRANSACTIONS {
            let oldest = self
                .transactions
                .iter()
                .min_by_key(|(_, t)| t.started_ns)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.transactions.remove(&k);
                    self.counters.evicted += 1;
                }
                None => break,
            }
        }
    }

    fn pam_start(
        &mut self,
        task: &Task,
        handle: u64,
        retval: i32,
        service: String,
        user: String,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let transaction = Transaction {
            service,
            user,
            started_ns: task.ktime_ns,
            from_session: task.session_key,
            ..Transaction::default()
        };
        if retval != PAM_SUCCESS || handle == 0 {
            out.push((
                task.ktime_ns,
                attempt(&self.info, &transaction, task, Some(PamStep::Start), retval),
            ));
            return;
        }
        self.bound_transactions();
        self.transactions.insert((task.tgid, handle), transaction);
    }

    #[expect(clippy::too_many_arguments, reason = "the fields of one kernel record")]
    fn pam_call(
        &mut self,
        task: &Task,
        handle: u64,
        function: PamFunction,
        retval: i32,
        session_key: u64,
        parent_session_key: u64,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let key = self.transaction_key(task, handle);
        let now = task.ktime_ns;
        match function {
            PamFunction::Authenticate => {
                let t = self.transactions.get_mut(&key).expect("transaction_key inserts");
                t.authenticate_code = Some(retval);
                if retval != PAM_SUCCESS {
                    out.push((
                        now,
                        attempt(&self.info, t, task, Some(PamStep::Authenticate), retval),
                    ));
                }
            }
            PamFunction::AcctMgmt => {
                let t = self.transactions.get_mut(&key).expect("transaction_key inserts");
                t.account_code = Some(retval);
                if retval == PAM_SUCCESS {
                    if !t.verdict_reported {
                        t.verdict_reported = true;
                        out.push((now, attempt(&self.info, t, task, None, PAM_SUCCESS)));
                    }
                } else if retval != PAM_NEW_AUTHTOK_REQD {
                    out.push((now, attempt(&self.info, t, task, Some(PamStep::Account), retval)));
                }
            }
            PamFunction::Chauthtok => {
                let t = self.transactions.get_mut(&key).expect("transaction_key inserts");
                if t.account_code == Some(PAM_NEW_AUTHTOK_REQD) && !t.verdict_reported {
                    t.verdict_reported = true;
                    let step = (retval != PAM_SUCCESS).then_some(PamStep::Account);
                    out.push((now, attempt(&self.info, t, task, step, retval)));
                }
            }
            PamFunction::Setcred => {}
            PamFunction::OpenSession => {
                self.open_session(key, task, retval, session_key, parent_session_key, out);
            }
            PamFunction::CloseSession => {
                // The session this transaction opened; else (opened before the agent) the
                // session the kernel says the caller belongs to, if the caller is its root.
                let from_transaction = self.transactions.get_mut(&key).and_then(|t| t.session.take());
                let closed = from_transaction.or_else(|| {
                    self.sessions
                        .get(&session_key)
                        .is_some_and(|s| s.root_tgid == task.tgid)
                        .then_some(session_key)
                });
                if let Some(closed) = closed {
                    self.end_session(closed, task, SessionEndReason::Closed, out);
                }
            }
            PamFunction::End => {
                if let Some(t) = self.transactions.remove(&key)
                    && t.authenticate_code == Some(PAM_SUCCESS)
                    && t.account_code.is_none()
                    && !t.verdict_reported
                {
                    out.push((now, attempt(&self.info, &t, task, None, PAM_SUCCESS)));
                }
            }
        }
    }

    fn open_session(
        &mut self,
        key: (u32, u64),
        task: &Task,
        retval: i32,
        session_key: u64,
        parent_session_key: u64,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let now = task.ktime_ns;
        let t = self.transactions.get_mut(&key).expect("transaction_key inserts");
        if retval != PAM_SUCCESS {
            out.push((
                now,
                attempt(&self.info, t, task, Some(PamStep::OpenSession), retval),
            ));
            return;
        }
        if !t.verdict_reported {
            t.verdict_reported = true;
            out.push((now, attempt(&self.info, t, task, None, PAM_SUCCESS)));
        }
        if session_key == 0 {
            return;
        }
        t.session = Some(session_key);
        let start = SessionStart {
            session: SessionId(session_key),
            parent_session: SessionId::from_key(parent_session_key),
            service: t.service.clone(),
            user: t.user.clone(),
            remote_host: t.remote_host.clone(),
            tty: t.tty.clone(),
            remote_user: t.remote_user.clone(),
            loginuid: self.info.loginuid(task.tgid),
            audit_session_id: self.info.audit_session_id(task.tgid),
            adopted: false,
            process: process(task),
        };
        let live = LiveSession {
            parent: parent_session_key,
            service: t.service.clone(),
            user: t.user.clone(),
            remote_host: t.remote_host.clone(),
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
            self.counters.evicted += 1;
        }
        self.sessions.insert(session_key, live);
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
        self.sessions.insert(
            session.key,
            LiveSession {
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
                    comm,
                },
            }),
        ));
    }

    fn end_session(
        &mut self,
        key: u64,
        task: &Task,
        reason: SessionEndReason,
        out: &mut Vec<(u64, EventBody)>,
    ) {
        let Some(s) = self.sessions.remove(&key) else {
            return;
        };
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

    fn exit(&mut self, task: &Task, out: &mut Vec<(u64, EventBody)>) {
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

fn attempt(
    info: &impl ProcessInfo,
    t: &Transaction,
    task: &Task,
    failed_step: Option<PamStep>,
    code: i32,
) -> EventBody {
    EventBody::LoginAttempt(LoginAttempt {
        service: t.service.clone(),
        user: t.user.clone(),
        user_known: info.user_exists(&t.user),
        remote_host: t.remote_host.clone(),
        tty: t.tty.clone(),
        remote_user: t.remote_user.clone(),
        outcome: if failed_step.is_none() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        failed_step,
        pam_code: code,
        pam_code_name: pam_code_name(code),
        authenticate_code: t.authenticate_code,
        account_code: t.account_code,
        from_session: SessionId::from_key(t.from_session),
        process: process(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FixedInfo;
    impl ProcessInfo for FixedInfo {
        fn loginuid(&self, _: u32) -> Option<u32> {
            Some(1001)
        }
        fn audit_session_id(&self, _: u32) -> Option<u32> {
            Some(7)
        }
        fn cmdline(&self, _: u32) -> Option<Vec<String>> {
            Some(vec!["bash".into(), "-c".into(), "id; true".into()])
        }
        fn user_exists(&self, name: &str) -> Option<bool> {
            Some(name != "mallory")
        }
        fn user_name(&self, uid: u32) -> Option<String> {
            (uid == 1001).then(|| "alice".to_string())
        }
        fn comm(&self, _: u32) -> Option<String> {
            Some("sshd".into())
        }
    }

    fn task(tgid: u32, ppid: u32, ktime_ns: u64, session_key: u64, comm: &str) -> Task {
        Task {
            ktime_ns,
            cpu: 0,
            session_key,
            tgid,
            tid: tgid,
            ppid,
            uid: 0,
            gid: 0,
            comm: comm.into(),
        }
    }

    fn start(t: Task, handle: u64, service: &str, user: &str) -> KernelRecord {
        KernelRecord::PamStart {
            task: t,
            handle,
            retval: 0,
            service: service.into(),
            user: user.into(),
        }
    }

    fn item(t: Task, handle: u64, item: PamItem, value: &str) -> KernelRecord {
        KernelRecord::PamItem {
            task: t,
            handle,
            item,
            value: value.into(),
        }
    }

    fn call(t: Task, handle: u64, function: PamFunction, retval: i32) -> KernelRecord {
        KernelRecord::PamCall {
            task: t,
            handle,
            function,
            retval,
            session_key: 0,
            parent_session_key: 0,
        }
    }

    fn opened(t: Task, handle: u64, key: u64, parent: u64) -> KernelRecord {
        KernelRecord::PamCall {
            task: t,
            handle,
            function: PamFunction::OpenSession,
            retval: 0,
            session_key: key,
            parent_session_key: parent,
        }
    }

    fn run(records: Vec<KernelRecord>) -> Vec<EventBody> {
        let mut assembler = Assembler::new(FixedInfo);
        let mut out = Vec::new();
        for r in records {
            assembler.push(r, &mut out);
        }
        out.into_iter().map(|(_, e)| e).collect()
    }

    /// The sequence an OpenSSH 9.2 monitor makes for a password login that runs one command.
    #[test]
    fn ssh_password_login_session_and_close() {
        let sshd = |t| task(500, 400, t, 0, "sshd");
        let in_session = |t| task(500, 400, t, 0xa00, "sshd");
        let events = run(vec![
            start(sshd(1), 0x55, "sshd", "alice"),
            item(sshd(2), 0x55, PamItem::RemoteHost, "127.0.0.1"),
            item(sshd(3), 0x55, PamItem::Tty, "ssh"),
            call(sshd(4), 0x55, PamFunction::Authenticate, 0),
            call(sshd(5), 0x55, PamFunction::AcctMgmt, 0),
            call(sshd(6), 0x55, PamFunction::Setcred, 0),
            opened(in_session(7), 0x55, 0xa00, 0),
            KernelRecord::Fork {
                task: in_session(8),
                child_tid: 501,
            },
            KernelRecord::Exec {
                task: task(502, 501, 9, 0xa00, "bash"),
                retval: 0,
                filename: "/usr/bin/id".into(),
                argv: vec!["id".into()],
                truncated: false,
                partial: false,
            },
            KernelRecord::Connect {
                task: task(502, 501, 10, 0xa00, "bash"),
                retval: -111,
                fd: 3,
                destination: Destination::Inet("127.0.0.1:9".parse().unwrap()),
            },
            KernelRecord::PamCall {
                task: in_session(1_000_000_010),
                handle: 0x55,
                function: PamFunction::CloseSession,
                retval: 0,
                session_key: 0xa00,
                parent_session_key: 0,
            },
            call(sshd(1_000_000_011), 0x55, PamFunction::End, 0),
        ]);
        assert_eq!(events.len(), 5, "{events:#?}");
        let EventBody::LoginAttempt(login) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert_eq!(login.service, "sshd");
        assert_eq!(login.user, "alice");
        assert_eq!(login.remote_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(login.tty.as_deref(), Some("ssh"));
        assert_eq!(login.outcome, Outcome::Success);
        assert_eq!((login.authenticate_code, login.account_code), (Some(0), Some(0)));
        let EventBody::SessionStart(s) = &events[1] else {
            panic!()
        };
        assert_eq!(
            (s.session, s.parent_session, s.loginuid),
            (SessionId(0xa00), None, Some(1001))
        );
        let EventBody::Exec(e) = &events[2] else { panic!() };
        assert_eq!(
            (e.session, e.session_user.as_deref()),
            (Some(SessionId(0xa00)), Some("alice"))
        );
        let EventBody::Connect(c) = &events[3] else {
            panic!()
        };
        assert_eq!(
            (c.address.as_str(), c.port, c.error),
            ("127.0.0.1", Some(9), Some("ECONNREFUSED"))
        );
        let EventBody::SessionEnd(end) = &events[4] else {
            panic!()
        };
        assert_eq!(end.reason, SessionEndReason::Closed);
        assert_eq!(end.duration_ns, 1_000_000_003);
        assert_eq!((end.execs, end.connects, end.processes), (1, 1, 1));
        assert_eq!(end.remote_host.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn each_failed_authentication_is_an_attempt() {
        let sshd = |t| task(600, 400, t, 0, "sshd");
        let events = run(vec![
            start(sshd(1), 0x66, "sshd", "alice"),
            item(sshd(2), 0x66, PamItem::RemoteHost, "10.0.0.9"),
            call(sshd(3), 0x66, PamFunction::Authenticate, 7),
            call(sshd(4), 0x66, PamFunction::Authenticate, 7),
            call(sshd(5), 0x66, PamFunction::End, 7),
        ]);
        assert_eq!(events.len(), 2);
        for e in &events {
            let EventBody::LoginAttempt(a) = e else { panic!() };
            assert_eq!(a.outcome, Outcome::Failure);
            assert_eq!(a.failed_step, Some(PamStep::Authenticate));
            assert_eq!((a.pam_code, a.pam_code_name), (7, "PAM_AUTH_ERR"));
            assert_eq!(a.remote_host.as_deref(), Some("10.0.0.9"));
        }
    }

    #[test]
    fn unreadable_arguments_are_repaired_from_proc_only_when_consistent() {
        let exec = |argv: Vec<&str>, partial| KernelRecord::Exec {
            task: task(1, 0, 1, 0, "sshd"),
            retval: 0,
            filename: "/bin/bash".into(),
            argv: argv.into_iter().map(String::from).collect(),
            truncated: false,
            partial,
        };
        let argv_of = |e: &EventBody| match e {
            EventBody::Exec(x) => (x.argv.clone(), x.argv_incomplete),
            other => panic!("{other:?}"),
        };
        // sshd's "-c" sits in a page the probe could not read.
        let repaired = run(vec![exec(vec!["bash", "", "id; true"], true)]);
        assert_eq!(
            argv_of(&repaired[0]),
            (vec!["bash".into(), "-c".into(), "id; true".into()], false)
        );
        // /proc shows another program by now: keep the kernel's copy, flagged.
        let kept = run(vec![exec(vec!["zsh", "", "x"], true)]);
        assert_eq!(
            argv_of(&kept[0]),
            (vec!["zsh".into(), String::new(), "x".into()], true)
        );
    }

    #[test]
    fn adopted_session_is_attributed_and_ended_only_by_its_root() {
        let mut assembler = Assembler::new(FixedInfo);
        let mut out = Vec::new();
        let key = crate::adopt::ADOPTED_KEY_BIT | 7;
        let adopted = crate::adopt::AdoptedSession {
            key,
            audit_session_id: 7,
            loginuid: Some(1001),
            root: Some(500),
            members: vec![500, 501, 502, 503],
        };
        assembler.adopt(&adopted, 100, &mut out);
        let close = |tgid, t| KernelRecord::PamCall {
            task: task(tgid, 1, t, key, "x"),
            handle: 0x5,
            function: PamFunction::CloseSession,
            retval: 0,
            session_key: key,
            parent_session_key: 0,
        };
        assembler.push(
            KernelRecord::Exec {
                task: task(502, 501, 150, key, "bash"),
                retval: 0,
                filename: "/usr/bin/id".into(),
                argv: vec!["id".into()],
                truncated: false,
                partial: false,
            },
            &mut out,
        );
        // A su started before the agent closes its own session: not this one.
        assembler.push(close(503, 180), &mut out);
        assert_eq!(assembler.open_sessions(), 1);
        assembler.push(close(500, 200), &mut out);
        let events: Vec<_> = out.into_iter().map(|(_, e)| e).collect();
        assert_eq!(events.len(), 3, "{events:#?}");
        let EventBody::SessionStart(s) = &events[0] else {
            panic!()
        };
        assert!(s.adopted);
        assert_eq!(
            (s.user.as_str(), s.audit_session_id, s.process.pid),
            ("alice", Some(7), 500)
        );
        let EventBody::Exec(e) = &events[1] else { panic!() };
        assert_eq!(e.session_user.as_deref(), Some("alice"));
        let EventBody::SessionEnd(end) = &events[2] else {
            panic!()
        };
        assert_eq!(
            (end.session, end.duration_ns, end.execs),
            (SessionId(key), 100, 1)
        );
    }

    #[test]
    fn unknown_users_are_flagged() {
        let p = |t| task(1200, 1, t, 0, "sshd");
        let events = run(vec![
            start(p(1), 1, "sshd", "mallory"),
            call(p(2), 1, PamFunction::Authenticate, 7),
        ]);
        let EventBody::LoginAttempt(a) = &events[0] else {
            panic!()
        };
        assert_eq!(a.user_known, Some(false));
    }

    #[test]
    fn account_failure_and_password_change() {
        let p = |t| task(700, 1, t, 0, "login");
        let denied = run(vec![
            start(p(1), 1, "login", "bob"),
            call(p(2), 1, PamFunction::Authenticate, 0),
            call(p(3), 1, PamFunction::AcctMgmt, 13),
        ]);
        let EventBody::LoginAttempt(a) = &denied[0] else {
            panic!()
        };
        assert_eq!(
            (a.outcome, a.failed_step, a.pam_code_name),
            (Outcome::Failure, Some(PamStep::Account), "PAM_ACCT_EXPIRED")
        );

        let changed = run(vec![
            start(p(1), 1, "login", "bob"),
            call(p(2), 1, PamFunction::Authenticate, 0),
            call(p(3), 1, PamFunction::AcctMgmt, 12),
            call(p(4), 1, PamFunction::Chauthtok, 0),
        ]);
        assert_eq!(changed.len(), 1);
        let EventBody::LoginAttempt(a) = &changed[0] else {
            panic!()
        };
        assert_eq!((a.outcome, a.account_code), (Outcome::Success, Some(12)));
    }

    /// su inside an ssh session: a child session that points to its parent, and the
    /// su process falls back to the ssh session after closing its own.
    #[test]
    fn su_inside_ssh_is_a_child_session() {
        let su = |t, key| task(800, 799, t, key, "su");
        let events = run(vec![
            start(task(500, 1, 1, 0, "sshd"), 0x55, "sshd", "alice"),
            call(task(500, 1, 2, 0, "sshd"), 0x55, PamFunction::AcctMgmt, 0),
            opened(task(500, 1, 3, 0xa00, "sshd"), 0x55, 0xa00, 0),
            start(su(10, 0xa00), 0x77, "su", "bob"),
            item(su(11, 0xa00), 0x77, PamItem::RemoteUser, "alice"),
            item(su(12, 0xa00), 0x77, PamItem::Tty, "/dev/pts/0"),
            call(su(13, 0xa00), 0x77, PamFunction::Authenticate, 0),
            call(su(14, 0xa00), 0x77, PamFunction::AcctMgmt, 0),
            opened(su(15, 0xb00), 0x77, 0xb00, 0xa00),
            KernelRecord::Exec {
                task: task(801, 800, 16, 0xb00, "bash"),
                retval: 0,
                filename: "/usr/bin/id".into(),
                argv: vec!["id".into()],
                truncated: false,
                partial: false,
            },
            KernelRecord::PamCall {
                task: su(20, 0xb00),
                handle: 0x77,
                function: PamFunction::CloseSession,
                retval: 0,
                session_key: 0xb00,
                parent_session_key: 0xa00,
            },
        ]);
        let su_login = events.iter().find_map(|e| match e {
            EventBody::LoginAttempt(a) if a.service == "su" => Some(a),
            _ => None,
        });
        let su_login = su_login.expect("su attempt");
        assert_eq!(su_login.user, "bob");
        assert_eq!(su_login.remote_user.as_deref(), Some("alice"));
        assert_eq!(su_login.from_session, Some(SessionId(0xa00)));
        let starts: Vec<_> = events.iter().filter_map(EventBody::as_session_start).collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(
            (starts[1].session, starts[1].parent_session),
            (SessionId(0xb00), Some(SessionId(0xa00)))
        );
        let EventBody::Exec(e) = events.iter().find(|e| matches!(e, EventBody::Exec(_))).unwrap() else {
            panic!()
        };
        assert_eq!(e.session_user.as_deref(), Some("bob"));
        let EventBody::SessionEnd(end) = events.last().unwrap() else {
            panic!()
        };
        assert_eq!(
            (end.session, end.parent_session, end.execs),
            (SessionId(0xb00), Some(SessionId(0xa00)), 1)
        );
    }

    #[test]
    fn forked_helper_calls_match_the_parent_transaction() {
        let events = run(vec![
            start(task(900, 1, 1, 0, "sshd"), 0x99, "sshd", "carol"),
            // sshd's keyboard-interactive helper is a fork of the monitor.
            call(task(901, 900, 2, 0, "sshd"), 0x99, PamFunction::Authenticate, 7),
        ]);
        let EventBody::LoginAttempt(a) = &events[0] else {
            panic!()
        };
        assert_eq!((a.user.as_str(), a.process.pid), ("carol", 901));
    }

    #[test]
    fn session_ends_when_its_process_dies_and_orphans_are_counted() {
        let mut assembler = Assembler::new(FixedInfo);
        let mut out = Vec::new();
        // pam_start happened before the agent started.
        assembler.push(opened(task(1000, 1, 5, 0xc00, "sudo"), 0x1, 0xc00, 0), &mut out);
        assembler.push(
            KernelRecord::Exit {
                task: task(1000, 1, 50, 0xc00, "sudo"),
                exit_code: 0,
            },
            &mut out,
        );
        assert_eq!(assembler.counters().pam_orphans, 1);
        assert_eq!(assembler.open_sessions(), 0);
        let EventBody::SessionEnd(end) = &out.last().unwrap().1 else {
            panic!()
        };
        assert_eq!(
            (end.reason, end.duration_ns, end.service.as_str()),
            (SessionEndReason::ProcessExited, 45, "sudo")
        );
    }

    #[test]
    fn authenticate_only_applications_succeed_at_pam_end() {
        let p = |t| task(1100, 1, t, 0, "xlock");
        let events = run(vec![
            start(p(1), 1, "xlock", "dave"),
            call(p(2), 1, PamFunction::Authenticate, 0),
            call(p(3), 1, PamFunction::End, 0),
        ]);
        assert_eq!(events.len(), 1);
        let EventBody::LoginAttempt(a) = &events[0] else {
            panic!()
        };
        assert_eq!(
            (a.outcome, a.authenticate_code, a.account_code),
            (Outcome::Success, Some(0), None)
        );
    }
}
