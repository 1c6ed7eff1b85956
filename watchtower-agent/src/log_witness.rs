//! The agent as a witness of the server's tamper-evidence log. Every Ack carries
//! a receipt per stored event (its leaf index and record hash); the agent checks
//! that each names an event of the batch, rebuilds the leaf of one of them,
//! chosen at random (so a server cannot tell which it must log honestly), from
//! its own event's id, and keeps it. At intervals it asks the server (`Witness`)
//! for the latest signed checkpoint, a proof that it extends the last checkpoint
//! the agent verified, and proofs that the kept receipts' leaves are in it. Once
//! a checkpoint is verified, consistency proofs cover every leaf under it, so a
//! receipt is proven once. The last verified checkpoint is also written as a
//! plain signed note to `<state_dir>/log-witness.checkpoint`, for
//! `watchtowerctl verify --witness`. What it finds wrong is counted by kind and reported in every health
//! record (and so raised as a `log_witness` alert by an honest server):
//!
//! | finding         | what the server did                                      |
//! |-----------------|----------------------------------------------------------|
//! | `rewound`       | served a log smaller than a checkpoint the agent verified (rolled back, cut) |
//! | `forked`        | served a log that does not extend it (rewritten)         |
//! | `bad_signature` | served a checkpoint the pinned key did not sign          |
//! | `key_changed`   | names another checkpoint key than the pinned one         |
//! | `not_included`  | cannot prove a receipt's leaf (the record was rewritten or removed) |
//! | `bad_receipt`   | gave a receipt for an event the batch did not hold       |
//!
//! After a finding the agent keeps the checkpoint it trusted and checks no more
//! of this server's log (every later checkpoint would repeat the finding) until
//! its state file, `<state_dir>/log-witness.json`, is removed by an operator who
//! has looked. The key is pinned by configuration (`server.checkpoint_key`), or
//! else the first key the server names is kept (trust on first use, logged).

use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasher as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use watchtower_proto::pb::{EventRef, Receipt, WitnessReply, WitnessRequest};
use watchtower_tlog::{CheckpointVerifier, LeafEntry, RecordId, TreeHead, hex, tree, unhex};

use crate::event::LogWitnessHealth;

/// Receipts waiting for a checkpoint, at most; beyond it the oldest are dropped
/// unchecked (counted): consistency proofs still cover their leaves.
const MAX_PENDING: usize = 10_000;
/// Leaves proven per round, at most (the server's limit).
pub const LEAVES_PER_ROUND: usize = 1000;

/// What the agent keeps between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The key checkpoints must be signed with.
    verifier_key: Option<String>,
    /// The last checkpoint verified: its size, root and signed note.
    checkpoint: Option<Kept>,
    /// Receipts not yet proven: (leaf index, leaf hash).
    pending: VecDeque<(u64, String)>,
    /// Events acknowledged by a fleet's front door, whose receipts are asked for
    /// once their shard's indexer has logged them.
    #[serde(default)]
    awaiting: VecDeque<Awaited>,
    receipts_verified: u64,
    receipts_dropped: u64,
    findings: BTreeMap<String, u64>,
    last_finding: String,
    /// Set by the first finding: the log is no longer checked.
    broken: bool,
}

/// An event acknowledged before it was logged (`Ack.receipts_later`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Awaited {
    host_id: String,
    boot_id: String,
    seq: u64,
    time_unix_ns: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    size: u64,
    root: String,
    note: String,
}

impl Kept {
    fn head(&self) -> Option<TreeHead> {
        let root: [u8; 32] = unhex(&self.root)?.try_into().ok()?;
        Some(TreeHead {
            size: self.size,
            root,
        })
    }
}

/// One problem with the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    pub detail: String,
}

pub struct LogWitness {
    path: PathBuf,
    /// The configured key (wins over the kept one).
    pinned: Option<String>,
    state: State,
    /// Picks the receipt of each Ack that is kept (keyed anew in every run).
    choose: std::collections::hash_map::RandomState,
}

impl LogWitness {
    /// The witness state in `state_dir` (new when there is none), checking
    /// checkpoints against `pinned` when given.
    pub fn open(state_dir: &Path, pinned: Option<String>) -> anyhow::Result<LogWitness> {
        let path = state_dir.join("log-witness.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged (remove it to witness afresh)", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if let Some(key) = &pinned {
            CheckpointVerifier::new(key).with_context(|| format!("server.checkpoint_key {key:?}"))?;
        }
        Ok(LogWitness {
            path,
            pinned,
            state,
            choose: std::collections::hash_map::RandomState::new(),
        })
    }

    /// Keep the receipts of an Ack for the batch of events `ids` (in the batch's
    /// order); a receipt for an event the batch did not hold is a finding.
    pub fn receipts(&mut self, ids: &[RecordId], receipts: &[Receipt]) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut valid = Vec::with_capacity(receipts.len());
        for (position, receipt) in receipts.iter().enumerate() {
            // Receipts come in the batch's order: look there first.
            let id = ids
                .get(position)
                .filter(|id| id.seq == receipt.seq)
                .or_else(|| ids.iter().find(|id| id.seq == receipt.seq));
            let Some(id) = id else {
                findings.push(self.found(
                    "bad_receipt",
                    format!("a receipt for seq {}, which the batch did not hold", receipt.seq),
                ));
                continue;
            };
            let Ok(record_sha256) = <[u8; 32]>::try_from(receipt.record_sha256.as_slice()) else {
                findings.push(self.found(
                    "bad_receipt",
                    format!("the receipt of seq {} holds no record hash", receipt.seq),
                ));
                continue;
            };
            valid.push((receipt, id, record_sha256));
        }
        if !valid.is_empty() {
            // Only the receipt picked is proven, so only its leaf is hashed.
            let pick = self.choose.hash_one(valid[0].0.leaf_index) as usize % valid.len();
            let (receipt, id, record_sha256) = valid.swap_remove(pick);
            let id = id.clone();
            let entry = if receipt.conflict {
                LeafEntry::Conflict { id, record_sha256 }
            } else {
                LeafEntry::Record { id, record_sha256 }
            };
            if self.state.pending.len() >= MAX_PENDING {
                self.state.pending.pop_front();
                self.state.receipts_dropped += 1;
            }
            self.state
                .pending
                .push_back((receipt.leaf_index, hex(&entry.leaf_hash().0)));
        }
        findings
    }

    /// A fleet front door's Ack of the batch of events `ids`, which holds no
    /// receipts: one of its events (not among the `refused` seqs), chosen at
    /// random, is kept, and its receipt asked for later.
    pub fn await_receipt(&mut self, ids: &[RecordId], refused: &[u64]) {
        let logged: Vec<&RecordId> = ids.iter().filter(|id| !refused.contains(&id.seq)).collect();
        if logged.is_empty() {
            return;
        }
        let pick = self.choose.hash_one(logged[0].seq) as usize % logged.len();
        let id = logged[pick];
        if self.state.awaiting.len() + self.state.pending.len() >= MAX_PENDING {
            self.state.awaiting.pop_front();
            self.state.receipts_dropped += 1;
        }
        self.state.awaiting.push_back(Awaited {
            host_id: id.host_id.clone(),
            boot_id: id.boot_id.clone(),
            seq: id.seq,
            time_unix_ns: id.time_unix_ns,
        });
    }

    /// What to ask the server for; `None` once the log is no longer checked.
    #[must_use]
    pub fn request(&self) -> Option<WitnessRequest> {
        let leaves: Vec<u64> = self
            .state
            .pending
            .iter()
            .take(LEAVES_PER_ROUND)
            .map(|(leaf, _)| *leaf)
            .collect();
        let receipts_for = self
            .state
            .awaiting
            .iter()
            .take(LEAVES_PER_ROUND - leaves.len())
            .map(|a| EventRef {
                boot_id: a.boot_id.clone(),
                seq: a.seq,
            })
            .collect();
        (!self.state.broken).then(|| WitnessRequest {
            kept_size: self.state.checkpoint.as_ref().map_or(0, |k| k.size),
            leaves,
            receipts_for,
        })
    }

    /// The receipts the server gave for awaited events: each becomes a kept leaf
    /// (rebuilt from this agent's own event id), to be proven like an Ack's.
    fn take_receipts(&mut self, receipts: &[Receipt]) -> Option<Finding> {
        for receipt in receipts {
            let Some(at) = self
                .state
                .awaiting
                .iter()
                .position(|a| a.seq == receipt.seq && a.boot_id == receipt.boot_id)
            else {
                continue;
            };
            let Ok(record_sha256) = <[u8; 32]>::try_from(receipt.record_sha256.as_slice()) else {
                return Some(self.found(
                    "bad_receipt",
                    format!("the receipt of seq {} holds no record hash", receipt.seq),
                ));
            };
            let awaited = self.state.awaiting.remove(at).expect("found above");
            let entry = LeafEntry::Record {
                id: RecordId {
                    host_id: awaited.host_id,
                    boot_id: awaited.boot_id,
                    seq: awaited.seq,
                    time_unix_ns: awaited.time_unix_ns,
                },
                record_sha256,
            };
            self.state
                .pending
                .push_back((receipt.leaf_index, hex(&entry.leaf_hash().0)));
        }
        None
    }

    /// Check the server's answer; an accepted checkpoint is kept and the receipts
    /// it proves are done. The state is saved either way.
    pub fn check(&mut self, reply: &WitnessReply) -> anyhow::Result<Vec<Finding>> {
        let findings = self.judge(reply);
        self.save()?;
        Ok(findings)
    }

    fn judge(&mut self, reply: &WitnessReply) -> Vec<Finding> {
        if self.state.broken {
            return Vec::new();
        }
        let key = self
            .pinned
            .clone()
            .or_else(|| self.state.verifier_key.clone())
            .unwrap_or_else(|| {
                tracing::warn!(
                    key = %reply.verifier_key,
                    "no checkpoint key configured (server.checkpoint_key): trusting the server's on first use"
                );
                reply.verifier_key.clone()
            });
        if reply.verifier_key.trim() != key.trim() {
            return vec![self.broke(
                "key_changed",
                format!(
                    "the server signs with {:?}, not the key {key:?} this agent trusts",
                    reply.verifier_key
                ),
            )];
        }
        let verifier = match CheckpointVerifier::new(&key) {
            Ok(verifier) => verifier,
            Err(e) => return vec![self.broke("bad_signature", format!("the checkpoint key: {e}"))],
        };
        let Some(signed) = &reply.checkpoint else {
            return vec![self.broke("bad_signature", "the reply holds no checkpoint".into())];
        };
        let head = match verifier.open(&signed.note) {
            Ok(head) => head,
            Err(e) => return vec![self.broke("bad_signature", e.to_string())],
        };
        if let Some(kept) = self.state.checkpoint.clone().and_then(|k| k.head()) {
            // None: a hash of the wrong length; no proof at all is an empty one.
            let proof = reply
                .consistency
                .as_ref()
                .map_or_else(|| Some(Vec::new()), |p| hashes(&p.hashes));
            match proof
                .ok_or(tree::ProofError::Consistency {
                    old: kept.size,
                    new: head.size,
                })
                .and_then(|proof| tree::check_consistency(&proof, kept.size, kept.root, head.size, head.root))
            {
                Ok(()) => {}
                Err(e @ tree::ProofError::Shrank { .. }) => {
                    return vec![self.broke(
                        "rewound",
                        format!(
                            "{e}: the server's log holds {} leaves, this agent verified {} before",
                            head.size, kept.size
                        ),
                    )];
                }
                Err(e) => return vec![self.broke("forked", e.to_string())],
            }
        }
        if let Some(finding) = self.take_receipts(&reply.receipts) {
            return vec![finding];
        }
        if let Some(finding) = self.prove_receipts(reply, head) {
            return vec![finding];
        }
        self.state.verifier_key = Some(key);
        let grew = self.state.checkpoint.as_ref().is_none_or(|k| head.size >= k.size);
        if grew {
            self.state.checkpoint = Some(Kept {
                size: head.size,
                root: hex(&head.root),
                note: String::from_utf8_lossy(&signed.note).into_owned(),
            });
        }
        Vec::new()
    }

    /// Check the inclusion proofs of the kept receipts in `head`; the proven ones
    /// are done. The first leaf not proven is the finding.
    fn prove_receipts(&mut self, reply: &WitnessReply, head: TreeHead) -> Option<Finding> {
        for proof in &reply.inclusions {
            let Some(at) = self
                .state
                .pending
                .iter()
                .position(|(leaf, _)| *leaf == proof.leaf_index)
            else {
                continue;
            };
            let leaf_hash: Option<[u8; 32]> =
                unhex(&self.state.pending[at].1).and_then(|h| h.try_into().ok());
            let included = match (hashes(&proof.hashes), leaf_hash) {
                (Some(path), Some(leaf_hash)) => {
                    tree::check_inclusion(&path, head.size, head.root, proof.leaf_index, leaf_hash).is_ok()
                }
                _ => false,
            };
            if !included {
                return Some(self.broke(
                    "not_included",
                    format!(
                        "leaf {} of this agent's receipt is not in the signed log of {} leaves: its record was rewritten or removed",
                        proof.leaf_index, head.size
                    ),
                ));
            }
            self.state.pending.remove(at);
            self.state.receipts_verified += 1;
        }
        None
    }

    /// Count a finding.
    fn found(&mut self, kind: &'static str, detail: String) -> Finding {
        *self.state.findings.entry(kind.to_owned()).or_default() += 1;
        self.state.last_finding = format!("{kind}: {detail}");
        Finding { kind, detail }
    }

    /// Count a finding that ends the checking of this log.
    fn broke(&mut self, kind: &'static str, detail: String) -> Finding {
        self.state.broken = true;
        self.found(kind, detail)
    }

    /// Write the state (to a temporary, renamed).
    pub fn save(&self) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(&self.state).expect("witness state serialises");
        watchtower_pki::write_file(&self.path, bytes, false)
            .with_context(|| format!("writing {}", self.path.display()))?;
        if let Some(kept) = &self.state.checkpoint {
            let note = self.path.with_extension("checkpoint");
            watchtower_pki::write_file(&note, &kept.note, false)
                .with_context(|| format!("writing {}", note.display()))?;
        }
        Ok(())
    }

    #[must_use]
    pub fn health(&self) -> LogWitnessHealth {
        LogWitnessHealth {
            checkpoint_size: self.state.checkpoint.as_ref().map_or(0, |k| k.size),
            receipts_verified: self.state.receipts_verified,
            receipts_pending: (self.state.pending.len() + self.state.awaiting.len()) as u64,
            findings: self.state.findings.clone(),
            last_finding: self.state.last_finding.clone(),
        }
    }
}

fn hashes(wire: &[Vec<u8>]) -> Option<Vec<[u8; 32]>> {
    wire.iter().map(|h| h.as_slice().try_into().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::pb::{LeafProof, Proof, SignedCheckpoint};
    use watchtower_tlog::{CheckpointSigner, MemoryLog};

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wt-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    struct Server {
        signer: CheckpointSigner,
        log: MemoryLog,
        /// Every receipt given, for a fleet's witness replies.
        logged: Vec<Receipt>,
    }

    fn id(seq: u64) -> RecordId {
        RecordId {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            time_unix_ns: seq * 10,
        }
    }

    impl Server {
        fn new() -> Server {
            let (skey, _) = CheckpointSigner::generate("watchtower/test").unwrap();
            Server {
                signer: CheckpointSigner::from_signer_key(&skey).unwrap(),
                log: MemoryLog::default(),
                logged: Vec::new(),
            }
        }

        /// Store events `seqs`: their receipts.
        fn store(&mut self, seqs: std::ops::RangeInclusive<u64>) -> Vec<Receipt> {
            let receipts: Vec<Receipt> = seqs
                .map(|seq| {
                    let record_sha256 = [seq as u8; 32];
                    let index = self.log.size();
                    self.log.push(
                        LeafEntry::Record {
                            id: id(seq),
                            record_sha256,
                        }
                        .leaf_hash(),
                    );
                    Receipt {
                        seq,
                        leaf_index: index,
                        record_sha256: record_sha256.to_vec(),
                        conflict: false,
                        boot_id: "b".into(),
                    }
                })
                .collect();
            self.logged.extend(receipts.iter().cloned());
            receipts
        }

        fn reply(&self, request: &WitnessRequest) -> WitnessReply {
            let size = self.log.size();
            let receipts: Vec<Receipt> = self
                .logged
                .iter()
                .filter(|r| {
                    request
                        .receipts_for
                        .iter()
                        .any(|e| e.seq == r.seq && e.boot_id == r.boot_id)
                })
                .cloned()
                .collect();
            WitnessReply {
                checkpoint: Some(SignedCheckpoint {
                    note: self.signer.sign(size, self.log.root()),
                    size,
                    ..SignedCheckpoint::default()
                }),
                verifier_key: self.signer.verifier_key().to_owned(),
                consistency: (request.kept_size > 0 && request.kept_size < size).then(|| Proof {
                    hashes: tree::prove_consistency(&self.log, request.kept_size, size)
                        .unwrap()
                        .into_iter()
                        .map(|h| h.to_vec())
                        .collect(),
                }),
                inclusions: request
                    .leaves
                    .iter()
                    .chain(receipts.iter().map(|r| &r.leaf_index))
                    .filter(|&&l| l < size)
                    .map(|&leaf_index| LeafProof {
                        leaf_index,
                        hashes: tree::prove_inclusion(&self.log, size, leaf_index)
                            .unwrap()
                            .into_iter()
                            .map(|h| h.to_vec())
                            .collect(),
                    })
                    .collect(),
                receipts,
            }
        }
    }

    fn round(witness: &mut LogWitness, server: &Server) -> Vec<&'static str> {
        let request = witness.request().expect("still checking");
        witness
            .check(&server.reply(&request))
            .unwrap()
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    fn pinned_witness(dir: &Scratch, server: &Server) -> LogWitness {
        LogWitness::open(&dir.0, Some(server.signer.verifier_key().to_owned())).unwrap()
    }

    fn ids(seqs: std::ops::RangeInclusive<u64>) -> Vec<RecordId> {
        seqs.map(id).collect()
    }

    #[test]
    fn an_honest_log_proves_every_receipt_and_the_state_survives_a_restart() {
        let dir = Scratch::new("log-witness-honest");
        let mut server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        let receipts = server.store(1..=5);
        assert!(witness.receipts(&ids(1..=5), &receipts).is_empty());
        assert!(round(&mut witness, &server).is_empty());
        let receipts = server.store(6..=9);
        witness.receipts(&ids(6..=9), &receipts);
        assert!(round(&mut witness, &server).is_empty());
        // One receipt of each Ack is kept and proven.
        let health = witness.health();
        assert_eq!(
            (
                health.checkpoint_size,
                health.receipts_verified,
                health.receipts_pending
            ),
            (9, 2, 0)
        );
        assert!(health.findings.is_empty());
        let again = LogWitness::open(&dir.0, None).unwrap();
        assert_eq!(again.health().checkpoint_size, 9);
    }

    #[test]
    fn a_rolled_back_log_is_rewound_and_checking_stops() {
        let dir = Scratch::new("log-witness-rewound");
        let mut server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        let receipts = server.store(1..=10);
        witness.receipts(&ids(1..=10), &receipts);
        assert!(round(&mut witness, &server).is_empty());
        // The data directory put back to an older copy of 5 leaves.
        let mut older = Server {
            signer: server.signer,
            log: MemoryLog::default(),
            logged: Vec::new(),
        };
        older.store(1..=5);
        assert_eq!(round(&mut witness, &older), vec!["rewound"]);
        assert!(witness.request().is_none());
        // Still broken after a restart, and counted once.
        let again = LogWitness::open(&dir.0, None).unwrap();
        assert!(again.request().is_none());
        assert_eq!(again.health().findings.get("rewound"), Some(&1));
        assert_eq!(again.health().checkpoint_size, 10);
    }

    #[test]
    fn a_rewritten_record_forks_the_log_and_a_fresh_key_is_refused() {
        let dir = Scratch::new("log-witness-forked");
        let mut server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        witness.receipts(&ids(1..=4), &server.store(1..=4));
        assert!(round(&mut witness, &server).is_empty());
        // The same size and more, with leaf 2 rewritten.
        let mut forked = Server {
            signer: server.signer,
            log: MemoryLog::default(),
            logged: Vec::new(),
        };
        forked.store(1..=2);
        forked.log.push(
            LeafEntry::Record {
                id: id(3),
                record_sha256: [0; 32],
            }
            .leaf_hash(),
        );
        forked.store(4..=6);
        assert_eq!(round(&mut witness, &forked), vec!["forked"]);

        let dir = Scratch::new("log-witness-key");
        let server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        assert!(round(&mut witness, &server).is_empty());
        let other = Server::new();
        assert_eq!(round(&mut witness, &other), vec!["key_changed"]);
    }

    #[test]
    fn a_receipt_the_log_does_not_hold_is_not_included() {
        let dir = Scratch::new("log-witness-receipt");
        let mut server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        let mut receipts = server.store(1..=3);
        // The server acknowledged seq 2 with a hash it never logged.
        receipts[1].record_sha256 = vec![9; 32];
        witness.receipts(&ids(1..=1), &receipts[..1]);
        witness.receipts(&ids(2..=2), &receipts[1..2]);
        assert_eq!(round(&mut witness, &server), vec!["not_included"]);
        assert_eq!(witness.health().receipts_verified, 1);
        let bad = witness.receipts(&ids(1..=1), &server.store(7..=7));
        assert_eq!(bad[0].kind, "bad_receipt");
    }

    #[test]
    fn a_fleet_agent_asks_for_its_receipts_once_the_indexer_logged_them() {
        let dir = Scratch::new("log-witness-fleet");
        let mut server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        // Acknowledged by a front door: no receipts, seq 3 refused.
        witness.await_receipt(&ids(1..=5), &[3]);
        let request = witness.request().unwrap();
        assert_eq!(request.receipts_for.len(), 1);
        assert_ne!(request.receipts_for[0].seq, 3);
        // Not logged yet: still awaited, nothing found.
        assert!(round(&mut witness, &server).is_empty());
        assert_eq!(witness.health().receipts_pending, 1);
        // The indexer logged them: the receipt is given and proven in the same round.
        server.store(1..=5);
        assert!(round(&mut witness, &server).is_empty());
        let health = witness.health();
        assert_eq!((health.receipts_verified, health.receipts_pending), (1, 0));
        // Kept across a restart while awaited.
        witness.await_receipt(&ids(6..=6), &[]);
        witness.save().unwrap();
        let again = LogWitness::open(&dir.0, None).unwrap();
        assert_eq!(again.request().unwrap().receipts_for[0].seq, 6);
    }

    #[test]
    fn a_fleet_indexer_that_rewrote_an_awaited_event_is_not_included() {
        let dir = Scratch::new("log-witness-fleet-rewritten");
        let mut server = Server::new();
        let mut witness = pinned_witness(&dir, &server);
        witness.await_receipt(&ids(1..=1), &[]);
        server.store(1..=2);
        // The indexer's receipt names a record other than the one it logged.
        server.logged[0].record_sha256 = vec![7; 32];
        assert_eq!(round(&mut witness, &server), vec!["not_included"]);
    }
}
