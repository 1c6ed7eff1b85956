//! Alert rules over the stored events (from `[alerts]` in the config): too many
//! failed logins from one address, a root login, a login from an address new for
//! that user, journald cross-check verdicts that disagree with the kernel, a stale
//! agent. An alert is kept in the store, counted, shown to live tails that asked
//! for alerts and posted to the webhook.
//!
//! The rules read the same broadcast of stored events that live tails read, so
//! they never slow an acknowledgement down; if they fall behind, the events they
//! missed are counted and logged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use rocksdb::{IteratorMode, WriteOptions};
use tokio::sync::{broadcast, mpsc};
use watchtower_proto::{Alert, LiveItem, Outcome, StoredEvent, Verdict, event::Body, live_item};

use crate::config::AlertSection;
use crate::counters::ServerCounters;
use crate::metrics::Metrics;
use crate::now_unix_ns;
use crate::store::{ALERTS, EventStore, KNOWN_REMOTES, StoreError};

/// Alerts waiting for the webhook, at most; more are counted as dropped.
const WEBHOOK_QUEUE: usize = 1024;

impl EventStore {
    /// Keep an alert (synced).
    pub fn put_alert(&self, alert: &Alert) -> Result<(), StoreError> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.put_cf_opt(
            self.cf(ALERTS),
            alert.id.to_be_bytes(),
            alert.encode_to_vec(),
            &sync,
        )?;
        Ok(())
    }

    /// The newest `limit` alerts raised in `[from, to)`, oldest first.
    pub fn alerts(&self, from_unix_ns: u64, to_unix_ns: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(ALERTS), IteratorMode::End) {
            let (_, value) = item?;
            let alert = Alert::decode(&*value).map_err(|e| StoreError::Corrupt(e, ALERTS))?;
            if alert.time_unix_ns < from_unix_ns {
                break;
            }
            if alert.time_unix_ns < to_unix_ns {
                out.push(alert);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The highest alert id used.
    pub fn last_alert_id(&self) -> Result<u64, StoreError> {
        Ok(
            match self.db.iterator_cf(self.cf(ALERTS), IteratorMode::End).next() {
                Some(item) => {
                    let (key, _) = item?;
                    key.as_ref().try_into().map_or(0, u64::from_be_bytes)
                }
                None => 0,
            },
        )
    }

    /// Remember that `user` logged in from `address`. Returns (whether the address
    /// is new for the user, whether the user had logged in from anywhere before).
    pub fn remember_remote(
        &self,
        user: &str,
        address: &str,
        time_unix_ns: u64,
    ) -> Result<(bool, bool), StoreError> {
        let mut key = crate::keys::text_prefix(user);
        let prefix_len = key.len();
        key.extend_from_slice(address.as_bytes());
        let cf = self.cf(KNOWN_REMOTES);
        if self.db.get_cf(cf, &key)?.is_some() {
            return Ok((false, true));
        }
        let known_user = match self
            .db
            .iterator_cf(
                cf,
                IteratorMode::From(&key[..prefix_len], rocksdb::Direction::Forward),
            )
            .next()
        {
            Some(item) => item?.0.starts_with(&key[..prefix_len]),
            None => false,
        };
        self.db.put_cf(cf, &key, time_unix_ns.to_be_bytes())?;
        Ok((true, known_user))
    }
}

/// A failed login remembered for the failed-logins rule.
struct Failure {
    time_unix_ns: u64,
    host: String,
    seq: u64,
    user: String,
}

#[derive(Default)]
struct RuleState {
    /// Failed logins per remote address within the window, oldest first.
    failures: HashMap<String, VecDeque<Failure>>,
    /// Hosts alerted as stale and not heard from since.
    stale: HashSet<String>,
}

pub struct AlertEngine {
    rules: AlertSection,
    store: Arc<EventStore>,
    metrics: Arc<Metrics>,
    live: broadcast::Sender<Arc<LiveItem>>,
    webhook: Option<mpsc::Sender<Alert>>,
    next_id: Mutex<u64>,
    state: Mutex<RuleState>,
}

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
                    self.failed_login(remote, host, event.seq, event.time_unix_ns, &attempt.user);
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
            _ => {}
        }
    }

    fn failed_login(&self, remote: &str, host: &str, seq: u64, time: u64, user: &str) {
        let threshold = self.rules.failed_logins_threshold as usize;
        if threshold == 0 {
            return;
        }
        let window = self.rules.failed_logins_window_secs.saturating_mul(1_000_000_000);
        let fired = {
            let mut state = self.state.lock().expect("alert state");
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
                Some(std::mem::take(failures))
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

    /// The stale-agent rule: hosts not connected and not heard from for too long.
    pub fn check_stale(&self, counters: &ServerCounters) {
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
            let stale = !counters.is_connected(&host.host_id)
                && now.saturating_sub(host.last_heartbeat_unix_ns) > limit;
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

    /// Run the rules over the live broadcast until it closes, and the stale check
    /// at intervals.
    pub fn spawn(self: &Arc<Self>, counters: Arc<ServerCounters>) -> tokio::task::JoinHandle<()> {
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
                                    if let Some(live_item::Item::Stored(stored)) = &item.item {
                                        engine.observe(stored);
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
                        let counters = counters.clone();
                        let _ = tokio::task::spawn_blocking(move || engine.check_stale(&counters)).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::{Event, LoginAttempt, LoginVerdict};

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
            received_unix_ns: 0,
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
    fn a_silent_disconnected_agent_is_stale_once() {
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
        let counters = ServerCounters::default();
        engine.check_stale(&counters);
        engine.check_stale(&counters);
        let stale: Vec<_> = raised(&mut rx).into_iter().map(|(rule, _)| rule).collect();
        assert_eq!(stale, vec!["stale_agent"]);
        // Connected again: no alert, and it may go stale again later.
        counters.connect("web-1");
        engine.check_stale(&counters);
        assert!(!engine.state.lock().unwrap().stale.contains("web-1"));
    }
}
