//! The RFC 9162 tree over the leaves: roots, inclusion proofs (leaf `index` in
//! the tree of `size` leaves) and consistency proofs (the tree of `old` leaves
//! is a prefix of the tree of `new` leaves), in `tlog_tiles`' stored-hash
//! layout: every complete subtree's hash is stored once, at
//! [`tlog_tiles::stored_hash_index`], so any root or proof is a few reads.

pub use tlog_tiles::{HashReader, stored_hash_index};

use crate::Hash;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("the inclusion proof of leaf {index} in the tree of {size} leaves does not verify")]
    Inclusion { index: u64, size: u64 },
    #[error(
        "the tree of {new} leaves does not extend the tree of {old} leaves: the log was rewritten or forked"
    )]
    Consistency { old: u64, new: u64 },
    #[error("the log shrank from {old} to {new} leaves: it was cut back or rolled back")]
    Shrank { old: u64, new: u64 },
    #[error("leaf {index} is not in a tree of {size} leaves")]
    OutOfRange { index: u64, size: u64 },
    #[error("reading the tree's hashes: {0}")]
    Read(String),
}

fn read(e: &tlog_tiles::Error) -> ProofError {
    ProofError::Read(e.to_string())
}

fn hashes(proof: &[[u8; 32]]) -> Vec<Hash> {
    proof.iter().copied().map(Hash).collect()
}

/// The root of the first `size` leaves.
pub fn root<R: HashReader>(reader: &R, size: u64) -> Result<[u8; 32], ProofError> {
    tlog_tiles::tree_hash(size, reader)
        .map(|h| h.0)
        .map_err(|e| read(&e))
}

/// What to store when leaf `index` (the tree's size before it) with `leaf_hash`
/// is appended: `(stored hash index, hash)` pairs.
pub fn hashes_to_store<R: HashReader>(
    reader: &R,
    index: u64,
    leaf_hash: Hash,
) -> Result<Vec<(u64, Hash)>, ProofError> {
    let first = stored_hash_index(0, index);
    let new = tlog_tiles::stored_hashes_for_record_hash(index, leaf_hash, reader).map_err(|e| read(&e))?;
    Ok((first..).zip(new).collect())
}

pub fn prove_inclusion<R: HashReader>(
    reader: &R,
    size: u64,
    index: u64,
) -> Result<Vec<[u8; 32]>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let proof = tlog_tiles::prove_record(size, index, reader).map_err(|e| read(&e))?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new`.
pub fn prove_consistency<R: HashReader>(reader: &R, old: u64, new: u64) -> Result<Vec<[u8; 32]>, ProofError> {
    if old > new {
        return Err(ProofError::Shrank { old, new });
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let proof = tlog_tiles::prove_tree(new, old, reader).map_err(|e| read(&e))?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// Check that leaf `index` hashing to `leaf_hash` is in the tree of `size` leaves
/// with `root`.
pub fn check_inclusion(
    proof: &[[u8; 32]],
    size: u64,
    root: [u8; 32],
    index: u64,
    leaf_hash: [u8; 32],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    tlog_tiles::check_record(&hashes(proof), size, Hash(root), index, Hash(leaf_hash))
        .map_err(|_| ProofError::Inclusion { index, size })
}

/// Check that the tree `(old, old_root)` is a prefix of `(new, new_root)`.
pub fn check_consistency(
    proof: &[[u8; 32]],
    old: u64,
    old_root: [u8; 32],
    new: u64,
    new_root: [u8; 32],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Shrank { old, new });
    }
    let consistent = match old {
        0 => true,
        _ if old == new => old_root == new_root && proof.is_empty(),
        _ => tlog_tiles::check_tree(&hashes(proof), new, Hash(new_root), old, Hash(old_root)).is_ok(),
    };
    if consistent {
        Ok(())
    } else {
        Err(ProofError::Consistency { old, new })
    }
}

/// A whole log in memory: what an auditor rebuilds from an export, and tests.
#[derive(Default)]
pub struct MemoryLog {
    stored: Vec<Hash>,
    size: u64,
}

impl HashReader for MemoryLog {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.stored
                    .get(*i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryLog {
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf_hash: Hash) {
        let new = hashes_to_store(self, self.size, leaf_hash).expect("earlier hashes are in memory");
        self.stored.extend(new.into_iter().map(|(_, h)| h));
        self.size += 1;
    }

    #[must_use]
    pub fn root(&self) -> [u8; 32] {
        self.root_at(self.size)
    }

    #[must_use]
    pub fn root_at(&self, size: u64) -> [u8; 32] {
        root(self, size.min(self.size)).expect("hashes are in memory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        tlog_tiles::record_hash(&i.to_be_bytes())
    }

    fn log(n: u64) -> MemoryLog {
        let mut log = MemoryLog::default();
        for i in 0..n {
            log.push(leaf(i));
        }
        log
    }

    /// RFC 9162 §2.1.1, recursively.
    fn reference_root(leaves: &[Hash]) -> [u8; 32] {
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH.0,
            1 => leaves[0].0,
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                tlog_tiles::node_hash(
                    Hash(reference_root(&leaves[..k])),
                    Hash(reference_root(&leaves[k..])),
                )
                .0
            }
        }
    }

    #[test]
    fn roots_are_rfc_9162_at_every_size() {
        let all: Vec<Hash> = (0..70).map(leaf).collect();
        let log = log(70);
        for n in 0..=70 {
            assert_eq!(log.root_at(n), reference_root(&all[..n as usize]), "size {n}");
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_leaf_does_not() {
        let log = log(33);
        for size in 1..=33 {
            let root = log.root_at(size);
            for index in 0..size {
                let proof = prove_inclusion(&log, size, index).unwrap();
                check_inclusion(&proof, size, root, index, leaf(index).0).unwrap();
                assert_eq!(
                    check_inclusion(&proof, size, root, index, leaf(index + 1).0),
                    Err(ProofError::Inclusion { index, size })
                );
            }
        }
        assert!(prove_inclusion(&log, 3, 3).is_err());
    }

    #[test]
    fn consistency_holds_for_prefixes_and_fails_for_forks_and_shrinking() {
        let log = log(40);
        for old in 0..=40 {
            for new in old..=40 {
                let proof = prove_consistency(&log, old, new).unwrap();
                check_consistency(&proof, old, log.root_at(old), new, log.root_at(new)).unwrap();
            }
        }
        // A fork: the same size, another leaf 5.
        let mut fork = MemoryLog::default();
        for i in 0..40 {
            fork.push(leaf(if i == 5 { 999 } else { i }));
        }
        let proof = prove_consistency(&fork, 10, 40).unwrap();
        assert_eq!(
            check_consistency(&proof, 10, log.root_at(10), 40, fork.root()),
            Err(ProofError::Consistency { old: 10, new: 40 })
        );
        assert_eq!(
            check_consistency(&[], 20, log.root_at(20), 20, fork.root_at(20)),
            Err(ProofError::Consistency { old: 20, new: 20 })
        );
        assert_eq!(
            check_consistency(&[], 20, log.root_at(20), 10, log.root_at(10)),
            Err(ProofError::Shrank { old: 20, new: 10 })
        );
    }
}
