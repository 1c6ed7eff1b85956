//! Checked decoding of the kernel's ring-buffer records into owned, typed values.
//!
//! The kernel writes plain integers; nothing here trusts them: the kind, the
//! size and every enumerated field are checked, and a record that fails any
//! check is returned as a [`DecodeError`] for the caller to count.

use std::mem::size_of;

use thiserror::Error;
use watchtower_common::{
    ConnectRecord, EXEC_MAX_ARGS, ExecRecord, ExitRecord, ForkRecord, PamCallRecord, PamFunction,
    PamItemRecord, PamStartRecord, RecordHeader, RecordKind, connect_via, exec_flags, family, pam_item,
};

/// Why a record was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {header}-byte header")]
    Short { len: usize, header: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record has {len} bytes, expected {expected}")]
    WrongSize {
        kind: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("unknown PAM function {0}")]
    UnknownPamFunction(u32),
    #[error("unknown PAM item type {0}")]
    UnknownPamItem(u32),
    #[error("unknown address family {0}")]
    UnknownFamily(u16),
    #[error("connect record seen by unknown path {0}")]
    UnknownConnectVia(u32),
    #[error("exec record claims {0} arguments")]
    BadArgc(u32),
}

/// Who did it: the task fields every record carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Task {
    pub ktime_ns: u64,
    pub cpu: u32,
    pub session_key: u64,
    pub tgid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Effective uid (absent when the kernel's layout is unknown).
    pub euid: Option<u32>,
    /// Audit login uid at the time of the record (absent when unset).
    pub loginuid: Option<u32>,
    /// Audit session id at the time of the record (absent when unset).
    pub audit_session_id: Option<u32>,
    pub comm: String,
}

/// A PAM item that names where a login comes from or who it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamItem {
    User,
    Tty,
    RemoteHost,
    RemoteUser,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelRecord {
    PamStart {
        task: Task,
        handle: u64,
        retval: i32,
        service: String,
        user: String,
    },
    PamItem {
        task: Task,
        handle: u64,
        item: PamItem,
        value: String,
    },
    PamCall {
        task: Task,
        handle: u64,
        function: PamFunction,
        retval: i32,
        session_key: u64,
        parent_session_key: u64,
    },
    Exec {
        task: Task,
        retval: i64,
        filename: String,
        argv: Vec<String>,
        /// More arguments than were kept, or an argument was cut.
        truncated: bool,
        /// Some user memory could not be read.
        partial: bool,
        /// The new image's variables that change what runs (`LD_PRELOAD=...`).
        env: Vec<String>,
        /// The environment went on past what the probe looked through.
        env_cut: bool,
    },
    Connect {
        task: Task,
        retval: i64,
        fd: u32,
        destination: Destination,
        via: ConnectVia,
    },
    Fork {
        task: Task,
        child_tid: u32,
    },
    Exit {
        task: Task,
        exit_code: u32,
    },
}

impl KernelRecord {
    /// The task that made the record.
    #[must_use]
    pub fn task(&self) -> &Task {
        match self {
            KernelRecord::PamStart { task, .. }
            | KernelRecord::PamItem { task, .. }
            | KernelRecord::PamCall { task, .. }
            | KernelRecord::Exec { task, .. }
            | KernelRecord::Connect { task, .. }
            | KernelRecord::Fork { task, .. }
            | KernelRecord::Exit { task, .. } => task,
        }
    }

    /// When the kernel stamped the record (`CLOCK_BOOTTIME`, ns).
    #[must_use]
    pub fn ktime_ns(&self) -> u64 {
        self.task().ktime_ns
    }

    /// The record's kind, as the kernel counters name it.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        let kind = match self {
            KernelRecord::PamStart { .. } => RecordKind::PamStart,
            KernelRecord::PamItem { .. } => RecordKind::PamItem,
            KernelRecord::PamCall { .. } => RecordKind::PamCall,
            KernelRecord::Exec { .. } => RecordKind::Exec,
            KernelRecord::Connect { .. } => RecordKind::Connect,
            KernelRecord::Fork { .. } => RecordKind::Fork,
            KernelRecord::Exit { .. } => RecordKind::Exit,
        };
        kind.name()
    }
}

/// How a connect's destination was seen (`watchtower_common::connect_via`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectVia {
    /// The `connect` system call, with its result.
    Syscall,
    /// A destination given to `sendto`/`sendmsg`; no result, no file descriptor.
    Send,
    /// A connect the system call tracepoints did not see (`io_uring`, a 32-bit
    /// `socketcall`), from the socket hook; no result, no file descriptor.
    Kernel,
}

impl ConnectVia {
    /// The event's `via` (absent for the system call).
    #[must_use]
    pub const fn name(self) -> Option<&'static str> {
        match self {
            ConnectVia::Syscall => None,
            ConnectVia::Send => Some("send"),
            ConnectVia::Kernel => Some("kernel"),
        }
    }
}

/// Where a `connect` went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Inet(std::net::SocketAddrV4),
    Inet6(std::net::SocketAddrV6),
    /// A path, or `@name` for an abstract socket.
    Unix(String),
}

/// The text of a NUL-terminated (or full) byte buffer, invalid UTF-8 replaced.
#[must_use]
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn read<T: Copy>(bytes: &[u8], kind: RecordKind) -> Result<T, DecodeError> {
    if bytes.len() != size_of::<T>() {
        return Err(DecodeError::WrongSize {
            kind: kind.name(),
            len: bytes.len(),
            expected: size_of::<T>(),
        });
    }
    // SAFETY: the length was checked; T is a #[repr(C)] struct of integers and byte arrays
    // for which every bit pattern is valid; read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// `None` for the kernel's "unset" id.
fn known_id(id: u32) -> Option<u32> {
    (id != watchtower_common::UNSET_ID).then_some(id)
}

fn task(header: &RecordHeader) -> Task {
    Task {
        ktime_ns: header.ktime_ns,
        cpu: header.cpu,
        session_key: header.session_key,
        tgid: header.tgid,
        tid: header.tid,
        ppid: header.ppid,
        uid: header.uid,
        gid: header.gid,
        euid: known_id(header.euid),
        loginuid: known_id(header.loginuid),
        audit_session_id: known_id(header.audit_session_id),
        comm: c_string(&header.comm),
    }
}

/// Decode one ring-buffer record.
#[expect(clippy::too_many_lines, reason = "one flat arm per record kind reads best")]
pub fn decode(bytes: &[u8]) -> Result<KernelRecord, DecodeError> {
    let header_len = size_of::<RecordHeader>();
    if bytes.len() < header_len {
        return Err(DecodeError::Short {
            len: bytes.len(),
            header: header_len,
        });
    }
    let raw_kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = RecordKind::try_from(raw_kind).map_err(DecodeError::UnknownKind)?;
    Ok(match kind {
        RecordKind::PamStart => {
            let r: PamStartRecord = read(bytes, kind)?;
            KernelRecord::PamStart {
                task: task(&r.header),
                handle: r.handle,
                retval: r.retval,
                service: c_string(&r.service),
                user: c_string(&r.user),
            }
        }
        RecordKind::PamItem => {
            let r: PamItemRecord = read(bytes, kind)?;
            let item = match r.item_type {
                pam_item::USER => PamItem::User,
                pam_item::TTY => PamItem::Tty,
                pam_item::RHOST => PamItem::RemoteHost,
                pam_item::RUSER => PamItem::RemoteUser,
                other => return Err(DecodeError::UnknownPamItem(other)),
            };
            KernelRecord::PamItem {
                task: task(&r.header),
                handle: r.handle,
                item,
                value: c_string(&r.value),
            }
        }
        RecordKind::PamCall => {
            let r: PamCallRecord = read(bytes, kind)?;
            KernelRecord::PamCall {
                task: task(&r.header),
                handle: r.handle,
                function: PamFunction::try_from(r.function).map_err(DecodeError::UnknownPamFunction)?,
                retval: r.retval,
                session_key: r.session_key,
                parent_session_key: r.parent_session_key,
            }
        }
        RecordKind::Exec => {
            let r: ExecRecord = read(bytes, kind)?;
            if r.argc as usize > EXEC_MAX_ARGS {
                return Err(DecodeError::BadArgc(r.argc));
            }
            KernelRecord::Exec {
                task: task(&r.header),
                retval: r.retval,
                filename: c_string(&r.filename),
                argv: r.args[..r.argc as usize]
                    .iter()
                    .map(|arg| c_string(arg))
                    .collect(),
                truncated: r.flags
                    & (exec_flags::ARGS_TRUNCATED | exec_flags::ARG_CUT | exec_flags::FILENAME_CUT)
                    != 0,
                partial: r.flags & exec_flags::READ_FAILED != 0,
                env: r
                    .env
                    .iter()
                    .filter(|slot| slot[0] != 0)
                    .map(|slot| c_string(slot))
                    .collect(),
                env_cut: r.flags & exec_flags::ENV_CUT != 0,
            }
        }
        RecordKind::Connect => {
            let r: ConnectRecord = read(bytes, kind)?;
            let destination = match r.family {
                family::INET => Destination::Inet(std::net::SocketAddrV4::new(
                    std::net::Ipv4Addr::new(r.addr[0], r.addr[1], r.addr[2], r.addr[3]),
                    r.port,
                )),
                // An IPv4-mapped address (`::ffff:a.b.c.d`, an IPv6 socket reaching an
                // IPv4 peer) is the IPv4 peer it reaches.
                family::INET6 => match std::net::Ipv6Addr::from(r.addr).to_ipv4_mapped() {
                    Some(v4) => Destination::Inet(std::net::SocketAddrV4::new(v4, r.port)),
                    None => Destination::Inet6(std::net::SocketAddrV6::new(
                        std::net::Ipv6Addr::from(r.addr),
                        r.port,
                        0,
                        0,
                    )),
                },
                family::UNIX => Destination::Unix(if r.path[0] == 0 {
                    format!("@{}", c_string(&r.path[1..]))
                } else {
                    c_string(&r.path)
                }),
                other => return Err(DecodeError::UnknownFamily(other)),
            };
            let via = match r.via {
                connect_via::SYSCALL => ConnectVia::Syscall,
                connect_via::SEND => ConnectVia::Send,
                connect_via::KERNEL => ConnectVia::Kernel,
                other => return Err(DecodeError::UnknownConnectVia(other)),
            };
            KernelRecord::Connect {
                task: task(&r.header),
                retval: r.retval,
                fd: r.fd,
                destination,
                via,
            }
        }
        RecordKind::Fork => {
            let r: ForkRecord = read(bytes, kind)?;
            KernelRecord::Fork {
                task: task(&r.header),
                child_tid: r.child_tid,
            }
        }
        RecordKind::Exit => {
            let r: ExitRecord = read(bytes, kind)?;
            KernelRecord::Exit {
                task: task(&r.header),
                exit_code: r.exit_code,
            }
        }
    })
}

/// Byte images of records, as the kernel would write them.
#[cfg(test)]
pub mod encode {
    use watchtower_common::RecordHeader;

    /// The bytes of a plain `#[repr(C)]` record.
    #[must_use]
    pub fn bytes_of<T: Copy>(record: &T) -> Vec<u8> {
        let len = std::mem::size_of::<T>();
        let mut out = vec![0u8; len];
        // SAFETY: T is a padding-free #[repr(C)] record; copying its bytes is sound.
        unsafe {
            std::ptr::copy_nonoverlapping(std::ptr::from_ref(record).cast::<u8>(), out.as_mut_ptr(), len);
        }
        out
    }

    /// A header for `kind` with the given task identity.
    #[must_use]
    pub fn header(
        kind: u32,
        ktime_ns: u64,
        session_key: u64,
        tgid: u32,
        uid: u32,
        comm: &str,
    ) -> RecordHeader {
        let mut c = [0u8; 16];
        let n = comm.len().min(15);
        c[..n].copy_from_slice(&comm.as_bytes()[..n]);
        RecordHeader {
            kind,
            cpu: 0,
            ktime_ns,
            session_key,
            tgid,
            tid: tgid,
            ppid: 1,
            uid,
            gid: uid,
            euid: uid,
            loginuid: uid,
            audit_session_id: 7,
            comm: c,
        }
    }

    /// Copy `text` into a fixed NUL-terminated buffer.
    #[must_use]
    pub fn fixed<const N: usize>(text: &str) -> [u8; N] {
        let mut out = [0u8; N];
        let n = text.len().min(N - 1);
        out[..n].copy_from_slice(&text.as_bytes()[..n]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{bytes_of, fixed, header};
    use super::*;
    use watchtower_common::{
        EXEC_ARG_LEN, EXEC_ENV_LEN, EXEC_FILENAME_LEN, EXEC_MAX_ENV, PAM_STR_LEN, UNIX_PATH_LEN,
    };

    #[test]
    fn pam_start_round_trips() {
        let record = PamStartRecord {
            header: header(RecordKind::PamStart as u32, 42, 0, 100, 0, "sshd"),
            handle: 0xdead_beef,
            retval: 0,
            pad: 0,
            service: fixed::<PAM_STR_LEN>("sshd"),
            user: fixed::<PAM_STR_LEN>("alice"),
        };
        let decoded = decode(&bytes_of(&record)).unwrap();
        let KernelRecord::PamStart {
            task,
            handle,
            service,
            user,
            ..
        } = decoded
        else {
            panic!("wrong kind: {decoded:?}");
        };
        assert_eq!((task.tgid, task.ktime_ns, task.comm.as_str()), (100, 42, "sshd"));
        assert_eq!(
            (handle, service.as_str(), user.as_str()),
            (0xdead_beef, "sshd", "alice")
        );
    }

    #[test]
    fn kernel_ids_and_their_unset_value() {
        let mut h = header(RecordKind::Fork as u32, 1, 9, 300, 1001, "su");
        h.euid = 0;
        let fork = ForkRecord {
            header: h,
            child_tid: 301,
            pad: 0,
        };
        let KernelRecord::Fork { task, .. } = decode(&bytes_of(&fork)).unwrap() else {
            panic!("not a fork");
        };
        assert_eq!(
            (task.uid, task.euid, task.loginuid, task.audit_session_id),
            (1001, Some(0), Some(1001), Some(7))
        );
        h.euid = watchtower_common::UNSET_ID;
        h.loginuid = watchtower_common::UNSET_ID;
        h.audit_session_id = watchtower_common::UNSET_ID;
        let fork = ForkRecord { header: h, ..fork };
        let KernelRecord::Fork { task, .. } = decode(&bytes_of(&fork)).unwrap() else {
            panic!("not a fork");
        };
        assert_eq!(
            (task.euid, task.loginuid, task.audit_session_id),
            (None, None, None)
        );
    }

    #[test]
    fn rejects_short_unknown_and_wrong_sized_records() {
        assert_eq!(
            decode(&[0u8; 10]),
            Err(DecodeError::Short { len: 10, header: 72 })
        );
        let mut bytes = bytes_of(&header(99, 0, 0, 1, 0, "x"));
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
        bytes[0] = RecordKind::Exec as u8;
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::WrongSize { kind: "exec", .. })
        ));
    }

    #[test]
    fn rejects_unknown_enumerated_fields() {
        let call = PamCallRecord {
            header: header(RecordKind::PamCall as u32, 1, 0, 1, 0, "su"),
            handle: 1,
            function: 77,
            retval: 0,
            session_key: 0,
            parent_session_key: 0,
        };
        assert_eq!(decode(&bytes_of(&call)), Err(DecodeError::UnknownPamFunction(77)));
        let item = PamItemRecord {
            header: header(RecordKind::PamItem as u32, 1, 0, 1, 0, "su"),
            handle: 1,
            item_type: 5,
            pad: 0,
            value: fixed::<PAM_STR_LEN>("x"),
        };
        assert_eq!(decode(&bytes_of(&item)), Err(DecodeError::UnknownPamItem(5)));
    }

    #[test]
    fn exec_keeps_argc_arguments_and_flags() {
        let mut args = [[0u8; EXEC_ARG_LEN]; EXEC_MAX_ARGS];
        args[0] = fixed("id");
        args[1] = fixed("-u");
        args[2] = fixed("stale bytes beyond argc");
        let record = ExecRecord {
            header: header(RecordKind::Exec as u32, 5, 7, 300, 1000, "bash"),
            retval: -2,
            argc: 2,
            flags: exec_flags::ARG_CUT,
            filename: fixed::<EXEC_FILENAME_LEN>("/usr/bin/id"),
            args,
            env: [[0; EXEC_ENV_LEN]; EXEC_MAX_ENV],
        };
        let KernelRecord::Exec {
            filename,
            argv,
            truncated,
            partial,
            retval,
            env,
            env_cut,
            ..
        } = decode(&bytes_of(&record)).unwrap()
        else {
            panic!()
        };
        assert_eq!(filename, "/usr/bin/id");
        assert_eq!(argv, vec!["id".to_string(), "-u".to_string()]);
        assert!(truncated);
        assert!(!partial);
        assert_eq!(retval, -2);
        assert!(env.is_empty() && !env_cut);
        // The filled slots of the environment, in order; empty ones skipped.
        let mut with_env = record;
        with_env.env[0] = fixed("LD_PRELOAD=/tmp/evil.so");
        with_env.env[2] = fixed("BASH_ENV=/tmp/rc");
        with_env.flags |= exec_flags::ENV_CUT;
        let KernelRecord::Exec { env, env_cut, .. } = decode(&bytes_of(&with_env)).unwrap() else {
            panic!()
        };
        assert_eq!(env, ["LD_PRELOAD=/tmp/evil.so", "BASH_ENV=/tmp/rc"]);
        assert!(env_cut);
        let mut bad = record;
        bad.argc = 17;
        assert_eq!(decode(&bytes_of(&bad)), Err(DecodeError::BadArgc(17)));
    }

    #[test]
    fn connect_destinations() {
        let mut record = ConnectRecord {
            header: header(RecordKind::Connect as u32, 5, 7, 300, 1000, "bash"),
            retval: 0,
            family: family::INET,
            port: 8080,
            fd: 3,
            addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            path: [0; UNIX_PATH_LEN],
            via: 0,
        };
        let dest = |r: &ConnectRecord| match decode(&bytes_of(r)).unwrap() {
            KernelRecord::Connect { destination, .. } => destination,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            dest(&record),
            Destination::Inet("127.0.0.1:8080".parse().unwrap())
        );
        record.family = family::INET6;
        record.addr = std::net::Ipv6Addr::LOCALHOST.octets();
        assert_eq!(dest(&record), Destination::Inet6("[::1]:8080".parse().unwrap()));
        // `--remote 127.0.0.1` must find a connect to ::ffff:127.0.0.1.
        record.addr = "::ffff:127.0.0.1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(
            dest(&record),
            Destination::Inet("127.0.0.1:8080".parse().unwrap())
        );
        record.addr = "2001:db8::ffff:7f00:1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        assert_eq!(
            dest(&record),
            Destination::Inet6("[2001:db8::ffff:7f00:1]:8080".parse().unwrap())
        );
        record.family = family::UNIX;
        record.path = fixed("/run/systemd/journal/socket");
        assert_eq!(
            dest(&record),
            Destination::Unix("/run/systemd/journal/socket".into())
        );
        record.path = [0; UNIX_PATH_LEN];
        record.path[1..5].copy_from_slice(b"nscd");
        assert_eq!(dest(&record), Destination::Unix("@nscd".into()));
        record.family = 17;
        assert_eq!(decode(&bytes_of(&record)), Err(DecodeError::UnknownFamily(17)));
    }

    #[test]
    fn connect_paths() {
        let mut record = ConnectRecord {
            header: header(RecordKind::Connect as u32, 5, 7, 300, 1000, "python3"),
            retval: 0,
            family: family::INET,
            port: 53,
            fd: u32::MAX,
            addr: [10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            path: [0; UNIX_PATH_LEN],
            via: connect_via::SEND,
        };
        let via = |r: &ConnectRecord| match decode(&bytes_of(r)) {
            Ok(KernelRecord::Connect { via, .. }) => Ok(via),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(via(&record), Ok(ConnectVia::Send));
        record.via = connect_via::SYSCALL;
        assert_eq!(via(&record), Ok(ConnectVia::Syscall));
        record.via = connect_via::KERNEL;
        assert_eq!(via(&record), Ok(ConnectVia::Kernel));
        assert_eq!(ConnectVia::Kernel.name(), Some("kernel"));
        record.via = 9;
        assert_eq!(via(&record), Err(DecodeError::UnknownConnectVia(9)));
        assert_eq!(
            (ConnectVia::Syscall.name(), ConnectVia::Send.name()),
            (None, Some("send"))
        );
    }

    #[test]
    fn c_string_stops_at_nul_and_tolerates_bad_utf8() {
        assert_eq!(c_string(b"abc\0def"), "abc");
        assert_eq!(c_string(b"full"), "full");
        assert_eq!(c_string(&[0xff, b'a', 0]), "\u{fffd}a");
    }
}
