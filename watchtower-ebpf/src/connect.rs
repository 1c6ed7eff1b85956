//! Where processes connect and send to.
//!
//! The `connect` tracepoints read the destination at entry and send it with the
//! result at exit (`-EINPROGRESS` is a non-blocking connect under way). `sendto`
//! and `sendmsg` with a destination (UDP, TCP fast open) reach a peer without
//! `connect`: their entry tracepoints record it, once per process and destination
//! every [`connect_via::SEND_REPEAT_NS`].
//!
//! The cgroup socket hooks (`connect4`/`connect6`, `sendmsg4`/`sendmsg6`, attached
//! at the cgroup v2 root) see the kernel's copy of every destination, whatever
//! path the call took: inside a `connect` the tracepoints follow they put it in
//! the pending record (so an address in a page not yet resident is not lost);
//! otherwise (io_uring, a 32-bit `socketcall`, `sendmmsg`) they record it
//! themselves, `via` [`connect_via::KERNEL`] or [`connect_via::SEND`].

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns, bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    },
    macros::{cgroup_sock_addr, map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{SockAddrContext, TracePointContext},
};
use watchtower_common::{ConnectRecord, RecordKind, connect_via, family};

use crate::{
    agent_tgid, capture_all, count_lost, count_out_of_scope, current_ids, current_session, emit, fill_header,
    tracepoint_offsets,
};

#[map(name = "CONNECT_SCRATCH")]
static CONNECT_SCRATCH: PerCpuArray<ConnectRecord> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "CONNECT_PENDING")]
pub(crate) static CONNECT_PENDING: HashMap<u32, ConnectRecord> = HashMap::with_max_entries(8192, 0);

/// A process and a destination it sent to.
#[repr(C)]
#[derive(Clone, Copy)]
struct SendKey {
    tgid: u32,
    family: u16,
    port: u16,
    addr: [u8; 16],
}

/// When each (process, destination) send was last recorded.
#[map(name = "SENDS_RECORDED")]
static SENDS_RECORDED: LruHashMap<SendKey, u64> = LruHashMap::with_max_entries(16_384, 0);

/// `struct user_msghdr`: `msg_name` is its first field (the system call ABI).
const USER_MSGHDR_NAME: usize = 0;

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

/// What a cgroup socket-address program returns: let the call go on.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    let _ = try_sock_connect(&ctx, family::INET);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    let _ = try_sock_connect(&ctx, family::INET6);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    let _ = try_sock_send(&ctx, family::INET);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    let _ = try_sock_send(&ctx, family::INET6);
    ALLOW
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let _ = try_sendto(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let _ = try_sendmsg(&ctx);
    0
}

/// The session to record the current process's socket activity in, or `None`
/// when it is the agent or outside the capture scope.
#[inline(always)]
fn session_in_scope(tgid: u32) -> Option<u64> {
    if tgid == agent_tgid() {
        return None;
    }
    let session = current_session(tgid).map_or(0, |s| s.key);
    (session != 0 || capture_all()).then_some(session)
}

/// Fill `record`'s destination from the user `sockaddr` at `addr`. `Err` for
/// families not recorded.
///
/// # Safety
/// `record` points at a writable `ConnectRecord`.
#[inline(always)]
unsafe fn read_destination(record: *mut ConnectRecord, addr: *const u8, addrlen: u64) -> Result<(), i64> {
    // SAFETY: `record` is writable by the contract; user memory is read through helpers.
    unsafe {
        let sa_family: u16 = bpf_probe_read_user(addr.cast::<u16>()).map_err(i64::from)?;
        if !matches!(sa_family, family::INET | family::INET6 | family::UNIX) {
            return Err(0);
        }
        (*record).family = sa_family;
        (*record).port = 0;
        (*record).addr = [0; 16];
        (*record).path[0] = 0;
        (*record).path[1] = 0;
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
    }
    Ok(())
}

fn try_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    let offsets = tracepoint_offsets();
    if tgid == agent_tgid() || offsets.connect_uservaddr == 0 {
        return Ok(());
    }
    let Some(session) = session_in_scope(tgid) else {
        count_out_of_scope(RecordKind::Connect);
        return Ok(());
    };
    let record = CONNECT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: tracepoint fields read through the helper; `record` is this CPU's scratch slot.
    unsafe {
        let fd: u64 = ctx.read_at(offsets.connect_fd as usize).map_err(i64::from)?;
        let addr: u64 = ctx
            .read_at(offsets.connect_uservaddr as usize)
            .map_err(i64::from)?;
        let addrlen: u64 = ctx.read_at(offsets.connect_addrlen as usize).map_err(i64::from)?;
        match read_destination(record, addr as *const u8, addrlen) {
            Ok(()) => {}
            // Not resident yet: the socket hook, which sees the kernel's copy, fills
            // it in; a family it does not see is counted lost at exit.
            Err(error) if error < 0 => (*record).family = family::UNREAD,
            // A family not recorded.
            Err(_) => return Ok(()),
        }
        fill_header(&raw mut (*record).header, RecordKind::Connect, session);
        (*record).retval = 0;
        (*record).fd = fd as u32;
        (*record).via = connect_via::SYSCALL;
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
    // SAFETY: `record` is this thread's pending map value; the field read uses the helper.
    unsafe {
        if (*record).family == family::UNREAD {
            // Neither the caller's memory nor a socket hook gave the destination.
            count_lost(RecordKind::Connect);
        } else {
            (*record).retval = ctx
                .read_at::<i64>(offsets.sys_exit_ret as usize)
                .unwrap_or(i64::MIN);
            emit(RecordKind::Connect, &*record);
        }
    }
    let _ = CONNECT_PENDING.remove(&tid);
    Ok(())
}

fn try_sendto(ctx: &TracePointContext) -> Result<(), i64> {
    let offset = tracepoint_offsets().sendto_addr;
    if offset == 0 {
        return Ok(());
    }
    // SAFETY: a tracepoint field read through the helper.
    let addr: u64 = unsafe { ctx.read_at(offset as usize) }.map_err(i64::from)?;
    record_send(addr as *const u8)
}

fn try_sendmsg(ctx: &TracePointContext) -> Result<(), i64> {
    let offset = tracepoint_offsets().sendmsg_msg;
    if offset == 0 {
        return Ok(());
    }
    // SAFETY: a tracepoint field read through the helper; user memory through the user helper.
    let name: u64 = unsafe {
        let msg: u64 = ctx.read_at(offset as usize).map_err(i64::from)?;
        if msg == 0 {
            return Ok(());
        }
        bpf_probe_read_user((msg as *const u8).add(USER_MSGHDR_NAME).cast::<u64>()).map_err(i64::from)?
    };
    record_send(name as *const u8)
}

/// A send to the user `sockaddr` at `name` (null: a connected socket, whose
/// destination was recorded when it connected).
#[inline(always)]
fn record_send(name: *const u8) -> Result<(), i64> {
    if name.is_null() {
        return Ok(());
    }
    let (tgid, _) = current_ids();
    let Some(session) = session_in_scope(tgid) else {
        return Ok(());
    };
    let record = CONNECT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: `record` is this CPU's scratch slot.
    unsafe {
        read_destination(record, name, 0)?;
        if (*record).family == family::UNIX {
            // Datagrams to local sockets (syslog, the journal) are not network access.
            return Ok(());
        }
        emit_unless_recent(record, tgid, session, connect_via::SEND);
    }
    Ok(())
}

/// Emit the destination in `record` `via` a send or the socket hook, unless this
/// process reached it within [`connect_via::SEND_REPEAT_NS`] (then it was recorded:
/// by the `sendto` tracepoint before the hook of the same send saw it, or by an
/// earlier send).
///
/// # Safety
/// `record` points at this CPU's scratch record, its destination filled in.
#[inline(always)]
unsafe fn emit_unless_recent(record: *mut ConnectRecord, tgid: u32, session: u64, via: u32) {
    // SAFETY: `record` is writable by the contract.
    unsafe {
        let key = SendKey {
            tgid,
            family: (*record).family,
            port: (*record).port,
            addr: (*record).addr,
        };
        let now = bpf_ktime_get_boot_ns();
        if let Some(last) = SENDS_RECORDED.get(&key) {
            if now.saturating_sub(*last) < connect_via::SEND_REPEAT_NS {
                return;
            }
        }
        let _ = SENDS_RECORDED.insert(&key, &now, 0);
        fill_header(&raw mut (*record).header, RecordKind::Connect, session);
        (*record).retval = 0;
        (*record).fd = u32::MAX;
        (*record).via = via;
        emit(RecordKind::Connect, &*record);
    }
}

/// Fill `record`'s destination from the kernel's copy a socket hook sees.
///
/// # Safety
/// `record` points at a writable `ConnectRecord`; `ctx` is the hook's context.
#[inline(always)]
unsafe fn kernel_destination(record: *mut ConnectRecord, ctx: &SockAddrContext, inet: u16) {
    // SAFETY: `ctx.sock_addr` is the kernel's `bpf_sock_addr` for this call; the
    // fields are read with the sizes the verifier allows; `record` is writable.
    unsafe {
        let sa = ctx.sock_addr;
        (*record).family = inet;
        (*record).path[0] = 0;
        (*record).path[1] = 0;
        // `user_port` holds the port in network byte order in its low 16 bits.
        let port = core::ptr::read_volatile(&raw const (*sa).user_port) as u16;
        (*record).port = u16::from_be(port);
        if inet == family::INET {
            let ip = core::ptr::read_volatile(&raw const (*sa).user_ip4).to_ne_bytes();
            (*record).addr = [ip[0], ip[1], ip[2], ip[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        } else {
            let words = [
                core::ptr::read_volatile(&raw const (*sa).user_ip6[0]),
                core::ptr::read_volatile(&raw const (*sa).user_ip6[1]),
                core::ptr::read_volatile(&raw const (*sa).user_ip6[2]),
                core::ptr::read_volatile(&raw const (*sa).user_ip6[3]),
            ];
            // The words hold the address's bytes in network order, as in memory.
            (*record).addr = core::mem::transmute::<[u32; 4], [u8; 16]>(words);
        }
    }
}

/// A connect seen by the `connect4`/`connect6` hook: into the pending record of a
/// `connect` the tracepoints follow, or recorded here when none is pending.
fn try_sock_connect(ctx: &SockAddrContext, inet: u16) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if tgid == agent_tgid() {
        return Ok(());
    }
    if let Some(pending) = CONNECT_PENDING.get_ptr_mut(&tid) {
        // SAFETY: this thread's pending map value.
        unsafe { kernel_destination(pending, ctx, inet) };
        return Ok(());
    }
    // Out of scope is not counted here: the tracepoint counted a connect(2) already.
    record_kernel_destination(ctx, inet, tgid, connect_via::KERNEL)
}

/// A datagram to a destination seen by the `sendmsg4`/`sendmsg6` hook (any path:
/// `sendto`, `sendmsg`, `sendmmsg`, io_uring, 32-bit calls).
fn try_sock_send(ctx: &SockAddrContext, inet: u16) -> Result<(), i64> {
    let (tgid, _) = current_ids();
    record_kernel_destination(ctx, inet, tgid, connect_via::SEND)
}

/// Record the destination a socket hook sees, `via` the given path, when `tgid`
/// is in scope (once per destination and [`connect_via::SEND_REPEAT_NS`]).
#[inline(always)]
fn record_kernel_destination(ctx: &SockAddrContext, inet: u16, tgid: u32, via: u32) -> Result<(), i64> {
    let Some(session) = session_in_scope(tgid) else {
        return Ok(());
    };
    let record = CONNECT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: `record` is this CPU's scratch slot.
    unsafe {
        kernel_destination(record, ctx, inet);
        emit_unless_recent(record, tgid, session, via);
    }
    Ok(())
}
