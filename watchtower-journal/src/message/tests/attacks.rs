//! Lines whose client-chosen parts (the user name, a hostbased client user, a
//! certificate's key ID, a disconnect reason) imitate the fixed parts of the
//! line: the address and the user come only from their fixed place.
//!
//! The lines follow OpenSSH's formats (`auth.c` `auth_log()`, `auth-pam.c`
//! `sshpam_query()`, `packet.c` `ssh_packet_disconnect()`) and Linux-PAM's
//! `pam_unix` (`support.c`); the crafted user names were sent by a real ssh
//! client to this machine's sshd 9.2 where a comment says so.

use serde_json::Value;

use super::super::{Program, parse_message};

/// The parsed message as its JSON form (`null` when not recognised).
fn sshd_json(line: &str) -> Value {
    serde_json::to_value(parse_message(Program::Sshd, line)).unwrap()
}

/// Every address-like field of a parsed message.
fn addresses(v: &Value) -> Vec<String> {
    ["address", "rhost", "host"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[test]
fn a_hostbased_client_user_cannot_plant_an_address() {
    let v = sshd_json(
        "Failed hostbased for dan from 127.0.0.1 port 45785 ssh2: RSA SHA256:AbCd, client user \"x from 6.6.6.6 port 1 ssh2\", client host \"h.example\"",
    );
    assert_eq!(v["message"], "sshd_failed", "{v}");
    assert_eq!(v["address"], "127.0.0.1", "{v}");
    assert_eq!(v["port"], 45785);
    assert_eq!(v["user"], "dan");
}

#[test]
fn a_hostbased_client_user_imitating_a_key_is_not_read_as_an_address() {
    // Two splits fit the format: the line is ambiguous and no address is taken
    // from it rather than the client's.
    let v = sshd_json(
        "Failed hostbased for dan from 127.0.0.1 port 45785 ssh2: RSA SHA256:AbCd, client user \"x from 6.6.6.6 port 1 ssh2: RSA SHA256:Ef, y\", client host \"h\"",
    );
    assert!(!addresses(&v).contains(&"6.6.6.6".to_string()), "{v}");
}

#[test]
fn a_certificate_key_id_cannot_plant_an_address() {
    let v = sshd_json(
        "Failed publickey for wt_bob from 127.0.0.1 port 5022 ssh2: ED25519-CERT SHA256:AbCd ID evil from 6.6.6.6 port 1 ssh2 (serial 9) CA ED25519 SHA256:CaFp",
    );
    assert_eq!(v["message"], "sshd_failed", "{v}");
    assert_eq!(v["address"], "127.0.0.1", "{v}");
    assert_eq!(v["user"], "wt_bob");
}

#[test]
fn a_pam_unix_user_name_cannot_plant_rhost_or_user() {
    let v = sshd_json(
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=127.0.0.1  user=z rhost=6.6.6.8 user=root",
    );
    assert_eq!(v["message"], "pam_auth_failure", "{v}");
    assert_eq!(v["rhost"], "127.0.0.1", "{v}");
    assert_eq!(v["user"], "z rhost=6.6.6.8 user=root", "{v}");
    assert_eq!(v["ruser"], Value::Null);
    // `user=` is the last field: a line where it is not is not pam_unix's.
    let v = sshd_json(
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=127.0.0.1 user=root rhost=6.6.6.8",
    );
    assert!(!addresses(&v).contains(&"6.6.6.8".to_string()), "{v}");
}

#[test]
fn a_pam_summary_line_takes_its_fields_in_order() {
    let v = sshd_json(
        "PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=127.0.0.1  user=a rhost=6.6.6.8",
    );
    assert_eq!(v["message"], "pam_more_failures", "{v}");
    assert_eq!(v["rhost"], "127.0.0.1", "{v}");
    assert_eq!(v["user"], "a rhost=6.6.6.8");
    assert_eq!(v["count"], 2);
}

#[test]
fn a_pam_error_line_takes_the_host_after_the_user() {
    // Sent as user `y from 6.6.6.7` by ssh to this machine's sshd 9.2 (INFO,
    // keyboard-interactive on).
    let v = sshd_json("error: PAM: Authentication failure for illegal user y from 6.6.6.7 from 127.0.0.1");
    assert_eq!(v["message"], "sshd_pam_failure", "{v}");
    assert_eq!(v["host"], "127.0.0.1");
    assert_eq!(v["user"], "y from 6.6.6.7");
    assert_eq!(v["invalid_user"], true);
    // The PAM message itself contains " for " (pam_strerror(PAM_MAXTRIES)).
    let v = sshd_json(
        "error: PAM: Have exhausted maximum number of retries for service for illegal user for x from 192.0.2.4",
    );
    assert_eq!(
        v["reason"], "Have exhausted maximum number of retries for service",
        "{v}"
    );
    assert_eq!(v["user"], "for x");
    assert_eq!(v["host"], "192.0.2.4");
}

#[test]
fn a_disconnect_reason_or_user_cannot_plant_an_address() {
    let v = sshd_json(
        "Disconnecting invalid user q 6.6.6.9 port 7: Too many authentication failures 127.0.0.1 port 5022: Too many authentication failures [preauth]",
    );
    assert_eq!(v["message"], "sshd_disconnecting", "{v}");
    assert_eq!(v["address"], "127.0.0.1", "{v}");
    assert_eq!(v["port"], 5022);
    assert_eq!(v["user"], "q 6.6.6.9 port 7: Too many authentication failures");
    // The reason names the client's own (old and new) user names: the one that
    // agrees with the line's user is the split.
    let v = sshd_json(
        "Disconnecting invalid user admin 192.0.2.117 port 44004: Change of username or service not allowed: (admin,ssh-connection) -> (x 6.6.6.6 port 1: y,ssh-connection) [preauth]",
    );
    assert_eq!(v["address"], "192.0.2.117", "{v}");
    assert_eq!(v["user"], "admin");
}

#[test]
fn crafted_user_names_sent_to_a_real_sshd() {
    // What this machine's sshd 9.2 wrote for users `x from 6.6.6.6 port 1 ssh2`,
    // `q 6.6.6.9 port 7` and `z rhost=6.6.6.8 user=root`.
    for (line, user) in [
        (
            "Invalid user x from 6.6.6.6 port 1 ssh2 from 127.0.0.1 port 41978",
            "x from 6.6.6.6 port 1 ssh2",
        ),
        (
            "Failed password for invalid user x from 6.6.6.6 port 1 ssh2 from 127.0.0.1 port 41978 ssh2",
            "x from 6.6.6.6 port 1 ssh2",
        ),
        (
            "Connection closed by invalid user x from 6.6.6.6 port 1 ssh2 127.0.0.1 port 41978 [preauth]",
            "x from 6.6.6.6 port 1 ssh2",
        ),
        (
            "Postponed keyboard-interactive for invalid user y from 6.6.6.7 from 127.0.0.1 port 44798 ssh2 [preauth]",
            "y from 6.6.6.7",
        ),
        (
            "Failed password for invalid user q 6.6.6.9 port 7 from 127.0.0.1 port 44826 ssh2",
            "q 6.6.6.9 port 7",
        ),
        (
            "Connection closed by invalid user q 6.6.6.9 port 7 127.0.0.1 port 44826 [preauth]",
            "q 6.6.6.9 port 7",
        ),
        (
            "Failed password for invalid user z rhost=6.6.6.8 user=root from 127.0.0.1 port 44812 ssh2",
            "z rhost=6.6.6.8 user=root",
        ),
    ] {
        let v = sshd_json(line);
        assert_eq!(v["address"], "127.0.0.1", "{line}: {v}");
        assert_eq!(v["user"], user, "{line}: {v}");
        let invalid = v["invalid_user"] == true || v["message"] == "sshd_invalid_user";
        assert!(invalid, "{line}: {v}");
    }
}

#[test]
fn an_empty_invalid_user_name_is_read() {
    for line in [
        "Invalid user  from 192.0.2.68 port 34916",
        "Connection closed by invalid user  192.0.2.68 port 34916 [preauth]",
        "Failed password for invalid user  from 192.0.2.68 port 34916 ssh2",
    ] {
        let v = sshd_json(line);
        assert_eq!(v["user"], "", "{line}: {v}");
        assert_eq!(v["address"], "192.0.2.68", "{line}: {v}");
    }
}

#[test]
fn a_line_that_does_not_end_as_the_format_does_is_not_read() {
    // sshd ends a password line with `ssh2`: anything after it is not sshd's.
    for line in [
        "Failed password for root from 127.0.0.1 port 22 ssh2 from 6.6.6.6 port 1",
        "Accepted password for root from 6.6.6.6 port 1 sshX",
        "Invalid user a from 127.0.0.1 port 5 trailing",
    ] {
        let v = sshd_json(line);
        assert!(!addresses(&v).contains(&"6.6.6.6".to_string()), "{line}: {v}");
        assert_eq!(v, Value::Null, "{line}: {v}");
    }
}
