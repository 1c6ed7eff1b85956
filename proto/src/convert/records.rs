//! The agent's health, stored records, summaries, alerts and the log's reports.

use watchtower_model as model;

use crate::pb;

impl From<pb::AgentHealth> for model::AgentHealth {
    fn from(m: pb::AgentHealth) -> Self {
        Self {
            reason: m.reason,
            mode: m.mode,
            kernel_unavailable: m.kernel_unavailable,
            journal: m.journal.map(Into::into),
            verdicts: m.verdicts.map(Into::into),
            scope: m.scope,
            probes: m.probes,
            lost: m.lost,
            out_of_scope: m.out_of_scope,
            decode_errors: m.decode_errors,
            records: m.records,
            pam_orphans: m.pam_orphans,
            open_sessions: m.open_sessions,
            resumed_after_seq: m.resumed_after_seq,
            spool: m.spool.map(Into::into),
            log_witness: m.log_witness.map(Into::into),
            capture_start: m.capture_start.map(Into::into),
            evicted: m.evicted,
        }
    }
}

impl From<model::AgentHealth> for pb::AgentHealth {
    fn from(d: model::AgentHealth) -> Self {
        Self {
            reason: d.reason,
            mode: d.mode,
            kernel_unavailable: d.kernel_unavailable,
            journal: d.journal.map(Into::into),
            verdicts: d.verdicts.map(Into::into),
            scope: d.scope,
            probes: d.probes,
            lost: d.lost,
            out_of_scope: d.out_of_scope,
            decode_errors: d.decode_errors,
            records: d.records,
            pam_orphans: d.pam_orphans,
            open_sessions: d.open_sessions,
            resumed_after_seq: d.resumed_after_seq,
            spool: d.spool.map(Into::into),
            log_witness: d.log_witness.map(Into::into),
            capture_start: d.capture_start.map(Into::into),
            evicted: d.evicted,
        }
    }
}

impl From<pb::CaptureStart> for model::CaptureStart {
    fn from(m: pb::CaptureStart) -> Self {
        Self {
            how: m.how,
            gap_from_unix_ns: m.gap_from_unix_ns,
            gap_to_unix_ns: m.gap_to_unix_ns,
        }
    }
}

impl From<model::CaptureStart> for pb::CaptureStart {
    fn from(d: model::CaptureStart) -> Self {
        Self {
            how: d.how,
            gap_from_unix_ns: d.gap_from_unix_ns,
            gap_to_unix_ns: d.gap_to_unix_ns,
        }
    }
}

impl From<pb::JournalHealth> for model::JournalHealth {
    fn from(m: pb::JournalHealth) -> Self {
        Self {
            state: m.state,
            error: m.error,
            journald_accepting: m.journald_accepting,
            records: m.records,
            malformed: m.malformed,
            recognised: m.recognised,
            logins: m.logins,
            restarts: m.restarts,
        }
    }
}

impl From<model::JournalHealth> for pb::JournalHealth {
    fn from(d: model::JournalHealth) -> Self {
        Self {
            state: d.state,
            error: d.error,
            journald_accepting: d.journald_accepting,
            records: d.records,
            malformed: d.malformed,
            recognised: d.recognised,
            logins: d.logins,
            restarts: d.restarts,
        }
    }
}

impl From<pb::VerdictCounters> for model::VerdictCounters {
    fn from(m: pb::VerdictCounters) -> Self {
        Self {
            confirmed: m.confirmed,
            kernel_only: m.kernel_only,
            journal_only: m.journal_only,
            unchecked: m.unchecked,
            pending_kernel: m.pending_kernel,
            pending_journal: m.pending_journal,
            overflow: m.overflow,
        }
    }
}

impl From<model::VerdictCounters> for pb::VerdictCounters {
    fn from(d: model::VerdictCounters) -> Self {
        Self {
            confirmed: d.confirmed,
            kernel_only: d.kernel_only,
            journal_only: d.journal_only,
            unchecked: d.unchecked,
            pending_kernel: d.pending_kernel,
            pending_journal: d.pending_journal,
            overflow: d.overflow,
        }
    }
}

impl From<pb::SpoolHealth> for model::SpoolHealth {
    fn from(m: pb::SpoolHealth) -> Self {
        Self {
            bytes: m.bytes,
            max_bytes: m.max_bytes,
            pending: m.pending,
            dropped: m.dropped,
            corrupt_records: m.corrupt_records,
            acked: m.acked,
            reconnects: m.reconnects,
            quarantined: m.quarantined,
        }
    }
}

impl From<model::SpoolHealth> for pb::SpoolHealth {
    fn from(d: model::SpoolHealth) -> Self {
        Self {
            bytes: d.bytes,
            max_bytes: d.max_bytes,
            pending: d.pending,
            dropped: d.dropped,
            corrupt_records: d.corrupt_records,
            acked: d.acked,
            reconnects: d.reconnects,
            quarantined: d.quarantined,
        }
    }
}

impl From<pb::LogWitnessHealth> for model::LogWitnessHealth {
    fn from(m: pb::LogWitnessHealth) -> Self {
        Self {
            checkpoint_size: m.checkpoint_size,
            receipts_verified: m.receipts_verified,
            receipts_pending: m.receipts_pending,
            findings: m.findings,
            last_finding: m.last_finding,
        }
    }
}

impl From<model::LogWitnessHealth> for pb::LogWitnessHealth {
    fn from(d: model::LogWitnessHealth) -> Self {
        Self {
            checkpoint_size: d.checkpoint_size,
            receipts_verified: d.receipts_verified,
            receipts_pending: d.receipts_pending,
            findings: d.findings,
            last_finding: d.last_finding,
        }
    }
}

impl From<pb::StoredEvent> for model::StoredEvent {
    fn from(m: pb::StoredEvent) -> Self {
        Self {
            event: m.event.map(Into::into),
            received_unix_ns: m.received_unix_ns,
            labels: m.labels,
        }
    }
}

impl From<model::StoredEvent> for pb::StoredEvent {
    fn from(d: model::StoredEvent) -> Self {
        Self {
            event: d.event.map(Into::into),
            received_unix_ns: d.received_unix_ns,
            labels: d.labels,
        }
    }
}

impl From<pb::Receipt> for model::Receipt {
    fn from(m: pb::Receipt) -> Self {
        Self {
            seq: m.seq,
            leaf_index: m.leaf_index,
            record_sha256: m.record_sha256,
            conflict: m.conflict,
            boot_id: m.boot_id,
        }
    }
}

impl From<model::Receipt> for pb::Receipt {
    fn from(d: model::Receipt) -> Self {
        Self {
            seq: d.seq,
            leaf_index: d.leaf_index,
            record_sha256: d.record_sha256,
            conflict: d.conflict,
            boot_id: d.boot_id,
        }
    }
}

impl From<pb::SessionSummary> for model::SessionSummary {
    fn from(m: pb::SessionSummary) -> Self {
        Self {
            host_id: m.host_id,
            boot_id: m.boot_id,
            session: m.session,
            parent_session: m.parent_session,
            service: m.service,
            user: m.user,
            remote_host: m.remote_host,
            tty: m.tty,
            start_unix_ns: m.start_unix_ns,
            end_unix_ns: m.end_unix_ns,
            end_reason: m.end_reason,
            execs: m.execs,
            connects: m.connects,
            child_sessions: m.child_sessions,
        }
    }
}

impl From<model::SessionSummary> for pb::SessionSummary {
    fn from(d: model::SessionSummary) -> Self {
        Self {
            host_id: d.host_id,
            boot_id: d.boot_id,
            session: d.session,
            parent_session: d.parent_session,
            service: d.service,
            user: d.user,
            remote_host: d.remote_host,
            tty: d.tty,
            start_unix_ns: d.start_unix_ns,
            end_unix_ns: d.end_unix_ns,
            end_reason: d.end_reason,
            execs: d.execs,
            connects: d.connects,
            child_sessions: d.child_sessions,
        }
    }
}

impl From<pb::HostInfo> for model::HostInfo {
    fn from(m: pb::HostInfo) -> Self {
        Self {
            host_id: m.host_id,
            boot_id: m.boot_id,
            agent_version: m.agent_version,
            first_seen_unix_ns: m.first_seen_unix_ns,
            last_heartbeat_unix_ns: m.last_heartbeat_unix_ns,
            last_event_unix_ns: m.last_event_unix_ns,
            last_seq: m.last_seq,
            events_stored: m.events_stored,
            duplicates: m.duplicates,
            connected: m.connected,
            spool: m.spool.map(Into::into),
            kernel_lost: m.kernel_lost,
            assembler_evicted: m.assembler_evicted,
            labels: m.labels,
            cert_serial: m.cert_serial,
            cert_not_after_unix_s: m.cert_not_after_unix_s,
        }
    }
}

impl From<model::HostInfo> for pb::HostInfo {
    fn from(d: model::HostInfo) -> Self {
        Self {
            host_id: d.host_id,
            boot_id: d.boot_id,
            agent_version: d.agent_version,
            first_seen_unix_ns: d.first_seen_unix_ns,
            last_heartbeat_unix_ns: d.last_heartbeat_unix_ns,
            last_event_unix_ns: d.last_event_unix_ns,
            last_seq: d.last_seq,
            events_stored: d.events_stored,
            duplicates: d.duplicates,
            connected: d.connected,
            spool: d.spool.map(Into::into),
            kernel_lost: d.kernel_lost,
            assembler_evicted: d.assembler_evicted,
            labels: d.labels,
            cert_serial: d.cert_serial,
            cert_not_after_unix_s: d.cert_not_after_unix_s,
        }
    }
}

impl From<pb::EventFilter> for model::EventFilter {
    fn from(m: pb::EventFilter) -> Self {
        Self {
            host_id: m.host_id,
            from_unix_ns: m.from_unix_ns,
            to_unix_ns: m.to_unix_ns,
            user: m.user,
            kinds: m.kinds.into_iter().map(model::EventKind::from).collect(),
            outcome: model::Outcome::from(m.outcome),
            session: m.session,
            remote_address: m.remote_address,
        }
    }
}

impl From<model::EventFilter> for pb::EventFilter {
    fn from(d: model::EventFilter) -> Self {
        Self {
            host_id: d.host_id,
            from_unix_ns: d.from_unix_ns,
            to_unix_ns: d.to_unix_ns,
            user: d.user,
            kinds: d.kinds.into_iter().map(i32::from).collect(),
            outcome: i32::from(d.outcome),
            session: d.session,
            remote_address: d.remote_address,
        }
    }
}

impl From<pb::Alert> for model::Alert {
    fn from(m: pb::Alert) -> Self {
        Self {
            id: m.id,
            time_unix_ns: m.time_unix_ns,
            rule: m.rule,
            severity: m.severity,
            host_id: m.host_id,
            summary: m.summary,
            user: m.user,
            remote_address: m.remote_address,
            count: m.count,
            seqs: m.seqs,
            sigma: m.sigma.map(Into::into),
        }
    }
}

impl From<model::Alert> for pb::Alert {
    fn from(d: model::Alert) -> Self {
        Self {
            id: d.id,
            time_unix_ns: d.time_unix_ns,
            rule: d.rule,
            severity: d.severity,
            host_id: d.host_id,
            summary: d.summary,
            user: d.user,
            remote_address: d.remote_address,
            count: d.count,
            seqs: d.seqs,
            sigma: d.sigma.map(Into::into),
        }
    }
}

impl From<pb::SigmaMatch> for model::SigmaMatch {
    fn from(m: pb::SigmaMatch) -> Self {
        Self {
            title: m.title,
            rule_id: m.rule_id,
            file: m.file,
            event: m.event.map(Into::into),
            session_chain: m.session_chain.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<model::SigmaMatch> for pb::SigmaMatch {
    fn from(d: model::SigmaMatch) -> Self {
        Self {
            title: d.title,
            rule_id: d.rule_id,
            file: d.file,
            event: d.event.map(Into::into),
            session_chain: d.session_chain.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::SignedCheckpoint> for model::SignedCheckpoint {
    fn from(m: pb::SignedCheckpoint) -> Self {
        Self {
            note: m.note,
            time_unix_ns: m.time_unix_ns,
            reason: m.reason,
            size: m.size,
        }
    }
}

impl From<model::SignedCheckpoint> for pb::SignedCheckpoint {
    fn from(d: model::SignedCheckpoint) -> Self {
        Self {
            note: d.note,
            time_unix_ns: d.time_unix_ns,
            reason: d.reason,
            size: d.size,
        }
    }
}

impl From<pb::Finding> for model::Finding {
    fn from(m: pb::Finding) -> Self {
        Self {
            problem: m.problem,
            leaf: m.leaf,
            host_id: m.host_id,
            boot_id: m.boot_id,
            seq: m.seq,
            time_unix_ns: m.time_unix_ns,
            detail: m.detail,
        }
    }
}

impl From<model::Finding> for pb::Finding {
    fn from(d: model::Finding) -> Self {
        Self {
            problem: d.problem,
            leaf: d.leaf,
            host_id: d.host_id,
            boot_id: d.boot_id,
            seq: d.seq,
            time_unix_ns: d.time_unix_ns,
            detail: d.detail,
        }
    }
}

impl From<pb::VerifyReport> for model::VerifyReport {
    fn from(m: pb::VerifyReport) -> Self {
        Self {
            log_size: m.log_size,
            leaves_checked: m.leaves_checked,
            records_intact: m.records_intact,
            pruned_by_retention: m.pruned_by_retention,
            findings: m.findings.into_iter().map(Into::into).collect(),
            checkpoints_checked: m.checkpoints_checked,
            latest: m.latest.map(Into::into),
            unlogged_records: m.unlogged_records,
        }
    }
}

impl From<model::VerifyReport> for pb::VerifyReport {
    fn from(d: model::VerifyReport) -> Self {
        Self {
            log_size: d.log_size,
            leaves_checked: d.leaves_checked,
            records_intact: d.records_intact,
            pruned_by_retention: d.pruned_by_retention,
            findings: d.findings.into_iter().map(Into::into).collect(),
            checkpoints_checked: d.checkpoints_checked,
            latest: d.latest.map(Into::into),
            unlogged_records: d.unlogged_records,
        }
    }
}
