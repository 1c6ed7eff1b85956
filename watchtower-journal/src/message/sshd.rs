//! sshd's lines about authentication, OpenSSH 8.x and 9.x.
//!
//! The formats, from the source (identical from 8.0 to 9.9 unless noted):
//! - `auth.c` `auth_log()`: `{Accepted|Failed|Postponed|Partial} METHOD for
//!   [invalid user ]USER from ADDRESS port N ssh2[: EXTRA]`, where EXTRA is the
//!   key (`TYPE FP`, or for a certificate `TYPE FP ID KEYID (serial N) CA TYPE
//!   FP`) and the method's information after `, ` (hostbased: `client user "U",
//!   client host "H"`, both the client's; gssapi: the principal). Password and
//!   keyboard-interactive lines never carry EXTRA.
//! - `auth.c`: `Invalid user USER from ADDRESS port N`, `User USER from HOST not
//!   allowed because ...`, `ROOT LOGIN REFUSED FROM ADDRESS port N`, `maximum
//!   authentication attempts exceeded for [invalid user ]USER from ADDRESS port N ssh2`.
//! - `auth-pam.c` `sshpam_query()`: `PAM: REASON for [illegal user ]USER from HOST`.
//! - `packet.c`: `Connection closed by PEER`, `Disconnected from PEER`,
//!   `Connection reset by PEER`, `Disconnecting PEER: REASON`, where PEER is
//!   `[authenticating user U |invalid user U |user U ]ADDRESS port N`, and
//!   `Received disconnect from ADDRESS port N:CODE: REASON`.
//! - `monitor.c` appends ` [preauth]` to what the unprivileged child logged.
//!
//! USER is whatever the client sent (up to 100 bytes, possibly empty), as are a
//! hostbased client user and host and a disconnect reason. ADDRESS is sshd's own
//! text (no spaces) and the words around it are fixed, so a line is read from
//! where its format is fixed: from the end when nothing the client chose follows
//! the address, else at every ` from ` whose rest fits the format exactly; a line
//! that fits in two ways is not read.

use super::{AuthMessage, PublicKey};

/// What the monitor appends to its unprivileged child's lines.
const PREAUTH: &str = " [preauth]";

/// `User U from H not allowed because ...` reasons (`auth.c` `allowed_user()`).
const NOT_ALLOWED_FROM: &[&str] = &[
    "listed in DenyUsers",
    "not listed in AllowUsers",
    "not in any group",
    "a group is listed in DenyGroups",
    "none of user's groups are listed in AllowGroups",
];

/// `pam_strerror()` texts that contain ` for ` themselves (Linux-PAM).
const PAM_REASONS_WITH_FOR: &[&str] = &[
    "Have exhausted maximum number of retries for service",
    "Cannot make/remove an entry for the specified session",
];

/// Fixed reasons sshd disconnects with (`auth2.c`, `packet.c`).
const DISCONNECT_REASONS: &[&str] = &[
    "Too many authentication failures",
    "no authentication methods enabled",
    "Packet corrupt",
];

const CHANGE_OF_USER: &str = "Change of username or service not allowed: (";

fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A host as sshd prints it: an IPv4 or IPv6 address, or with `UseDNS` a name.
fn host(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'_' | b'%'));
    ok.then(|| s.to_string())
}

fn strip_preauth(s: &str) -> (&str, bool) {
    match s.strip_suffix(PREAUTH) {
        Some(s) => (s, true),
        None => (s, false),
    }
}

/// `HEAD ADDRESS port N` at the end of `s`: (HEAD without its space, ADDRESS, N).
/// HEAD is `None` when `s` is only `ADDRESS port N`.
fn peer_at_end(s: &str) -> Option<(Option<&str>, String, u16)> {
    let (rest, number) = s.rsplit_once(' ')?;
    let port = port(number)?;
    let rest = rest.strip_suffix(" port")?;
    match rest.rsplit_once(' ') {
        Some((head, address)) => Some((Some(head), host(address)?, port)),
        None => Some((None, host(rest)?, port)),
    }
}

/// `USER from ADDRESS port N` at the end of `s` (USER may be empty).
fn user_from_at_end(s: &str) -> Option<(&str, String, u16)> {
    let (head, address, port) = peer_at_end(s)?;
    Some((head?.strip_suffix(" from")?, address, port))
}

/// sshd's `invalid user NAME` (or PAM's `illegal user NAME`) -> (NAME, true).
/// `prefix` without its last space is the prefix of an empty name whose space
/// began the ` from ` that was split at.
fn split_invalid<'a>(who: &'a str, prefix: &str) -> (&'a str, bool) {
    match who.strip_prefix(prefix) {
        Some(u) => (u, true),
        None if who == prefix.trim_end() => ("", true),
        None => (who, false),
    }
}

/// The `[authenticating user U |invalid user U |user U ]` before a peer.
fn preamble(who: Option<&str>) -> Option<(Option<String>, bool)> {
    let Some(who) = who else {
        return Some((None, false));
    };
    if let Some(u) = who.strip_prefix("invalid user ") {
        Some((Some(u.to_string()), true))
    } else if let Some(u) = who.strip_prefix("authenticating user ") {
        Some((Some(u.to_string()), false))
    } else {
        who.strip_prefix("user ").map(|u| (Some(u.to_string()), false))
    }
}

/// `PEER[ [preauth]]` of the closing lines.
fn closing_peer(s: &str) -> Option<(Option<String>, bool, String, u16, bool)> {
    let (s, preauth) = strip_preauth(s);
    let (who, address, port) = peer_at_end(s)?;
    let (user, invalid) = preamble(who)?;
    Some((user, invalid, address, port, preauth))
}

/// A key type as `sshkey_type()` names it: `ED25519`, `RSA-CERT`, `ECDSA-SK`, ...
fn key_type(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// A fingerprint: `SHA256:base64` or `MD5:hex:...`.
fn fingerprint(s: &str) -> bool {
    s.split_once(':').is_some_and(|(hash, digest)| {
        !hash.is_empty()
            && hash.bytes().all(|b| b.is_ascii_alphanumeric())
            && !digest.is_empty()
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b':' | b'$'))
    })
}

/// The key after `ssh2: ` (`auth.c` `format_method_key()`), with what follows it.
fn key_extra(extra: &str) -> Option<PublicKey> {
    let (kind, rest) = extra.split_once(' ')?;
    let end = rest.find([' ', ',']).unwrap_or(rest.len());
    let (fp, rest) = rest.split_at(end);
    if !key_type(kind) || !fingerprint(fp) {
        return None;
    }
    let certificate = if kind.ends_with("-CERT") {
        // ` ID KEYID (serial N) CA TYPE FP[, INFO]`: KEYID is the certificate's.
        let description = rest.strip_prefix(' ')?;
        let (_, after) = description.strip_prefix("ID ")?.rsplit_once(" (serial ")?;
        let (serial, after) = after.split_once(") CA ")?;
        let (ca_kind, after) = after.split_once(' ')?;
        let ca_end = after.find(',').unwrap_or(after.len());
        if number::<u64>(serial).is_none() || !key_type(ca_kind) || !fingerprint(&after[..ca_end]) {
            return None;
        }
        Some(description.to_string())
    } else if rest.is_empty() || rest.starts_with(", ") {
        None
    } else {
        return None;
    };
    Some(PublicKey {
        kind: kind.to_string(),
        fingerprint: fp.to_string(),
        certificate,
    })
}

/// What may follow `ssh2` in an `auth_log()` line, by method.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// password, keyboard-interactive, none: nothing.
    Never,
    /// publickey, hostbased: a key (then the method's information).
    Key,
    /// gssapi-with-mic and methods this module does not know: any text.
    Text,
}

fn extra_for(method: &str) -> Extra {
    match method.split('/').next().unwrap_or(method) {
        "password" | "keyboard-interactive" | "none" => Extra::Never,
        "publickey" | "hostbased" => Extra::Key,
        _ => Extra::Text,
    }
}

/// One reading of `WHO from ADDRESS port N ssh2[: EXTRA]`.
struct AuthTail<'a> {
    who: &'a str,
    address: String,
    port: u16,
    key: Option<PublicKey>,
}

/// `ADDRESS port N ssh2[: EXTRA]`, exactly.
fn auth_tail(s: &str, extra: Extra) -> Option<(String, u16, Option<PublicKey>)> {
    let (address, rest) = s.split_once(' ')?;
    let rest = rest.strip_prefix("port ")?;
    let (number, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("ssh2")?;
    let key = match (rest.strip_prefix(": "), extra) {
        (None, _) if rest.is_empty() => None,
        (Some(description), Extra::Key) => Some(key_extra(description)?),
        (Some(description), Extra::Text) if !description.is_empty() => None,
        _ => return None,
    };
    Some((host(address)?, port(number)?, key))
}

/// `METHOD for WHO from ADDRESS port N ssh2[: EXTRA]`: every ` from ` whose rest
/// fits the format exactly is a reading. `first`: take the first (for lines whose
/// user sshd authenticated: a real account, so only EXTRA can hold the client's
/// text); else a line with two readings is not read.
fn auth_log(rest: &str, first: bool) -> Option<(String, AuthTail<'_>)> {
    let (rest, _) = strip_preauth(rest);
    let (method, rest) = rest.split_once(" for ")?;
    let method_ok = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'@' | b'.' | b'_'));
    if !method_ok {
        return None;
    }
    let extra = extra_for(method);
    let mut found: Option<AuthTail<'_>> = None;
    for (at, _) in rest.match_indices(" from ") {
        let (who, tail) = (&rest[..at], &rest[at + " from ".len()..]);
        let Some((address, port, key)) = auth_tail(tail, extra) else {
            continue;
        };
        if found.is_some() {
            return None;
        }
        found = Some(AuthTail {
            who,
            address,
            port,
            key,
        });
        if first {
            break;
        }
    }
    found.map(|t| (method.to_string(), t))
}

fn parse_auth_log(message: &str) -> Option<AuthMessage> {
    if let Some(rest) = message.strip_prefix("Accepted ") {
        let (method, t) = auth_log(rest, true)?;
        return Some(AuthMessage::SshdAccepted {
            method,
            user: t.who.to_string(),
            address: t.address,
            port: t.port,
            key: t.key,
        });
    }
    if let Some(rest) = message.strip_prefix("Partial ") {
        let (method, t) = auth_log(rest, true)?;
        return Some(AuthMessage::SshdPartial {
            method,
            user: t.who.to_string(),
            address: t.address,
            port: t.port,
            key: t.key,
        });
    }
    if let Some(rest) = message.strip_prefix("Failed ") {
        let (method, t) = auth_log(rest, false)?;
        let (user, invalid_user) = split_invalid(t.who, "invalid user ");
        return Some(AuthMessage::SshdFailed {
            method,
            user: user.to_string(),
            invalid_user,
            address: t.address,
            port: t.port,
            key: t.key,
        });
    }
    let rest = message.strip_prefix("Postponed ")?;
    let (method, t) = auth_log(rest, false)?;
    let (user, invalid_user) = split_invalid(t.who, "invalid user ");
    Some(AuthMessage::SshdPostponed {
        method,
        user: user.to_string(),
        invalid_user,
        address: t.address,
        port: t.port,
    })
}

/// `PAM: REASON for [illegal user ]USER from HOST` (HOST last, without spaces).
fn parse_pam_failure(rest: &str) -> Option<AuthMessage> {
    let (head, host_text) = rest.rsplit_once(" from ")?;
    let host = host(host_text)?;
    let (reason, who) = PAM_REASONS_WITH_FOR
        .iter()
        .find_map(|r| head.strip_prefix(r)?.strip_prefix(" for ").map(|who| (*r, who)))
        .or_else(|| head.split_once(" for "))?;
    if reason.is_empty() {
        return None;
    }
    let (user, invalid_user) = split_invalid(who, "illegal user ");
    Some(AuthMessage::SshdPamFailure {
        reason: reason.to_string(),
        user: user.to_string(),
        invalid_user,
        host,
    })
}

/// `User USER [from HOST ]not allowed because REASON`.
fn parse_not_allowed(rest: &str) -> Option<AuthMessage> {
    let (who, reason) = rest.rsplit_once(" not allowed because ")?;
    let (user, host) = if NOT_ALLOWED_FROM.contains(&reason) {
        let (user, host_text) = who.rsplit_once(" from ")?;
        (user, Some(host(host_text)?))
    } else if reason == "account is locked"
        || (reason.starts_with("shell ")
            && (reason.ends_with(" does not exist") || reason.ends_with(" is not executable")))
        || reason.ends_with(" exists")
    {
        (who, None)
    } else {
        return None;
    };
    (!user.is_empty()).then(|| AuthMessage::SshdUserNotAllowed {
        user: user.to_string(),
        host,
        reason: reason.to_string(),
    })
}

/// `Disconnecting PEER: REASON`: PEER's user and REASON may both hold the
/// client's text, so every `: ` after a well-formed PEER is a reading; a known
/// reason (or one that names the same user) settles it, else only one reading may fit.
fn parse_disconnecting(rest: &str) -> Option<AuthMessage> {
    let (rest, _) = strip_preauth(rest);
    let mut readings = Vec::new();
    for (at, _) in rest.match_indices(": ") {
        let reason = &rest[at + 2..];
        let Some((who, address, port)) = peer_at_end(&rest[..at]) else {
            continue;
        };
        let Some((user, invalid_user)) = preamble(who) else {
            continue;
        };
        if reason.is_empty() {
            continue;
        }
        let known = DISCONNECT_REASONS.contains(&reason)
            || user
                .as_deref()
                .is_some_and(|u| reason.starts_with(&format!("{CHANGE_OF_USER}{u},")));
        readings.push((known, user, invalid_user, address, port, reason));
        if readings.len() > 8 {
            return None;
        }
    }
    let known = readings.iter().filter(|r| r.0).count();
    let mut chosen = readings.into_iter().filter(|r| r.0 || known == 0);
    let (_, user, invalid_user, address, port, reason) = chosen.next()?;
    if chosen.next().is_some() {
        return None;
    }
    Some(AuthMessage::SshdDisconnecting {
        user,
        invalid_user,
        address,
        port,
        reason: reason.to_string(),
    })
}

/// `Timeout before authentication for ADDRESS port N` (8.x to 9.7) or `... for
/// connection from ADDRESS[ to LOCAL], pid = N[ (early)]` (9.8 and later).
fn parse_timeout(rest: &str) -> Option<AuthMessage> {
    if let Some(rest) = rest.strip_prefix("connection from ") {
        let end = rest.find([' ', ','])?;
        let (address, tail) = rest.split_at(end);
        if !(tail.starts_with(" to ") || tail.starts_with(", pid = ")) || !tail.contains(", pid = ") {
            return None;
        }
        return Some(AuthMessage::SshdAuthenticationTimeout {
            address: host(address)?,
            port: None,
        });
    }
    let (head, address, port) = peer_at_end(rest)?;
    head.is_none().then_some(AuthMessage::SshdAuthenticationTimeout {
        address,
        port: Some(port),
    })
}

/// `Received disconnect from ADDRESS port N:CODE: REASON` (REASON is the client's,
/// last: read from the front).
fn parse_received_disconnect(rest: &str) -> Option<AuthMessage> {
    let (rest, preauth) = strip_preauth(rest);
    let (address, rest) = rest.split_once(' ')?;
    let (port_text, rest) = rest.strip_prefix("port ")?.split_once(':')?;
    let (code, reason) = rest.split_once(": ").unwrap_or((rest, ""));
    Some(AuthMessage::SshdReceivedDisconnect {
        address: host(address)?,
        port: port(port_text)?,
        code: number(code)?,
        reason: reason.to_string(),
        preauth,
    })
}

/// `Accepted certificate ID "KEYID" (serial N) signed by ...` (KEYID is the
/// certificate's: the last `" (serial ` ends it).
fn parse_certificate(rest: &str) -> Option<AuthMessage> {
    let rest = rest.strip_prefix('"')?;
    let (key_id, after) = rest.rsplit_once("\" (serial ")?;
    let (serial, signed_by) = after.split_once(") ")?;
    let signed_by = signed_by.strip_prefix("signed by ")?;
    Some(AuthMessage::SshdCertificateFound {
        key_id: key_id.to_string(),
        serial: number(serial)?,
        signed_by: signed_by.to_string(),
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per sshd line format, in the order sshd writes them"
)]
pub(super) fn parse_sshd(message: &str) -> Option<AuthMessage> {
    let message = message
        .strip_prefix("error: ")
        .or_else(|| message.strip_prefix("fatal: "))
        .unwrap_or(message);
    if let Some(rest) = message.strip_prefix("Accepted key ") {
        let (description, _) = rest.rsplit_once(" found at ")?;
        return Some(AuthMessage::SshdKeyFound {
            key: key_extra(description)?,
        });
    }
    if let Some(rest) = message.strip_prefix("Accepted certificate ID ") {
        return parse_certificate(rest);
    }
    if let Some(parsed) = parse_auth_log(message) {
        return Some(parsed);
    }
    if let Some(rest) = message.strip_prefix("Invalid user ") {
        let (user, address, port) = user_from_at_end(rest)?;
        return Some(AuthMessage::SshdInvalidUser {
            user: user.to_string(),
            address,
            port,
        });
    }
    if let Some(rest) = message.strip_prefix("User ") {
        return parse_not_allowed(rest);
    }
    if let Some(rest) = message.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        let (rest, _) = strip_preauth(rest);
        let (head, address, port) = peer_at_end(rest)?;
        return head
            .is_none()
            .then_some(AuthMessage::SshdRootLoginRefused { address, port });
    }
    if let Some(rest) = message.strip_prefix("PAM: ") {
        return parse_pam_failure(rest);
    }
    if let Some(rest) = message.strip_prefix("Access denied for user ") {
        let (rest, _) = strip_preauth(rest);
        let user = rest.strip_suffix(" by PAM account configuration")?;
        return Some(AuthMessage::SshdPamAccountDenied {
            user: user.to_string(),
        });
    }
    if let Some(rest) = message.strip_prefix("Authentication refused") {
        let (user, reason) = match rest.strip_prefix(" for ") {
            Some(rest) => {
                let (user, reason) = rest.split_once(": ")?;
                (Some(user.to_string()), reason)
            }
            None => (None, rest.strip_prefix(": ")?),
        };
        return Some(AuthMessage::SshdAuthenticationRefused {
            user,
            reason: reason.to_string(),
        });
    }
    if let Some(rest) = message.strip_prefix("maximum authentication attempts exceeded for ") {
        let (rest, _) = strip_preauth(rest);
        let (who, address, port) = user_from_at_end(rest.strip_suffix(" ssh2")?)?;
        let (user, invalid_user) = split_invalid(who, "invalid user ");
        return Some(AuthMessage::SshdTooManyAttempts {
            user: user.to_string(),
            invalid_user,
            address,
            port,
        });
    }
    if let Some(rest) = message.strip_prefix("Disconnecting ") {
        return parse_disconnecting(rest);
    }
    if let Some(rest) = message.strip_prefix("Timeout before authentication for ") {
        return parse_timeout(rest);
    }
    if let Some(rest) = message.strip_prefix("Received disconnect from ") {
        return parse_received_disconnect(rest);
    }
    if let Some(rest) = message.strip_prefix("Connection from ") {
        // `A port P on LA port LP[ rdomain "R"]`: all sshd's own text.
        let (address, rest) = rest.split_once(" port ")?;
        let (number, rest) = rest.split_once(" on ")?;
        let (local_address, rest) = rest.split_once(" port ")?;
        let (local_number, rdomain) = rest.split_once(' ').unwrap_or((rest, ""));
        if !(rdomain.is_empty() || rdomain.starts_with("rdomain \"")) {
            return None;
        }
        return Some(AuthMessage::SshdConnection {
            address: host(address)?,
            port: port(number)?,
            local_address: host(local_address)?,
            local_port: port(local_number)?,
        });
    }
    if let Some(rest) = message.strip_prefix("Connection closed by ") {
        let (user, invalid_user, address, port, preauth) = closing_peer(rest)?;
        return Some(AuthMessage::SshdConnectionClosed {
            user,
            invalid_user,
            address,
            port,
            preauth,
        });
    }
    if let Some(rest) = message.strip_prefix("Connection reset by ") {
        let (user, invalid_user, address, port, preauth) = closing_peer(rest)?;
        return Some(AuthMessage::SshdConnectionReset {
            user,
            invalid_user,
            address,
            port,
            preauth,
        });
    }
    if let Some(rest) = message.strip_prefix("Disconnected from ") {
        let (user, invalid_user, address, port, preauth) = closing_peer(rest)?;
        return Some(AuthMessage::SshdDisconnected {
            user,
            invalid_user,
            address,
            port,
            preauth,
        });
    }
    None
}
