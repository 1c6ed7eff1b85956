//! The alert rules' place in the log: the rules evaluate every stored record in
//! commit order (the log's leaf order), and this is where they stopped. An alert
//! is written together with the cursor just past the leaf that raised it, in one
//! synced write, so after a crash no alert is raised twice and no leaf is skipped.

use rocksdb::WriteBatch;
use watchtower_model::Alert;

use super::alerts::RemoteRecord;
use super::{ALERTS, EventStore, META, StoreError, keys, synced};

impl EventStore {
    /// The first leaf the alert rules have not evaluated; `None` before they ever ran.
    pub fn alert_cursor(&self) -> Result<Option<u64>, StoreError> {
        match self.db.get_cf(self.cf(META), keys::ALERT_CURSOR)? {
            Some(bytes) => keys::parse_time_value(&bytes)
                .map(Some)
                .ok_or(StoreError::AlertCursor),
            None => Ok(None),
        }
    }

    /// Move the cursor (not synced: a cursor lost in a crash only makes the rules
    /// evaluate again leaves that raised nothing).
    pub fn put_alert_cursor(&self, next_leaf: u64) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(META), keys::ALERT_CURSOR, keys::time_value(next_leaf))?;
        Ok(())
    }

    /// Keep an alert and, when it was raised by a leaf, the cursor past that leaf,
    /// and the login address it is about (`new_address`), in one synced write.
    pub fn put_alert_at(
        &self,
        alert: &Alert,
        next_leaf: Option<u64>,
        remember: Option<&RemoteRecord>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        if let Some(record) = remember {
            self.remote_writes(record, &mut batch)?;
        }
        batch.put_cf(
            self.cf(ALERTS),
            keys::alert_key(alert.id),
            keys::encode_value(alert),
        );
        if let Some(next) = next_leaf {
            batch.put_cf(self.cf(META), keys::ALERT_CURSOR, keys::time_value(next));
        }
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }
}
