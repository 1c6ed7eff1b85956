//! Retention by age, the store's only deletion: explicit, synced, counted.

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use watchtower_model::StoredEvent;

use super::append::index_entries;
use super::keys::{self, PrimaryKey};
use super::{EVENTS, EventStore, RECEIPTS, SEEN, StoreError, decode, synced};

impl EventStore {
    /// Remove every event older than `cutoff_unix_ns` with its index entries and
    /// dedup keys (retention by age). Returns how many were removed; each batch is
    /// synced.
    pub fn prune_before(&self, cutoff_unix_ns: u64) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        let by_event = self.receipts_by_event.load(std::sync::atomic::Ordering::Relaxed);
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
                        let seen = keys::seen_key(&host, &event.boot_id, event.seq);
                        if by_event {
                            batch.delete_cf(self.cf(RECEIPTS), &seen);
                        }
                        batch.delete_cf(self.cf(SEEN), seen);
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
                self.db.write_opt(batch, &synced())?;
                removed += n;
            }
        }
        Ok(removed)
    }
}
