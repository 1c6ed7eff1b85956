//! Alert rules over the stored events (from `[alerts]` in the config): too many
//! failed logins from one address, a root login, a login from an address new for
//! that user, journald cross-check verdicts that disagree with the kernel, a stale
//! agent, an agent that caught the log rewound or forked (`log_witness`), an event
//! resent with other content (`conflicting_duplicate`). An alert is kept in the store, counted, shown to live tails that asked
//! for alerts and posted to the webhook.
//!
//! The alerts are stored by [`crate::store::alerts`]; [`webhook`] posts them.
//!
//! The rules evaluate every stored record once, in commit order (the order of
//! the tamper-evidence log's leaves), from a cursor kept in the store
//! ([`crate::store::alert_cursor`]): ingest hands each committed batch over
//! ([`AlertEngine::committed`]), and whatever did not arrive that way (a full
//! queue under load, batches handed over out of order, a crash after the write)
//! is read back from the log. An alert is written with the cursor past the leaf
//! that raised it, so a restart neither skips a record nor raises an alert twice.
//! The rules never slow an acknowledgement down.

mod rules;
mod sigma;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use watchtower_model::{Alert, LiveItem, StoredEvent};
use watchtower_tlog::LeafEntry;

use crate::config::AlertSection;
use crate::metrics::Metrics;
use crate::now_unix_ns;
use crate::store::{EventStore, StoreError};
use rules::RuleState;

/// Alerts waiting for the webhook, at most; more are counted as dropped.
const WEBHOOK_QUEUE: usize = 1024;
/// Committed batches waiting for the rules, at most; beyond it they are read
/// back from the log.
const COMMITTED_QUEUE: usize = 256;
/// How often the rules look for leaves not handed over (a backstop).
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);

/// Records of one committed batch (stored events and conflicts), each with its
/// leaf index.
pub type Committed = Vec<(u64, Arc<LiveItem>)>;

/// Where the rules are in the log.
struct Position {
    /// The first leaf not evaluated.
    next_leaf: u64,
    /// The cursor an alert raised now is written with (just past the leaf being
    /// evaluated); `None` outside a leaf (the stale check).
    raising_at: Option<u64>,
}

pub struct AlertEngine {
    rules: AlertSection,
    store: Arc<EventStore>,
    metrics: Arc<Metrics>,
    live: broadcast::Sender<Arc<LiveItem>>,
    webhook: Option<mpsc::Sender<Alert>>,
    next_id: Mutex<u64>,
    state: Mutex<RuleState>,
    position: Mutex<Position>,
    committed_tx: mpsc::Sender<Committed>,
    committed_rx: Mutex<Option<mpsc::Receiver<Committed>>>,
    /// The Sigma rules of `sigma_rules_dir`, when set.
    sigma: Option<sigma::SigmaRules>,
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
        // The first start evaluates from the log's end: records stored before
        // this version kept a cursor were evaluated then.
        let next_leaf = if let Some(next) = store.alert_cursor()? {
            next
        } else {
            let size = store.log_head().size;
            store.put_alert_cursor(size)?;
            size
        };
        let (committed_tx, committed_rx) = mpsc::channel(COMMITTED_QUEUE);
        let sigma = rules
            .sigma_rules_dir
            .clone()
            .map(|dir| sigma::SigmaRules::load(dir, &metrics));
        Ok((
            Arc::new(AlertEngine {
                rules,
                store,
                metrics,
                live,
                webhook,
                next_id: Mutex::new(next_id),
                state: Mutex::new(RuleState::default()),
                position: Mutex::new(Position {
                    next_leaf,
                    raising_at: None,
                }),
                committed_tx,
                committed_rx: Mutex::new(Some(committed_rx)),
                sigma,
            }),
            queue,
        ))
    }

    /// Hand over a committed batch (after its synced write). Never waits: with
    /// the queue full, the rules read the batch back from the log.
    pub fn committed(&self, batch: Committed) {
        if !batch.is_empty() && self.committed_tx.try_send(batch).is_err() {
            tracing::debug!("the alert rules are behind: they read the batch back from the log");
        }
    }

    /// Raise an alert: number it, keep it (with the rules' cursor), count it, show
    /// it to tails, send it.
    fn raise(&self, alert: Alert) {
        self.raise_remembering(alert, None);
    }

    /// [`AlertEngine::raise`], keeping `remember` (the address a `new_address`
    /// alert is about) in the same write.
    fn raise_remembering(&self, mut alert: Alert, remember: Option<&crate::store::alerts::RemoteRecord>) {
        {
            let mut next = self.next_id.lock().expect("alert ids");
            alert.id = *next;
            *next += 1;
        }
        alert.time_unix_ns = now_unix_ns();
        let at = self.position.lock().expect("alert position").raising_at;
        if let Err(e) = self.store.put_alert_at(&alert, at, remember) {
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
        let _ = self.live.send(Arc::new(LiveItem::Alert(alert.clone())));
        if let Some(webhook) = &self.webhook
            && webhook.try_send(alert).is_err()
        {
            self.metrics.webhook("dropped");
            tracing::error!("the webhook queue is full: an alert was not sent (it is kept in the store)");
        }
    }

    /// Evaluate one record at `leaf` (the caller keeps leaves in order).
    fn evaluate(&self, leaf: u64, item: Option<&LiveItem>) {
        self.position.lock().expect("alert position").raising_at = Some(leaf + 1);
        match item {
            Some(LiveItem::Stored(stored)) => {
                self.observe(stored);
                self.sigma(stored);
            }
            Some(LiveItem::Conflict(conflict)) => self.conflict(conflict),
            _ => {}
        }
        let mut position = self.position.lock().expect("alert position");
        position.raising_at = None;
        position.next_leaf = leaf + 1;
    }

    fn next_leaf(&self) -> u64 {
        self.position.lock().expect("alert position").next_leaf
    }

    /// Evaluate the leaves from the cursor up to `end` (exclusive) as the log
    /// holds them.
    fn read_back(&self, end: u64) -> Result<(), StoreError> {
        loop {
            let from = self.next_leaf();
            if from >= end {
                return Ok(());
            }
            let count = u32::try_from(end - from).unwrap_or(u32::MAX);
            let entries = self.store.log_entries(from, count)?;
            let Some(last) = entries.last().map(|e| e.index) else {
                return Ok(());
            };
            self.metrics.alert_read_back(entries.len() as u64);
            for entry in entries {
                let item = entry
                    .record
                    .map(|record: StoredEvent| match LeafEntry::decode(&entry.entry) {
                        Ok(LeafEntry::Conflict { .. }) => LiveItem::Conflict(record),
                        _ => LiveItem::Stored(record),
                    });
                self.evaluate(entry.index, item.as_ref());
            }
            if last + 1 >= end {
                return Ok(());
            }
        }
    }

    /// Evaluate handed-over batches in leaf order, reading back what is missing.
    fn evaluate_committed(&self, batches: Vec<Committed>) {
        let mut items: Vec<(u64, Arc<LiveItem>)> = batches.into_iter().flatten().collect();
        items.sort_by_key(|(leaf, _)| *leaf);
        let before = self.next_leaf();
        for (leaf, item) in items {
            if leaf < self.next_leaf() {
                continue;
            }
            if let Err(e) = self.read_back(leaf) {
                tracing::error!(error = %e, "the alert rules cannot read the log back; they retry");
                return;
            }
            if self.next_leaf() == leaf {
                self.evaluate(leaf, Some(&item));
            }
        }
        self.save_cursor(before);
    }

    /// Evaluate every leaf the log holds past the cursor.
    fn catch_up(&self) {
        let before = self.next_leaf();
        if let Err(e) = self.read_back(self.store.log_head().size) {
            tracing::error!(error = %e, "the alert rules cannot read the log back; they retry");
        }
        self.save_cursor(before);
    }

    fn save_cursor(&self, before: u64) {
        let next = self.next_leaf();
        if next != before
            && let Err(e) = self.store.put_alert_cursor(next)
        {
            tracing::error!(error = %e, "cannot keep the alert rules' cursor");
        }
    }

    /// Run the rules over committed batches (and the log, as a backstop) and the
    /// stale check at intervals.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        let mut committed = self
            .committed_rx
            .lock()
            .expect("committed queue")
            .take()
            .expect("the alert engine runs once");
        let stale_every = Duration::from_secs((self.rules.stale_agent_secs / 4).clamp(1, 30));
        let reload_every = Duration::from_secs(self.rules.sigma_reload_secs.max(1));
        tokio::spawn(async move {
            let mut stale_check = tokio::time::interval(stale_every);
            let mut backstop = tokio::time::interval(CATCH_UP_EVERY);
            let mut sigma_reload = tokio::time::interval(reload_every);
            loop {
                let engine = engine.clone();
                tokio::select! {
                    received = committed.recv() => {
                        let Some(batch) = received else { break };
                        let mut batches = vec![batch];
                        while batches.len() < 64 {
                            match committed.try_recv() {
                                Ok(batch) => batches.push(batch),
                                Err(_) => break,
                            }
                        }
                        // Store reads and writes, off the async threads.
                        let _ = tokio::task::spawn_blocking(move || engine.evaluate_committed(batches)).await;
                    }
                    _ = backstop.tick() => {
                        let _ = tokio::task::spawn_blocking(move || engine.catch_up()).await;
                    }
                    _ = stale_check.tick() => {
                        let _ = tokio::task::spawn_blocking(move || engine.check_stale()).await;
                    }
                    _ = sigma_reload.tick(), if engine.sigma.is_some() => {
                        let _ = tokio::task::spawn_blocking(move || {
                            if let Some(rules) = &engine.sigma {
                                rules.reload_if_changed(&engine.metrics);
                            }
                        })
                        .await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_model::{Body, Event, LoginAttempt, LoginVerdict, Outcome, StoredEvent, Verdict};

    use crate::Scratch;

    fn engine(rules: AlertSection) -> (Scratch, Arc<AlertEngine>, broadcast::Receiver<Arc<LiveItem>>) {
        let dir = Scratch::new("alerts");
        let store = Arc::new(EventStore::open(&dir.0).unwrap());
        let (live, rx) = broadcast::channel(64);
        let (engine, _) = AlertEngine::new(rules, store, Arc::new(Metrics::new(0)), live).unwrap();
        (dir, engine, rx)
    }

    fn login(seq: u64, user: &str, remote: &str, outcome: Outcome) -> StoredEvent {
        login_on("web-1", seq, user, remote, outcome)
    }

    /// An sshd login attempt of `user` on `host` from `remote`.
    pub(super) fn login_on(host: &str, seq: u64, user: &str, remote: &str, outcome: Outcome) -> StoredEvent {
        StoredEvent {
            event: Some(Event {
                host_id: host.into(),
                boot_id: "b".into(),
                seq,
                time_unix_ns: seq * 1_000_000_000,
                body: Some(Body::LoginAttempt(LoginAttempt {
                    service: "sshd".into(),
                    user: user.into(),
                    remote_host: Some(remote.into()),
                    outcome,
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
            if let LiveItem::Alert(a) = &*item {
                out.push((a.rule.clone(), a.seqs.clone()));
            }
        }
        out
    }

    /// `n` logins of web-1 from seq `first`, failures from 10.0.0.9 at `failing`.
    fn logins(first: u64, n: u64, failing: &[u64]) -> Vec<Event> {
        (first..first + n)
            .map(|seq| {
                let outcome = if failing.contains(&seq) {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                let remote = if failing.contains(&seq) {
                    "10.0.0.9"
                } else {
                    "10.0.0.7"
                };
                login(seq, "alice", remote, outcome).event.unwrap()
            })
            .collect()
    }

    fn restarted(
        engine: &AlertEngine,
        rules: AlertSection,
    ) -> (Arc<AlertEngine>, broadcast::Receiver<Arc<LiveItem>>) {
        let (live, rx) = broadcast::channel(64);
        let (engine, _) =
            AlertEngine::new(rules, engine.store.clone(), Arc::new(Metrics::new(0)), live).unwrap();
        (engine, rx)
    }

    #[test]
    fn a_batch_larger_than_any_buffer_is_evaluated_whole_once_across_restarts() {
        let rules = AlertSection {
            failed_logins_threshold: 3,
            failed_logins_window_secs: 60,
            ..AlertSection::default()
        };
        let (_dir, engine, mut rx) = engine(rules.clone());
        // 20,000 events in one batch, a failed-login burst inside; none handed
        // over (as when the queue is full): the rules read the log back.
        let now = now_unix_ns();
        engine
            .store
            .append("web-1", logins(1, 20_000, &[9_000, 14_000, 19_999]), now, 0)
            .unwrap();
        engine.catch_up();
        assert_eq!(
            raised(&mut rx),
            vec![("failed_logins".into(), vec![9_000, 14_000, 19_999])]
        );
        assert_eq!(engine.store.alert_cursor().unwrap(), Some(20_000));

        // A restart evaluates nothing twice.
        let (engine, mut rx) = restarted(&engine, rules.clone());
        engine.catch_up();
        assert_eq!(raised(&mut rx), vec![]);

        // Stored, then the server stopped before the rules ran: evaluated after.
        engine
            .store
            .append("web-1", logins(20_001, 10, &[20_003, 20_005, 20_007]), now, 0)
            .unwrap();
        let (engine, mut rx) = restarted(&engine, rules);
        engine.catch_up();
        assert_eq!(
            raised(&mut rx),
            vec![("failed_logins".into(), vec![20_003, 20_005, 20_007])]
        );
        assert_eq!(engine.store.alerts(0, u64::MAX, 10).unwrap().len(), 2);
    }

    #[test]
    fn batches_handed_over_out_of_order_or_not_at_all_are_evaluated_in_leaf_order_once() {
        let (_dir, engine, mut rx) = engine(AlertSection {
            failed_logins_threshold: 2,
            failed_logins_window_secs: 60,
            ..AlertSection::default()
        });
        let now = now_unix_ns();
        let mut handed = Vec::new();
        for (first, failing) in [(1, 2), (11, 12), (21, 22)] {
            let appended = engine
                .store
                .append("web-1", logins(first, 10, &[failing]), now, 0)
                .unwrap();
            let batch: Committed = appended
                .receipts
                .iter()
                .zip(appended.stored)
                .map(|(r, stored)| (r.leaf_index, Arc::new(LiveItem::Stored(stored))))
                .collect();
            handed.push(batch);
        }
        // The last batch arrives first, the middle one never: the first two are
        // read back from the log, the last evaluated after them.
        let last = handed.pop().unwrap();
        engine.evaluate_committed(vec![last]);
        engine.evaluate_committed(vec![handed.remove(0)]);
        // Fired at the second failure (its state then forgotten): the third alone
        // does not fire.
        assert_eq!(raised(&mut rx), vec![("failed_logins".into(), vec![2, 12])]);
        assert_eq!(engine.next_leaf(), 30);
    }

    const ROOT_SHELL: &str = "title: A root shell in a login\nid: 6b0f6c1e-1111-4111-8111-000000000001\n\
        level: high\nlogsource: { product: linux, category: process_creation }\n\
        detection:\n  selection:\n    Image|endswith: /bash\n    UserId: 0\n  condition: selection\n";

    #[test]
    fn a_sigma_match_is_an_alert_with_the_rule_the_event_and_the_login_chain() {
        let rules_dir = Scratch::new("sigma-rules");
        std::fs::write(rules_dir.0.join("root-shell.yml"), ROOT_SHELL).unwrap();
        std::fs::write(rules_dir.0.join("broken.yml"), "title: [\n").unwrap();
        let (_dir, engine, mut rx) = engine(AlertSection {
            sigma_rules_dir: Some(rules_dir.0.clone()),
            ..AlertSection::default()
        });
        let event = |seq: u64, body: Body| Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            time_unix_ns: seq,
            body: Some(body),
        };
        let start = |session: u64, parent: Option<u64>, service: &str, user: &str, remote: Option<&str>| {
            Body::SessionStart(watchtower_model::SessionStart {
                session,
                parent_session: parent,
                service: service.into(),
                user: user.into(),
                remote_host: remote.map(Into::into),
                ..Default::default()
            })
        };
        let exec = |session: u64, file: &str, uid: u32| {
            Body::Exec(watchtower_model::Exec {
                session: Some(session),
                session_user: Some("root".into()),
                filename: file.into(),
                argv: vec!["bash".into(), "-i".into()],
                process: Some(watchtower_model::Process {
                    pid: 90,
                    uid,
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        engine
            .store
            .append(
                "web-1",
                vec![
                    event(1, start(0x10, None, "sshd", "alice", Some("198.51.100.7"))),
                    event(2, start(0x11, Some(0x10), "sudo", "root", None)),
                    event(3, exec(0x11, "/usr/bin/id", 0)),
                    event(4, exec(0x11, "/usr/bin/bash", 0)),
                    event(5, exec(0x10, "/usr/bin/bash", 1000)),
                ],
                now_unix_ns(),
                0,
            )
            .unwrap();
        engine.catch_up();
        let alerts: Vec<Alert> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|item| match &*item {
                LiveItem::Alert(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let a = &alerts[0];
        assert_eq!(
            (a.rule.as_str(), a.severity.as_str(), a.seqs.as_slice()),
            ("sigma", "critical", &[4][..])
        );
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.remote_address.as_deref(), Some("198.51.100.7"));
        assert!(
            a.summary
                .contains("alice from 198.51.100.7 via sshd, then sudo to root"),
            "{}",
            a.summary
        );
        let m = a.sigma.as_ref().unwrap();
        assert_eq!(
            (m.title.as_str(), m.file.as_str()),
            ("A root shell in a login", "root-shell.yml")
        );
        assert_eq!(m.event.as_ref().unwrap().event.as_ref().unwrap().seq, 4);
        let chain: Vec<u64> = m.session_chain.iter().map(|s| s.session).collect();
        assert_eq!(chain, vec![0x11, 0x10]);

        // A new rule file is picked up without a restart.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(
            rules_dir.0.join("id.yml"),
            "title: id\nlogsource: { category: process_creation }\ndetection: { s: { Image: /usr/bin/id }, condition: s }\n",
        )
        .unwrap();
        engine.sigma.as_ref().unwrap().reload_if_changed(&engine.metrics);
        engine
            .store
            .append(
                "web-1",
                vec![event(6, exec(0x11, "/usr/bin/id", 0))],
                now_unix_ns(),
                0,
            )
            .unwrap();
        engine.catch_up();
        assert_eq!(raised(&mut rx), vec![("sigma".into(), vec![6])]);
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
                    verdict,
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
                body: Some(Body::AgentHealth(watchtower_model::AgentHealth {
                    log_witness: Some(watchtower_model::LogWitnessHealth {
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
