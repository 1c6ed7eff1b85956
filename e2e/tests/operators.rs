//! The operators' side with the real daemons: Prometheus (the Debian package)
//! scrapes the exporter, `watchtowerctl tail` shows logins as they happen, and the
//! alert for repeated failed logins reaches a webhook. (The tamper-evidence log's
//! attacks are in `tamper.rs`.)

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use watchtower_e2e::central::{HOST, Pki, Reader, Server, ctl, ctl_binary, curl, sample};
use watchtower_e2e::{ALICE, ALICE_PASSWORD, Agent, Sshd, TempDir, free_port, kill, of_kind, privileged};

const WRONG: &str = "not-her-password";

fn start_agent(pki: &Pki, server: &Server) -> Agent {
    let mut flags = pki.agent_args(&server.address());
    flags.push("--no-journal".into());
    Agent::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A real Prometheus scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    address: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: watchtower\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (apt-get install prometheus; cargo xtask setup does)");
        Prometheus {
            child,
            address,
            _dir: dir,
        }
    }

    /// The single value of an instant `PromQL` query, once it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-G"])
            .arg(format!("http://{}/api/v1/query", self.address))
            .arg("--data-urlencode")
            .arg(format!("query={promql}"))
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_failed_ssh_logins_and_promtool_accepts_the_metrics() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let sshd = Sshd::start();
    let agent = start_agent(&pki, &server);
    for _ in 0..3 {
        let (code, _) = sshd.ssh_password(ALICE, WRONG, "id");
        assert_ne!(code, 0);
    }
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    agent.wait_for("the successful login's session end", |e| {
        e["kind"] == "session_end" && e["service"] == "sshd"
    });
    let printed = agent.stop();
    let failures = of_kind(&printed, "login_attempt")
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .count();
    assert_eq!(failures, 3, "one failed attempt per sshpass run");

    // The exporter's own view, in the classic format promtool reads.
    let metrics_url = server.exporter_url("/metrics");
    let start = Instant::now();
    let text = loop {
        let text = curl(&[&metrics_url]);
        if sample(
            &text,
            r#"watchtower_logins_total{service="sshd",outcome="success",origin="remote"}"#,
        ) == Some(1.0)
        {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "logins never counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        sample(
            &text,
            r#"watchtower_logins_total{service="sshd",outcome="failure",origin="remote"}"#
        ),
        Some(3.0)
    );
    assert_eq!(sample(&text, "watchtower_active_sessions"), Some(0.0));
    assert_eq!(
        sample(&text, r#"watchtower_events_lost{cause="kernel"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"watchtower_events_lost{cause="spool"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&text, "watchtower_hosts"), Some(1.0));
    assert!(
        !text.contains(ALICE) && !text.contains("127.0.0.1"),
        "no user or address labels"
    );
    let dir = TempDir::new("promtool");
    let file = dir.0.join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool");
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let health = curl(&[&server.exporter_url("/healthz")]);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["log_leaves"].as_u64(), Some(printed.len() as u64));

    // Prometheus itself, asked in PromQL.
    let prometheus = Prometheus::start(&server.exporter.to_string());
    let promql = r#"sum(watchtower_logins_total{service="sshd",outcome="failure"})"#;
    let start = Instant::now();
    let value = loop {
        if let Some(value) = prometheus.query(promql) {
            break value;
        }
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "Prometheus never had {promql}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("PromQL {promql} = {value} after {:?}", start.elapsed());
    assert_eq!(value.to_string(), "3");
    assert_eq!(prometheus.query("up{job=\"watchtower\"}"), Some(1.0));
    assert_eq!(
        prometheus.query(r#"sum by (outcome) (watchtower_logins_total{outcome="success"})"#),
        Some(1.0)
    );
}

#[test]
fn the_exporter_off_loopback_demands_its_token() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let dir = TempDir::new("token");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "s3cret-scrape-token-0042\n").unwrap();
    let token_arg = token_file.display().to_string();
    let server = Server::start(&pki, "127.0.0.1", &["--exporter-token-file", &token_arg]);
    let url = server.exporter_url("/metrics");
    let code = |extra: &[&str]| {
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    assert_eq!(code(&[]), "401");
    assert_eq!(
        code(&["-H", "Authorization: Bearer wrong-token-000000000"]),
        "401"
    );
    assert_eq!(
        code(&["-H", "Authorization: Bearer s3cret-scrape-token-0042"]),
        "200"
    );
    let text = curl(&["-H", "Authorization: Bearer s3cret-scrape-token-0042", &url]);
    assert_eq!(
        sample(&text, "watchtower_exporter_unauthorized_requests_total"),
        Some(2.0)
    );
    drop(server);

    // Without a token the server refuses to open the exporter beyond loopback.
    let out = Command::new(watchtower_e2e::central::server_binary())
        .args(["--exporter-listen", "0.0.0.0:9470", "print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("token_file"),
        "{stderr}"
    );
}

/// watchtowerctl tail in the background; each stdout line with when it arrived.
struct Tail {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, u64, String)>>>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl Tail {
    fn start(pki: &Pki, server: &Server, args: &[&str]) -> Tail {
        let mut child = Command::new(ctl_binary())
            .args(pki.ctl_args(server, "reader"))
            .arg("tail")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("watchtowerctl tail");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[tail] {line}");
                sink.lock().unwrap().push((Instant::now(), now_ns(), line));
            }
        });
        // Subscribed once the server counts it.
        let mut reader = Reader::connect(pki, server);
        let start = Instant::now();
        while reader.stats().subscribers == 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "tail never subscribed");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tail { child, lines }
    }

    fn wait_for(&self, what: &str, predicate: impl Fn(&str) -> bool) -> (u64, String) {
        let start = Instant::now();
        loop {
            if let Some((_, at, line)) = self.lines.lock().unwrap().iter().find(|(_, _, l)| predicate(l)) {
                return (*at, line.clone());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tail never showed {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        kill(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The stored event inside a `tail --json` line.
fn tailed_event(line: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(v["item"]["stored"]["event"].clone()).filter(|e| !e.is_null())
}

#[test]
fn tail_shows_a_login_within_a_second() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &[]);
    let sshd = Sshd::start();
    let agent = start_agent(&pki, &server);
    let tail = Tail::start(
        &pki,
        &server,
        &["--host", HOST, "--kind", "login_attempt", "--json"],
    );
    let (code, _) = sshd.ssh_password(ALICE, ALICE_PASSWORD, "true");
    assert_eq!(code, 0);
    let (arrived_ns, line) = tail.wait_for("alice's login", |l| {
        tailed_event(l).is_some_and(|e| e["body"]["login_attempt"]["user"] == ALICE)
    });
    let event = tailed_event(&line).unwrap();
    assert_eq!(event["host_id"], HOST);
    assert_eq!(event["body"]["login_attempt"]["outcome"], "success");
    assert_eq!(event["body"]["login_attempt"]["remote_host"], "127.0.0.1");
    let happened_ns = event["time_unix_ns"].as_u64().unwrap();
    let delay = Duration::from_nanos(arrived_ns.saturating_sub(happened_ns));
    eprintln!("tail showed the login {delay:?} after it happened");
    assert!(delay < Duration::from_secs(1), "tail took {delay:?}");
    // Only login attempts, and exactly the one.
    let printed = agent.stop();
    let attempts = of_kind(&printed, "login_attempt");
    std::thread::sleep(Duration::from_millis(500));
    let shown: Vec<Value> = tail
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, _, l)| tailed_event(l))
        .collect();
    assert_eq!(shown.len(), attempts.len(), "{shown:?}");
    assert!(shown.iter().all(|e| !e["body"]["login_attempt"].is_null()));
}

/// A reader's certificate revoked while its `tail` is open: the tail ends within
/// seconds (not at its next reconnection), the refusal is logged, and a new
/// connection with it is refused.
#[test]
fn a_revoked_readers_open_tail_ends() {
    if !privileged() {
        return;
    }
    let pki = Pki::new();
    let lists = TempDir::new("revoked-reader");
    let list = lists.0.join("revoked");
    std::fs::write(&list, "").unwrap();
    let server = Server::start(
        &pki,
        "127.0.0.1",
        &["--revoked-file", &list.display().to_string()],
    );
    let mut tail = Tail::start(&pki, &server, &["--json"]);
    let serial = watchtower_pki::cert_facts_pem(&String::from_utf8(pki.read("reader.pem")).unwrap())
        .unwrap()
        .serial;
    std::fs::write(&list, format!("{serial} reader\n")).unwrap();
    let revoked_at = Instant::now();
    let status = loop {
        if let Some(status) = tail.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the revoked reader's tail is still open"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    eprintln!("the tail ended {:?} after the revocation", revoked_at.elapsed());
    // A new connection is refused at its handshake.
    let (code, _, _) = ctl(&pki, &server, &["stats"]);
    assert_ne!(code, 0);
    assert!(
        server.log().contains("refused a call with a revoked certificate"),
        "{}",
        server.log()
    );
}

/// A local HTTP receiver standing in for Slack: records every JSON body posted.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                if let Ok(json) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push((request_line.trim().to_owned(), json));
                }
            }
        });
        Receiver { port, bodies }
    }
}

#[test]
fn five_failed_logins_alert_the_webhook_and_the_tail() {
    if !privileged() {
        return;
    }
    let receiver = Receiver::start();
    let hook = format!("http://127.0.0.1:{}/hooks/watchtower", receiver.port);
    let pki = Pki::new();
    let server = Server::start(&pki, "127.0.0.1", &["--webhook-url", &hook]);
    let sshd = Sshd::start();
    let agent = start_agent(&pki, &server);
    let tail = Tail::start(&pki, &server, &["--host", HOST, "--kind", "login_attempt"]);
    for _ in 0..5 {
        let (code, _) = sshd.ssh_password(ALICE, WRONG, "id");
        assert_ne!(code, 0);
    }
    let start = Instant::now();
    while receiver.bodies.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no alert reached the webhook"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let anything else arrive: there must be exactly one alert.
    std::thread::sleep(Duration::from_secs(2));
    let printed = agent.stop();
    let failed: Vec<u64> = of_kind(&printed, "login_attempt")
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(failed.len(), 5);
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let (request, body) = &bodies[0];
    assert_eq!(request, "POST /hooks/watchtower HTTP/1.1");
    assert_eq!(
        body["text"],
        format!(
            ":warning: [warning] failed_logins on {HOST}: 5 failed logins from 127.0.0.1 within 300 s (users {ALICE}; hosts {HOST})"
        )
    );
    let alert = &body["alert"];
    assert_eq!(alert["rule"], "failed_logins");
    assert_eq!(alert["count"], 5);
    assert_eq!(alert["remote_address"], "127.0.0.1");
    assert_eq!(alert["user"], ALICE);
    let seqs: Vec<u64> = alert["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(seqs, failed, "the alert names the five failed attempts");

    // The tail showed the five failures and the alert.
    let (_, line) = tail.wait_for("the alert", |l| l.starts_with("ALERT"));
    assert!(
        line.starts_with(&format!(
            "ALERT warning failed_logins host={HOST} 5 failed logins from 127.0.0.1"
        )),
        "{line}"
    );
    let shown = tail
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, l)| l.contains("failure"))
        .count();
    assert_eq!(shown, 5);
    // And the server counts it.
    let text = curl(&[&server.exporter_url("/metrics")]);
    assert_eq!(
        sample(&text, r#"watchtower_alerts_total{rule="failed_logins"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"watchtower_webhook_deliveries_total{result="delivered"}"#
        ),
        Some(1.0)
    );
    // And it is kept: watchtowerctl alerts lists exactly it.
    let (code, out, _) = ctl(&pki, &server, &["alerts", "--json"]);
    assert_eq!(code, 0);
    let kept: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(kept.len(), 1, "{out}");
    assert_eq!(kept[0]["rule"], "failed_logins");
    assert_eq!(kept[0]["id"], 1);
    assert_eq!(kept[0]["seqs"], alert["seqs"]);
}
