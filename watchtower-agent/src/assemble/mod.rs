//! Session assembly: turns the kernel's PAM, exec, connect, fork and exit facts
//! into the events users read.
//!
//! - this file: the [`Assembler`], one kernel record at a time; exec, connect and
//!   fork counted into the sessions they happen in;
//! - [`pam`]: PAM transactions and the login outcome rules (one `login_attempt`
//!   per try);
//! - [`session`]: login sessions, from `pam_open_session` (or adoption at start-up)
//!   to `pam_close_session` or the exit of the process that opened them.
//!
//! What only the running system knows (/proc, the user database) is asked through
//! [`ProcessInfo`] ([`crate::host_lookup`]).

mod pam;
mod session;

use std::collections::HashMap;

use crate::decode::{Destination, KernelRecord, Task};
use crate::event::{Connect, EventBody, Exec, Process, SessionId, errno_name};
use crate::host_lookup::ProcessInfo;

use pam::Transaction;
pub use session::LiveSession;

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

/// Counters of the assembler, reported in health records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerCounters {
    /// PAM calls on a handle whose `pam_start` was not seen.
    pub pam_orphans: u64,
    /// PAM transactions of unprivileged callers forgotten because the bound was
    /// reached (these go first).
    pub evicted_unprivileged_transactions: u64,
    /// PAM transactions of privileged callers (logins in flight) forgotten.
    pub evicted_transactions: u64,
    /// Open sessions forgotten because the bound was reached.
    pub evicted_sessions: u64,
}

impl AssemblerCounters {
    /// The evictions by reason, as health records report them (only those that happened).
    #[must_use]
    pub fn evicted(&self) -> std::collections::BTreeMap<&'static str, u64> {
        [
            (
                "unprivileged_pam_transaction",
                self.evicted_unprivileged_transactions,
            ),
            ("pam_transaction", self.evicted_transactions),
            ("session", self.evicted_sessions),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// The assembler's state as health records report it.
#[derive(Clone, Copy, Debug)]
pub struct AssemblerState {
    pub counters: AssemblerCounters,
    pub open_sessions: u64,
}

pub struct Assembler<P> {
    transactions: HashMap<(u32, u64), Transaction>,
    sessions: HashMap<u64, LiveSession>,
    info: P,
    counters: AssemblerCounters,
    /// A session began or ended since [`Assembler::take_session_changes`].
    sessions_changed: bool,
    /// Activity was counted into a session since then.
    sessions_counted: bool,
}

fn process(task: &Task) -> Process {
    Process {
        pid: task.tgid,
        tid: task.tid,
        ppid: task.ppid,
        uid: task.uid,
        gid: task.gid,
        euid: task.euid,
        loginuid: task.loginuid,
        comm: task.comm.clone(),
    }
}

impl<P: ProcessInfo> Assembler<P> {
    pub fn new(info: P) -> Self {
        Self {
            transactions: HashMap::new(),
            sessions: HashMap::new(),
            info,
            counters: AssemblerCounters::default(),
            sessions_changed: false,
            sessions_counted: false,
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
            } => self.pam_item(&task, handle, item, value),
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
            record @ KernelRecord::Exec { .. } => self.exec(record, out),
            KernelRecord::Connect {
                task,
                retval,
                fd,
                destination,
                via,
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
                        via: via.name(),
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

    /// An exec record: its event, the arguments from /proc when the probe could
    /// not read them all.
    fn exec(&mut self, record: KernelRecord, out: &mut Vec<(u64, EventBody)>) {
        let KernelRecord::Exec {
            task,
            retval,
            filename,
            argv,
            truncated,
            partial,
            env,
            env_cut,
        } = record
        else {
            return;
        };
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
                env,
                env_cut,
                result: retval,
                error: errno_name(retval),
                process: process(&task),
            }),
        ));
    }
}

#[cfg(test)]
mod tests;
