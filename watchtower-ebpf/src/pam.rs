//! uprobes on libpam: the start of a PAM transaction, the items that name the
//! remote host, tty and users, and the return code of every step of a login.
//! A successful `pam_open_session` makes the calling process the root of a new
//! session in [`SESSIONS`]; a successful `pam_close_session` gives it back to
//! the session it was opened inside.

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes, generated::bpf_ktime_get_boot_ns},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use watchtower_common::{
    PamCallRecord, PamFunction, PamItemRecord, PamStartRecord, RecordKind, SessionLink, pam_item,
};

use crate::{LOGINS, SESSIONS, agent_tgid, count_lost, current_ids, current_session, fill_header};

/// Arguments of a `pam_start*` call kept until it returns, keyed by pid_tgid.
#[repr(C)]
#[derive(Clone, Copy)]
struct StartArgs {
    service: u64,
    user: u64,
    handle_out: u64,
}

/// The handle of a PAM call kept until it returns, keyed by pid_tgid.
#[repr(C)]
#[derive(Clone, Copy)]
struct CallArgs {
    handle: u64,
    function: u32,
    pad: u32,
}

#[map(name = "PAM_START_ARGS")]
static PAM_START_ARGS: LruHashMap<u64, StartArgs> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "PAM_CALL_ARGS")]
static PAM_CALL_ARGS: LruHashMap<u64, CallArgs> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn pid_tgid() -> u64 {
    aya_ebpf::helpers::bpf_get_current_pid_tgid()
}

#[inline(always)]
fn is_agent() -> bool {
    current_ids().0 == agent_tgid()
}

/// `int pam_start(const char *service, const char *user, const struct pam_conv *, pam_handle_t **)`
#[uprobe]
pub fn pam_start(ctx: ProbeContext) -> u32 {
    let _ = try_stash_start(&ctx, 3);
    0
}

/// `int pam_start_confdir(service, user, conv, const char *confdir, pam_handle_t **)`
#[uprobe]
pub fn pam_start_confdir(ctx: ProbeContext) -> u32 {
    let _ = try_stash_start(&ctx, 4);
    0
}

fn try_stash_start(ctx: &ProbeContext, handle_arg: usize) -> Result<(), i64> {
    if is_agent() {
        return Ok(());
    }
    let args = StartArgs {
        service: ctx.arg::<u64>(0).ok_or(1)?,
        user: ctx.arg::<u64>(1).unwrap_or(0),
        handle_out: ctx.arg::<u64>(handle_arg).ok_or(1)?,
    };
    PAM_START_ARGS.insert(&pid_tgid(), &args, 0).map_err(i64::from)
}

/// Return of `pam_start` and `pam_start_confdir`.
#[uretprobe]
pub fn pam_start_ret(ctx: RetProbeContext) -> u32 {
    let _ = try_pam_start_ret(&ctx);
    0
}

fn try_pam_start_ret(ctx: &RetProbeContext) -> Result<(), i64> {
    let key = pid_tgid();
    // SAFETY: copied out at once.
    let args = unsafe { PAM_START_ARGS.get(&key).copied() }.ok_or(1)?;
    let _ = PAM_START_ARGS.remove(&key);
    let retval: i32 = ctx.ret();
    let handle = if retval == 0 {
        // SAFETY: user memory read through the helper.
        unsafe { bpf_probe_read_user(args.handle_out as *const u64) }.unwrap_or(0)
    } else {
        0
    };
    let (tgid, _) = current_ids();
    let session = current_session(tgid).map_or(0, |s| s.key);
    let Some(mut entry) = LOGINS.reserve::<PamStartRecord>(0) else {
        count_lost(RecordKind::PamStart);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points into the reserved ring buffer slot, large enough for the record.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::PamStart, session);
        (*record).handle = handle;
        (*record).retval = retval;
        (*record).pad = 0;
        (*record).service[0] = 0;
        (*record).user[0] = 0;
        let _ = bpf_probe_read_user_str_bytes(args.service as *const u8, &mut (*record).service);
        if args.user != 0 {
            let _ = bpf_probe_read_user_str_bytes(args.user as *const u8, &mut (*record).user);
        }
    }
    entry.submit(0);
    Ok(())
}

/// `int pam_set_item(pam_handle_t *pamh, int item_type, const void *item)`
#[uprobe]
pub fn pam_set_item(ctx: ProbeContext) -> u32 {
    let _ = try_pam_set_item(&ctx);
    0
}

fn try_pam_set_item(ctx: &ProbeContext) -> Result<(), i64> {
    if is_agent() {
        return Ok(());
    }
    let handle: u64 = ctx.arg(0).ok_or(1)?;
    let item_type: u32 = ctx.arg(1).ok_or(1)?;
    let item: u64 = ctx.arg(2).ok_or(1)?;
    if !matches!(
        item_type,
        pam_item::USER | pam_item::TTY | pam_item::RHOST | pam_item::RUSER
    ) {
        return Ok(());
    }
    let (tgid, _) = current_ids();
    let session = current_session(tgid).map_or(0, |s| s.key);
    let Some(mut entry) = LOGINS.reserve::<PamItemRecord>(0) else {
        count_lost(RecordKind::PamItem);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: as in try_pam_start_ret.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::PamItem, session);
        (*record).handle = handle;
        (*record).item_type = item_type;
        (*record).pad = 0;
        (*record).value[0] = 0;
        if item != 0 {
            let _ = bpf_probe_read_user_str_bytes(item as *const u8, &mut (*record).value);
        }
    }
    entry.submit(0);
    Ok(())
}

fn stash_call(ctx: &ProbeContext, function: PamFunction) -> Result<(), i64> {
    if is_agent() {
        return Ok(());
    }
    let args = CallArgs {
        handle: ctx.arg(0).ok_or(1)?,
        function: function as u32,
        pad: 0,
    };
    PAM_CALL_ARGS.insert(&pid_tgid(), &args, 0).map_err(i64::from)
}

/// Shared return probe of the PAM steps: records the return code, and opens or
/// closes a session in the kernel's session tree.
fn try_call_ret(ctx: &RetProbeContext) -> Result<(), i64> {
    let key = pid_tgid();
    // SAFETY: copied out at once.
    let args = unsafe { PAM_CALL_ARGS.get(&key).copied() }.ok_or(1)?;
    let _ = PAM_CALL_ARGS.remove(&key);
    let retval: i32 = ctx.ret();
    let (tgid, _) = current_ids();
    let current = current_session(tgid);
    let mut header_session = current.map_or(0, |s| s.key);
    let mut session_key = 0u64;
    let mut parent_session_key = 0u64;

    // Only a privileged caller opens a login session: an ordinary user's program
    // with its own PAM configuration (`pam_start_confdir`) can "open" one for any
    // user name, and its activity must stay in its own session. (With the `cred`
    // layout unknown, every caller counts as privileged.)
    let euid = crate::current_euid(&crate::task_offsets());
    let privileged = euid == 0 || euid == watchtower_common::UNSET_ID;
    if args.function == PamFunction::OpenSession as u32 && retval == 0 && privileged {
        // Unique per boot: the boot-time clock in ns with the CPU number in the low byte
        // (two opens on one CPU are always more than 256 ns apart).
        // SAFETY: plain helpers.
        let (now, cpu) = unsafe {
            (
                bpf_ktime_get_boot_ns(),
                aya_ebpf::helpers::generated::bpf_get_smp_processor_id(),
            )
        };
        session_key = (now & !0xff) | u64::from(cpu & 0xff);
        parent_session_key = header_session;
        let link = SessionLink {
            key: session_key,
            parent_key: parent_session_key,
            is_root: 1,
            pad: 0,
        };
        if SESSIONS.insert(&tgid, &link, 0).is_err() {
            crate::count_session_link_lost();
        }
        header_session = session_key;
    } else if args.function == PamFunction::CloseSession as u32 {
        if let Some(link) = current {
            session_key = link.key;
            parent_session_key = link.parent_key;
            if retval == 0 && link.is_root != 0 {
                if link.parent_key != 0 {
                    let back = SessionLink {
                        key: link.parent_key,
                        parent_key: 0,
                        is_root: 0,
                        pad: 0,
                    };
                    let _ = SESSIONS.insert(&tgid, &back, 0);
                } else {
                    let _ = SESSIONS.remove(&tgid);
                }
            }
        }
    }

    let Some(mut entry) = LOGINS.reserve::<PamCallRecord>(0) else {
        count_lost(RecordKind::PamCall);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: as in try_pam_start_ret.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::PamCall, header_session);
        (*record).handle = args.handle;
        (*record).function = args.function;
        (*record).retval = retval;
        (*record).session_key = session_key;
        (*record).parent_session_key = parent_session_key;
    }
    entry.submit(0);
    Ok(())
}

/// Return of every PAM step probed below.
#[uretprobe]
pub fn pam_call_ret(ctx: RetProbeContext) -> u32 {
    let _ = try_call_ret(&ctx);
    0
}

macro_rules! pam_step {
    ($name:ident, $function:expr) => {
        /// Entry of the PAM step of the same name: keeps the handle for the return probe.
        #[uprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            let _ = stash_call(&ctx, $function);
            0
        }
    };
}

pam_step!(pam_authenticate, PamFunction::Authenticate);
pam_step!(pam_acct_mgmt, PamFunction::AcctMgmt);
pam_step!(pam_open_session, PamFunction::OpenSession);
pam_step!(pam_close_session, PamFunction::CloseSession);
pam_step!(pam_setcred, PamFunction::Setcred);
pam_step!(pam_chauthtok, PamFunction::Chauthtok);

/// `int pam_end(pam_handle_t *pamh, int pam_status)`: recorded at entry (the handle
/// is freed by the call).
#[uprobe]
pub fn pam_end(ctx: ProbeContext) -> u32 {
    let _ = try_pam_end(&ctx);
    0
}

fn try_pam_end(ctx: &ProbeContext) -> Result<(), i64> {
    if is_agent() {
        return Ok(());
    }
    let handle: u64 = ctx.arg(0).ok_or(1)?;
    let status: i32 = ctx.arg(1).ok_or(1)?;
    let (tgid, _) = current_ids();
    let session = current_session(tgid).map_or(0, |s| s.key);
    let Some(mut entry) = LOGINS.reserve::<PamCallRecord>(0) else {
        count_lost(RecordKind::PamCall);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: as in try_pam_start_ret.
    unsafe {
        fill_header(&raw mut (*record).header, RecordKind::PamCall, session);
        (*record).handle = handle;
        (*record).function = PamFunction::End as u32;
        (*record).retval = status;
        (*record).session_key = 0;
        (*record).parent_session_key = 0;
    }
    entry.submit(0);
    Ok(())
}
