//! tracefs: mounting it when missing, and reading tracepoint field offsets from
//! the `format` files (they differ between kernels).

use std::path::{Path, PathBuf};

use thiserror::Error;
use watchtower_common::TracepointOffsets;

pub const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it at {TRACEFS} failed: {0} \
         (mount it with `mount -t tracefs tracefs {TRACEFS}`, or run the agent as root)"
    )]
    Mount(std::io::Error),
    #[error("cannot read tracepoint format {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("tracepoint {tracepoint} has no field `{field}` (kernel format changed?)")]
    MissingField { tracepoint: String, field: String },
}

/// The tracefs root, mounting tracefs at [`TRACEFS`] if no tracefs is mounted.
/// Returns the root and whether this call mounted it.
pub fn ensure_mounted() -> Result<(PathBuf, bool), TracefsError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(root).join("events").is_dir() {
            return Ok((PathBuf::from(root), false));
        }
    }
    crate::mounts::mount("tracefs", Path::new(TRACEFS)).map_err(TracefsError::Mount)?;
    Ok((PathBuf::from(TRACEFS), true))
}

/// Offset of `field` in a tracepoint `format` file's text.
#[must_use]
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        // The name is the last word of the declaration, without an array suffix.
        let name = decl.split_whitespace().last()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let offset = rest
            .split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

fn read_format(root: &Path, group: &str, name: &str) -> Result<String, TracefsError> {
    let path = root.join("events").join(group).join(name).join("format");
    std::fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })
}

fn required(root: &Path, group: &str, name: &str, field: &str) -> Result<u32, TracefsError> {
    let format = read_format(root, group, name)?;
    field_offset(&format, field).ok_or_else(|| TracefsError::MissingField {
        tracepoint: format!("{group}/{name}"),
        field: field.to_string(),
    })
}

/// Every offset the programs need, from this kernel's format files.
pub fn tracepoint_offsets(root: &Path) -> Result<TracepointOffsets, TracefsError> {
    let exit_format = read_format(root, "sched", "sched_process_exit")?;
    let exec_format = read_format(root, "sched", "sched_process_exec").ok();
    Ok(TracepointOffsets {
        execve_filename: required(root, "syscalls", "sys_enter_execve", "filename")?,
        execve_argv: required(root, "syscalls", "sys_enter_execve", "argv")?,
        execveat_filename: required(root, "syscalls", "sys_enter_execveat", "filename")?,
        execveat_argv: required(root, "syscalls", "sys_enter_execveat", "argv")?,
        connect_fd: required(root, "syscalls", "sys_enter_connect", "fd")?,
        connect_uservaddr: required(root, "syscalls", "sys_enter_connect", "uservaddr")?,
        connect_addrlen: required(root, "syscalls", "sys_enter_connect", "addrlen")?,
        sendto_addr: required(root, "syscalls", "sys_enter_sendto", "addr")?,
        sendmsg_msg: required(root, "syscalls", "sys_enter_sendmsg", "msg")?,
        sys_exit_ret: {
            let execve = required(root, "syscalls", "sys_exit_execve", "ret")?;
            let connect = required(root, "syscalls", "sys_exit_connect", "ret")?;
            let execveat = required(root, "syscalls", "sys_exit_execveat", "ret")?;
            if execve != connect || execve != execveat {
                return Err(TracefsError::MissingField {
                    tracepoint: "syscalls/sys_exit_* (ret at different offsets)".into(),
                    field: "ret".into(),
                });
            }
            execve
        },
        fork_child_pid: required(root, "sched", "sched_process_fork", "child_pid")?,
        exit_group_dead: field_offset(&exit_format, "group_dead").unwrap_or(0),
        exec_old_pid: exec_format
            .as_deref()
            .and_then(|format| field_offset(format, "old_pid"))
            .unwrap_or(0),
        exec_filename: exec_format
            .as_deref()
            .and_then(|format| field_offset(format, "filename"))
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sched_process_fork` as printed by kernel 6.18 (`__data_loc` comms).
    const FORK_6_18: &str = "name: sched_process_fork
ID: 318
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;
";

    /// The same tracepoint on 5.x/6.1 kernels (inline comm arrays).
    const FORK_6_1: &str = "format:
\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;
";

    const EXIT_6_18: &str = "format:
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;
";

    const EXECVE: &str = "format:
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;
\tfield:const char *const * envp;\toffset:32;\tsize:8;\tsigned:0;
";

    #[test]
    fn offsets_from_real_formats() {
        assert_eq!(field_offset(FORK_6_18, "child_pid"), Some(20));
        assert_eq!(field_offset(FORK_6_1, "child_pid"), Some(44));
        assert_eq!(field_offset(FORK_6_1, "child_comm"), Some(28));
        assert_eq!(field_offset(EXIT_6_18, "group_dead"), Some(32));
        assert_eq!(field_offset(FORK_6_1, "group_dead"), None);
        assert_eq!(field_offset(EXECVE, "filename"), Some(16));
        assert_eq!(field_offset(EXECVE, "argv"), Some(24));
        assert_eq!(field_offset(EXECVE, "envp"), Some(32));
        assert_eq!(field_offset(EXECVE, "common_pid"), None);
    }

    #[test]
    fn this_kernel_has_every_field_when_tracefs_is_readable() {
        let root = Path::new(TRACEFS);
        if !root.join("events/syscalls").is_dir() {
            eprintln!("SKIP: {TRACEFS} not mounted or not readable here; covered by the privileged tests");
            return;
        }
        let offsets = tracepoint_offsets(root).expect("offsets");
        assert_eq!(offsets.execve_filename, 16);
        assert_eq!(offsets.sys_exit_ret, 16);
        assert_ne!(offsets.fork_child_pid, 0);
        assert_eq!(offsets.exec_old_pid, 16);
        assert_eq!(offsets.exec_filename, 8);
    }
}
