//! Reading events back: pages of a filter by the most selective index, session
//! views, the full-scan baseline and the oldest event's time.

use std::collections::HashSet;

use rocksdb::{Direction, IteratorMode, ReadOptions};
use watchtower_model::{EventFilter, SessionSummary, StoredEvent};

use super::{
    BY_REMOTE, BY_SESSION, BY_TIME, BY_USER, EVENTS, EventStore, SESSIONS, StoreError, decode, keys,
};
use crate::facets;

/// Index entries looked at per query page before returning what was found (with a
/// token to go on), so a selective filter never holds a request for long.
const MAX_SCAN_PER_PAGE: usize = 100_000;
/// Encoded bytes of stored events a query page holds at most (it always holds at
/// least one): with the largest event (128 KiB) a page stays under gRPC's default
/// 4 MiB message limit, so any client and a query node's merge can read it.
pub const MAX_PAGE_BYTES: usize = 3 << 20;
/// Events a session view returns at most.
pub const MAX_SESSION_EVENTS: usize = 10_000;
/// Sessions a session tree spans at most.
const MAX_SESSION_TREE: usize = 256;

/// The index a query scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Session = 1,
    Remote = 2,
    User = 3,
    Host = 4,
    Time = 5,
}

impl EventStore {
    /// One page of events matching `filter`, oldest first, scanning the most
    /// selective index the filter allows: at most `page_size` events and
    /// [`MAX_PAGE_BYTES`] of them.
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
        let mut bytes = 0usize;
        let mut last_key: Option<Box<[u8]>> = None;
        let mut exhausted = true;
        for item in iter {
            let (key, value) = item?;
            let (stored, size): (StoredEvent, usize) = if plan == Plan::Host {
                (decode(&value, EVENTS)?, value.len())
            } else {
                let Some(pk) = keys::primary_of_index(&key, prefix.len()) else {
                    continue;
                };
                match self.db.get_cf(self.cf(EVENTS), pk)? {
                    Some(record) => (decode(&record, EVENTS)?, record.len()),
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
                bytes += size;
            }
            if events.len() >= page_size || bytes >= MAX_PAGE_BYTES || scanned >= MAX_SCAN_PER_PAGE {
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

    /// One session's summary, without its events.
    pub fn session_summary_of(&self, host: &str, session: u64) -> Result<Option<SessionSummary>, StoreError> {
        match self
            .db
            .get_cf(self.cf(SESSIONS), keys::session_key(host, session))?
        {
            Some(bytes) => Ok(Some(decode(&bytes, SESSIONS)?)),
            None => Ok(None),
        }
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

    /// The time of the oldest stored event.
    pub fn oldest_event(&self) -> Result<Option<u64>, StoreError> {
        match self.db.iterator_cf(self.cf(BY_TIME), IteratorMode::Start).next() {
            Some(item) => {
                let (key, _) = item?;
                Ok(keys::index_time(&key, 0))
            }
            None => Ok(None),
        }
    }
}
