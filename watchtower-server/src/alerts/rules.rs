//! The rules themselves: what in an event, or in a host's silence, raises an alert.

use std::collections::{HashMap, HashSet, VecDeque};

use watchtower_proto::pb::{Alert, Outcome, StoredEvent, Verdict, event::Body};

use super::AlertEngine;
use crate::now_unix_ns;

/// A failed login remembered for the failed-logins rule.
pub(super) struct Failure {
    time_unix_ns: u64,
    host: String,
    seq: u64,
    user: String,
}

#[derive(Default)]
pub(super) struct RuleState {
    /// Failed logins per remote address within the window, oldest first.
    pub(super) failures: HashMap<String, VecDeque<Failure>>,
    /// Hosts alerted as stale and not heard from since.
    pub(super) stale: HashSet<String>,
    /// Per host, the findings its agent had reported as a witness of the log when
    /// last alerted (one entry per host).
    witness_findings: HashMap<String, u64>,
}

/// Remote addresses with failed logins remembered at most before those wholly
/// outside the window are forgotten.
const MAX_FAILURE_ADDRESSES: usize = 10_000;

/// A new alert without id and time (the engine sets them).
fn alert(rule: &str, severity: &str, host: &str, summary: String) -> Alert {
    Alert {
        rule: rule.into(),
        severity: severity.into(),
        host_id: host.into(),
        summary,
        count: 1,
        ..Alert::default()
    }
}

impl AlertEngine {
    /// Apply the event rules to one stored event.
    pub fn observe(&self, stored: &StoredEvent) {
        let Some(event) = &stored.event else { return };
        let host = event.host_id.as_str();
        match &event.body {
            Some(Body::LoginAttempt(attempt)) => {
                let remote = attempt.remote_host.as_deref().filter(|r| !r.is_empty());
                let outcome = Outcome::try_from(attempt.outcome).unwrap_or(Outcome::Unspecified);
                if outcome == Outcome::Failure
                    && let Some(remote) = remote
                {
                    // The window runs on the server's receive time: an agent's clock
                    // (or a forged time far ahead) cannot push failures out of it.
                    self.failed_login(remote, host, event.seq, stored.received_unix_ns, &attempt.user);
                }
                if outcome != Outcome::Success {
                    return;
                }
                let from = remote.map_or_else(String::new, |r| format!(" from {r}"));
                if self.rules.root_login && attempt.user == "root" {
                    let mut a = alert(
                        "root_login",
                        "critical",
                        host,
                        format!("root logged in on {host} through {}{from}", attempt.service),
                    );
                    a.user = Some("root".into());
                    a.remote_address = remote.map(Into::into);
                    a.seqs = vec![event.seq];
                    self.raise(a);
                }
                if self.rules.new_address
                    && let Some(remote) = remote
                {
                    match self
                        .store
                        .remember_remote(&attempt.user, remote, event.time_unix_ns)
                    {
                        Ok((true, true)) => {
                            let mut a = alert(
                                "new_address",
                                "warning",
                                host,
                                format!(
                                    "{} logged in on {host} through {} from {remote}, an address new for this user",
                                    attempt.user, attempt.service
                                ),
                            );
                            a.user = Some(attempt.user.clone());
                            a.remote_address = Some(remote.to_owned());
                            a.seqs = vec![event.seq];
                            self.raise(a);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "cannot record a login address"),
                    }
                }
            }
            Some(Body::LoginVerdict(verdict)) if self.rules.verdicts => {
                let (rule, what) = match Verdict::try_from(verdict.verdict) {
                    Ok(Verdict::KernelOnly) => (
                        "kernel_only",
                        "the kernel saw a login the journal does not tell of (log suppressed or tampered?)",
                    ),
                    Ok(Verdict::JournalOnly) => (
                        "journal_only",
                        "the journal tells of a login the kernel did not see (a path the probes missed, or a forgery?)",
                    ),
                    _ => return,
                };
                let mut a = alert(
                    rule,
                    "critical",
                    host,
                    format!(
                        "{what}: {} login of {} on {host}{}",
                        verdict.program,
                        verdict.user,
                        verdict
                            .remote_address
                            .as_deref()
                            .map_or_else(String::new, |r| format!(" from {r}"))
                    ),
                );
                a.user = Some(verdict.user.clone());
                a.remote_address.clone_from(&verdict.remote_address);
                a.seqs = vec![event.seq];
                self.raise(a);
            }
            Some(Body::AgentHealth(health)) => {
                if let Some(witness) = &health.log_witness {
                    self.witness_findings(host, event.seq, witness);
                }
            }
            _ => {}
        }
    }

    /// An agent's health record: alert when it reports more log-witness
    /// findings than its last record did (state: one count per host).
    fn witness_findings(&self, host: &str, seq: u64, witness: &watchtower_proto::pb::LogWitnessHealth) {
        let total: u64 = witness.findings.values().sum();
        let before = {
            let mut state = self.state.lock().expect("alert state");
            let seen = state.witness_findings.entry(host.to_owned()).or_insert(0);
            std::mem::replace(seen, total)
        };
        if total <= before {
            return;
        }
        let mut kinds: Vec<String> = witness
            .findings
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        kinds.sort_unstable();
        let mut a = alert(
            "log_witness",
            "critical",
            host,
            format!(
                "the agent on {host} caught this server's log breaking a promise ({}): {}",
                kinds.join(", "),
                witness.last_finding
            ),
        );
        a.count = total - before;
        a.seqs = vec![seq];
        self.raise(a);
    }

    /// A record with the id of a stored one and other content (kept as evidence).
    pub fn conflict(&self, conflict: &StoredEvent) {
        let Some(event) = &conflict.event else { return };
        let host = event.host_id.as_str();
        let mut a = alert(
            "conflicting_duplicate",
            "critical",
            host,
            format!(
                "{host} sent seq {} of boot {} again with other content: kept as evidence, the first record stays",
                event.seq, event.boot_id
            ),
        );
        a.seqs = vec![event.seq];
        self.raise(a);
    }

    fn failed_login(&self, remote: &str, host: &str, seq: u64, time: u64, user: &str) {
        let threshold = self.rules.failed_logins_threshold as usize;
        if threshold == 0 {
            return;
        }
        let window = self.rules.failed_logins_window_secs.saturating_mul(1_000_000_000);
        let fired = {
            let mut state = self.state.lock().expect("alert state");
            if state.failures.len() >= MAX_FAILURE_ADDRESSES {
                // Bounded: addresses whose failures are all out of the window go.
                state.failures.retain(|_, failures| {
                    failures
                        .back()
                        .is_some_and(|f| time.saturating_sub(f.time_unix_ns) <= window)
                });
            }
            let failures = state.failures.entry(remote.to_owned()).or_default();
            failures.push_back(Failure {
                time_unix_ns: time,
                host: host.to_owned(),
                seq,
                user: user.to_owned(),
            });
            let newest = failures.iter().map(|f| f.time_unix_ns).max().unwrap_or(time);
            failures.retain(|f| newest.saturating_sub(f.time_unix_ns) <= window);
            if failures.len() >= threshold {
                let fired = std::mem::take(failures);
                state.failures.remove(remote);
                Some(fired)
            } else {
                None
            }
        };
        if let Some(failures) = fired {
            let mut users: Vec<&str> = failures.iter().map(|f| f.user.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            let mut hosts: Vec<&str> = failures.iter().map(|f| f.host.as_str()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            let mut a = alert(
                "failed_logins",
                "warning",
                host,
                format!(
                    "{} failed logins from {remote} within {} s (users {}; hosts {})",
                    failures.len(),
                    self.rules.failed_logins_window_secs,
                    users.join(", "),
                    hosts.join(", ")
                ),
            );
            a.remote_address = Some(remote.to_owned());
            a.count = failures.len() as u64;
            a.user = (users.len() == 1).then(|| users[0].to_owned());
            a.seqs = failures
                .iter()
                .filter(|f| f.host == host)
                .map(|f| f.seq)
                .collect();
            self.raise(a);
        }
    }

    /// The stale-agent rule: hosts whose heartbeats stopped for too long.
    pub fn check_stale(&self) {
        if self.rules.stale_agent_secs == 0 {
            return;
        }
        let hosts = match self.store.hosts() {
            Ok(hosts) => hosts,
            Err(e) => {
                tracing::error!(error = %e, "stale-agent check cannot read hosts");
                return;
            }
        };
        let limit = self.rules.stale_agent_secs.saturating_mul(1_000_000_000);
        let now = now_unix_ns();
        for host in hosts {
            // Heartbeats alone tell: a connection held open without them (the agent
            // killed, its stream kept) is stale too.
            let stale = now.saturating_sub(host.last_heartbeat_unix_ns) > limit;
            let newly = {
                let mut state = self.state.lock().expect("alert state");
                if stale {
                    state.stale.insert(host.host_id.clone())
                } else {
                    state.stale.remove(&host.host_id);
                    false
                }
            };
            if newly {
                let silent = now.saturating_sub(host.last_heartbeat_unix_ns) / 1_000_000_000;
                self.raise(alert(
                    "stale_agent",
                    "critical",
                    &host.host_id,
                    format!(
                        "the agent on {} has not been heard from for {silent} s (limit {} s)",
                        host.host_id, self.rules.stale_agent_secs
                    ),
                ));
            }
        }
    }
}
