//! Group commit: the synced writes of many hosts share one WAL sync.
//!
//! An append prepares its batch (events, indexes, summaries) under its host's lock
//! only, then queues it here with its log leaves. The first appender to find no
//! commit running becomes the leader: under the log lock it takes every queued
//! batch, numbers its leaves after those before it, and writes the batches one
//! after the other, only the last one synced: the WAL is one file written in order,
//! so that one sync makes the whole group durable. Each
//! appender is answered only after that sync, so nothing is acknowledged before it
//! is on disk, and leaves stay numbered in commit order. While a leader syncs, new
//! appends queue up and go together in the next group.
//!
//! If the sync fails, every batch of the group is answered with the error (its
//! agent sends it again; the dedup check then finds it if it did reach the disk).
//! The log head still moves past the group's leaves, because the batches are in
//! `RocksDB`'s memtable and the next leaves must not reuse their indexes.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use rocksdb::WriteBatch;

use super::{CONFLICTS, EventStore, LogHead, RECEIPTS, StoreError, keys};
use watchtower_model::StoredEvent;

/// One append's batch and its log leaves.
pub(super) struct Request {
    pub batch: WriteBatch,
    pub leaves: Vec<Leaf>,
}

/// One leaf to log.
pub(super) struct Leaf {
    /// The leaf's canonical entry.
    pub entry: Vec<u8>,
    /// The second record of a conflict leaf.
    pub conflict: Option<StoredEvent>,
    /// The event's dedup key, when the store keeps leaves by event.
    pub receipt_key: Option<Vec<u8>>,
}

impl Leaf {
    /// A stored record's leaf, kept by the event's dedup key when one is given.
    pub fn record(entry: Vec<u8>, receipt_key: Option<Vec<u8>>) -> Leaf {
        Leaf {
            entry,
            conflict: None,
            receipt_key,
        }
    }

    /// A conflict leaf and its second record.
    pub fn conflict(entry: Vec<u8>, record: StoredEvent) -> Leaf {
        Leaf {
            entry,
            conflict: Some(record),
            receipt_key: None,
        }
    }
}

/// Where a committed request's leaves went.
#[derive(Clone, Copy, Debug)]
pub(super) struct Committed {
    pub first_leaf: u64,
    pub head: LogHead,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Request)>,
    answers: HashMap<u64, Result<Committed, StoreError>>,
    next_ticket: u64,
    leading: bool,
}

#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
    answered: Condvar,
    /// Groups committed and the batches in them (for the metrics and the bench).
    pub groups: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
}

impl EventStore {
    /// Commit `request` durably, with its leaves numbered in commit order.
    pub(super) fn commit(&self, request: Request) -> Result<Committed, StoreError> {
        let group = &self.group;
        let mut queue = group.queue.lock().expect("commit queue");
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push((ticket, request));
        loop {
            if let Some(answer) = queue.answers.remove(&ticket) {
                return answer;
            }
            if queue.leading {
                queue = group.answered.wait(queue).expect("commit queue");
                continue;
            }
            queue.leading = true;
            let requests = std::mem::take(&mut queue.waiting);
            drop(queue);
            let answers = self.commit_group(requests);
            queue = group.queue.lock().expect("commit queue");
            queue.leading = false;
            queue.answers.extend(answers);
            group.answered.notify_all();
        }
    }

    /// Write every request of one group, then sync the WAL once.
    fn commit_group(&self, requests: Vec<(u64, Request)>) -> Vec<(u64, Result<Committed, StoreError>)> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut log = self.log.lock().expect("log lock");
        let mut head = *log;
        let mut written = Vec::with_capacity(requests.len());
        let mut answers = Vec::with_capacity(requests.len());
        let unsynced = rocksdb::WriteOptions::default();
        let synced = super::synced();
        let last = requests.len().saturating_sub(1);
        // Whether the group's last write, synced, made everything before it durable.
        let mut synced_all = false;
        for (position, (ticket, Request { mut batch, leaves })) in requests.into_iter().enumerate() {
            let first_leaf = head.size;
            let next = if leaves.is_empty() {
                Ok(head)
            } else {
                let mut entries = Vec::with_capacity(leaves.len());
                for (index, leaf) in (first_leaf..).zip(leaves) {
                    let Leaf {
                        entry,
                        conflict,
                        receipt_key,
                    } = leaf;
                    if let Some(key) = receipt_key {
                        batch.put_cf(self.cf(RECEIPTS), key, index.to_be_bytes());
                    }
                    if let Some(record) = conflict {
                        batch.put_cf(
                            self.cf(CONFLICTS),
                            keys::log_leaf_key(index),
                            super::keys::encode_value(&record),
                        );
                    }
                    entries.push(entry);
                }
                self.append_leaves(&mut batch, first_leaf, entries)
            };
            let sync = position == last;
            let result = next.and_then(|next| {
                self.db.write_opt(batch, if sync { &synced } else { &unsynced })?;
                Ok(next)
            });
            match result {
                Ok(next) => {
                    synced_all = sync;
                    head = next;
                    written.push((
                        ticket,
                        Committed {
                            first_leaf,
                            head: next,
                        },
                    ));
                }
                Err(e) => answers.push((ticket, Err(e))),
            }
        }
        if !written.is_empty() {
            self.group.groups.fetch_add(1, Relaxed);
            self.group.batches.fetch_add(written.len() as u64, Relaxed);
            // The batches are in the memtable: the head moves past them either way.
            *log = head;
            // The last write was synced, and the WAL is one file written in order: it
            // made the earlier writes durable too. If it failed, sync them here.
            let durable = if synced_all {
                Ok(())
            } else {
                self.db.flush_wal(true)
            };
            match durable {
                Ok(()) => answers.extend(written.into_iter().map(|(t, c)| (t, Ok(c)))),
                Err(e) => {
                    tracing::error!("syncing the WAL failed; the group's batches are refused: {e}");
                    answers.extend(
                        written
                            .into_iter()
                            .map(|(t, _)| (t, Err(StoreError::Db(e.clone())))),
                    );
                }
            }
        }
        answers
    }
}

impl EventStore {
    /// Groups committed since the store was opened, and the append batches in them.
    #[must_use]
    pub fn group_commits(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.group.groups.load(Relaxed), self.group.batches.load(Relaxed))
    }
}
