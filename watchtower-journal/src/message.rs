//! The log lines users know, as typed records.
//!
//! Formats are those of OpenSSH 9.x (`auth.c`, `sshd.c`, `packet.c`), sudo 1.9
//! (`logging.c`), util-linux su and login, Linux-PAM's `pam_unix` and
//! systemd-logind. A line this module does not know is `None`, never an error:
//! the journal carries many harmless lines from the same programs.
//!
//! User names in sshd's failure lines come from the client, so they may contain
//! anything, including a fake `from 10.0.0.1 port 22`: the address is taken from
//! the last well-formed ` from ADDRESS port N` in such lines.

use serde::Serialize;

/// The program a journal identifier names. In events (JSON and wire) it is
/// written as [`Program::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Program {
    Sshd,
    Sudo,
    Su,
    Login,
    Logind,
}

impl Program {
    /// The identifiers the agent asks journalctl for, in one list.
    pub const IDENTIFIERS: &'static [&'static str] = &[
        "sshd",
        "sshd-session",
        "sshd-auth",
        "sudo",
        "su",
        "login",
        "systemd-logind",
    ];

    /// From `SYSLOG_IDENTIFIER` (OpenSSH 9.8+ logs as sshd-session / sshd-auth).
    #[must_use]
    pub fn from_identifier(identifier: &str) -> Option<Program> {
        Some(match identifier {
            "sshd" | "sshd-session" | "sshd-auth" => Program::Sshd,
            "sudo" => Program::Sudo,
            "su" => Program::Su,
            "login" => Program::Login,
            "systemd-logind" => Program::Logind,
            _ => return None,
        })
    }

    /// Whether a process with this kernel `comm` may write as this program
    /// (a `logger -t sshd` forgery has comm `logger`).
    #[must_use]
    pub fn comm_matches(self, comm: &str) -> bool {
        match self {
            Program::Sshd => matches!(comm, "sshd" | "sshd-session" | "sshd-auth"),
            Program::Sudo => comm == "sudo",
            Program::Su => comm == "su",
            Program::Login => comm == "login",
            Program::Logind => comm == "systemd-logind",
        }
    }

    /// The PAM service names this program uses (what the kernel witness reports).
    #[must_use]
    pub fn pam_services(self) -> &'static [&'static str] {
        match self {
            Program::Sshd => &["sshd"],
            Program::Sudo => &["sudo", "sudo-i"],
            Program::Su => &["su", "su-l"],
            Program::Login => &["login", "remote"],
            Program::Logind => &[],
        }
    }

    /// The program whose logins a PAM service name stands for.
    #[must_use]
    pub fn from_pam_service(service: &str) -> Option<Program> {
        [Program::Sshd, Program::Sudo, Program::Su, Program::Login]
            .into_iter()
            .find(|p| p.pam_services().contains(&service))
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Program::Sshd => "sshd",
            Program::Sudo => "sudo",
            Program::Su => "su",
            Program::Login => "login",
            Program::Logind => "systemd-logind",
        }
    }

    /// The short name events carry (`logind`, not the identifier).
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Program::Sshd => "sshd",
            Program::Sudo => "sudo",
            Program::Su => "su",
            Program::Login => "login",
            Program::Logind => "logind",
        }
    }
}

impl Serialize for Program {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

/// A public key as sshd names it: type and fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublicKey {
    /// `ED25519`, `RSA`, `ECDSA`, `ED25519-CERT`, ...
    pub kind: String,
    /// `SHA256:...`
    pub fingerprint: String,
    /// For certificates: the rest of sshd's description (`ID ... (serial N) CA ...`).
    pub certificate: Option<String>,
}

/// What sudo decided, from the text before the first ` ; `.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum SudoOutcome {
    /// The command ran.
    Allowed,
    /// Authentication failed this many times (`3 incorrect password attempts`).
    IncorrectPassword { attempts: u32 },
    /// Refused by policy (`user NOT in sudoers`, `command not allowed`, `a password
    /// is required`, ...): the reason as sudo wrote it.
    Denied { reason: String },
}

impl SudoOutcome {
    /// The `decision` tag its JSON form carries (a test checks they agree).
    #[must_use]
    pub const fn decision(&self) -> &'static str {
        match self {
            SudoOutcome::Allowed => "allowed",
            SudoOutcome::IncorrectPassword { .. } => "incorrect_password",
            SudoOutcome::Denied { .. } => "denied",
        }
    }
}

/// One sudo log line: `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SudoLine {
    /// Who ran sudo.
    pub user: String,
    pub outcome: SudoOutcome,
    pub tty: Option<String>,
    pub pwd: Option<String>,
    /// `USER=`: whom the command runs as.
    pub target_user: Option<String>,
    /// `GROUP=`, when given.
    pub target_group: Option<String>,
    /// `COMMAND=`: the command line (always last, so it may contain ` ; `).
    pub command: Option<String>,
}

/// A message the cross-check understands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "message")]
pub enum AuthMessage {
    /// `Connection from A port P on LA port LP rdomain ""`.
    SshdConnection {
        address: String,
        port: u16,
        local_address: String,
        local_port: u16,
    },
    /// `Accepted METHOD for USER from A port P ssh2[: KEY]`.
    SshdAccepted {
        method: String,
        user: String,
        address: String,
        port: u16,
        key: Option<PublicKey>,
    },
    /// `Failed METHOD for [invalid user ]USER from A port P ssh2[: KEY]`.
    SshdFailed {
        method: String,
        user: String,
        invalid_user: bool,
        address: String,
        port: u16,
    },
    /// `Invalid user USER from A port P`.
    SshdInvalidUser {
        user: String,
        address: String,
        port: u16,
    },
    /// `Accepted key TYPE FP found at FILE:LINE` (`LogLevel VERBOSE`).
    SshdKeyFound { key: PublicKey },
    /// `Connection closed by [authenticating user U |invalid user U ]A port P [preauth]`.
    SshdConnectionClosed {
        user: Option<String>,
        invalid_user: bool,
        address: String,
        port: u16,
        preauth: bool,
    },
    /// `Disconnected from [user U |invalid user U |authenticating user U ]A port P [preauth]`.
    SshdDisconnected {
        user: Option<String>,
        invalid_user: bool,
        address: String,
        port: u16,
        preauth: bool,
    },
    /// `maximum authentication attempts exceeded for [invalid user ]U from A port P ssh2 [preauth]`.
    SshdTooManyAttempts {
        user: String,
        invalid_user: bool,
        address: String,
        port: u16,
    },
    /// `pam_unix(SERVICE:session): session opened for user U(uid=N) by NAME(uid=M)`.
    PamSessionOpened {
        module: String,
        service: String,
        user: String,
        uid: Option<u32>,
        by_uid: Option<u32>,
    },
    /// `pam_unix(SERVICE:session): session closed for user U`.
    PamSessionClosed {
        module: String,
        service: String,
        user: String,
    },
    /// `pam_unix(SERVICE:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=A  user=U`.
    PamAuthFailure {
        module: String,
        service: String,
        user: Option<String>,
        ruser: Option<String>,
        rhost: Option<String>,
        tty: Option<String>,
        uid: Option<u32>,
    },
    /// A sudo decision line.
    Sudo(SudoLine),
    /// util-linux su: `(to TARGET) USER on TTY` / `FAILED SU (to TARGET) USER on TTY`.
    Su {
        success: bool,
        target_user: String,
        user: String,
        tty: String,
    },
    /// util-linux login: `LOGIN ON tty1 BY alice [FROM host]`, `ROOT LOGIN ON tty1 [FROM host]`.
    LoginSuccess {
        user: String,
        tty: String,
        remote_host: Option<String>,
    },
    /// util-linux login: `FAILED LOGIN 1 FROM tty1 FOR alice, Authentication failure`.
    LoginFailed {
        attempt: u32,
        from: String,
        user: String,
        reason: String,
    },
    /// systemd-logind: `New session 3 of user alice.`
    LogindNewSession { session: String, user: String },
    /// systemd-logind: `Removed session 3.`
    LogindRemovedSession { session: String },
}

/// Parse a message written under `program`'s identifier. `None`: not a line the
/// cross-check uses.
#[must_use]
pub fn parse_message(program: Program, message: &str) -> Option<AuthMessage> {
    let message = message.trim_end_matches(['\n', '\r', ' ']);
    if let Some(pam) = parse_pam(message) {
        return Some(pam);
    }
    match program {
        Program::Sshd => parse_sshd(message),
        Program::Sudo => parse_sudo(message).map(AuthMessage::Sudo),
        Program::Su => parse_su(message),
        Program::Login => parse_login(message),
        Program::Logind => parse_logind(message),
    }
}

fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A host as sshd prints it: an address (or a resolved name), no spaces.
fn host(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 255 && !s.contains(char::is_whitespace) && !s.chars().any(char::is_control))
        .then(|| s.to_string())
}

/// `ADDRESS port N` at the start of `s`; returns the rest after the port.
fn address_port(s: &str) -> Option<(String, u16, &str)> {
    let (address, rest) = s.split_once(' ')?;
    let rest = rest.strip_prefix("port ")?;
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((host(address)?, port(number)?, rest))
}

/// `USER from ADDRESS port N REST`: the user may contain anything, so every
/// ` from ` is tried and the last well-formed split wins (or the first, for lines
/// whose user name sshd already authenticated and whose tail may be a certificate
/// description).
fn user_from(s: &str, prefer_first: bool) -> Option<(String, String, u16, &str)> {
    let mut found = None;
    for (at, _) in s.match_indices(" from ") {
        let user = &s[..at];
        if let Some((address, port, rest)) = address_port(&s[at + " from ".len()..]) {
            if user.is_empty() {
                continue;
            }
            found = Some((user.to_string(), address, port, rest));
            if prefer_first {
                break;
            }
        }
    }
    found
}

/// The key description after `ssh2: `.
fn public_key(s: &str) -> Option<PublicKey> {
    let mut words = s.splitn(3, ' ');
    let kind = words.next().filter(|k| !k.is_empty())?;
    let fingerprint = words.next().filter(|f| f.contains(':'))?;
    Some(PublicKey {
        kind: kind.to_string(),
        fingerprint: fingerprint.to_string(),
        certificate: words.next().map(str::to_string).filter(|c| !c.is_empty()),
    })
}

/// The optional `[invalid user |user |authenticating user ]NAME ` before
/// `ADDRESS port N` in sshd's closing lines.
fn closing_peer(s: &str) -> Option<(Option<String>, bool, String, u16, bool)> {
    let (s, preauth) = match s.strip_suffix(" [preauth]") {
        Some(s) => (s, true),
        None => (s, false),
    };
    // From the right: "... ADDRESS port N"
    let (head, number) = s.rsplit_once(' ')?;
    let port = port(number)?;
    let head = head.strip_suffix(" port")?;
    let (who, address) = match head.rsplit_once(' ') {
        Some((who, address)) => (Some(who), address),
        None => (None, head),
    };
    let address = host(address)?;
    let (user, invalid) = match who {
        None => (None, false),
        Some(who) => {
            if let Some(u) = who.strip_prefix("invalid user ") {
                (Some(u.to_string()), true)
            } else if let Some(u) = who.strip_prefix("authenticating user ") {
                (Some(u.to_string()), false)
            } else if let Some(u) = who.strip_prefix("user ") {
                (Some(u.to_string()), false)
            } else {
                return None;
            }
        }
    };
    Some((user, invalid, address, port, preauth))
}

/// sshd's `invalid user NAME` -> (NAME, true); a plain NAME -> (NAME, false).
fn split_invalid(user: String) -> (String, bool) {
    match user.strip_prefix("invalid user ") {
        Some(u) => (u.to_string(), true),
        None => (user, false),
    }
}

fn parse_sshd(message: &str) -> Option<AuthMessage> {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    if let Some(rest) = message.strip_prefix("Accepted key ") {
        let (description, _) = rest.rsplit_once(" found at ")?;
        return Some(AuthMessage::SshdKeyFound {
            key: public_key(description)?,
        });
    }
    if let Some(rest) = message.strip_prefix("Accepted ") {
        let (method, rest) = rest.split_once(" for ")?;
        if method.is_empty() || method.contains(' ') {
            return None;
        }
        let (user, address, port, tail) = user_from(rest, true)?;
        let key = tail.strip_prefix("ssh2: ").and_then(public_key);
        return Some(AuthMessage::SshdAccepted {
            method: method.to_string(),
            user,
            address,
            port,
            key,
        });
    }
    if let Some(rest) = message.strip_prefix("Failed ") {
        let (method, rest) = rest.split_once(" for ")?;
        if method.is_empty() || method.contains(' ') {
            return None;
        }
        let (user, address, port, _) = user_from(rest, false)?;
        let (user, invalid_user) = split_invalid(user);
        return Some(AuthMessage::SshdFailed {
            method: method.to_string(),
            user,
            invalid_user,
            address,
            port,
        });
    }
    if let Some(rest) = message.strip_prefix("Invalid user ") {
        let (user, address, port, _) = user_from(rest, false)?;
        return Some(AuthMessage::SshdInvalidUser { user, address, port });
    }
    if let Some(rest) = message.strip_prefix("maximum authentication attempts exceeded for ") {
        let (user, address, port, _) = user_from(rest, false)?;
        let (user, invalid_user) = split_invalid(user);
        return Some(AuthMessage::SshdTooManyAttempts {
            user,
            invalid_user,
            address,
            port,
        });
    }
    if let Some(rest) = message.strip_prefix("Connection from ") {
        let (address, port, rest) = address_port(rest)?;
        let rest = rest.strip_prefix("on ")?;
        let (local_address, local_port, _) = address_port(rest)?;
        return Some(AuthMessage::SshdConnection {
            address,
            port,
            local_address,
            local_port,
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

fn parse_pam(message: &str) -> Option<AuthMessage> {
    let (module, service, _facility, text) = pam_prefix(message)?;
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
    if let Some(rest) = text.strip_prefix("authentication failure;") {
        let mut fields = std::collections::HashMap::new();
        for word in rest.split_whitespace() {
            if let Some((k, v)) = word.split_once('=') {
                fields.insert(k, v);
            }
        }
        let get = |k: &str| fields.get(k).filter(|v| !v.is_empty()).map(|v| (*v).to_string());
        return Some(AuthMessage::PamAuthFailure {
            module: module.into(),
            service: service.into(),
            user: get("user"),
            ruser: get("ruser"),
            rhost: get("rhost"),
            tty: get("tty"),
            uid: get("uid").and_then(|u| u.parse().ok()),
        });
    }
    None
}

fn parse_sudo(message: &str) -> Option<SudoLine> {
    let (user, rest) = message.trim_start().split_once(" : ")?;
    if user.is_empty() || user.contains(char::is_whitespace) {
        return None;
    }
    // The COMMAND is last and is taken whole; the fields before it are `K=V ; `.
    let (fields, command) = match rest.find("COMMAND=") {
        Some(at) => (&rest[..at], Some(rest[at + "COMMAND=".len()..].to_string())),
        None => (rest, None),
    };
    let mut line = SudoLine {
        user: user.to_string(),
        outcome: SudoOutcome::Allowed,
        tty: None,
        pwd: None,
        target_user: None,
        target_group: None,
        command,
    };
    let mut saw_field = line.command.is_some();
    for (i, part) in fields.split(" ; ").map(str::trim).enumerate() {
        if part.is_empty() {
            continue;
        }
        let field = part
            .split_once('=')
            .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_uppercase()));
        match field {
            Some(("TTY", v)) => line.tty = Some(v.to_string()),
            Some(("PWD", v)) => line.pwd = Some(v.to_string()),
            Some(("USER", v)) => line.target_user = Some(v.to_string()),
            Some(("GROUP", v)) => line.target_group = Some(v.to_string()),
            Some(_) => {}
            None if i == 0 => {
                line.outcome = sudo_outcome(part);
                continue;
            }
            None => continue,
        }
        saw_field = true;
    }
    saw_field.then_some(line)
}

fn sudo_outcome(reason: &str) -> SudoOutcome {
    let attempts = reason
        .strip_suffix(" incorrect password attempts")
        .or_else(|| reason.strip_suffix(" incorrect password attempt"))
        .and_then(|n| n.parse().ok());
    match attempts {
        Some(attempts) => SudoOutcome::IncorrectPassword { attempts },
        None => SudoOutcome::Denied {
            reason: reason.to_string(),
        },
    }
}

fn parse_su(message: &str) -> Option<AuthMessage> {
    let (success, rest) = match message.strip_prefix("FAILED SU ") {
        Some(rest) => (false, rest),
        None => (true, message),
    };
    let rest = rest.strip_prefix("(to ")?;
    let (target, rest) = rest.split_once(") ")?;
    let (user, tty) = rest.rsplit_once(" on ")?;
    if target.is_empty() || user.is_empty() {
        return None;
    }
    Some(AuthMessage::Su {
        success,
        target_user: target.to_string(),
        user: user.to_string(),
        tty: tty.to_string(),
    })
}

fn parse_login(message: &str) -> Option<AuthMessage> {
    let split_from = |s: &str| match s.split_once(" FROM ") {
        Some((tty, from)) => (tty.trim().to_string(), Some(from.trim().to_string())),
        None => (s.trim().to_string(), None),
    };
    if let Some(rest) = message.strip_prefix("ROOT LOGIN ON ") {
        let (tty, remote_host) = split_from(rest);
        return Some(AuthMessage::LoginSuccess {
            user: "root".into(),
            tty,
            remote_host,
        });
    }
    if let Some(rest) = message.strip_prefix("LOGIN ON ") {
        let (tty, rest) = rest.split_once(" BY ")?;
        let (user, remote_host) = split_from(rest);
        return Some(AuthMessage::LoginSuccess {
            user,
            tty: tty.to_string(),
            remote_host,
        });
    }
    if let Some(rest) = message.strip_prefix("FAILED LOGIN ") {
        let (attempt, rest) = rest.split_once(" FROM ")?;
        let (from, rest) = rest.split_once(" FOR ")?;
        let (user, reason) = rest.rsplit_once(", ")?;
        return Some(AuthMessage::LoginFailed {
            attempt: attempt.parse().ok()?,
            from: from.to_string(),
            user: user.to_string(),
            reason: reason.to_string(),
        });
    }
    None
}

fn parse_logind(message: &str) -> Option<AuthMessage> {
    if let Some(rest) = message.strip_prefix("New session ") {
        let (session, user) = rest.split_once(" of user ")?;
        return Some(AuthMessage::LogindNewSession {
            session: session.to_string(),
            user: user.strip_suffix('.').unwrap_or(user).to_string(),
        });
    }
    let rest = message.strip_prefix("Removed session ")?;
    Some(AuthMessage::LogindRemovedSession {
        session: rest.strip_suffix('.').unwrap_or(rest).to_string(),
    })
}

#[cfg(test)]
mod tests;
