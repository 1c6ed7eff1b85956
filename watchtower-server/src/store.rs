//! The event store: `RocksDB` with one column family for events (by host, time and
//! seq), one per index, and summaries of sessions and hosts. See [`crate::keys`]
//! for the layout.
//!
//! Append-only: the only deletion is [`EventStore::prune_before`], retention by
//! age, which is explicit, logged and counted. `RocksDB`'s TTL is not used (it
//! would delete silently during compaction).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use prost::Message as _;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions,
};
use watchtower_proto::{Event, EventFilter, HostInfo, SessionSummary, StoredEvent, event::Body};

use crate::facets;
use crate::keys::{self, PrimaryKey};
use crate::merkle::{self, Frontier, Hash};

pub(crate) const EVENTS: &str = "events";
const BY_TIME: &str = "by_time";
const BY_USER: &str = "by_user";
const BY_SESSION: &str = "by_session";
const BY_REMOTE: &str = "by_remote";
const SEEN: &str = "seen";
const SESSIONS: &str = "sessions";
const HOSTS: &str = "hosts";
const META: &str = "meta";
/// The tamper-evidence log: leaf index → [`LogLeaf`].
pub(crate) const LOG_LEAVES: &str = "log_leaves";
/// Signed checkpoints: time · size → `SignedCheckpoint`.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// Alerts raised: id → `Alert`.
pub(crate) const ALERTS: &str = "alerts";
/// Addresses each user logged in from: user 0 address → first time.
pub(crate) const KNOWN_REMOTES: &str = "known_remotes";
const FAMILIES: [&str; 13] = [
    EVENTS,
    BY_TIME,
    BY_USER,
    BY_SESSION,
    BY_REMOTE,
    SEEN,
    SESSIONS,
    HOSTS,
    META,
    LOG_LEAVES,
    CHECKPOINTS,
    ALERTS,
    KNOWN_REMOTES,
];
/// The meta record holding the log's [`Frontier`], written with every append.
const LOG_FRONTIER: &[u8] = b"log_frontier";

/// Index entries looked at per query page before returning what was found (with a
/// token to go on), so a selective filter never holds a request for long.
const MAX_SCAN_PER_PAGE: usize = 100_000;
/// Events a session view returns at most.
pub const MAX_SESSION_EVENTS: usize = 10_000;
/// Sessions a session tree spans at most.
const MAX_SESSION_TREE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("stored record under {family} is not valid ({0}); the database may be damaged", family = .1)]
    Corrupt(prost::DecodeError, &'static str),
    #[error("the page token does not belong to this query")]
    BadPageToken,
    #[error("a session filter needs a host (sessions are numbered per host)")]
    SessionWithoutHost,
    #[error("{0}; the database may be damaged")]
    Frontier(#[from] crate::merkle::DamagedFrontier),
}

/// What one append did.
#[derive(Debug, Default)]
pub struct Appended {
    /// Events newly stored, in the batch's order.
    pub stored: Vec<StoredEvent>,
    /// Events already stored before (or twice in the batch).
    pub duplicates: u32,
    /// Events older than the retention cut-off: acknowledged, not stored.
    pub expired: u32,
    pub last_seq: u64,
    /// The log leaf of the first event stored, and the log's size after the batch.
    pub first_leaf: u64,
    pub log_size: u64,
}

/// A leaf of the tamper-evidence log as stored: its hash and what it names
/// (`hash(32) time(8) host 0 boot 0 seq(8)`).
#[derive(Debug, PartialEq, Eq)]
pub struct LogLeaf {
    pub hash: Hash,
    pub time_unix_ns: u64,
    pub host: String,
    pub boot_id: String,
    pub seq: u64,
}

impl LogLeaf {
    fn encode(hash: &Hash, time_unix_ns: u64, seen_key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + seen_key.len());
        out.extend_from_slice(hash);
        out.extend_from_slice(&time_unix_ns.to_be_bytes());
        out.extend_from_slice(seen_key);
        out
    }

    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<LogLeaf> {
        let (hash, rest) = bytes.split_first_chunk::<32>()?;
        let (time, rest) = rest.split_first_chunk::<8>()?;
        let (rest, seq) = rest.split_last_chunk::<8>()?;
        let mut texts = rest.split(|b| *b == 0);
        let host = std::str::from_utf8(texts.next()?).ok()?.to_owned();
        let boot_id = std::str::from_utf8(texts.next()?).ok()?.to_owned();
        if texts.next() != Some(&[][..]) || texts.next().is_some() {
            return None;
        }
        Some(LogLeaf {
            hash: *hash,
            time_unix_ns: u64::from_be_bytes(*time),
            host,
            boot_id,
            seq: u64::from_be_bytes(*seq),
        })
    }

    #[must_use]
    pub fn primary_key(&self) -> PrimaryKey {
        PrimaryKey::new(&self.host, self.time_unix_ns, self.seq, &self.boot_id)
    }
}

/// The index a query scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Session = 1,
    Remote = 2,
    User = 3,
    Host = 4,
    Time = 5,
}

pub struct EventStore {
    pub(crate) db: DB,
    /// The log's right edge; appends take it after their host lock, so leaves are
    /// numbered in commit order.
    log: Mutex<Frontier>,
    /// One writer per host at a time, so the dedup check and the write are atomic;
    /// hosts write concurrently and share WAL syncs.
    host_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn decode<M: prost::Message + Default>(bytes: &[u8], family: &'static str) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt(e, family))
}

impl EventStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<EventStore, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.set_keep_log_file_num(10);
        let families = FAMILIES.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&options, dir, families)?;
        let meta = db.cf_handle(META).expect("created at open");
        let frontier = match db.get_cf(meta, LOG_FRONTIER)? {
            Some(bytes) => Frontier::decode(&bytes)?,
            None => Frontier::default(),
        };
        Ok(EventStore {
            db,
            log: Mutex::new(frontier),
            host_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The log's size and tree head now.
    pub fn log_head(&self) -> (u64, Hash) {
        let log = self.log.lock().expect("log lock");
        (log.size(), log.root())
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    fn host_lock(&self, host: &str) -> Arc<Mutex<()>> {
        let mut locks = self.host_locks.lock().expect("host lock table");
        locks.entry(host.to_owned()).or_default().clone()
    }

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
        let mut leaves: Vec<(Hash, Vec<u8>)> = Vec::new();
        let mut in_batch: HashSet<&[u8]> = HashSet::new();
        let mut sessions: BTreeMap<u64, Option<SessionSummary>> = BTreeMap::new();
        let mut info = self.host(host)?.unwrap_or_else(|| HostInfo {
            host_id: host.to_owned(),
            first_seen_unix_ns: received_unix_ns,
            ..HostInfo::default()
        });
        for ((event, seen_key), was) in events.into_iter().zip(&seen_keys).zip(already) {
            if was?.is_some() || !in_batch.insert(seen_key.as_slice()) {
                appended.duplicates += 1;
                continue;
            }
            if event.time_unix_ns < not_before_ns {
                appended.expired += 1;
                continue;
            }
            let pk = PrimaryKey::new(host, event.time_unix_ns, event.seq, &event.boot_id);
            let time = event.time_unix_ns;
            for (family, prefix) in index_entries(&event) {
                batch.put_cf(self.cf(family), keys::index_key(&prefix, time, &pk), b"");
            }
            batch.put_cf(seen_cf, seen_key, &pk.0);
            self.summarise_session(host, &event, &mut sessions)?;
            info.last_event_unix_ns = info.last_event_unix_ns.max(time);
            info.last_seq = info.last_seq.max(event.seq);
            info.boot_id.clone_from(&event.boot_id);
            if let Some(Body::AgentHealth(health)) = &event.body {
                info.kernel_lost.clone_from(&health.lost);
                if health.spool.is_some() {
                    info.spool.clone_from(&health.spool);
                }
            }
            let stored = StoredEvent {
                event: Some(event),
                received_unix_ns,
                labels: labels.clone(),
            };
            let record = stored.encode_to_vec();
            let leaf = merkle::leaf_hash(&pk.0, &record);
            leaves.push((leaf, LogLeaf::encode(&leaf, time, seen_key)));
            batch.put_cf(self.cf(EVENTS), &pk.0, record);
            appended.stored.push(stored);
        }
        info.events_stored += appended.stored.len() as u64;
        info.duplicates += u64::from(appended.duplicates);
        for (session, summary) in sessions {
            if let Some(summary) = summary {
                batch.put_cf(
                    self.cf(SESSIONS),
                    keys::session_key(host, session),
                    summary.encode_to_vec(),
                );
            }
        }
        batch.put_cf(self.cf(HOSTS), host.as_bytes(), info.encode_to_vec());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        // The log: leaves numbered in commit order, the new frontier in the same write.
        let mut log = self.log.lock().expect("log lock");
        let mut frontier = log.clone();
        appended.first_leaf = frontier.size();
        if !leaves.is_empty() {
            for (hash, value) in leaves {
                batch.put_cf(self.cf(LOG_LEAVES), frontier.size().to_be_bytes(), value);
                frontier.push(hash);
            }
            batch.put_cf(self.cf(META), LOG_FRONTIER, frontier.encode());
        }
        self.db.write_opt(batch, &sync)?;
        appended.log_size = frontier.size();
        *log = frontier;
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

    /// A host's record.
    pub fn host(&self, host: &str) -> Result<Option<HostInfo>, StoreError> {
        self.db
            .get_cf(self.cf(HOSTS), host.as_bytes())?
            .map(|bytes| decode(&bytes, HOSTS))
            .transpose()
    }

    /// Apply `edit` to a host's stored record (created if missing).
    pub fn update_host(&self, host: &str, edit: impl FnOnce(&mut HostInfo)) -> Result<HostInfo, StoreError> {
        let lock = self.host_lock(host);
        let _guard = lock.lock().expect("host write lock");
        let mut info = self.host(host)?.unwrap_or_else(|| HostInfo {
            host_id: host.to_owned(),
            ..HostInfo::default()
        });
        edit(&mut info);
        self.db
            .put_cf(self.cf(HOSTS), host.as_bytes(), info.encode_to_vec())?;
        Ok(info)
    }

    /// Every host that ever sent anything.
    pub fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        let mut hosts = Vec::new();
        for item in self.db.iterator_cf(self.cf(HOSTS), IteratorMode::Start) {
            let (_, value) = item?;
            hosts.push(decode(&value, HOSTS)?);
        }
        Ok(hosts)
    }

    /// One page of events matching `filter`, oldest first, scanning the most
    /// selective index the filter allows.
    pub fn query(
        &self,
        filter: &EventFilter,
        page_size: usize,
        page_token: &[u8],
    ) -> Result<(Vec<StoredEvent>, Vec<u8>), StoreError> {
        let from = filter.from_unix_ns;
        let to = if filter.to_unix_ns == 0 {
            u64::MAX
        } else {
            filter.to_unix_ns
        };
        let (plan, family, prefix) = if let Some(session) = filter.session {
            if filter.host_id.is_empty() {
                return Err(StoreError::SessionWithoutHost);
            }
            (
                Plan::Session,
                BY_SESSION,
                keys::session_prefix(&filter.host_id, session),
            )
        } else if !filter.remote_address.is_empty() {
            (Plan::Remote, BY_REMOTE, keys::text_prefix(&filter.remote_address))
        } else if !filter.user.is_empty() {
            (Plan::User, BY_USER, keys::text_prefix(&filter.user))
        } else if !filter.host_id.is_empty() {
            (Plan::Host, EVENTS, keys::text_prefix(&filter.host_id))
        } else {
            (Plan::Time, BY_TIME, Vec::new())
        };
        let (lo, hi) = keys::index_range(&prefix, from, to);
        let start = match page_token.split_first() {
            None => lo,
            Some((p, last)) if *p == plan as u8 && last.starts_with(&prefix) => keys::successor(last),
            Some(_) => return Err(StoreError::BadPageToken),
        };
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(hi);
        let iter = self.db.iterator_cf_opt(
            self.cf(family),
            read,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut events = Vec::new();
        let mut scanned = 0usize;
        let mut last_key: Option<Box<[u8]>> = None;
        let mut exhausted = true;
        for item in iter {
            let (key, value) = item?;
            let stored: StoredEvent = if plan == Plan::Host {
                decode(&value, EVENTS)?
            } else {
                let Some(pk) = keys::primary_of_index(&key, prefix.len()) else {
                    continue;
                };
                match self.db.get_cf(self.cf(EVENTS), pk)? {
                    Some(bytes) => decode(&bytes, EVENTS)?,
                    // Pruned by retention between the index and the event: skip.
                    None => continue,
                }
            };
            scanned += 1;
            last_key = Some(key);
            if stored
                .event
                .as_ref()
                .is_some_and(|event| facets::matches(filter, event))
            {
                events.push(stored);
            }
            if events.len() >= page_size || scanned >= MAX_SCAN_PER_PAGE {
                exhausted = false;
                break;
            }
        }
        let token = match (exhausted, last_key) {
            (false, Some(key)) => {
                let mut token = vec![plan as u8];
                token.extend_from_slice(&key);
                token
            }
            _ => Vec::new(),
        };
        Ok((events, token))
    }

    /// A session's summary and the events of it and its child sessions, oldest first.
    pub fn session(
        &self,
        host: &str,
        session: u64,
    ) -> Result<Option<(SessionSummary, Vec<StoredEvent>, bool)>, StoreError> {
        let Some(bytes) = self
            .db
            .get_cf(self.cf(SESSIONS), keys::session_key(host, session))?
        else {
            return Ok(None);
        };
        let summary: SessionSummary = decode(&bytes, SESSIONS)?;
        // The tree: this session and its descendants.
        let mut tree = vec![session];
        let mut next = summary.child_sessions.clone();
        while let Some(child) = next.pop() {
            if tree.len() >= MAX_SESSION_TREE {
                break;
            }
            if tree.contains(&child) {
                continue;
            }
            tree.push(child);
            if let Some(bytes) = self
                .db
                .get_cf(self.cf(SESSIONS), keys::session_key(host, child))?
            {
                next.extend(decode::<SessionSummary>(&bytes, SESSIONS)?.child_sessions);
            }
        }
        let mut seen = HashSet::new();
        let mut events = Vec::new();
        let mut truncated = false;
        'tree: for s in tree {
            let prefix = keys::session_prefix(host, s);
            let (lo, hi) = keys::index_range(&prefix, 0, u64::MAX);
            let mut read = ReadOptions::default();
            read.set_iterate_upper_bound(hi);
            for item in self.db.iterator_cf_opt(
                self.cf(BY_SESSION),
                read,
                IteratorMode::From(&lo, Direction::Forward),
            ) {
                let (key, _) = item?;
                let Some(pk) = keys::primary_of_index(&key, prefix.len()) else {
                    continue;
                };
                if !seen.insert(pk.to_vec()) {
                    continue;
                }
                if events.len() >= MAX_SESSION_EVENTS {
                    truncated = true;
                    break 'tree;
                }
                if let Some(bytes) = self.db.get_cf(self.cf(EVENTS), pk)? {
                    events.push((pk.to_vec(), decode::<StoredEvent>(&bytes, EVENTS)?));
                }
            }
        }
        events.sort_by(|a, b| {
            let t = |e: &StoredEvent| e.event.as_ref().map_or((0, 0), |e| (e.time_unix_ns, e.seq));
            t(&a.1).cmp(&t(&b.1))
        });
        Ok(Some((
            summary,
            events.into_iter().map(|(_, e)| e).collect(),
            truncated,
        )))
    }

    /// Remove every event older than `cutoff_unix_ns` with its index entries and
    /// dedup keys (retention by age). Returns how many were removed; each batch is
    /// synced.
    pub fn prune_before(&self, cutoff_unix_ns: u64) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        for info in self.hosts()? {
            let host = info.host_id;
            let lock = self.host_lock(&host);
            let _guard = lock.lock().expect("host write lock");
            loop {
                let (lo, hi) = keys::host_range(&host, 0, cutoff_unix_ns);
                let mut read = ReadOptions::default();
                read.set_iterate_upper_bound(hi);
                let mut batch = WriteBatch::default();
                let mut n = 0u64;
                for item in self.db.iterator_cf_opt(
                    self.cf(EVENTS),
                    read,
                    IteratorMode::From(&lo, Direction::Forward),
                ) {
                    let (key, value) = item?;
                    let stored: StoredEvent = decode(&value, EVENTS)?;
                    if let Some(event) = stored.event {
                        let pk = PrimaryKey(key.to_vec());
                        for (family, prefix) in index_entries(&event) {
                            batch.delete_cf(
                                self.cf(family),
                                keys::index_key(&prefix, event.time_unix_ns, &pk),
                            );
                        }
                        batch.delete_cf(self.cf(SEEN), keys::seen_key(&host, &event.boot_id, event.seq));
                    }
                    batch.delete_cf(self.cf(EVENTS), &key);
                    n += 1;
                    if n == 10_000 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                self.db.write_opt(batch, &sync)?;
                removed += n;
            }
        }
        Ok(removed)
    }

    /// Count the events matching `filter` by reading and decoding every stored
    /// record, no index used: the baseline the indexed [`EventStore::query`] is
    /// measured against, and an independent check of what it returns.
    pub fn full_scan_count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let mut matched = 0u64;
        for item in self.db.iterator_cf(self.cf(EVENTS), IteratorMode::Start) {
            let (_, value) = item?;
            let stored: StoredEvent = decode(&value, EVENTS)?;
            if stored
                .event
                .as_ref()
                .is_some_and(|event| facets::matches(filter, event))
            {
                matched += 1;
            }
        }
        Ok(matched)
    }

    /// Sessions started and not ended (for the active-sessions gauge at start).
    pub fn open_sessions(&self) -> Result<u64, StoreError> {
        let mut open = 0;
        for item in self.db.iterator_cf(self.cf(SESSIONS), IteratorMode::Start) {
            let (_, value) = item?;
            open += u64::from(decode::<SessionSummary>(&value, SESSIONS)?.end_unix_ns == 0);
        }
        Ok(open)
    }

    /// The time of the oldest stored event.
    pub fn oldest_event(&self) -> Result<Option<u64>, StoreError> {
        match self.db.iterator_cf(self.cf(BY_TIME), IteratorMode::Start).next() {
            Some(item) => {
                let (key, _) = item?;
                Ok(key
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes))
            }
            None => Ok(None),
        }
    }

    /// Keep a small record beside the events (the retention cut-off, ...).
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.put_cf_opt(self.cf(META), name.as_bytes(), value, &sync)?;
        Ok(())
    }
}

/// The index entries (family, prefix) of an event; the time index has no prefix.
fn index_entries(event: &Event) -> Vec<(&'static str, Vec<u8>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::{Connect, EventKind, Exec, LoginAttempt, Outcome, SessionEnd, SessionStart};

    use crate::Scratch;

    fn event(seq: u64, time: u64, body: Body) -> Event {
        Event {
            host_id: "web-1".into(),
            boot_id: "boot-a".into(),
            seq,
            time_unix_ns: time,
            body: Some(body),
        }
    }

    fn login(user: &str, remote: &str, outcome: Outcome, from: Option<u64>) -> Body {
        Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: user.into(),
            remote_host: Some(remote.into()),
            outcome: outcome as i32,
            from_session: from,
            ..LoginAttempt::default()
        })
    }

    fn exec(session: u64, user: &str, file: &str) -> Body {
        Body::Exec(Exec {
            session: Some(session),
            session_user: Some(user.into()),
            filename: file.into(),
            ..Exec::default()
        })
    }

    fn seqs(events: &[StoredEvent]) -> Vec<u64> {
        events.iter().map(|e| e.event.as_ref().unwrap().seq).collect()
    }

    fn query(store: &EventStore, edit: impl Fn(&mut EventFilter)) -> Vec<u64> {
        let mut filter = EventFilter::default();
        edit(&mut filter);
        seqs(&store.query(&filter, 1000, &[]).unwrap().0)
    }

    /// A password login, its session running two programs and a connect, a su
    /// inside it with its own session and program, all closed; then a failed login
    /// from elsewhere.
    fn history() -> Vec<Event> {
        vec![
            event(1, 1_000, login("alice", "127.0.0.1", Outcome::Success, None)),
            event(
                2,
                1_001,
                Body::SessionStart(SessionStart {
                    session: 0xa,
                    service: "sshd".into(),
                    user: "alice".into(),
                    remote_host: Some("127.0.0.1".into()),
                    tty: Some("ssh".into()),
                    ..SessionStart::default()
                }),
            ),
            event(3, 1_002, exec(0xa, "alice", "/usr/bin/id")),
            event(
                4,
                1_003,
                Body::Connect(Connect {
                    session: Some(0xa),
                    session_user: Some("alice".into()),
                    family: "inet".into(),
                    address: "10.0.0.9".into(),
                    port: Some(443),
                    ..Connect::default()
                }),
            ),
            event(5, 1_004, login("bob", "", Outcome::Success, Some(0xa))),
            event(
                6,
                1_005,
                Body::SessionStart(SessionStart {
                    session: 0xb,
                    parent_session: Some(0xa),
                    service: "su".into(),
                    user: "bob".into(),
                    ..SessionStart::default()
                }),
            ),
            event(7, 1_006, exec(0xb, "bob", "/usr/bin/whoami")),
            event(
                8,
                1_007,
                Body::SessionEnd(SessionEnd {
                    session: 0xb,
                    parent_session: Some(0xa),
                    service: "su".into(),
                    user: "bob".into(),
                    reason: "closed".into(),
                    duration_ns: 2,
                    execs: 1,
                    ..SessionEnd::default()
                }),
            ),
            event(
                9,
                1_008,
                Body::SessionEnd(SessionEnd {
                    session: 0xa,
                    service: "sshd".into(),
                    user: "alice".into(),
                    remote_host: Some("127.0.0.1".into()),
                    reason: "closed".into(),
                    duration_ns: 7,
                    execs: 2,
                    connects: 1,
                    ..SessionEnd::default()
                }),
            ),
            event(10, 2_000, login("alice", "192.0.2.7", Outcome::Failure, None)),
        ]
    }

    #[test]
    fn stores_once_and_counts_resent_events_as_duplicates() {
        let dir = Scratch::new("dedup");
        let store = EventStore::open(&dir.0).unwrap();
        let all = history();
        let first = store.append("web-1", all[..6].to_vec(), 5, 0).unwrap();
        assert_eq!((first.stored.len(), first.duplicates), (6, 0));
        // Resent after a cut: the overlap is recognised, the rest stored; a repeat
        // within one batch counts too.
        let mut again = all[4..].to_vec();
        again.push(all[9].clone());
        let second = store.append("web-1", again, 6, 0).unwrap();
        assert_eq!((second.stored.len(), second.duplicates), (4, 3));
        assert_eq!(second.last_seq, 10);
        assert_eq!(
            query(&store, |f| f.host_id = "web-1".into()),
            (1..=10).collect::<Vec<_>>()
        );
        let info = store.host("web-1").unwrap().unwrap();
        assert_eq!((info.events_stored, info.duplicates, info.last_seq), (10, 3, 10));
        assert_eq!(info.first_seen_unix_ns, 5);
        drop(store);
        // The dedup keys survive a restart.
        let store = EventStore::open(&dir.0).unwrap();
        let third = store.append("web-1", all.clone(), 7, 0).unwrap();
        assert_eq!((third.stored.len(), third.duplicates), (0, 10));
        // The same seq from another boot is another event.
        let mut other_boot = all[0].clone();
        other_boot.boot_id = "boot-b".into();
        assert_eq!(
            store
                .append("web-1", vec![other_boot], 8, 0)
                .unwrap()
                .stored
                .len(),
            1
        );
    }

    #[test]
    fn queries_use_each_index_and_every_filter() {
        let dir = Scratch::new("query");
        let store = EventStore::open(&dir.0).unwrap();
        store.append("web-1", history(), 1, 0).unwrap();
        let mut other = history()[0].clone();
        other.host_id = "db-1".into();
        store.append("db-1", vec![other], 1, 0).unwrap();

        assert_eq!(query(&store, |_| {}).len(), 11);
        assert_eq!(query(&store, |f| f.host_id = "db-1".into()), vec![1]);
        assert_eq!(query(&store, |f| f.user = "alice".into()).len(), 7);
        assert_eq!(
            query(&store, |f| {
                f.user = "alice".into();
                f.host_id = "web-1".into();
                f.kinds = vec![EventKind::LoginAttempt as i32];
            }),
            vec![1, 10]
        );
        assert_eq!(
            query(&store, |f| {
                f.user = "alice".into();
                f.set_outcome(Outcome::Failure);
            }),
            vec![10]
        );
        assert_eq!(query(&store, |f| f.remote_address = "192.0.2.7".into()), vec![10]);
        assert_eq!(query(&store, |f| f.remote_address = "10.0.0.9".into()), vec![4]);
        assert_eq!(
            query(&store, |f| {
                f.host_id = "web-1".into();
                f.session = Some(0xb);
            }),
            vec![6, 7, 8]
        );
        assert_eq!(
            query(&store, |f| {
                f.host_id = "web-1".into();
                f.session = Some(0xa);
            }),
            vec![2, 3, 4, 5, 6, 8, 9]
        );
        assert_eq!(
            query(&store, |f| {
                f.from_unix_ns = 1_002;
                f.to_unix_ns = 1_004;
            }),
            vec![3, 4]
        );
        assert_eq!(
            query(&store, |f| {
                f.host_id = "web-1".into();
                f.from_unix_ns = 1_008;
            }),
            vec![9, 10]
        );
        let filter = EventFilter {
            session: Some(0xa),
            ..EventFilter::default()
        };
        assert!(matches!(
            store.query(&filter, 10, &[]),
            Err(StoreError::SessionWithoutHost)
        ));
    }

    #[test]
    fn pages_cover_everything_once() {
        let dir = Scratch::new("pages");
        let store = EventStore::open(&dir.0).unwrap();
        store.append("web-1", history(), 1, 0).unwrap();
        for edit in [
            (|_: &mut EventFilter| {}) as fn(&mut EventFilter),
            |f| f.host_id = "web-1".into(),
            |f| f.user = "alice".into(),
        ] {
            let mut filter = EventFilter::default();
            edit(&mut filter);
            let all = seqs(&store.query(&filter, 1000, &[]).unwrap().0);
            let mut paged = Vec::new();
            let mut token = Vec::new();
            loop {
                let (page, next) = store.query(&filter, 3, &token).unwrap();
                assert!(page.len() <= 3);
                paged.extend(seqs(&page));
                if next.is_empty() {
                    break;
                }
                token = next;
            }
            assert_eq!(paged, all);
        }
        // A token from one plan does not resume another.
        let by_host = EventFilter {
            host_id: "web-1".into(),
            ..EventFilter::default()
        };
        let (_, token) = store.query(&by_host, 2, &[]).unwrap();
        let by_user = EventFilter {
            user: "alice".into(),
            ..EventFilter::default()
        };
        assert!(matches!(
            store.query(&by_user, 2, &token),
            Err(StoreError::BadPageToken)
        ));
    }

    #[test]
    fn sessions_are_summarised_with_their_tree() {
        let dir = Scratch::new("sessions");
        let store = EventStore::open(&dir.0).unwrap();
        // Arriving in two batches changes nothing.
        let all = history();
        store.append("web-1", all[..4].to_vec(), 1, 0).unwrap();
        store.append("web-1", all[4..].to_vec(), 1, 0).unwrap();
        let (summary, events, truncated) = store.session("web-1", 0xa).unwrap().unwrap();
        assert_eq!(summary.user, "alice");
        assert_eq!(summary.service, "sshd");
        assert_eq!(summary.remote_host.as_deref(), Some("127.0.0.1"));
        assert_eq!((summary.start_unix_ns, summary.end_unix_ns), (1_001, 1_008));
        assert_eq!((summary.execs, summary.connects), (2, 1));
        assert_eq!(summary.end_reason.as_deref(), Some("closed"));
        assert_eq!(summary.child_sessions, vec![0xb]);
        assert!(!truncated);
        // The parent's view holds the child's program too.
        assert_eq!(seqs(&events), vec![2, 3, 4, 5, 6, 7, 8, 9]);
        let (child, _, _) = store.session("web-1", 0xb).unwrap().unwrap();
        assert_eq!((child.parent_session, child.user.as_str()), (Some(0xa), "bob"));
        assert!(store.session("web-1", 0xc).unwrap().is_none());
        assert!(store.session("db-1", 0xa).unwrap().is_none());
    }

    #[test]
    fn retention_removes_old_events_and_their_index_entries() {
        let dir = Scratch::new("retention");
        let store = EventStore::open(&dir.0).unwrap();
        store.append("web-1", history(), 1, 0).unwrap();
        assert_eq!(store.prune_before(1_005).unwrap(), 5);
        assert_eq!(query(&store, |_| {}), vec![6, 7, 8, 9, 10]);
        assert_eq!(query(&store, |f| f.user = "alice".into()), vec![9, 10]);
        assert_eq!(
            query(&store, |f| f.remote_address = "10.0.0.9".into()),
            Vec::<u64>::new()
        );
        assert_eq!(store.oldest_event().unwrap(), Some(1_005));
        // Resent events older than the cut-off are acknowledged, not stored again.
        let appended = store.append("web-1", history(), 2, 1_005).unwrap();
        assert_eq!(
            (appended.stored.len(), appended.expired, appended.duplicates),
            (0, 5, 5)
        );
        assert_eq!(query(&store, |_| {}).len(), 5);
    }
}
