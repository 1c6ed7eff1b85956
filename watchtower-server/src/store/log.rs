//! The tamper-evidence log as stored: its leaves (written by [`super::append`]),
//! its frontier, and the signed checkpoints of its head. Signing and checking are
//! [`crate::tamper`]'s; this file only reads and writes.

use rocksdb::{Direction, IteratorMode, ReadOptions};
use watchtower_proto::pb::SignedCheckpoint;

use super::{CHECKPOINTS, EVENTS, EventStore, LOG_LEAVES, StoreError, decode, keys, synced};
use crate::merkle::Hash;

/// A stored `(key, value)` pair, as `RocksDB` hands it out.
pub type RawEntry = (Box<[u8]>, Box<[u8]>);

impl EventStore {
    /// The log's size and tree head now.
    pub fn log_head(&self) -> (u64, Hash) {
        let log = self.log.lock().expect("log lock");
        (log.size(), log.root())
    }

    /// Keep a signed checkpoint (synced).
    pub fn put_checkpoint(&self, signed: &SignedCheckpoint) -> Result<(), StoreError> {
        let (time, size) = signed
            .checkpoint
            .as_ref()
            .map_or((0, 0), |c| (c.time_unix_ns, c.size));
        self.db.put_cf_opt(
            self.cf(CHECKPOINTS),
            keys::checkpoint_key(time, size),
            prost::Message::encode_to_vec(signed),
            &synced(),
        )?;
        Ok(())
    }

    /// Every checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CHECKPOINTS), IteratorMode::Start) {
            let (_, value) = item?;
            out.push(decode(&value, CHECKPOINTS)?);
        }
        Ok(out)
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

    /// The log's leaves in index order: `(index, stored value)`, the value
    /// undecoded (see [`keys::LogLeaf::decode`]) so a damaged leaf can be named. A
    /// key that is not a leaf index reads as `u64::MAX`.
    pub fn log_leaves(&self) -> impl Iterator<Item = Result<(u64, Box<[u8]>), StoreError>> + '_ {
        self.db
            .iterator_cf(self.cf(LOG_LEAVES), IteratorMode::Start)
            .map(|item| {
                let (key, value) = item?;
                Ok((keys::log_leaf_index(&key).unwrap_or(u64::MAX), value))
            })
    }

    /// The stored bytes of the event under `primary_key`, undecoded (the log
    /// hashes them as stored).
    pub fn event_record(&self, primary_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(EVENTS), primary_key)?)
    }

    /// Every stored event record of `host` (or of every host) as `(primary key,
    /// stored bytes)`, in key order.
    pub fn event_records(
        &self,
        host: Option<&str>,
    ) -> impl Iterator<Item = Result<RawEntry, StoreError>> + '_ {
        let (lo, hi) = match host {
            Some(host) => keys::host_range(host, 0, u64::MAX),
            None => (Vec::new(), Vec::new()),
        };
        let mut read = ReadOptions::default();
        if !hi.is_empty() {
            read.set_iterate_upper_bound(hi);
        }
        self.db
            .iterator_cf_opt(self.cf(EVENTS), read, IteratorMode::From(&lo, Direction::Forward))
            .map(|item| item.map_err(StoreError::from))
    }
}
