//! Two witnesses for every login: the kernel's PAM probes and the journal.
//!
//! Each login the kernel saw (a [`LoginAttempt`] of sshd, su, sudo or login) is
//! matched with the journal's account of it ([`JournalLogin`]): same program,
//! the same process (or its parent: sshd's keyboard-interactive helper), the same
//! outcome, within the window. Every such login gets exactly one verdict:
//! - `confirmed`: both saw it; the verdict carries what only the log knows (the
//!   authentication method, the key fingerprint, the client port, sudo's command);
//! - `kernel_only`: the journal never showed it within the window (the log was
//!   suppressed, journald was down or its files tampered with): an alert;
//! - `journal_only`: the journal shows a login the probes did not see (a login
//!   path that bypassed PAM, or a forged line): an alert;
//! - `unchecked`: only one witness was running (journal-only mode, a journal
//!   line from before the agent started, or the agent stopping).
//!
//! The journal side gives one login per try at either sshd log level
//! (`watchtower_journal::story`): at INFO a failed keyboard-interactive answer is
//! written only as `error: PAM: Authentication failure for U from H`, by the sshd
//! process whose helper child made the PAM call the kernel saw.
//!
//! sudo writes one line for several tries (`3 incorrect password attempts`) and
//! nothing for the failed tries before a success: one journal line may confirm
//! several kernel attempts of its process.

use std::collections::VecDeque;

use watchtower_journal::{JournalLogin, Outcome as JournalOutcome, Program};

use crate::event::{KernelWitness, LoginAttempt, LoginVerdict, Outcome, Verdict, VerdictCounters};

/// Logins waiting for the other witness, per side.
const MAX_PENDING: usize = 16_384;

struct PendingJournal {
    login: JournalLogin,
    /// Tries not yet matched with a kernel attempt.
    remaining: u32,
}

pub struct Reconciler {
    window_ns: u64,
    /// When the kernel witness began watching (unix ns); `None`: it is not running.
    kernel_since_ns: Option<u64>,
    kernel: VecDeque<KernelWitness>,
    journal: VecDeque<PendingJournal>,
    counters: VerdictCounters,
    /// Whether the journal can be read now (see [`Reconciler::journal_readable`]).
    journal_readable: bool,
}

fn outcome_of(o: JournalOutcome) -> Outcome {
    match o {
        JournalOutcome::Success => Outcome::Success,
        JournalOutcome::Failure => Outcome::Failure,
    }
}

impl Reconciler {
    #[must_use]
    pub fn new(window_ns: u64, kernel_since_ns: Option<u64>) -> Self {
        Reconciler {
            window_ns,
            kernel_since_ns,
            kernel: VecDeque::new(),
            journal: VecDeque::new(),
            counters: VerdictCounters::default(),
            journal_readable: true,
        }
    }

    /// Tell whether the journal can be read now (journald accepts messages and its
    /// files are followed). A kernel login seen while it cannot is, if no journal
    /// record turns up, `kernel_only` for `journald_not_accepting`: the witness was
    /// blind, which is not the same alarm as a suppressed log line.
    pub fn journal_readable(&mut self, readable: bool) {
        self.journal_readable = readable;
    }

    #[must_use]
    pub fn counters(&self) -> VerdictCounters {
        VerdictCounters {
            pending_kernel: self.kernel.len() as u64,
            pending_journal: self.journal.len() as u64,
            ..self.counters
        }
    }

    /// The kernel's `login_attempt` event (with its seq and time): matched now, or
    /// kept until the window closes. Logins of programs that do not log (cron,
    /// systemd-user, ...) are not cross-checked.
    pub fn kernel(&mut self, seq: u64, time_unix_ns: u64, a: &LoginAttempt, out: &mut Vec<LoginVerdict>) {
        let Some(program) = Program::from_pam_service(&a.service) else {
            return;
        };
        let k = KernelWitness {
            program,
            seq,
            time_unix_ns,
            service: a.service.clone(),
            user: a.user.clone(),
            outcome: a.outcome,
            remote_host: a.remote_host.clone(),
            pid: a.process.pid,
            ppid: a.process.ppid,
            from_session: a.from_session,
            journal_unreadable: !self.journal_readable,
        };
        let window = self.window_ns;
        let found = self.journal.iter().position(|j| {
            j.remaining > 0
                && same_process(&k, &j.login, window)
                && (outcome_of(j.login.outcome) == k.outcome || !j.login.kernel_expected)
        });
        if let Some(at) = found {
            let j = &mut self.journal[at];
            j.remaining -= 1;
            out.push(self.confirmed(k, self.journal[at].login.clone()));
            if self.journal[at].remaining == 0 {
                self.journal.remove(at);
            }
            return;
        }
        if self.kernel.len() >= MAX_PENDING
            && let Some(oldest) = self.kernel.pop_front()
        {
            self.counters.overflow += 1;
            out.push(self.kernel_only(oldest, "no_journal_record"));
        }
        self.kernel.push_back(k);
    }

    /// A login the journal told of.
    pub fn journal(&mut self, login: JournalLogin, out: &mut Vec<LoginVerdict>) {
        let Some(since) = self.kernel_since_ns else {
            out.push(self.unchecked(login, "kernel_witness_off"));
            return;
        };
        let mut remaining = login.attempts.max(1);
        let mut matched = 0;
        let window = self.window_ns;
        let sudo_success = login.program == Program::Sudo && login.outcome == JournalOutcome::Success;
        let mut i = 0;
        while i < self.kernel.len() {
            let k = &self.kernel[i];
            // Same outcome (or a sudo refusal, which has none of its own) uses up a try.
            let uses_try = k.outcome == outcome_of(login.outcome) || !login.kernel_expected;
            let claims = same_process(k, &login, window)
                && if uses_try {
                    remaining > 0
                } else {
                    // Failed tries before sudo's success: sudo logs only the command.
                    sudo_success && k.outcome == Outcome::Failure
                };
            if claims {
                let k = self.kernel.remove(i).expect("index in range");
                if uses_try {
                    remaining -= 1;
                }
                matched += 1;
                out.push(self.confirmed(k, login.clone()));
            } else {
                i += 1;
            }
        }
        // Written before the probes were attached (the agent was not running):
        // what no kernel record matched could not have been seen.
        if remaining > 0 && login.time_us.saturating_mul(1000) < since {
            let mut rest = login;
            rest.attempts = remaining;
            out.push(self.unchecked(rest, "before_kernel_watch"));
            return;
        }
        if remaining > 0 && (matched == 0 || login.kernel_expected) {
            if self.journal.len() >= MAX_PENDING
                && let Some(oldest) = self.journal.pop_front()
            {
                self.counters.overflow += 1;
                out.push(self.journal_only(oldest));
            }
            self.journal.push_back(PendingJournal { login, remaining });
        }
    }

    /// Close the window on logins older than it. `journal_readable` says whether
    /// the journal can be read now (journald takes messages and its files are
    /// followed: the reason given for `kernel_only`, with whether it could be read
    /// when the kernel saw the login); it is asked only when a kernel login
    /// expires, at most once per call.
    pub fn expire(
        &mut self,
        now_unix_ns: u64,
        mut journal_readable: impl FnMut() -> bool,
        out: &mut Vec<LoginVerdict>,
    ) {
        let cutoff = now_unix_ns.saturating_sub(self.window_ns);
        let mut readable = None;
        while self.kernel.front().is_some_and(|k| k.time_unix_ns < cutoff) {
            let k = self.kernel.pop_front().expect("front exists");
            let reason = if !k.journal_unreadable && *readable.get_or_insert_with(&mut journal_readable) {
                "no_journal_record"
            } else {
                "journald_not_accepting"
            };
            out.push(self.kernel_only(k, reason));
        }
        while self
            .journal
            .front()
            .is_some_and(|j| j.login.time_us.saturating_mul(1000) < cutoff)
        {
            let j = self.journal.pop_front().expect("front exists");
            out.push(self.journal_only(j));
        }
    }

    /// The agent is stopping: every login still waiting is reported as unchecked.
    pub fn flush(&mut self, out: &mut Vec<LoginVerdict>) {
        while let Some(k) = self.kernel.pop_front() {
            self.counters.unchecked += 1;
            out.push(verdict(Verdict::Unchecked, "agent_stopping", Some(k), None, 1));
        }
        while let Some(j) = self.journal.pop_front() {
            self.counters.unchecked += 1;
            out.push(verdict(
                Verdict::Unchecked,
                "agent_stopping",
                None,
                Some(j.login),
                j.remaining,
            ));
        }
    }

    fn confirmed(&mut self, k: KernelWitness, j: JournalLogin) -> LoginVerdict {
        self.counters.confirmed += 1;
        verdict(Verdict::Confirmed, "both_witnesses", Some(k), Some(j), 1)
    }

    fn kernel_only(&mut self, k: KernelWitness, reason: &'static str) -> LoginVerdict {
        self.counters.kernel_only += 1;
        verdict(Verdict::KernelOnly, reason, Some(k), None, 1)
    }

    fn journal_only(&mut self, j: PendingJournal) -> LoginVerdict {
        if !j.login.kernel_expected {
            self.counters.unchecked += 1;
            return verdict(
                Verdict::Unchecked,
                "no_pam_authentication",
                None,
                Some(j.login),
                1,
            );
        }
        self.counters.journal_only += 1;
        let reason = if j.login.identity_mismatch {
            "writer_not_the_program"
        } else {
            "no_kernel_record"
        };
        verdict(Verdict::JournalOnly, reason, None, Some(j.login), j.remaining)
    }

    fn unchecked(&mut self, j: JournalLogin, reason: &'static str) -> LoginVerdict {
        self.counters.unchecked += 1;
        let attempts = j.attempts;
        verdict(Verdict::Unchecked, reason, None, Some(j), attempts)
    }
}

/// The same program, the same process (or the kernel record's parent: sshd's
/// PAM helper), within the window.
fn same_process(k: &KernelWitness, j: &JournalLogin, window_ns: u64) -> bool {
    let j_ns = j.time_us.saturating_mul(1000);
    k.program == j.program
        && (j.writer.pid == k.pid || j.writer.pid == k.ppid)
        && j_ns.abs_diff(k.time_unix_ns) <= window_ns
}

fn verdict(
    verdict: Verdict,
    reason: &'static str,
    k: Option<KernelWitness>,
    j: Option<JournalLogin>,
    attempts: u32,
) -> LoginVerdict {
    let (program, user, outcome, time) = match (&k, &j) {
        (Some(k), _) => (k.program, k.user.clone(), k.outcome, k.time_unix_ns),
        (None, Some(j)) => (
            j.program,
            j.user.clone(),
            outcome_of(j.outcome),
            j.time_us.saturating_mul(1000),
        ),
        (None, None) => unreachable!("a verdict has at least one witness"),
    };
    let user_mismatch = match (&k, &j) {
        (Some(k), Some(j)) => {
            let sudo = j.sudo.as_ref();
            k.user != j.user
                && Some(&k.user) != j.by_user.as_ref()
                && Some(&k.user) != sudo.and_then(|s| s.target_user.as_ref())
        }
        _ => false,
    };
    LoginVerdict {
        verdict,
        reason,
        program,
        user,
        outcome,
        attempts: attempts.max(1),
        login_time_unix_ns: time,
        auth_method: j.as_ref().and_then(|j| j.method.clone()),
        key_fingerprint: j
            .as_ref()
            .and_then(|j| j.key.as_ref().map(|k| k.fingerprint.clone())),
        remote_address: j
            .as_ref()
            .and_then(|j| j.remote_address.clone())
            .or_else(|| k.as_ref().and_then(|k| k.remote_host.clone())),
        remote_port: j.as_ref().and_then(|j| j.remote_port),
        command: j
            .as_ref()
            .and_then(|j| j.sudo.as_ref().and_then(|s| s.command.clone())),
        user_mismatch,
        kernel: k,
        journal: j,
    }
}

#[cfg(test)]
mod tests;
