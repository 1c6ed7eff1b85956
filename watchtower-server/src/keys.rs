//! How events and their indexes are laid out as `RocksDB` keys.
//!
//! Host ids, user names and addresses are NUL-free (host ids are checked by
//! watchtower-pki, the others come from C strings), so `text 0x00` is a prefix
//! no other text extends, and big-endian numbers sort like the numbers.
//!
//! | column family | key                                           | value            |
//! |---------------|-----------------------------------------------|------------------|
//! | `events`      | host 0 time seq boot                          | `StoredEvent`    |
//! | `by_time`     | time · primary key                            | empty            |
//! | `by_user`     | user 0 time · primary key                     | empty            |
//! | `by_session`  | host 0 session time · primary key             | empty            |
//! | `by_remote`   | address 0 time · primary key                  | empty            |
//! | `seen`        | host 0 boot 0 seq                             | primary key      |
//! | `sessions`    | host 0 session                                | `SessionSummary` |
//! | `hosts`       | host                                          | `HostInfo`       |
//!
//! time and seq are u64 big-endian; `boot` in a primary key is the FNV-1a hash of
//! the boot id (8 bytes), so primary keys have a fixed 24-byte tail after the host.

/// Bytes after `host 0` in a primary key.
const PRIMARY_TAIL: usize = 24;

/// The primary key of an event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrimaryKey(pub Vec<u8>);

#[must_use]
pub fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn text0(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

impl PrimaryKey {
    #[must_use]
    pub fn new(host: &str, time_unix_ns: u64, seq: u64, boot_id: &str) -> PrimaryKey {
        let mut key = Vec::with_capacity(host.len() + 1 + PRIMARY_TAIL);
        text0(&mut key, host);
        key.extend_from_slice(&time_unix_ns.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        key.extend_from_slice(&fnv1a(boot_id).to_be_bytes());
        PrimaryKey(key)
    }

    /// Parse a stored primary key back into (host, time).
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<(&str, u64)> {
        let nul = bytes.iter().position(|b| *b == 0)?;
        if bytes.len() != nul + 1 + PRIMARY_TAIL {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
