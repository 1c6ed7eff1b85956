//! Alerts as stored, and the addresses each user logged in from (for the
//! new-address rule). The rules themselves are [`crate::alerts`]'s.

use prost::Message as _;
use rocksdb::{Direction, IteratorMode};
use watchtower_proto::pb::Alert;

use super::{ALERTS, EventStore, KNOWN_REMOTES, StoreError, decode, keys, synced};

impl EventStore {
    /// Keep an alert (synced).
    pub fn put_alert(&self, alert: &Alert) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(ALERTS),
            keys::alert_key(alert.id),
            alert.encode_to_vec(),
            &synced(),
        )?;
        Ok(())
    }

    /// The newest `limit` alerts raised in `[from, to)`, oldest first.
    pub fn alerts(&self, from_unix_ns: u64, to_unix_ns: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(ALERTS), IteratorMode::End) {
            let (_, value) = item?;
            let alert: Alert = decode(&value, ALERTS)?;
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
                    keys::alert_id(&key).unwrap_or(0)
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
        let key = keys::known_remote_key(user, address);
        let user_prefix = keys::text_prefix(user);
        let cf = self.cf(KNOWN_REMOTES);
        if self.db.get_cf(cf, &key)?.is_some() {
            return Ok((false, true));
        }
        let known_user = match self
            .db
            .iterator_cf(cf, IteratorMode::From(&user_prefix, Direction::Forward))
            .next()
        {
            Some(item) => item?.0.starts_with(&user_prefix),
            None => false,
        };
        self.db.put_cf(cf, &key, keys::time_value(time_unix_ns))?;
        Ok((true, known_user))
    }
}
