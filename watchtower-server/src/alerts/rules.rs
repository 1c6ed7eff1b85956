//! The rules themselves: what in an event, or in a host's silence, raises an alert.

use std::collections::{HashMap, HashSet, VecDeque};

use watchtower_model::{Alert, Body, LoginAttempt, Outcome, StoredEvent, Verdict};

use super::AlertEngine;
use crate::now_unix_ns;
use crate::store::alerts::RemoteNovelty;
use crate::store::alerts::RemoteRecord;

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

/// The new-address rule: what a login's address is to its user, if it raises
/// the alert. New for the user fleet-wide when the user had logged in before
/// anywhere; otherwise new for the user on this host when the user had logged in
/// on this host before (so an address registered through one host, say by a
/// forged login from a stolen agent key, is still news on every other host the
/// user uses). A user's first login anywhere, or first on a host, raises nothing.
fn new_address(novelty: RemoteNovelty) -> Option<&'static str> {
    if novelty.new_for_user && novelty.user_known {
        Some("an address new for this user")
    } else if novelty.new_on_host && novelty.user_known_on_host {
        Some("an address new for this user on this host")
    } else {
        None
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
                let outcome = attempt.outcome;
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
                    self.login_address(host, event.seq, event.time_unix_ns, attempt, remote);
                }
            }
            Some(Body::LoginVerdict(verdict)) if self.rules.verdicts => {
                let (rule, what) = match verdict.verdict {
                    Verdict::KernelOnly => (
                        "kernel_only",
                        "the kernel saw a login the journal does not tell of (log suppressed or tampered?)",
                    ),
                    Verdict::JournalOnly => (
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
                if health.reason == "start"
                    && let Some(start) = &health.capture_start
                    && start.how == "gap"
                {
                    self.capture_gap(host, event.seq, start);
                }
            }
            _ => {}
        }
    }

    /// An agent's health record: alert when it reports more log-witness
    /// findings than its last record did (state: one count per host).
    fn witness_findings(&self, host: &str, seq: u64, witness: &watchtower_model::LogWitnessHealth) {
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

    /// An agent started after a time nothing was captured on its host (its
    /// predecessor on this boot was stopped, or its probes could not be resumed).
    fn capture_gap(&self, host: &str, seq: u64, start: &watchtower_model::CaptureStart) {
        let (Some(from), Some(to)) = (start.gap_from_unix_ns, start.gap_to_unix_ns) else {
            return;
        };
        let mut a = alert(
            "capture_gap",
            "high",
            host,
            format!(
                "nothing was captured on {host} for {:.1} s before its agent started again",
                to.saturating_sub(from) as f64 / 1e9
            ),
        );
        a.seqs = vec![seq];
        self.raise(a);
    }

    /// The new-address rule for a successful login of `attempt` from `remote`.
    fn login_address(&self, host: &str, seq: u64, time_unix_ns: u64, attempt: &LoginAttempt, remote: &str) {
        let record = RemoteRecord {
            host: host.to_owned(),
            user: attempt.user.clone(),
            address: remote.to_owned(),
            time_unix_ns,
        };
        let novelty = match self.store.remote_novelty(&record) {
            Ok(novelty) => novelty,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the addresses a user logged in from");
                return;
            }
        };
        let Some(new) = new_address(novelty) else {
            if (novelty.new_for_user || novelty.new_on_host)
                && let Err(e) = self.store.remember_remote_record(&record)
            {
                tracing::error!(error = %e, "cannot record a login address");
            }
            return;
        };
        let mut a = alert(
            "new_address",
            "warning",
            host,
            format!(
                "{} logged in on {host} through {} from {remote}, {new}",
                attempt.user, attempt.service
            ),
        );
        a.user = Some(attempt.user.clone());
        a.remote_address = Some(remote.to_owned());
        a.seqs = vec![seq];
        // The address is remembered with the alert, in one write: a crash cannot
        // leave it known and the alert unraised.
        self.raise_remembering(a, Some(&record));
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::broadcast;
    use watchtower_model::{Outcome, StoredEvent};

    use super::AlertEngine;
    use crate::Scratch;
    use crate::config::AlertSection;
    use crate::metrics::Metrics;
    use crate::store::EventStore;

    fn engine() -> (Scratch, Arc<AlertEngine>) {
        let dir = Scratch::new("new-address");
        let store = Arc::new(EventStore::open(&dir.0).unwrap());
        let (live, _) = broadcast::channel(64);
        let (engine, _) =
            AlertEngine::new(AlertSection::default(), store, Arc::new(Metrics::new(0)), live).unwrap();
        (dir, engine)
    }

    /// A successful sshd login of `user` on `host` from `remote`.
    fn login(host: &str, seq: u64, user: &str, remote: &str) -> StoredEvent {
        crate::alerts::tests::login_on(host, seq, user, remote, Outcome::Success)
    }

    /// An alert kept: (rule, host, user, address, seqs).
    type Kept = (String, String, String, String, Vec<u64>);

    /// The alerts kept, and every summary.
    fn kept(engine: &AlertEngine) -> (Vec<Kept>, Vec<String>) {
        let alerts = engine.store.alerts(0, u64::MAX, 100).unwrap();
        let summaries = alerts.iter().map(|a| a.summary.clone()).collect();
        let facts = alerts
            .into_iter()
            .map(|a| {
                (
                    a.rule,
                    a.host_id,
                    a.user.unwrap_or_default(),
                    a.remote_address.unwrap_or_default(),
                    a.seqs,
                )
            })
            .collect();
        (facts, summaries)
    }

    fn new_address(host: &str, user: &str, address: &str, seq: u64) -> Kept {
        (
            "new_address".into(),
            host.into(),
            user.into(),
            address.into(),
            vec![seq],
        )
    }

    fn agent_start(seq: u64, how: &str, gap: Option<(u64, u64)>) -> StoredEvent {
        StoredEvent {
            event: Some(watchtower_model::Event {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq,
                time_unix_ns: seq,
                body: Some(watchtower_model::Body::AgentHealth(
                    watchtower_model::AgentHealth {
                        reason: "start".into(),
                        capture_start: Some(watchtower_model::CaptureStart {
                            how: how.into(),
                            gap_from_unix_ns: gap.map(|g| g.0),
                            gap_to_unix_ns: gap.map(|g| g.1),
                        }),
                        ..Default::default()
                    },
                )),
            }),
            ..StoredEvent::default()
        }
    }

    #[test]
    fn an_agent_starting_after_a_capture_gap_raises_one_alert_and_a_resumed_one_none() {
        let (_dir, engine) = engine();
        engine.observe(&agent_start(1, "resumed", None));
        engine.observe(&agent_start(2, "fresh", None));
        engine.observe(&agent_start(3, "gap", Some((1_000_000_000, 3_500_000_000))));
        let (facts, summaries) = kept(&engine);
        assert_eq!(
            facts,
            [(
                "capture_gap".into(),
                "web-1".into(),
                String::new(),
                String::new(),
                vec![3]
            )]
        );
        assert_eq!(
            summaries,
            ["nothing was captured on web-1 for 2.5 s before its agent started again"]
        );
    }

    #[test]
    fn an_address_pre_registered_through_another_host_still_alerts_where_the_user_is_known() {
        let (_dir, engine) = engine();
        // A stolen key of host-a: alice made known, then 6.6.6.6 registered for her.
        engine.observe(&login("host-a", 1, "alice", "10.0.0.1"));
        engine.observe(&login("host-a", 2, "alice", "6.6.6.6"));
        // Alice as she is on host-b, then the attacker as alice from 6.6.6.6.
        engine.observe(&login("host-b", 1, "alice", "10.0.0.1"));
        engine.observe(&login("host-b", 2, "alice", "6.6.6.6"));
        let (facts, summaries) = kept(&engine);
        assert_eq!(
            facts,
            vec![
                new_address("host-a", "alice", "6.6.6.6", 2),
                new_address("host-b", "alice", "6.6.6.6", 2),
            ]
        );
        assert_eq!(
            summaries,
            vec![
                "alice logged in on host-a through sshd from 6.6.6.6, an address new for this user",
                "alice logged in on host-b through sshd from 6.6.6.6, an address new for this user on this host",
            ]
        );
    }

    #[test]
    fn a_users_first_login_anywhere_and_a_known_address_again_do_not_alert() {
        let (_dir, engine) = engine();
        engine.observe(&login("web-1", 1, "alice", "10.0.0.1"));
        engine.observe(&login("web-1", 2, "alice", "10.0.0.1"));
        // First on another host, from an address she used elsewhere: no news.
        engine.observe(&login("web-2", 1, "alice", "10.0.0.1"));
        engine.observe(&login("web-2", 2, "alice", "10.0.0.1"));
        assert_eq!(kept(&engine).0, vec![]);
        // A new address on web-2 is new fleet-wide: one alert, the fleet-wide one.
        engine.observe(&login("web-2", 3, "alice", "10.0.0.2"));
        // Then on web-1, where alice never used it: new on this host.
        engine.observe(&login("web-1", 3, "alice", "10.0.0.2"));
        engine.observe(&login("web-1", 4, "alice", "10.0.0.2"));
        let (facts, summaries) = kept(&engine);
        assert_eq!(
            facts,
            vec![
                new_address("web-2", "alice", "10.0.0.2", 3),
                new_address("web-1", "alice", "10.0.0.2", 3),
            ]
        );
        assert!(
            summaries[0].ends_with("an address new for this user"),
            "{summaries:?}"
        );
        assert!(
            summaries[1].ends_with("an address new for this user on this host"),
            "{summaries:?}"
        );
    }
}
