//! The lines of one login, grouped by PID.
//!
//! An sshd login writes several lines from one process: `Connection from` (the
//! local port), `Invalid user`, `Accepted key` (the fingerprint at VERBOSE),
//! `pam_unix`'s `authentication failure`, and finally the decisive `Accepted` or
//! `Failed`. su and sudo write one decisive line each. [`LoginStories`] keeps
//! what each PID has said and turns every decisive line into one
//! [`JournalLogin`] carrying everything its process said before it.
//!
//! One failed try is one login, whatever the log level. sshd writes a failed
//! keyboard-interactive try as `error: PAM: Authentication failure for U from H`
//! and, at VERBOSE (at INFO only once half of `MaxAuthTries` failed), also as
//! `Failed keyboard-interactive/pam ...` right after it: the PAM line is the
//! decisive one and the `Failed` line that follows it is the same try. Likewise an
//! account `pam_acct_mgmt` refused is `pam_unix(sshd:account): account U has
//! expired` (written by whichever process called PAM: sshd, or its
//! keyboard-interactive helper), followed in sshd's process by `Failed METHOD`
//! and `fatal: Access denied for user U by PAM account configuration`, which is
//! decisive only when no PAM line told of the refusal before.

use std::collections::HashMap;

use serde::Serialize;

use crate::entry::JournalEntry;
use crate::message::{AuthMessage, Program, PublicKey, SudoLine, SudoOutcome, parse_message};

/// How a login went, as the journal tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// Who wrote the lines, from journald's trusted fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Writer {
    pub pid: u32,
    pub uid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// `SYSLOG_IDENTIFIER`, what the writer claims to be.
    pub identifier: String,
}

/// One login (or one failed try) as the journal tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalLogin {
    pub program: Program,
    pub outcome: Outcome,
    /// Failed tries this line stands for (sudo writes `3 incorrect password attempts`
    /// once); 1 otherwise.
    pub attempts: u32,
    /// The user who logged in (sshd, login), switched to (su), or ran sudo.
    pub user: String,
    /// sshd said `invalid user`.
    pub invalid_user: bool,
    /// sshd's method: `password`, `publickey`, `keyboard-interactive/pam`, ...
    pub method: Option<String>,
    pub key: Option<PublicKey>,
    pub remote_address: Option<String>,
    pub remote_port: Option<u16>,
    /// The sshd port the client connected to.
    pub local_port: Option<u16>,
    pub tty: Option<String>,
    /// su: who ran it.
    pub by_user: Option<String>,
    /// The sudo line (command, working directory, target user) when sudo wrote it.
    pub sudo: Option<SudoLine>,
    /// Whether the kernel witness must have seen this: false for lines written
    /// without a PAM authentication (sudo refusing by policy).
    pub kernel_expected: bool,
    /// When journald received the decisive line (µs since the epoch).
    pub time_us: u64,
    pub cursor: String,
    pub writer: Writer,
    /// The writer's process is not the program its identifier names (`logger -t sshd`).
    pub identity_mismatch: bool,
    /// The process's lines up to and including the decisive one (at most [`MAX_LINES`]).
    pub lines: Vec<String>,
}

/// Lines kept per process.
pub const MAX_LINES: usize = 16;
/// Processes followed at once; the oldest is forgotten beyond this (counted).
pub const MAX_STORIES: usize = 4096;
/// A process silent this long is forgotten (µs).
pub const STORY_IDLE_US: u64 = 15 * 60 * 1_000_000;
/// How often idle stories are swept (journal time, µs): a sweep walks every story,
/// so it is not done per record.
const SWEEP_EVERY_US: u64 = 60 * 1_000_000;

#[derive(Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts a login's lines told"
)]
struct Story {
    last_us: u64,
    lines: Vec<String>,
    local_port: Option<u16>,
    /// The client's address and port, from the lines that name them.
    remote_address: Option<String>,
    remote_port: Option<u16>,
    key: Option<PublicKey>,
    invalid_user: bool,
    /// A `PAM: ... for U from H` line was a failed try whose `Failed
    /// keyboard-interactive` line (if sshd writes it) has not come yet.
    pam_failure_awaits_auth_log: bool,
    /// A PAM account refusal was a failed try whose `Failed METHOD` line has not
    /// come yet.
    account_failure_awaits_auth_log: bool,
    /// A PAM account refusal was told of (`fatal: Access denied` then adds nothing).
    account_failure_told: bool,
}

/// Counters of what the journal side saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoryCounters {
    /// Records from the watched programs.
    pub entries: u64,
    /// Records whose message was one of the typed ones.
    pub recognised: u64,
    /// Logins (decisive lines) produced.
    pub logins: u64,
    /// Records without `_PID` or with an identifier that is not watched.
    pub skipped: u64,
    /// Stories forgotten because too many processes were followed at once.
    pub evicted: u64,
}

#[derive(Default)]
pub struct LoginStories {
    stories: HashMap<(Program, u32), Story>,
    counters: StoryCounters,
    /// When idle stories were last swept (journal time, µs).
    swept_us: u64,
}

impl LoginStories {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn counters(&self) -> StoryCounters {
        self.counters
    }

    /// Feed one record; a decisive line yields its login.
    pub fn push(&mut self, entry: &JournalEntry) -> Option<JournalLogin> {
        let (Some(pid), Some(program)) = (
            entry.pid,
            entry.identifier.as_deref().and_then(Program::from_identifier),
        ) else {
            self.counters.skipped += 1;
            return None;
        };
        self.counters.entries += 1;
        self.expire(entry.realtime_us);
        let message = parse_message(program, &entry.message);
        if message.is_some() {
            self.counters.recognised += 1;
        }
        if !self.stories.contains_key(&(program, pid))
            && self.stories.len() >= MAX_STORIES
            && let Some(oldest) = self
                .stories
                .iter()
                .min_by_key(|(_, s)| s.last_us)
                .map(|(k, _)| *k)
        {
            self.stories.remove(&oldest);
            self.counters.evicted += 1;
        }
        let story = self.stories.entry((program, pid)).or_default();
        story.last_us = entry.realtime_us;
        if story.lines.len() >= MAX_LINES {
            story.lines.remove(0);
        }
        story.lines.push(entry.message.chars().take(512).collect());
        let login = message.and_then(|m| decisive(program, m, story, entry));
        if login.is_some() {
            self.counters.logins += 1;
        }
        login
    }

    fn expire(&mut self, now_us: u64) {
        if self.stories.len() < 64 || now_us.saturating_sub(self.swept_us) < SWEEP_EVERY_US {
            return;
        }
        self.swept_us = now_us;
        self.stories
            .retain(|_, s| now_us.saturating_sub(s.last_us) < STORY_IDLE_US);
    }

    /// Processes currently followed.
    #[must_use]
    pub fn open(&self) -> usize {
        self.stories.len()
    }
}

fn login(
    program: Program,
    outcome: Outcome,
    user: String,
    story: &Story,
    entry: &JournalEntry,
) -> JournalLogin {
    let identifier = entry.identifier.clone().unwrap_or_default();
    JournalLogin {
        program,
        outcome,
        attempts: 1,
        user,
        invalid_user: story.invalid_user,
        method: None,
        key: None,
        remote_address: None,
        remote_port: None,
        local_port: story.local_port,
        tty: None,
        by_user: None,
        sudo: None,
        kernel_expected: true,
        time_us: entry.realtime_us,
        cursor: entry.cursor.clone(),
        identity_mismatch: !entry.comm.as_deref().is_some_and(|c| program.comm_matches(c)),
        writer: Writer {
            pid: entry.pid.unwrap_or(0),
            uid: entry.uid,
            comm: entry.comm.clone(),
            exe: entry.exe.clone(),
            identifier,
        },
        lines: story.lines.clone(),
    }
}

/// Methods sshd runs through PAM (the kernel witness sees their failures too).
fn method_uses_pam(method: &str) -> bool {
    method == "password" || method.starts_with("keyboard-interactive")
}

/// What a line says about the peer, kept for the decisive lines that do not name it.
fn remember_peer(story: &mut Story, message: &AuthMessage) {
    let port = match message {
        AuthMessage::SshdConnection { port, .. }
        | AuthMessage::SshdInvalidUser { port, .. }
        | AuthMessage::SshdPostponed { port, .. }
        | AuthMessage::SshdRootLoginRefused { port, .. } => Some(*port),
        _ => None,
    };
    if let Some(port) = port {
        story.remote_port = Some(port);
        story.remote_address = message.remote_address().map(str::to_string);
    }
}

/// A failed sshd try told only by PAM (`PAM: ...`, an account refusal).
fn sshd_pam_failure(
    program: Program,
    user: String,
    method: Option<&str>,
    host: Option<String>,
    story: &Story,
    entry: &JournalEntry,
) -> JournalLogin {
    let mut l = login(program, Outcome::Failure, user, story, entry);
    l.method = method.map(str::to_string);
    l.remote_address = host.or_else(|| story.remote_address.clone());
    l.remote_port = story.remote_port;
    l
}

#[expect(clippy::too_many_lines, reason = "one arm per decisive line kind")]
fn decisive(
    program: Program,
    message: AuthMessage,
    story: &mut Story,
    entry: &JournalEntry,
) -> Option<JournalLogin> {
    remember_peer(story, &message);
    match message {
        AuthMessage::SshdConnection { local_port, .. } => {
            story.local_port = Some(local_port);
            None
        }
        AuthMessage::SshdKeyFound { key } => {
            story.key = Some(key);
            None
        }
        AuthMessage::SshdInvalidUser { .. } | AuthMessage::SshdUserNotAllowed { .. } => {
            // A user sshd refuses by policy goes on as an invalid user.
            story.invalid_user = true;
            None
        }
        AuthMessage::SshdPamFailure {
            user,
            invalid_user,
            host,
            ..
        } if program == Program::Sshd => {
            // Only keyboard-interactive runs PAM's conversation (`sshpam_query`).
            story.invalid_user |= invalid_user;
            story.pam_failure_awaits_auth_log = true;
            Some(sshd_pam_failure(
                program,
                user,
                Some("keyboard-interactive/pam"),
                Some(host),
                story,
                entry,
            ))
        }
        AuthMessage::PamAccountExpired { user, .. } if program == Program::Sshd => {
            story.account_failure_awaits_auth_log = true;
            story.account_failure_told = true;
            Some(sshd_pam_failure(program, user, None, None, story, entry))
        }
        AuthMessage::SshdPamAccountDenied { user } => {
            if std::mem::replace(&mut story.account_failure_told, true) {
                return None;
            }
            Some(sshd_pam_failure(program, user, None, None, story, entry))
        }
        AuthMessage::SshdAccepted {
            method,
            user,
            address,
            port,
            key,
        } => {
            story.pam_failure_awaits_auth_log = false;
            story.account_failure_awaits_auth_log = false;
            let mut l = login(program, Outcome::Success, user, story, entry);
            l.key = key.or_else(|| story.key.clone());
            l.method = Some(method);
            l.remote_address = Some(address);
            l.remote_port = Some(port);
            Some(l)
        }
        AuthMessage::SshdFailed {
            method,
            user,
            invalid_user,
            address,
            port,
            ..
        } => {
            story.invalid_user |= invalid_user;
            // The try a PAM line already told of.
            if std::mem::take(&mut story.account_failure_awaits_auth_log) {
                return None;
            }
            if method.starts_with("keyboard-interactive")
                && std::mem::take(&mut story.pam_failure_awaits_auth_log)
            {
                return None;
            }
            // A rejected public key never reaches PAM: not a login attempt the kernel
            // can see, and not one that PAM would count.
            if !method_uses_pam(&method) {
                return None;
            }
            let mut l = login(program, Outcome::Failure, user, story, entry);
            l.method = Some(method);
            l.remote_address = Some(address);
            l.remote_port = Some(port);
            Some(l)
        }
        AuthMessage::Sudo(line) => {
            let (outcome, attempts, kernel_expected) = match &line.outcome {
                SudoOutcome::Allowed => (Outcome::Success, 1, true),
                SudoOutcome::IncorrectPassword { attempts } => (Outcome::Failure, (*attempts).max(1), true),
                SudoOutcome::Denied { .. } => (Outcome::Failure, 1, false),
            };
            let mut l = login(program, outcome, line.user.clone(), story, entry);
            l.attempts = attempts;
            l.kernel_expected = kernel_expected;
            l.tty.clone_from(&line.tty);
            l.sudo = Some(line);
            Some(l)
        }
        AuthMessage::Su {
            success,
            target_user,
            user,
            tty,
        } => {
            let outcome = if success {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            let mut l = login(program, outcome, target_user, story, entry);
            l.by_user = Some(user);
            l.tty = Some(tty);
            Some(l)
        }
        AuthMessage::LoginSuccess {
            user,
            tty,
            remote_host,
        } => {
            let mut l = login(program, Outcome::Success, user, story, entry);
            l.tty = Some(tty);
            l.remote_address = remote_host;
            Some(l)
        }
        AuthMessage::LoginFailed { user, from, .. } => {
            let mut l = login(program, Outcome::Failure, user, story, entry);
            l.tty = Some(from);
            Some(l)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::parse_entry;

    /// Real records of one Debian 12 session (journalctl -o json, trimmed to the
    /// fields the parser reads): a password login, a wrong password, an invalid
    /// user, a public-key login; root running su and sudo; `wt_alice` failing and
    /// passing sudo; a failed su; and a `logger -t sshd` forgery.
    const CAPTURED: &str = include_str!("../tests/fixtures/debian12_sshd_su_sudo.jsonl");

    fn logins() -> (Vec<JournalLogin>, StoryCounters) {
        let mut stories = LoginStories::new();
        let mut out = Vec::new();
        for line in CAPTURED.lines() {
            let entry = parse_entry(line.as_bytes()).expect("every captured record parses");
            out.extend(stories.push(&entry));
        }
        (out, stories.counters())
    }

    #[test]
    fn captured_session_yields_one_login_per_decisive_line() {
        use Outcome::{Failure, Success};
        let (logins, counters) = logins();
        let summary: Vec<_> = logins
            .iter()
            .map(|l| {
                (
                    l.program,
                    l.outcome,
                    l.user.as_str(),
                    l.method.as_deref(),
                    l.attempts,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Program::Sshd, Success, "wt_alice", Some("password"), 1),
                (Program::Sshd, Failure, "wt_alice", Some("password"), 1),
                (Program::Sshd, Failure, "nosuchuser", Some("password"), 1),
                (Program::Sshd, Success, "wt_alice", Some("publickey"), 1),
                (Program::Su, Success, "wt_bob", None, 1),
                (Program::Sudo, Success, "root", None, 1),
                // `su wt_alice -c "... sudo ..."` run by root:
                (Program::Su, Success, "wt_alice", None, 1),
                (Program::Sudo, Failure, "wt_alice", None, 1),
                (Program::Sudo, Success, "wt_alice", None, 1),
                (Program::Su, Success, "wt_alice", None, 1),
                (Program::Su, Failure, "wt_bob", None, 1),
                (Program::Sshd, Success, "mallory", Some("password"), 1),
            ]
        );
        assert_eq!(counters.logins, 12);
        assert_eq!(counters.skipped, 0);

        let password = &logins[0];
        assert_eq!(password.remote_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(password.remote_port, Some(33744));
        assert_eq!(
            password.local_port,
            Some(2222),
            "from the Connection line of the same pid"
        );
        assert!(!password.identity_mismatch);
        assert_eq!(password.writer.exe.as_deref(), Some("/usr/sbin/sshd"));
        assert!(logins[2].invalid_user);
        assert!(!logins[1].invalid_user);
        let key = logins[3].key.as_ref().unwrap();
        assert_eq!(
            key.fingerprint,
            "SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A"
        );

        let sudo = logins[5].sudo.as_ref().unwrap();
        assert_eq!(sudo.command.as_deref(), Some("/usr/bin/id"));
        assert_eq!(sudo.target_user.as_deref(), Some("wt_bob"));
        assert_eq!(logins[10].by_user.as_deref(), Some("wt_alice"));
        assert_eq!(logins[6].by_user.as_deref(), Some("root"));

        let forged = &logins[11];
        assert!(forged.identity_mismatch, "written by logger, not sshd");
        // logger had exited before journald looked it up: no _COMM at all, which a
        // real sshd (alive while it logs) always has.
        assert_eq!(forged.writer.comm, None);
        assert_eq!(forged.writer.pid, 22443);
        assert_eq!(forged.remote_address.as_deref(), Some("10.9.9.9"));
        assert_eq!(forged.remote_port, Some(4242));
    }

    /// Every sshd record of one run on Debian 12 (OpenSSH 9.2) at INFO and at
    /// VERBOSE, with keyboard-interactive on, `MaxAuthTries`, `AllowUsers`,
    /// `DenyUsers`, `AllowGroups`, `DenyGroups`, refused root, crafted user names
    /// and an expired account (see `message::tests::corpus`).
    const OPENSSH_92: &str = include_str!("../tests/fixtures/debian12_openssh92_info_verbose.jsonl");

    #[test]
    fn one_login_per_failed_try_at_info_and_at_verbose() {
        let mut stories = LoginStories::new();
        let mut summary = Vec::new();
        for line in OPENSSH_92.lines() {
            let entry = parse_entry(line.as_bytes()).unwrap();
            if let Some(l) = stories.push(&entry) {
                assert_eq!(l.remote_address.as_deref().unwrap_or("127.0.0.1"), "127.0.0.1");
                summary.push(format!(
                    "{} {:?} {:?} {} {}{}",
                    l.writer.pid,
                    l.outcome,
                    l.user,
                    l.method.as_deref().unwrap_or("-"),
                    l.remote_port.map_or("-".to_string(), |p| p.to_string()),
                    if l.invalid_user { " invalid" } else { "" }
                ));
            }
        }
        let expected = vec![
            // INFO, keyboard-interactive: 5 wrong answers are 5 `PAM:` lines (and
            // `Failed` lines only for the last two, the same tries).
            "2405 Failure \"wt_alice\" keyboard-interactive/pam -",
            "2405 Failure \"wt_alice\" keyboard-interactive/pam -",
            "2405 Failure \"wt_alice\" keyboard-interactive/pam -",
            "2405 Failure \"wt_alice\" keyboard-interactive/pam 47306",
            "2405 Failure \"wt_alice\" keyboard-interactive/pam 47306",
            // One wrong answer (password, keyboard-interactive), then the right one.
            "2530 Failure \"wt_alice\" keyboard-interactive/pam -",
            "2530 Success \"wt_alice\" keyboard-interactive/pam 58714",
            "2610 Failure \"wt_alice\" password 58720",
            "2610 Success \"wt_alice\" password 58720",
            // Invalid users; a public key (a wrong one is no PAM try at all).
            "2680 Failure \"wt_nosuch\" keyboard-interactive/pam 53602 invalid",
            "2736 Failure \"wt_nosuch\" password 53608 invalid",
            "2751 Success \"wt_alice\" publickey 53622",
            // VERBOSE: each `PAM:` line is followed by its `Failed` line: still 5.
            "2816 Failure \"wt_alice\" keyboard-interactive/pam 39514",
            "2816 Failure \"wt_alice\" keyboard-interactive/pam 39514",
            "2816 Failure \"wt_alice\" keyboard-interactive/pam 39514",
            "2816 Failure \"wt_alice\" keyboard-interactive/pam 39514",
            "2816 Failure \"wt_alice\" keyboard-interactive/pam 39514",
            "2914 Failure \"wt_alice\" keyboard-interactive/pam 39558",
            "2914 Success \"wt_alice\" keyboard-interactive/pam 39558",
            "2966 Failure \"wt_alice\" password 39566",
            "2966 Success \"wt_alice\" password 39566",
            "3016 Failure \"wt_nosuch\" keyboard-interactive/pam 39570 invalid",
            "3061 Failure \"wt_nosuch\" password 35260 invalid",
            "3139 Success \"wt_alice\" publickey 35274",
            // `MaxAuthTries 3`; an empty user name; AllowUsers, DenyUsers,
            // AllowGroups, DenyGroups refusals (sshd goes on as for invalid users).
            "3223 Failure \"wt_alice\" password 45432",
            "3223 Failure \"wt_alice\" password 45432",
            "3223 Failure \"wt_alice\" password 45432",
            "3428 Failure \"\" password 41862 invalid",
            "3493 Failure \"wt_bob\" password 58696 invalid",
            "3547 Failure \"wt_bob\" keyboard-interactive/pam 59134 invalid",
            "3619 Failure \"wt_bob\" password 45178 invalid",
            "3685 Failure \"wt_bob\" keyboard-interactive/pam 45188 invalid",
            "3746 Failure \"wt_bob\" password 36342 invalid",
            "3813 Failure \"wt_bob\" password 37056 invalid",
            // Root refused; crafted user names (the address stays the client's).
            "3904 Failure \"root\" password 37060",
            "3963 Failure \"x from 6.6.6.6 port 1 ssh2\" password 37076 invalid",
            "4019 Failure \"y from 6.6.6.7\" keyboard-interactive/pam 37080 invalid",
            "4073 Failure \"z rhost=6.6.6.8 user=root\" password 53856 invalid",
            "4156 Failure \"q 6.6.6.9 port 7\" password 53860 invalid",
            // An expired account: password, keyboard-interactive (its PAM helper
            // writes the refusal), public key.
            "4207 Failure \"wt_expired\" - -",
            "4254 Failure \"wt_expired\" - -",
            "4256 Failure \"wt_expired\" - -",
        ];
        assert_eq!(summary, expected, "{summary:#?}");
    }

    fn sshd_entry(pid: u32, t: u64, message: &str) -> JournalEntry {
        JournalEntry {
            cursor: format!("c{t}"),
            realtime_us: t,
            boot_id: None,
            pid: Some(pid),
            uid: Some(0),
            comm: Some("sshd".into()),
            exe: None,
            identifier: Some("sshd".into()),
            transport: None,
            message: message.into(),
        }
    }

    #[test]
    fn a_pam_line_pairs_only_with_its_own_method() {
        // INFO: three keyboard-interactive answers written only as `PAM:` lines,
        // then the client falls back to passwords: every try is one login.
        let mut stories = LoginStories::new();
        let mut methods = Vec::new();
        for (t, line) in [
            "error: PAM: Authentication failure for a from 192.0.2.1",
            "error: PAM: Authentication failure for a from 192.0.2.1",
            "Failed keyboard-interactive/pam for a from 192.0.2.1 port 5 ssh2",
            "Failed password for a from 192.0.2.1 port 5 ssh2",
            "Failed password for a from 192.0.2.1 port 5 ssh2",
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(l) = stories.push(&sshd_entry(7, t as u64, line)) {
                methods.push(l.method.unwrap());
            }
        }
        assert_eq!(
            methods,
            [
                "keyboard-interactive/pam",
                "keyboard-interactive/pam",
                "password",
                "password"
            ]
        );
    }

    #[test]
    fn an_account_refusal_is_one_failure_whoever_tells_it() {
        let mut stories = LoginStories::new();
        let told = |stories: &mut LoginStories, pid, lines: &[&str]| {
            lines
                .iter()
                .enumerate()
                .filter_map(|(t, l)| stories.push(&sshd_entry(pid, t as u64, l)))
                .count()
        };
        let account = "pam_unix(sshd:account): account b has expired (account expired)";
        let denied = "fatal: Access denied for user b by PAM account configuration [preauth]";
        let failed = "Failed password for b from 192.0.2.1 port 5 ssh2";
        assert_eq!(told(&mut stories, 1, &[account, failed, denied]), 1, "password");
        assert_eq!(told(&mut stories, 2, &[account, denied]), 1, "public key at INFO");
        assert_eq!(told(&mut stories, 3, &[denied]), 1, "a module that logs nothing");
    }

    #[test]
    fn lines_of_one_pid_stay_together_and_are_bounded() {
        let mut stories = LoginStories::new();
        let entry = |pid: u32, t: u64, message: &str| JournalEntry {
            cursor: format!("c{t}"),
            realtime_us: t,
            boot_id: None,
            pid: Some(pid),
            uid: Some(0),
            comm: Some("sshd".into()),
            exe: None,
            identifier: Some("sshd".into()),
            transport: None,
            message: message.into(),
        };
        for i in 0..40 {
            assert_eq!(stories.push(&entry(7, i, "noise")), None);
        }
        stories.push(&entry(
            8,
            50,
            "Connection from 192.0.2.1 port 1 on 192.0.2.2 port 22 rdomain \"\"",
        ));
        let login = stories
            .push(&entry(
                7,
                60,
                "Accepted password for a from 192.0.2.3 port 5 ssh2",
            ))
            .unwrap();
        assert_eq!(login.lines.len(), MAX_LINES);
        assert_eq!(login.local_port, None, "pid 8's connection is not pid 7's");
        let mut no_pid = entry(9, 70, "Accepted password for a from 192.0.2.3 port 5 ssh2");
        no_pid.pid = None;
        assert_eq!(stories.push(&no_pid), None);
        assert_eq!(stories.counters().skipped, 1);
        let publickey_failure = entry(
            9,
            80,
            "Failed publickey for a from 192.0.2.3 port 5 ssh2: RSA SHA256:x",
        );
        assert_eq!(stories.push(&publickey_failure), None, "never reaches PAM");
    }
}
