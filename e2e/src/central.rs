//! The central side of the harness: certificates, the real watchtower-server
//! binary on its own `RocksDB` directory, and a gRPC reader with its certificate.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use watchtower_pki::ClientTls;
use watchtower_pki::{Authority, Validity};
use watchtower_proto::pb::ingest_client::IngestClient;
use watchtower_proto::pb::query_client::QueryClient;
use watchtower_proto::pb::{
    Ack, AgentMessage, Event, EventBatch, EventFilter, GetSessionRequest, GetSessionResponse, Hello,
    HostInfo, ListHostsRequest, QueryEventsRequest, ServerMessage, StatsRequest, StatsResponse,
    agent_message, server_message,
};

use crate::{PATIENCE, TempDir, free_port, kill, wait_with_deadline};

/// The host id the harness's agent runs as (its certificate names it).
pub const HOST: &str = "e2e-host";
/// Another host with a certificate of its own.
pub const OTHER_HOST: &str = "other-host";
/// The test network namespace's addresses (see [`NetNs`]).
pub const NETNS_HOST_ADDR: &str = "10.201.0.1";
pub const NETNS_INNER_ADDR: &str = "10.201.0.2";

/// Certificates for one test: a CA, the server, agents for [`HOST`] and
/// [`OTHER_HOST`], a reader, and the bad ones (another CA's agent, an expired agent).
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    #[must_use]
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let write = |name: &str, text: &str| {
            watchtower_pki::write_file(
                &dir.0.join(name),
                text,
                std::path::Path::new(name).extension().is_some_and(|e| e == "key"),
            )
            .unwrap_or_else(|e| panic!("writing {name}: {e}"));
        };
        let ca = Authority::generate("watchtower e2e CA", Validity::days(2)).expect("CA");
        write("ca.pem", &ca.cert_pem());
        write("ca.key", &ca.key_pem());
        let server = ca
            .issue_server(
                &[
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    NETNS_HOST_ADDR.to_owned(),
                ],
                Validity::days(2),
            )
            .expect("server cert");
        write("server.pem", &server.cert_pem);
        write("server.key", &server.key_pem);
        for host in [HOST, OTHER_HOST] {
            let issued = ca
                .issue_client(&watchtower_pki::Identity::agent(host).unwrap(), Validity::days(2))
                .expect("agent cert");
            write(&format!("{host}.pem"), &issued.cert_pem);
            write(&format!("{host}.key"), &issued.key_pem);
        }
        let reader = ca
            .issue_client(
                &watchtower_pki::Identity::reader("auditor").unwrap(),
                Validity::days(2),
            )
            .expect("reader cert");
        write("reader.pem", &reader.cert_pem);
        write("reader.key", &reader.key_pem);
        let expired = ca
            .issue_client(
                &watchtower_pki::Identity::agent(HOST).unwrap(),
                Validity::expired(),
            )
            .expect("expired cert");
        write("expired.pem", &expired.cert_pem);
        write("expired.key", &expired.key_pem);
        let rogue_ca = Authority::generate("watchtower e2e CA", Validity::days(2)).expect("CA");
        let rogue = rogue_ca
            .issue_client(&watchtower_pki::Identity::agent(HOST).unwrap(), Validity::days(2))
            .expect("rogue cert");
        write("rogue.pem", &rogue.cert_pem);
        write("rogue.key", &rogue.key_pem);
        Pki { dir }
    }

    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Read a file of the bundle.
    #[must_use]
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// The agent flags to ship to `server` as [`HOST`].
    #[must_use]
    pub fn agent_args(&self, server: &str) -> Vec<String> {
        vec![
            "--server".into(),
            server.into(),
            "--ca".into(),
            self.path("ca.pem").display().to_string(),
            "--cert".into(),
            self.path(&format!("{HOST}.pem")).display().to_string(),
            "--key".into(),
            self.path(&format!("{HOST}.key")).display().to_string(),
        ]
    }

    /// watchtowerctl's connection flags for `server` with the `client` certificate.
    #[must_use]
    pub fn ctl_args(&self, server: &Server, client: &str) -> Vec<String> {
        let file = |name: String| self.dir.0.join(name).display().to_string();
        vec![
            "--server".into(),
            server.address(),
            "--server-name".into(),
            "localhost".into(),
            "--ca".into(),
            file("ca.pem".into()),
            "--cert".into(),
            file(format!("{client}.pem")),
            "--key".into(),
            file(format!("{client}.key")),
        ]
    }

    /// The mutual-TLS client presenting the certificate `name`.pem/.key (None: no
    /// certificate at all).
    #[must_use]
    pub fn client_tls(&self, name: Option<&str>) -> ClientTls {
        match name {
            Some(name) => ClientTls::from_pem(
                self.read("ca.pem"),
                self.read(&format!("{name}.pem")),
                self.read(&format!("{name}.key")),
                "localhost",
            ),
            None => ClientTls::without_identity(self.read("ca.pem"), "localhost"),
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// The watchtowerctl binary the tests run.
#[must_use]
pub fn ctl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WATCHTOWERCTL_BIN") {
        return PathBuf::from(path);
    }
    crate::agent_binary().with_file_name("watchtowerctl")
}

#[must_use]
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WATCHTOWER_SERVER_BIN") {
        return PathBuf::from(path);
    }
    crate::agent_binary().with_file_name("watchtower-server")
}

/// The real watchtower-server on its own data directory; killed on drop.
pub struct Server {
    child: Option<Child>,
    pub listen: SocketAddr,
    /// The exporter's HTTP address (always on loopback, a free port).
    pub exporter: SocketAddr,
    pub data: Arc<TempDir>,
    extra: Vec<String>,
    pki_dir: PathBuf,
    binary: PathBuf,
    /// The open-file limit the server starts under (soft and hard), if set.
    open_files: Option<u64>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Start a server on `ip` (a free port) with a fresh data directory.
    #[must_use]
    pub fn start(pki: &Pki, ip: &str, extra: &[&str]) -> Server {
        Server::start_binary(&server_binary(), pki, ip, extra)
    }

    /// [`Server::start`] with another build of the server (e.g. the installed one).
    #[must_use]
    pub fn start_binary(binary: &std::path::Path, pki: &Pki, ip: &str, extra: &[&str]) -> Server {
        Server::start_as(binary, None, pki, ip, extra)
    }

    /// [`Server::start`] under an open-file limit of `open_files` (soft and hard),
    /// as a small machine might set it.
    #[must_use]
    pub fn start_with_open_files(open_files: u64, pki: &Pki, ip: &str, extra: &[&str]) -> Server {
        Server::start_as(&server_binary(), Some(open_files), pki, ip, extra)
    }

    fn start_as(
        binary: &std::path::Path,
        open_files: Option<u64>,
        pki: &Pki,
        ip: &str,
        extra: &[&str],
    ) -> Server {
        let listen: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
        let exporter: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")).parse().unwrap();
        let mut server = Server {
            child: None,
            listen,
            exporter,
            data: Arc::new(TempDir::new("server-data")),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            pki_dir: pki.dir.0.clone(),
            binary: binary.to_owned(),
            open_files,
            log: Arc::new(Mutex::new(String::new())),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = self.binary.clone();
        assert!(
            binary.exists(),
            "{} missing: build it with `cargo xtask test`",
            binary.display()
        );
        let mut command = match self.open_files {
            Some(n) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={n}:{n}")).arg("--").arg(&binary);
                prlimit
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data.0)
            .arg("--ca")
            .arg(self.pki_dir.join("ca.pem"))
            .arg("--cert")
            .arg(self.pki_dir.join("server.pem"))
            .arg("--key")
            .arg(self.pki_dir.join("server.key"))
            .arg("--exporter-listen")
            .arg(self.exporter.to_string())
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start watchtower-server");
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[server] {line}");
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        self.child = Some(child);
        let start = Instant::now();
        while !self.log().contains("listening") {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("watchtower-server exited ({status}):\n{}", self.log());
            }
            assert!(
                start.elapsed() < PATIENCE,
                "server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        // The port answers.
        while TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).is_err() {
            assert!(start.elapsed() < PATIENCE, "server port never answered");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The server process's id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `https://ip:port`
    #[must_use]
    pub fn address(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// Everything the server logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Stop with SIGTERM (it must exit cleanly), keeping port and data for
    /// [`Server::restart`].
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, libc::SIGTERM);
            let status = wait_with_deadline(&mut child, PATIENCE).expect("server stops");
            assert!(status.success(), "server exited with {status}:\n{}", self.log());
        }
    }

    /// The exporter's URL for `path` (`/metrics`, `/healthz`).
    #[must_use]
    pub fn exporter_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.exporter)
    }

    /// Start again on the same port and data (after [`Server::kill9`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9");
        self.spawn();
    }

    /// Stop with SIGTERM; the server must exit cleanly.
    pub fn stop(mut self) {
        self.terminate();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A gRPC client of the query service, with a reader certificate.
pub struct Reader {
    runtime: tokio::runtime::Runtime,
    client: QueryClient<Channel>,
}

/// A runtime for blocking calls from tests.
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    watchtower_pki::install_crypto_provider();
    // One worker thread, not the current thread: a connection kept between
    // `block_on` calls must still answer the server's HTTP/2 keepalive pings, or the
    // server closes it after 20 s of a test's silence.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Connect to `address` with TLS `tls`.
pub async fn channel(
    address: &str,
    tls: ClientTls,
) -> Result<Channel, Box<dyn std::error::Error + Send + Sync>> {
    Ok(tls.endpoint(address, Duration::from_secs(5))?.connect().await?)
}

impl Reader {
    #[must_use]
    pub fn connect(pki: &Pki, server: &Server) -> Reader {
        let runtime = runtime();
        let channel = runtime
            .block_on(channel(&server.address(), pki.client_tls(Some("reader"))))
            .expect("reader connects");
        Reader {
            runtime,
            client: QueryClient::new(channel),
        }
    }

    /// Every event matching `filter`, all pages.
    pub fn events(&mut self, filter: &EventFilter) -> Vec<Event> {
        let mut events = Vec::new();
        let mut token = Vec::new();
        loop {
            let page = self
                .runtime
                .block_on(self.client.query_events(QueryEventsRequest {
                    filter: Some(filter.clone()),
                    page_size: 1000,
                    page_token: token,
                }))
                .expect("QueryEvents")
                .into_inner();
            events.extend(page.events.into_iter().filter_map(|s| s.event));
            if page.next_page_token.is_empty() {
                return events;
            }
            token = page.next_page_token;
        }
    }

    /// The events of `host`.
    pub fn host_events(&mut self, host: &str) -> Vec<Event> {
        self.events(&EventFilter {
            host_id: host.to_owned(),
            ..EventFilter::default()
        })
    }

    pub fn stats(&mut self) -> StatsResponse {
        self.runtime
            .block_on(self.client.stats(StatsRequest {}))
            .expect("Stats")
            .into_inner()
    }

    pub fn hosts(&mut self) -> Vec<HostInfo> {
        self.runtime
            .block_on(self.client.list_hosts(ListHostsRequest {}))
            .expect("ListHosts")
            .into_inner()
            .hosts
    }

    pub fn session(&mut self, host: &str, session: u64) -> GetSessionResponse {
        self.runtime
            .block_on(self.client.get_session(GetSessionRequest {
                host_id: host.to_owned(),
                session,
            }))
            .expect("GetSession")
            .into_inner()
    }

    /// Wait until `host` has at least `n` events stored matching `filter`.
    pub fn wait_for_stored(&mut self, filter: &EventFilter, n: usize) -> Vec<Event> {
        let start = Instant::now();
        loop {
            let events = self.events(filter);
            if events.len() >= n {
                return events;
            }
            assert!(
                start.elapsed() < Duration::from_mins(2),
                "waited for {n} stored events, {} arrived",
                events.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A network namespace joined to this one by a veth pair: the namespace side is
/// [`NETNS_INNER_ADDR`], this side [`NETNS_HOST_ADDR`]. Removed on drop.
pub struct NetNs {
    pub name: String,
    pub host_link: String,
}

impl NetNs {
    #[must_use]
    pub fn create() -> NetNs {
        let name = "wt-e2e".to_owned();
        let host_link = "wt-e2e-h".to_owned();
        // Leftovers of an interrupted run.
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &host_link]).status();
        crate::run("ip", &["netns", "add", &name]);
        crate::run(
            "ip",
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name", "wt-e2e-n",
            ],
        );
        crate::run("ip", &["link", "set", "wt-e2e-n", "netns", &name]);
        crate::run(
            "ip",
            &["addr", "add", &format!("{NETNS_HOST_ADDR}/30"), "dev", &host_link],
        );
        crate::run("ip", &["link", "set", &host_link, "up"]);
        let inner = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str()];
            all.extend_from_slice(args);
            crate::run("ip", &all);
        };
        inner(&[
            "ip",
            "addr",
            "add",
            &format!("{NETNS_INNER_ADDR}/30"),
            "dev",
            "wt-e2e-n",
        ]);
        inner(&["ip", "link", "set", "wt-e2e-n", "up"]);
        inner(&["ip", "link", "set", "lo", "up"]);
        NetNs { name, host_link }
    }

    /// The wrapper that runs a program inside the namespace.
    #[must_use]
    pub fn wrapper(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name.clone()]
    }

    /// Take the link down (a cut cable: packets vanish, nothing is reset).
    pub fn cut(&self) {
        crate::run("ip", &["link", "set", &self.host_link, "down"]);
    }

    pub fn heal(&self) {
        crate::run("ip", &["link", "set", &self.host_link, "up"]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Run watchtowerctl with the `reader` certificate: (exit code, stdout, stderr),
/// both printed for the test's log.
#[must_use]
pub fn ctl(pki: &Pki, server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(ctl_binary())
        .args(pki.ctl_args(server, "reader"))
        .args(args)
        .output()
        .expect("run watchtowerctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("$ watchtowerctl {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// An agent's Hello as `host` in boot `boot`.
#[must_use]
pub fn hello(host: &str, boot: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            host_id: host.into(),
            boot_id: boot.into(),
            agent_version: "e2e".into(),
        })),
    }
}

/// A batch of `events` numbered `batch_id`.
#[must_use]
pub fn batch(batch_id: u64, events: Vec<Event>) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Batch(EventBatch { batch_id, events })),
    }
}

/// Send `batches` (numbered from 1) on one ingest stream as `host` in boot `boot`,
/// with the host's certificate, as an agent would; the Acks in order (the stream
/// ends when they are all in).
#[must_use]
pub fn ingest_batches(
    pki: &Pki,
    server: &Server,
    host: &str,
    boot: &str,
    batches: Vec<Vec<Event>>,
) -> Vec<Ack> {
    runtime().block_on(async {
        let agent = channel(&server.address(), pki.client_tls(Some(host)))
            .await
            .expect("agent connects");
        let mut messages = vec![hello(host, boot)];
        for (n, events) in batches.into_iter().enumerate() {
            messages.push(batch(n as u64 + 1, events));
        }
        let mut answers = IngestClient::new(agent)
            .stream(tokio_stream::iter(messages))
            .await
            .expect("the stream opens")
            .into_inner();
        let mut acks = Vec::new();
        while let Some(ServerMessage { msg }) = answers.message().await.expect("no stream error") {
            if let Some(server_message::Msg::Ack(ack)) = msg {
                acks.push(ack);
            }
        }
        acks
    })
}

/// `curl -sS --max-time 5 ARGS` (an exporter on loopback): its body; panics when it fails.
#[must_use]
pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample `line_start` (name and labels exactly) in a scrape.
#[must_use]
pub fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.trim().parse().ok())
}
