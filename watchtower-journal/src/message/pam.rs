//! Linux-PAM's lines, as its modules write them through `pam_syslog()`:
//! `MODULE(SERVICE:FACILITY): TEXT`, or `PAM TEXT` when no module is running
//! (`pam_unix`'s summary at `pam_end`).
//!
//! `pam_unix`'s failure lines (`support.c`) are `authentication failure;
//! logname=L uid=N euid=N tty=T ruser=R rhost=H  user=U`: the fields in that
//! order, each but the last set by the application or the system, and `user=`,
//! which for sshd is what the client sent, last and only when set. So the fields
//! are taken in their order, each up to the next one's name, and the user is the
//! rest of the line after `  user=` (two spaces: `rhost=%s %s%s`): a user name
//! that contains ` rhost=` or ` user=` is part of the user name.

use super::AuthMessage;

/// The fields of a `pam_unix` failure line.
struct FailureFields {
    user: Option<String>,
    ruser: Option<String>,
    rhost: Option<String>,
    tty: Option<String>,
    uid: Option<u32>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `logname=L uid=N euid=N tty=T ruser=R rhost=H[  user=U]`, in that order.
fn failure_fields(s: &str) -> Option<FailureFields> {
    let s = s.strip_prefix("logname=")?;
    let (_logname, s) = s.split_once(" uid=")?;
    let (uid, s) = s.split_once(" euid=")?;
    let (euid, s) = s.split_once(" tty=")?;
    let (tty, s) = s.split_once(" ruser=")?;
    let (ruser, s) = s.split_once(" rhost=")?;
    let (rhost, rest) = s.split_once(' ').unwrap_or((s, ""));
    digits::<u32>(euid)?;
    if [tty, ruser].iter().any(|v| v.contains(' ')) {
        return None;
    }
    let user = if rest.is_empty() {
        None
    } else {
        Some(rest.strip_prefix(" user=")?.to_string())
    };
    Some(FailureFields {
        user: user.filter(|u| !u.is_empty()),
        ruser: non_empty(ruser),
        rhost: non_empty(rhost),
        tty: non_empty(tty),
        uid: Some(digits(uid)?),
    })
}

/// `MODULE(SERVICE:FACILITY): TEXT`.
fn pam_prefix(message: &str) -> Option<(&str, &str, &str, &str)> {
    let (head, text) = message.split_once("): ")?;
    let (module, inside) = head.split_once('(')?;
    if !module.starts_with("pam_") || module.contains(' ') {
        return None;
    }
    let (service, facility) = inside.rsplit_once(':')?;
    Some((module, service, facility, text))
}

/// `NAME(uid=N)` or `NAME` -> (name, uid).
fn name_uid(s: &str) -> (String, Option<u32>) {
    match s.strip_suffix(')').and_then(|s| s.rsplit_once("(uid=")) {
        Some((name, uid)) => (name.to_string(), uid.parse().ok()),
        None => (s.to_string(), None),
    }
}

/// `PAM N more authentication failure[s]; FIELDS`.
fn parse_more_failures(rest: &str) -> Option<AuthMessage> {
    let (count, rest) = rest.split_once(' ')?;
    let fields = rest
        .strip_prefix("more authentication failures; ")
        .or_else(|| rest.strip_prefix("more authentication failure; "))?;
    let f = failure_fields(fields)?;
    Some(AuthMessage::PamMoreFailures {
        count: digits(count)?,
        user: f.user,
        ruser: f.ruser,
        rhost: f.rhost,
        tty: f.tty,
        uid: f.uid,
    })
}

pub(super) fn parse_pam(message: &str) -> Option<AuthMessage> {
    if let Some(rest) = message.strip_prefix("PAM ") {
        return parse_more_failures(rest);
    }
    let (module, service, facility, text) = pam_prefix(message)?;
    if let Some(rest) = text.strip_prefix("session opened for user ") {
        let (user, by) = rest.split_once(" by ").unwrap_or((rest, ""));
        let (user, uid) = name_uid(user);
        let (_, by_uid) = name_uid(by);
        return Some(AuthMessage::PamSessionOpened {
            module: module.into(),
            service: service.into(),
            user,
            uid,
            by_uid,
        });
    }
    if let Some(user) = text.strip_prefix("session closed for user ") {
        return Some(AuthMessage::PamSessionClosed {
            module: module.into(),
            service: service.into(),
            user: user.to_string(),
        });
    }
    if let Some(rest) = text.strip_prefix("authentication failure; ") {
        let f = failure_fields(rest)?;
        return Some(AuthMessage::PamAuthFailure {
            module: module.into(),
            service: service.into(),
            user: f.user,
            ruser: f.ruser,
            rhost: f.rhost,
            tty: f.tty,
            uid: f.uid,
        });
    }
    if facility == "account"
        && let Some(rest) = text.strip_prefix("account ")
    {
        // `pam_unix_acct.c`: `account U has expired (account expired)` and
        // `(failed to change password)`.
        let (user, reason) = rest.rsplit_once(" has expired (")?;
        let reason = reason.strip_suffix(')')?;
        return (!user.is_empty()).then(|| AuthMessage::PamAccountExpired {
            module: module.into(),
            service: service.into(),
            user: user.to_string(),
            reason: reason.to_string(),
        });
    }
    None
}
