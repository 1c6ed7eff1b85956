//! `watchtowerctl`: the operators' client of watchtower-server.

mod enrol;
mod render;
mod report;
mod timearg;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use watchtower_proto::query_client::QueryClient;
use watchtower_proto::{
    Event, EventFilter, EventKind, GetSessionRequest, ListAlertsRequest, ListHostsRequest, Outcome,
    QueryEventsRequest, StatsRequest, StoredEvent, SubscribeRequest, VerifyRequest, event::Body, live_item,
};

use crate::render::{EVENT_HEADER, event_cells, row, table, tail_line};
use crate::timearg::{format_ns, format_span, now_ns};

/// The version: the git description `cargo xtask dist` stamps in, else the crate's.
pub const VERSION: &str = match option_env!("WATCHTOWER_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// Query Watchtower's central store: who logged in to which host, when, from
/// where, and what they did; live tails with alerts; the periodic access review;
/// exports; and the tamper-evidence check.
///
/// Connects over mutual TLS with a reader (or admin) certificate, by default the
/// one `cargo xtask certs` made (certs/clients/operator.pem).
#[derive(Parser, Debug)]
#[command(version = VERSION)]
struct Cli {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "WATCHTOWER_SERVER",
        default_value = "https://127.0.0.1:7443"
    )]
    server: String,
    /// The name the server's certificate must carry.
    #[arg(long, global = true, default_value = "localhost")]
    server_name: String,
    /// The CA that signed the server's certificate.
    #[arg(long, global = true, env = "WATCHTOWER_CA", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// This client's certificate (reader or admin).
    #[arg(
        long,
        global = true,
        env = "WATCHTOWER_CERT",
        default_value = "certs/clients/operator.pem"
    )]
    cert: PathBuf,
    /// This client's private key.
    #[arg(
        long,
        global = true,
        env = "WATCHTOWER_KEY",
        default_value = "certs/clients/operator.key"
    )]
    key: PathBuf,
    /// Machine output: one JSON object per line (or one object).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone, Default)]
struct Filters {
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// Only this user (the login user, or the session's user for execs and connects).
    #[arg(long)]
    user: Option<String>,
    /// Only these kinds (repeatable): `login_attempt`, `session_start`, `session_end`,
    /// `exec`, `connect`, `login_verdict`, `agent_health`.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only failed login attempts and verdicts.
    #[arg(long)]
    failed: bool,
    /// Only this session (16 hex digits; needs --host).
    #[arg(long)]
    session: Option<String>,
    /// Only events from or to this address.
    #[arg(long)]
    remote: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
struct Period {
    /// How far back: 90s, 30m, 12h, 7d, 2w.
    #[arg(long)]
    since: Option<String>,
    /// From this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    from: Option<String>,
    /// Until this time (exclusive).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stored events, oldest first.
    Events {
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        period: Period,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Logins as sessions: who, from where, how long, how much they ran.
    Sessions {
        #[command(subcommand)]
        show: Option<SessionCommand>,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        period: Period,
        /// At most this many sessions.
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Hosts: last heartbeat, stale agents, spool and loss counters.
    Hosts {
        /// An agent not heard from for this many seconds is stale.
        #[arg(long, default_value_t = 120)]
        stale_after: u64,
    },
    /// Follow events as they are stored (and alerts as they are raised).
    Tail {
        #[command(flatten)]
        filters: Filters,
        /// Do not show alerts.
        #[arg(long)]
        no_alerts: bool,
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<usize>,
    },
    /// The server's counters.
    Stats,
    /// Alerts the server's rules raised (failed logins, root logins, new addresses,
    /// kernel/journal disagreements, stale agents), oldest first.
    Alerts {
        #[command(flatten)]
        period: Period,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// The access review of a period (ISO 27001 A.12.4): failed logins by source
    /// and by user, root logins, new source addresses per user, kernel/journal
    /// disagreements, agents that lost events.
    Report {
        #[command(flatten)]
        period: Period,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// Addresses seen within this long before the period are not new.
        #[arg(long, default_value = "90d")]
        lookback: String,
    },
    /// Write events as CSV or JSON Lines.
    Export {
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// The file to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        period: Period,
    },
    /// The certificate authority (offline; run where the CA key is kept).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Enrol a host: issue its agent certificate (host id in the SAN, labels bound
    /// into the certificate so the agent cannot change them) and write the bundle
    /// to copy to the host's /etc/watchtower: ca.pem, agent.pem, agent.key,
    /// agent.toml (which points at --server / --server-name). Offline.
    Enroll {
        /// The host id (the agent's --host-id; [a-z0-9._-]).
        host: String,
        /// A label KEY=VALUE (repeatable), e.g. region=eu-west, group=web.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The CA directory (see `ca init`).
        #[arg(long, default_value = DEFAULT_CA_DIR)]
        ca_dir: PathBuf,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the bundle (default: ./HOST-bundle).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a host: add every certificate issued to it (or one --serial) to the
    /// deny list the server re-reads within a second; its connections are refused
    /// from then on, counted and logged. Offline.
    Revoke {
        host: String,
        /// Only this certificate (hex serial, as `hosts` shows it).
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, default_value = DEFAULT_CA_DIR)]
        ca_dir: PathBuf,
        /// The deny list the server reads ([tls] revoked; default CA_DIR/revoked).
        #[arg(long)]
        revoked_file: Option<PathBuf>,
    },
    /// Check the stored events against the tamper-evidence log and its signed
    /// checkpoints; exits 1 and names every record changed or removed.
    Verify {
        /// Only this host's records (the log itself is always checked whole).
        #[arg(long)]
        host: Option<String>,
        /// The server's Ed25519 public key (hex, as in checkpoint-signing.pub) to pin.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Make a new CA in --dir: ca.pem, ca.key (keep it offline or root-only),
    /// the server's certificate for its names, and a reader certificate for the
    /// operator (clients/NAME.pem). Never replaces an existing CA.
    Init {
        /// The CA directory.
        #[arg(long, default_value = DEFAULT_CA_DIR)]
        dir: PathBuf,
        /// A DNS name or IP address agents use to reach the server (repeatable).
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
        /// The operator's reader certificate name.
        #[arg(long, default_value = "operator")]
        operator: String,
        /// Validity of the server and operator certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Where `ca init`, `enroll` and `revoke` keep the CA by default.
const DEFAULT_CA_DIR: &str = "/etc/watchtower/ca";

#[derive(Subcommand, Debug)]
enum SessionCommand {
    /// One session as a tree: its execs and connects, and the sessions (su, sudo)
    /// opened inside it with theirs.
    Show { host: String, session: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Csv,
    Jsonl,
}

fn filter_of(filters: &Filters, (from, to): (u64, u64)) -> anyhow::Result<EventFilter> {
    let kinds = filters
        .kinds
        .iter()
        .map(|k| {
            EventKind::from_name(k)
                .map(|k| k as i32)
                .with_context(|| format!("unknown kind {k:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let session = filters
        .session
        .as_deref()
        .map(|s| u64::from_str_radix(s, 16).with_context(|| format!("session {s:?} is not hex")))
        .transpose()?;
    if session.is_some() && filters.host.is_none() {
        bail!("--session needs --host (sessions are numbered per host)");
    }
    Ok(EventFilter {
        host_id: filters.host.clone().unwrap_or_default(),
        from_unix_ns: from,
        to_unix_ns: to,
        user: filters.user.clone().unwrap_or_default(),
        kinds,
        outcome: if filters.failed {
            Outcome::Failure as i32
        } else {
            0
        },
        session,
        remote_address: filters.remote.clone().unwrap_or_default(),
    })
}

fn range(period: &Period) -> anyhow::Result<(u64, u64)> {
    timearg::range(
        period.since.as_deref(),
        period.from.as_deref(),
        period.to.as_deref(),
    )
    .map_err(anyhow::Error::msg)
}

/// A server error as one line.
#[expect(clippy::needless_pass_by_value, reason = "used as `map_err(status)`")]
fn status(e: tonic::Status) -> anyhow::Error {
    let code = match e.code() {
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::NotFound => "not found",
        tonic::Code::Unavailable => "server unavailable",
        tonic::Code::ResourceExhausted => "cut off",
        _ => "server error",
    };
    anyhow::anyhow!("{code}: {}", e.message())
}

struct Client {
    query: QueryClient<Channel>,
}

impl Client {
    async fn connect(cli: &Cli) -> anyhow::Result<Client> {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&cli.ca)?))
            .identity(Identity::from_pem(read(&cli.cert)?, read(&cli.key)?))
            .domain_name(cli.server_name.clone());
        let channel = Endpoint::from_shared(cli.server.clone())
            .with_context(|| format!("server address {:?}", cli.server))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting to {}", cli.server))?;
        Ok(Client {
            query: QueryClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        })
    }

    /// Every matching event, page by page, to `each` (which returns false to stop).
    async fn events(
        &mut self,
        filter: &EventFilter,
        mut each: impl FnMut(StoredEvent) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let mut token = Vec::new();
        loop {
            let page = self
                .query
                .query_events(QueryEventsRequest {
                    filter: Some(filter.clone()),
                    page_size: 1000,
                    page_token: token,
                })
                .await
                .map_err(status)?
                .into_inner();
            for event in page.events {
                if !each(event)? {
                    return Ok(());
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            token = page.next_page_token;
        }
    }

    async fn collect(&mut self, filter: &EventFilter) -> anyhow::Result<Vec<Event>> {
        let mut out = Vec::new();
        self.events(filter, |s| {
            out.extend(s.event);
            Ok(true)
        })
        .await?;
        Ok(out)
    }
}

fn json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("watchtowerctl: {e:#}");
            std::process::exit(2);
        }
    }
}

/// The commands that work on local files only (no server).
fn run_offline(cli: &Cli) -> anyhow::Result<Option<i32>> {
    match &cli.command {
        Command::Ca {
            command:
                CaCommand::Init {
                    dir,
                    server_names,
                    operator,
                    days,
                },
        } => {
            for path in enrol::init(dir, server_names, operator, *days)? {
                println!("wrote {}", path.display());
            }
            println!(
                "keep {} secret (root only or offline); point the server's [tls] at ca.pem, server.pem, server.key",
                dir.join("ca.key").display()
            );
        }
        Command::Enroll {
            host,
            labels,
            ca_dir,
            days,
            out,
        } => {
            let labels = labels
                .iter()
                .map(|l| watchtower_pki::parse_label(l))
                .collect::<Result<watchtower_pki::Labels, _>>()?;
            let out = out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{host}-bundle")));
            let enrolled = enrol::enroll(ca_dir, host, &labels, &cli.server, &cli.server_name, *days, &out)?;
            let labels_text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if cli.json {
                json_line(&serde_json::json!({
                    "host": host,
                    "serial": enrolled.serial,
                    "not_after_unix_s": enrolled.not_after_unix_s,
                    "labels": labels,
                    "bundle": enrolled.bundle,
                }))?;
            } else {
                println!(
                    "enrolled {host}: certificate {} valid until {}, labels [{}]
                     bundle: {} (ca.pem, agent.pem, agent.key, agent.toml): copy it to {}:{}/                      (agent.key mode 0640, group watchtower-agent), then start watchtower-agent",
                    enrolled.serial,
                    format_ns(enrolled.not_after_unix_s.max(0) as u64 * 1_000_000_000),
                    labels_text.join(", "),
                    enrolled.bundle.display(),
                    host,
                    enrol::INSTALLED_DIR
                );
            }
        }
        Command::Revoke {
            host,
            serial,
            ca_dir,
            revoked_file,
        } => {
            let file = revoked_file.clone().unwrap_or_else(|| ca_dir.join("revoked"));
            let today = format_ns(now_ns());
            let today = today.split(['T', ' ']).next().unwrap_or(&today);
            let added = enrol::revoke(ca_dir, host, serial.as_deref(), &file, today)?;
            if added.is_empty() {
                println!("{host}: already revoked in {}", file.display());
            } else {
                println!(
                    "revoked {host}: {} (in {}; the server refuses it within a second)",
                    added.join(", "),
                    file.display()
                );
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(0))
}

#[expect(clippy::too_many_lines, reason = "one arm per command")]
async fn run(cli: &Cli) -> anyhow::Result<i32> {
    if let Some(code) = run_offline(cli)? {
        return Ok(code);
    }
    let _ = rustls_provider();
    let mut client = Client::connect(cli).await?;
    match &cli.command {
        Command::Events {
            filters,
            period,
            limit,
        } => {
            let filter = filter_of(filters, range(period)?)?;
            let mut rows = Vec::new();
            let mut n = 0usize;
            let json = cli.json;
            client
                .events(&filter, |stored| {
                    n += 1;
                    if json {
                        json_line(&stored)?;
                    } else {
                        rows.push(event_cells(&row(&stored)));
                    }
                    Ok(*limit == 0 || n < *limit)
                })
                .await?;
            if !json {
                println!("{}", table(&EVENT_HEADER, rows));
                eprintln!("{n} events");
            }
        }
        Command::Sessions {
            show: Some(SessionCommand::Show { host, session }),
            ..
        } => {
            let id = u64::from_str_radix(session, 16)
                .with_context(|| format!("session {session:?} is not hex"))?;
            let tree = client
                .query
                .get_session(GetSessionRequest {
                    host_id: host.clone(),
                    session: id,
                })
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                json_line(&tree)?;
                return Ok(0);
            }
            let s = tree.summary.unwrap_or_default();
            println!(
                "session {:016x} on {}: {} through {} from {} tty {}",
                s.session,
                s.host_id,
                s.user,
                s.service,
                s.remote_host.as_deref().unwrap_or("local"),
                s.tty.as_deref().unwrap_or("-")
            );
            let end = if s.end_unix_ns == 0 {
                "still open".to_owned()
            } else {
                format!(
                    "ended {} ({}) after {}",
                    format_ns(s.end_unix_ns),
                    s.end_reason.as_deref().unwrap_or("-"),
                    format_span(s.end_unix_ns.saturating_sub(s.start_unix_ns))
                )
            };
            println!(
                "started {}, {end}; {} execs, {} connects",
                format_ns(s.start_unix_ns),
                s.execs,
                s.connects
            );
            // Depth of each session in the tree.
            let mut depth = std::collections::HashMap::from([(s.session, 0usize)]);
            for stored in &tree.events {
                if let Some(Event {
                    body: Some(Body::SessionStart(start)),
                    ..
                }) = &stored.event
                    && let Some(parent) = start.parent_session
                {
                    let d = depth.get(&parent).copied().unwrap_or(0) + 1;
                    depth.entry(start.session).or_insert(d);
                }
            }
            for stored in &tree.events {
                let r = row(stored);
                let own = u64::from_str_radix(&r.session, 16).unwrap_or(s.session);
                let d = depth.get(&own).copied().unwrap_or(0);
                println!(
                    "{}{}  {:<14} {:<10} {} {}",
                    "  ".repeat(d + 1),
                    r.time,
                    r.kind,
                    r.user,
                    r.service,
                    r.detail
                );
            }
            if tree.truncated {
                println!("(truncated: the session has more events)");
            }
        }
        Command::Sessions {
            filters,
            period,
            limit,
            ..
        } => {
            let mut filter = filter_of(filters, range(period)?)?;
            filter.kinds = vec![EventKind::SessionStart as i32];
            let starts = client.collect(&filter).await?;
            let mut rows = Vec::new();
            for start in starts.iter().take(*limit) {
                let Some(Body::SessionStart(s)) = &start.body else {
                    continue;
                };
                let summary = client
                    .query
                    .get_session(GetSessionRequest {
                        host_id: start.host_id.clone(),
                        session: s.session,
                    })
                    .await
                    .map_err(status)?
                    .into_inner()
                    .summary
                    .unwrap_or_default();
                if cli.json {
                    json_line(&summary)?;
                    continue;
                }
                let duration = if summary.end_unix_ns == 0 {
                    "open".to_owned()
                } else {
                    format_span(summary.end_unix_ns.saturating_sub(summary.start_unix_ns))
                };
                rows.push(vec![
                    summary.host_id.clone(),
                    format!("{:016x}", summary.session),
                    summary.user.clone(),
                    summary.service.clone(),
                    summary.remote_host.clone().unwrap_or_else(|| "local".into()),
                    summary.tty.clone().unwrap_or_default(),
                    format_ns(summary.start_unix_ns),
                    duration,
                    summary.execs.to_string(),
                    summary.connects.to_string(),
                    summary.end_reason.clone().unwrap_or_default(),
                ]);
            }
            if !cli.json {
                println!(
                    "{}",
                    table(
                        &[
                            "HOST", "SESSION", "USER", "SERVICE", "FROM", "TTY", "START", "DURATION",
                            "EXECS", "CONNECTS", "END"
                        ],
                        rows
                    )
                );
            }
        }
        Command::Hosts { stale_after } => {
            let hosts = client
                .query
                .list_hosts(ListHostsRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .hosts;
            let now = now_ns();
            let mut rows = Vec::new();
            for h in hosts {
                let silent = now.saturating_sub(h.last_heartbeat_unix_ns);
                let stale =
                    !h.connected && (h.last_heartbeat_unix_ns == 0 || silent > stale_after * 1_000_000_000);
                if cli.json {
                    let mut v = serde_json::to_value(&h)?;
                    v["stale"] = stale.into();
                    json_line(&v)?;
                    continue;
                }
                let spool = h.spool.clone().unwrap_or_default();
                let dropped: u64 = spool.dropped.values().sum();
                let kernel: u64 = h.kernel_lost.values().sum();
                rows.push(vec![
                    h.host_id.clone(),
                    h.agent_version.clone(),
                    if h.connected { "yes" } else { "no" }.into(),
                    if h.last_heartbeat_unix_ns == 0 {
                        "never".into()
                    } else {
                        format!("{} ago", format_span(silent))
                    },
                    if stale { "STALE" } else { "ok" }.into(),
                    h.events_stored.to_string(),
                    h.duplicates.to_string(),
                    h.last_seq.to_string(),
                    format!("{} / {} B", spool.pending, spool.bytes),
                    format!("{dropped} spool, {kernel} kernel"),
                    h.labels
                        .iter()
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    cert_expiry(h.cert_not_after_unix_s, now),
                ]);
            }
            if !cli.json {
                println!(
                    "{}",
                    table(
                        &[
                            "HOST",
                            "AGENT",
                            "CONNECTED",
                            "LAST HEARTBEAT",
                            "STATE",
                            "EVENTS",
                            "DUPLICATES",
                            "LAST SEQ",
                            "SPOOL",
                            "LOST",
                            "LABELS",
                            "CERT EXPIRES"
                        ],
                        rows
                    )
                );
            }
        }
        Command::Tail {
            filters,
            no_alerts,
            count,
        } => {
            let filter = filter_of(filters, (0, 0))?;
            let mut live = client
                .query
                .subscribe(SubscribeRequest {
                    filter: Some(filter),
                    alerts: !no_alerts,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut shown = 0usize;
            loop {
                let item = tokio::select! {
                    item = live.message() => item,
                    _ = tokio::signal::ctrl_c() => return Ok(0),
                };
                let Some(item) = item.map_err(status)? else {
                    bail!("the server closed the tail");
                };
                if cli.json {
                    json_line(&item)?;
                } else {
                    let line = match &item.item {
                        Some(live_item::Item::Stored(stored)) => tail_line(&row(stored)),
                        Some(live_item::Item::Alert(a)) => {
                            format!("ALERT {} {} host={} {}", a.severity, a.rule, a.host_id, a.summary)
                        }
                        None => continue,
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
                shown += 1;
                if count.is_some_and(|c| shown >= c) {
                    return Ok(0);
                }
            }
        }
        Command::Stats => {
            let stats = client
                .query
                .stats(StatsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                json_line(&stats)?;
            } else {
                let v = serde_json::to_value(&stats)?;
                let rows = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| vec![k.clone(), v.to_string()]);
                println!("{}", table(&["COUNTER", "VALUE"], rows));
            }
        }
        Command::Alerts { period, limit } => {
            let (from, to) = range(period)?;
            let alerts = client
                .query
                .list_alerts(ListAlertsRequest {
                    from_unix_ns: from,
                    to_unix_ns: to,
                    limit: *limit,
                })
                .await
                .map_err(status)?
                .into_inner()
                .alerts;
            if cli.json {
                for alert in &alerts {
                    json_line(alert)?;
                }
            } else {
                let rows = alerts.iter().map(|a| {
                    vec![
                        a.id.to_string(),
                        format_ns(a.time_unix_ns),
                        a.severity.clone(),
                        a.rule.clone(),
                        a.host_id.clone(),
                        a.summary.clone(),
                    ]
                });
                println!(
                    "{}",
                    table(&["ID", "TIME", "SEVERITY", "RULE", "HOST", "SUMMARY"], rows)
                );
            }
        }
        Command::Report {
            period,
            host,
            lookback,
        } => {
            let mut period = period.clone();
            if period.since.is_none() && period.from.is_none() {
                period.since = Some("7d".into());
            }
            let (from, to) = range(&period)?;
            let to_or_now = if to == 0 { now_ns() } else { to };
            let kinds = [
                EventKind::LoginAttempt,
                EventKind::SessionStart,
                EventKind::LoginVerdict,
                EventKind::AgentHealth,
            ];
            let filter = EventFilter {
                host_id: host.clone().unwrap_or_default(),
                from_unix_ns: from,
                to_unix_ns: to,
                kinds: kinds.iter().map(|k| *k as i32).collect(),
                ..EventFilter::default()
            };
            let events = client.collect(&filter).await?;
            let lookback = timearg::parse_span(lookback).map_err(anyhow::Error::msg)?;
            let before = EventFilter {
                host_id: host.clone().unwrap_or_default(),
                from_unix_ns: from.saturating_sub(lookback),
                to_unix_ns: from,
                kinds: vec![EventKind::LoginAttempt as i32],
                outcome: Outcome::Success as i32,
                ..EventFilter::default()
            };
            let known: HashSet<(String, String)> = client
                .collect(&before)
                .await?
                .into_iter()
                .filter_map(|e| match e.body {
                    Some(Body::LoginAttempt(a)) => Some((a.user, a.remote_host?)),
                    _ => None,
                })
                .collect();
            let review = report::build(&events, &known, from, to_or_now);
            if cli.json {
                json_line(&review)?;
            } else {
                print_report(&review);
            }
        }
        Command::Export {
            format,
            output,
            filters,
            period,
        } => {
            let filter = filter_of(filters, range(period)?)?;
            let sink: Box<dyn std::io::Write> = match output {
                Some(path) => Box::new(
                    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut sink = std::io::BufWriter::new(sink);
            let mut n = 0u64;
            match format {
                Format::Csv => {
                    let mut writer = csv::Writer::from_writer(sink);
                    client
                        .events(&filter, |stored| {
                            writer.serialize(row(&stored))?;
                            n += 1;
                            Ok(true)
                        })
                        .await?;
                    writer.flush()?;
                }
                Format::Jsonl => {
                    client
                        .events(&filter, |stored| {
                            serde_json::to_writer(&mut sink, &stored)?;
                            writeln!(sink)?;
                            n += 1;
                            Ok(true)
                        })
                        .await?;
                    sink.flush()?;
                }
            }
            eprintln!("exported {n} events");
        }
        Command::Ca { .. } | Command::Enroll { .. } | Command::Revoke { .. } => {
            unreachable!("run_offline handles the commands that need no server")
        }
        Command::Verify { host, public_key } => {
            let pinned = public_key
                .as_ref()
                .map(|path| {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let clean: String = text.split_whitespace().collect();
                    watchtower_proto::unhex(&clean)
                        .filter(|k| k.len() == 32)
                        .with_context(|| format!("{} is not a hex Ed25519 public key", path.display()))
                })
                .transpose()?;
            let report = client
                .query
                .verify(VerifyRequest {
                    host_id: host.clone().unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let signature = match &report.latest {
                Some(latest) => latest
                    .verify(pinned.as_deref())
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Err("the log has no signed checkpoint yet".to_owned()),
            };
            let ok = report.findings.is_empty() && signature.is_ok();
            if cli.json {
                let mut v = serde_json::to_value(&report)?;
                v["signature_ok"] = signature.is_ok().into();
                json_line(&v)?;
                return Ok(i32::from(!ok));
            }
            println!(
                "log: {} leaves; checked {} records{}: {} intact, {} pruned by retention, {} unlogged; {} checkpoints",
                report.log_size,
                report.leaves_checked,
                host.as_ref().map_or_else(String::new, |h| format!(" of {h}")),
                report.records_intact,
                report.pruned_by_retention,
                report.unlogged_records,
                report.checkpoints_checked
            );
            if let Some(c) = report.latest.as_ref().and_then(|l| l.checkpoint.as_ref()) {
                let key = report
                    .latest
                    .as_ref()
                    .map(|l| watchtower_proto::hex(&l.public_key))
                    .unwrap_or_default();
                match &signature {
                    Ok(()) => println!(
                        "latest checkpoint: size {} signed {} ({}) by key {key}{}: signature OK",
                        c.size,
                        format_ns(c.time_unix_ns),
                        c.reason,
                        if pinned.is_some() {
                            " (pinned)"
                        } else {
                            " (not pinned: pass --public-key)"
                        }
                    ),
                    Err(e) => println!("latest checkpoint: size {}: {e}", c.size),
                }
            } else if let Err(e) = &signature {
                println!("{e}");
            }
            for f in &report.findings {
                println!(
                    "{} leaf {} host {} seq {} boot {} time {}: {}",
                    f.problem.to_uppercase(),
                    f.leaf,
                    if f.host_id.is_empty() { "-" } else { &f.host_id },
                    f.seq,
                    if f.boot_id.is_empty() { "-" } else { &f.boot_id },
                    format_ns(f.time_unix_ns),
                    f.detail
                );
            }
            if ok {
                println!("verified: {} records intact", report.records_intact);
            } else {
                println!(
                    "TAMPERING DETECTED: {} findings",
                    report.findings.len() + usize::from(signature.is_err())
                );
                return Ok(1);
            }
        }
    }
    Ok(0)
}

fn rustls_provider() -> Result<(), std::sync::Arc<rustls::crypto::CryptoProvider>> {
    rustls::crypto::ring::default_provider().install_default()
}

fn print_report(r: &report::Report) {
    println!("Access review {} .. {}\n", r.from, r.to);
    println!("Failed logins by source");
    println!(
        "{}\n",
        table(
            &["SOURCE", "FAILURES", "USERS", "FIRST", "LAST"],
            r.failed_by_source.iter().map(|s| vec![
                s.address.clone(),
                s.failures.to_string(),
                s.users.join(","),
                s.first.clone(),
                s.last.clone()
            ])
        )
    );
    println!("Failed logins by user");
    println!(
        "{}\n",
        table(
            &["USER", "FAILURES", "SOURCES"],
            r.failed_by_user.iter().map(|u| vec![
                u.user.clone(),
                u.failures.to_string(),
                u.sources.join(",")
            ])
        )
    );
    println!("Root logins");
    println!(
        "{}\n",
        table(
            &["TIME", "HOST", "SERVICE", "FROM", "EVIDENCE", "SEQ"],
            r.root_logins.iter().map(|l| vec![
                l.time.clone(),
                l.host.clone(),
                l.service.clone(),
                l.from.clone(),
                l.evidence.clone(),
                l.seq.to_string()
            ])
        )
    );
    println!("New source addresses per user");
    println!(
        "{}\n",
        table(
            &["USER", "ADDRESS", "FIRST", "HOST"],
            r.new_sources.iter().map(|n| vec![
                n.user.clone(),
                n.address.clone(),
                n.first.clone(),
                n.host.clone()
            ])
        )
    );
    println!("Kernel/journal disagreements");
    println!(
        "{}\n",
        table(
            &["TIME", "HOST", "VERDICT", "PROGRAM", "USER", "REASON"],
            r.verdicts.iter().map(|v| vec![
                v.time.clone(),
                v.host.clone(),
                v.verdict.clone(),
                v.program.clone(),
                v.user.clone(),
                v.reason.clone()
            ])
        )
    );
    println!("Agents that lost events");
    println!(
        "{}",
        table(
            &["HOST", "KERNEL LOST", "SPOOL DROPPED", "LAST REPORT"],
            r.agent_problems.iter().map(|p| vec![
                p.host.clone(),
                p.kernel_lost.to_string(),
                p.spool_dropped.to_string(),
                p.last_report.clone()
            ])
        )
    );
}

/// A certificate's expiry for the hosts table: the date and how long is left.
fn cert_expiry(not_after_unix_s: i64, now_ns: u64) -> String {
    if not_after_unix_s <= 0 {
        return "-".into();
    }
    let at = not_after_unix_s as u64 * 1_000_000_000;
    let date = format_ns(at);
    let date = date.split(['T', ' ']).next().unwrap_or(&date).to_owned();
    if at <= now_ns {
        format!("{date} (EXPIRED)")
    } else {
        format!("{date} (in {})", format_span(at - now_ns))
    }
}
