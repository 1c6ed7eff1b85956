//! `connect` tracepoints: the destination is read at entry and sent with the
//! result at exit (`-EINPROGRESS` is a non-blocking connect under way).

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use watchtower_common::{ConnectRecord, RecordKind, family};

use crate::{
    agent_tgid, capture_all, count_lost, count_out_of_scope, current_ids, current_session, emit, fill_header,
    tracepoint_offsets,
};

#[map(name = "CONNECT_SCRATCH")]
static CONNECT_SCRATCH: PerCpuArray<ConnectRecord> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "CONNECT_PENDING")]
pub(crate) static CONNECT_PENDING: HashMap<u32, ConnectRecord> = HashMap::with_max_entries(8192, 0);

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    let offsets = tracepoint_offsets();
    if tgid == agent_tgid() || offsets.connect_uservaddr == 0 {
        return Ok(());
    }
    let session = current_session(tgid).map_or(0, |s| s.key);
    if session == 0 && !capture_all() {
        count_out_of_scope(RecordKind::Connect);
        return Ok(());
    }
    let record = CONNECT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: as in exec::try_enter.
    unsafe {
        let fd: u64 = ctx.read_at(offsets.connect_fd as usize).map_err(i64::from)?;
        let addr: u64 = ctx
            .read_at(offsets.connect_uservaddr as usize)
            .map_err(i64::from)?;
        let addrlen: u64 = ctx.read_at(offsets.connect_addrlen as usize).map_err(i64::from)?;
        let addr = addr as *const u8;
        let sa_family: u16 = bpf_probe_read_user(addr.cast::<u16>()).map_err(i64::from)?;
        if !matches!(sa_family, family::INET | family::INET6 | family::UNIX) {
            return Ok(());
        }
        fill_header(&raw mut (*record).header, RecordKind::Connect, session);
        (*record).retval = 0;
        (*record).family = sa_family;
        (*record).port = 0;
        (*record).fd = fd as u32;
        (*record).addr = [0; 16];
        (*record).path[0] = 0;
        (*record).path[1] = 0;
        (*record).pad = [0; 4];
        match sa_family {
            family::INET => {
                let port: u16 = bpf_probe_read_user(addr.add(2).cast::<u16>()).unwrap_or(0);
                (*record).port = u16::from_be(port);
                let _ = bpf_probe_read_user_buf(addr.add(4), &mut (&mut (*record).addr)[..4]);
            }
            family::INET6 => {
                let port: u16 = bpf_probe_read_user(addr.add(2).cast::<u16>()).unwrap_or(0);
                (*record).port = u16::from_be(port);
                let _ = bpf_probe_read_user_buf(addr.add(8), &mut (*record).addr);
            }
            _ => {
                // sun_path starts at offset 2; an abstract name starts with a NUL byte,
                // which is kept as the marker and the name read after it.
                let first: u8 = bpf_probe_read_user(addr.add(2)).unwrap_or(0);
                if first != 0 {
                    let _ = bpf_probe_read_user_str_bytes(addr.add(2), &mut (*record).path);
                } else if addrlen > 3 {
                    let _ = bpf_probe_read_user_str_bytes(addr.add(3), &mut (&mut (*record).path)[1..]);
                }
            }
        }
        if CONNECT_PENDING.insert(&tid, &*record, 0).is_err() {
            count_lost(RecordKind::Connect);
        }
        Ok(())
    }
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (_, tid) = current_ids();
    let record = CONNECT_PENDING.get_ptr_mut(&tid).ok_or(1)?;
    let offsets = tracepoint_offsets();
    // SAFETY: as in exec::try_exit.
    unsafe {
        (*record).retval = ctx
            .read_at::<i64>(offsets.sys_exit_ret as usize)
            .unwrap_or(i64::MIN);
        emit(RecordKind::Connect, &*record);
    }
    let _ = CONNECT_PENDING.remove(&tid);
    Ok(())
}
