//! Host records (what each agent last said and sent) and session counts.

use rocksdb::IteratorMode;
use watchtower_model::{HostInfo, SessionSummary};

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
            .put_cf(self.cf(HOSTS), keys::host_key(host), keys::encode_value(&info))?;
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

    /// Sessions open now, of `host` or every host, at most `limit` (and whether
    /// there were more): started, not ended, and of the boot the host runs now (a
    /// session of an earlier boot never got its end, it did not survive the
    /// reboot).
    pub fn open_session_summaries(
        &self,
        host: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SessionSummary>, bool), StoreError> {
        let boots: std::collections::HashMap<String, String> = self
            .hosts()?
            .into_iter()
            .map(|h| (h.host_id, h.boot_id))
            .collect();
        let prefix = host.map(keys::text_prefix).unwrap_or_default();
        let mode = if host.is_some() {
            IteratorMode::From(&prefix, rocksdb::Direction::Forward)
        } else {
            IteratorMode::Start
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(SESSIONS), mode) {
            let (_, value) = item?;
            let summary: SessionSummary = decode(&value, SESSIONS)?;
            if host.is_some_and(|h| h != summary.host_id) {
                break;
            }
            let current_boot = boots.get(&summary.host_id).is_none_or(|b| *b == summary.boot_id);
            if summary.end_unix_ns != 0 || !current_boot {
                continue;
            }
            if out.len() >= limit {
                return Ok((out, true));
            }
            out.push(summary);
        }
        Ok((out, false))
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
