//! Alert rules over the stored events (from `[alerts]` in the config): too many
//! failed logins from one address, a root login, a login from an address new for
//! that user, journald cross-check verdicts that disagree with the kernel, a stale
//! agent, an agent that caught the log rewound or forked (`log_witness`), an event
//! resent with other content (`conflicting_duplicate`). An alert is kept in the store, counted, shown to live tails that asked
//! for alerts and posted to the webhook.
//!
//! The alerts are stored by [`crate::store::alerts`]; [`webhook`] posts them.
//!
//! The rules read the same broadcast of stored events that live tails read, so
//! they never slow an acknowledgement down; if they fall behind, the events they
//! missed are counted and logged.

mod rules;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use watchtower_proto::pb::{Alert, LiveItem, live_item};

use crate::config::AlertSection;
use crate::metrics::Metrics;
use crate::now_unix_ns;
use crate::store::{EventStore, StoreError};
use rules::RuleState;

/// Alerts waiting for the webhook, at most; more are counted as dropped.
const WEBHOOK_QUEUE: usize = 1024;

pub struct AlertEngine {
    rules: AlertSection,
    store: Arc<EventStore>,
    metrics: Arc<Metrics>,
    live: broadcast::Sender<Arc<LiveItem>>,
    webhook: Option<mpsc::Sender<Alert>>,
    next_id: Mutex<u64>,
    state: Mutex<RuleState>,
}

impl AlertEngine {
    pub fn new(
        rules: AlertSection,
        store: Arc<EventStore>,
        metrics: Arc<Metrics>,
        live: broadcast::Sender<Arc<LiveItem>>,
    ) -> Result<(Arc<AlertEngine>, Option<mpsc::Receiver<Alert>>), StoreError> {
        let (webhook, queue) = if rules.webhook_url.is_some() {
            let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let next_id = store.last_alert_id()? + 1;
        Ok((
            Arc::new(AlertEngine {
                rules,
                store,
                metrics,
                live,
                webhook,
                next_id: Mutex::new(next_id),
                state: Mutex::new(RuleState::default()),
            }),
            queue,
        ))
    }

    /// Raise an alert: number it, keep it, count it, show it to tails, send it.
    fn raise(&self, mut alert: Alert) {
        {
            let mut next = self.next_id.lock().expect("alert ids");
            alert.id = *next;
            *next += 1;
        }
        alert.time_unix_ns = now_unix_ns();
        if let Err(e) = self.store.put_alert(&alert) {
            tracing::error!(error = %e, "cannot keep an alert in the store");
        }
        self.metrics.alert(&alert.rule);
        tracing::warn!(
            id = alert.id,
            rule = %alert.rule,
            severity = %alert.severity,
            host = %alert.host_id,
            "ALERT: {}",
            alert.summary
        );
        let _ = self.live.send(Arc::new(LiveItem {
            item: Some(live_item::Item::Alert(alert.clone())),
        }));
        if let Some(webhook) = &self.webhook
            && webhook.try_send(alert).is_err()
        {
            self.metrics.webhook("dropped");
            tracing::error!("the webhook queue is full: an alert was not sent (it is kept in the store)");
        }
    }

    /// Run the rules over the live broadcast until it closes, and the stale check
    /// at intervals.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        let mut live = self.live.subscribe();
        let stale_every = Duration::from_secs((self.rules.stale_agent_secs / 4).clamp(1, 30));
        tokio::spawn(async move {
            let mut stale_check = tokio::time::interval(stale_every);
            loop {
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(item) => {
                            // Take what else is waiting, then run the rules (store reads
                            // and writes) off the async threads.
                            let mut items = vec![item];
                            while items.len() < 1024 {
                                match live.try_recv() {
                                    Ok(item) => items.push(item),
                                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                                        engine.metrics.live_missed(missed);
                                        tracing::error!(missed, "the alert rules fell behind and skipped events");
                                    }
                                    Err(_) => break,
                                }
                            }
                            let engine = engine.clone();
                            let _ = tokio::task::spawn_blocking(move || {
                                for item in &items {
                                    match &item.item {
                                        Some(live_item::Item::Stored(stored)) => engine.observe(stored),
                                        Some(live_item::Item::Conflict(conflict)) => engine.conflict(conflict),
                                        _ => {}
                                    }
                                }
                            })
                            .await;
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            engine.metrics.live_missed(missed);
                            tracing::error!(missed, "the alert rules fell behind and skipped events");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = stale_check.tick() => {
                        let engine = engine.clone();
                        let _ = tokio::task::spawn_blocking(move || engine.check_stale()).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::pb::{
        Event, LoginAttempt, LoginVerdict, Outcome, StoredEvent, Verdict, event::Body,
    };

    use crate::Scratch;

    fn engine(rules: AlertSection) -> (Scratch, Arc<AlertEngine>, broadcast::Receiver<Arc<LiveItem>>) {
        let dir = Scratch::new("alerts");
        let store = Arc::new(EventStore::open(&dir.0).unwrap());
        let (live, rx) = broadcast::channel(64);
        let (engine, _) = AlertEngine::new(rules, store, Arc::new(Metrics::new(0)), live).unwrap();
        (dir, engine, rx)
    }

    fn login(seq: u64, user: &str, remote: &str, outcome: Outcome) -> StoredEvent {
        StoredEvent {
            event: Some(Event {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq,
                time_unix_ns: seq * 1_000_000_000,
                body: Some(Body::LoginAttempt(LoginAttempt {
                    service: "sshd".into(),
                    user: user.into(),
                    remote_host: Some(remote.into()),
                    outcome: outcome as i32,
                    ..LoginAttempt::default()
                })),
            }),
            received_unix_ns: seq * 1_000_000_000,
            ..StoredEvent::default()
        }
    }

    fn raised(rx: &mut broadcast::Receiver<Arc<LiveItem>>) -> Vec<(String, Vec<u64>)> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let Some(live_item::Item::Alert(a)) = &item.item {
                out.push((a.rule.clone(), a.seqs.clone()));
            }
        }
        out
    }

    #[test]
    fn failed_logins_fire_once_per_threshold_within_the_window() {
        let (_dir, engine, mut rx) = engine(AlertSection {
            failed_logins_threshold: 3,
            failed_logins_window_secs: 10,
            ..AlertSection::default()
        });
        // Two failures, then one outside the window: the first two age out.
        engine.observe(&login(1, "alice", "10.0.0.9", Outcome::Failure));
        engine.observe(&login(2, "bob", "10.0.0.9", Outcome::Failure));
        engine.observe(&login(20, "alice", "10.0.0.9", Outcome::Failure));
        // Another address does not count.
        engine.observe(&login(21, "alice", "10.0.0.8", Outcome::Failure));
        assert_eq!(raised(&mut rx), vec![]);
        engine.observe(&login(22, "alice", "10.0.0.9", Outcome::Failure));
        engine.observe(&login(23, "alice", "10.0.0.9", Outcome::Failure));
        engine.observe(&login(24, "alice", "10.0.0.9", Outcome::Failure));
        assert_eq!(raised(&mut rx), vec![("failed_logins".into(), vec![20, 22, 23])]);
        let kept = engine.store.alerts(0, u64::MAX, 10).unwrap();
        assert_eq!((kept.len(), kept[0].id, kept[0].count), (1, 1, 3));
    }

    #[test]
    fn root_new_addresses_and_disagreeing_verdicts_alert() {
        let (_dir, engine, mut rx) = engine(AlertSection::default());
        engine.observe(&login(1, "alice", "10.0.0.7", Outcome::Success));
        engine.observe(&login(2, "alice", "10.0.0.7", Outcome::Success));
        engine.observe(&login(3, "alice", "10.0.0.8", Outcome::Success));
        engine.observe(&login(4, "root", "10.0.0.8", Outcome::Success));
        engine.observe(&login(5, "root", "10.0.0.9", Outcome::Failure));
        let verdict = |seq, verdict: Verdict| StoredEvent {
            event: Some(Event {
                host_id: "web-1".into(),
                seq,
                body: Some(Body::LoginVerdict(LoginVerdict {
                    verdict: verdict as i32,
                    program: "sshd".into(),
                    user: "alice".into(),
                    ..LoginVerdict::default()
                })),
                ..Event::default()
            }),
            received_unix_ns: 0,
            ..StoredEvent::default()
        };
        engine.observe(&verdict(6, Verdict::Confirmed));
        engine.observe(&verdict(7, Verdict::KernelOnly));
        engine.observe(&verdict(8, Verdict::JournalOnly));
        assert_eq!(
            raised(&mut rx),
            vec![
                // alice's first address is not new (she was unknown); her second is.
                ("new_address".into(), vec![3]),
                // root is a new user: no new_address, but a root login.
                ("root_login".into(), vec![4]),
                ("kernel_only".into(), vec![7]),
                ("journal_only".into(), vec![8]),
            ]
        );
    }

    #[test]
    fn a_silent_agent_is_stale_once_whatever_its_connection_does() {
        let (_dir, engine, mut rx) = engine(AlertSection {
            stale_agent_secs: 60,
            ..AlertSection::default()
        });
        engine
            .store
            .update_host("web-1", |h| {
                h.last_heartbeat_unix_ns = now_unix_ns() - 120_000_000_000;
            })
            .unwrap();
        engine
            .store
            .update_host("db-1", |h| {
                h.last_heartbeat_unix_ns = now_unix_ns();
            })
            .unwrap();
        engine.check_stale();
        engine.check_stale();
        let stale: Vec<_> = raised(&mut rx).into_iter().map(|(rule, _)| rule).collect();
        assert_eq!(stale, vec!["stale_agent"]);
        // Heard from again: no alert, and it may go stale again later.
        engine
            .store
            .update_host("web-1", |h| h.last_heartbeat_unix_ns = now_unix_ns())
            .unwrap();
        engine.check_stale();
        assert!(!engine.state.lock().unwrap().stale.contains("web-1"));
    }

    fn health(seq: u64, findings: &[(&str, u64)]) -> StoredEvent {
        StoredEvent {
            event: Some(Event {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq,
                time_unix_ns: seq,
                body: Some(Body::AgentHealth(watchtower_proto::pb::AgentHealth {
                    log_witness: Some(watchtower_proto::pb::LogWitnessHealth {
                        findings: findings.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                        last_finding: "rewound: the log shrank from 10 to 5 leaves".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            }),
            ..StoredEvent::default()
        }
    }

    #[test]
    fn an_agents_new_log_finding_and_a_conflicting_duplicate_alert_once_each() {
        let (_dir, engine, mut rx) = engine(AlertSection::default());
        engine.observe(&health(1, &[]));
        engine.observe(&health(2, &[("rewound", 1)]));
        // The same finding in every later health record: no new alert.
        engine.observe(&health(3, &[("rewound", 1)]));
        engine.observe(&health(4, &[("rewound", 1), ("not_included", 1)]));
        engine.conflict(&login(7, "mallory", "10.0.0.9", Outcome::Success));
        assert_eq!(
            raised(&mut rx),
            vec![
                ("log_witness".into(), vec![2]),
                ("log_witness".into(), vec![4]),
                ("conflicting_duplicate".into(), vec![7]),
            ]
        );
        let kept = engine.store.alerts(0, u64::MAX, 10).unwrap();
        assert!(kept[0].summary.contains("rewound 1"), "{}", kept[0].summary);
        assert_eq!(kept[0].severity, "critical");
    }

    #[test]
    fn a_failure_stamped_far_in_the_future_does_not_blind_the_failed_login_rule() {
        let (_dir, engine, mut rx) = engine(AlertSection {
            failed_logins_threshold: 3,
            failed_logins_window_secs: 10,
            ..AlertSection::default()
        });
        // The attacker's agent stamps one failure a year ahead; the window runs on
        // receive time, so the next failures still count with it.
        let mut forged = login(1, "alice", "10.0.0.9", Outcome::Failure);
        forged.event.as_mut().unwrap().time_unix_ns += 365 * 86_400 * 1_000_000_000;
        engine.observe(&forged);
        engine.observe(&login(2, "alice", "10.0.0.9", Outcome::Failure));
        engine.observe(&login(3, "alice", "10.0.0.9", Outcome::Failure));
        assert_eq!(raised(&mut rx), vec![("failed_logins".into(), vec![1, 2, 3])]);
        // Fired: the address's state is gone, not kept empty.
        assert!(engine.state.lock().unwrap().failures.is_empty());
    }
}
