//! The gRPC client of the server's query service: one mutual-TLS connection, events
//! page by page, one method per call, and the server's errors as one line. The
//! edge of the wire: requests are built from, and replies turned into, the domain
//! types of watchtower-model, which the commands work with.

use std::time::Duration;

use anyhow::Context as _;
use tonic::Streaming;
use tonic::transport::Channel;
use watchtower_model::{
    Alert, Event, EventFilter, HostInfo, SessionSummary, SignedCheckpoint, StoredEvent, VerifyReport,
};
use watchtower_pki::ClientTls;
use watchtower_proto::pb::query_client::QueryClient;
use watchtower_proto::pb::{
    self, ConsistencyProofRequest, GetCheckpointRequest, GetSessionRequest, ListAlertsRequest,
    ListHostsRequest, ListOpenSessionsRequest, LogEntriesRequest, QueryEventsRequest, StatsRequest,
    StatsResponse, SubscribeRequest, VerifyRequest,
};

use crate::Cli;

/// A server error as one line.
#[expect(clippy::needless_pass_by_value, reason = "used as `map_err(status)`")]
pub fn status(e: tonic::Status) -> anyhow::Error {
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

/// One session: its summary and its events, oldest first.
/// Its JSON is the wire reply's: `summary`, `events`, `truncated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionTree {
    pub summary: Option<SessionSummary>,
    pub events: Vec<StoredEvent>,
    /// The session has more events than the server sends at once.
    pub truncated: bool,
}

/// One leaf of the log: its index, its canonical JSON entry as hashed, and the
/// record it names as stored (`None` when it was removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    pub record: Option<StoredEvent>,
}

fn all<W, D: From<W>>(wire: Vec<W>) -> Vec<D> {
    wire.into_iter().map(D::from).collect()
}

/// A connection to the server's query service.
pub struct Client {
    query: QueryClient<Channel>,
    /// The tamper-evidence log the log calls address: 0 on a single server, a
    /// shard of a fleet's query node (see [`Client::logs`]).
    pub shard: u32,
}

impl Client {
    /// Connect to `--server` with `--ca`, `--cert` and `--key`.
    pub async fn connect(cli: &Cli) -> anyhow::Result<Client> {
        let tls = ClientTls::from_files(&cli.ca, &cli.cert, &cli.key, cli.server_name.clone())?;
        let channel = tls
            .endpoint(&cli.server, Duration::from_secs(10))?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", cli.server))?;
        Ok(Client {
            query: QueryClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            shard: 0,
        })
    }

    /// Every matching event, page by page, to `each` (which returns false to stop).
    pub async fn events(
        &mut self,
        filter: &EventFilter,
        mut each: impl FnMut(StoredEvent) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let mut token = Vec::new();
        loop {
            let (events, next) = self.page(filter, token).await?;
            for event in events {
                if !each(event)? {
                    return Ok(());
                }
            }
            if next.is_empty() {
                return Ok(());
            }
            token = next;
        }
    }

    /// One page of matching events (up to 1,000) from `token` (empty: the
    /// first), and the token of the next (empty: none).
    pub async fn page(
        &mut self,
        filter: &EventFilter,
        token: Vec<u8>,
    ) -> anyhow::Result<(Vec<StoredEvent>, Vec<u8>)> {
        let page = self
            .query
            .query_events(QueryEventsRequest {
                filter: Some(filter.clone().into()),
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(status)?
            .into_inner();
        Ok((all(page.events), page.next_page_token))
    }

    /// Every matching event.
    pub async fn collect(&mut self, filter: &EventFilter) -> anyhow::Result<Vec<Event>> {
        let mut out = Vec::new();
        self.events(filter, |s| {
            out.extend(s.event);
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    /// One session: its summary and its events.
    pub async fn session(&mut self, host_id: &str, session: u64) -> anyhow::Result<SessionTree> {
        let reply = self
            .query
            .get_session(GetSessionRequest {
                host_id: host_id.to_owned(),
                session,
            })
            .await
            .map_err(status)?
            .into_inner();
        Ok(SessionTree {
            summary: reply.summary.map(Into::into),
            events: all(reply.events),
            truncated: reply.truncated,
        })
    }

    pub async fn hosts(&mut self) -> anyhow::Result<Vec<HostInfo>> {
        Ok(all(self
            .query
            .list_hosts(ListHostsRequest {})
            .await
            .map_err(status)?
            .into_inner()
            .hosts))
    }

    /// The sessions open now (of `host`, or every host), and whether there are more.
    pub async fn open_sessions(&mut self, host: Option<&str>) -> anyhow::Result<(Vec<SessionSummary>, bool)> {
        let reply = self
            .query
            .list_open_sessions(ListOpenSessionsRequest {
                host_id: host.unwrap_or_default().to_owned(),
                limit: 0,
            })
            .await
            .map_err(status)?
            .into_inner();
        Ok((all(reply.sessions), reply.truncated))
    }

    /// Events as they are stored (and alerts as they are raised, if `alerts`);
    /// each item becomes a [`watchtower_model::LiveItem`] with `try_from`.
    pub async fn subscribe(
        &mut self,
        filter: EventFilter,
        alerts: bool,
    ) -> anyhow::Result<Streaming<pb::LiveItem>> {
        Ok(self
            .query
            .subscribe(SubscribeRequest {
                filter: Some(filter.into()),
                alerts,
            })
            .await
            .map_err(status)?
            .into_inner())
    }

    pub async fn stats(&mut self) -> anyhow::Result<StatsResponse> {
        Ok(self
            .query
            .stats(StatsRequest {})
            .await
            .map_err(status)?
            .into_inner())
    }

    pub async fn alerts(
        &mut self,
        from_unix_ns: u64,
        to_unix_ns: u64,
        limit: u32,
    ) -> anyhow::Result<Vec<Alert>> {
        Ok(all(self
            .query
            .list_alerts(ListAlertsRequest {
                from_unix_ns,
                to_unix_ns,
                limit,
            })
            .await
            .map_err(status)?
            .into_inner()
            .alerts))
    }

    /// The server's check of the tamper-evidence log (of one host's records, or all).
    pub async fn verify(&mut self, host_id: String) -> anyhow::Result<VerifyReport> {
        Ok(self
            .query
            .verify(VerifyRequest {
                host_id,
                shard: self.shard,
            })
            .await
            .map_err(status)?
            .into_inner()
            .into())
    }

    /// How many tamper-evidence logs the server keeps: 1 for a single server (or
    /// one older than the field), one per shard for a fleet's query node.
    pub async fn logs(&mut self) -> anyhow::Result<u32> {
        Ok(self.stats().await?.logs.max(1))
    }

    /// The newest signed checkpoint of the log.
    pub async fn checkpoint(&mut self) -> anyhow::Result<SignedCheckpoint> {
        Ok(self
            .query
            .get_checkpoint(GetCheckpointRequest { shard: self.shard })
            .await
            .map_err(status)?
            .into_inner()
            .into())
    }

    /// The proof that the tree of `old_size` leaves is a prefix of the tree of `new_size`.
    pub async fn consistency_proof(&mut self, old_size: u64, new_size: u64) -> anyhow::Result<Vec<[u8; 32]>> {
        let proof = self
            .query
            .get_consistency_proof(ConsistencyProofRequest {
                old_size,
                new_size,
                shard: self.shard,
            })
            .await
            .map_err(status)?
            .into_inner();
        proof
            .hashes
            .into_iter()
            .map(|h| {
                <[u8; 32]>::try_from(h)
                    .map_err(|_| anyhow::anyhow!("the server sent a proof hash that is not 32 bytes"))
            })
            .collect()
    }

    /// Leaves `0..size` with their entries and records, page by page.
    pub async fn log_entries(&mut self, size: u64) -> anyhow::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let start = out.len() as u64;
            let page = self
                .query
                .get_log_entries(LogEntriesRequest {
                    start,
                    count: 1000,
                    shard: self.shard,
                })
                .await
                .map_err(status)?
                .into_inner();
            if page.entries.is_empty() {
                break;
            }
            out.extend(
                page.entries
                    .into_iter()
                    .take((size - start) as usize)
                    .map(|e| LogEntry {
                        index: e.index,
                        entry: e.entry,
                        record: e.record.map(Into::into),
                    }),
            );
        }
        Ok(out)
    }
}
