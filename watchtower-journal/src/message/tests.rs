use super::AuthMessage as M;
use super::*;

fn sshd(m: &str) -> Option<AuthMessage> {
    parse_message(Program::Sshd, m)
}

// Every text below is a real line from OpenSSH 9.2p1 (Debian 12), sudo 1.9.13,
// util-linux 2.38 su and Linux-PAM 1.5.2 as journald stored it on this project's
// machines, unless its comment says otherwise.

#[test]
fn sshd_accepted_password_and_publickey() {
    assert_eq!(
        sshd("Accepted password for wt_alice from 127.0.0.1 port 33744 ssh2"),
        Some(M::SshdAccepted {
            method: "password".into(),
            user: "wt_alice".into(),
            address: "127.0.0.1".into(),
            port: 33744,
            key: None
        })
    );
    assert_eq!(
        sshd(
            "Accepted publickey for wt_alice from 127.0.0.1 port 33780 ssh2: ED25519 SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A"
        ),
        Some(M::SshdAccepted {
            method: "publickey".into(),
            user: "wt_alice".into(),
            address: "127.0.0.1".into(),
            port: 33780,
            key: Some(PublicKey {
                kind: "ED25519".into(),
                fingerprint: "SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into(),
                certificate: None
            })
        })
    );
    assert_eq!(
        sshd(
            "Accepted key ED25519 SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A found at /tmp/exp/wt_alice.keys:1"
        ),
        Some(M::SshdKeyFound {
            key: PublicKey {
                kind: "ED25519".into(),
                fingerprint: "SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A".into(),
                certificate: None
            }
        })
    );
}

#[test]
fn sshd_keyboard_interactive_ipv6_and_certificates() {
    // auth.c's format with an IPv6 peer and a user certificate (format from the
    // OpenSSH 9.x source, auth_log()/format_method_key()).
    let M::SshdAccepted { method, address, key, .. } = sshd(
        "Accepted publickey for deploy from 2001:db8::7 port 50022 ssh2: ED25519-CERT SHA256:AbCd ID deploy@ci from 10.0.0.1 port 22 ssh2 (serial 7) CA ED25519 SHA256:CaFp",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(method, "publickey");
    assert_eq!(address, "2001:db8::7");
    let key = key.unwrap();
    assert_eq!(
        (key.kind.as_str(), key.fingerprint.as_str()),
        ("ED25519-CERT", "SHA256:AbCd")
    );
    assert!(key.certificate.unwrap().starts_with("ID deploy@ci"));
    let M::SshdAccepted { method, .. } =
        sshd("Accepted keyboard-interactive/pam for wt_alice from 127.0.0.1 port 41000 ssh2").unwrap()
    else {
        panic!()
    };
    assert_eq!(method, "keyboard-interactive/pam");
}

#[test]
fn sshd_failures_and_invalid_users() {
    assert_eq!(
        sshd("Failed password for wt_alice from 127.0.0.1 port 33760 ssh2"),
        Some(M::SshdFailed {
            method: "password".into(),
            user: "wt_alice".into(),
            invalid_user: false,
            address: "127.0.0.1".into(),
            port: 33760,
            key: None
        })
    );
    assert_eq!(
        sshd("Failed password for invalid user nosuchuser from 127.0.0.1 port 33772 ssh2"),
        Some(M::SshdFailed {
            method: "password".into(),
            user: "nosuchuser".into(),
            invalid_user: true,
            address: "127.0.0.1".into(),
            port: 33772,
            key: None
        })
    );
    assert_eq!(
        sshd("Invalid user nosuchuser from 127.0.0.1 port 33772"),
        Some(M::SshdInvalidUser {
            user: "nosuchuser".into(),
            address: "127.0.0.1".into(),
            port: 33772
        })
    );
    // A client-chosen user name that imitates the tail: the real address is last.
    assert_eq!(
        sshd("Failed password for invalid user x from 10.9.9.9 port 1 ssh2 from 192.0.2.5 port 40404 ssh2"),
        Some(M::SshdFailed {
            method: "password".into(),
            user: "x from 10.9.9.9 port 1 ssh2".into(),
            invalid_user: true,
            address: "192.0.2.5".into(),
            port: 40404,
            key: None
        })
    );
    assert_eq!(
        sshd(
            "error: maximum authentication attempts exceeded for root from 192.0.2.9 port 2200 ssh2 [preauth]"
        ),
        Some(M::SshdTooManyAttempts {
            user: "root".into(),
            invalid_user: false,
            address: "192.0.2.9".into(),
            port: 2200
        })
    );
}

#[test]
fn sshd_connection_lines() {
    assert_eq!(
        sshd("Connection from 127.0.0.1 port 33744 on 127.0.0.1 port 2222 rdomain \"\""),
        Some(M::SshdConnection {
            address: "127.0.0.1".into(),
            port: 33744,
            local_address: "127.0.0.1".into(),
            local_port: 2222
        })
    );
    assert_eq!(
        sshd("Connection closed by authenticating user wt_alice 127.0.0.1 port 33760 [preauth]"),
        Some(M::SshdConnectionClosed {
            user: Some("wt_alice".into()),
            invalid_user: false,
            address: "127.0.0.1".into(),
            port: 33760,
            preauth: true
        })
    );
    assert_eq!(
        sshd("Connection closed by invalid user nosuchuser 127.0.0.1 port 33772 [preauth]"),
        Some(M::SshdConnectionClosed {
            user: Some("nosuchuser".into()),
            invalid_user: true,
            address: "127.0.0.1".into(),
            port: 33772,
            preauth: true
        })
    );
    assert_eq!(
        sshd("Connection closed by 127.0.0.1 port 40000 [preauth]"),
        Some(M::SshdConnectionClosed {
            user: None,
            invalid_user: false,
            address: "127.0.0.1".into(),
            port: 40000,
            preauth: true
        })
    );
    assert_eq!(
        sshd("Disconnected from user wt_alice 127.0.0.1 port 33744"),
        Some(M::SshdDisconnected {
            user: Some("wt_alice".into()),
            invalid_user: false,
            address: "127.0.0.1".into(),
            port: 33744,
            preauth: false
        })
    );
    assert_eq!(
        sshd("Postponed publickey for wt_alice from 127.0.0.1 port 33780 ssh2 [preauth]"),
        Some(M::SshdPostponed {
            method: "publickey".into(),
            user: "wt_alice".into(),
            invalid_user: false,
            address: "127.0.0.1".into(),
            port: 33780
        })
    );
    assert_eq!(
        sshd("Received disconnect from 127.0.0.1 port 33744:11: disconnected by user"),
        Some(M::SshdReceivedDisconnect {
            address: "127.0.0.1".into(),
            port: 33744,
            code: 11,
            reason: "disconnected by user".into(),
            preauth: false
        })
    );
    // Lines the cross-check does not use.
    assert_eq!(sshd("User child is on pid 22145"), None);
    assert_eq!(sshd("Server listening on 127.0.0.1 port 2222."), None);
    assert_eq!(
        sshd("Starting session: command for wt_alice from 127.0.0.1 port 33744 id 0"),
        None
    );
}

#[test]
fn pam_unix_lines() {
    assert_eq!(
        sshd("pam_unix(sshd:session): session opened for user wt_alice(uid=1001) by (uid=0)"),
        Some(M::PamSessionOpened {
            module: "pam_unix".into(),
            service: "sshd".into(),
            user: "wt_alice".into(),
            uid: Some(1001),
            by_uid: Some(0)
        })
    );
    assert_eq!(
        parse_message(
            Program::Sudo,
            "pam_unix(sudo:session): session closed for user root"
        ),
        Some(M::PamSessionClosed {
            module: "pam_unix".into(),
            service: "sudo".into(),
            user: "root".into()
        })
    );
    assert_eq!(
        sshd(
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=127.0.0.1  user=wt_alice"
        ),
        Some(M::PamAuthFailure {
            module: "pam_unix".into(),
            service: "sshd".into(),
            user: Some("wt_alice".into()),
            ruser: None,
            rhost: Some("127.0.0.1".into()),
            tty: Some("ssh".into()),
            uid: Some(0)
        })
    );
    assert_eq!(sshd("pam_unix(sshd:auth): check pass; user unknown"), None);
    assert_eq!(
        sshd("pam_systemd(sshd:session): Failed to connect to system bus: No such file or directory"),
        None
    );
}

#[test]
fn sudo_lines() {
    assert_eq!(
        parse_message(
            Program::Sudo,
            "    root : PWD=/tmp ; USER=wt_bob ; COMMAND=/usr/bin/id"
        ),
        Some(M::Sudo(SudoLine {
            user: "root".into(),
            outcome: SudoOutcome::Allowed,
            tty: None,
            pwd: Some("/tmp".into()),
            target_user: Some("wt_bob".into()),
            target_group: None,
            command: Some("/usr/bin/id".into())
        }))
    );
    assert_eq!(
        parse_message(
            Program::Sudo,
            "wt_alice : 1 incorrect password attempt ; PWD=/tmp ; USER=root ; COMMAND=/usr/bin/id"
        ),
        Some(M::Sudo(SudoLine {
            user: "wt_alice".into(),
            outcome: SudoOutcome::IncorrectPassword { attempts: 1 },
            tty: None,
            pwd: Some("/tmp".into()),
            target_user: Some("root".into()),
            target_group: None,
            command: Some("/usr/bin/id".into())
        }))
    );
    // sudo's format with a terminal, a group, a denial, and a command containing ` ; `.
    let Some(M::Sudo(line)) = parse_message(
        Program::Sudo,
        "wt_bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/wt_bob ; USER=root ; GROUP=adm ; COMMAND=/bin/sh -c 'a ; b'",
    ) else {
        panic!()
    };
    assert_eq!(
        line.outcome,
        SudoOutcome::Denied {
            reason: "user NOT in sudoers".into()
        }
    );
    assert_eq!(line.tty.as_deref(), Some("pts/1"));
    assert_eq!(line.target_group.as_deref(), Some("adm"));
    assert_eq!(line.command.as_deref(), Some("/bin/sh -c 'a ; b'"));
    let Some(M::Sudo(line)) = parse_message(
        Program::Sudo,
        "wt_alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/usr/bin/true",
    ) else {
        panic!()
    };
    assert_eq!(line.outcome, SudoOutcome::IncorrectPassword { attempts: 3 });
    assert_eq!(
        parse_message(Program::Sudo, "pam_unix(sudo:auth): conversation failed"),
        None
    );
    assert_eq!(parse_message(Program::Sudo, "a : b"), None);
}

#[test]
fn su_login_and_logind_lines() {
    assert_eq!(
        parse_message(Program::Su, "(to wt_bob) root on none"),
        Some(M::Su {
            success: true,
            target_user: "wt_bob".into(),
            user: "root".into(),
            tty: "none".into()
        })
    );
    assert_eq!(
        parse_message(Program::Su, "FAILED SU (to wt_bob) wt_alice on none"),
        Some(M::Su {
            success: false,
            target_user: "wt_bob".into(),
            user: "wt_alice".into(),
            tty: "none".into()
        })
    );
    // util-linux login and systemd-logind formats (from their sources).
    assert_eq!(
        parse_message(
            Program::Login,
            "FAILED LOGIN 1 FROM tty1 FOR alice, Authentication failure"
        ),
        Some(M::LoginFailed {
            attempt: 1,
            from: "tty1".into(),
            user: "alice".into(),
            reason: "Authentication failure".into()
        })
    );
    assert_eq!(
        parse_message(Program::Login, "ROOT LOGIN ON tty1"),
        Some(M::LoginSuccess {
            user: "root".into(),
            tty: "tty1".into(),
            remote_host: None
        })
    );
    assert_eq!(
        parse_message(Program::Login, "LOGIN ON pts/3 BY alice FROM 192.0.2.1"),
        Some(M::LoginSuccess {
            user: "alice".into(),
            tty: "pts/3".into(),
            remote_host: Some("192.0.2.1".into())
        })
    );
    assert_eq!(
        parse_message(Program::Logind, "New session 3 of user alice."),
        Some(M::LogindNewSession {
            session: "3".into(),
            user: "alice".into()
        })
    );
    assert_eq!(
        parse_message(Program::Logind, "Removed session 3."),
        Some(M::LogindRemovedSession { session: "3".into() })
    );
}

proptest::proptest! {
    #[test]
    fn no_input_panics(program in 0usize..5, message in ".{0,200}") {
        let program = [Program::Sshd, Program::Sudo, Program::Su, Program::Login, Program::Logind][program];
        let _ = parse_message(program, &message);
    }

    #[test]
    fn mutated_real_lines_do_not_panic(cut in 0usize..120, byte in proptest::num::u8::ANY, at in 0usize..120) {
        for line in [
            "Accepted publickey for wt_alice from 127.0.0.1 port 33780 ssh2: ED25519 SHA256:zqGL0LqpEe2ix2ix",
            "Connection closed by invalid user nosuchuser 127.0.0.1 port 33772 [preauth]",
            "wt_alice : 1 incorrect password attempt ; PWD=/tmp ; USER=root ; COMMAND=/usr/bin/id",
            "pam_unix(sshd:session): session opened for user wt_alice(uid=1001) by (uid=0)",
            "error: PAM: Authentication failure for illegal user y from 6.6.6.7 from 127.0.0.1",
            "Disconnecting invalid user q 6.6.6.9 port 7: Too many authentication failures [preauth]",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=127.0.0.1  user=a",
            "Failed hostbased for dan from 127.0.0.1 port 45785 ssh2: RSA SHA256:Ab, client user \"d\", client host \"h\"",
            "Accepted publickey for d from 2001:db8::7 port 5 ssh2: ED25519-CERT SHA256:A ID k (serial 7) CA ED25519 SHA256:C",
        ] {
            let mut bytes = line.as_bytes().to_vec();
            bytes.truncate(cut.min(bytes.len()));
            if at < bytes.len() { bytes[at] = byte; }
            let text = String::from_utf8_lossy(&bytes);
            for program in [Program::Sshd, Program::Sudo, Program::Su, Program::Login, Program::Logind] {
                let _ = parse_message(program, &text);
            }
        }
    }
}

mod attacks;
mod corpus;
mod formats;
