//! The event store, the only code that touches `RocksDB`: one column family for
//! events (by host, time and seq), one per index, summaries of sessions and hosts,
//! the tamper-evidence log and its checkpoints, and the alerts. Every key and
//! value encoding, with a table of all 15 column families, is in [`keys`].
//!
//! - [`append`]: an ingested batch becomes one `RocksDB` write (events,
//!   index entries, dedup keys, session and host summaries, log leaves), synced
//!   together with other hosts' batches by [`group_commit`];
//! - [`query`]: pages of events by the most selective index, session views;
//! - [`hosts`]: host records and the open-session count;
//! - [`log`]: the log's leaves, subtree hashes, proofs and signed checkpoints,
//!   and one snapshot for an audit;
//! - [`alerts`]: alerts raised and the addresses users logged in from;
//! - [`retention`]: removal by age, the only deletion.
//!
//! Append-only: the only deletion is [`EventStore::prune_before`], retention by
//! age, which is explicit, logged and counted. `RocksDB`'s TTL is not used (it
//! would delete silently during compaction).

pub mod alert_cursor;
pub mod alerts;
pub mod append;
mod group_commit;
pub mod hosts;
pub mod keys;
pub mod log;
pub mod query;
pub mod retention;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteOptions};

pub use append::Appended;
pub use query::{MAX_PAGE_BYTES, MAX_SESSION_EVENTS};

pub(crate) const EVENTS: &str = "events";
pub(crate) const BY_TIME: &str = "by_time";
pub(crate) const BY_USER: &str = "by_user";
pub(crate) const BY_SESSION: &str = "by_session";
pub(crate) const BY_REMOTE: &str = "by_remote";
pub(crate) const SEEN: &str = "seen";
pub(crate) const SESSIONS: &str = "sessions";
pub(crate) const HOSTS: &str = "hosts";
pub(crate) const META: &str = "meta";
/// The tamper-evidence log: leaf index → the leaf's canonical entry.
pub(crate) const LOG_LEAVES: &str = "log_leaves";
/// The log's complete subtrees: stored hash index → SHA-256.
pub(crate) const LOG_HASHES: &str = "log_hashes";
/// Second records with a stored record's id: leaf index → `StoredEvent`.
pub(crate) const CONFLICTS: &str = "conflicts";
/// Signed checkpoints: time · size → `SignedCheckpoint`.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// Alerts raised: id → `Alert`.
pub(crate) const ALERTS: &str = "alerts";
/// Addresses each user logged in from: user 0 address → first time.
pub(crate) const KNOWN_REMOTES: &str = "known_remotes";
/// Addresses each user logged in from, per host: host 0 user 0 address → first time.
pub(crate) const HOST_REMOTES: &str = "host_remotes";
/// Each logged event's leaf, for a store that keeps them ([`EventStore::keep_receipts_by_event`]):
/// host 0 boot 0 seq → leaf index.
pub(crate) const RECEIPTS: &str = "receipts";
/// Every column family, created at open (those a store made by an older version
/// lacks are created then); [`keys`] lays out each.
const FAMILIES: [&str; 17] = [
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
    LOG_HASHES,
    CONFLICTS,
    CHECKPOINTS,
    ALERTS,
    KNOWN_REMOTES,
    HOST_REMOTES,
    RECEIPTS,
];

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
    #[error("the tamper-evidence log: {0}; the database may be damaged")]
    Log(#[from] watchtower_tlog::ProofError),
    #[error("the stored log size is not readable; the database may be damaged")]
    LogSize,
    #[error("the stored alert cursor is not readable; the database may be damaged")]
    AlertCursor,
    #[error("a stored receipt is not readable; the database may be damaged")]
    ReceiptIndex,
    #[error(
        "{0} holds a store of an older layout (format {1}); this version keys records by the whole boot id \
         and logs canonical entries: export it with the older version and start on an empty directory"
    )]
    OldFormat(std::path::PathBuf, String),
}

/// The log's size and root now (the root of the first `size` leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    pub size: u64,
    pub root: [u8; 32],
}

pub struct EventStore {
    db: DB,
    /// The log's head; the group commit's leader takes it, so leaves are numbered
    /// in commit order.
    log: Mutex<LogHead>,
    /// One writer per host at a time, so the dedup check and the write are atomic;
    /// hosts write concurrently and share WAL syncs.
    host_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Appends of many hosts share one WAL sync ([`group_commit`]).
    group: group_commit::GroupCommit,
    /// Whether each logged event's leaf index is kept by its id ([`RECEIPTS`]).
    receipts_by_event: std::sync::atomic::AtomicBool,
}

/// A stored value, or [`StoreError::Corrupt`] naming its family.
fn decode<V: keys::StoredValue>(bytes: &[u8], family: &'static str) -> Result<V, StoreError> {
    keys::decode_value(bytes).map_err(|e| StoreError::Corrupt(e, family))
}

/// Options for a write that must be on disk before it is acknowledged.
fn synced() -> WriteOptions {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    sync
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
        match db.get_cf(meta, keys::STORE_FORMAT)? {
            Some(format) if format == keys::CURRENT_FORMAT => {}
            Some(format) => {
                return Err(StoreError::OldFormat(
                    dir.to_owned(),
                    String::from_utf8_lossy(&format).into_owned(),
                ));
            }
            None => {
                let events = db.cf_handle(EVENTS).expect("created at open");
                if db
                    .iterator_cf(events, rocksdb::IteratorMode::Start)
                    .next()
                    .is_some()
                {
                    return Err(StoreError::OldFormat(dir.to_owned(), "1".into()));
                }
                db.put_cf_opt(meta, keys::STORE_FORMAT, keys::CURRENT_FORMAT, &synced())?;
            }
        }
        let size = match db.get_cf(meta, keys::LOG_SIZE)? {
            Some(bytes) => keys::parse_log_size(&bytes).ok_or(StoreError::LogSize)?,
            None => 0,
        };
        let store = EventStore {
            db,
            log: Mutex::new(LogHead { size, root: [0; 32] }),
            host_locks: Mutex::new(HashMap::new()),
            group: group_commit::GroupCommit::default(),
            receipts_by_event: std::sync::atomic::AtomicBool::new(false),
        };
        let root = watchtower_tlog::tree::root(&store.log_hashes(), size)?;
        store.log.lock().expect("log lock").root = root;
        Ok(store)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    fn host_lock(&self, host: &str) -> Arc<Mutex<()>> {
        let mut locks = self.host_locks.lock().expect("host lock table");
        locks.entry(host.to_owned()).or_default().clone()
    }

    /// Keep a small record beside the events (the retention cut-off, ...).
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(META), name.as_bytes(), value, &synced())?;
        Ok(())
    }
}

/// Raw access for tests that play the attacker: they edit records behind the
/// store's back, as someone with the database files could.
#[cfg(test)]
impl EventStore {
    pub(crate) fn raw_get(&self, family: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.db.get_cf(self.cf(family), key).unwrap()
    }

    pub(crate) fn raw_put(&self, family: &str, key: &[u8], value: &[u8]) {
        self.db.put_cf(self.cf(family), key, value).unwrap();
    }

    pub(crate) fn raw_delete(&self, family: &str, key: &[u8]) {
        self.db.delete_cf(self.cf(family), key).unwrap();
    }
}
