use std::collections::HashMap;

use serde_json::Value;
use watchtower_model::{
    AgentHealth, Alert, Body, Connect, Event, Exec, LoginAttempt, LoginVerdict, Outcome, Process, SessionEnd,
    SessionStart, SessionSummary, SigmaMatch, StoredEvent, Verdict,
};

use super::{alert, event, event_in_login};

const T: u64 = 1_700_000_000_000_000_000;

fn stored(seq: u64, body: Option<Body>) -> StoredEvent {
    StoredEvent {
        event: Some(Event {
            host_id: "web-1".into(),
            boot_id: "b1".into(),
            seq,
            time_unix_ns: T + seq * 1_000_000,
            body,
        }),
        received_unix_ns: T + seq * 1_000_000 + 5_000_000,
        labels: HashMap::from([("env".to_owned(), "prod".to_owned())]),
    }
}

fn sshd() -> Process {
    Process {
        pid: 900,
        tid: 900,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "sshd".into(),
        euid: None,
        loginuid: None,
    }
}

fn bash() -> Process {
    Process {
        pid: 1234,
        tid: 1234,
        ppid: 1200,
        uid: 1001,
        gid: 1001,
        comm: "bash".into(),
        euid: Some(0),
        loginuid: Some(1001),
    }
}

const SESSION: u64 = 0xab;

/// One event of every kind Watchtower stores, as the agent writes them.
#[expect(clippy::too_many_lines, reason = "one event of each kind, written out")]
pub(crate) fn every_kind() -> Vec<StoredEvent> {
    vec![
        stored(
            1,
            Some(Body::LoginAttempt(LoginAttempt {
                service: "sshd".into(),
                user: "alice".into(),
                user_known: Some(true),
                remote_host: Some("10.0.0.9".into()),
                tty: Some("ssh".into()),
                outcome: Outcome::Failure,
                failed_step: Some("authenticate".into()),
                pam_code: 7,
                pam_code_name: "PAM_AUTH_ERR".into(),
                authenticate_code: Some(7),
                process: Some(sshd()),
                ..LoginAttempt::default()
            })),
        ),
        stored(
            2,
            Some(Body::LoginAttempt(LoginAttempt {
                service: "sudo".into(),
                user: "root".into(),
                outcome: Outcome::Success,
                pam_code_name: "PAM_SUCCESS".into(),
                from_session: Some(SESSION),
                process: Some(bash()),
                ..LoginAttempt::default()
            })),
        ),
        stored(
            3,
            Some(Body::SessionStart(SessionStart {
                session: SESSION,
                service: "sshd".into(),
                user: "alice".into(),
                remote_host: Some("10.0.0.9".into()),
                tty: Some("/dev/pts/0".into()),
                loginuid: Some(1001),
                audit_session_id: Some(4),
                process: Some(sshd()),
                ..SessionStart::default()
            })),
        ),
        stored(
            4,
            Some(Body::Exec(Exec {
                session: Some(SESSION),
                session_user: Some("alice".into()),
                filename: "/usr/bin/curl".into(),
                argv: vec!["curl".into(), "-o".into(), "a b".into(), "http://x/".into()],
                process: Some(bash()),
                ..Exec::default()
            })),
        ),
        stored(
            5,
            Some(Body::Exec(Exec {
                session: Some(SESSION),
                session_user: Some("alice".into()),
                filename: "/nope".into(),
                argv: vec!["/nope".into()],
                result: -2,
                error: Some("ENOENT".into()),
                process: Some(bash()),
                ..Exec::default()
            })),
        ),
        stored(
            6,
            Some(Body::Connect(Connect {
                session: Some(SESSION),
                session_user: Some("alice".into()),
                family: "inet".into(),
                address: "203.0.113.9".into(),
                port: Some(4444),
                fd: 3,
                process: Some(bash()),
                ..Connect::default()
            })),
        ),
        stored(
            7,
            Some(Body::Connect(Connect {
                family: "inet6".into(),
                address: "2001:db8::1".into(),
                port: Some(443),
                result: -111,
                error: Some("ECONNREFUSED".into()),
                process: Some(bash()),
                ..Connect::default()
            })),
        ),
        stored(
            8,
            Some(Body::Connect(Connect {
                family: "unix".into(),
                address: "/run/dbus/system_bus_socket".into(),
                process: Some(bash()),
                ..Connect::default()
            })),
        ),
        stored(
            9,
            Some(Body::SessionEnd(SessionEnd {
                session: SESSION,
                service: "sshd".into(),
                user: "alice".into(),
                remote_host: Some("10.0.0.9".into()),
                reason: "closed".into(),
                duration_ns: 65_000_000_000,
                execs: 2,
                connects: 3,
                processes: 4,
                process: Some(sshd()),
                ..SessionEnd::default()
            })),
        ),
        stored(
            10,
            Some(Body::LoginVerdict(LoginVerdict {
                verdict: Verdict::KernelOnly,
                reason: "no_journal_record".into(),
                program: "sshd".into(),
                user: "alice".into(),
                outcome: Outcome::Success,
                attempts: 1,
                ..LoginVerdict::default()
            })),
        ),
        stored(
            11,
            Some(Body::AgentHealth(AgentHealth {
                reason: "heartbeat".into(),
                ..AgentHealth::default()
            })),
        ),
        // An event of a kind this build does not know.
        stored(12, None),
        // A datagram's destination, seen at the kernel's send hook.
        stored(
            13,
            Some(Body::Connect(Connect {
                session: Some(SESSION),
                session_user: Some("alice".into()),
                family: "inet".into(),
                address: "198.51.100.7".into(),
                port: Some(53),
                fd: u32::MAX,
                via: Some("send".into()),
                process: Some(bash()),
                ..Connect::default()
            })),
        ),
        // A connect through io_uring, seen at the kernel's socket hook.
        stored(
            14,
            Some(Body::Connect(Connect {
                session: Some(SESSION),
                session_user: Some("alice".into()),
                family: "inet".into(),
                address: "198.51.100.7".into(),
                port: Some(443),
                fd: u32::MAX,
                via: Some("kernel".into()),
                process: Some(bash()),
                ..Connect::default()
            })),
        ),
    ]
}

/// alice's ssh login, as the store summarises it.
fn login() -> SessionSummary {
    SessionSummary {
        host_id: "web-1".into(),
        boot_id: "b1".into(),
        session: SESSION,
        service: "sshd".into(),
        user: "alice".into(),
        remote_host: Some("10.0.0.9".into()),
        tty: Some("/dev/pts/0".into()),
        start_unix_ns: T,
        ..SessionSummary::default()
    }
}

/// Alerts as the server raises them: a rule's and a Sigma match's.
pub(crate) fn alerts() -> Vec<Alert> {
    let matched = every_kind().swap_remove(3);
    vec![
        Alert {
            id: 7,
            time_unix_ns: T,
            rule: "failed_logins".into(),
            severity: "warning".into(),
            host_id: "web-1".into(),
            summary: "5 failed logins from 10.0.0.9".into(),
            user: Some("alice".into()),
            remote_address: Some("10.0.0.9".into()),
            count: 5,
            seqs: vec![1, 2, 3],
            sigma: None,
        },
        Alert {
            id: 8,
            time_unix_ns: T,
            rule: "sigma".into(),
            severity: "critical".into(),
            host_id: "web-1".into(),
            summary: "Download piped into a shell by alice from 10.0.0.9".into(),
            user: Some("alice".into()),
            remote_address: Some("10.0.0.9".into()),
            count: 1,
            seqs: vec![4],
            sigma: Some(SigmaMatch {
                title: "Download piped into a shell".into(),
                rule_id: Some("5f0e3c3a-0000-4000-8000-000000000001".into()),
                file: "download-and-execute.yml".into(),
                event: Some(matched),
                session_chain: vec![login()],
            }),
        },
    ]
}

fn of(seq: usize) -> Value {
    event(&every_kind()[seq - 1], Some("row".into()))
}

#[test]
fn a_failed_ssh_login_is_a_failed_remote_logon() {
    let e = of(1);
    assert_eq!(e["class_uid"], 3002);
    assert_eq!(e["activity_id"], 1);
    assert_eq!(e["type_uid"], 300_201);
    assert_eq!(e["status_id"], 2);
    assert_eq!(e["status_code"], "PAM_AUTH_ERR");
    assert_eq!(e["user"]["name"], "alice");
    assert_eq!(e["is_remote"], true);
    assert_eq!(e["src_endpoint"]["ip"], "10.0.0.9");
    assert_eq!(e["auth_protocol"], "PAM/sshd");
    assert_eq!(e["device"]["hostname"], "web-1");
    assert_eq!(e["metadata"]["uid"], "web-1/b1/1");
    assert_eq!(e["metadata"]["labels"][0], "env=prod");
    assert_eq!(e["metadata"]["version"], super::SCHEMA_VERSION);
    assert_eq!(e["time"], 1_700_000_000_001u64);
    assert_eq!(e["message"], "row");
    assert_eq!(e["device"]["boot_uid"], "b1");
    assert!(e["unmapped"].get("boot_id").is_none());
    assert_eq!(e["unmapped"]["labels"]["env"], "prod");
}

#[test]
fn a_session_is_the_actors_session_from_logon_to_logoff() {
    let start = of(3);
    assert_eq!(start["class_uid"], 3002);
    assert_eq!(start["session"]["uid"], "00000000000000ab");
    assert_eq!(start["actor"]["session"]["uid_alt"], "web-1/b1/00000000000000ab");
    assert_eq!(start["actor"]["session"]["is_remote"], true);
    assert_eq!(start["actor"]["session"]["created_time"], 1_700_000_000_003u64);
    assert_eq!(start["actor"]["user"]["name"], "alice");
    assert_eq!(start["user"]["uid"], "1001");
    let end = of(9);
    assert_eq!(end["activity_id"], 2);
    assert_eq!(end["type_uid"], 300_202);
    assert_eq!(end["actor"]["session"]["uid"], "00000000000000ab");
}

#[test]
fn an_exec_is_a_launch_by_the_login() {
    let e = of(4);
    assert_eq!(e["class_uid"], 1007);
    assert_eq!(e["status_id"], 1);
    assert_eq!(e["process"]["cmd_line"], "curl -o \"a b\" http://x/");
    assert_eq!(e["process"]["file"]["path"], "/usr/bin/curl");
    assert_eq!(e["process"]["name"], "curl");
    assert_eq!(e["process"]["pid"], 1234);
    assert_eq!(e["process"]["parent_process"]["pid"], 1200);
    assert_eq!(e["actor"]["process"]["name"], "bash");
    assert_eq!(e["actor"]["session"]["uid"], "00000000000000ab");
    assert_eq!(e["actor"]["user"]["name"], "alice");
    assert_eq!(e["unmapped"]["argv"][2], "a b");
    let failed = of(5);
    assert_eq!(failed["status_id"], 2);
    assert_eq!(failed["status_code"], "ENOENT");
}

#[test]
fn an_exec_inside_sudo_is_attributed_to_the_ssh_login_it_came_from() {
    let mut in_sudo = every_kind().swap_remove(3);
    if let Some(Body::Exec(exec)) = &mut in_sudo.event.as_mut().unwrap().body {
        exec.session = Some(0xcd);
        exec.session_user = Some("root".into());
    }
    let e = event_in_login(&in_sudo, None, &login());
    assert_eq!(e["actor"]["session"]["uid"], "00000000000000ab");
    assert_eq!(e["actor"]["session"]["created_time"], 1_700_000_000_000u64);
    assert_eq!(e["actor"]["session"]["is_remote"], true);
    assert_eq!(e["actor"]["session"]["terminal"], "/dev/pts/0");
    assert_eq!(e["actor"]["user"]["name"], "alice");
    assert_eq!(e["actor"]["process"]["name"], "bash");
    assert_eq!(e["unmapped"]["login"]["source"], "10.0.0.9");
    assert_eq!(e["unmapped"]["login"]["service"], "sshd");
    assert_eq!(e["unmapped"]["session"]["uid"], "00000000000000cd");
    // In the login itself, no second session is noted.
    let direct = event_in_login(&every_kind()[3], None, &login());
    assert!(direct["unmapped"].get("session").is_none());
}

#[test]
fn connects_open_refuse_and_name_unix_sockets() {
    let open = of(6);
    assert_eq!(open["class_uid"], 4001);
    assert_eq!(open["activity_id"], 1);
    assert_eq!(open["dst_endpoint"]["ip"], "203.0.113.9");
    assert_eq!(open["dst_endpoint"]["port"], 4444);
    assert_eq!(open["connection_info"]["protocol_ver_id"], 4);
    assert_eq!(open["actor"]["user"]["name"], "alice");
    let refused = of(7);
    assert_eq!(refused["activity_id"], 5);
    assert_eq!(refused["status_code"], "ECONNREFUSED");
    assert_eq!(refused["connection_info"]["protocol_ver_id"], 6);
    assert_eq!(of(8)["dst_endpoint"]["name"], "/run/dbus/system_bus_socket");
    assert_eq!(open["actor"]["process"]["euid"], 0);
    assert_eq!(open["actor"]["process"]["auid"], 1001);
    assert_eq!(open["unmapped"]["fd"], 3);
}

#[test]
fn a_send_seen_without_its_result_is_traffic_of_unknown_status() {
    let send = of(13);
    assert_eq!(send["class_uid"], 4001);
    assert_eq!(send["activity_id"], 6);
    assert_eq!(send["status_id"], 0);
    assert!(send.get("status_code").is_none(), "{send:#}");
    assert_eq!(send["dst_endpoint"]["ip"], "198.51.100.7");
    assert_eq!(send["dst_endpoint"]["port"], 53);
    assert_eq!(send["unmapped"]["via"], "send");
    assert!(send["unmapped"].get("fd").is_none(), "no descriptor: {send:#}");
}

#[test]
fn a_connect_seen_at_the_socket_hook_is_an_open_of_unknown_status() {
    let connect = of(14);
    assert_eq!(connect["class_uid"], 4001);
    assert_eq!(connect["activity_id"], 1);
    assert_eq!(connect["status_id"], 0);
    assert_eq!(connect["dst_endpoint"]["port"], 443);
    assert_eq!(connect["unmapped"]["via"], "kernel");
}

#[test]
fn verdicts_health_and_unknown_kinds_are_base_events_with_everything_unmapped() {
    let verdict = of(10);
    assert_eq!(verdict["class_uid"], 0);
    assert_eq!(verdict["activity_name"], "login_verdict");
    assert_eq!(verdict["severity_id"], 3);
    assert_eq!(verdict["status_code"], "kernel_only");
    assert_eq!(verdict["unmapped"]["login_verdict"]["user"], "alice");
    assert_eq!(verdict["device"]["hostname"], "web-1");
    assert_eq!(of(11)["unmapped"]["agent_health"]["reason"], "heartbeat");
    let unknown = of(12);
    assert_eq!(unknown["activity_id"], 0);
    assert_eq!(unknown["unmapped"]["kind"], "unspecified");
}

#[test]
fn alerts_are_detection_findings_and_a_sigma_match_names_its_login() {
    let [rule, sigma] = <[Value; 2]>::try_from(alerts().iter().map(alert).collect::<Vec<_>>()).unwrap();
    assert_eq!(rule["class_uid"], 2004);
    assert_eq!(rule["type_uid"], 200_401);
    assert_eq!(rule["severity_id"], 3);
    assert_eq!(rule["finding_info"]["uid"], "alert/7");
    assert_eq!(rule["finding_info"]["analytic"]["name"], "failed_logins");
    assert_eq!(rule["count"], 5);
    assert_eq!(rule["evidences"][0]["src_endpoint"]["ip"], "10.0.0.9");
    assert_eq!(sigma["severity_id"], 5);
    assert_eq!(sigma["finding_info"]["title"], "Download piped into a shell");
    assert_eq!(sigma["finding_info"]["related_events"][0]["uid"], "web-1/b1/4");
    assert_eq!(sigma["actor"]["session"]["uid"], "00000000000000ab");
    assert_eq!(sigma["actor"]["session"]["is_remote"], true);
    assert_eq!(sigma["actor"]["user"]["name"], "alice");
    assert_eq!(sigma["unmapped"]["sigma_file"], "download-and-execute.yml");
}

#[test]
fn every_kind_and_both_alerts_validate_against_the_published_schema() {
    let mut lines = String::new();
    for stored in every_kind() {
        lines.push_str(&event(&stored, Some("row".into())).to_string());
        lines.push('\n');
    }
    for stored in &every_kind()[3..8] {
        lines.push_str(&event_in_login(stored, None, &login()).to_string());
        lines.push('\n');
    }
    for a in alerts() {
        lines.push_str(&alert(&a).to_string());
        lines.push('\n');
    }
    super::schema_check::assert_valid(&lines, &[3002, 1007, 4001, 2004, 0]);
}
