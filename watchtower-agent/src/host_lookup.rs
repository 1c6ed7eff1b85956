//! What only the running system knows: facts about live processes from `/proc`,
//! user names from the user database (`getpwnam_r`/`getpwuid_r`), and this host's
//! name and boot id. The assembler asks through [`ProcessInfo`] so that replays of
//! records captured elsewhere ask nothing ([`NoProcessInfo`]).

use anyhow::Context as _;

/// Facts that only the running system knows (/proc, the user database).
pub trait ProcessInfo {
    fn loginuid(&self, pid: u32) -> Option<u32>;
    fn audit_session_id(&self, pid: u32) -> Option<u32>;
    /// The arguments of a live process (`/proc/<pid>/cmdline`).
    fn cmdline(&self, pid: u32) -> Option<Vec<String>>;
    /// Whether this host knows the user name (None: could not tell).
    fn user_exists(&self, name: &str) -> Option<bool>;
    /// The name of a uid.
    fn user_name(&self, uid: u32) -> Option<String>;
    /// The command name of a live process.
    fn comm(&self, pid: u32) -> Option<String>;
}

/// [`ProcessInfo`] read from `/proc`.
pub struct ProcFs;

/// [`ProcessInfo`] that knows nothing (replaying records captured elsewhere).
pub struct NoProcessInfo;

impl ProcessInfo for NoProcessInfo {
    fn loginuid(&self, _: u32) -> Option<u32> {
        None
    }
    fn audit_session_id(&self, _: u32) -> Option<u32> {
        None
    }
    fn cmdline(&self, _: u32) -> Option<Vec<String>> {
        None
    }
    fn user_exists(&self, _: &str) -> Option<bool> {
        None
    }
    fn user_name(&self, _: u32) -> Option<String> {
        None
    }
    fn comm(&self, _: u32) -> Option<String> {
        None
    }
}

/// A number from `/proc/<pid>/<file>`; `None` when unreadable or unset ((unsigned)-1).
pub(crate) fn read_proc_u32(pid: u32, file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let value: u32 = text.trim().parse().ok()?;
    // (uid_t)-1 / (unsigned)-1: not set.
    (value != u32::MAX).then_some(value)
}

impl ProcessInfo for ProcFs {
    fn loginuid(&self, pid: u32) -> Option<u32> {
        read_proc_u32(pid, "loginuid")
    }
    fn audit_session_id(&self, pid: u32) -> Option<u32> {
        read_proc_u32(pid, "sessionid")
    }
    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
        Some(
            raw.split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        )
    }
    fn user_exists(&self, name: &str) -> Option<bool> {
        if name.is_empty() {
            return None;
        }
        let c_name = std::ffi::CString::new(name).ok()?;
        // SAFETY: passwd is plain C data; all-zero is a valid initial value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r with buffers we own, sized as declared.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &raw mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &raw mut result,
            )
        };
        match rc {
            0 => Some(!result.is_null()),
            _ => None,
        }
    }
    fn user_name(&self, uid: u32) -> Option<String> {
        // SAFETY: passwd is plain C data; all-zero is a valid initial value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r with buffers we own, sized as declared.
        let rc = unsafe { libc::getpwuid_r(uid, &raw mut pwd, buf.as_mut_ptr(), buf.len(), &raw mut result) };
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
        Some(
            unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned(),
        )
    }
    fn comm(&self, pid: u32) -> Option<String> {
        Some(
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()?
                .trim_end()
                .to_string(),
        )
    }
}

/// This host's name (`/proc/sys/kernel/hostname`), else `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("reading /proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}
