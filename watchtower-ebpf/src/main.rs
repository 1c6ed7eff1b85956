//! Watchtower's eBPF programs.
//!
//! The programs only record facts; all policy and assembly happens in the agent.
//! One module per probe family; every entry point is a thin wrapper around a
//! `try_*` function returning `Result`, and every record goes through [`emit`],
//! which counts what the ring buffer could not take.
#![no_std]
#![no_main]

mod connect;
mod exec;
mod pam;
mod task;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_uid_gid,
        bpf_probe_read_kernel,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use watchtower_common::{
    KIND_SLOTS, RecordHeader, RecordKind, SessionLink, TaskOffsets, TracepointOffsets, UNSET_ID,
};

/// Default size; the agent sets the real one at load time.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// A login's own records (PAM calls and the exit of a session's root): a flood of
/// exec or connect records in [`EVENTS`] cannot push a login out.
#[map(name = "LOGINS")]
static LOGINS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

#[map(name = "OUT_OF_SCOPE")]
static OUT_OF_SCOPE: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

/// tgid (and, for threads created inside a session, tid) -> session.
#[map(name = "SESSIONS")]
static SESSIONS: HashMap<u32, SessionLink> = HashMap::with_max_entries(65_536, 0);

/// Slot 0: the running agent's tgid, whose activity is never recorded. A map, not
/// a constant: the programs outlive the agent that loaded them (pinned), and the
/// agent that resumes them writes its own.
#[map(name = "AGENT")]
static AGENT: Array<u32> = Array::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static CAPTURE_ALL: u32 = 0;
#[unsafe(no_mangle)]
static TASK_OFFSETS: TaskOffsets = TaskOffsets {
    real_parent: 0,
    tgid: 0,
    exit_code: 0,
    loginuid: 0,
    sessionid: 0,
    cred: 0,
    cred_euid: 0,
    mm: 0,
    mm_env_start: 0,
    mm_env_end: 0,
    pad: 0,
};
#[unsafe(no_mangle)]
static TRACEPOINT_OFFSETS: TracepointOffsets = TracepointOffsets {
    execve_filename: 0,
    execve_argv: 0,
    execveat_filename: 0,
    execveat_argv: 0,
    connect_fd: 0,
    connect_uservaddr: 0,
    connect_addrlen: 0,
    sys_exit_ret: 0,
    fork_child_pid: 0,
    exit_group_dead: 0,
    exec_old_pid: 0,
    exec_filename: 0,
    sendto_addr: 0,
    sendmsg_msg: 0,
};

#[inline(always)]
fn agent_tgid() -> u32 {
    AGENT.get(0).copied().unwrap_or(0)
}

#[inline(always)]
fn capture_all() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const CAPTURE_ALL) != 0 }
}

#[inline(always)]
fn task_offsets() -> TaskOffsets {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const TASK_OFFSETS) }
}

#[inline(always)]
fn tracepoint_offsets() -> TracepointOffsets {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const TRACEPOINT_OFFSETS) }
}

/// The current task's ids: (tgid, tid).
#[inline(always)]
fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// The session the current process belongs to, if any.
#[inline(always)]
fn current_session(tgid: u32) -> Option<SessionLink> {
    // SAFETY: the value is copied out at once; a concurrent delete can at worst give a stale copy.
    unsafe { SESSIONS.get(&tgid).copied() }
}

#[inline(always)]
fn count(map: &PerCpuArray<u64>, kind: RecordKind) {
    if let Some(slot) = map.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot, programs do not migrate while running.
        unsafe { *slot += 1 };
    }
}

/// Count a session link the session map could not store.
#[inline(always)]
fn count_session_link_lost() {
    if let Some(slot) = LOST.get_ptr_mut(watchtower_common::SLOT_SESSION_LINK) {
        // SAFETY: per-CPU slot, programs do not migrate while running.
        unsafe { *slot += 1 };
    }
}

/// Count a record the ring buffer could not take.
#[inline(always)]
fn count_lost(kind: RecordKind) {
    count(&LOST, kind);
}

/// Count activity seen outside the capture scope (not shipped).
#[inline(always)]
fn count_out_of_scope(kind: RecordKind) {
    count(&OUT_OF_SCOPE, kind);
}

/// Parent's tgid read through the task_struct offsets the agent found in BTF.
#[inline(always)]
fn current_ppid() -> u32 {
    let offsets = task_offsets();
    if offsets.real_parent == 0 || offsets.tgid == 0 {
        return 0;
    }
    // SAFETY: kernel reads through bpf_probe_read_kernel, which fails cleanly on a bad address.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(parent) = bpf_probe_read_kernel(task.add(offsets.real_parent as usize).cast::<*const u8>())
        else {
            return 0;
        };
        bpf_probe_read_kernel(parent.add(offsets.tgid as usize).cast::<u32>()).unwrap_or(0)
    }
}

/// A `u32` of the current task at `offset` ([`UNSET_ID`] when the offset is unknown).
#[inline(always)]
fn current_task_u32(offset: u32) -> u32 {
    if offset == 0 {
        return UNSET_ID;
    }
    // SAFETY: a kernel read through bpf_probe_read_kernel, which fails cleanly.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel(task.add(offset as usize).cast::<u32>()).unwrap_or(UNSET_ID)
    }
}

/// The current task's effective uid, through `task_struct.cred`.
#[inline(always)]
fn current_euid(offsets: &TaskOffsets) -> u32 {
    if offsets.cred == 0 || offsets.cred_euid == 0 {
        return UNSET_ID;
    }
    // SAFETY: kernel reads through bpf_probe_read_kernel, which fails cleanly on a bad address.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(cred) = bpf_probe_read_kernel(task.add(offsets.cred as usize).cast::<*const u8>()) else {
            return UNSET_ID;
        };
        bpf_probe_read_kernel(cred.add(offsets.cred_euid as usize).cast::<u32>()).unwrap_or(UNSET_ID)
    }
}

/// Write the current task's user and group ids, effective uid, login uid and audit
/// session into `header` (again after an exec, whose new image may be setuid).
#[inline(always)]
fn fill_credentials(header: *mut RecordHeader) {
    let uid_gid = bpf_get_current_uid_gid();
    let offsets = task_offsets();
    // SAFETY: `header` points to writable memory of a reserved record or a map value.
    unsafe {
        (*header).uid = uid_gid as u32;
        (*header).gid = (uid_gid >> 32) as u32;
        (*header).euid = current_euid(&offsets);
        (*header).loginuid = current_task_u32(offsets.loginuid);
        (*header).audit_session_id = current_task_u32(offsets.sessionid);
    }
}

/// Fill the common header for the current task.
#[inline(always)]
fn fill_header(header: *mut RecordHeader, kind: RecordKind, session_key: u64) {
    let (tgid, tid) = current_ids();
    // SAFETY: `header` points to writable memory of a reserved record or a map value.
    unsafe {
        (*header).kind = kind as u32;
        (*header).cpu = bpf_get_smp_processor_id();
        (*header).ktime_ns = bpf_ktime_get_boot_ns();
        (*header).session_key = session_key;
        (*header).tgid = tgid;
        (*header).tid = tid;
        (*header).ppid = current_ppid();
        (*header).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    fill_credentials(header);
}

/// Copy a finished record (usually a map value) into the ring buffer, counting a failure.
#[inline(always)]
fn emit<T>(kind: RecordKind, record: &T) {
    if EVENTS.output::<T>(record, 0).is_err() {
        count_lost(kind);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
