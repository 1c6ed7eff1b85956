//! A real NATS JetStream cluster on loopback ports for the fleet tests: three
//! `nats-server` nodes with mutual TLS on client and route connections, and
//! users mapped from the client certificate's DNS name, so that only front
//! doors publish and only indexers consume.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use watchtower_pki::{Authority, Validity};

use watchtower_proto::pb::event::Body;
use watchtower_proto::pb::{Event, Exec};

use crate::central::{Pki, Reader, Server};
use crate::{PATIENCE, TempDir, free_port, kill};

/// The stream name the servers use by default, and its subjects' prefix.
pub const STREAM: &str = "WATCHTOWER";

/// The nats-server binary: `cargo xtask setup` installs NATS's release build
/// into `/var/tmp/watchtower-nats` (`WATCHTOWER_NATS_DIR`); one on the PATH's
/// usual places otherwise (the servers refuse a version that loses messages).
#[must_use]
pub fn nats_server_binary() -> Option<PathBuf> {
    let dir = std::env::var("WATCHTOWER_NATS_DIR").unwrap_or_else(|_| "/var/tmp/watchtower-nats".to_owned());
    [
        format!("{dir}/bin/nats-server"),
        "/usr/local/bin/nats-server".to_owned(),
        "/usr/bin/nats-server".to_owned(),
        "/usr/sbin/nats-server".to_owned(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Whether the fleet tests can run: nats-server is installed. Under CI its
/// absence fails the test; elsewhere the test skips, loudly.
#[must_use]
pub fn nats_available() -> bool {
    if nats_server_binary().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nats-server is missing: `cargo xtask setup` installs it"
    );
    eprintln!("\n*** SKIPPED: fleet test needs nats-server (`cargo xtask setup` installs it) ***\n");
    false
}

/// Add the fleet's certificates to `pki`: `nats-node` (every NATS node),
/// `front-door` and `indexer` (NATS users by their DNS name), `nats-stranger`
/// (a valid certificate of the CA that maps to no user), and agent
/// certificates for `hosts`.
pub fn add_certificates(pki: &Pki, hosts: &[&str]) {
    let ca = Authority::load(
        &String::from_utf8(pki.read("ca.pem")).unwrap(),
        &String::from_utf8(pki.read("ca.key")).unwrap(),
    )
    .expect("the test CA");
    let write = |name: &str, cert: &str, key: &str| {
        watchtower_pki::write_file(&pki.path(&format!("{name}.pem")), cert, false).unwrap();
        watchtower_pki::write_file(&pki.path(&format!("{name}.key")), key, true).unwrap();
    };
    for (name, names) in [
        ("nats-node", vec!["localhost", "127.0.0.1"]),
        ("front-door", vec!["front-door"]),
        ("indexer", vec!["indexer"]),
        ("nats-stranger", vec!["stranger"]),
    ] {
        let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        let issued = ca.issue_node(&names, Validity::days(2)).expect("node cert");
        write(name, &issued.cert_pem, &issued.key_pem);
    }
    for host in hosts {
        let issued = ca
            .issue_client(&watchtower_pki::Identity::agent(host).unwrap(), Validity::days(2))
            .expect("agent cert");
        write(host, &issued.cert_pem, &issued.key_pem);
    }
}

/// One node of the cluster.
pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl NatsNode {
    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(nats_server_binary().expect("nats-server"))
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Start again with the same ports and store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9");
        self.spawn();
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.client_port)
    }

    /// What the node logged.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The monitoring endpoint `path` (`/jsz`, `/healthz`), as text.
    #[must_use]
    pub fn monitor(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3"])
            .arg(format!("http://127.0.0.1:{}{path}", self.monitor_port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A three-node JetStream cluster.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    _dir: TempDir,
}

/// Who may do what: front doors publish to the stream's subjects (and read the
/// stream's info, or create it); indexers read the stream, open and pull from
/// their consumers and acknowledge; nobody else has a user.
fn authorization(stream: &str) -> String {
    let subjects = stream.to_ascii_lowercase();
    format!(
        r#"authorization {{
  users = [
    {{ user: "front-door", permissions: {{
        publish: {{ allow: ["{subjects}.*", "$JS.API.INFO", "$JS.API.STREAM.INFO.{stream}", "$JS.API.STREAM.CREATE.{stream}"] }},
        subscribe: {{ allow: ["_INBOX.>"] }} }} }},
    {{ user: "indexer", permissions: {{
        publish: {{ allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.{stream}", "$JS.API.STREAM.CREATE.{stream}",
                            "$JS.API.CONSUMER.*.{stream}.>", "$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
                            "$JS.ACK.{stream}.>"] }},
        subscribe: {{ allow: ["_INBOX.>"] }} }} }}
  ]
}}"#
    )
}

impl NatsCluster {
    /// Start three nodes with certificates from `pki` (see [`add_certificates`])
    /// and wait until JetStream has elected its meta leader.
    #[must_use]
    pub fn start(pki: &Pki) -> NatsCluster {
        let dir = TempDir::new("nats");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| {
                (
                    free_port("127.0.0.1"),
                    free_port("127.0.0.1"),
                    free_port("127.0.0.1"),
                )
            })
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster, _)| format!("\"nats-route://127.0.0.1:{cluster}\""))
            .collect();
        let tls = |verify: &str| {
            format!(
                "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", {verify}: true, timeout: 5 }}",
                pki.path("nats-node.pem").display(),
                pki.path("nats-node.key").display(),
                pki.path("ca.pem").display(),
            )
        };
        let mut nodes = Vec::new();
        for (n, (client, cluster, monitor)) in ports.iter().enumerate() {
            let name = format!("n{}", n + 1);
            let store = dir.0.join(&name);
            std::fs::create_dir_all(&store).unwrap();
            let config = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: \"{}\", max_file_store: 1G, max_memory_store: 64M }}\n\
                 {}\n\
                 cluster {{ name: watchtower-e2e, listen: 127.0.0.1:{cluster}, routes: [{}], {} }}\n{}\n",
                store.display(),
                tls("verify_and_map"),
                routes.join(", "),
                tls("verify"),
                authorization(STREAM),
            );
            let path = dir.0.join(format!("{name}.conf"));
            std::fs::write(&path, config).unwrap();
            let mut node = NatsNode {
                name,
                client_port: *client,
                monitor_port: *monitor,
                config: path,
                child: None,
                log: dir.0.join(format!("n{}.log", n + 1)),
            };
            node.spawn();
            nodes.push(node);
        }
        let cluster = NatsCluster { nodes, _dir: dir };
        cluster.wait_for_leader();
        cluster
    }

    /// Wait until a node reports JetStream's meta leader with both other nodes
    /// current (streams of 3 replicas can be placed).
    pub fn wait_for_leader(&self) {
        let start = Instant::now();
        loop {
            let led = self.nodes.iter().any(|node| {
                let jsz = node.monitor("/jsz");
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&jsz) else {
                    return false;
                };
                let meta = &v["meta_cluster"];
                let current = meta["replicas"]
                    .as_array()
                    .map_or(0, |r| r.iter().filter(|p| p["current"] == true).count());
                meta["leader"].as_str().is_some_and(|l| !l.is_empty()) && current + 1 >= self.nodes.len()
            });
            if led {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE * 2,
                "no JetStream meta leader:\n{}",
                self.nodes
                    .iter()
                    .map(NatsNode::log)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server flags to join the cluster as `user` (`front-door`, `indexer`).
    #[must_use]
    pub fn server_args(&self, pki: &Pki, user: &str) -> Vec<String> {
        let mut args = Vec::new();
        for node in &self.nodes {
            args.push("--nats-url".to_owned());
            args.push(node.url());
        }
        for (flag, file) in [
            ("--nats-ca", "ca.pem".to_owned()),
            ("--nats-cert", format!("{user}.pem")),
            ("--nats-key", format!("{user}.key")),
        ] {
            args.push(flag.to_owned());
            args.push(pki.path(&file).display().to_string());
        }
        args
    }
}

/// Send one batch as `host` (Hello first) on a new ingest stream to `address`,
/// as an agent does after a reconnect; its Ack, or the error an agent would see
/// (a front door gone, the stream not confirming).
pub fn try_ingest_batch(
    pki: &Pki,
    address: &str,
    host: &str,
    boot: &str,
    batch_id: u64,
    events: Vec<watchtower_proto::pb::Event>,
) -> Result<watchtower_proto::pb::Ack, String> {
    use watchtower_proto::pb::{ServerMessage, ingest_client::IngestClient, server_message};
    crate::central::runtime().block_on(async {
        let agent = crate::central::channel(address, pki.client_tls(Some(host)))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let messages = vec![
            crate::central::hello(host, boot),
            crate::central::batch(batch_id, events),
        ];
        let mut answers = IngestClient::new(agent)
            .stream(tokio_stream::iter(messages))
            .await
            .map_err(|e| format!("open: {e}"))?
            .into_inner();
        while let Some(ServerMessage { msg }) = answers.message().await.map_err(|e| format!("stream: {e}"))? {
            if let Some(server_message::Msg::Ack(ack)) = msg {
                return Ok(ack);
            }
        }
        Err("the stream ended without an Ack".to_owned())
    })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Exec events of `host` numbered `seqs` (one boot), as an agent would batch them.
#[must_use]
pub fn execs(host: &str, boot: &str, seqs: std::ops::Range<u64>) -> Vec<Event> {
    let now = now_ns();
    seqs.map(|seq| Event {
        host_id: host.into(),
        boot_id: boot.into(),
        seq,
        time_unix_ns: now + seq,
        body: Some(Body::Exec(Exec {
            filename: format!("/usr/bin/step-{seq}"),
            ..Exec::default()
        })),
    })
    .collect()
}

/// Exec events of ~12 KiB each (six long arguments): a batch of them is cut
/// into several JetStream messages.
#[must_use]
pub fn large_execs(host: &str, boot: &str, seqs: std::ops::Range<u64>) -> Vec<Event> {
    let mut events = execs(host, boot, seqs);
    for event in &mut events {
        if let Some(Body::Exec(exec)) = &mut event.body {
            exec.argv = (0..6).map(|n| format!("{n}{}", "x".repeat(2000))).collect();
        }
    }
    events
}

/// The flags of a fleet server of `role` (two shards, replicas 3) on the cluster
/// `cluster_args` names; an indexer (`shard`) signs its log with a key of its own
/// ([`shard_key`]).
#[must_use]
pub fn server_args(cluster_args: &[String], role: &str, shard: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--fleet-role",
        role,
        "--shards",
        "2",
        "--fleet-replicas",
        "3",
        // Within each node's 1 GiB file store.
        "--fleet-max-bytes",
        "268435456",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(shard) = shard {
        // Each shard's log is signed with its own key.
        let key = std::env::temp_dir().join(format!("wt-fleet-{}-shard-{shard}.key", std::process::id()));
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        args.extend([
            "--shard".to_owned(),
            shard.to_owned(),
            "--signing-key".to_owned(),
            key.display().to_string(),
        ]);
    }
    args.extend(cluster_args.iter().cloned());
    args
}

/// A server with `args` on loopback.
#[must_use]
pub fn start(pki: &Pki, args: &[String]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(pki, "127.0.0.1", &args)
}

/// The verifier key of shard `shard`'s log, as its indexer wrote it.
#[must_use]
pub fn shard_key(shard: usize) -> String {
    std::env::temp_dir()
        .join(format!("wt-fleet-{}-shard-{shard}.pub", std::process::id()))
        .display()
        .to_string()
}

/// The seqs of every event of `hosts` in the indexers' stores, by host and shard.
#[must_use]
pub fn stored(readers: &mut [Reader], hosts: &[&str]) -> BTreeMap<String, Vec<(usize, Vec<u64>)>> {
    let mut found: BTreeMap<String, Vec<(usize, Vec<u64>)>> = BTreeMap::new();
    for host in hosts {
        for (shard, reader) in readers.iter_mut().enumerate() {
            let seqs: Vec<u64> = reader.host_events(host).iter().map(|e| e.seq).collect();
            if !seqs.is_empty() {
                found.entry((*host).to_owned()).or_default().push((shard, seqs));
            }
        }
    }
    found
}

/// Every event of `host` in the shards, waiting until there are `want`.
#[must_use]
pub fn stored_of(readers: &mut [Reader], host: &str, want: u64) -> Vec<(usize, Vec<u64>)> {
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let found = stored(readers, &[host]).remove(host).unwrap_or_default();
        let count: u64 = found.iter().map(|(_, s)| s.len() as u64).sum();
        if count >= want || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A 4 MiB stream: the fleet flags with a smaller `--fleet-max-bytes`.
#[must_use]
pub fn small_stream(args: Vec<String>) -> Vec<String> {
    args.into_iter()
        .map(|a| if a == "268435456" { "4194304".to_owned() } else { a })
        .collect()
}

/// Every event `agent` made is stored once in one of the shards of `readers`
/// (waiting up to two minutes), and it quarantined none. Stops the agent.
pub fn every_event_of_the_agent_lands(agent: crate::Agent, readers: &mut [Reader]) {
    use crate::central::HOST;
    let made: Vec<u64> = agent
        .events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_mins(2);
    let stored = loop {
        let mut stored: Vec<u64> = readers
            .iter_mut()
            .flat_map(|r| r.host_events(HOST))
            .map(|e| e.seq)
            .collect();
        stored.sort_unstable();
        if made.iter().all(|seq| stored.binary_search(seq).is_ok()) || Instant::now() > deadline {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique, stored, "no event stored twice");
    let missing: Vec<&u64> = made.iter().filter(|s| stored.binary_search(s).is_err()).collect();
    assert!(
        missing.is_empty(),
        "events the agent made and never stored: {missing:?}"
    );
    let stderr = agent.stderr();
    let _ = agent.stop();
    assert!(
        !stderr.contains(": quarantined"),
        "nothing quarantined:\n{stderr}"
    );
}
