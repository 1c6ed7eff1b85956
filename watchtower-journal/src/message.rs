//! The log lines users know, as typed records.
//!
//! Formats are those of OpenSSH 8.x and 9.x (`sshd.rs`: `auth.c`, `auth2.c`,
//! `auth-pam.c`, `packet.c`, `sshd.c`, `monitor.c`), sudo 1.9 (`logging.c`),
//! util-linux su and login, Linux-PAM's `pam_unix` (`pam.rs`) and systemd-logind.
//! A line this module does not know is `None`, never an error: the journal
//! carries many harmless lines from the same programs.
//!
//! Parts of sshd's and PAM's lines come from the client (the user name, a
//! hostbased client user, a disconnect reason), so they may contain anything,
//! including a fake `from 10.0.0.1 port 22` or `rhost=10.0.0.1`: every field is
//! taken only from its fixed place in the format, and a line that two readings
//! fit is not read (see `sshd.rs` and `pam.rs`).

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
    /// `Connection from A port P on LA port LP [rdomain "R"]` (VERBOSE).
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
        key: Option<PublicKey>,
    },
    /// `Postponed METHOD for [invalid user ]USER from A port P ssh2 [preauth]`
    /// (VERBOSE, or INFO once half of `MaxAuthTries` failed): a method that asked
    /// the client for more (a signature, keyboard-interactive answers).
    SshdPostponed {
        method: String,
        user: String,
        invalid_user: bool,
        address: String,
        port: u16,
    },
    /// `Partial METHOD for USER from A port P ssh2[: KEY]`: one of several
    /// `AuthenticationMethods` passed.
    SshdPartial {
        method: String,
        user: String,
        address: String,
        port: u16,
        key: Option<PublicKey>,
    },
    /// `Invalid user USER from A port P` (USER may be empty).
    SshdInvalidUser {
        user: String,
        address: String,
        port: u16,
    },
    /// `User USER [from HOST ]not allowed because REASON` (`AllowUsers`,
    /// `DenyUsers`, `AllowGroups`, `DenyGroups`, a locked account, a missing
    /// shell): sshd goes on as for an invalid user. HOST is the client's address
    /// (or its name with `UseDNS yes`).
    SshdUserNotAllowed {
        user: String,
        host: Option<String>,
        reason: String,
    },
    /// `ROOT LOGIN REFUSED FROM A port P` (`PermitRootLogin`).
    SshdRootLoginRefused { address: String, port: u16 },
    /// `error: PAM: REASON for [illegal user ]USER from HOST`: a failed try of
    /// keyboard-interactive through PAM (at INFO the only line some tries write).
    SshdPamFailure {
        reason: String,
        user: String,
        invalid_user: bool,
        host: String,
    },
    /// `fatal: Access denied for user USER by PAM account configuration [preauth]`.
    SshdPamAccountDenied { user: String },
    /// `Accepted key TYPE FP found at FILE:LINE` (VERBOSE).
    SshdKeyFound { key: PublicKey },
    /// `Accepted certificate ID "ID" (serial N) signed by ...` (VERBOSE).
    SshdCertificateFound {
        key_id: String,
        serial: u64,
        signed_by: String,
    },
    /// `Authentication refused[ for USER]: REASON` (a key file's owner or modes).
    SshdAuthenticationRefused { user: Option<String>, reason: String },
    /// `maximum authentication attempts exceeded for [invalid user ]U from A port P ssh2 [preauth]`.
    SshdTooManyAttempts {
        user: String,
        invalid_user: bool,
        address: String,
        port: u16,
    },
    /// `Disconnecting [invalid user U |authenticating user U |user U ]A port P: REASON [preauth]`.
    SshdDisconnecting {
        user: Option<String>,
        invalid_user: bool,
        address: String,
        port: u16,
        reason: String,
    },
    /// `Timeout before authentication for A port P` (up to 9.7) or `... for
    /// connection from A to LA, pid = N` (9.8 and later).
    SshdAuthenticationTimeout { address: String, port: Option<u16> },
    /// `Received disconnect from A port P:CODE: REASON [preauth]`.
    SshdReceivedDisconnect {
        address: String,
        port: u16,
        code: u32,
        reason: String,
        preauth: bool,
    },
    /// `Connection closed by [authenticating user U |invalid user U ]A port P [preauth]`.
    SshdConnectionClosed {
        user: Option<String>,
        invalid_user: bool,
        address: String,
        port: u16,
        preauth: bool,
    },
    /// `Connection reset by [authenticating user U |invalid user U ]A port P [preauth]`.
    SshdConnectionReset {
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
    /// `PAM N more authentication failure[s]; logname= ... rhost=A  user=U`:
    /// `pam_unix`'s count, at `pam_end`, of the failed tries after the first on
    /// one handle (each already counted by the kernel and by sshd's lines).
    PamMoreFailures {
        count: u32,
        user: Option<String>,
        ruser: Option<String>,
        rhost: Option<String>,
        tty: Option<String>,
        uid: Option<u32>,
    },
    /// `pam_unix(SERVICE:account): account U has expired (REASON)`: `pam_acct_mgmt` refused.
    PamAccountExpired {
        module: String,
        service: String,
        user: String,
        reason: String,
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

impl AuthMessage {
    /// The `message` tag of its JSON form: what kind of line it is.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            AuthMessage::SshdConnection { .. } => "sshd_connection",
            AuthMessage::SshdAccepted { .. } => "sshd_accepted",
            AuthMessage::SshdFailed { .. } => "sshd_failed",
            AuthMessage::SshdPostponed { .. } => "sshd_postponed",
            AuthMessage::SshdPartial { .. } => "sshd_partial",
            AuthMessage::SshdInvalidUser { .. } => "sshd_invalid_user",
            AuthMessage::SshdUserNotAllowed { .. } => "sshd_user_not_allowed",
            AuthMessage::SshdRootLoginRefused { .. } => "sshd_root_login_refused",
            AuthMessage::SshdPamFailure { .. } => "sshd_pam_failure",
            AuthMessage::SshdPamAccountDenied { .. } => "sshd_pam_account_denied",
            AuthMessage::SshdKeyFound { .. } => "sshd_key_found",
            AuthMessage::SshdCertificateFound { .. } => "sshd_certificate_found",
            AuthMessage::SshdAuthenticationRefused { .. } => "sshd_authentication_refused",
            AuthMessage::SshdTooManyAttempts { .. } => "sshd_too_many_attempts",
            AuthMessage::SshdDisconnecting { .. } => "sshd_disconnecting",
            AuthMessage::SshdAuthenticationTimeout { .. } => "sshd_authentication_timeout",
            AuthMessage::SshdReceivedDisconnect { .. } => "sshd_received_disconnect",
            AuthMessage::SshdConnectionClosed { .. } => "sshd_connection_closed",
            AuthMessage::SshdConnectionReset { .. } => "sshd_connection_reset",
            AuthMessage::SshdDisconnected { .. } => "sshd_disconnected",
            AuthMessage::PamSessionOpened { .. } => "pam_session_opened",
            AuthMessage::PamSessionClosed { .. } => "pam_session_closed",
            AuthMessage::PamAuthFailure { .. } => "pam_auth_failure",
            AuthMessage::PamMoreFailures { .. } => "pam_more_failures",
            AuthMessage::PamAccountExpired { .. } => "pam_account_expired",
            AuthMessage::Sudo(_) => "sudo",
            AuthMessage::Su { .. } => "su",
            AuthMessage::LoginSuccess { .. } => "login_success",
            AuthMessage::LoginFailed { .. } => "login_failed",
            AuthMessage::LogindNewSession { .. } => "logind_new_session",
            AuthMessage::LogindRemovedSession { .. } => "logind_removed_session",
        }
    }

    /// The remote address (or host name) the line names, if it names one.
    #[must_use]
    pub fn remote_address(&self) -> Option<&str> {
        match self {
            AuthMessage::SshdConnection { address, .. }
            | AuthMessage::SshdAccepted { address, .. }
            | AuthMessage::SshdFailed { address, .. }
            | AuthMessage::SshdPostponed { address, .. }
            | AuthMessage::SshdPartial { address, .. }
            | AuthMessage::SshdInvalidUser { address, .. }
            | AuthMessage::SshdRootLoginRefused { address, .. }
            | AuthMessage::SshdTooManyAttempts { address, .. }
            | AuthMessage::SshdDisconnecting { address, .. }
            | AuthMessage::SshdAuthenticationTimeout { address, .. }
            | AuthMessage::SshdReceivedDisconnect { address, .. }
            | AuthMessage::SshdConnectionClosed { address, .. }
            | AuthMessage::SshdConnectionReset { address, .. }
            | AuthMessage::SshdDisconnected { address, .. } => Some(address),
            AuthMessage::SshdPamFailure { host, .. } => Some(host),
            AuthMessage::SshdUserNotAllowed { host, .. } => host.as_deref(),
            AuthMessage::PamAuthFailure { rhost, .. } | AuthMessage::PamMoreFailures { rhost, .. } => {
                rhost.as_deref()
            }
            AuthMessage::LoginSuccess { remote_host, .. } => remote_host.as_deref(),
            _ => None,
        }
    }
}

/// Parse a message written under `program`'s identifier. `None`: not a line the
/// cross-check uses.
#[must_use]
pub fn parse_message(program: Program, message: &str) -> Option<AuthMessage> {
    let message = message.trim_end_matches(['\n', '\r', ' ']);
    if let Some(pam) = pam::parse_pam(message) {
        return Some(pam);
    }
    match program {
        Program::Sshd => sshd::parse_sshd(message),
        Program::Sudo => parse_sudo(message).map(AuthMessage::Sudo),
        Program::Su => parse_su(message),
        Program::Login => parse_login(message),
        Program::Logind => parse_logind(message),
    }
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

mod pam;
mod sshd;

#[cfg(test)]
mod tests;
