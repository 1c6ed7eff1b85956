use super::*;
use crate::event::Process;
use watchtower_journal::{LoginStories, parse_entry};

const SECOND: u64 = 1_000_000_000;
/// The real journal records of `watchtower-journal`'s fixture (Debian 12).
const JOURNAL: &str = include_str!("../../../watchtower-journal/tests/fixtures/debian12_sshd_su_sudo.jsonl");

fn journal_logins() -> Vec<JournalLogin> {
    let mut stories = LoginStories::new();
    JOURNAL
        .lines()
        .filter_map(|l| stories.push(&parse_entry(l.as_bytes()).unwrap()))
        .collect()
}

/// The kernel's attempt for the same process, `offset_ns` from the journal line.
fn attempt_like(j: &JournalLogin, service: &str, outcome: Outcome) -> LoginAttempt {
    LoginAttempt {
        service: service.into(),
        user: j.user.clone(),
        user_known: Some(true),
        remote_host: j.remote_address.clone(),
        tty: None,
        remote_user: None,
        outcome,
        failed_step: None,
        pam_code: 0,
        pam_code_name: "PAM_SUCCESS",
        authenticate_code: None,
        account_code: None,
        from_session: None,
        process: Process {
            pid: j.writer.pid,
            tid: j.writer.pid,
            ppid: 1,
            uid: 0,
            gid: 0,
            comm: "sshd".into(),
            euid: None,
            loginuid: None,
        },
    }
}

fn time_of(j: &JournalLogin) -> u64 {
    j.time_us * 1000
}

#[test]
fn password_and_publickey_logins_are_confirmed_with_the_method() {
    let logins = journal_logins();
    let (password, publickey) = (&logins[0], &logins[3]);
    let start = time_of(password) - 60 * SECOND;
    let mut r = Reconciler::new(10 * SECOND, Some(start));
    let mut out = Vec::new();
    // The kernel usually comes first (the probe fires before sshd logs).
    r.kernel(
        1,
        time_of(password) - 700_000,
        &attempt_like(password, "sshd", Outcome::Success),
        &mut out,
    );
    assert!(out.is_empty());
    r.journal(password.clone(), &mut out);
    // ...but the order does not matter.
    r.journal(publickey.clone(), &mut out);
    r.kernel(
        2,
        time_of(publickey) - 300_000,
        &attempt_like(publickey, "sshd", Outcome::Success),
        &mut out,
    );
    let got: Vec<_> = out
        .iter()
        .map(|v| {
            (
                v.verdict,
                v.auth_method.as_deref(),
                v.remote_port,
                v.kernel.as_ref().unwrap().seq,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Verdict::Confirmed, Some("password"), Some(33744), 1),
            (Verdict::Confirmed, Some("publickey"), Some(33780), 2)
        ]
    );
    assert_eq!(
        out[1].key_fingerprint.as_deref(),
        Some("SHA256:zqGL0LqpEe2ix2ix/W04xaTRqV/P/WuYmVqBGVQzd/A")
    );
    assert!(!out[0].user_mismatch);
    let c = r.counters();
    assert_eq!((c.confirmed, c.pending_kernel, c.pending_journal), (2, 0, 0));
}

#[test]
fn unmatched_logins_become_alerts_when_the_window_closes() {
    let logins = journal_logins();
    let forged = logins.last().unwrap().clone();
    assert_eq!(forged.user, "mallory");
    let t = time_of(&forged);
    let mut r = Reconciler::new(10 * SECOND, Some(t - 60 * SECOND));
    let mut out = Vec::new();
    r.journal(forged, &mut out);
    let suppressed = attempt_like(&logins[0], "sshd", Outcome::Success);
    r.kernel(9, t, &suppressed, &mut out);
    r.expire(t + 9 * SECOND, || true, &mut out);
    assert!(out.is_empty(), "still within the window");
    r.expire(t + 11 * SECOND, || false, &mut out);
    let got: Vec<_> = out
        .iter()
        .map(|v| (v.verdict, v.reason, v.user.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Verdict::KernelOnly, "journald_not_accepting", "wt_alice"),
            (Verdict::JournalOnly, "writer_not_the_program", "mallory"),
        ]
    );
    assert_eq!(out[1].remote_address.as_deref(), Some("10.9.9.9"));
    let c = r.counters();
    assert_eq!((c.kernel_only, c.journal_only, c.pending_kernel), (1, 1, 0));
}

#[test]
fn a_login_seen_while_the_journal_was_unreadable_is_not_called_suppressed() {
    let logins = journal_logins();
    let t = time_of(&logins[0]);
    let mut r = Reconciler::new(10 * SECOND, Some(t - 60 * SECOND));
    let mut out = Vec::new();
    // journald was down when the kernel saw the first login, back for the second.
    r.journal_readable(false);
    r.kernel(
        1,
        t,
        &attempt_like(&logins[0], "sshd", Outcome::Success),
        &mut out,
    );
    r.journal_readable(true);
    r.kernel(
        2,
        t + 1,
        &attempt_like(&logins[0], "sshd", Outcome::Success),
        &mut out,
    );
    // journald accepts again when the window closes.
    r.expire(t + 11 * SECOND, || true, &mut out);
    let got: Vec<_> = out
        .iter()
        .map(|v| (v.verdict, v.reason, v.kernel.as_ref().unwrap().seq))
        .collect();
    assert_eq!(
        got,
        vec![
            (Verdict::KernelOnly, "journald_not_accepting", 1),
            (Verdict::KernelOnly, "no_journal_record", 2),
        ]
    );
}

#[test]
fn pid_outcome_program_and_window_must_all_agree() {
    let logins = journal_logins();
    let password = &logins[0];
    let t = time_of(password);
    let mut r = Reconciler::new(2 * SECOND, Some(t - 60 * SECOND));
    let mut out = Vec::new();
    let mut other_pid = attempt_like(password, "sshd", Outcome::Success);
    other_pid.process.pid += 1;
    r.kernel(1, t, &other_pid, &mut out);
    r.kernel(2, t, &attempt_like(password, "sshd", Outcome::Failure), &mut out);
    r.kernel(3, t, &attempt_like(password, "su", Outcome::Success), &mut out);
    r.kernel(
        4,
        t + 3 * SECOND,
        &attempt_like(password, "sshd", Outcome::Success),
        &mut out,
    );
    r.kernel(5, t, &attempt_like(password, "cron", Outcome::Success), &mut out);
    r.journal(password.clone(), &mut out);
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(r.counters().pending_kernel, 4, "cron is not cross-checked");
    // A helper process whose parent wrote the line matches.
    let mut helper = attempt_like(password, "sshd", Outcome::Success);
    helper.process.ppid = helper.process.pid;
    helper.process.pid += 100;
    r.kernel(6, t, &helper, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kernel.as_ref().unwrap().seq, 6);
}

#[test]
fn sudo_lines_cover_several_kernel_tries_and_carry_the_command() {
    let logins = journal_logins();
    let ok = logins
        .iter()
        .find(|l| l.program == Program::Sudo && l.user == "root")
        .unwrap()
        .clone();
    let t = time_of(&ok);
    let mut r = Reconciler::new(10 * SECOND, Some(t - 60 * SECOND));
    let mut out = Vec::new();
    // Two wrong passwords, then the right one, in one sudo process.
    r.kernel(
        1,
        t - 4 * SECOND,
        &attempt_like(&ok, "sudo", Outcome::Failure),
        &mut out,
    );
    r.kernel(
        2,
        t - 2 * SECOND,
        &attempt_like(&ok, "sudo", Outcome::Failure),
        &mut out,
    );
    r.kernel(3, t, &attempt_like(&ok, "sudo", Outcome::Success), &mut out);
    r.journal(ok, &mut out);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|v| v.verdict == Verdict::Confirmed));
    assert!(out.iter().all(|v| v.command.as_deref() == Some("/usr/bin/id")));
    assert_eq!(r.counters().pending_journal, 0);

    // `3 incorrect password attempts` against two kernel failures: one try is
    // journal-only.
    let mut three = logins
        .iter()
        .find(|l| l.program == Program::Sudo && l.outcome == JournalOutcome::Failure)
        .unwrap()
        .clone();
    three.attempts = 3;
    let t = time_of(&three);
    out.clear();
    r.kernel(7, t, &attempt_like(&three, "sudo", Outcome::Failure), &mut out);
    r.kernel(8, t, &attempt_like(&three, "sudo", Outcome::Failure), &mut out);
    r.journal(three, &mut out);
    r.expire(t + 11 * SECOND, || true, &mut out);
    let got: Vec<_> = out.iter().map(|v| (v.verdict, v.attempts)).collect();
    assert_eq!(
        got,
        vec![
            (Verdict::Confirmed, 1),
            (Verdict::Confirmed, 1),
            (Verdict::JournalOnly, 1)
        ]
    );
}

#[test]
fn one_witness_only_is_unchecked_not_an_alert() {
    let logins = journal_logins();
    let mut out = Vec::new();
    let mut journal_only_mode = Reconciler::new(10 * SECOND, None);
    journal_only_mode.journal(logins[0].clone(), &mut out);
    let t = time_of(&logins[0]);
    let mut restarted = Reconciler::new(10 * SECOND, Some(t + 3600 * SECOND));
    restarted.journal(logins[1].clone(), &mut out);
    let mut stopping = Reconciler::new(10 * SECOND, Some(t - SECOND));
    stopping.kernel(1, t, &attempt_like(&logins[4], "su", Outcome::Success), &mut out);
    stopping.flush(&mut out);
    let got: Vec<_> = out.iter().map(|v| (v.verdict, v.reason)).collect();
    assert_eq!(
        got,
        vec![
            (Verdict::Unchecked, "kernel_witness_off"),
            (Verdict::Unchecked, "before_kernel_watch"),
            (Verdict::Unchecked, "agent_stopping"),
        ]
    );
    assert_eq!(out[0].auth_method.as_deref(), Some("password"));
}

/// Every sshd record of one run of OpenSSH 9.2 at INFO and VERBOSE
/// (keyboard-interactive, password and public-key tries, refusals by
/// `AllowUsers`/`DenyUsers`/groups, `MaxAuthTries`, an expired account).
const OPENSSH_92: &str =
    include_str!("../../../watchtower-journal/tests/fixtures/debian12_openssh92_info_verbose.jsonl");

/// What the kernel witness saw in that run, as PAM's own lines tell it (not
/// sshd's): one failed `pam_authenticate` per `pam_unix` `authentication
/// failure` line, plus the `N more` that `pam_unix` counts at `pam_end` for one
/// handle; one refused `pam_acct_mgmt` per `account ... has expired`; one success
/// per `session opened`. A line from sshd's keyboard-interactive helper names its
/// own pid; its parent is the sshd process whose `PAM:` line follows.
fn kernel_attempts_from_pam_lines(records: &[watchtower_journal::JournalEntry]) -> Vec<(u64, LoginAttempt)> {
    use watchtower_journal::{AuthMessage, parse_message};
    let parsed: Vec<_> = records
        .iter()
        .map(|e| parse_message(Program::Sshd, &e.message))
        .collect();
    let mut out = Vec::new();
    for (i, (entry, message)) in records.iter().zip(&parsed).enumerate() {
        let pid = entry.pid.unwrap();
        let (outcome, user, tries) = match message {
            Some(AuthMessage::PamAuthFailure { user, .. }) => (Outcome::Failure, user.clone(), 1),
            Some(AuthMessage::PamMoreFailures { user, count, .. }) => {
                (Outcome::Failure, user.clone(), *count)
            }
            Some(AuthMessage::PamAccountExpired { user, .. }) => (Outcome::Failure, Some(user.clone()), 1),
            Some(AuthMessage::PamSessionOpened { user, .. }) => (Outcome::Success, Some(user.clone()), 1),
            _ => continue,
        };
        // The helper's parent: the next `PAM:` line of another process.
        let next_sshd_line = records[i + 1..]
            .iter()
            .zip(&parsed[i + 1..])
            .find(|(e, m)| e.pid != Some(pid) && matches!(m, Some(AuthMessage::SshdPamFailure { .. })));
        let ppid = match (message, next_sshd_line) {
            (Some(AuthMessage::PamAuthFailure { .. }), Some((e, _))) => e.pid.unwrap(),
            _ => 1,
        };
        for _ in 0..tries {
            out.push((
                entry.realtime_us * 1000,
                LoginAttempt {
                    service: "sshd".into(),
                    user: user.clone().unwrap_or_default(),
                    user_known: None,
                    remote_host: Some("127.0.0.1".into()),
                    tty: Some("ssh".into()),
                    remote_user: None,
                    outcome,
                    failed_step: None,
                    pam_code: 0,
                    pam_code_name: "PAM_SUCCESS",
                    authenticate_code: None,
                    account_code: None,
                    from_session: None,
                    process: Process {
                        pid,
                        tid: pid,
                        ppid,
                        uid: 0,
                        gid: 0,
                        comm: "sshd".into(),
                        euid: None,
                        loginuid: None,
                    },
                },
            ));
        }
    }
    out
}

#[test]
fn every_sshd_try_at_info_and_verbose_is_confirmed() {
    let records: Vec<_> = OPENSSH_92
        .lines()
        .map(|l| parse_entry(l.as_bytes()).unwrap())
        .collect();
    let kernel = kernel_attempts_from_pam_lines(&records);
    let mut stories = LoginStories::new();
    let journal: Vec<JournalLogin> = records.iter().filter_map(|e| stories.push(e)).collect();
    let start = records[0].realtime_us * 1000 - 60 * SECOND;
    let mut r = Reconciler::new(10 * SECOND, Some(start));
    let mut out = Vec::new();
    // Both witnesses in time order, the kernel first at equal times (its probe
    // fires before the program logs); the window is closed as time goes on.
    let mut k = kernel.iter().enumerate().peekable();
    let mut seq = 0;
    for j in &journal {
        let j_ns = j.time_us * 1000;
        while let Some((_, (t, a))) = k.next_if(|(_, (t, _))| *t <= j_ns) {
            seq += 1;
            r.kernel(seq, *t, a, &mut out);
        }
        r.journal(j.clone(), &mut out);
        r.expire(j_ns, || true, &mut out);
    }
    for (_, (t, a)) in k {
        seq += 1;
        r.kernel(seq, *t, a, &mut out);
    }
    r.expire(u64::MAX, || true, &mut out);
    let not_confirmed: Vec<_> = out
        .iter()
        .filter(|v| v.verdict != Verdict::Confirmed)
        .map(|v| {
            (
                v.verdict,
                v.reason,
                v.user.clone(),
                v.kernel.as_ref().map(|k| k.pid),
                v.journal.as_ref().map(|j| j.lines.last().cloned()),
            )
        })
        .collect();
    assert!(not_confirmed.is_empty(), "{not_confirmed:#?}");
    assert_eq!(out.len(), kernel.len(), "one verdict per kernel attempt");
    assert_eq!(kernel.len(), journal.len());
    // At INFO, keyboard-interactive: 5 wrong answers, 5 failures confirmed
    // (the first three by sshd's `PAM:` lines alone).
    let info_kbd: Vec<_> = out
        .iter()
        .filter(|v| v.journal.as_ref().is_some_and(|j| j.writer.pid == 2405))
        .map(|v| {
            (
                v.outcome,
                v.auth_method.as_deref(),
                v.kernel.as_ref().unwrap().ppid,
            )
        })
        .collect();
    assert_eq!(
        info_kbd,
        vec![(Outcome::Failure, Some("keyboard-interactive/pam"), 2405); 5]
    );
    let c = r.counters();
    assert_eq!(
        (c.kernel_only, c.journal_only, c.pending_kernel, c.pending_journal),
        (0, 0, 0, 0)
    );
}
