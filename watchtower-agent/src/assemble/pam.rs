//! PAM transactions and the login outcome rules.
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

use watchtower_common::PamFunction;

use super::{Assembler, process, session};
use crate::decode::{PamItem, Task};
use crate::event::{EventBody, LoginAttempt, Outcome, PamStep, SessionEndReason, SessionId, pam_code_name};
use crate::host_lookup::ProcessInfo;

const PAM_SUCCESS: i32 = 0;
const PAM_NEW_AUTHTOK_REQD: i32 = 12;
/// Bound on what is remembered for transactions whose end was never seen.
pub(super) const MAX_TRANSACTIONS: usize = 8192;

#[derive(Debug, Default)]
pub(super) struct Transaction {
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
    /// The caller's effective uid was 0 at `pam_start` (or is not known), as
    /// sshd's, su's and sudo's is.
    privileged: bool,
}

impl<P: ProcessInfo> Assembler<P> {
    /// `pam_set_item`: what the application told PAM about the login.
    pub(super) fn pam_item(&mut self, task: &Task, handle: u64, item: PamItem, value: String) {
        let key = self.transaction_key(task, handle);
        let t = self.transactions.entry(key).or_default();
        match item {
            PamItem::User => t.user = value,
            PamItem::Tty => t.tty = non_empty(&value),
            PamItem::RemoteHost => t.remote_host = non_empty(&value),
            PamItem::RemoteUser => t.remote_user = non_empty(&value),
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

    /// Keep the transactions under [`MAX_TRANSACTIONS`]: the oldest of an
    /// unprivileged caller goes first (an ordinary user's flood of `pam_start`
    /// calls pushes out only its own), then the oldest of all.
    fn bound_transactions(&mut self) {
        while self.transactions.len() >= MAX_TRANSACTIONS {
            let oldest = |privileged: bool| {
                self.transactions
                    .iter()
                    .filter(|(_, t)| t.privileged == privileged)
                    .min_by_key(|(_, t)| t.started_ns)
                    .map(|(k, _)| *k)
            };
            if let Some(k) = oldest(false) {
                self.transactions.remove(&k);
                self.counters.evicted_unprivileged_transactions += 1;
            } else if let Some(k) = oldest(true) {
                self.transactions.remove(&k);
                self.counters.evicted_transactions += 1;
            } else {
                break;
            }
        }
    }

    pub(super) fn pam_start(
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
            privileged: task.euid.is_none_or(|euid| euid == 0),
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
    pub(super) fn pam_call(
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
        let login = session::Login {
            service: t.service.clone(),
            user: t.user.clone(),
            remote_host: t.remote_host.clone(),
            tty: t.tty.clone(),
            remote_user: t.remote_user.clone(),
        };
        self.start_session(login, task, session_key, parent_session_key, out);
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
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
