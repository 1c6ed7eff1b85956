//! The access review of a period (ISO 27001 A.12.4): who failed to log in from
//! where, who became root, who logged in from somewhere new, where the kernel and
//! the journal disagree, which agents lost events, and when nothing was captured.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use watchtower_model::{Body, Event, Outcome, Verdict};

use crate::timearg::format_ns;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SourceFailures {
    pub address: String,
    pub failures: u64,
    pub users: Vec<String>,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct UserFailures {
    pub user: String,
    pub failures: u64,
    pub sources: Vec<String>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RootLogin {
    pub time: String,
    pub host: String,
    pub service: String,
    pub from: String,
    /// `login_attempt` (authenticated as root) or `session_start` (a root session opened).
    pub evidence: String,
    pub seq: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct NewSource {
    pub user: String,
    pub address: String,
    pub first: String,
    pub host: String,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct VerdictRow {
    pub time: String,
    pub host: String,
    pub verdict: String,
    pub program: String,
    pub user: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct AgentProblem {
    pub host: String,
    pub kernel_lost: u64,
    pub spool_dropped: u64,
    pub last_report: String,
}

/// A time nothing was captured on a host: its agent was stopped, or its probes
/// could not be resumed (see the agent's `capture_start`).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct CaptureGap {
    pub host: String,
    pub from: String,
    pub to: String,
    pub seconds: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub failed_by_source: Vec<SourceFailures>,
    pub failed_by_user: Vec<UserFailures>,
    pub root_logins: Vec<RootLogin>,
    pub new_sources: Vec<NewSource>,
    pub verdicts: Vec<VerdictRow>,
    pub agent_problems: Vec<AgentProblem>,
    pub capture_gaps: Vec<CaptureGap>,
}

/// Build the review from the period's events (oldest first) and the (user,
/// address) pairs of successful logins before the period.
#[must_use]
#[expect(clippy::too_many_lines, reason = "one match over the kinds the review reads")]
pub fn build(events: &[Event], known_before: &HashSet<(String, String)>, from: u64, to: u64) -> Report {
    let mut report = Report {
        from: format_ns(from),
        to: format_ns(to),
        ..Report::default()
    };
    let mut by_source: BTreeMap<String, (u64, BTreeSet<String>, u64, u64)> = BTreeMap::new();
    let mut by_user: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut seen_new: HashSet<(String, String)> = HashSet::new();
    let mut problems: BTreeMap<String, AgentProblem> = BTreeMap::new();
    for event in events {
        let t = event.time_unix_ns;
        match &event.body {
            Some(Body::LoginAttempt(a)) => {
                let remote = a.remote_host.clone().filter(|r| !r.is_empty());
                let source = remote.clone().unwrap_or_else(|| format!("local ({})", a.service));
                if a.outcome == Outcome::Failure {
                    let entry = by_source
                        .entry(source.clone())
                        .or_insert((0, BTreeSet::new(), t, t));
                    entry.0 += 1;
                    entry.1.insert(a.user.clone());
                    entry.2 = entry.2.min(t);
                    entry.3 = entry.3.max(t);
                    let user = by_user.entry(a.user.clone()).or_default();
                    user.0 += 1;
                    user.1.insert(source);
                } else if a.outcome == Outcome::Success {
                    if a.user == "root" {
                        report.root_logins.push(RootLogin {
                            time: format_ns(t),
                            host: event.host_id.clone(),
                            service: a.service.clone(),
                            from: remote.clone().unwrap_or_else(|| "local".into()),
                            evidence: "login_attempt".into(),
                            seq: event.seq,
                        });
                    }
                    if let Some(address) = remote {
                        let pair = (a.user.clone(), address.clone());
                        if !known_before.contains(&pair) && seen_new.insert(pair) {
                            report.new_sources.push(NewSource {
                                user: a.user.clone(),
                                address,
                                first: format_ns(t),
                                host: event.host_id.clone(),
                            });
                        }
                    }
                }
            }
            Some(Body::SessionStart(s)) if s.user == "root" => report.root_logins.push(RootLogin {
                time: format_ns(t),
                host: event.host_id.clone(),
                service: s.service.clone(),
                from: s.remote_host.clone().unwrap_or_else(|| "local".into()),
                evidence: "session_start".into(),
                seq: event.seq,
            }),
            Some(Body::LoginVerdict(v)) => {
                let verdict = v.verdict;
                if matches!(verdict, Verdict::KernelOnly | Verdict::JournalOnly) {
                    report.verdicts.push(VerdictRow {
                        time: format_ns(t),
                        host: event.host_id.clone(),
                        verdict: verdict.name().into(),
                        program: v.program.clone(),
                        user: v.user.clone(),
                        reason: v.reason.clone(),
                    });
                }
            }
            Some(Body::AgentHealth(h)) => {
                if let Some(start) = h
                    .capture_start
                    .as_ref()
                    .filter(|s| h.reason == "start" && s.how == "gap")
                    && let (Some(gap_from), Some(gap_to)) = (start.gap_from_unix_ns, start.gap_to_unix_ns)
                {
                    report.capture_gaps.push(CaptureGap {
                        host: event.host_id.clone(),
                        from: format_ns(gap_from),
                        to: format_ns(gap_to),
                        seconds: gap_to.saturating_sub(gap_from) / 1_000_000_000,
                    });
                }
                let kernel_lost: u64 = h.lost.values().sum();
                let spool_dropped: u64 = h.spool.as_ref().map_or(0, |s| s.dropped.values().sum());
                if kernel_lost + spool_dropped > 0 {
                    problems.insert(
                        event.host_id.clone(),
                        AgentProblem {
                            host: event.host_id.clone(),
                            kernel_lost,
                            spool_dropped,
                            last_report: format_ns(t),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    report.failed_by_source = by_source
        .into_iter()
        .map(|(address, (failures, users, first, last))| SourceFailures {
            address,
            failures,
            users: users.into_iter().collect(),
            first: format_ns(first),
            last: format_ns(last),
        })
        .collect();
    report
        .failed_by_source
        .sort_by(|a, b| b.failures.cmp(&a.failures).then(a.address.cmp(&b.address)));
    report.failed_by_user = by_user
        .into_iter()
        .map(|(user, (failures, sources))| UserFailures {
            user,
            failures,
            sources: sources.into_iter().collect(),
        })
        .collect();
    report
        .failed_by_user
        .sort_by(|a, b| b.failures.cmp(&a.failures).then(a.user.cmp(&b.user)));
    report.agent_problems = problems.into_values().collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_model::{AgentHealth, CaptureStart, LoginAttempt, LoginVerdict, SessionStart};

    fn event(seq: u64, body: Body) -> Event {
        Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            time_unix_ns: seq * 1_000_000_000,
            body: Some(body),
        }
    }

    fn attempt(user: &str, remote: Option<&str>, outcome: Outcome) -> Body {
        Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: user.into(),
            remote_host: remote.map(Into::into),
            outcome,
            ..LoginAttempt::default()
        })
    }

    #[test]
    fn the_review_counts_sources_users_root_new_addresses_verdicts_and_losses() {
        let events = vec![
            event(1, attempt("alice", Some("10.0.0.9"), Outcome::Failure)),
            event(2, attempt("bob", Some("10.0.0.9"), Outcome::Failure)),
            event(3, attempt("alice", Some("10.0.0.9"), Outcome::Failure)),
            event(4, attempt("alice", Some("10.0.0.7"), Outcome::Failure)),
            event(5, attempt("alice", Some("10.0.0.7"), Outcome::Success)),
            event(6, attempt("alice", Some("10.0.0.8"), Outcome::Success)),
            event(7, attempt("alice", Some("10.0.0.8"), Outcome::Success)),
            event(8, attempt("root", None, Outcome::Success)),
            event(
                9,
                Body::SessionStart(SessionStart {
                    user: "root".into(),
                    service: "sudo".into(),
                    ..SessionStart::default()
                }),
            ),
            event(
                10,
                Body::LoginVerdict(LoginVerdict {
                    verdict: Verdict::KernelOnly,
                    program: "sshd".into(),
                    user: "alice".into(),
                    reason: "no journal record".into(),
                    ..LoginVerdict::default()
                }),
            ),
            event(
                11,
                Body::LoginVerdict(LoginVerdict {
                    verdict: Verdict::Confirmed,
                    ..LoginVerdict::default()
                }),
            ),
            event(
                12,
                Body::AgentHealth(AgentHealth {
                    lost: [("exec".to_owned(), 4)].into(),
                    ..AgentHealth::default()
                }),
            ),
        ];
        let known: HashSet<_> = [("alice".to_owned(), "10.0.0.7".to_owned())].into();
        let r = build(&events, &known, 0, 0);
        let sources: Vec<_> = r
            .failed_by_source
            .iter()
            .map(|s| (s.address.as_str(), s.failures, s.users.len()))
            .collect();
        assert_eq!(sources, vec![("10.0.0.9", 3, 2), ("10.0.0.7", 1, 1)]);
        let users: Vec<_> = r
            .failed_by_user
            .iter()
            .map(|u| (u.user.as_str(), u.failures))
            .collect();
        assert_eq!(users, vec![("alice", 3), ("bob", 1)]);
        let root: Vec<_> = r
            .root_logins
            .iter()
            .map(|l| (l.seq, l.evidence.as_str()))
            .collect();
        assert_eq!(root, vec![(8, "login_attempt"), (9, "session_start")]);
        let new: Vec<_> = r
            .new_sources
            .iter()
            .map(|n| (n.user.as_str(), n.address.as_str()))
            .collect();
        assert_eq!(new, vec![("alice", "10.0.0.8")]);
        assert_eq!(r.verdicts.len(), 1);
        assert_eq!(r.verdicts[0].verdict, "kernel_only");
        assert_eq!(
            r.agent_problems,
            vec![AgentProblem {
                host: "web-1".into(),
                kernel_lost: 4,
                spool_dropped: 0,
                last_report: format_ns(12_000_000_000),
            }]
        );
    }

    #[test]
    fn the_review_lists_the_times_nothing_was_captured() {
        let events = vec![
            event(
                13,
                Body::AgentHealth(AgentHealth {
                    reason: "start".into(),
                    capture_start: Some(CaptureStart {
                        how: "gap".into(),
                        gap_from_unix_ns: Some(10_000_000_000),
                        gap_to_unix_ns: Some(12_500_000_000),
                    }),
                    ..AgentHealth::default()
                }),
            ),
            event(
                14,
                Body::AgentHealth(AgentHealth {
                    reason: "start".into(),
                    capture_start: Some(CaptureStart {
                        how: "resumed".into(),
                        ..CaptureStart::default()
                    }),
                    ..AgentHealth::default()
                }),
            ),
        ];
        let r = build(&events, &HashSet::new(), 0, 0);
        assert_eq!(
            r.capture_gaps,
            vec![CaptureGap {
                host: "web-1".into(),
                from: format_ns(10_000_000_000),
                to: format_ns(12_500_000_000),
                seconds: 2,
            }]
        );
    }
}
