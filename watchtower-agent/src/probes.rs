//! Loading and attaching the eBPF programs, with every kernel-feature check in
//! one place: privileges, tracefs, BTF, tracepoint layouts and libpam.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSockAddr, TracePoint, UProbe, uprobe::UProbeScope},
};
use watchtower_common::{RecordKind, SessionLink, TaskOffsets, TracepointOffsets, names};

use crate::adopt::{self, AdoptedSession};
use crate::pins::{self, CaptureStart, Kept, PinDir};
use crate::{btf, clock, host_lookup, libpam, mounts, tracefs};

/// The eBPF object built by build.rs from watchtower-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/watchtower"));

/// (program, tracepoint group, tracepoint name)
const TRACEPOINTS: [(&str, &str, &str); 11] = [
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sys_enter_execve", "syscalls", "sys_enter_execve"),
    ("sys_exit_execve", "syscalls", "sys_exit_execve"),
    ("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
    ("sys_exit_execveat", "syscalls", "sys_exit_execveat"),
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_exit_connect", "syscalls", "sys_exit_connect"),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto"),
    ("sys_enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
];

/// The cgroup socket-address programs, attached at the root of the cgroup v2
/// hierarchy (so to every socket): the kernel's copy of every connect and send
/// destination, `io_uring` and 32-bit calls included.
const SOCKET_HOOKS: [&str; 4] = ["sock_connect4", "sock_connect6", "sock_sendmsg4", "sock_sendmsg6"];

/// PAM steps whose return codes are recorded by the shared `pam_call_ret` program.
const PAM_STEPS: [&str; 6] = [
    "pam_authenticate",
    "pam_acct_mgmt",
    "pam_open_session",
    "pam_close_session",
    "pam_setcred",
    "pam_chauthtok",
];

/// Capabilities the agent needs, with why.
pub const REQUIRED_CAPABILITIES: [(u32, &str, &str); 4] = [
    (39, "CAP_BPF", "load eBPF programs and create maps"),
    (
        38,
        "CAP_PERFMON",
        "attach tracepoints and uprobes (perf events), read kernel memory from BPF",
    ),
    (
        21,
        "CAP_SYS_ADMIN",
        "attach uprobes (required since the CVE-2025-38466 fix) and mount tracefs",
    ),
    (
        2,
        "CAP_DAC_READ_SEARCH",
        "read tracefs (root-only /sys/kernel/tracing): tracepoint formats and ids",
    ),
];

/// What was found about this machine before loading anything.
#[derive(Debug)]
pub struct Preflight {
    pub tracefs: PathBuf,
    pub mounted_tracefs: bool,
    pub tracepoint_offsets: TracepointOffsets,
    pub task_offsets: TaskOffsets,
    pub libpam: PathBuf,
    pub btf_note: Option<String>,
}

/// Effective capability set of this process, from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The required capabilities this process lacks.
#[must_use]
pub fn missing_capabilities() -> Vec<&'static str> {
    let Some(effective) = effective_capabilities() else {
        return Vec::new();
    };
    REQUIRED_CAPABILITIES
        .iter()
        .filter(|(bit, _, _)| effective & (1u64 << bit) == 0)
        .map(|(_, name, _)| *name)
        .collect()
}

/// Check everything the probes need; fail with a message that says what to do.
pub fn preflight() -> anyhow::Result<Preflight> {
    let missing = missing_capabilities();
    if !missing.is_empty() {
        let why: Vec<String> = REQUIRED_CAPABILITIES
            .iter()
            .filter(|(_, name, _)| missing.contains(name))
            .map(|(_, name, why)| format!("{name} ({why})"))
            .collect();
        let all: Vec<&str> = REQUIRED_CAPABILITIES.iter().map(|(_, name, _)| *name).collect();
        bail!(
            "missing capabilities: {}. The probes need {} (run as root, or grant exactly these): {}",
            missing.join(", "),
            all.join(" "),
            why.join("; ")
        );
    }
    if !std::path::Path::new("/sys/fs/bpf").exists()
        && !std::path::Path::new("/proc/sys/kernel/bpf_stats_enabled").exists()
    {
        bail!(
            "this kernel has no BPF support (no /proc/sys/kernel/bpf_stats_enabled): it needs CONFIG_BPF_SYSCALL"
        );
    }
    let (tracefs_root, mounted_tracefs) = tracefs::ensure_mounted()?;
    let tracepoint_offsets = tracefs::tracepoint_offsets(&tracefs_root)
        .context("reading tracepoint layouts (does this kernel have CONFIG_FTRACE_SYSCALLS?)")?;
    let (task_offsets, btf_note) = match std::fs::read(btf::VMLINUX_BTF) {
        Ok(data) => match btf::Btf::parse(&data).and_then(|b| btf::task_offsets(&b)) {
            Ok(offsets) => (offsets, None),
            Err(e) => (
                TaskOffsets::default(),
                Some(format!(
                    "{}: {e}; ppid, exit codes, euid and login uids are not known",
                    btf::VMLINUX_BTF
                )),
            ),
        },
        Err(e) => (
            TaskOffsets::default(),
            Some(format!(
                "{} unreadable ({e}); ppid, exit codes, euid and login uids are not known",
                btf::VMLINUX_BTF
            )),
        ),
    };
    let libpam = libpam::discover().map_err(|e| anyhow!("{e}: logins cannot be observed"))?;
    Ok(Preflight {
        tracefs: tracefs_root,
        mounted_tracefs,
        tracepoint_offsets,
        task_offsets,
        libpam,
        btf_note,
    })
}

/// Loaded and attached programs with the maps user space reads.
pub struct Probes {
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: Ebpf,
    pub rings: Rings,
    pub counters: KernelCounters,
    /// Human-readable list of what is attached.
    pub attached: Vec<String>,
    /// Sessions that began before the agent and were written into the session map.
    pub adopted: Vec<AdoptedSession>,
    /// How capture began: resumed from an earlier agent's pins, fresh, or after a gap.
    pub start: CaptureStart,
    /// The pins, when the probes could be pinned.
    pub kept: Option<KeptProbes>,
}

/// The two ring buffers the probes write: a login's own records apart from the
/// exec, connect, fork and exit records a flood can fill.
pub struct Rings {
    /// Exec, connect, fork and exit records (`EVENTS`).
    pub events: RingBuf<MapData>,
    /// PAM records and the exits of session roots (`LOGINS`).
    pub logins: RingBuf<MapData>,
}

/// The kernel's per-CPU loss and scope counters.
pub struct KernelCounters {
    lost: PerCpuArray<MapData, u64>,
    out_of_scope: PerCpuArray<MapData, u64>,
}

fn sum_slot(map: &PerCpuArray<MapData, u64>, slot: u32) -> u64 {
    map.get(&slot, 0).map_or(0, |values| values.iter().sum::<u64>())
}

fn sum_by_kind(map: &PerCpuArray<MapData, u64>) -> BTreeMap<&'static str, u64> {
    RecordKind::ALL
        .iter()
        .map(|kind| (kind.name(), sum_slot(map, *kind as u32)))
        .collect()
}

impl KernelCounters {
    /// Records lost because the ring buffer was full, by kind, and session links
    /// the kernel's session map could not hold (`session_link`).
    #[must_use]
    pub fn lost(&self) -> BTreeMap<&'static str, u64> {
        let mut lost = sum_by_kind(&self.lost);
        lost.insert(
            "session_link",
            sum_slot(&self.lost, watchtower_common::SLOT_SESSION_LINK),
        );
        lost
    }

    /// Activity seen outside the capture scope, by kind.
    #[must_use]
    pub fn out_of_scope(&self) -> BTreeMap<&'static str, u64> {
        sum_by_kind(&self.out_of_scope)
    }
}

/// The PAM uprobe programs and the symbols each is attached to (required or not).
fn pam_programs() -> Vec<(&'static str, Vec<(&'static str, bool)>)> {
    let mut programs = vec![
        ("pam_start", vec![("pam_start", true)]),
        ("pam_start_confdir", vec![("pam_start_confdir", false)]),
        (
            "pam_start_ret",
            vec![("pam_start", true), ("pam_start_confdir", false)],
        ),
        ("pam_set_item", vec![("pam_set_item", true)]),
    ];
    for step in PAM_STEPS {
        programs.push((step, vec![(step, true)]));
    }
    programs.push(("pam_call_ret", PAM_STEPS.iter().map(|s| (*s, true)).collect()));
    programs.push(("pam_end", vec![("pam_end", true)]));
    programs
}

/// Load the PAM uprobe programs (before any [`attach_pam`]).
pub fn load_pam(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    for (program, _) in pam_programs() {
        let probe: &mut UProbe = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?
            .try_into()?;
        probe
            .load()
            .with_context(|| format!("verifier rejected {program}"))?;
    }
    Ok(())
}

/// Attach the loaded PAM uprobes to `libpam` (at start; a libpam replaced later
/// gets them attached to the new file, the old attachments stay on the old one),
/// each link pinned in `pins` when given. Returns what was attached.
pub fn attach_pam(ebpf: &mut Ebpf, libpam: &Path, pins: Option<&PinDir>) -> anyhow::Result<Vec<String>> {
    let file = std::fs::metadata(libpam)
        .map(|m| {
            (
                std::os::unix::fs::MetadataExt::dev(&m),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        })
        .with_context(|| format!("reading {}", libpam.display()))?;
    let mut attached = Vec::new();
    for (program, symbols) in pam_programs() {
        let probe: &mut UProbe = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?
            .try_into()?;
        for (symbol, required) in symbols {
            match probe.attach(symbol, libpam, UProbeScope::AllProcesses) {
                Ok(id) => {
                    if let Some(pins) = pins {
                        let name = format!("pam-{program}-{symbol}-{}-{}", file.0, file.1);
                        pins.keep(&name, probe.take_link(id)?.try_into()?)?;
                    }
                    attached.push(format!(
                        "{}:{}:{symbol}",
                        if program.ends_with("_ret") {
                            "uretprobe"
                        } else {
                            "uprobe"
                        },
                        libpam.display()
                    ));
                }
                Err(e) if !required => {
                    tracing::info!(symbol, error = %e, "optional PAM symbol not attached");
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "attaching {program} to {symbol} in {} (uprobes need CAP_SYS_ADMIN on this kernel)",
                        libpam.display()
                    )));
                }
            }
        }
    }
    Ok(attached)
}

/// The file a path names now: (device, inode), following links.
#[must_use]
pub fn file_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What [`load`] needs to know besides the machine.
pub struct LoadOptions<'a> {
    pub capture_all: bool,
    pub ring_buffer_bytes: u32,
    pub pin_dir: &'a Path,
    pub state_dir: &'a Path,
}

/// Load the object, configure it for this kernel and attach every probe, pinned
/// in bpffs; or resume the probes an earlier agent left pinned (see [`crate::pins`]).
pub fn load(preflight: &Preflight, options: &LoadOptions<'_>) -> anyhow::Result<Probes> {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
    let now_ns = clock::boottime_ns();
    let mut wanted = Kept {
        boot_id: host_lookup::boot_id()?,
        object: pins::object_id(EBPF_OBJECT),
        capture_all: options.capture_all,
        ring_buffer_bytes: options.ring_buffer_bytes,
        pin_dir: options.pin_dir.to_path_buf(),
        libpam_files: Vec::new(),
        alive_ns: now_ns,
        socket_hooks: false,
    };
    let kept = Kept::read(options.state_dir);
    let pin_dir = PinDir::new(options.pin_dir);
    let mut start = pins::decide(kept.as_ref(), &wanted, pin_dir.links_pinned(), now_ns);
    if start != CaptureStart::Resumed {
        // Another build's or another setting's probes: detached before ours attach.
        pin_dir.remove()?;
    }
    let pins = match pin_dir.create() {
        Ok(()) => Some(pin_dir),
        Err(error) => {
            tracing::warn!(
                "{error:#}: the probes are not kept across agent restarts (each restart is a capture gap)"
            );
            start = CaptureStart::Unpinned;
            None
        }
    };
    let capture_all = u32::from(options.capture_all);
    let mut loader = EbpfLoader::new();
    loader
        .override_global(names::CAPTURE_ALL, &capture_all, true)
        .override_global(names::TASK_OFFSETS, &preflight.task_offsets, true)
        .override_global(names::TRACEPOINT_OFFSETS, &preflight.tracepoint_offsets, true)
        .map_max_entries(names::EVENTS, options.ring_buffer_bytes);
    let map_paths: Vec<(&str, PathBuf)> = match &pins {
        Some(pins) => names::PINNED.iter().map(|name| (*name, pins.map(name))).collect(),
        None => Vec::new(),
    };
    for (name, path) in &map_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(EBPF_OBJECT).context(
        "the kernel refused the eBPF object (it needs BPF ring buffers, kernel >= 5.8, \
         and the verifier's acceptance; see the error above)",
    )?;
    write_agent_tgid(&mut ebpf)?;
    let mut attached = Vec::new();
    let mut adopted = Vec::new();
    load_pam(&mut ebpf)?;
    if start == CaptureStart::Resumed {
        let kept = kept.expect("resumed from a description");
        tracing::info!(
            pin_dir = %options.pin_dir.display(),
            "resumed the probes of the previous agent: capture went on while no agent ran"
        );
        attached.extend(resumed(&kept));
        wanted.socket_hooks = kept.socket_hooks;
        wanted.libpam_files = kept.libpam_files;
        if let Some(file) = file_of(&preflight.libpam)
            && !wanted.libpam_files.contains(&file)
        {
            tracing::warn!(libpam = %preflight.libpam.display(), "libpam was replaced while no agent ran: attaching to the new file");
            attached.extend(attach_pam(&mut ebpf, &preflight.libpam, pins.as_ref())?);
            wanted.libpam_files.push(file);
        }
    } else {
        attached.extend(attach_tracepoints(&mut ebpf, pins.as_ref())?);
        let hooks = attach_socket_hooks(&mut ebpf, pins.as_ref(), options.state_dir)?;
        wanted.socket_hooks = !hooks.is_empty();
        attached.extend(hooks);
        // With fork and exit followed, adopt the sessions that are already running (a
        // fork between the scan and the map write is the only window, and it is tiny).
        adopted = adopt::group(&adopt::scan_proc(std::process::id()));
        write_adopted(&mut ebpf, &adopted)?;
        attached.extend(attach_pam(&mut ebpf, &preflight.libpam, pins.as_ref())?);
        wanted.libpam_files.extend(file_of(&preflight.libpam));
    }
    if pins.is_some() {
        wanted.write(options.state_dir)?;
    }

    let (rings, counters) = take_maps(&mut ebpf)?;
    Ok(Probes {
        ebpf,
        rings,
        counters,
        attached,
        adopted,
        start,
        kept: pins.map(|pins| KeptProbes {
            pins,
            kept: wanted,
            state_dir: options.state_dir.to_path_buf(),
        }),
    })
}

/// What the resumed probes of an earlier agent are attached to.
fn resumed(kept: &Kept) -> Vec<String> {
    let tracepoints = TRACEPOINTS
        .iter()
        .map(|(_, group, name)| format!("tracepoint:{group}/{name} (resumed)"));
    let hooks = SOCKET_HOOKS
        .iter()
        .filter(|_| kept.socket_hooks)
        .map(|name| format!("cgroup:{name} (resumed)"));
    tracepoints.chain(hooks).collect()
}

/// Attach the socket hooks at the cgroup v2 root, each link pinned in `pins` when
/// given. Without a cgroup v2 hierarchy (or the right to attach there) the agent
/// runs on without them, and says what it then misses.
fn attach_socket_hooks(
    ebpf: &mut Ebpf,
    pins: Option<&PinDir>,
    state_dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let root = match mounts::open_cgroup2_root(&state_dir.join("cgroup2")) {
        Ok(root) => root,
        Err(error) => {
            tracing::warn!(
                %error,
                "no cgroup v2 hierarchy to attach the socket hooks to: connects and sends through \
                 io_uring, 32-bit calls and sendmmsg are not seen"
            );
            return Ok(Vec::new());
        }
    };
    let mut attached = Vec::new();
    for program in SOCKET_HOOKS {
        let hook: &mut CgroupSockAddr = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?
            .try_into()?;
        hook.load()
            .with_context(|| format!("verifier rejected {program}"))?;
        let id = match hook.attach(&root, CgroupAttachMode::Single) {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(
                    %error,
                    program,
                    "socket hook not attached: connects and sends through io_uring, 32-bit calls \
                     and sendmmsg are not seen"
                );
                continue;
            }
        };
        if let Some(pins) = pins {
            pins.keep(program, hook.take_link(id)?.try_into()?)?;
        }
        attached.push(format!("cgroup:{program}"));
    }
    Ok(attached)
}

/// Tell the probes (ours, or those resumed) which process is the agent.
fn write_agent_tgid(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut agent: aya::maps::Array<_, u32> = aya::maps::Array::try_from(
        ebpf.map_mut(names::AGENT)
            .ok_or_else(|| anyhow!("map {} missing", names::AGENT))?,
    )?;
    agent.set(0, std::process::id(), 0)?;
    Ok(())
}

/// The maps user space reads, taken out of the object.
fn take_maps(ebpf: &mut Ebpf) -> anyhow::Result<(Rings, KernelCounters)> {
    let events = RingBuf::try_from(
        ebpf.take_map(names::EVENTS)
            .ok_or_else(|| anyhow!("map {} missing", names::EVENTS))?,
    )?;
    let logins = RingBuf::try_from(
        ebpf.take_map(names::LOGINS)
            .ok_or_else(|| anyhow!("map {} missing", names::LOGINS))?,
    )?;
    let lost = PerCpuArray::try_from(
        ebpf.take_map(names::LOST)
            .ok_or_else(|| anyhow!("map {} missing", names::LOST))?,
    )?;
    let out_of_scope = PerCpuArray::try_from(
        ebpf.take_map(names::OUT_OF_SCOPE)
            .ok_or_else(|| anyhow!("map {} missing", names::OUT_OF_SCOPE))?,
    )?;
    Ok((Rings { events, logins }, KernelCounters { lost, out_of_scope }))
}

/// Attach the tracepoints, session inheritance first so no fork of a new session
/// is missed; each link pinned in `pins` when given.
fn attach_tracepoints(ebpf: &mut Ebpf, pins: Option<&PinDir>) -> anyhow::Result<Vec<String>> {
    let mut attached = Vec::new();
    for (program, group, name) in TRACEPOINTS {
        let tp: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?
            .try_into()?;
        tp.load()
            .with_context(|| format!("verifier rejected {program}"))?;
        let id = tp
            .attach(group, name)
            .with_context(|| format!("attaching tracepoint {group}/{name}"))?;
        if let Some(pins) = pins {
            pins.keep(program, tp.take_link(id)?.try_into()?)?;
        }
        attached.push(format!("tracepoint:{group}/{name}"));
    }
    Ok(attached)
}

/// Write the sessions found running into the kernel's session map.
fn write_adopted(ebpf: &mut Ebpf, adopted: &[AdoptedSession]) -> anyhow::Result<()> {
    let mut sessions: aya::maps::HashMap<_, u32, SessionLink> = aya::maps::HashMap::try_from(
        ebpf.map_mut(names::SESSIONS)
            .ok_or_else(|| anyhow!("map {} missing", names::SESSIONS))?,
    )?;
    for session in adopted {
        for pid in &session.members {
            let link = SessionLink {
                key: session.key,
                parent_key: 0,
                is_root: u32::from(session.root == Some(*pid)),
                pad: 0,
            };
            sessions
                .insert(pid, link, 0)
                .with_context(|| format!("adopting pid {pid} into session {:#x}", session.key))?;
        }
    }
    Ok(())
}

/// Pinned probes and their description in the state directory.
pub struct KeptProbes {
    pins: PinDir,
    kept: Kept,
    state_dir: PathBuf,
}

impl KeptProbes {
    /// The pins, for links attached later (a replaced libpam).
    #[must_use]
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// A libpam file the PAM probes were attached to as well.
    pub fn attached_to(&mut self, file: (u64, u64)) {
        if !self.kept.libpam_files.contains(&file) {
            self.kept.libpam_files.push(file);
        }
        self.save();
    }

    /// An agent is reading the probes now.
    pub fn alive(&mut self) {
        self.kept.alive_ns = clock::boottime_ns();
        self.save();
    }

    fn save(&self) {
        if let Err(error) = self.kept.write(&self.state_dir) {
            tracing::warn!("{error:#}");
        }
    }

    /// The agent stops on purpose: its probes stop with it (the links detach now;
    /// the maps go once the agent's last descriptor closes). The description stays,
    /// so the next agent on this boot reports the time between as a gap.
    pub fn release(mut self) {
        self.alive();
        if let Err(error) = self.pins.remove() {
            tracing::error!("{error:#}: the probes stay attached until it is removed");
        }
    }
}
