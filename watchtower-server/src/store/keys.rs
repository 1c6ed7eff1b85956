//! Every `RocksDB` key and value encoding of the store, in one place.
//!
//! Host ids, user names, boot ids and addresses are NUL-free (host ids are checked
//! by watchtower-pki, boot ids by [`crate::facets::check`], the others come from C
//! strings), so `text 0x00` is a prefix no other text extends, and big-endian
//! numbers sort like the numbers.
//!
//! The 16 column families (names in [`super`]):
//!
//! | column family   | key                                 | value                                   | encoded by |
//! |-----------------|-------------------------------------|-----------------------------------------|------------|
//! | `events`        | host 0 time seq boot (primary key)  | `StoredEvent`                           | [`PrimaryKey::new`] |
//! | `by_time`       | time · primary key                  | empty                                   | [`index_key`] |
//! | `by_user`       | user 0 time · primary key           | empty                                   | [`index_key`], [`text_prefix`] |
//! | `by_session`    | host 0 session time · primary key   | empty                                   | [`index_key`], [`session_prefix`] |
//! | `by_remote`     | address 0 time · primary key        | empty                                   | [`index_key`], [`text_prefix`] |
//! | `seen`          | host 0 boot 0 seq                   | primary key                             | [`seen_key`] |
//! | `receipts`      | host 0 boot 0 seq                   | the event's leaf index (fleet indexers) | [`seen_key`], [`parse_leaf_index`] |
//! | `sessions`      | host 0 session                      | `SessionSummary`                        | [`session_key`] |
//! | `hosts`         | host                                | `HostInfo`                              | [`host_key`] |
//! | `meta`          | record name (`log_size`, `store_format`, `retention`, `alert_cursor`) | log size, alert cursor: u64; format: text; retention: text | [`LOG_SIZE`], [`STORE_FORMAT`], [`ALERT_CURSOR`] |
//! | `log_leaves`    | leaf index                          | the leaf's entry (canonical JSON, see watchtower-tlog) | [`log_leaf_key`] |
//! | `log_hashes`    | stored hash index (tlog layout)     | SHA-256 of a complete subtree (32)      | [`log_hash_key`] |
//! | `conflicts`     | leaf index                          | `StoredEvent`: a second record with a stored record's id | [`log_leaf_key`] |
//! | `checkpoints`   | time · size                         | `SignedCheckpoint` (a C2SP signed note) | [`checkpoint_key`] |
//! | `alerts`        | alert id                            | `Alert`                                 | [`alert_key`] |
//! | `known_remotes` | user 0 address                      | time first seen                         | [`known_remote_key`], [`time_value`] |
//! | `host_remotes`  | host 0 user 0 address               | time first seen on that host            | [`host_remote_key`], [`time_value`] |
//!
//! Every number (time, seq, session, leaf index, size, alert id) is a u64
//! big-endian; `boot` in a primary key is the whole boot id, last, so two boots
//! never share a key. The values named by type (`StoredEvent`, ...) are domain
//! types of watchtower-model, written as the `prost` encoding of their
//! watchtower-proto message ([`encode_value`], [`decode_value`]): the bytes on
//! disk are the wire contract's, and nothing past this file sees them.

use watchtower_model::{Alert, HostInfo, SessionSummary, SignedCheckpoint, StoredEvent};
use watchtower_proto::pb;

/// A value the store keeps: a domain type, written as its wire message.
pub trait StoredValue: Clone + From<Self::Message> {
    type Message: prost::Message + Default + From<Self>;
}

impl StoredValue for StoredEvent {
    type Message = pb::StoredEvent;
}

impl StoredValue for SessionSummary {
    type Message = pb::SessionSummary;
}

impl StoredValue for HostInfo {
    type Message = pb::HostInfo;
}

impl StoredValue for Alert {
    type Message = pb::Alert;
}

impl StoredValue for SignedCheckpoint {
    type Message = pb::SignedCheckpoint;
}

/// The bytes a value is stored as.
#[must_use]
pub fn encode_value<V: StoredValue>(value: &V) -> Vec<u8> {
    prost::Message::encode_to_vec(&V::Message::from(value.clone()))
}

/// A stored value read back.
pub fn decode_value<V: StoredValue>(bytes: &[u8]) -> Result<V, prost::DecodeError> {
    <V::Message as prost::Message>::decode(bytes).map(V::from)
}

/// Bytes after `host 0` in a primary key before the boot id: time and seq.
const PRIMARY_FIXED: usize = 16;

/// The primary key of an event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrimaryKey(pub Vec<u8>);

fn text0(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

impl PrimaryKey {
    #[must_use]
    pub fn new(host: &str, time_unix_ns: u64, seq: u64, boot_id: &str) -> PrimaryKey {
        let mut key = Vec::with_capacity(host.len() + 1 + PRIMARY_FIXED + boot_id.len());
        text0(&mut key, host);
        key.extend_from_slice(&time_unix_ns.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        key.extend_from_slice(boot_id.as_bytes());
        PrimaryKey(key)
    }

    /// Parse a stored primary key back into (host, time).
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<(&str, u64)> {
        let nul = bytes.iter().position(|b| *b == 0)?;
        if bytes.len() < nul + 1 + PRIMARY_FIXED {
            return None;
        }
        let host = std::str::from_utf8(&bytes[..nul]).ok()?;
        let time = u64::from_be_bytes(bytes[nul + 1..nul + 9].try_into().ok()?);
        Some((host, time))
    }
}

/// The primary-key range of one host's events in `[from, to)`.
#[must_use]
pub fn host_range(host: &str, from: u64, to: u64) -> (Vec<u8>, Vec<u8>) {
    index_range(&text_prefix(host), from, to)
}

/// An index entry: `prefix time primary-key`, where the prefix names the value
/// indexed (empty for the time index).
#[must_use]
pub fn index_key(prefix: &[u8], time_unix_ns: u64, primary: &PrimaryKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8 + primary.0.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(&time_unix_ns.to_be_bytes());
    key.extend_from_slice(&primary.0);
    key
}

/// The primary key inside an index entry with a prefix of `prefix_len` bytes.
#[must_use]
pub fn primary_of_index(entry: &[u8], prefix_len: usize) -> Option<&[u8]> {
    entry.get(prefix_len + 8..)
}

/// The prefix of a text value (a user, a remote address, a host): `text 0`.
#[must_use]
pub fn text_prefix(text: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(text.len() + 1);
    text0(&mut p, text);
    p
}

#[must_use]
pub fn session_prefix(host: &str, session: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(host.len() + 9);
    text0(&mut p, host);
    p.extend_from_slice(&session.to_be_bytes());
    p
}

/// The key of a session summary (the same bytes as the session index prefix).
#[must_use]
pub fn session_key(host: &str, session: u64) -> Vec<u8> {
    session_prefix(host, session)
}

/// The dedup key of an event: `(host, boot, seq)`.
#[must_use]
pub fn seen_key(host: &str, boot_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(host.len() + boot_id.len() + 10);
    text0(&mut key, host);
    text0(&mut key, boot_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `prefix time` bounds for a time range within one index prefix.
#[must_use]
pub fn index_range(prefix: &[u8], from: u64, to: u64) -> (Vec<u8>, Vec<u8>) {
    let mut lo = prefix.to_vec();
    lo.extend_from_slice(&from.to_be_bytes());
    let mut hi = prefix.to_vec();
    hi.extend_from_slice(&to.to_be_bytes());
    (lo, hi)
}

/// The smallest key after `key` (for resuming a scan after a page).
#[must_use]
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// The time of an index entry with a prefix of `prefix_len` bytes.
#[must_use]
pub fn index_time(entry: &[u8], prefix_len: usize) -> Option<u64> {
    be_u64(entry.get(prefix_len..prefix_len + 8)?)
}

/// A session key back into (host, session).
#[must_use]
pub fn parse_session_key(key: &[u8]) -> Option<(&str, u64)> {
    let (host, rest) = split_text(key)?;
    Some((host, be_u64(rest)?))
}

/// A dedup key back into (host, boot id, seq).
#[must_use]
pub fn parse_seen_key(key: &[u8]) -> Option<(&str, &str, u64)> {
    let (host, rest) = split_text(key)?;
    let (boot_id, rest) = split_text(rest)?;
    Some((host, boot_id, be_u64(rest)?))
}

/// The key of a host's record: its id.
#[must_use]
pub fn host_key(host: &str) -> &[u8] {
    host.as_bytes()
}

/// The `meta` record holding the log's size, rewritten with every append.
pub const LOG_SIZE: &[u8] = b"log_size";
/// The `meta` record naming the layout of this store ([`CURRENT_FORMAT`]).
pub const STORE_FORMAT: &[u8] = b"store_format";
/// This build's layout: full boot ids in primary keys, canonical leaf entries.
pub const CURRENT_FORMAT: &[u8] = b"2";
/// The `meta` record of the last retention run.
pub const RETENTION: &str = "retention";
/// The `meta` record of the alert rules' place in the log: every leaf before it
/// has been evaluated (u64, as [`time_value`]).
pub const ALERT_CURSOR: &[u8] = b"alert_cursor";

/// The key of leaf `index` of the tamper-evidence log (and of a conflict record).
#[must_use]
pub fn log_leaf_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// A leaf key back into its index.
#[must_use]
pub fn log_leaf_index(key: &[u8]) -> Option<u64> {
    be_u64(key)
}

/// The key of a stored subtree hash (its `tlog` stored hash index).
#[must_use]
pub fn log_hash_key(stored_index: u64) -> [u8; 8] {
    stored_index.to_be_bytes()
}

/// A stored leaf index (a `receipts` value).
#[must_use]
pub fn parse_leaf_index(value: &[u8]) -> Option<u64> {
    be_u64(value)
}

/// A stored log size (the `log_size` meta record).
#[must_use]
pub fn parse_log_size(value: &[u8]) -> Option<u64> {
    be_u64(value)
}

/// The key of a checkpoint: `time size`, so the newest sorts last.
#[must_use]
pub fn checkpoint_key(time_unix_ns: u64, size: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&time_unix_ns.to_be_bytes());
    key[8..].copy_from_slice(&size.to_be_bytes());
    key
}

/// A checkpoint key back into (time, size).
#[must_use]
pub fn parse_checkpoint_key(key: &[u8]) -> Option<(u64, u64)> {
    let (time, size) = key.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*time), be_u64(size)?))
}

/// The key of an alert: its id, so alerts sort in the order they were raised.
#[must_use]
pub fn alert_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// An alert key back into its id.
#[must_use]
pub fn alert_id(key: &[u8]) -> Option<u64> {
    be_u64(key)
}

/// The key of an address a user logged in from: `user 0 address`; its first
/// [`text_prefix`]`(user)` bytes are the user's prefix.
#[must_use]
pub fn known_remote_key(user: &str, address: &str) -> Vec<u8> {
    let mut key = text_prefix(user);
    key.extend_from_slice(address.as_bytes());
    key
}

/// A known-remote key back into (user, address).
#[must_use]
pub fn parse_known_remote_key(key: &[u8]) -> Option<(&str, &str)> {
    let (user, rest) = split_text(key)?;
    Some((user, std::str::from_utf8(rest).ok()?))
}

/// The prefix of one user's addresses on one host: `host 0 user 0`.
#[must_use]
pub fn host_user_prefix(host: &str, user: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(host.len() + user.len() + 2);
    text0(&mut p, host);
    text0(&mut p, user);
    p
}

/// The key of an address a user logged in from on one host:
/// `host 0 user 0 address`; its first [`host_user_prefix`] bytes are that
/// user's prefix on that host.
#[must_use]
pub fn host_remote_key(host: &str, user: &str, address: &str) -> Vec<u8> {
    let mut key = host_user_prefix(host, user);
    key.extend_from_slice(address.as_bytes());
    key
}

/// A host-remote key back into (host, user, address).
#[must_use]
pub fn parse_host_remote_key(key: &[u8]) -> Option<(&str, &str, &str)> {
    let (host, rest) = split_text(key)?;
    let (user, rest) = split_text(rest)?;
    Some((host, user, std::str::from_utf8(rest).ok()?))
}

/// A time kept as a value (`known_remotes`, `host_remotes`): u64 big-endian.
#[must_use]
pub fn time_value(time_unix_ns: u64) -> [u8; 8] {
    time_unix_ns.to_be_bytes()
}

/// A time value back into the time.
#[must_use]
pub fn parse_time_value(value: &[u8]) -> Option<u64> {
    be_u64(value)
}

/// `text 0 rest` back into (text, rest).
fn split_text(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let nul = bytes.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&bytes[..nul]).ok()?, &bytes[nul + 1..]))
}

/// Exactly 8 bytes as a big-endian u64.
fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    #[expect(clippy::many_single_char_names, reason = "five keys in order, a to e")]
    fn primary_keys_sort_by_host_then_time_then_seq() {
        let a = PrimaryKey::new("web-1", 5, 9, "b1");
        let b = PrimaryKey::new("web-1", 6, 1, "b1");
        let c = PrimaryKey::new("web-1", 6, 2, "b1");
        let d = PrimaryKey::new("web-10", 0, 0, "b1");
        let e = PrimaryKey::new("web-2", 0, 0, "b1");
        let mut keys = vec![e.clone(), c.clone(), a.clone(), d.clone(), b.clone()];
        keys.sort();
        assert_eq!(keys, vec![a, b, c, d, e]);
    }

    #[test]
    fn a_host_range_holds_only_that_host() {
        let (lo, hi) = host_range("web-1", 10, 20);
        let inside = PrimaryKey::new("web-1", 10, 1, "b");
        let last = PrimaryKey::new("web-1", 19, u64::MAX, "b");
        let at_end = PrimaryKey::new("web-1", 20, 0, "b");
        let longer_host = PrimaryKey::new("web-10", 15, 0, "b");
        assert!(lo <= inside.0 && inside.0 < hi);
        assert!(lo <= last.0 && last.0 < hi);
        assert!(at_end.0 >= hi);
        assert!(!(lo <= longer_host.0 && longer_host.0 < hi));
    }

    #[test]
    fn primary_keys_parse_back() {
        let key = PrimaryKey::new("db.example", 1_700_000_000_123_456_789, 42, "boot");
        assert_eq!(
            PrimaryKey::parse(&key.0),
            Some(("db.example", 1_700_000_000_123_456_789))
        );
        assert_eq!(PrimaryKey::parse(b"nohost"), None);
        assert_eq!(PrimaryKey::parse(b"h\0short"), None);
    }

    #[test]
    fn boot_ids_with_equal_fnv_hashes_have_different_keys() {
        // FNV-1a 64 collides on these two (the old key layout hashed the boot id).
        let (a, b) = ("8yn0iYCKYHlIj4-BwPqk", "GReLUrM4wMqfg9yzV3KQ");
        assert_ne!(PrimaryKey::new("h", 1, 2, a), PrimaryKey::new("h", 1, 2, b));
    }

    #[test]
    fn index_entries_carry_their_primary_key_and_sort_by_time() {
        let pk = PrimaryKey::new("web-1", 7, 3, "b");
        let prefix = text_prefix("alice");
        let entry = index_key(&prefix, 7, &pk);
        assert_eq!(primary_of_index(&entry, prefix.len()), Some(pk.0.as_slice()));
        let (lo, hi) = index_range(&prefix, 7, 8);
        assert!(lo <= entry && entry < hi);
        // A user whose name extends another's never falls in its range.
        let other = index_key(&text_prefix("alice2"), 7, &pk);
        let (lo, hi) = index_range(&prefix, 0, u64::MAX);
        assert!(!(lo <= other && other < hi));
        let later = index_key(&prefix, 8, &PrimaryKey::new("a", 0, 0, "b"));
        assert!(entry < later);
    }

    #[test]
    fn seen_keys_differ_by_boot_and_seq() {
        assert_ne!(seen_key("h", "b1", 1), seen_key("h", "b2", 1));
        assert_ne!(seen_key("h", "b1", 1), seen_key("h", "b1", 2));
        assert_ne!(seen_key("h", "b11", 1), seen_key("h1", "b1", 1));
    }

    #[test]
    fn successor_is_the_next_key() {
        let key = b"abc".to_vec();
        let next = successor(&key);
        assert!(next > key);
        assert!(next < b"abd".to_vec());
    }

    /// Texts as the store sees them: NUL-free.
    fn text() -> impl Strategy<Value = String> {
        "[^\\x00]{0,24}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn primary_keys_round_trip_and_sort_like_host_time_seq(
            a in (text(), any::<u64>(), any::<u64>()),
            b in (text(), any::<u64>(), any::<u64>()),
            boot in text(),
        ) {
            let ka = PrimaryKey::new(&a.0, a.1, a.2, &boot);
            prop_assert_eq!(PrimaryKey::parse(&ka.0), Some((a.0.as_str(), a.1)));
            let kb = PrimaryKey::new(&b.0, b.1, b.2, &boot);
            let by_fields = (text_prefix(&a.0), a.1, a.2).cmp(&(text_prefix(&b.0), b.1, b.2));
            prop_assert_eq!(ka.cmp(&kb), by_fields);
        }

        #[test]
        fn index_entries_round_trip_and_stay_in_their_range(
            value in text(), time in any::<u64>(), host in text(), seq in any::<u64>(), other in text(),
        ) {
            let pk = PrimaryKey::new(&host, time, seq, "boot");
            for prefix in [Vec::new(), text_prefix(&value), session_prefix(&host, seq)] {
                let entry = index_key(&prefix, time, &pk);
                prop_assert_eq!(primary_of_index(&entry, prefix.len()), Some(pk.0.as_slice()));
                prop_assert_eq!(index_time(&entry, prefix.len()), Some(time));
                let (lo, hi) = index_range(&prefix, 0, u64::MAX);
                prop_assert!(lo <= entry && (entry < hi || time == u64::MAX));
            }
            // Another text's entries never fall in this text's range.
            if other != value {
                let entry = index_key(&text_prefix(&other), time, &pk);
                let (lo, hi) = index_range(&text_prefix(&value), 0, u64::MAX);
                prop_assert!(!(lo <= entry && entry < hi));
            }
        }

        #[test]
        fn session_and_seen_keys_round_trip(host in text(), boot in text(), n in any::<u64>()) {
            let session = session_key(&host, n);
            prop_assert_eq!(parse_session_key(&session), Some((host.as_str(), n)));
            let seen = seen_key(&host, &boot, n);
            prop_assert_eq!(parse_seen_key(&seen), Some((host.as_str(), boot.as_str(), n)));
            prop_assert_eq!(std::str::from_utf8(host_key(&host)), Ok(host.as_str()));
        }

        #[test]
        fn log_keys_round_trip(index in any::<u64>(), size in any::<u64>()) {
            prop_assert_eq!(log_leaf_index(&log_leaf_key(index)), Some(index));
            prop_assert_eq!(parse_log_size(&size.to_be_bytes()), Some(size));
            prop_assert_eq!(log_hash_key(index), index.to_be_bytes());
        }

        #[test]
        fn boots_whose_hashes_would_collide_have_their_own_keys(
            host in text(), time in any::<u64>(), seq in any::<u64>(), a in text(), b in text(),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(PrimaryKey::new(&host, time, seq, &a), PrimaryKey::new(&host, time, seq, &b));
        }

        #[test]
        fn checkpoint_alert_and_remote_keys_round_trip(
            time in any::<u64>(), size in any::<u64>(), later in any::<u64>(),
            user in text(), address in text(),
        ) {
            prop_assert_eq!(parse_checkpoint_key(&checkpoint_key(time, size)), Some((time, size)));
            // Checkpoints sort by time first: the newest is last.
            prop_assert_eq!(checkpoint_key(time, size).cmp(&checkpoint_key(later, 0)), (time, size).cmp(&(later, 0)));
            prop_assert_eq!(alert_id(&alert_key(size)), Some(size));
            prop_assert_eq!(alert_key(time).cmp(&alert_key(later)), time.cmp(&later));
            let key = known_remote_key(&user, &address);
            prop_assert!(key.starts_with(&text_prefix(&user)));
            prop_assert_eq!(parse_known_remote_key(&key), Some((user.as_str(), address.as_str())));
            prop_assert_eq!(parse_time_value(&time_value(time)), Some(time));
        }

        #[test]
        fn host_remote_keys_round_trip_and_keep_to_their_host_and_user(
            host in text(), user in text(), address in text(), other in text(),
        ) {
            let key = host_remote_key(&host, &user, &address);
            let prefix = host_user_prefix(&host, &user);
            prop_assert!(key.starts_with(&prefix));
            prop_assert_eq!(
                parse_host_remote_key(&key),
                Some((host.as_str(), user.as_str(), address.as_str()))
            );
            // Another host's or another user's addresses never share the prefix.
            if other != host {
                prop_assert!(!host_remote_key(&other, &user, &address).starts_with(&prefix));
            }
            if other != user {
                prop_assert!(!host_remote_key(&host, &other, &address).starts_with(&prefix));
            }
        }
    }
}
