//! The store's tests against a real `RocksDB`.

use watchtower_model::Body;
use watchtower_model::{
    Connect, Event, EventFilter, EventKind, Exec, LoginAttempt, Outcome, SessionEnd, SessionStart,
    StoredEvent,
};

use super::{EventStore, StoreError};
use crate::Scratch;

fn event(seq: u64, time: u64, body: Body) -> Event {
    Event {
        host_id: "web-1".into(),
        boot_id: "boot-a".into(),
        seq,
        time_unix_ns: time,
        body: Some(body),
    }
}

fn login(user: &str, remote: &str, outcome: Outcome, from: Option<u64>) -> Body {
    Body::LoginAttempt(LoginAttempt {
        service: "sshd".into(),
        user: user.into(),
        remote_host: Some(remote.into()),
        outcome,
        from_session: from,
        ..LoginAttempt::default()
    })
}

fn exec(session: u64, user: &str, file: &str) -> Body {
    Body::Exec(Exec {
        session: Some(session),
        session_user: Some(user.into()),
        filename: file.into(),
        ..Exec::default()
    })
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.event.as_ref().unwrap().seq).collect()
}

fn query(store: &EventStore, edit: impl Fn(&mut EventFilter)) -> Vec<u64> {
    let mut filter = EventFilter::default();
    edit(&mut filter);
    seqs(&store.query(&filter, 1000, &[]).unwrap().0)
}

/// A password login, its session running two programs and a connect, a su
/// inside it with its own session and program, all closed; then a failed login
/// from elsewhere.
fn history() -> Vec<Event> {
    vec![
        event(1, 1_000, login("alice", "127.0.0.1", Outcome::Success, None)),
        event(
            2,
            1_001,
            Body::SessionStart(SessionStart {
                session: 0xa,
                service: "sshd".into(),
                user: "alice".into(),
                remote_host: Some("127.0.0.1".into()),
                tty: Some("ssh".into()),
                ..SessionStart::default()
            }),
        ),
        event(3, 1_002, exec(0xa, "alice", "/usr/bin/id")),
        event(
            4,
            1_003,
            Body::Connect(Connect {
                session: Some(0xa),
                session_user: Some("alice".into()),
                family: "inet".into(),
                address: "10.0.0.9".into(),
                port: Some(443),
                ..Connect::default()
            }),
        ),
        event(5, 1_004, login("bob", "", Outcome::Success, Some(0xa))),
        event(
            6,
            1_005,
            Body::SessionStart(SessionStart {
                session: 0xb,
                parent_session: Some(0xa),
                service: "su".into(),
                user: "bob".into(),
                ..SessionStart::default()
            }),
        ),
        event(7, 1_006, exec(0xb, "bob", "/usr/bin/whoami")),
        event(
            8,
            1_007,
            Body::SessionEnd(SessionEnd {
                session: 0xb,
                parent_session: Some(0xa),
                service: "su".into(),
                user: "bob".into(),
                reason: "closed".into(),
                duration_ns: 2,
                execs: 1,
                ..SessionEnd::default()
            }),
        ),
        event(
            9,
            1_008,
            Body::SessionEnd(SessionEnd {
                session: 0xa,
                service: "sshd".into(),
                user: "alice".into(),
                remote_host: Some("127.0.0.1".into()),
                reason: "closed".into(),
                duration_ns: 7,
                execs: 2,
                connects: 1,
                ..SessionEnd::default()
            }),
        ),
        event(10, 2_000, login("alice", "192.0.2.7", Outcome::Failure, None)),
    ]
}

#[test]
fn stores_once_and_counts_resent_events_as_duplicates() {
    let dir = Scratch::new("dedup");
    let store = EventStore::open(&dir.0).unwrap();
    let all = history();
    let first = store.append("web-1", all[..6].to_vec(), 5, 0).unwrap();
    assert_eq!((first.stored.len(), first.duplicates), (6, 0));
    // Resent after a cut: the overlap is recognised, the rest stored; a repeat
    // within one batch counts too.
    let mut again = all[4..].to_vec();
    again.push(all[9].clone());
    let second = store.append("web-1", again, 6, 0).unwrap();
    assert_eq!((second.stored.len(), second.duplicates), (4, 3));
    assert_eq!(second.last_seq, 10);
    assert_eq!(
        query(&store, |f| f.host_id = "web-1".into()),
        (1..=10).collect::<Vec<_>>()
    );
    let info = store.host("web-1").unwrap().unwrap();
    assert_eq!((info.events_stored, info.duplicates, info.last_seq), (10, 3, 10));
    assert_eq!(info.first_seen_unix_ns, 5);
    drop(store);
    // The dedup keys survive a restart.
    let store = EventStore::open(&dir.0).unwrap();
    let third = store.append("web-1", all.clone(), 7, 0).unwrap();
    assert_eq!((third.stored.len(), third.duplicates), (0, 10));
    // The same seq from another boot is another event.
    let mut other_boot = all[0].clone();
    other_boot.boot_id = "boot-b".into();
    assert_eq!(
        store
            .append("web-1", vec![other_boot], 8, 0)
            .unwrap()
            .stored
            .len(),
        1
    );
}

#[test]
fn queries_use_each_index_and_every_filter() {
    let dir = Scratch::new("query");
    let store = EventStore::open(&dir.0).unwrap();
    store.append("web-1", history(), 1, 0).unwrap();
    let mut other = history()[0].clone();
    other.host_id = "db-1".into();
    store.append("db-1", vec![other], 1, 0).unwrap();

    assert_eq!(query(&store, |_| {}).len(), 11);
    assert_eq!(query(&store, |f| f.host_id = "db-1".into()), vec![1]);
    assert_eq!(query(&store, |f| f.user = "alice".into()).len(), 7);
    assert_eq!(
        query(&store, |f| {
            f.user = "alice".into();
            f.host_id = "web-1".into();
            f.kinds = vec![EventKind::LoginAttempt];
        }),
        vec![1, 10]
    );
    assert_eq!(
        query(&store, |f| {
            f.user = "alice".into();
            f.outcome = Outcome::Failure;
        }),
        vec![10]
    );
    assert_eq!(query(&store, |f| f.remote_address = "192.0.2.7".into()), vec![10]);
    assert_eq!(query(&store, |f| f.remote_address = "10.0.0.9".into()), vec![4]);
    assert_eq!(
        query(&store, |f| {
            f.host_id = "web-1".into();
            f.session = Some(0xb);
        }),
        vec![6, 7, 8]
    );
    assert_eq!(
        query(&store, |f| {
            f.host_id = "web-1".into();
            f.session = Some(0xa);
        }),
        vec![2, 3, 4, 5, 6, 8, 9]
    );
    assert_eq!(
        query(&store, |f| {
            f.from_unix_ns = 1_002;
            f.to_unix_ns = 1_004;
        }),
        vec![3, 4]
    );
    assert_eq!(
        query(&store, |f| {
            f.host_id = "web-1".into();
            f.from_unix_ns = 1_008;
        }),
        vec![9, 10]
    );
    let filter = EventFilter {
        session: Some(0xa),
        ..EventFilter::default()
    };
    assert!(matches!(
        store.query(&filter, 10, &[]),
        Err(StoreError::SessionWithoutHost)
    ));
}

#[test]
fn a_page_ends_at_its_byte_budget_and_the_next_goes_on() {
    let dir = Scratch::new("page-bytes");
    let store = EventStore::open(&dir.0).unwrap();
    let large: Vec<Event> = (1..=100)
        .map(|seq| {
            let mut body = exec(0xa, "alice", "/usr/bin/big");
            if let Body::Exec(exec) = &mut body {
                exec.argv = vec!["x".repeat(100 * 1024)];
            }
            event(seq, 1_000 + seq, body)
        })
        .collect();
    store.append("web-1", large, 1, 0).unwrap();
    let by_host = EventFilter {
        host_id: "web-1".into(),
        ..EventFilter::default()
    };
    for filter in [EventFilter::default(), by_host] {
        let (first, token) = store.query(&filter, 1000, &[]).unwrap();
        assert!(
            first.len() < 100 && first.len() >= 20,
            "{} events of 100 KiB",
            first.len()
        );
        assert!(!token.is_empty());
        let mut paged = seqs(&first);
        let mut token = token;
        while !token.is_empty() {
            let (page, next) = store.query(&filter, 1000, &token).unwrap();
            paged.extend(seqs(&page));
            token = next;
        }
        assert_eq!(paged, (1..=100).collect::<Vec<_>>());
    }
}

#[test]
fn pages_cover_everything_once() {
    let dir = Scratch::new("pages");
    let store = EventStore::open(&dir.0).unwrap();
    store.append("web-1", history(), 1, 0).unwrap();
    for edit in [
        (|_: &mut EventFilter| {}) as fn(&mut EventFilter),
        |f| f.host_id = "web-1".into(),
        |f| f.user = "alice".into(),
    ] {
        let mut filter = EventFilter::default();
        edit(&mut filter);
        let all = seqs(&store.query(&filter, 1000, &[]).unwrap().0);
        let mut paged = Vec::new();
        let mut token = Vec::new();
        loop {
            let (page, next) = store.query(&filter, 3, &token).unwrap();
            assert!(page.len() <= 3);
            paged.extend(seqs(&page));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(paged, all);
    }
    // A token from one plan does not resume another.
    let by_host = EventFilter {
        host_id: "web-1".into(),
        ..EventFilter::default()
    };
    let (_, token) = store.query(&by_host, 2, &[]).unwrap();
    let by_user = EventFilter {
        user: "alice".into(),
        ..EventFilter::default()
    };
    assert!(matches!(
        store.query(&by_user, 2, &token),
        Err(StoreError::BadPageToken)
    ));
}

#[test]
fn sessions_are_summarised_with_their_tree() {
    let dir = Scratch::new("sessions");
    let store = EventStore::open(&dir.0).unwrap();
    // Arriving in two batches changes nothing.
    let all = history();
    store.append("web-1", all[..4].to_vec(), 1, 0).unwrap();
    store.append("web-1", all[4..].to_vec(), 1, 0).unwrap();
    let (summary, events, truncated) = store.session("web-1", 0xa).unwrap().unwrap();
    assert_eq!(summary.user, "alice");
    assert_eq!(summary.service, "sshd");
    assert_eq!(summary.remote_host.as_deref(), Some("127.0.0.1"));
    assert_eq!((summary.start_unix_ns, summary.end_unix_ns), (1_001, 1_008));
    assert_eq!((summary.execs, summary.connects), (2, 1));
    assert_eq!(summary.end_reason.as_deref(), Some("closed"));
    assert_eq!(summary.child_sessions, vec![0xb]);
    assert!(!truncated);
    // The parent's view holds the child's program too.
    assert_eq!(seqs(&events), vec![2, 3, 4, 5, 6, 7, 8, 9]);
    let (child, _, _) = store.session("web-1", 0xb).unwrap().unwrap();
    assert_eq!((child.parent_session, child.user.as_str()), (Some(0xa), "bob"));
    assert!(store.session("web-1", 0xc).unwrap().is_none());
    assert!(store.session("db-1", 0xa).unwrap().is_none());
}

#[test]
fn retention_removes_old_events_and_their_index_entries() {
    let dir = Scratch::new("retention");
    let store = EventStore::open(&dir.0).unwrap();
    store.append("web-1", history(), 1, 0).unwrap();
    assert_eq!(store.prune_before(1_005).unwrap(), 5);
    assert_eq!(query(&store, |_| {}), vec![6, 7, 8, 9, 10]);
    assert_eq!(query(&store, |f| f.user = "alice".into()), vec![9, 10]);
    assert_eq!(
        query(&store, |f| f.remote_address = "10.0.0.9".into()),
        Vec::<u64>::new()
    );
    assert_eq!(store.oldest_event().unwrap(), Some(1_005));
    // Resent events older than the cut-off are acknowledged, not stored again.
    let appended = store.append("web-1", history(), 2, 1_005).unwrap();
    assert_eq!(
        (appended.stored.len(), appended.expired, appended.duplicates),
        (0, 5, 5)
    );
    assert_eq!(query(&store, |_| {}).len(), 5);
}

#[test]
fn hosts_appending_at_once_share_syncs_and_the_log_stays_whole_and_in_commit_order() {
    use watchtower_tlog::LeafEntry;
    const HOSTS: u64 = 8;
    const BATCHES: u64 = 25;
    const PER_BATCH: u64 = 20;
    let dir = Scratch::new("group-commit");
    let store = std::sync::Arc::new(EventStore::open(&dir.0).unwrap());
    let threads: Vec<_> = (0..HOSTS)
        .map(|h| {
            let store = store.clone();
            std::thread::spawn(move || {
                let host = format!("host-{h}");
                let mut receipts = Vec::new();
                for b in 0..BATCHES {
                    let events = (0..PER_BATCH)
                        .map(|i| {
                            let seq = b * PER_BATCH + i + 1;
                            Event {
                                host_id: host.clone(),
                                ..event(seq, 1_000 + seq, exec(7, "alice", "/bin/true"))
                            }
                        })
                        .collect();
                    let appended = store.append(&host, events, 5, 0).unwrap();
                    assert_eq!(appended.stored.len() as u64, PER_BATCH);
                    receipts.extend(
                        appended
                            .receipts
                            .iter()
                            .map(|r| (r.leaf_index, host.clone(), r.seq)),
                    );
                }
                receipts
            })
        })
        .collect();
    let mut receipts: Vec<(u64, String, u64)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    receipts.sort();
    let total = HOSTS * BATCHES * PER_BATCH;
    // Every leaf once, no gap, and each names the record its receipt was for.
    assert_eq!(
        receipts.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    assert_eq!(store.log_head().size, total);
    let mut tree = watchtower_tlog::tree::MemoryLog::default();
    let mut start = 0;
    while start < total {
        let entries = store.log_entries(start, 0).unwrap();
        for served in &entries {
            let (_, host, seq) = &receipts[served.index as usize];
            let Ok(LeafEntry::Record { id, .. }) = LeafEntry::decode(&served.entry) else {
                panic!("leaf {} is not a record", served.index);
            };
            assert_eq!((&id.host_id, id.seq), (host, *seq), "leaf {}", served.index);
            tree.push(watchtower_tlog::tlog_tiles::record_hash(&served.entry));
        }
        start += entries.len() as u64;
    }
    // The root the store keeps is the root of exactly these leaves, in this order.
    assert_eq!(store.log_head().root, tree.root());
    // And within each host, leaves follow the host's own order.
    for h in 0..HOSTS {
        let host = format!("host-{h}");
        let seqs: Vec<u64> = receipts.iter().filter(|r| r.1 == host).map(|r| r.2).collect();
        assert_eq!(seqs, (1..=BATCHES * PER_BATCH).collect::<Vec<_>>());
    }
    let (groups, batches) = store.group_commits();
    assert_eq!(batches, HOSTS * BATCHES);
    assert!(groups <= batches);
}

#[test]
fn a_store_that_keeps_receipts_by_event_gives_each_events_leaf_later() {
    let dir = Scratch::new("receipts-by-event");
    let store = EventStore::open(&dir.0).unwrap();
    let all = history();
    let boot = all[0].boot_id.clone();
    // Not kept by a single server: its Acks carry the receipts.
    store.append("web-1", all[..2].to_vec(), 1, 0).unwrap();
    assert!(
        store
            .receipts_of("web-1", &[(boot.clone(), 1)])
            .unwrap()
            .is_empty()
    );
    store.keep_receipts_by_event();
    let appended = store.append("web-1", all[2..].to_vec(), 2, 0).unwrap();
    let asked: Vec<(String, u64)> = (1..=10).map(|seq| (boot.clone(), seq)).collect();
    let later = store.receipts_of("web-1", &asked).unwrap();
    // The same leaves and record hashes as the Ack's, with the boot named.
    let from_ack: Vec<(u64, u64, Vec<u8>)> = appended
        .receipts
        .iter()
        .map(|r| (r.seq, r.leaf_index, r.record_sha256.clone()))
        .collect();
    let given: Vec<(u64, u64, Vec<u8>)> = later
        .iter()
        .map(|r| (r.seq, r.leaf_index, r.record_sha256.clone()))
        .collect();
    assert_eq!(given, from_ack);
    assert!(later.iter().all(|r| r.boot_id == boot && !r.conflict));
    // Another host's events, and another boot's, are not this host's.
    assert!(store.receipts_of("web-2", &asked).unwrap().is_empty());
    assert!(
        store
            .receipts_of("web-1", &[("other".into(), 3)])
            .unwrap()
            .is_empty()
    );
    // Retention removes them with the events.
    store.prune_before(1_005).unwrap();
    let kept: Vec<u64> = store
        .receipts_of("web-1", &asked)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(kept, vec![6, 7, 8, 9, 10]);
}
