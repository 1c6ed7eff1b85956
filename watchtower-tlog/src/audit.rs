//! The audit of a log: every leaf's entry and the record it names, the tree they
//! make against signed tree heads, and removals against the retention cut-offs
//! the log itself announced. The server's self-check and `watchtowerctl verify`
//! (which fetches everything and trusts nothing the server says) both run it.
//!
//! What it can name:
//! - `changed`: a record no longer hashes to its leaf's `record_sha256`;
//! - `removed`: a leaf's record is gone and no retention cut-off covers it;
//! - `missing_leaf` / `damaged_leaf`: the log lost a leaf or holds an entry it
//!   cannot read;
//! - `root_mismatch`: the leaves no longer hash to a signed tree head;
//! - `truncated`: a signed tree head is larger than the log;
//! - `conflict`: a second record with the id of a stored one and other content;
//! - `early_retention`: a retention cut-off newer than the auditor's policy allows;
//! - `unlogged`: (from the caller) a stored record no leaf names.

use crate::entry::{LeafEntry, RecordId};
use crate::tree::MemoryLog;
use crate::{TreeHead, hex};

/// Findings listed at most (the counts stay exact).
pub const MAX_FINDINGS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub problem: &'static str,
    pub leaf: u64,
    pub record: Option<RecordId>,
    pub detail: String,
}

/// What the store holds for a leaf's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredRecord {
    /// Present: the SHA-256 of its canonical JSON and the id its event carries.
    Present {
        sha256: [u8; 32],
        id: RecordId,
    },
    Absent,
    /// Present but not readable as a record.
    Unreadable(String),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub log_size: u64,
    /// Leaves whose record was compared (all, or the selected host's).
    pub leaves_checked: u64,
    pub records_intact: u64,
    pub pruned_by_retention: u64,
    pub retention_cutoff_unix_ns: u64,
    pub heads_checked: u64,
    pub findings: Vec<Finding>,
}

/// Feed it the leaves in index order ([`Audit::leaf`]), then the signed heads
/// ([`Audit::head`]), then [`Audit::finish`].
pub struct Audit {
    log: MemoryLog,
    host: Option<String>,
    /// The newest cut-off an honest retention may have reached: `now - minimum
    /// retention` by the auditor's clock, when the auditor has a policy.
    retention_floor: Option<u64>,
    cutoff: u64,
    absent: Vec<(u64, RecordId)>,
    gap: bool,
    report: AuditReport,
    more: u64,
}

impl Audit {
    /// An audit of every record, or of `host`'s (every leaf still makes the tree).
    #[must_use]
    pub fn new(host: Option<String>, retention_floor: Option<u64>) -> Audit {
        Audit {
            log: MemoryLog::default(),
            host,
            retention_floor,
            cutoff: 0,
            absent: Vec::new(),
            gap: false,
            report: AuditReport::default(),
            more: 0,
        }
    }

    /// The tree rebuilt from the leaves so far (for proofs of an export).
    #[must_use]
    pub fn log(&self) -> &MemoryLog {
        &self.log
    }

    fn push(&mut self, finding: Finding) {
        if self.report.findings.len() < MAX_FINDINGS {
            self.report.findings.push(finding);
        } else {
            self.more += 1;
        }
    }

    /// Leaf `index` with its stored `entry` bytes and what the store holds for it.
    pub fn leaf(&mut self, index: u64, entry: &[u8], record: StoredRecord) {
        if index != self.log.size() {
            if !self.gap {
                self.push(Finding {
                    problem: "missing_leaf",
                    leaf: self.log.size(),
                    record: None,
                    detail: format!(
                        "leaves {}..{index} are missing from the log; tree heads after it cannot match",
                        self.log.size()
                    ),
                });
            }
            self.gap = true;
        }
        // The leaf is hashed as stored, so any damage also shows in the roots.
        self.log.push(tlog_tiles::record_hash(entry));
        let entry = match LeafEntry::decode(entry) {
            Ok(entry) => entry,
            Err(e) => {
                self.push(Finding {
                    problem: "damaged_leaf",
                    leaf: index,
                    record: None,
                    detail: format!("leaf {index} cannot be read ({} bytes): {e}", entry.len()),
                });
                return;
            }
        };
        match entry {
            LeafEntry::Retention {
                cutoff_unix_ns,
                time_unix_ns,
            } => {
                self.cutoff = self.cutoff.max(cutoff_unix_ns);
                if let Some(floor) = self.retention_floor
                    && cutoff_unix_ns > floor
                {
                    self.push(Finding {
                        problem: "early_retention",
                        leaf: index,
                        record: None,
                        detail: format!(
                            "leaf {index} (written at {time_unix_ns} ns) lets records before {cutoff_unix_ns} ns be removed, \
                             later than the policy allows ({floor} ns)"
                        ),
                    });
                }
            }
            LeafEntry::Record { .. } | LeafEntry::Conflict { .. } => {
                let conflict = matches!(entry, LeafEntry::Conflict { .. });
                let (LeafEntry::Record { id, record_sha256 } | LeafEntry::Conflict { id, record_sha256 }) =
                    entry
                else {
                    unreachable!("matched above")
                };
                if self.host.as_ref().is_some_and(|h| *h != id.host_id) {
                    return;
                }
                self.report.leaves_checked += 1;
                if conflict {
                    self.push(Finding {
                        problem: "conflict",
                        leaf: index,
                        record: Some(id.clone()),
                        detail: format!(
                            "a second record with host {} boot {} seq {} and other content was sent \
                             (kept as evidence): the agent's numbering was reused or an event forged",
                            id.host_id, id.boot_id, id.seq
                        ),
                    });
                }
                self.record(index, id, record_sha256, record);
            }
        }
    }

    fn record(&mut self, index: u64, id: RecordId, logged: [u8; 32], record: StoredRecord) {
        match record {
            StoredRecord::Absent => self.absent.push((index, id)),
            StoredRecord::Unreadable(why) => self.push(Finding {
                problem: "changed",
                leaf: index,
                record: Some(id),
                detail: format!("the stored record cannot be read: {why}"),
            }),
            StoredRecord::Present { sha256, id: found } => {
                if sha256 == logged && found == id {
                    self.report.records_intact += 1;
                } else {
                    let detail = if found == id {
                        format!(
                            "the stored record no longer hashes to its leaf (logged {}, now {})",
                            &hex(&logged)[..16],
                            &hex(&sha256)[..16]
                        )
                    } else {
                        format!(
                            "the stored record is of host {} boot {} seq {} time {}, not the one logged",
                            found.host_id, found.boot_id, found.seq, found.time_unix_ns
                        )
                    };
                    self.push(Finding {
                        problem: "changed",
                        leaf: index,
                        record: Some(id),
                        detail,
                    });
                }
            }
        }
    }

    /// A signed tree head the leaves must hash to.
    pub fn head(&mut self, head: &TreeHead) {
        self.report.heads_checked += 1;
        if head.size > self.log.size() {
            self.push(Finding {
                problem: "truncated",
                leaf: self.log.size(),
                record: None,
                detail: format!(
                    "a checkpoint signed {} leaves but the log holds {}: leaves were cut off its end",
                    head.size,
                    self.log.size()
                ),
            });
        } else if self.log.root_at(head.size) != head.root {
            self.push(Finding {
                problem: "root_mismatch",
                leaf: head.size,
                record: None,
                detail: format!(
                    "the first {} leaves no longer hash to the signed root ({} signed, {} now): leaves were rewritten",
                    head.size,
                    &hex(&head.root)[..16],
                    &hex(&self.log.root_at(head.size))[..16]
                ),
            });
        }
    }

    /// A stored record no leaf names.
    pub fn unlogged(&mut self, id: RecordId, detail: &str) {
        self.push(Finding {
            problem: "unlogged",
            leaf: 0,
            record: Some(id),
            detail: format!("a stored record no leaf accounts for: {detail}"),
        });
    }

    #[must_use]
    pub fn finish(mut self) -> AuditReport {
        for (index, id) in std::mem::take(&mut self.absent) {
            if id.time_unix_ns < self.cutoff {
                self.report.pruned_by_retention += 1;
            } else {
                let detail = format!(
                    "the record logged at leaf {index} is gone (event time {} ns; no retention cut-off covers it)",
                    id.time_unix_ns
                );
                self.push(Finding {
                    problem: "removed",
                    leaf: index,
                    record: Some(id),
                    detail,
                });
            }
        }
        if self.more > 0 {
            self.report.findings.push(Finding {
                problem: "more",
                leaf: 0,
                record: None,
                detail: format!("{} more findings not listed", self.more),
            });
        }
        self.report.log_size = self.log.size();
        self.report.retention_cutoff_unix_ns = self.cutoff;
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64, time: u64) -> RecordId {
        RecordId {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq,
            time_unix_ns: time,
        }
    }

    fn entry(seq: u64, time: u64) -> Vec<u8> {
        LeafEntry::Record {
            id: id(seq, time),
            record_sha256: [seq as u8; 32],
        }
        .encode()
    }

    fn present(seq: u64, time: u64) -> StoredRecord {
        StoredRecord::Present {
            sha256: [seq as u8; 32],
            id: id(seq, time),
        }
    }

    fn problems(report: &AuditReport) -> Vec<&'static str> {
        report.findings.iter().map(|f| f.problem).collect()
    }

    #[test]
    fn an_intact_log_with_a_pruned_record_passes() {
        let mut audit = Audit::new(None, None);
        audit.leaf(0, &entry(1, 10), StoredRecord::Absent);
        audit.leaf(1, &entry(2, 20), present(2, 20));
        let retention = LeafEntry::Retention {
            cutoff_unix_ns: 15,
            time_unix_ns: 30,
        };
        audit.leaf(2, &retention.encode(), StoredRecord::Absent);
        let head = TreeHead {
            size: 3,
            root: audit.log().root(),
        };
        audit.head(&head);
        let report = audit.finish();
        assert_eq!(problems(&report), Vec::<&str>::new());
        assert_eq!((report.records_intact, report.pruned_by_retention), (1, 1));
    }

    #[test]
    fn a_zeroed_time_with_a_deleted_record_changes_the_root() {
        let mut honest = Audit::new(None, None);
        honest.leaf(0, &entry(1, 10), present(1, 10));
        let signed = TreeHead {
            size: 1,
            root: honest.log().root(),
        };
        let retention = LeafEntry::Retention {
            cutoff_unix_ns: 5,
            time_unix_ns: 30,
        };
        let mut attacked = Audit::new(None, None);
        attacked.leaf(0, &entry(1, 0), StoredRecord::Absent);
        attacked.leaf(1, &retention.encode(), StoredRecord::Absent);
        attacked.head(&signed);
        assert_eq!(problems(&attacked.finish()), ["root_mismatch"]);
    }

    #[test]
    fn each_finding_is_named() {
        let mut audit = Audit::new(None, Some(100));
        audit.leaf(0, &entry(1, 10), StoredRecord::Absent);
        audit.leaf(1, &entry(2, 20), present(3, 20));
        audit.leaf(2, b"garbage", StoredRecord::Absent);
        audit.leaf(4, &entry(4, 40), present(4, 40));
        let conflict = LeafEntry::Conflict {
            id: id(4, 40),
            record_sha256: [9; 32],
        };
        audit.leaf(5, &conflict.encode(), present(9, 40));
        let early = LeafEntry::Retention {
            cutoff_unix_ns: 500,
            time_unix_ns: 600,
        };
        audit.leaf(6, &early.encode(), StoredRecord::Absent);
        audit.head(&TreeHead {
            size: 9,
            root: [0; 32],
        });
        audit.head(&TreeHead {
            size: 2,
            root: [0; 32],
        });
        audit.unlogged(id(8, 80), "exec");
        let report = audit.finish();
        assert_eq!(
            problems(&report),
            [
                "changed",
                "damaged_leaf",
                "missing_leaf",
                "conflict",
                "changed",
                "early_retention",
                "truncated",
                "root_mismatch",
                "unlogged"
            ]
        );
        // leaf 0's record is older than the (early) cut-off: counted as pruned.
        assert_eq!(report.pruned_by_retention, 1);
    }

    #[test]
    fn a_host_filter_checks_only_that_hosts_records() {
        let mut audit = Audit::new(Some("db-1".into()), None);
        audit.leaf(0, &entry(1, 10), StoredRecord::Absent);
        let report = audit.finish();
        assert_eq!((report.leaves_checked, report.findings.len()), (0, 0));
    }
}
