//! Where an ingested batch becomes `RocksDB` writes: [`EventStore::append`] turns
//! the events of one batch into a single write holding each new event's
//! record, its index entries and dedup key, the session and host summaries it
//! changes, its leaf in the tamper-evidence log and the subtree hashes it completes,
//! made durable by [`super::group_commit`] in one WAL sync with other hosts' batches.
//! A resent event (same host, boot and seq, same content) is counted, not stored
//! again; one with other content is kept as evidence under its own leaf.

use std::collections::{BTreeMap, HashMap};

use rocksdb::WriteBatch;
use watchtower_model::{Body, Event, HostInfo, Receipt, SessionSummary, StoredEvent};

use watchtower_tlog::{LeafEntry, RecordId};

use super::group_commit::Leaf;
use super::keys::{self, PrimaryKey};
use super::{
    BY_REMOTE, BY_SESSION, BY_TIME, BY_USER, EVENTS, EventStore, HOSTS, SEEN, SESSIONS, StoreError, decode,
    group_commit,
};
use crate::facets;

/// What one append did.
#[derive(Debug, Default)]
pub struct Appended {
    /// Events newly stored, in the batch's order.
    pub stored: Vec<StoredEvent>,
    /// Events already stored before (or twice in the batch), with the same content.
    pub duplicates: u32,
    /// Events with the id of a stored one and other content: kept as evidence
    /// (their own leaf, `conflicts` column family), not indexed.
    pub conflicts: Vec<StoredEvent>,
    /// Events older than the retention cut-off: acknowledged, not stored.
    pub expired: u32,
    pub last_seq: u64,
    /// The log leaf of the first event stored, and the log's size after the batch.
    pub first_leaf: u64,
    pub log_size: u64,
    /// Where each stored event and each conflict went in the log, in leaf order.
    pub receipts: Vec<Receipt>,
}

impl EventStore {
    /// Store a batch of events from the certified `host` (each already checked with
    /// [`facets::check`]) durably: one synced write for the whole batch. Events
    /// stored before (same host, boot and seq) are counted, not stored again;
    /// events older than `not_before_ns` (the retention cut-off) are counted and
    /// dropped.
    pub fn append(
        &self,
        host: &str,
        events: Vec<Event>,
        received_unix_ns: u64,
        not_before_ns: u64,
    ) -> Result<Appended, StoreError> {
        self.append_labelled(host, &HashMap::new(), events, received_unix_ns, not_before_ns)
    }

    /// [`EventStore::append`], each stored record carrying the host's `labels`
    /// (from its certificate).
    pub fn append_labelled(
        &self,
        host: &str,
        labels: &HashMap<String, String>,
        events: Vec<Event>,
        received_unix_ns: u64,
        not_before_ns: u64,
    ) -> Result<Appended, StoreError> {
        let lock = self.host_lock(host);
        let _guard = lock.lock().expect("host write lock");
        let mut appended = Appended {
            last_seq: events.iter().map(|e| e.seq).max().unwrap_or(0),
            ..Appended::default()
        };

        let seen_keys: Vec<Vec<u8>> = events
            .iter()
            .map(|e| keys::seen_key(host, &e.boot_id, e.seq))
            .collect();
        let seen_cf = self.cf(SEEN);
        let already = self
            .db
            .multi_get_cf(seen_keys.iter().map(|k| (seen_cf, k.as_slice())));

        let mut batch = WriteBatch::default();
        // Each new leaf's entry, and the record for a conflict leaf.
        let mut leaves: Vec<Leaf> = Vec::new();
        let by_event = self.receipts_by_event.load(std::sync::atomic::Ordering::Relaxed);
        let mut in_batch: HashMap<&[u8], usize> = HashMap::new();
        let mut sessions: BTreeMap<u64, Option<SessionSummary>> = BTreeMap::new();
        let mut info = self.host(host)?.unwrap_or_else(|| HostInfo {
            host_id: host.to_owned(),
            first_seen_unix_ns: received_unix_ns,
            ..HostInfo::default()
        });
        for ((event, seen_key), was) in events.into_iter().zip(&seen_keys).zip(already) {
            let earlier = match (was?, in_batch.get(seen_key.as_slice())) {
                (_, Some(i)) => appended.stored[*i].event.clone(),
                (Some(pk), None) => self
                    .db
                    .get_cf(self.cf(EVENTS), &pk)?
                    .map(|bytes| decode::<StoredEvent>(&bytes, EVENTS))
                    .transpose()?
                    .and_then(|s| s.event),
                (None, None) => None,
            };
            let stored = StoredEvent {
                event: Some(event),
                received_unix_ns,
                labels: labels.clone(),
            };
            if let Some(earlier) = earlier {
                if Some(&earlier) == stored.event.as_ref() {
                    appended.duplicates += 1;
                } else {
                    let (entry, receipt) = logged(host, &stored, true, leaves.len());
                    appended.receipts.push(receipt);
                    leaves.push(Leaf::conflict(entry, stored.clone()));
                    appended.conflicts.push(stored);
                }
                continue;
            }
            let event = stored.event.as_ref().expect("set above");
            if event.time_unix_ns < not_before_ns {
                appended.expired += 1;
                continue;
            }
            let pk = PrimaryKey::new(host, event.time_unix_ns, event.seq, &event.boot_id);
            let time = event.time_unix_ns;
            for (family, prefix) in index_entries(event) {
                batch.put_cf(self.cf(family), keys::index_key(&prefix, time, &pk), b"");
            }
            batch.put_cf(seen_cf, seen_key, &pk.0);
            self.summarise_session(host, event, &mut sessions)?;
            info.last_event_unix_ns = info.last_event_unix_ns.max(time);
            info.last_seq = info.last_seq.max(event.seq);
            info.boot_id.clone_from(&event.boot_id);
            if let Some(Body::AgentHealth(health)) = &event.body {
                info.kernel_lost.clone_from(&health.lost);
                info.assembler_evicted.clone_from(&health.evicted);
                if health.spool.is_some() {
                    info.spool.clone_from(&health.spool);
                }
            }
            let (entry, receipt) = logged(host, &stored, false, leaves.len());
            appended.receipts.push(receipt);
            leaves.push(Leaf::record(entry, by_event.then(|| seen_key.clone())));
            batch.put_cf(self.cf(EVENTS), &pk.0, keys::encode_value(&stored));
            in_batch.insert(seen_key.as_slice(), appended.stored.len());
            appended.stored.push(stored);
        }
        info.events_stored += appended.stored.len() as u64;
        info.duplicates += u64::from(appended.duplicates);
        for (session, summary) in sessions {
            if let Some(summary) = summary {
                batch.put_cf(
                    self.cf(SESSIONS),
                    keys::session_key(host, session),
                    keys::encode_value(&summary),
                );
            }
        }
        batch.put_cf(self.cf(HOSTS), keys::host_key(host), keys::encode_value(&info));
        // The log: leaves numbered in commit order, in the same write, synced with
        // the batches of other hosts.
        let committed = self.commit(group_commit::Request { batch, leaves })?;
        appended.first_leaf = committed.first_leaf;
        for receipt in &mut appended.receipts {
            receipt.leaf_index += committed.first_leaf;
        }
        appended.log_size = committed.head.size;
        Ok(appended)
    }

    fn session_summary(
        &self,
        host: &str,
        session: u64,
        cache: &mut BTreeMap<u64, Option<SessionSummary>>,
    ) -> Result<(), StoreError> {
        if let std::collections::btree_map::Entry::Vacant(e) = cache.entry(session) {
            let stored = self
                .db
                .get_cf(self.cf(SESSIONS), keys::session_key(host, session))?
                .map(|bytes| decode::<SessionSummary>(&bytes, SESSIONS))
                .transpose()?;
            e.insert(stored);
        }
        Ok(())
    }

    fn summarise_session(
        &self,
        host: &str,
        event: &Event,
        cache: &mut BTreeMap<u64, Option<SessionSummary>>,
    ) -> Result<(), StoreError> {
        match &event.body {
            Some(Body::SessionStart(start)) => {
                self.session_summary(host, start.session, cache)?;
                let entry = cache.entry(start.session).or_default();
                let summary = entry.get_or_insert_with(SessionSummary::default);
                host.clone_into(&mut summary.host_id);
                summary.boot_id.clone_from(&event.boot_id);
                summary.session = start.session;
                summary.parent_session = start.parent_session;
                summary.service.clone_from(&start.service);
                summary.user.clone_from(&start.user);
                summary.remote_host.clone_from(&start.remote_host);
                summary.tty.clone_from(&start.tty);
                summary.start_unix_ns = event.time_unix_ns;
                if let Some(parent) = start.parent_session {
                    self.session_summary(host, parent, cache)?;
                    if let Some(Some(parent)) = cache.get_mut(&parent)
                        && !parent.child_sessions.contains(&start.session)
                    {
                        parent.child_sessions.push(start.session);
                    }
                }
            }
            Some(Body::SessionEnd(end)) => {
                self.session_summary(host, end.session, cache)?;
                let entry = cache.entry(end.session).or_default();
                let summary = entry.get_or_insert_with(|| SessionSummary {
                    host_id: host.to_owned(),
                    boot_id: event.boot_id.clone(),
                    session: end.session,
                    parent_session: end.parent_session,
                    service: end.service.clone(),
                    user: end.user.clone(),
                    remote_host: end.remote_host.clone(),
                    start_unix_ns: event.time_unix_ns.saturating_sub(end.duration_ns),
                    ..SessionSummary::default()
                });
                summary.end_unix_ns = event.time_unix_ns;
                summary.end_reason = Some(end.reason.clone());
                summary.execs = end.execs;
                summary.connects = end.connects;
            }
            Some(Body::Exec(exec)) => {
                if let Some(session) = exec.session.filter(|s| *s != 0) {
                    self.session_summary(host, session, cache)?;
                    if let Some(Some(summary)) = cache.get_mut(&session)
                        && summary.end_unix_ns == 0
                    {
                        summary.execs += 1;
                    }
                }
            }
            Some(Body::Connect(connect)) => {
                if let Some(session) = connect.session.filter(|s| *s != 0) {
                    self.session_summary(host, session, cache)?;
                    if let Some(Some(summary)) = cache.get_mut(&session)
                        && summary.end_unix_ns == 0
                    {
                        summary.connects += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The leaf entry of a record (a conflict's when `conflict`) and its receipt,
/// numbered from the batch's first leaf (`offset` leaves before it).
fn logged(host: &str, stored: &StoredEvent, conflict: bool, offset: usize) -> (Vec<u8>, Receipt) {
    let id = record_id(host, stored);
    let record_sha256 = stored.record_sha256();
    let receipt = Receipt {
        seq: id.seq,
        leaf_index: offset as u64,
        record_sha256: record_sha256.to_vec(),
        conflict,
        boot_id: String::new(),
    };
    let entry = if conflict {
        LeafEntry::Conflict { id, record_sha256 }
    } else {
        LeafEntry::Record { id, record_sha256 }
    };
    (entry.encode(), receipt)
}

/// The id a leaf names: the certified host, the event's boot, seq and time.
fn record_id(host: &str, stored: &StoredEvent) -> RecordId {
    let event = stored.event.as_ref().expect("stored records have an event");
    RecordId {
        host_id: host.to_owned(),
        boot_id: event.boot_id.clone(),
        seq: event.seq,
        time_unix_ns: event.time_unix_ns,
    }
}

/// The index entries (family, prefix) of an event; the time index has no prefix.
pub(super) fn index_entries(event: &Event) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![(BY_TIME, Vec::new())];
    for user in facets::users(event) {
        out.push((BY_USER, keys::text_prefix(user)));
    }
    for session in facets::sessions(event) {
        out.push((BY_SESSION, keys::session_prefix(&event.host_id, session)));
    }
    for remote in facets::remotes(event) {
        out.push((BY_REMOTE, keys::text_prefix(remote)));
    }
    out
}
