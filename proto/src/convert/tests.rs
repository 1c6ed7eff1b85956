use std::collections::HashMap;

use watchtower_model as model;

use crate::pb;

fn process() -> Option<pb::Process> {
    Some(pb::Process {
        pid: 10,
        tid: 11,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        comm: "sshd".into(),
        euid: Some(0),
        loginuid: Some(1000),
    })
}

/// One record of every body, with every optional part set and an enum code
/// this build does not know.
fn records() -> Vec<pb::StoredEvent> {
    use pb::event::Body;
    let bodies = vec![
        Body::LoginAttempt(pb::LoginAttempt {
            service: "sshd".into(),
            user: "alice".into(),
            user_known: Some(true),
            remote_host: Some("10.0.0.1".into()),
            outcome: 9,
            failed_step: Some("authenticate".into()),
            from_session: Some(0xab),
            process: process(),
            ..Default::default()
        }),
        Body::SessionStart(pb::SessionStart {
            session: 1,
            parent_session: Some(2),
            user: "alice".into(),
            process: process(),
            ..Default::default()
        }),
        Body::SessionEnd(pb::SessionEnd {
            session: 1,
            execs: 3,
            process: process(),
            ..Default::default()
        }),
        Body::Exec(pb::Exec {
            session: Some(1),
            filename: "/bin/true".into(),
            argv: vec!["true".into()],
            result: -2,
            process: process(),
            env: vec!["LD_PRELOAD=/tmp/x.so".into()],
            env_cut: true,
            ..Default::default()
        }),
        Body::Connect(pb::Connect {
            family: "inet".into(),
            address: "10.0.0.2".into(),
            port: Some(22),
            via: Some("send".into()),
            process: process(),
            ..Default::default()
        }),
        Body::LoginVerdict(pb::LoginVerdict {
            verdict: pb::Verdict::KernelOnly as i32,
            outcome: pb::Outcome::Success as i32,
            kernel: Some(pb::KernelWitness {
                seq: 4,
                outcome: 1,
                ..Default::default()
            }),
            journal: Some(pb::JournalWitness {
                lines: vec!["a".into()],
                outcome: 2,
                ..Default::default()
            }),
            ..Default::default()
        }),
        Body::AgentHealth(pb::AgentHealth {
            reason: "start".into(),
            journal: Some(pb::JournalHealth {
                records: 5,
                ..Default::default()
            }),
            verdicts: Some(pb::VerdictCounters {
                confirmed: 1,
                ..Default::default()
            }),
            lost: HashMap::from([("exec".into(), 2)]),
            spool: Some(pb::SpoolHealth {
                dropped: HashMap::from([("spool_full".into(), 1)]),
                ..Default::default()
            }),
            log_witness: Some(pb::LogWitnessHealth {
                findings: HashMap::from([("forked".into(), 1)]),
                ..Default::default()
            }),
            resumed_after_seq: Some(3),
            capture_start: Some(pb::CaptureStart {
                how: "gap".into(),
                gap_from_unix_ns: Some(1),
                gap_to_unix_ns: Some(2),
            }),
            evicted: HashMap::from([("session".into(), 4)]),
            ..Default::default()
        }),
    ];
    bodies
        .into_iter()
        .map(Some)
        .chain([None])
        .enumerate()
        .map(|(seq, body)| pb::StoredEvent {
            event: Some(pb::Event {
                host_id: "web-1".into(),
                boot_id: "b".into(),
                seq: seq as u64,
                time_unix_ns: 1_000 + seq as u64,
                body,
            }),
            received_unix_ns: 2_000,
            labels: HashMap::from([("region".into(), "eu".into())]),
        })
        .collect()
}

#[test]
fn records_convert_both_ways_without_change_and_print_alike() {
    for wire in records() {
        let domain = model::StoredEvent::from(wire.clone());
        assert_eq!(
            serde_json::to_value(&domain).unwrap(),
            serde_json::to_value(&wire).unwrap(),
            "the domain type's JSON (what the log hashes) is the message's"
        );
        assert_eq!(pb::StoredEvent::from(domain), wire);
    }
}

#[test]
fn an_unknown_enum_code_survives_the_round_trip() {
    let wire = records().remove(0);
    let domain = model::StoredEvent::from(wire.clone());
    let Some(model::Body::LoginAttempt(attempt)) = domain.event.as_ref().and_then(|e| e.body.clone()) else {
        panic!("a login attempt");
    };
    assert_eq!(attempt.outcome, model::Outcome::Unknown(9));
    assert_eq!(
        serde_json::to_value(&domain).unwrap()["event"]["body"]["login_attempt"]["outcome"],
        9
    );
}

#[test]
fn the_rest_converts_both_ways_without_change() {
    let summary = pb::SessionSummary {
        session: 5,
        child_sessions: vec![6, 7],
        ..Default::default()
    };
    let alert = pb::Alert {
        id: 1,
        seqs: vec![3],
        sigma: Some(pb::SigmaMatch {
            event: records().pop(),
            session_chain: vec![summary.clone()],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(pb::Alert::from(model::Alert::from(alert.clone())), alert);
    let host = pb::HostInfo {
        kernel_lost: HashMap::from([("exec".into(), 1)]),
        assembler_evicted: HashMap::from([("pam_transaction".into(), 2)]),
        ..Default::default()
    };
    assert_eq!(pb::HostInfo::from(model::HostInfo::from(host.clone())), host);
    let filter = pb::EventFilter {
        kinds: vec![4, 99],
        outcome: 2,
        session: Some(1),
        ..Default::default()
    };
    let domain = model::EventFilter::from(filter.clone());
    assert_eq!(
        domain.kinds,
        [model::EventKind::Exec, model::EventKind::Unknown(99)]
    );
    assert_eq!(pb::EventFilter::from(domain), filter);
    let report = pb::VerifyReport {
        findings: vec![pb::Finding {
            problem: "changed".into(),
            ..Default::default()
        }],
        latest: Some(pb::SignedCheckpoint {
            note: b"n".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        pb::VerifyReport::from(model::VerifyReport::from(report.clone())),
        report
    );
    let live = pb::LiveItem {
        item: Some(pb::live_item::Item::Conflict(records().remove(1))),
    };
    assert_eq!(
        pb::LiveItem::from(model::LiveItem::try_from(live.clone()).unwrap()),
        live
    );
    assert!(model::LiveItem::try_from(pb::LiveItem::default()).is_err());
    let receipt = pb::Receipt {
        seq: 1,
        leaf_index: 2,
        record_sha256: vec![1; 32],
        conflict: true,
        boot_id: "b".into(),
    };
    assert_eq!(pb::Receipt::from(model::Receipt::from(receipt.clone())), receipt);
}
