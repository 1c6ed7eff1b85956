//! The attacks on the tamper-evidence log, on a real server, its real `RocksDB`
//! and a real agent: records edited and deleted in the database, the data
//! directory rolled back to an older copy, the log replaced under a fresh key.
//! Each is caught by `watchtowerctl verify` (exit 1, the finding named) with a
//! pinned key and a kept checkpoint, by an offsite copy of a checkpoint, or by
//! the agent as a witness of the log; a clean store verifies while it ingests.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::Value;
use watchtower_e2e::central::{HOST, Pki, Reader, Server, ctl};
use watchtower_e2e::{ALICE, ALICE_PASSWORD, Agent, Sshd, TempDir, privileged};
use watchtower_proto::pb::event::Body;
use watchtower_proto::pb::{EventFilter, StoredEvent};

fn start_agent(pki: &Pki, server: &Server) -> Agent {
    let mut flags = pki.agent_args(&server.address());
    flags.push("--no-journal".into());
    Agent::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// An agent that checks the server's log every second against the pinned key,
/// its state in `state`.
fn witnessing_agent(pki: &Pki, server: &Server, state: &Arc<TempDir>) -> Agent {
    let mut flags = pki.agent_args(&server.address());
    flags.extend([
        "--no-journal".into(),
        "--witness-interval-secs".into(),
        "1".into(),
        "--checkpoint-key".into(),
        pki.path("checkpoint-signing.pub").display().to_string(),
    ]);
    Agent::start_with(
        &[],
        state.clone(),
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn login(sshd: &Sshd) {
    let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "/usr/bin/id -un");
    assert_eq!((code, out.trim()), (0, ALICE));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(copied.success());
}

/// The size a signed checkpoint note claims (its second line).
fn note_size(note: &[u8]) -> u64 {
    String::from_utf8_lossy(note)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Open the stopped server's `RocksDB` and change one stored login attempt and
/// delete one exec, as an intruder with the files would. Returns their seqs.
fn tamper_with(data: &std::path::Path) -> (u64, u64) {
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, data).expect("list column families");
    let db = rocksdb::DB::open_cf(&options, data, &families).expect("open the server's RocksDB");
    let events = db.cf_handle("events").expect("events family");
    let mut changed = None;
    let mut removed = None;
    let prefix = format!("{HOST}\0");
    for item in db.iterator_cf(
        events,
        rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
    ) {
        let (key, value) = item.unwrap();
        if !key.starts_with(prefix.as_bytes()) {
            break;
        }
        let mut stored = StoredEvent::decode(&*value).unwrap();
        let event = stored.event.as_mut().unwrap();
        match &mut event.body {
            Some(Body::LoginAttempt(attempt)) if changed.is_none() && attempt.user == ALICE => {
                // Make it look like someone else logged in.
                attempt.user = "wt_nobody".into();
                changed = Some(event.seq);
                db.put_cf(events, &key, stored.encode_to_vec()).unwrap();
            }
            Some(Body::Exec(exec)) if removed.is_none() && exec.filename == "/usr/bin/id" => {
                removed = Some(event.seq);
                db.delete_cf(events, &key).unwrap();
            }
            _ => {}
        }
    }
    db.flush_cf(events).unwrap();
    (
        changed.expect("a login attempt of alice"),
        removed.expect("an exec of /usr/bin/id"),
    )
}

/// Cut the stopped server's log back to half its leaves (at least `min`), as an
/// intruder with the files and no key would: the leaves above and the records
/// they name deleted, every checkpoint deleted, the stored size rewritten.
/// Returns the size kept.
fn cut_log(data: &std::path::Path, min: u64) -> u64 {
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, data).expect("list column families");
    let db = rocksdb::DB::open_cf(&options, data, &families).expect("open the server's RocksDB");
    let meta = db.cf_handle("meta").unwrap();
    let size = u64::from_be_bytes(
        db.get_cf(meta, b"log_size")
            .unwrap()
            .unwrap()
            .as_slice()
            .try_into()
            .unwrap(),
    );
    let keep = (size / 2).max(min);
    assert!(keep < size, "a log of {size} leaves to cut");
    let leaves = db.cf_handle("log_leaves").unwrap();
    let mut cut_seqs = std::collections::BTreeSet::new();
    for index in keep..size {
        let key = index.to_be_bytes();
        if let Some(entry) = db.get_cf(leaves, key).unwrap() {
            let entry: Value = serde_json::from_slice(&entry).unwrap();
            if let Some(seq) = entry["seq"].as_u64() {
                cut_seqs.insert(seq);
            }
        }
        db.delete_cf(leaves, key).unwrap();
    }
    let events = db.cf_handle("events").unwrap();
    for item in db.iterator_cf(events, rocksdb::IteratorMode::Start) {
        let (key, value) = item.unwrap();
        let stored = StoredEvent::decode(&*value).unwrap();
        if stored.event.is_some_and(|e| cut_seqs.contains(&e.seq)) {
            db.delete_cf(events, &key).unwrap();
        }
    }
    let checkpoints = db.cf_handle("checkpoints").unwrap();
    for item in db.iterator_cf(checkpoints, rocksdb::IteratorMode::Start) {
        db.delete_cf(checkpoints, item.unwrap().0).unwrap();
    }
    db.put_cf(meta, b"log_size", keep.to_be_bytes()).unwrap();
    db.flush().unwrap();
    keep
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: verify clean, export and check offline, tamper, verify again"
)]
fn verify_names_a_record_changed_and_one_removed_directly_in_rocksdb() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let mut server = Server::start(&pki, "127.0.0.1", &["--checkpoint-interval-secs", "1"]);
    let sshd = Sshd::start();
    let agent = start_agent(&pki, &server);
    let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "/usr/bin/id -un");
    assert_eq!((code, out.trim()), (0, ALICE));
    agent.wait_for("the login's session end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd"
    });
    let printed = agent.stop();
    let mut reader = Reader::connect(&pki, &server);
    let all = EventFilter {
        host_id: HOST.into(),
        ..EventFilter::default()
    };
    reader.wait_for_stored(&all, printed.len());
    // The agent has stopped: after its last acknowledgements nothing more arrives.
    std::thread::sleep(Duration::from_secs(2));
    let stored = reader.events(&all).len();
    drop(reader);

    // Untouched, everything verifies against a signed checkpoint.
    let state = TempDir::new("verify-state");
    let state_arg = state.0.join("checkpoints.json").display().to_string();
    let key_arg = pki.path("checkpoint-signing.pub").display().to_string();
    let pinned = ["--public-key", key_arg.as_str(), "--state", state_arg.as_str()];
    let (code, out, _) = ctl(
        &pki,
        &server,
        &[&["verify", "--host", HOST][..], &pinned].concat(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("verified: {stored} records intact")),
        "{out}"
    );
    let (code, out, _) = ctl(&pki, &server, &[&["verify", "--json"][..], &pinned].concat());
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["signature_ok"], true);
    assert_eq!(report["records_intact"].as_u64(), Some(stored as u64));
    // Without a pinned key there is no verdict at all.
    let (code, _, err) = ctl(&pki, &server, &["verify"]);
    assert_eq!(code, 2, "{err}");

    // An export with proofs, checked offline by our verify and by an auditor's
    // script that uses none of our code; then the same bundle with one record edited.
    let bundle = state.0.join("bundle.json");
    let bundle_arg = bundle.display().to_string();
    let (code, _, err) = ctl(
        &pki,
        &server,
        &[
            "export",
            "--proofs",
            "--public-key",
            &key_arg,
            "--output",
            &bundle_arg,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let auditor = |bundle: &str| {
        let out = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/auditor/check_bundle.py"))
            .args([bundle, key_arg.as_str()])
            .output()
            .expect("python3");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        eprintln!("$ check_bundle.py\n{text}");
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, text) = auditor(&bundle_arg);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{stored} of {stored} records proven")),
        "{text}"
    );
    let offline = [
        "verify",
        "--bundle",
        bundle_arg.as_str(),
        "--public-key",
        key_arg.as_str(),
    ];
    let (code, out, _) = ctl(&pki, &server, &offline);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("verified: {stored} records proven")),
        "{out}"
    );
    let mut edited: Value = serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    edited["records"][0]["record"]["received_unix_ns"] = 1.into();
    std::fs::write(&bundle, edited.to_string()).unwrap();
    let (code, text) = auditor(&bundle_arg);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{} of {stored} records proven", stored - 1)),
        "{text}"
    );
    let (code, out, _) = ctl(&pki, &server, &offline);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 0 (leaf 0): CHANGED"), "{out}");

    // The intruder stops the server, edits one record and deletes another.
    server.terminate();
    let (changed, removed) = tamper_with(&server.data.0);
    server.restart();
    let (code, out, _) = ctl(
        &pki,
        &server,
        &[&["verify", "--host", HOST][..], &pinned].concat(),
    );
    assert_eq!(code, 1, "tampering must fail verify: {out}");
    assert!(out.contains("TAMPERING DETECTED"), "{out}");
    let findings: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("CHANGED") || l.starts_with("REMOVED") || l.starts_with("UNLOGGED"))
        .collect();
    assert_eq!(findings.len(), 2, "exactly the two records: {out}");
    assert!(
        findings[0].starts_with("CHANGED leaf")
            && findings[0].contains(&format!("host {HOST} seq {changed} ")),
        "{out}"
    );
    assert!(
        findings[1].starts_with("REMOVED leaf")
            && findings[1].contains(&format!("host {HOST} seq {removed} ")),
        "{out}"
    );
    let (code, out, _) = ctl(&pki, &server, &[&["verify", "--json"][..], &pinned].concat());
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let problems: Vec<(String, u64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["problem"].as_str().unwrap().to_owned(),
                f["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![("changed".into(), changed), ("removed".into(), removed)]
    );
    assert_eq!(report["records_intact"].as_u64(), Some(stored as u64 - 2));
}

/// The attacks on the log as a whole: the data directory rolled back to an older
/// copy (the server and its database then agree with each other), the log cut
/// back in the database without the key, and the log replaced under a fresh key.
/// Only the auditor's kept checkpoint and pinned key can tell.
/// `verify` run until it accepts a checkpoint of more than `size` leaves
/// (checkpoints are signed each second): that report.
fn accepted_beyond(size: u64, verify: impl Fn() -> (i32, Value)) -> Value {
    let started = Instant::now();
    loop {
        let (code, report) = verify();
        assert_eq!(code, 0, "{report}");
        if report["checkpoint_size"].as_u64().unwrap() > size {
            return report;
        }
        assert!(
            started.elapsed() < watchtower_e2e::PATIENCE,
            "no checkpoint beyond {size}: {report}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn verify_catches_a_rolled_back_data_directory_a_cut_log_and_a_log_resigned_with_a_new_key() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let mut server = Server::start(&pki, "127.0.0.1", &["--checkpoint-interval-secs", "1"]);
    let state = TempDir::new("rollback-state");
    let state_arg = state.0.join("checkpoints.json").display().to_string();
    // The auditor pins the verifier key once, where the intruder cannot reach it.
    let key_file = state.0.join("pinned.pub");
    std::fs::copy(pki.path("checkpoint-signing.pub"), &key_file).unwrap();
    let key_arg = key_file.display().to_string();
    let pinned = [
        "--public-key",
        key_arg.as_str(),
        "--state",
        state_arg.as_str(),
        "--json",
    ];
    let verify = |server: &Server| {
        let (code, out, _) = ctl(&pki, server, &[&["verify"][..], &pinned].concat());
        let report: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
        (code, report)
    };
    let all = EventFilter {
        host_id: HOST.into(),
        ..EventFilter::default()
    };
    // A first login, stored.
    let sshd = Sshd::start();
    let agent = start_agent(&pki, &server);
    let login = |sshd: &Sshd| {
        let (code, out) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "/usr/bin/id -un");
        assert_eq!((code, out.trim()), (0, ALICE));
    };
    login(&sshd);
    agent.wait_for("the first session end", |e| e["kind"] == "session_end");
    let mut reader = Reader::connect(&pki, &server);
    let first = reader.wait_for_stored(&all, 2).len();
    drop(reader);
    server.terminate();
    let backup = TempDir::new("rollback-copy");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", server.data.0.display()))
        .arg(&backup.0)
        .status()
        .unwrap();
    assert!(copied.success());
    server.restart();
    // The log as the copy holds it, and what reached it since: no more than this
    // is in the copy.
    let (code, report) = verify(&server);
    assert_eq!(code, 0, "{report}");
    let copied_size = report["log_size"].as_u64().unwrap();
    // A second login: more acknowledged events; the auditor accepts the log once
    // a checkpoint signs more than the copy holds (checkpoints come each second).
    login(&sshd);
    agent.wait_for_count("session ends", 2, |e| e["kind"] == "session_end");
    let mut reader = Reader::connect(&pki, &server);
    reader.wait_for_stored(&all, first + 2);
    drop(reader);
    drop(agent.stop());
    let report = accepted_beyond(copied_size, || verify(&server));
    assert!(
        report["records_intact"].as_u64().unwrap() >= (first + 2) as u64,
        "{report}"
    );
    let accepted = report["checkpoint_size"].as_u64().unwrap();

    // The intruder puts the older copy back: server and database agree again.
    server.terminate();
    std::fs::remove_dir_all(&server.data.0).unwrap();
    std::fs::create_dir_all(&server.data.0).unwrap();
    let restored = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", backup.0.display()))
        .arg(&server.data.0)
        .status()
        .unwrap();
    assert!(restored.success());
    server.restart();
    let (code, report) = verify(&server);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["findings"][0]["problem"], "rolled_back", "{report}");
    assert!(report["checkpoint_size"].as_u64().unwrap() < accepted, "{report}");

    // Or, without the key, cuts the log itself back: the leaves and records above
    // a point deleted, the checkpoints deleted, the stored size rewritten. The
    // server signs the shorter log at start; only the kept checkpoint tells.
    server.terminate();
    let keep = cut_log(&server.data.0, 2);
    server.restart();
    let (code, report) = verify(&server);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["signature_ok"], true, "{report}");
    assert_eq!(report["findings"][0]["problem"], "rolled_back", "{report}");
    assert_eq!(report["checkpoint_size"].as_u64(), Some(keep), "{report}");

    // Or starts over with an empty log under a fresh key.
    server.terminate();
    std::fs::remove_dir_all(&server.data.0).unwrap();
    std::fs::create_dir_all(&server.data.0).unwrap();
    std::fs::remove_file(pki.path("checkpoint-signing.key")).unwrap();
    server.restart();
    let (code, report) = verify(&server);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["findings"][0]["problem"], "bad_signature", "{report}");
}

/// The agent as a witness: its receipts are proven in signed checkpoints; then
/// the server's data directory is put back to an older copy. The agent reports
/// the rewound log in its health records, the server (which stores them) raises
/// the `log_witness` alert, and `verify` with the offsite copy of a checkpoint
/// (which the rolled-back server refuses to replace) or with the agent's kept
/// checkpoint fails, though the auditor kept no state of its own.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: witnessed, backed up, grown, rolled back, caught three ways"
)]
fn an_agent_witness_and_an_offsite_checkpoint_catch_a_rolled_back_server() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let offsite = TempDir::new("offsite");
    let offsite_file = offsite.0.join("checkpoint");
    let offsite_arg = offsite_file.display().to_string();
    let mut server = Server::start(
        &pki,
        "127.0.0.1",
        &[
            "--checkpoint-interval-secs",
            "1",
            "--publish-checkpoint-to",
            &offsite_arg,
        ],
    );
    let sshd = Sshd::start();
    let state = Arc::new(TempDir::new("witness-agent"));
    let agent = witnessing_agent(&pki, &server, &state);
    let witness = |e: &Value| e["kind"] == "agent_health" && e["log_witness"].is_object();
    login(&sshd);
    agent.wait_for("the session end", |e| e["kind"] == "session_end");
    let proven = agent.wait_for("receipts proven in a signed checkpoint", |e| {
        witness(e) && e["log_witness"]["receipts_verified"].as_u64() >= Some(3)
    });
    assert_eq!(
        proven["log_witness"]["findings"],
        serde_json::json!({}),
        "{proven}"
    );

    // A copy of the data directory, as an intruder would keep it.
    server.terminate();
    let at_backup = note_size(&std::fs::read(&offsite_file).unwrap());
    let backup = TempDir::new("witness-backup");
    copy_dir(&server.data.0, &backup.0);
    server.restart();
    login(&sshd);
    agent.wait_for_count("session ends", 2, |e| e["kind"] == "session_end");
    agent.wait_for("the grown log verified", |e| {
        witness(e) && e["log_witness"]["checkpoint_size"].as_u64() > Some(at_backup + 5)
    });

    // The older copy put back.
    server.terminate();
    let published = std::fs::read(&offsite_file).unwrap();
    assert!(note_size(&published) > at_backup + 5);
    std::fs::remove_dir_all(&server.data.0).unwrap();
    copy_dir(&backup.0, &server.data.0);
    server.restart();
    let caught = agent.wait_for("the agent's finding", |e| {
        witness(e) && e["log_witness"]["findings"]["rewound"] == 1
    });
    assert!(
        caught["log_witness"]["last_finding"]
            .as_str()
            .unwrap()
            .starts_with("rewound: "),
        "{caught}"
    );
    // The rolled-back server stores the agent's report and raises the alert.
    let start = Instant::now();
    loop {
        let (code, out, _) = ctl(&pki, &server, &["alerts", "--json"]);
        assert_eq!(code, 0);
        let raised = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|a| a["rule"] == "log_witness" && a["host_id"] == HOST && a["severity"] == "critical");
        if raised {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no log_witness alert: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(agent.stop());
    // The restored server would not replace the offsite copy with its smaller log.
    assert_eq!(std::fs::read(&offsite_file).unwrap(), published);

    // An auditor with no kept state of its own, but the offsite copy and the
    // agent's kept checkpoint.
    let fresh = TempDir::new("witness-auditor");
    let state_arg = fresh.0.join("checkpoints.json").display().to_string();
    let key_arg = pki.path("checkpoint-signing.pub").display().to_string();
    let agent_copy = state.0.join("log-witness.checkpoint").display().to_string();
    let (code, out, _) = ctl(
        &pki,
        &server,
        &[
            "verify",
            "--json",
            "--public-key",
            &key_arg,
            "--state",
            &state_arg,
            "--witness",
            &offsite_arg,
            "--witness",
            &agent_copy,
        ],
    );
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let problems: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap())
        .collect();
    assert_eq!(problems, vec!["rolled_back", "rolled_back"], "{report}");
}

/// While an agent ships a stream of logins, every run of verify passes (exit 0),
/// each proving the log extends the checkpoint the run before accepted.
#[test]
fn a_clean_store_verifies_while_events_are_ingested() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &["--checkpoint-interval-secs", "1"]);
    let sshd = Arc::new(Sshd::start());
    let agent = start_agent(&pki, &server);
    let logins = {
        let sshd = sshd.clone();
        std::thread::spawn(move || {
            for _ in 0..8 {
                login(&sshd);
            }
        })
    };
    let state = TempDir::new("ingesting-auditor");
    let state_arg = state.0.join("checkpoints.json").display().to_string();
    let key_arg = pki.path("checkpoint-signing.pub").display().to_string();
    let mut sizes = Vec::new();
    while !logins.is_finished() || sizes.len() < 3 {
        let (code, out, _) = ctl(
            &pki,
            &server,
            &[
                "verify",
                "--json",
                "--public-key",
                &key_arg,
                "--state",
                &state_arg,
            ],
        );
        let report: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
        assert_eq!(code, 0, "{report}");
        sizes.push(report["checkpoint_size"].as_u64().unwrap());
    }
    logins.join().unwrap();
    agent.wait_for_count("session ends", 8, |e| e["kind"] == "session_end");
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(
        sizes.last() > sizes.first(),
        "the log grew while verified: {sizes:?}"
    );
}
