//! Host records (what each agent last said and sent) and session counts.

use prost::Message as _;
use rocksdb::IteratorMode;
use watchtower_proto::pb::{HostInfo, SessionSummary};

use super::{EventStore, HOSTS, SESSIONS, StoreError, decode, keys};

impl EventStore {
    /// A host's record.
    pub fn host(&self, host: &str) -> Result<Option<HostInfo>, StoreError> {
        self.db
            .get_cf(self.cf(HOSTS), keys::host_key(host))?
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
            .put_cf(self.cf(HOSTS), keys::host_key(host), info.encode_to_vec())?;
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

    /// Sessions started and not ended (for the active-sessions gauge at start).
    pub fn open_sessions(&self) -> Result<u64, StoreError> {
        let mut open = 0;
        for item in self.db.iterator_cf(self.cf(SESSIONS), IteratorMode::Start) {
            let (_, value) = item?;
            open += u64::from(decode::<SessionSummary>(&value, SESSIONS)?.end_unix_ns == 0);
        }
        Ok(open)
    }
}
