//! The lines OpenSSH 8.x and 9.x write about authentication, in the formats of
//! their source (`auth.c`, `auth2.c`, `auth-pam.c`, `packet.c`, `sshd.c`,
//! `auth2-pubkey.c`; the same from 8.0 to 9.9 unless a comment says otherwise),
//! and `pam_unix`'s (`support.c`, `pam_unix_acct.c`).

use super::super::AuthMessage as M;
use super::super::{Program, PublicKey, parse_message};

fn sshd(m: &str) -> Option<M> {
    parse_message(Program::Sshd, m)
}

#[test]
fn refusals_by_policy() {
    for (line, reason) in [
        (
            "User bob from 192.0.2.7 not allowed because listed in DenyUsers",
            "listed in DenyUsers",
        ),
        (
            "User bob from 192.0.2.7 not allowed because not listed in AllowUsers",
            "not listed in AllowUsers",
        ),
        (
            "User bob from 192.0.2.7 not allowed because not in any group",
            "not in any group",
        ),
        (
            "User bob from 192.0.2.7 not allowed because a group is listed in DenyGroups",
            "a group is listed in DenyGroups",
        ),
        (
            "User bob from 192.0.2.7 not allowed because none of user's groups are listed in AllowGroups",
            "none of user's groups are listed in AllowGroups",
        ),
    ] {
        assert_eq!(
            sshd(line),
            Some(M::SshdUserNotAllowed {
                user: "bob".into(),
                host: Some("192.0.2.7".into()),
                reason: reason.into()
            }),
            "{line}"
        );
    }
    assert_eq!(
        sshd("User bob not allowed because shell /bin/nosuch does not exist"),
        Some(M::SshdUserNotAllowed {
            user: "bob".into(),
            host: None,
            reason: "shell /bin/nosuch does not exist".into()
        })
    );
    assert_eq!(
        sshd("User bob from 192.0.2.7 not allowed because of the weather"),
        None
    );
    assert_eq!(
        sshd("ROOT LOGIN REFUSED FROM 2001:db8::1 port 50100 [preauth]"),
        Some(M::SshdRootLoginRefused {
            address: "2001:db8::1".into(),
            port: 50100
        })
    );
    assert_eq!(
        sshd("ROOT LOGIN REFUSED FROM 1.2.3.4"),
        None,
        "no port: OpenSSH 7 and older"
    );
    assert_eq!(
        sshd("fatal: Access denied for user bob by PAM account configuration [preauth]"),
        Some(M::SshdPamAccountDenied { user: "bob".into() })
    );
}

#[test]
fn pam_conversation_failures() {
    assert_eq!(
        sshd("error: PAM: Authentication failure for wt_alice from 127.0.0.1"),
        Some(M::SshdPamFailure {
            reason: "Authentication failure".into(),
            user: "wt_alice".into(),
            invalid_user: false,
            host: "127.0.0.1".into()
        })
    );
    assert_eq!(
        sshd("error: PAM: User account has expired for bob from host.example.org"),
        Some(M::SshdPamFailure {
            reason: "User account has expired".into(),
            user: "bob".into(),
            invalid_user: false,
            host: "host.example.org".into()
        })
    );
    assert_eq!(
        sshd("error: PAM: Authentication failure for illegal user  from 192.0.2.1"),
        Some(M::SshdPamFailure {
            reason: "Authentication failure".into(),
            user: String::new(),
            invalid_user: true,
            host: "192.0.2.1".into()
        })
    );
    // macOS' format (`via` the local address): not OpenSSH's.
    assert_eq!(
        sshd("error: PAM: authentication error for james from 192.0.2.1 via 10.0.0.1"),
        None
    );
}

#[test]
fn disconnects_and_timeouts() {
    assert_eq!(
        sshd("Disconnecting invalid user  192.0.2.68 port 34916: Too many authentication failures [preauth]"),
        Some(M::SshdDisconnecting {
            user: Some(String::new()),
            invalid_user: true,
            address: "192.0.2.68".into(),
            port: 34916,
            reason: "Too many authentication failures".into()
        })
    );
    assert_eq!(
        sshd("Connection reset by authenticating user root 192.0.2.20 port 1558 [preauth]"),
        Some(M::SshdConnectionReset {
            user: Some("root".into()),
            invalid_user: false,
            address: "192.0.2.20".into(),
            port: 1558,
            preauth: true
        })
    );
    // 8.x to 9.7 (the session process, at fatal level) and 9.8 on (the listener).
    assert_eq!(
        sshd("fatal: Timeout before authentication for 192.0.2.9 port 40022"),
        Some(M::SshdAuthenticationTimeout {
            address: "192.0.2.9".into(),
            port: Some(40022)
        })
    );
    assert_eq!(
        sshd("Timeout before authentication for connection from 192.0.2.9 to 192.0.2.1, pid = 4242"),
        Some(M::SshdAuthenticationTimeout {
            address: "192.0.2.9".into(),
            port: None
        })
    );
    assert_eq!(
        sshd(
            "error: Received disconnect from 192.0.2.9 port 40022:14: No supported authentication methods available [preauth]"
        ),
        Some(M::SshdReceivedDisconnect {
            address: "192.0.2.9".into(),
            port: 40022,
            code: 14,
            reason: "No supported authentication methods available".into(),
            preauth: true
        })
    );
}

#[test]
fn keys_certificates_and_partial_logins() {
    assert_eq!(
        sshd("Partial publickey for deploy from 192.0.2.3 port 5000 ssh2: ED25519 SHA256:AbCd"),
        Some(M::SshdPartial {
            method: "publickey".into(),
            user: "deploy".into(),
            address: "192.0.2.3".into(),
            port: 5000,
            key: Some(PublicKey {
                kind: "ED25519".into(),
                fingerprint: "SHA256:AbCd".into(),
                certificate: None
            })
        })
    );
    // A security key: its fingerprint ends at the comma of the method's information.
    let Some(M::SshdAccepted { key: Some(key), .. }) = sshd(
        "Accepted publickey for deploy from 192.0.2.3 port 5000 ssh2: ED25519-SK SHA256:AbCd, signature count = 3",
    ) else {
        panic!()
    };
    assert_eq!(
        (key.kind.as_str(), key.fingerprint.as_str()),
        ("ED25519-SK", "SHA256:AbCd")
    );
    assert_eq!(
        sshd(
            "Accepted certificate ID \"deploy@ci\" (serial 7) signed by ED25519 CA SHA256:CaFp via /etc/ssh/ca.pub"
        ),
        Some(M::SshdCertificateFound {
            key_id: "deploy@ci".into(),
            serial: 7,
            signed_by: "ED25519 CA SHA256:CaFp via /etc/ssh/ca.pub".into()
        })
    );
    assert_eq!(
        sshd("Authentication refused for bob: bad owner or modes for /home/bob/.shosts"),
        Some(M::SshdAuthenticationRefused {
            user: Some("bob".into()),
            reason: "bad owner or modes for /home/bob/.shosts".into()
        })
    );
    // A gssapi principal after the address.
    let Some(M::SshdAccepted { user, address, .. }) =
        sshd("Accepted gssapi-with-mic for bob from 192.0.2.3 port 5000 ssh2: bob@EXAMPLE.ORG")
    else {
        panic!()
    };
    assert_eq!((user.as_str(), address.as_str()), ("bob", "192.0.2.3"));
}

#[test]
fn pam_unix_counts_and_account_refusals() {
    assert_eq!(
        sshd(
            "PAM 1 more authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=127.0.0.1  user=wt_bob"
        ),
        Some(M::PamMoreFailures {
            count: 1,
            user: Some("wt_bob".into()),
            ruser: None,
            rhost: Some("127.0.0.1".into()),
            tty: Some("ssh".into()),
            uid: Some(0)
        })
    );
    assert_eq!(
        sshd("pam_unix(sshd:account): account wt_expired has expired (account expired)"),
        Some(M::PamAccountExpired {
            module: "pam_unix".into(),
            service: "sshd".into(),
            user: "wt_expired".into(),
            reason: "account expired".into()
        })
    );
    // sudo's: the invoking user is `ruser`, no remote host.
    assert_eq!(
        parse_message(
            Program::Sudo,
            "pam_unix(sudo:auth): authentication failure; logname=wt_alice uid=1001 euid=0 tty=/dev/pts/0 ruser=wt_alice rhost=  user=wt_alice"
        ),
        Some(M::PamAuthFailure {
            module: "pam_unix".into(),
            service: "sudo".into(),
            user: Some("wt_alice".into()),
            ruser: Some("wt_alice".into()),
            rhost: None,
            tty: Some("/dev/pts/0".into()),
            uid: Some(1001)
        })
    );
}
