//! The tamper-evidence log as stored: its leaves' entries (written by
//! [`super::append`]), the hash of every complete subtree in `tlog`'s stored-hash
//! layout (so roots and proofs are a few reads), the conflict records, and the
//! signed checkpoints. Signing is [`crate::tamper`]'s; this file reads and writes.

use std::collections::HashMap;

use rocksdb::{DB, IteratorMode, SnapshotWithThreadMode};
use watchtower_model::{Receipt, SignedCheckpoint, StoredEvent};
use watchtower_tlog::tlog_tiles::{self, Hash, HashReader};
use watchtower_tlog::{LeafEntry, tree};

use super::keys::{self, PrimaryKey};
use super::{
    CHECKPOINTS, CONFLICTS, EVENTS, EventStore, LOG_HASHES, LOG_LEAVES, LogHead, META, RECEIPTS, SEEN,
    StoreError, decode, synced,
};

/// Leaves served per [`EventStore::log_entries`] call at most.
pub const MAX_ENTRIES: u32 = 1000;

/// The stored subtree hashes, read through `RocksDB`, with the hashes of a write
/// not yet committed laid over them.
pub(super) struct LogHashes<'a> {
    store: &'a EventStore,
    pub(super) pending: HashMap<u64, Hash>,
}

impl HashReader for LogHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let missing = || tlog_tiles::Error::IndexesNotInTree;
        let cf = self.store.cf(LOG_HASHES);
        let keys: Vec<[u8; 8]> = indexes.iter().map(|i| keys::log_hash_key(*i)).collect();
        let stored = self
            .store
            .db
            .multi_get_cf(keys.iter().map(|k| (cf, k.as_slice())));
        indexes
            .iter()
            .zip(stored)
            .map(|(index, stored)| {
                if let Some(hash) = self.pending.get(index) {
                    return Ok(*hash);
                }
                let bytes = stored
                    .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?
                    .ok_or_else(missing)?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map(Hash)
                    .map_err(|_| missing())
            })
            .collect()
    }
}

/// One leaf as served: its entry and the record it names (absent when removed).
pub struct ServedEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    pub record: Option<StoredEvent>,
}

impl EventStore {
    pub(super) fn log_hashes(&self) -> LogHashes<'_> {
        LogHashes {
            store: self,
            pending: HashMap::new(),
        }
    }

    /// The log's size and root now.
    pub fn log_head(&self) -> LogHead {
        *self.log.lock().expect("log lock")
    }

    /// The proof that leaf `index` is in the tree of `size` leaves (`size` at most
    /// the log's).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let now = self.log_head().size;
        if size > now {
            return Err(watchtower_tlog::ProofError::OutOfRange {
                index: size,
                size: now,
            }
            .into());
        }
        Ok(tree::prove_inclusion(&self.log_hashes(), size, index)?)
    }

    /// The proof that the tree of `old` leaves is a prefix of the tree of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let now = self.log_head().size;
        if new > now {
            return Err(watchtower_tlog::ProofError::OutOfRange {
                index: new,
                size: now,
            }
            .into());
        }
        Ok(tree::prove_consistency(&self.log_hashes(), old, new)?)
    }

    /// Append a retention cut-off to the log (before anything is removed), so
    /// every removal is announced in the log itself. Returns the log's new head.
    pub fn log_retention(&self, cutoff_unix_ns: u64, now_unix_ns: u64) -> Result<LogHead, StoreError> {
        let entry = LeafEntry::Retention {
            cutoff_unix_ns,
            time_unix_ns: now_unix_ns,
        };
        let mut batch = rocksdb::WriteBatch::default();
        let mut log = self.log.lock().expect("log lock");
        let head = self.append_leaves(&mut batch, log.size, vec![entry.encode()])?;
        self.db.write_opt(batch, &synced())?;
        *log = head;
        Ok(head)
    }

    /// Put `entries` as leaves `first..` into `batch`: the entries, the subtree
    /// hashes they complete, and the new size. Returns the head after them.
    pub(super) fn append_leaves(
        &self,
        batch: &mut rocksdb::WriteBatch,
        first: u64,
        entries: Vec<Vec<u8>>,
    ) -> Result<LogHead, StoreError> {
        let mut hashes = self.log_hashes();
        let mut size = first;
        for entry in entries {
            let new = tree::hashes_to_store(&hashes, size, tlog_tiles::record_hash(&entry))?;
            for (stored_index, hash) in new {
                batch.put_cf(self.cf(LOG_HASHES), keys::log_hash_key(stored_index), hash.0);
                hashes.pending.insert(stored_index, hash);
            }
            batch.put_cf(self.cf(LOG_LEAVES), keys::log_leaf_key(size), entry);
            size += 1;
        }
        batch.put_cf(self.cf(META), keys::LOG_SIZE, size.to_be_bytes());
        let root = tree::root(&hashes, size)?;
        Ok(LogHead { size, root })
    }

    /// Keep a signed checkpoint (synced).
    pub fn put_checkpoint(&self, signed: &SignedCheckpoint) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CHECKPOINTS),
            keys::checkpoint_key(signed.time_unix_ns, signed.size),
            keys::encode_value(signed),
            &synced(),
        )?;
        Ok(())
    }

    /// The newest checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        match self
            .db
            .iterator_cf(self.cf(CHECKPOINTS), IteratorMode::End)
            .next()
        {
            Some(item) => {
                let (_, value) = item?;
                Ok(Some(decode(&value, CHECKPOINTS)?))
            }
            None => Ok(None),
        }
    }

    /// Leaves `start..start + count` (at most [`MAX_ENTRIES`]) with their records.
    pub fn log_entries(&self, start: u64, count: u32) -> Result<Vec<ServedEntry>, StoreError> {
        let count = if count == 0 {
            MAX_ENTRIES
        } else {
            count.min(MAX_ENTRIES)
        };
        let end = start.saturating_add(u64::from(count)).min(self.log_head().size);
        let snapshot = self.db.snapshot();
        let view = AuditView {
            store: self,
            snapshot,
        };
        (start..end)
            .map(|index| {
                let entry = view.leaf(index)?.unwrap_or_default();
                let record = view
                    .record_of(index, &entry)?
                    .map(|bytes| decode(&bytes, EVENTS))
                    .transpose()?;
                Ok(ServedEntry { index, entry, record })
            })
            .collect()
    }

    /// From now on keep each logged event's leaf by its id, so that
    /// [`EventStore::receipts_of`] can answer later (a fleet indexer: its agents'
    /// Acks come from a front door, before the event is logged).
    pub fn keep_receipts_by_event(&self) {
        self.receipts_by_event
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The receipts of `host`'s events `(boot, seq)` that are logged and kept by
    /// event; those that are not are left out.
    pub fn receipts_of(&self, host: &str, events: &[(String, u64)]) -> Result<Vec<Receipt>, StoreError> {
        let snapshot = self.db.snapshot();
        let keys: Vec<Vec<u8>> = events
            .iter()
            .map(|(boot, seq)| keys::seen_key(host, boot, *seq))
            .collect();
        let leaves = snapshot.multi_get_cf(keys.iter().map(|k| (self.cf(RECEIPTS), k.as_slice())));
        let primaries = snapshot.multi_get_cf(keys.iter().map(|k| (self.cf(SEEN), k.as_slice())));
        let mut receipts = Vec::new();
        for (((boot, seq), leaf), primary) in events.iter().zip(leaves).zip(primaries) {
            let (Some(leaf), Some(primary)) = (leaf?, primary?) else {
                continue;
            };
            let leaf_index = keys::parse_leaf_index(&leaf).ok_or(StoreError::ReceiptIndex)?;
            let Some(bytes) = snapshot.get_cf(self.cf(EVENTS), &primary)? else {
                continue;
            };
            let stored: StoredEvent = decode(&bytes, EVENTS)?;
            receipts.push(Receipt {
                seq: *seq,
                leaf_index,
                record_sha256: stored.record_sha256().to_vec(),
                conflict: false,
                boot_id: boot.clone(),
            });
        }
        Ok(receipts)
    }

    /// One consistent view of the whole store, for an audit.
    pub fn audit_view(&self) -> AuditView<'_> {
        AuditView {
            store: self,
            snapshot: self.db.snapshot(),
        }
    }
}

/// The store as it was at one instant.
pub struct AuditView<'a> {
    store: &'a EventStore,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

/// A stored `(key, value)` pair, as `RocksDB` hands it out.
pub type RawEntry = (Box<[u8]>, Box<[u8]>);

impl AuditView<'_> {
    fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshot
            .get_cf(self.store.cf(LOG_LEAVES), keys::log_leaf_key(index))?)
    }

    /// The stored bytes of the record leaf `index` (with `entry`) names.
    pub fn record_of(&self, index: u64, entry: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match LeafEntry::decode(entry) {
            Ok(LeafEntry::Record { id, .. }) => self.snapshot.get_cf(
                self.store.cf(EVENTS),
                PrimaryKey::new(&id.host_id, id.time_unix_ns, id.seq, &id.boot_id).0,
            )?,
            Ok(LeafEntry::Conflict { .. }) => self
                .snapshot
                .get_cf(self.store.cf(CONFLICTS), keys::log_leaf_key(index))?,
            _ => None,
        })
    }

    /// The log's size as stored.
    pub fn log_size(&self) -> Result<u64, StoreError> {
        match self.snapshot.get_cf(self.store.cf(META), keys::LOG_SIZE)? {
            Some(bytes) => keys::parse_log_size(&bytes).ok_or(StoreError::LogSize),
            None => Ok(0),
        }
    }

    /// Every leaf in index order: `(index, entry)`; a key that is not a leaf index
    /// reads as `u64::MAX`.
    pub fn leaves(&self) -> impl Iterator<Item = Result<(u64, Box<[u8]>), StoreError>> + '_ {
        self.snapshot
            .iterator_cf(self.store.cf(LOG_LEAVES), IteratorMode::Start)
            .map(|item| {
                let (key, value) = item?;
                Ok((keys::log_leaf_index(&key).unwrap_or(u64::MAX), value))
            })
    }

    /// Every checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .snapshot
            .iterator_cf(self.store.cf(CHECKPOINTS), IteratorMode::Start)
        {
            let (_, value) = item?;
            out.push(decode(&value, CHECKPOINTS)?);
        }
        Ok(out)
    }

    /// Every stored event record as `(primary key, stored bytes)`, in key order.
    pub fn event_records(&self) -> impl Iterator<Item = Result<RawEntry, StoreError>> + '_ {
        self.snapshot
            .iterator_cf(self.store.cf(EVENTS), IteratorMode::Start)
            .map(|item| item.map_err(StoreError::from))
    }
}
