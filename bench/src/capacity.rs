//! What one host sends, the inputs of the fleet's capacity model (README, "Past
//! one server"): with the real agent, journald, sshd and server, the events a
//! host stores while nobody is logged in and the events of one ssh login, in
//! each capture scope. An indexer's measured rate (the fleet part) divided by
//! these gives hosts per indexer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use watchtower_e2e::central::HOST;
use watchtower_e2e::{ALICE, ALICE_PASSWORD, TempDir};
use watchtower_proto::pb::EventFilter;

use crate::rig::Rig;

/// What the host sent in one capture scope.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ScopeRates {
    /// `sessions` (the default) or `all`.
    pub scope: String,
    /// Events stored per second while nobody was logged in, by kind.
    pub idle_per_s: BTreeMap<String, f64>,
    pub idle_secs: f64,
    /// Events stored per ssh login (less the idle rate over the logins' time), by kind.
    pub per_login: BTreeMap<String, f64>,
    pub logins: u64,
    /// The command each login ran.
    pub command: String,
    /// The mean encoded size of the events counted (what a JetStream message
    /// and the stream's `max_bytes` hold of them).
    pub mean_event_bytes: f64,
}

impl ScopeRates {
    #[must_use]
    pub fn idle_total(&self) -> f64 {
        self.idle_per_s.values().sum()
    }

    #[must_use]
    pub fn login_total(&self) -> f64 {
        self.per_login.values().sum()
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    pub scopes: Vec<ScopeRates>,
}

/// A login as an operator makes one: a shell that looks around and leaves.
const COMMAND: &str = "uptime; id; ls /etc > /dev/null; ps -e > /dev/null; cat /etc/os-release > /dev/null";

/// Events of `HOST` whose time is in [from, to), counted by kind, once the
/// agent has delivered them (the count stopped moving); and their encoded bytes.
fn stored_by_kind(rig: &mut Rig, from: u64, to: u64) -> (BTreeMap<String, u64>, u64) {
    use prost::Message as _;
    let count = |rig: &mut Rig| {
        let events = rig.events(&EventFilter {
            host_id: HOST.into(),
            from_unix_ns: from,
            to_unix_ns: to,
            ..EventFilter::default()
        });
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut bytes = 0u64;
        for event in events {
            bytes += event.encoded_len() as u64;
            let event = watchtower_model::Event::from(event);
            *by_kind.entry(event.kind().name().to_owned()).or_default() += 1;
        }
        (by_kind, bytes)
    };
    // Health records come every few seconds and journal verdicts after their
    // window: wait until two reads a few seconds apart agree.
    let mut last = count(rig);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let now = count(rig);
        if now.0 == last.0 || start.elapsed() > Duration::from_mins(1) {
            return now;
        }
        last = now;
    }
}

fn per(counts: &BTreeMap<String, u64>, divisor: f64) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(kind, n)| (kind.clone(), *n as f64 / divisor))
        .collect()
}

/// Measure each scope: `idle` with nobody logged in, then `logins` ssh logins
/// of `wt_alice` one after another.
pub fn run(rig: &mut Rig, logins: u64, idle: Duration) -> anyhow::Result<Capacity> {
    let mut scopes = Vec::new();
    // One state for both agents: their sequence numbers go on, so the server
    // does not take the second one's events for resends of the first one's.
    let state = TempDir::new("bench-capacity-state");
    for (scope, extra) in [("sessions", &[][..]), ("all", &["--scope", "all"][..])] {
        let agent = rig.agent_to(&rig.server_address(), &state.0, extra)?;
        // Let the start-up records (Hello, the first health record) pass.
        std::thread::sleep(Duration::from_secs(3));
        let from = watchtower_server::now_unix_ns();
        std::thread::sleep(idle);
        let to = watchtower_server::now_unix_ns();
        let (idle_counts, idle_bytes) = stored_by_kind(rig, from, to);
        let idle_secs = (to - from) as f64 / 1e9;
        let idle_per_s = per(&idle_counts, idle_secs);

        let from = watchtower_server::now_unix_ns();
        for n in 0..logins {
            let (code, output) = rig.ssh(ALICE, ALICE_PASSWORD, COMMAND);
            if code != 0 {
                bail!("login {n} over ssh failed ({code}): {output}");
            }
        }
        // The journal witness decides a login after its window: wait it out.
        std::thread::sleep(Duration::from_secs(5));
        let to = watchtower_server::now_unix_ns();
        let secs = (to - from) as f64 / 1e9;
        let (login_counts, login_bytes) = stored_by_kind(rig, from, to);
        let counted: u64 = idle_counts.values().chain(login_counts.values()).sum();
        let per_login = login_counts
            .iter()
            .map(|(kind, n)| {
                let background = idle_per_s.get(kind).copied().unwrap_or(0.0) * secs;
                (kind.clone(), ((*n as f64 - background) / logins as f64).max(0.0))
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        agent.terminate()?;
        scopes.push(ScopeRates {
            scope: scope.to_owned(),
            idle_per_s,
            idle_secs,
            per_login,
            logins,
            command: COMMAND.to_owned(),
            mean_event_bytes: (idle_bytes + login_bytes) as f64 / counted.max(1) as f64,
        });
    }
    Ok(Capacity { scopes })
}
