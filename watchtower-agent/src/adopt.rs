//! Adopting login sessions that began before the agent started.
//!
//! The kernel's session tree only learns of sessions opened while the probes are
//! attached. At start-up the agent therefore walks /proc and groups the processes
//! that carry an audit session id (set by `pam_loginuid` at login, inherited by every
//! child) into sessions, which it writes into the kernel's session map. Their later
//! execs and connects are then attributed like any other session's. The adopted
//! session's root is the process of the group whose parent is outside it (sshd's
//! per-login monitor), so its `pam_close_session` or exit ends the session.

use std::collections::{BTreeMap, HashSet};

use crate::host_lookup::read_proc_u32;

/// High bit of a session key marks an adopted session: keys of sessions opened under
/// the probes are boot-time nanoseconds, far below 2^63.
pub const ADOPTED_KEY_BIT: u64 = 1 << 63;

/// What /proc says about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub audit_session_id: u32,
    pub loginuid: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptedSession {
    pub key: u64,
    pub audit_session_id: u32,
    pub loginuid: Option<u32>,
    /// The one process whose parent is outside the session, when there is exactly one.
    pub root: Option<u32>,
    pub members: Vec<u32>,
}

/// Group processes with an audit session id into sessions.
#[must_use]
pub fn group(entries: &[ProcEntry]) -> Vec<AdoptedSession> {
    let mut by_session: BTreeMap<u32, Vec<&ProcEntry>> = BTreeMap::new();
    for entry in entries {
        if entry.audit_session_id != u32::MAX {
            by_session.entry(entry.audit_session_id).or_default().push(entry);
        }
    }
    by_session
        .into_iter()
        .map(|(id, members)| {
            let pids: HashSet<u32> = members.iter().map(|m| m.pid).collect();
            let tops: Vec<u32> = members
                .iter()
                .filter(|m| !pids.contains(&m.ppid))
                .map(|m| m.pid)
                .collect();
            let mut pids: Vec<u32> = pids.into_iter().collect();
            pids.sort_unstable();
            AdoptedSession {
                key: ADOPTED_KEY_BIT | u64::from(id),
                audit_session_id: id,
                loginuid: members.iter().find_map(|m| m.loginuid),
                root: (tops.len() == 1).then(|| tops[0]),
                members: pids,
            }
        })
        .collect()
}

/// The parent pid from the text of `/proc/<pid>/stat` (the comm may hold spaces and parens).
#[must_use]
pub fn ppid_from_stat(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a `/proc/PID/stat` line is of a process that has exited (a zombie
/// waiting for its parent, or dead): no login runs in it.
#[must_use]
pub fn exited_from_stat(stat: &str) -> bool {
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .is_some_and(|state| matches!(state, "Z" | "X" | "x"))
}

/// Every process of this host that belongs to a login (audit) session, except `skip`.
#[must_use]
pub fn scan_proc(skip: u32) -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != skip)
        .filter_map(|pid| {
            // Processes outside any login session (unset id) are of no interest: skip
            // them before reading their stat.
            let audit_session_id = read_proc_u32(pid, "sessionid")?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            if exited_from_stat(&stat) {
                return None;
            }
            Some(ProcEntry {
                pid,
                ppid: ppid_from_stat(&stat)?,
                audit_session_id,
                loginuid: read_proc_u32(pid, "loginuid"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u32, parent: u32, sid: u32, uid: Option<u32>) -> ProcEntry {
        ProcEntry {
            pid,
            ppid: parent,
            audit_session_id: sid,
            loginuid: uid,
        }
    }

    #[test]
    fn an_exited_process_is_no_login() {
        assert!(exited_from_stat("5681 (sshd) Z 5679 5681 5681 0 -1"));
        assert!(!exited_from_stat("5681 (sshd: a) Z) S 5679 5681 5681 0 -1"));
        assert!(!exited_from_stat("garbage"));
    }

    #[test]
    fn groups_by_audit_session_and_finds_the_root() {
        let entries = [
            entry(1, 0, u32::MAX, None),    // init: no session
            entry(400, 1, u32::MAX, None),  // sshd listener
            entry(500, 400, 7, Some(1001)), // sshd monitor: root
            entry(501, 500, 7, Some(1001)), // sshd user@pts
            entry(502, 501, 7, Some(1001)), // bash
            entry(503, 502, 7, Some(1001)), // su (no pam_loginuid: same session)
            entry(600, 400, 8, Some(1002)),
        ];
        let sessions = group(&entries);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[0].key, ADOPTED_KEY_BIT | 7);
        assert_eq!(sessions[0].root, Some(500));
        assert_eq!(sessions[0].members, vec![500, 501, 502, 503]);
        assert_eq!(sessions[0].loginuid, Some(1001));
        assert_eq!((sessions[1].root, sessions[1].audit_session_id), (Some(600), 8));
    }

    #[test]
    fn ppid_survives_odd_comms() {
        assert_eq!(ppid_from_stat("123 (bash) S 99 123 123 0"), Some(99));
        assert_eq!(ppid_from_stat("124 (a) b (c)) R 42 1 1"), Some(42));
        assert_eq!(ppid_from_stat("garbage"), None);
    }
}
