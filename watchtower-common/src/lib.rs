//! Records shared by Watchtower's eBPF programs and its user-space agent.
//!
//! Every record the kernel writes into the ring buffer starts with the same
//! [`RecordHeader`], followed by the data of its kind. All records are plain
//! `#[repr(C)]` structs with explicit padding fields (no implicit padding, no
//! `bool`, no enums read straight from kernel bytes): the kernel writes plain
//! integers and user space decodes them with checked conversions
//! (`RecordKind::try_from`, [`PamFunction::try_from`]) that reject, and let the
//! caller count, anything unexpected.
//!
//! Sizes are checked at compile time so a change on one side that is not
//! mirrored on the other fails the build, not the decoder.
#![no_std]

/// Length of a task's `comm` (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Bytes kept of a PAM string (service, user, RHOST, TTY, RUSER), NUL included.
pub const PAM_STR_LEN: usize = 128;
/// Bytes kept of an executed file name, NUL included.
pub const EXEC_FILENAME_LEN: usize = 256;
/// Bytes kept of one argument of an `execve`, NUL included.
pub const EXEC_ARG_LEN: usize = 128;
/// Arguments kept of an `execve`; more are flagged with [`exec_flags::ARGS_TRUNCATED`].
pub const EXEC_MAX_ARGS: usize = 16;
/// Bytes kept of one environment variable that changes what runs, NUL included.
pub const EXEC_ENV_LEN: usize = 128;
/// Such variables kept of an exec (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, `BASH_ENV`).
pub const EXEC_MAX_ENV: usize = 4;
/// Environment strings of a new image the exec probe looks through.
pub const EXEC_ENV_SCAN: usize = 128;
/// Bytes of a `sockaddr_un` path.
pub const UNIX_PATH_LEN: usize = 108;
/// Number of record kinds, the size of the per-kind counter maps.
pub const KIND_SLOTS: u32 = 16;
/// Slot of the `LOST` map counting session links the kernel could not store (the
/// session map was full): the process's later activity is not attributed to its login.
pub const SLOT_SESSION_LINK: u32 = 15;

/// Names of the maps and globals the agent and the eBPF object agree on.
pub mod names {
    /// Ring buffer carrying exec, connect, fork and exit records.
    pub const EVENTS: &str = "EVENTS";
    /// Ring buffer carrying a login's own records: PAM calls and the exit of a
    /// session's root, so a flood in [`EVENTS`] cannot drop a login.
    pub const LOGINS: &str = "LOGINS";
    /// Per-CPU array, indexed by record kind: records lost because the ring buffer was full.
    pub const LOST: &str = "LOST";
    /// Per-CPU array, indexed by record kind: activity seen but out of the capture scope.
    pub const OUT_OF_SCOPE: &str = "OUT_OF_SCOPE";
    /// Hash map tgid -> [`crate::SessionLink`]: the kernel's session tree.
    pub const SESSIONS: &str = "SESSIONS";
    /// Array, slot 0: the running agent's tgid, whose activity is never recorded.
    pub const AGENT: &str = "AGENT";
    /// The maps kept in bpffs so that the programs, which stay attached while no
    /// agent runs, keep filling them and the next agent resumes them: every map but
    /// the per-CPU scratch space each loaded object has for itself.
    pub const PINNED: [&str; 12] = [
        EVENTS,
        LOGINS,
        LOST,
        OUT_OF_SCOPE,
        SESSIONS,
        AGENT,
        "EXEC_PENDING",
        "EXEC_UNREAD_NAME",
        "CONNECT_PENDING",
        "SENDS_RECORDED",
        "PAM_START_ARGS",
        "PAM_CALL_ARGS",
    ];
    /// Global: non-zero to record every exec/connect, not only those inside a login session.
    pub const CAPTURE_ALL: &str = "CAPTURE_ALL";
    /// Global: [`crate::TaskOffsets`] read from the kernel's BTF (0 when unknown).
    pub const TASK_OFFSETS: &str = "TASK_OFFSETS";
    /// Global: [`crate::TracepointOffsets`] read from tracefs `format` files.
    pub const TRACEPOINT_OFFSETS: &str = "TRACEPOINT_OFFSETS";
}

/// Kind of a record, the first field of every [`RecordHeader`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// [`PamStartRecord`]: return of `pam_start` / `pam_start_confdir`.
    PamStart = 1,
    /// [`PamItemRecord`]: `pam_set_item` of RHOST, TTY, USER or RUSER.
    PamItem = 2,
    /// [`PamCallRecord`]: return code of a PAM call, or `pam_end`'s status.
    PamCall = 3,
    /// [`ExecRecord`]: an `execve`/`execveat` and its result.
    Exec = 4,
    /// [`ConnectRecord`]: a `connect` and its result.
    Connect = 5,
    /// [`ForkRecord`]: a new task created by a task inside a session.
    Fork = 6,
    /// [`ExitRecord`]: a process inside a session exited.
    Exit = 7,
}

impl RecordKind {
    /// Every kind, in counter-slot order.
    pub const ALL: [RecordKind; 7] = [
        RecordKind::PamStart,
        RecordKind::PamItem,
        RecordKind::PamCall,
        RecordKind::Exec,
        RecordKind::Connect,
        RecordKind::Fork,
        RecordKind::Exit,
    ];

    /// Short lower-case name used in logs, counters and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::PamStart => "pam_start",
            RecordKind::PamItem => "pam_item",
            RecordKind::PamCall => "pam_call",
            RecordKind::Exec => "exec",
            RecordKind::Connect => "connect",
            RecordKind::Fork => "fork",
            RecordKind::Exit => "exit",
        }
    }
}

impl TryFrom<u32> for RecordKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => RecordKind::PamStart,
            2 => RecordKind::PamItem,
            3 => RecordKind::PamCall,
            4 => RecordKind::Exec,
            5 => RecordKind::Connect,
            6 => RecordKind::Fork,
            7 => RecordKind::Exit,
            other => return Err(other),
        })
    }
}

/// An id the kernel does not know: the audit subsystem's `AUDIT_UID_UNSET` and
/// `AUDIT_SID_UNSET`, also written when a field's offset is unknown.
pub const UNSET_ID: u32 = u32::MAX;

/// Common start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    /// A [`RecordKind`] as `u32`.
    pub kind: u32,
    /// CPU the program ran on.
    pub cpu: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub ktime_ns: u64,
    /// Login session the task belonged to when the record was made (0: none).
    pub session_key: u64,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's process id (0 when the kernel's layout is unknown).
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id ([`UNSET_ID`] when the kernel's `cred` layout is unknown).
    /// For an exec, the ids are those after the new image was loaded (a setuid
    /// program's owner).
    pub euid: u32,
    /// Audit login uid set at login by `pam_loginuid` and kept across su and sudo
    /// ([`UNSET_ID`] when never set or the layout is unknown).
    pub loginuid: u32,
    /// Audit session id ([`UNSET_ID`] when never set or the layout is unknown).
    pub audit_session_id: u32,
    /// Task command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// PAM functions whose outcome is recorded in a [`PamCallRecord`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamFunction {
    Authenticate = 1,
    AcctMgmt = 2,
    OpenSession = 3,
    CloseSession = 4,
    Setcred = 5,
    Chauthtok = 6,
    /// `pam_end`: the record's `retval` is the status the application passed in.
    End = 7,
}

impl PamFunction {
    /// The C function's name.
    #[must_use]
    pub const fn symbol(self) -> &'static str {
        match self {
            PamFunction::Authenticate => "pam_authenticate",
            PamFunction::AcctMgmt => "pam_acct_mgmt",
            PamFunction::OpenSession => "pam_open_session",
            PamFunction::CloseSession => "pam_close_session",
            PamFunction::Setcred => "pam_setcred",
            PamFunction::Chauthtok => "pam_chauthtok",
            PamFunction::End => "pam_end",
        }
    }
}

impl TryFrom<u32> for PamFunction {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => PamFunction::Authenticate,
            2 => PamFunction::AcctMgmt,
            3 => PamFunction::OpenSession,
            4 => PamFunction::CloseSession,
            5 => PamFunction::Setcred,
            6 => PamFunction::Chauthtok,
            7 => PamFunction::End,
            other => return Err(other),
        })
    }
}

/// PAM item types recorded by the `pam_set_item` probe (values of `<security/_pam_types.h>`).
pub mod pam_item {
    pub const USER: u32 = 2;
    pub const TTY: u32 = 3;
    pub const RHOST: u32 = 4;
    pub const RUSER: u32 = 8;
}

/// Return of `pam_start`: a new PAM transaction.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PamStartRecord {
    pub header: RecordHeader,
    /// Address of the `pam_handle_t` in the process (pairs later calls with this start).
    pub handle: u64,
    /// `pam_start`'s return code (0: `PAM_SUCCESS`).
    pub retval: i32,
    pub pad: u32,
    /// Service name (`sshd`, `su`, `sudo`, `login`, ...), NUL terminated.
    pub service: [u8; PAM_STR_LEN],
    /// User name given to `pam_start` (may be empty: asked for later).
    pub user: [u8; PAM_STR_LEN],
}

/// `pam_set_item` of one of the [`pam_item`] types.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PamItemRecord {
    pub header: RecordHeader,
    pub handle: u64,
    /// One of [`pam_item`].
    pub item_type: u32,
    pub pad: u32,
    pub value: [u8; PAM_STR_LEN],
}

/// Outcome of a PAM call on a handle.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PamCallRecord {
    pub header: RecordHeader,
    pub handle: u64,
    /// A [`PamFunction`] as `u32`.
    pub function: u32,
    /// The call's return code (for `pam_end`, the status passed in).
    pub retval: i32,
    /// For a successful `pam_open_session`: the new session's key; for `pam_close_session`:
    /// the key of the session that was closed. 0 otherwise.
    pub session_key: u64,
    /// The session the new one was opened inside (0: a top-level login).
    pub parent_session_key: u64,
}

/// Flags of an [`ExecRecord`].
pub mod exec_flags {
    /// The process had more than [`crate::EXEC_MAX_ARGS`] arguments.
    pub const ARGS_TRUNCATED: u32 = 1;
    /// An argument was longer than [`crate::EXEC_ARG_LEN`] and was cut.
    pub const ARG_CUT: u32 = 2;
    /// The file name was longer than [`crate::EXEC_FILENAME_LEN`] and was cut.
    pub const FILENAME_CUT: u32 = 4;
    /// Some user memory could not be read (the record is partial).
    pub const READ_FAILED: u32 = 8;
    /// The file name is the kernel's (`sched_process_exec`): the caller's could not
    /// be read, or it ran a file descriptor (`fexecve`, a memfd: `/dev/fd/N`).
    pub const KERNEL_FILENAME: u32 = 16;
    /// The new image's environment was longer than the probe looks through
    /// ([`crate::EXEC_ENV_SCAN`] strings) or could not be read: a variable that
    /// changes what runs may be beyond what `env` holds.
    pub const ENV_CUT: u32 = 32;
}

/// An `execve`/`execveat`, recorded at entry and sent with its result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: RecordHeader,
    /// The syscall's return value: 0 on success, `-errno` on failure.
    pub retval: i64,
    /// Arguments stored in `args`.
    pub argc: u32,
    /// [`exec_flags`].
    pub flags: u32,
    pub filename: [u8; EXEC_FILENAME_LEN],
    pub args: [[u8; EXEC_ARG_LEN]; EXEC_MAX_ARGS],
    /// The environment variables of the new image that change what runs (empty
    /// slots start with NUL), read at `sched_process_exec`.
    pub env: [[u8; EXEC_ENV_LEN]; EXEC_MAX_ENV],
}

/// Address families recorded by the connect probe.
pub mod family {
    /// Not read yet: the `connect` entry tracepoint could not read the caller's
    /// `sockaddr` (its page not resident); the socket hook fills in the kernel's copy.
    pub const UNREAD: u16 = 0;
    pub const UNIX: u16 = 1;
    pub const INET: u16 = 2;
    pub const INET6: u16 = 10;
}

/// A `connect` and its result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectRecord {
    pub header: RecordHeader,
    /// 0 on success, `-errno` on failure (`-EINPROGRESS` for a non-blocking connect underway).
    pub retval: i64,
    /// [`family`] value from the `sockaddr`.
    pub family: u16,
    /// Port in host byte order (INET/INET6).
    pub port: u16,
    /// The file descriptor connected.
    pub fd: u32,
    /// IPv4 address in the first 4 bytes, or the IPv6 address; network byte order.
    pub addr: [u8; 16],
    /// `sun_path` of a unix socket (an abstract socket starts with a NUL byte).
    pub path: [u8; UNIX_PATH_LEN],
    /// Where the destination was seen: one of [`connect_via`].
    pub via: u32,
}

/// How a [`ConnectRecord`]'s destination was seen.
pub mod connect_via {
    /// The `connect` system call, with its result.
    pub const SYSCALL: u32 = 0;
    /// A destination given to `sendto`/`sendmsg` (UDP, or TCP fast open); the first
    /// send to each destination per process and [`SEND_REPEAT_NS`], result not known.
    pub const SEND: u32 = 1;
    /// A connect the system call tracepoints did not see (`io_uring`, a 32-bit
    /// `socketcall`, TCP fast open's connect inside `sendmsg`), seen by the cgroup
    /// socket hook with the kernel's copy of the destination; result not known.
    pub const KERNEL: u32 = 2;
    /// Sends from one process to one destination within this time after the last
    /// recorded one are not recorded again.
    pub const SEND_REPEAT_NS: u64 = 60_000_000_000;
}

/// A task created by a task inside a session (or by any task when capturing everything).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: RecordHeader,
    /// The new task's id.
    pub child_tid: u32,
    pub pad: u32,
}

/// A process inside a session exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: RecordHeader,
    /// `task_struct.exit_code` (wait status) when its offset is known, else 0.
    pub exit_code: u32,
    pub pad: u32,
}

/// Value of the kernel's session map: which login session a process belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLink {
    /// The session's key.
    pub key: u64,
    /// The session this one was opened inside (0: a top-level login).
    pub parent_key: u64,
    /// Non-zero when this process opened `key` (it is the session's root).
    pub is_root: u32,
    pub pad: u32,
}

/// Offsets into `struct task_struct`, read by the agent from the kernel's BTF and handed to
/// the programs as a global, since the eBPF programs are not relocated (no CO-RE).
/// A zero offset means "unknown": the field is then reported as 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.real_parent`.
    pub real_parent: u32,
    /// `task_struct.tgid`.
    pub tgid: u32,
    /// `task_struct.exit_code`.
    pub exit_code: u32,
    /// `task_struct.loginuid` (only with `CONFIG_AUDIT`).
    pub loginuid: u32,
    /// `task_struct.sessionid` (only with `CONFIG_AUDIT`).
    pub sessionid: u32,
    /// `task_struct.cred` (the subjective credentials).
    pub cred: u32,
    /// `cred.euid`.
    pub cred_euid: u32,
    /// `task_struct.mm`.
    pub mm: u32,
    /// `mm_struct.env_start` and `env_end`: the new image's environment strings.
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub pad: u32,
}

/// Offsets of the tracepoint fields the programs read, taken by the agent from
/// `/sys/kernel/tracing/events/<group>/<name>/format` (they change between kernels:
/// `sched_process_fork` moved from inline `comm` arrays to `__data_loc` in 6.x).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub execve_filename: u32,
    pub execve_argv: u32,
    pub execveat_filename: u32,
    pub execveat_argv: u32,
    pub connect_fd: u32,
    pub connect_uservaddr: u32,
    pub connect_addrlen: u32,
    /// `ret` of `sys_exit_execve`, `sys_exit_execveat` and `sys_exit_connect`.
    pub sys_exit_ret: u32,
    pub fork_child_pid: u32,
    /// `group_dead` of `sched_process_exit`; 0 when the kernel does not have it.
    pub exit_group_dead: u32,
    /// `old_pid` of `sched_process_exec`: the thread that called exec (a thread
    /// other than the leader takes the leader's id); 0 when the kernel does not have it.
    pub exec_old_pid: u32,
    /// `filename` (a `__data_loc`) of `sched_process_exec`: the file name the
    /// kernel ran, for an exec whose own name could not be read; 0 when absent.
    pub exec_filename: u32,
    /// `addr` of `sys_enter_sendto`.
    pub sendto_addr: u32,
    /// `msg` (a `struct user_msghdr *`) of `sys_enter_sendmsg`.
    pub sendmsg_msg: u32,
}

const _: () = {
    assert!(core::mem::size_of::<RecordHeader>() == 72);
    assert!(core::mem::size_of::<PamStartRecord>() == 72 + 16 + 2 * PAM_STR_LEN);
    assert!(core::mem::size_of::<PamItemRecord>() == 72 + 16 + PAM_STR_LEN);
    assert!(core::mem::size_of::<PamCallRecord>() == 72 + 32);
    assert!(
        core::mem::size_of::<ExecRecord>()
            == 72 + 16 + EXEC_FILENAME_LEN + EXEC_ARG_LEN * EXEC_MAX_ARGS + EXEC_ENV_LEN * EXEC_MAX_ENV
    );
    assert!(core::mem::size_of::<ConnectRecord>() == 72 + 16 + 16 + UNIX_PATH_LEN + 4);
    assert!(core::mem::size_of::<ForkRecord>() == 80);
    assert!(core::mem::size_of::<ExitRecord>() == 80);
    assert!(core::mem::size_of::<SessionLink>() == 24);
    assert!(core::mem::size_of::<TaskOffsets>() == 44);
    assert!(core::mem::size_of::<TracepointOffsets>() == 56);
    assert!((RecordKind::Exit as u32) < SLOT_SESSION_LINK);
    assert!(SLOT_SESSION_LINK < KIND_SLOTS);
};

#[cfg(feature = "user")]
mod user {
    use super::{SessionLink, TaskOffsets, TracepointOffsets};

    // SAFETY: plain #[repr(C)] integers without padding: every bit pattern is valid.
    unsafe impl aya::Pod for SessionLink {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TaskOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TracepointOffsets {}
}
