//! Process lifecycle: a task created inside a session inherits the session
//! (this is how every exec and connect of a login is attributed, even after
//! su or sudo); a process leaving a session is recorded and forgotten.

use aya_ebpf::{
    helpers::bpf_get_current_task, helpers::bpf_probe_read_kernel, macros::tracepoint, maps::RingBuf,
    programs::TracePointContext,
};
use watchtower_common::{ExitRecord, ForkRecord, RecordKind, SessionLink};

use crate::{
    EVENTS, LOGINS, SESSIONS, count_lost, count_session_link_lost, current_ids, current_session, fill_header,
    task_offsets, tracepoint_offsets,
};

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, _) = current_ids();
    let Some(link) = current_session(tgid) else {
        return Ok(());
    };
    let offsets = tracepoint_offsets();
    // SAFETY: tracepoint field read through the helper.
    let child: u32 =
        unsafe { ctx.read_at::<i32>(offsets.fork_child_pid as usize) }.map_err(i64::from)? as u32;
    let inherited = SessionLink {
        key: link.key,
        parent_key: link.parent_key,
        is_root: 0,
        pad: 0,
    };
    if SESSIONS.insert(&child, &inherited, 0).is_err() {
        count_session_link_lost();
    }
    let Some(mut entry) = EVENTS.reserve::<ForkRecord>(0) else {
        count_lost(RecordKind::Fork);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points into the reserved slot.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::Fork, link.key);
        (*record).child_tid = child;
        (*record).pad = 0;
    }
    entry.submit(0);
    Ok(())
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    let offsets = tracepoint_offsets();
    let process_exit = if offsets.exit_group_dead != 0 {
        // SAFETY: tracepoint field read through the helper.
        unsafe { ctx.read_at::<u8>(offsets.exit_group_dead as usize) }.unwrap_or(0) != 0
    } else {
        tgid == tid
    };
    if tid != tgid {
        // A thread created inside a session got its own entry at fork time.
        let _ = SESSIONS.remove(&tid);
    }
    // A thread that dies inside execve or connect leaves no pending record behind.
    let _ = crate::exec::EXEC_PENDING.remove(&tid);
    let _ = crate::exec::EXEC_UNREAD_NAME.remove(&tid);
    let _ = crate::connect::CONNECT_PENDING.remove(&tid);
    if !process_exit {
        return Ok(());
    }
    let Some(link) = current_session(tgid) else {
        return Ok(());
    };
    let _ = SESSIONS.remove(&tgid);
    let exit_code = {
        let task_offsets = task_offsets();
        if task_offsets.exit_code == 0 {
            0
        } else {
            // SAFETY: kernel read through the helper.
            unsafe {
                let task = bpf_get_current_task() as *const u8;
                bpf_probe_read_kernel(task.add(task_offsets.exit_code as usize).cast::<u32>()).unwrap_or(0)
            }
        }
    };
    // The exit of a session's root ends the login: it travels with the login's records.
    if link.is_root != 0 {
        emit_exit(&LOGINS, link.key, exit_code);
    } else {
        emit_exit(&EVENTS, link.key, exit_code);
    }
    Ok(())
}

#[inline(always)]
fn emit_exit(ring: &RingBuf, session_key: u64, exit_code: u32) {
    let Some(mut entry) = ring.reserve::<ExitRecord>(0) else {
        count_lost(RecordKind::Exit);
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points into the reserved slot.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::Exit, session_key);
        (*record).exit_code = exit_code;
        (*record).pad = 0;
    }
    entry.submit(0);
}
