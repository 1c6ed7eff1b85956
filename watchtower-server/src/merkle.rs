//! The tamper-evidence log's hashing: an append-only Merkle tree in the style of
//! RFC 9162 (certificate transparency). Leaves and interior nodes are hashed with
//! different prefixes, so no leaf can pose as a node:
//!
//! - leaf = SHA-256(0x00 ‖ primary key ‖ stored record)
//! - node = SHA-256(0x01 ‖ left ‖ right)
//!
//! The tree over `n` leaves splits at the largest power of two below `n`
//! (RFC 9162 §2.1.1). [`Frontier`] keeps only the roots of the perfect subtrees
//! (at most 64 hashes), enough to append and to compute the tree head.

use ring::digest::{Context, SHA256, digest};

pub type Hash = [u8; 32];

fn finish(context: Context) -> Hash {
    context.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The leaf hash of a stored record under its primary key. Primary keys are
/// self-delimiting (`host 0` then a fixed tail), so the concatenation is unambiguous.
#[must_use]
pub fn leaf_hash(primary_key: &[u8], record: &[u8]) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[0]);
    context.update(primary_key);
    context.update(record);
    finish(context)
}

#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[1]);
    context.update(left);
    context.update(right);
    finish(context)
}

/// The head of an empty tree: SHA-256 of nothing.
#[must_use]
pub fn empty_root() -> Hash {
    digest(&SHA256, b"")
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The right edge of the tree: the roots of its perfect subtrees, largest (leftmost)
/// first; their sizes are the set bits of `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the stored log frontier is damaged ({0} bytes)")]
pub struct DamagedFrontier(pub usize);

impl Frontier {
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing 1 bit is a perfect subtree of the same height to merge with.
        while size & 1 == 1 {
            let left = self.peaks.pop().expect("a set bit has its peak");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The tree head (RFC 9162 MTH) over every leaf pushed.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }

    /// `size` (8 bytes, big-endian) then the peaks.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.peaks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for peak in &self.peaks {
            out.extend_from_slice(peak);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Frontier, DamagedFrontier> {
        let damaged = || DamagedFrontier(bytes.len());
        let (size, rest) = bytes.split_first_chunk::<8>().ok_or_else(damaged)?;
        let size = u64::from_be_bytes(*size);
        if rest.len() != 32 * size.count_ones() as usize {
            return Err(damaged());
        }
        let peaks = rest
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunks"))
            .collect();
        Ok(Frontier { size, peaks })
    }
}

/// RFC 9162's recursive definition, for checking [`Frontier`] against.
#[cfg(test)]
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            // The largest power of two below n.
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("h\0{i}").as_bytes(), &[i as u8]))
            .collect()
    }

    #[test]
    fn the_frontier_root_is_the_rfc_9162_tree_head_for_every_size() {
        let all = leaves(130);
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.size(), i as u64 + 1);
            assert_eq!(frontier.root(), reference_root(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn rfc_9162_split_and_prefixes() {
        let l = leaves(3);
        // MTH(3) = H(1 ‖ H(1 ‖ l0 ‖ l1) ‖ l2): the split is at 2.
        assert_eq!(reference_root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        // The empty tree head is SHA-256("") (e3b0c442...).
        assert_eq!(empty_root()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_ne!(leaf_hash(b"a", b"b"), node_hash(&[0; 32], &[0; 32]));
    }

    #[test]
    fn one_changed_leaf_changes_the_root() {
        let mut all = leaves(37);
        let before = reference_root(&all);
        all[20][0] ^= 1;
        assert_ne!(reference_root(&all), before);
    }

    #[test]
    fn the_frontier_round_trips_and_damage_is_refused() {
        let mut frontier = Frontier::default();
        for leaf in leaves(11) {
            frontier.push(leaf);
        }
        let bytes = frontier.encode();
        assert_eq!(bytes.len(), 8 + 32 * 3);
        assert_eq!(Frontier::decode(&bytes).unwrap(), frontier);
        assert_eq!(Frontier::decode(&bytes[..40]), Err(DamagedFrontier(40)));
        assert!(Frontier::decode(&[1]).is_err());
    }
}
