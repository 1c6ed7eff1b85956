//! `execve`/`execveat` tracepoints: the file name and arguments are read at
//! entry (the old image is gone after a successful exec) into a per-thread
//! pending record, and the record is sent at exit with the syscall's result.
//! `sched_process_exec` moves the record of an exec made by a thread other than
//! the leader to the id the kernel gives that thread, and reads from the new
//! image's environment the variables that change what runs (`LD_PRELOAD`,
//! `LD_LIBRARY_PATH`, `LD_AUDIT`, `BASH_ENV`): its stack is resident then.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use watchtower_common::{
    EXEC_ARG_LEN, EXEC_ENV_SCAN, EXEC_FILENAME_LEN, EXEC_MAX_ARGS, EXEC_MAX_ENV, ExecRecord, RecordKind,
    exec_flags,
};

use crate::{
    SESSIONS, agent_tgid, capture_all, count_lost, count_out_of_scope, current_ids, current_session, emit,
    fill_credentials, fill_header, task_offsets, tracepoint_offsets,
};

/// The user address of a file name the entry could not read (its page not
/// resident), by thread id: read again at exit, after the kernel faulted it in.
#[map(name = "EXEC_UNREAD_NAME")]
pub(crate) static EXEC_UNREAD_NAME: HashMap<u32, u64> = HashMap::with_max_entries(8192, 0);

/// Bytes of one environment string looked at (a longer one is skipped over in
/// pieces of this size, never taken for the start of another).
const ENV_PIECE: usize = 256;

/// The scan of one environment, kept in a map value rather than in registers:
/// the verifier then sees one state per loop step, not one per path taken.
#[repr(C)]
struct EnvScan {
    piece: [u8; ENV_PIECE],
    /// The next string's address, and the environment's end.
    at: u64,
    end: u64,
    /// Slots of the record filled.
    kept: u32,
    /// Non-zero: the piece at `at` continues a string longer than a piece.
    continued: u32,
}

/// Per-CPU space for the environment scan.
#[map(name = "ENV_SCRATCH")]
static ENV_SCRATCH: PerCpuArray<EnvScan> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space to build a record too large for the 512-byte stack.
#[map(name = "EXEC_SCRATCH")]
static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

/// Records waiting for their syscall's exit, keyed by thread id. Not an LRU map:
/// a record is never evicted silently; a full map counts the exec as lost, and a
/// thread's record goes when the thread exits (`task::try_exit`).
#[map(name = "EXEC_PENDING")]
pub(crate) static EXEC_PENDING: HashMap<u32, ExecRecord> = HashMap::with_max_entries(8192, 0);

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let offsets = tracepoint_offsets();
    let _ = try_enter(&ctx, offsets.execve_filename, offsets.execve_argv);
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let offsets = tracepoint_offsets();
    let _ = try_enter(&ctx, offsets.execveat_filename, offsets.execveat_argv);
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_enter(ctx: &TracePointContext, filename_off: u32, argv_off: u32) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if tgid == agent_tgid() || filename_off == 0 || argv_off == 0 {
        return Ok(());
    }
    let session = current_session(tgid).map_or(0, |s| s.key);
    if session == 0 && !capture_all() {
        count_out_of_scope(RecordKind::Exec);
        return Ok(());
    }
    let record = EXEC_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: tracepoint fields read through bpf_probe_read_kernel; user memory through the
    // user helpers; `record` is this CPU's scratch slot.
    unsafe {
        let filename: u64 = ctx.read_at(filename_off as usize).map_err(i64::from)?;
        let argv: u64 = ctx.read_at(argv_off as usize).map_err(i64::from)?;
        fill_header(&raw mut (*record).header, RecordKind::Exec, session);
        (*record).retval = 0;
        (*record).argc = 0;
        clear_env(record);
        let mut flags = 0u32;
        (*record).filename[0] = 0;
        match bpf_probe_read_user_str_bytes(filename as *const u8, &mut (*record).filename) {
            Ok(read) if read.len() >= EXEC_FILENAME_LEN - 1 => flags |= exec_flags::FILENAME_CUT,
            Ok(_) => {}
            Err(_) => {
                flags |= exec_flags::READ_FAILED;
                let _ = EXEC_UNREAD_NAME.insert(&tid, &filename, 0);
            }
        }
        let argv = argv as *const u64;
        let mut argc = 0u32;
        if !argv.is_null() {
            for i in 0..EXEC_MAX_ARGS {
                let Ok(arg) = bpf_probe_read_user(argv.add(i)) else {
                    flags |= exec_flags::READ_FAILED;
                    break;
                };
                if arg == 0 {
                    break;
                }
                let slot = &mut (*record).args[i];
                slot[0] = 0;
                match bpf_probe_read_user_str_bytes(arg as *const u8, slot) {
                    Ok(read) if read.len() >= EXEC_ARG_LEN - 1 => flags |= exec_flags::ARG_CUT,
                    Ok(_) => {}
                    Err(_) => flags |= exec_flags::READ_FAILED,
                }
                argc += 1;
            }
            if argc as usize == EXEC_MAX_ARGS {
                if let Ok(next) = bpf_probe_read_user(argv.add(EXEC_MAX_ARGS)) {
                    if next != 0 {
                        flags |= exec_flags::ARGS_TRUNCATED;
                    }
                }
            }
        }
        (*record).argc = argc;
        (*record).flags = flags;
        if EXEC_PENDING.insert(&tid, &*record, 0).is_err() {
            count_lost(RecordKind::Exec);
        }
        Ok(())
    }
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (_, tid) = current_ids();
    let record = EXEC_PENDING.get_ptr_mut(&tid).ok_or(1)?;
    let offsets = tracepoint_offsets();
    // SAFETY: `record` is this thread's pending map value; the field read uses the helper.
    unsafe {
        (*record).retval = ctx
            .read_at::<i64>(offsets.sys_exit_ret as usize)
            .unwrap_or(i64::MIN);
        if let Some(name) = EXEC_UNREAD_NAME.get(&tid) {
            // A failed exec has no kernel name: the kernel copied the caller's, so
            // its page is resident now.
            if (*record).filename[0] == 0 {
                let _ = bpf_probe_read_user_str_bytes(*name as *const u8, &mut (*record).filename);
            }
            let _ = EXEC_UNREAD_NAME.remove(&tid);
        }
        emit(RecordKind::Exec, &*record);
    }
    let _ = EXEC_PENDING.remove(&tid);
    Ok(())
}

/// A successful exec. When a thread other than the leader made it, the kernel
/// gave that thread the leader's id before the syscall returns, so its pending
/// record moves from the old thread id to the new one (`sys_exit_execve` then
/// finds it). When the caller's file name could not be read, or it ran a file
/// descriptor (`fexecve`, a memfd), the kernel's name for what ran is kept.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec_done(&ctx);
    0
}

fn try_exec_done(ctx: &TracePointContext) -> Result<(), i64> {
    let offsets = tracepoint_offsets();
    let (_, tid) = current_ids();
    if offsets.exec_old_pid != 0 {
        // SAFETY: a tracepoint field read through bpf_probe_read_kernel.
        let old: i32 = unsafe { ctx.read_at(offsets.exec_old_pid as usize) }.map_err(i64::from)?;
        let old = old as u32;
        if old != tid {
            // The old thread id is gone (the thread is the leader now): so is its
            // session entry, which a later process reusing the id must not inherit.
            let _ = SESSIONS.remove(&old);
            let _ = EXEC_UNREAD_NAME.remove(&old);
            if let Some(record) = EXEC_PENDING.get_ptr(&old) {
                // SAFETY: `record` points at the old thread's map value, copied by the helper.
                unsafe { EXEC_PENDING.insert(&tid, &*record, 0) }.map_err(i64::from)?;
                let _ = EXEC_PENDING.remove(&old);
            }
        }
    }
    let Some(record) = EXEC_PENDING.get_ptr_mut(&tid) else {
        return unseen_exec(ctx, offsets.exec_filename);
    };
    // The new image's credentials (a setuid program runs as its owner).
    // SAFETY: `record` is this thread's pending map value.
    fill_credentials(unsafe { &raw mut (*record).header });
    // SAFETY: as above.
    unsafe { read_env(record) };
    // SAFETY: `record` is this thread's pending map value.
    if offsets.exec_filename == 0 || unsafe { (*record).filename[0] } != 0 {
        return Ok(());
    }
    // SAFETY: as above; the tracepoint's data is read through bpf_probe_read_kernel.
    unsafe { kernel_filename(ctx, offsets.exec_filename, record) }
}

/// Put the kernel's name for what ran (`filename` of `sched_process_exec`, a
/// `__data_loc` at `filename_off`) into `record`.
///
/// # Safety
/// `record` points at a writable `ExecRecord` (a map value or the scratch slot).
unsafe fn kernel_filename(
    ctx: &TracePointContext,
    filename_off: u32,
    record: *mut ExecRecord,
) -> Result<(), i64> {
    // SAFETY: the tracepoint's data is read through bpf_probe_read_kernel; `record`
    // is writable by the contract above.
    unsafe {
        let loc: u32 = ctx.read_at(filename_off as usize).map_err(i64::from)?;
        let name = ctx.as_ptr().cast::<u8>().add((loc & 0xffff) as usize);
        if bpf_probe_read_kernel_str_bytes(name, &mut (*record).filename).is_ok() {
            (*record).flags |= exec_flags::KERNEL_FILENAME;
        }
    }
    Ok(())
}

/// A successful exec no syscall tracepoint saw (a 32-bit `int 0x80` execve, or a
/// pending record lost): sent now, with the kernel's file name and no arguments
/// (user space reads them from the new image's /proc while it runs). Execs
/// outside sessions are left to the syscall path, which counts them.
fn unseen_exec(ctx: &TracePointContext, filename_off: u32) -> Result<(), i64> {
    let (tgid, _) = current_ids();
    if tgid == agent_tgid() || filename_off == 0 {
        return Ok(());
    }
    let session = current_session(tgid).map_or(0, |s| s.key);
    if session == 0 && !capture_all() {
        return Ok(());
    }
    let record = EXEC_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: `record` is this CPU's scratch slot.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::Exec, session);
        (*record).retval = 0;
        (*record).argc = 0;
        (*record).flags = exec_flags::READ_FAILED | exec_flags::ARGS_TRUNCATED;
        (*record).filename[0] = 0;
        clear_env(record);
        read_env(record);
        kernel_filename(ctx, filename_off, record)?;
        emit(RecordKind::Exec, &*record);
    }
    Ok(())
}

/// Mark every environment slot of `record` empty.
///
/// # Safety
/// `record` points at a writable `ExecRecord`.
#[inline(always)]
unsafe fn clear_env(record: *mut ExecRecord) {
    // SAFETY: writable by the contract.
    unsafe {
        for slot in 0..EXEC_MAX_ENV {
            (*record).env[slot][0] = 0;
        }
    }
}

/// Whether `piece` starts with one of the variables that change what runs
/// (`LD_PRELOAD=`, `LD_LIBRARY_PATH=`, `LD_AUDIT=`, `BASH_ENV=`): its first 16
/// bytes compared as two words, without a branch per byte.
#[inline(always)]
fn wanted(piece: &[u8; ENV_PIECE]) -> bool {
    let word = |at: usize| {
        u64::from_le_bytes([
            piece[at],
            piece[at + 1],
            piece[at + 2],
            piece[at + 3],
            piece[at + 4],
            piece[at + 5],
            piece[at + 6],
            piece[at + 7],
        ])
    };
    let (w0, w1) = (word(0), word(8));
    let of = |text: &[u8; 8]| u64::from_le_bytes(*text);
    let preload = (w0 ^ of(b"LD_PRELO")) | ((w1 ^ of(b"AD=\0\0\0\0\0")) & 0xff_ffff);
    let library = (w0 ^ of(b"LD_LIBRA")) | (w1 ^ of(b"RY_PATH="));
    let audit = (w0 ^ of(b"LD_AUDIT")) | ((w1 ^ u64::from(b'=')) & 0xff);
    let bash = (w0 ^ of(b"BASH_ENV")) | ((w1 ^ u64::from(b'=')) & 0xff);
    preload == 0 || library == 0 || audit == 0 || bash == 0
}

/// Read the current (new) image's environment, from `mm->env_start` to
/// `env_end`, and keep in `record` the variables [`wanted`] picks. More strings
/// than [`EXEC_ENV_SCAN`] (or an unreadable one) set [`exec_flags::ENV_CUT`].
///
/// # Safety
/// `record` points at a writable `ExecRecord`.
#[inline(always)]
unsafe fn read_env(record: *mut ExecRecord) {
    use core::ptr::{read_volatile, write_volatile};
    let offsets = task_offsets();
    if offsets.mm == 0 || offsets.mm_env_start == 0 || offsets.mm_env_end == 0 {
        return;
    }
    let Some(scan) = ENV_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: kernel memory through bpf_probe_read_kernel, user memory through the
    // user helpers; `record` is writable by the contract; `scan` is this CPU's slot.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(mm) = bpf_probe_read_kernel(task.add(offsets.mm as usize).cast::<*const u8>()) else {
            return;
        };
        if mm.is_null() {
            return;
        }
        let (Ok(start), Ok(end)) = (
            bpf_probe_read_kernel(mm.add(offsets.mm_env_start as usize).cast::<u64>()),
            bpf_probe_read_kernel(mm.add(offsets.mm_env_end as usize).cast::<u64>()),
        ) else {
            return;
        };
        write_volatile(&raw mut (*scan).at, start);
        write_volatile(&raw mut (*scan).end, end);
        write_volatile(&raw mut (*scan).kept, 0);
        write_volatile(&raw mut (*scan).continued, 0);
        for _ in 0..EXEC_ENV_SCAN {
            let at = read_volatile(&raw const (*scan).at);
            if at >= read_volatile(&raw const (*scan).end) {
                return;
            }
            let Ok(read) = bpf_probe_read_user_str_bytes(at as *const u8, &mut (*scan).piece) else {
                break;
            };
            let len = read.len() as u64;
            let kept = read_volatile(&raw const (*scan).kept) as usize;
            if read_volatile(&raw const (*scan).continued) == 0
                && kept < EXEC_MAX_ENV
                && wanted(&(*scan).piece)
            {
                let _ = bpf_probe_read_user_str_bytes(at as *const u8, &mut (*record).env[kept]);
                write_volatile(&raw mut (*scan).kept, kept as u32 + 1);
            }
            // A full piece has no NUL in it: the string goes on in the next.
            let continued = len >= ENV_PIECE as u64 - 1;
            write_volatile(&raw mut (*scan).continued, u32::from(continued));
            write_volatile(&raw mut (*scan).at, at + len + u64::from(!continued));
        }
        (*record).flags |= exec_flags::ENV_CUT;
    }
}
