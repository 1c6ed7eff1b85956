//! Events and their bodies.

use watchtower_model as model;

use crate::pb;

impl From<pb::Event> for model::Event {
    fn from(m: pb::Event) -> Self {
        Self {
            host_id: m.host_id,
            boot_id: m.boot_id,
            seq: m.seq,
            time_unix_ns: m.time_unix_ns,
            body: m.body.map(Into::into),
        }
    }
}

impl From<model::Event> for pb::Event {
    fn from(d: model::Event) -> Self {
        Self {
            host_id: d.host_id,
            boot_id: d.boot_id,
            seq: d.seq,
            time_unix_ns: d.time_unix_ns,
            body: d.body.map(Into::into),
        }
    }
}

impl From<pb::Process> for model::Process {
    fn from(m: pb::Process) -> Self {
        Self {
            pid: m.pid,
            tid: m.tid,
            ppid: m.ppid,
            uid: m.uid,
            gid: m.gid,
            comm: m.comm,
            euid: m.euid,
            loginuid: m.loginuid,
        }
    }
}

impl From<model::Process> for pb::Process {
    fn from(d: model::Process) -> Self {
        Self {
            pid: d.pid,
            tid: d.tid,
            ppid: d.ppid,
            uid: d.uid,
            gid: d.gid,
            comm: d.comm,
            euid: d.euid,
            loginuid: d.loginuid,
        }
    }
}

impl From<pb::LoginAttempt> for model::LoginAttempt {
    fn from(m: pb::LoginAttempt) -> Self {
        Self {
            service: m.service,
            user: m.user,
            user_known: m.user_known,
            remote_host: m.remote_host,
            tty: m.tty,
            remote_user: m.remote_user,
            outcome: model::Outcome::from(m.outcome),
            failed_step: m.failed_step,
            pam_code: m.pam_code,
            pam_code_name: m.pam_code_name,
            authenticate_code: m.authenticate_code,
            account_code: m.account_code,
            from_session: m.from_session,
            process: m.process.map(Into::into),
        }
    }
}

impl From<model::LoginAttempt> for pb::LoginAttempt {
    fn from(d: model::LoginAttempt) -> Self {
        Self {
            service: d.service,
            user: d.user,
            user_known: d.user_known,
            remote_host: d.remote_host,
            tty: d.tty,
            remote_user: d.remote_user,
            outcome: i32::from(d.outcome),
            failed_step: d.failed_step,
            pam_code: d.pam_code,
            pam_code_name: d.pam_code_name,
            authenticate_code: d.authenticate_code,
            account_code: d.account_code,
            from_session: d.from_session,
            process: d.process.map(Into::into),
        }
    }
}

impl From<pb::SessionStart> for model::SessionStart {
    fn from(m: pb::SessionStart) -> Self {
        Self {
            session: m.session,
            parent_session: m.parent_session,
            service: m.service,
            user: m.user,
            remote_host: m.remote_host,
            tty: m.tty,
            remote_user: m.remote_user,
            loginuid: m.loginuid,
            audit_session_id: m.audit_session_id,
            adopted: m.adopted,
            process: m.process.map(Into::into),
        }
    }
}

impl From<model::SessionStart> for pb::SessionStart {
    fn from(d: model::SessionStart) -> Self {
        Self {
            session: d.session,
            parent_session: d.parent_session,
            service: d.service,
            user: d.user,
            remote_host: d.remote_host,
            tty: d.tty,
            remote_user: d.remote_user,
            loginuid: d.loginuid,
            audit_session_id: d.audit_session_id,
            adopted: d.adopted,
            process: d.process.map(Into::into),
        }
    }
}

impl From<pb::SessionEnd> for model::SessionEnd {
    fn from(m: pb::SessionEnd) -> Self {
        Self {
            session: m.session,
            parent_session: m.parent_session,
            service: m.service,
            user: m.user,
            remote_host: m.remote_host,
            reason: m.reason,
            duration_ns: m.duration_ns,
            execs: m.execs,
            connects: m.connects,
            processes: m.processes,
            process: m.process.map(Into::into),
        }
    }
}

impl From<model::SessionEnd> for pb::SessionEnd {
    fn from(d: model::SessionEnd) -> Self {
        Self {
            session: d.session,
            parent_session: d.parent_session,
            service: d.service,
            user: d.user,
            remote_host: d.remote_host,
            reason: d.reason,
            duration_ns: d.duration_ns,
            execs: d.execs,
            connects: d.connects,
            processes: d.processes,
            process: d.process.map(Into::into),
        }
    }
}

impl From<pb::Exec> for model::Exec {
    fn from(m: pb::Exec) -> Self {
        Self {
            session: m.session,
            session_user: m.session_user,
            filename: m.filename,
            argv: m.argv,
            argv_truncated: m.argv_truncated,
            argv_incomplete: m.argv_incomplete,
            result: m.result,
            error: m.error,
            process: m.process.map(Into::into),
            env: m.env,
            env_cut: m.env_cut,
        }
    }
}

impl From<model::Exec> for pb::Exec {
    fn from(d: model::Exec) -> Self {
        Self {
            session: d.session,
            session_user: d.session_user,
            filename: d.filename,
            argv: d.argv,
            argv_truncated: d.argv_truncated,
            argv_incomplete: d.argv_incomplete,
            result: d.result,
            error: d.error,
            process: d.process.map(Into::into),
            env: d.env,
            env_cut: d.env_cut,
        }
    }
}

impl From<pb::Connect> for model::Connect {
    fn from(m: pb::Connect) -> Self {
        Self {
            session: m.session,
            session_user: m.session_user,
            family: m.family,
            address: m.address,
            port: m.port,
            result: m.result,
            error: m.error,
            fd: m.fd,
            process: m.process.map(Into::into),
            via: m.via,
        }
    }
}

impl From<model::Connect> for pb::Connect {
    fn from(d: model::Connect) -> Self {
        Self {
            session: d.session,
            session_user: d.session_user,
            family: d.family,
            address: d.address,
            port: d.port,
            result: d.result,
            error: d.error,
            fd: d.fd,
            process: d.process.map(Into::into),
            via: d.via,
        }
    }
}

impl From<pb::KernelWitness> for model::KernelWitness {
    fn from(m: pb::KernelWitness) -> Self {
        Self {
            seq: m.seq,
            time_unix_ns: m.time_unix_ns,
            service: m.service,
            user: m.user,
            outcome: model::Outcome::from(m.outcome),
            remote_host: m.remote_host,
            pid: m.pid,
            ppid: m.ppid,
            from_session: m.from_session,
        }
    }
}

impl From<model::KernelWitness> for pb::KernelWitness {
    fn from(d: model::KernelWitness) -> Self {
        Self {
            seq: d.seq,
            time_unix_ns: d.time_unix_ns,
            service: d.service,
            user: d.user,
            outcome: i32::from(d.outcome),
            remote_host: d.remote_host,
            pid: d.pid,
            ppid: d.ppid,
            from_session: d.from_session,
        }
    }
}

impl From<pb::JournalWitness> for model::JournalWitness {
    fn from(m: pb::JournalWitness) -> Self {
        Self {
            program: m.program,
            outcome: model::Outcome::from(m.outcome),
            attempts: m.attempts,
            user: m.user,
            invalid_user: m.invalid_user,
            method: m.method,
            key_type: m.key_type,
            key_fingerprint: m.key_fingerprint,
            key_certificate: m.key_certificate,
            remote_address: m.remote_address,
            remote_port: m.remote_port,
            local_port: m.local_port,
            tty: m.tty,
            by_user: m.by_user,
            sudo_user: m.sudo_user,
            sudo_decision: m.sudo_decision,
            sudo_pwd: m.sudo_pwd,
            sudo_target_user: m.sudo_target_user,
            sudo_command: m.sudo_command,
            kernel_expected: m.kernel_expected,
            time_us: m.time_us,
            cursor: m.cursor,
            writer_pid: m.writer_pid,
            writer_uid: m.writer_uid,
            writer_comm: m.writer_comm,
            writer_exe: m.writer_exe,
            writer_identifier: m.writer_identifier,
            identity_mismatch: m.identity_mismatch,
            lines: m.lines,
        }
    }
}

impl From<model::JournalWitness> for pb::JournalWitness {
    fn from(d: model::JournalWitness) -> Self {
        Self {
            program: d.program,
            outcome: i32::from(d.outcome),
            attempts: d.attempts,
            user: d.user,
            invalid_user: d.invalid_user,
            method: d.method,
            key_type: d.key_type,
            key_fingerprint: d.key_fingerprint,
            key_certificate: d.key_certificate,
            remote_address: d.remote_address,
            remote_port: d.remote_port,
            local_port: d.local_port,
            tty: d.tty,
            by_user: d.by_user,
            sudo_user: d.sudo_user,
            sudo_decision: d.sudo_decision,
            sudo_pwd: d.sudo_pwd,
            sudo_target_user: d.sudo_target_user,
            sudo_command: d.sudo_command,
            kernel_expected: d.kernel_expected,
            time_us: d.time_us,
            cursor: d.cursor,
            writer_pid: d.writer_pid,
            writer_uid: d.writer_uid,
            writer_comm: d.writer_comm,
            writer_exe: d.writer_exe,
            writer_identifier: d.writer_identifier,
            identity_mismatch: d.identity_mismatch,
            lines: d.lines,
        }
    }
}

impl From<pb::LoginVerdict> for model::LoginVerdict {
    fn from(m: pb::LoginVerdict) -> Self {
        Self {
            verdict: model::Verdict::from(m.verdict),
            reason: m.reason,
            program: m.program,
            user: m.user,
            outcome: model::Outcome::from(m.outcome),
            attempts: m.attempts,
            login_time_unix_ns: m.login_time_unix_ns,
            auth_method: m.auth_method,
            key_fingerprint: m.key_fingerprint,
            remote_address: m.remote_address,
            remote_port: m.remote_port,
            command: m.command,
            user_mismatch: m.user_mismatch,
            kernel: m.kernel.map(Into::into),
            journal: m.journal.map(Into::into),
        }
    }
}

impl From<model::LoginVerdict> for pb::LoginVerdict {
    fn from(d: model::LoginVerdict) -> Self {
        Self {
            verdict: i32::from(d.verdict),
            reason: d.reason,
            program: d.program,
            user: d.user,
            outcome: i32::from(d.outcome),
            attempts: d.attempts,
            login_time_unix_ns: d.login_time_unix_ns,
            auth_method: d.auth_method,
            key_fingerprint: d.key_fingerprint,
            remote_address: d.remote_address,
            remote_port: d.remote_port,
            command: d.command,
            user_mismatch: d.user_mismatch,
            kernel: d.kernel.map(Into::into),
            journal: d.journal.map(Into::into),
        }
    }
}
