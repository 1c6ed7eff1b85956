//! Synthetic events shaped like the agent's: execs inside a login session, with
//! the argv, process and session fields real ones carry (about 150 bytes encoded).

use watchtower_model::{Body as EventBody, Event, Exec, Process};

/// `n` exec events of `host`, numbered from `first_seq`, `step_ns` apart from `t0`.
#[must_use]
pub fn execs(host: &str, boot_id: &str, first_seq: u64, n: usize, t0: u64, step_ns: u64) -> Vec<Event> {
    (0..n as u64)
        .map(|i| exec(host, boot_id, first_seq + i, t0 + i * step_ns))
        .collect()
}

/// One exec event; its fields vary with `seq` so no two records are alike.
#[must_use]
pub fn exec(host: &str, boot_id: &str, seq: u64, time_unix_ns: u64) -> Event {
    const PROGRAMS: [&str; 6] = [
        "/usr/bin/ls",
        "/usr/bin/cat",
        "/usr/bin/grep",
        "/usr/bin/systemctl",
        "/usr/bin/ps",
        "/usr/bin/id",
    ];
    let program = PROGRAMS[(seq % PROGRAMS.len() as u64) as usize];
    let pid = 10_000 + (seq % 50_000) as u32;
    Event {
        host_id: host.to_owned(),
        boot_id: boot_id.to_owned(),
        seq,
        time_unix_ns,
        body: Some(EventBody::Exec(Exec {
            session: Some(0x5eed_0000_0000_0000 | (seq / 100)),
            session_user: Some(format!("user{}", seq % 37)),
            filename: program.to_owned(),
            argv: vec![
                program.rsplit('/').next().unwrap_or(program).to_owned(),
                "--color=never".to_owned(),
                "-l".to_owned(),
                format!(
                    "/var/lib/app/data/shard-{:03}/segment-{}.log",
                    seq % 64,
                    seq % 1000
                ),
            ],
            argv_truncated: false,
            argv_incomplete: false,
            env: Vec::new(),
            env_cut: false,
            result: 0,
            error: None,
            process: Some(Process {
                pid,
                tid: pid,
                ppid: pid - 1,
                uid: 1000 + (seq % 37) as u32,
                gid: 1000,
                comm: "bash".to_owned(),
                euid: None,
                loginuid: None,
            }),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_timed_and_about_150_bytes() {
        let events = execs("h", "boot", 5, 3, 1_000, 10);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(events[2].time_unix_ns, 1_020);
        let size = prost::Message::encoded_len(&watchtower_proto::pb::Event::from(events[0].clone()));
        assert!((120..300).contains(&size), "{size} bytes");
    }
}
