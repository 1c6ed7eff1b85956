//! Login verdicts on the wire, and the text enums shared with the JSON output.

use super::*;

fn wire_sshd_kernel_witness() -> pb::KernelWitness {
    pb::KernelWitness {
        seq: 1030,
        time_unix_ns: NOW_NS - 5_000_000_000,
        service: "sshd".into(),
        user: "alice".into(),
        outcome: pb::Outcome::Success as i32,
        remote_host: Some("203.0.113.7".into()),
        pid: 48_101,
        ppid: 912,
        from_session: Some(0x0000_0011_0000_0042),
    }
}

fn wire_sshd_journal_witness() -> pb::JournalWitness {
    let login = sshd_journal_login();
    pb::JournalWitness {
        program: "sshd".into(),
        outcome: pb::Outcome::Success as i32,
        attempts: 1,
        user: "alice".into(),
        invalid_user: false,
        method: Some("publickey".into()),
        key_type: Some("ED25519-CERT".into()),
        key_fingerprint: Some("SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into()),
        key_certificate: Some("ID alice@corp (serial 42) CA ED25519 SHA256:Yw3Nq".into()),
        remote_address: Some("203.0.113.7".into()),
        remote_port: Some(51_822),
        local_port: Some(22),
        tty: None,
        by_user: None,
        sudo_user: None,
        sudo_decision: None,
        sudo_pwd: None,
        sudo_target_user: None,
        sudo_command: None,
        kernel_expected: true,
        time_us: 1_773_480_408_591_002,
        cursor: "s=8c1e;i=4f2a;b=3f1c;m=9a;t=64d;x=77".into(),
        writer_pid: 48_101,
        writer_uid: Some(0),
        writer_comm: Some("sshd-session".into()),
        writer_exe: Some("/usr/lib/openssh/sshd-session".into()),
        writer_identifier: "sshd-session".into(),
        identity_mismatch: false,
        lines: login.lines,
    }
}

#[test]
fn wire_login_verdict_confirmed_with_both_witnesses() {
    let expected = wire_envelope(
        1047,
        pb::event::Body::LoginVerdict(pb::LoginVerdict {
            verdict: pb::Verdict::Confirmed as i32,
            reason: "both_witnesses".into(),
            program: "sshd".into(),
            user: "alice".into(),
            outcome: pb::Outcome::Success as i32,
            attempts: 1,
            login_time_unix_ns: NOW_NS - 5_000_000_000,
            auth_method: Some("publickey".into()),
            key_fingerprint: Some("SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into()),
            remote_address: Some("203.0.113.7".into()),
            remote_port: Some(51_822),
            command: None,
            user_mismatch: true,
            kernel: Some(wire_sshd_kernel_witness()),
            journal: Some(wire_sshd_journal_witness()),
        }),
    );
    let wire = to_wire(&confirmed_sshd());
    assert_eq!(wire, expected);
    let Some(pb::event::Body::LoginVerdict(v)) = &wire.body else {
        unreachable!()
    };
    assert_eq!(v.journal.as_ref().unwrap().lines.len(), 2);
}

#[test]
fn wire_login_verdict_journal_only_sudo() {
    let expected = wire_envelope(
        1048,
        pb::event::Body::LoginVerdict(pb::LoginVerdict {
            verdict: pb::Verdict::JournalOnly as i32,
            reason: "no_kernel_record".into(),
            program: "sudo".into(),
            user: "bob".into(),
            outcome: pb::Outcome::Failure as i32,
            attempts: 3,
            login_time_unix_ns: 1_773_480_413_000_017_000,
            auth_method: None,
            key_fingerprint: None,
            remote_address: None,
            remote_port: None,
            command: Some("/usr/bin/systemctl restart nginx".into()),
            user_mismatch: false,
            kernel: None,
            journal: Some(pb::JournalWitness {
                program: "sudo".into(),
                outcome: pb::Outcome::Failure as i32,
                attempts: 3,
                user: "bob".into(),
                invalid_user: true,
                method: None,
                key_type: None,
                key_fingerprint: None,
                key_certificate: None,
                remote_address: None,
                remote_port: None,
                local_port: None,
                tty: Some("pts/1".into()),
                by_user: Some("carol".into()),
                sudo_user: Some("bob".into()),
                sudo_decision: Some("incorrect_password".into()),
                sudo_pwd: Some("/home/bob".into()),
                sudo_target_user: Some("root".into()),
                sudo_command: Some("/usr/bin/systemctl restart nginx".into()),
                kernel_expected: false,
                time_us: 1_773_480_413_000_017,
                cursor: "s=8c1e;i=4f30;b=3f1c;m=9f;t=64e;x=78".into(),
                writer_pid: 50_777,
                writer_uid: None,
                writer_comm: None,
                writer_exe: None,
                writer_identifier: "sudo".into(),
                identity_mismatch: true,
                lines: sudo_journal_login().lines,
            }),
        }),
    );
    assert_eq!(to_wire(&journal_only_sudo()), expected);
}

#[test]
fn wire_login_verdict_kernel_only_and_unchecked() {
    let expected = wire_envelope(
        1049,
        pb::event::Body::LoginVerdict(pb::LoginVerdict {
            verdict: pb::Verdict::KernelOnly as i32,
            reason: "journald_not_accepting".into(),
            program: "su".into(),
            user: "root".into(),
            outcome: pb::Outcome::Failure as i32,
            attempts: 1,
            login_time_unix_ns: NOW_NS,
            auth_method: None,
            key_fingerprint: None,
            remote_address: None,
            remote_port: None,
            command: None,
            user_mismatch: false,
            kernel: Some(pb::KernelWitness {
                seq: 1041,
                time_unix_ns: NOW_NS,
                service: "su-l".into(),
                user: "root".into(),
                outcome: pb::Outcome::Failure as i32,
                remote_host: None,
                pid: 48_213,
                ppid: 48_190,
                from_session: None,
            }),
            journal: None,
        }),
    );
    assert_eq!(to_wire(&kernel_only_su()), expected);

    let Some(pb::event::Body::LoginVerdict(v)) = to_wire(&unchecked_login()).body else {
        panic!("not a verdict")
    };
    assert_eq!(v.verdict(), pb::Verdict::Unchecked);
    assert_eq!(v.reason, "kernel_witness_off");
    assert_eq!(v.program, "login");
    assert_eq!(v.user, "operator");
    assert_eq!(v.outcome(), pb::Outcome::Success);
    assert_eq!(v.login_time_unix_ns, 1_773_480_400_000_000_000);
    assert_eq!((v.kernel, v.journal), (None, None));
}

#[test]
fn sudo_decisions_and_keys_without_certificate() {
    let mut login = sudo_journal_login();
    for (outcome, decision) in [
        (SudoOutcome::Allowed, "allowed"),
        (
            SudoOutcome::IncorrectPassword { attempts: 2 },
            "incorrect_password",
        ),
        (
            SudoOutcome::Denied {
                reason: "user NOT in sudoers".into(),
            },
            "denied",
        ),
    ] {
        login.sudo.as_mut().unwrap().outcome = outcome;
        let w = journal_witness(&login);
        assert_eq!(w.sudo_decision.as_deref(), Some(decision));
    }
    login.sudo.as_mut().unwrap().pwd = None;
    login.sudo.as_mut().unwrap().target_user = None;
    login.sudo.as_mut().unwrap().command = None;
    let w = journal_witness(&login);
    assert_eq!(w.sudo_user.as_deref(), Some("bob"));
    assert_eq!(
        (w.sudo_pwd, w.sudo_target_user, w.sudo_command),
        (None, None, None)
    );

    let mut login = sshd_journal_login();
    login.key.as_mut().unwrap().kind = "RSA".into();
    login.key.as_mut().unwrap().certificate = None;
    let w = journal_witness(&login);
    assert_eq!(w.key_type.as_deref(), Some("RSA"));
    assert!(w.key_fingerprint.is_some());
    assert_eq!(w.key_certificate, None);
    assert_eq!(w.sudo_decision, None);
}

/// The names written as text are serde's, so the wire and the JSON output agree.
#[test]
fn text_enums_match_the_json_output() {
    let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
    for step in [
        PamStep::Start,
        PamStep::Authenticate,
        PamStep::Account,
        PamStep::OpenSession,
    ] {
        assert_eq!(step.name(), json(serde_json::to_value(step).unwrap()));
    }
    for reason in [SessionEndReason::Closed, SessionEndReason::ProcessExited] {
        assert_eq!(reason.name(), json(serde_json::to_value(reason).unwrap()));
    }
    for program in [
        Program::Sshd,
        Program::Sudo,
        Program::Su,
        Program::Login,
        Program::Logind,
    ] {
        assert_eq!(program.key(), json(serde_json::to_value(program).unwrap()));
    }
    for outcome in [
        SudoOutcome::Allowed,
        SudoOutcome::IncorrectPassword { attempts: 3 },
        SudoOutcome::Denied {
            reason: "command not allowed".into(),
        },
    ] {
        let tagged = serde_json::to_value(&outcome).unwrap();
        assert_eq!(outcome.decision(), json(tagged["decision"].clone()));
    }
}

#[test]
fn prost_round_trip_is_lossless() {
    for (event, _) in samples() {
        let wire = to_wire(&event);
        let bytes = wire.encode_to_vec();
        let back = pb::Event::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back, wire, "seq {}", event.seq);
    }
}

#[test]
fn kind_of_each_wire_event() {
    for (event, kind) in samples() {
        assert_eq!(kind_on_the_wire(&event), kind, "seq {}", event.seq);
    }
    // The kind's name is the `kind` tag of the agent's JSON output.
    for (event, _) in samples() {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(kind_on_the_wire(&event).name(), json["kind"], "seq {}", event.seq);
    }
}

/// The kind the server reads from an event as the agent sends it.
fn kind_on_the_wire(event: &Event) -> EventKind {
    watchtower_model::Event::from(to_wire(event)).kind()
}
