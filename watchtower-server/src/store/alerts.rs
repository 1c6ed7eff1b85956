//! Alerts as stored, and the addresses each user logged in from, fleet-wide and
//! per host (for the new-address rule). The rules themselves are [`crate::alerts`]'s.

use rocksdb::{Direction, IteratorMode, WriteBatch};
use watchtower_model::Alert;

use super::{ALERTS, EventStore, HOST_REMOTES, KNOWN_REMOTES, StoreError, decode, keys, synced};

/// What a login's address was to its user before the login: fleet-wide (any
/// host) and on the login's host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "four independent facts, each read by name; not a state machine"
)]
pub struct RemoteNovelty {
    /// The user had not logged in from this address on any host.
    pub new_for_user: bool,
    /// The user had logged in from some address on some host.
    pub user_known: bool,
    /// The user had not logged in from this address on this host.
    pub new_on_host: bool,
    /// The user had logged in from some address on this host.
    pub user_known_on_host: bool,
}

/// A login's address to remember: its user logged in on `host` from `address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRecord {
    pub host: String,
    pub user: String,
    pub address: String,
    pub time_unix_ns: u64,
}

impl EventStore {
    /// Keep an alert (synced).
    pub fn put_alert(&self, alert: &Alert) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(ALERTS),
            keys::alert_key(alert.id),
            keys::encode_value(alert),
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

    /// What `record`'s address was to its user before this login (reads only).
    pub fn remote_novelty(&self, record: &RemoteRecord) -> Result<RemoteNovelty, StoreError> {
        let RemoteRecord {
            host, user, address, ..
        } = record;
        let new_for_user = self
            .db
            .get_cf(self.cf(KNOWN_REMOTES), keys::known_remote_key(user, address))?
            .is_none();
        let new_on_host = self
            .db
            .get_cf(self.cf(HOST_REMOTES), keys::host_remote_key(host, user, address))?
            .is_none();
        Ok(RemoteNovelty {
            new_for_user,
            user_known: !new_for_user || self.any_with_prefix(KNOWN_REMOTES, &keys::text_prefix(user))?,
            new_on_host,
            user_known_on_host: !new_on_host
                || self.any_with_prefix(HOST_REMOTES, &keys::host_user_prefix(host, user))?,
        })
    }

    /// The writes that remember `record` (fleet-wide and on its host) into `batch`;
    /// a record already kept keeps the time it was first seen.
    pub(crate) fn remote_writes(
        &self,
        record: &RemoteRecord,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        let time = keys::time_value(record.time_unix_ns);
        let fleet_key = keys::known_remote_key(&record.user, &record.address);
        if self.db.get_cf(self.cf(KNOWN_REMOTES), &fleet_key)?.is_none() {
            batch.put_cf(self.cf(KNOWN_REMOTES), fleet_key, time);
        }
        let host_key = keys::host_remote_key(&record.host, &record.user, &record.address);
        if self.db.get_cf(self.cf(HOST_REMOTES), &host_key)?.is_none() {
            batch.put_cf(self.cf(HOST_REMOTES), host_key, time);
        }
        Ok(())
    }

    /// Remember that a user logged in on a host from an address, fleet-wide and on
    /// that host, in one write. When the login raises an alert, the rules write the
    /// record with the alert instead ([`EventStore::put_alert_at`]): a crash between
    /// the two cannot leave the address known and the alert unraised.
    pub fn remember_remote_record(&self, record: &RemoteRecord) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.remote_writes(record, &mut batch)?;
        self.db.write(batch)?;
        Ok(())
    }

    /// [`EventStore::remote_novelty`], then [`EventStore::remember_remote_record`]
    /// when either record is new.
    pub fn remember_remote(
        &self,
        host: &str,
        user: &str,
        address: &str,
        time_unix_ns: u64,
    ) -> Result<RemoteNovelty, StoreError> {
        let record = RemoteRecord {
            host: host.to_owned(),
            user: user.to_owned(),
            address: address.to_owned(),
            time_unix_ns,
        };
        let novelty = self.remote_novelty(&record)?;
        if novelty.new_for_user || novelty.new_on_host {
            self.remember_remote_record(&record)?;
        }
        Ok(novelty)
    }

    /// Whether `family` holds a key starting with `prefix`.
    fn any_with_prefix(&self, family: &str, prefix: &[u8]) -> Result<bool, StoreError> {
        Ok(
            match self
                .db
                .iterator_cf(self.cf(family), IteratorMode::From(prefix, Direction::Forward))
                .next()
            {
                Some(item) => item?.0.starts_with(prefix),
                None => false,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteNovelty;
    use crate::Scratch;
    use crate::store::{EventStore, FAMILIES, HOST_REMOTES, KNOWN_REMOTES, META, keys};

    /// `[new_for_user, user_known, new_on_host, user_known_on_host]`.
    fn novelty([new_for_user, user_known, new_on_host, user_known_on_host]: [bool; 4]) -> RemoteNovelty {
        RemoteNovelty {
            new_for_user,
            user_known,
            new_on_host,
            user_known_on_host,
        }
    }

    #[test]
    fn a_users_first_login_anywhere_is_new_to_no_one() {
        let dir = Scratch::new("remotes-first");
        let store = EventStore::open(&dir.0).unwrap();
        assert_eq!(
            store.remember_remote("web-1", "alice", "10.0.0.1", 5).unwrap(),
            novelty([true, false, true, false])
        );
        // Both records, in their own families, with the first time.
        let first = keys::time_value(5).to_vec();
        assert_eq!(
            store.raw_get(KNOWN_REMOTES, &keys::known_remote_key("alice", "10.0.0.1")),
            Some(first.clone())
        );
        assert_eq!(
            store.raw_get(HOST_REMOTES, &keys::host_remote_key("web-1", "alice", "10.0.0.1")),
            Some(first)
        );
        // The same address again on the same host: nothing new, the first time kept.
        assert_eq!(
            store.remember_remote("web-1", "alice", "10.0.0.1", 9).unwrap(),
            novelty([false, true, false, true])
        );
        assert_eq!(
            store.raw_get(HOST_REMOTES, &keys::host_remote_key("web-1", "alice", "10.0.0.1")),
            Some(keys::time_value(5).to_vec())
        );
        // A user whose name extends alice's is not alice.
        assert_eq!(
            store.remember_remote("web-1", "alice2", "10.0.0.1", 10).unwrap(),
            novelty([true, false, true, false])
        );
    }

    #[test]
    fn an_address_pre_registered_through_another_host_is_still_new_on_this_one() {
        let dir = Scratch::new("remotes-hosts");
        let store = EventStore::open(&dir.0).unwrap();
        // The attacker's host A makes alice known, then pre-registers 6.6.6.6.
        store.remember_remote("host-a", "alice", "10.0.0.1", 1).unwrap();
        assert_eq!(
            store.remember_remote("host-a", "alice", "6.6.6.6", 2).unwrap(),
            novelty([true, true, true, true])
        );
        // On host B alice's first login: known fleet-wide, new to B.
        assert_eq!(
            store.remember_remote("host-b", "alice", "10.0.0.1", 3).unwrap(),
            novelty([false, true, true, false])
        );
        // Then 6.6.6.6 on B: known fleet-wide, but new for alice on B, where she is known.
        assert_eq!(
            store.remember_remote("host-b", "alice", "6.6.6.6", 4).unwrap(),
            novelty([false, true, true, true])
        );
        assert_eq!(
            store.remember_remote("host-b", "alice", "6.6.6.6", 5).unwrap(),
            novelty([false, true, false, true])
        );
        // A host whose id extends B's has its own records.
        assert_eq!(
            store.remember_remote("host-b2", "alice", "6.6.6.6", 6).unwrap(),
            novelty([false, true, true, false])
        );
    }

    #[test]
    fn a_store_made_before_the_host_records_opens_and_gains_them() {
        let dir = Scratch::new("remotes-upgrade");
        {
            // The previous layout: every family but host_remotes.
            let mut options = rocksdb::Options::default();
            options.create_if_missing(true);
            options.create_missing_column_families(true);
            let families = FAMILIES.iter().copied().filter(|f| *f != HOST_REMOTES);
            let db = rocksdb::DB::open_cf(&options, &dir.0, families).unwrap();
            db.put_cf(
                db.cf_handle(META).unwrap(),
                keys::STORE_FORMAT,
                keys::CURRENT_FORMAT,
            )
            .unwrap();
            db.put_cf(
                db.cf_handle(KNOWN_REMOTES).unwrap(),
                keys::known_remote_key("alice", "10.0.0.1"),
                keys::time_value(1),
            )
            .unwrap();
        }
        let store = EventStore::open(&dir.0).unwrap();
        // Known fleet-wide from before; the host's record starts now, no alert-worthy
        // novelty on the host (she was never seen there).
        assert_eq!(
            store.remember_remote("web-1", "alice", "10.0.0.1", 2).unwrap(),
            novelty([false, true, true, false])
        );
        assert!(
            store
                .raw_get(HOST_REMOTES, &keys::host_remote_key("web-1", "alice", "10.0.0.1"))
                .is_some()
        );
    }
}
