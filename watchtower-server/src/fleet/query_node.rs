//! The query node: one Query service over every shard. It checks the caller as
//! a single server does (a reader or admin certificate), asks each shard's
//! indexer with its own certificate, and merges the answers: events in time
//! order across shards (page by page, with a token that holds each shard's
//! place), a session from its host's shard, hosts, open sessions and alerts of
//! all shards, stats summed, and live tails of all shards in one stream.
//!
//! A shard that does not answer fails the call (`UNAVAILABLE`, naming the
//! shard): a partial answer would look like a complete one. Each shard keeps its
//! own tamper-evidence log and signs it with its own key: the log calls
//! (checkpoint, proofs, entries, verify) name their shard (`shard`, from 0 to
//! `StatsResponse.logs`) and are passed to its indexer as they are, so a client
//! checks every shard's log here without trusting this node. Agents' `Witness`
//! calls ([`super::witness_relay`]) go to the indexer of their host's shard.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use watchtower_pki::Role;
use watchtower_proto::pb::ingest_server::IngestServer;
use watchtower_proto::pb::query_client::QueryClient;
use watchtower_proto::pb::query_server::{Query, QueryServer};
use watchtower_proto::pb::{
    ConsistencyProofRequest, GetCheckpointRequest, GetSessionRequest, GetSessionResponse, HostWitnessRequest,
    InclusionProofRequest, ListAlertsRequest, ListAlertsResponse, ListHostsRequest, ListHostsResponse,
    ListOpenSessionsRequest, ListOpenSessionsResponse, LiveItem, LogEntriesRequest, LogEntriesResponse,
    Proof, QueryEventsRequest, QueryEventsResponse, SignedCheckpoint, StatsRequest, StatsResponse,
    StoredEvent, SubscribeRequest, VerifyReport, VerifyRequest, WitnessReply,
};

use crate::config::ServerConfig;
use crate::counters::ServerCounters;
use crate::grpc::status::{Refusal, lapsed, refuse};
use crate::tls::{self, Revocations, Standing, authorize};

/// Events one merged page holds at most (each shard is asked for up to twice
/// this, within the indexers' own limit of 1000).
const MAX_MERGED_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;

#[derive(Clone)]
pub struct QueryNode {
    /// The indexers, in shard order.
    pub shards: Vec<QueryClient<Channel>>,
    pub counters: Arc<ServerCounters>,
    pub revocations: Arc<Revocations>,
}

/// Where a merged page left one shard: its own page token and how many of
/// that page's events were already returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ShardCursor {
    token: Vec<u8>,
    skip: u32,
    done: bool,
}

/// The next page of one shard, after the events already returned.
struct ShardPage {
    events: Vec<StoredEvent>,
    next_token: Vec<u8>,
}

fn key(event: &StoredEvent) -> (u64, &str, u64) {
    event
        .event
        .as_ref()
        .map_or((0, "", 0), |e| (e.time_unix_ns, e.host_id.as_str(), e.seq))
}

/// Merge shards' pages in time order, up to `page` events and
/// [`crate::store::MAX_PAGE_BYTES`] of them (as a single server's page). A shard
/// whose page runs out while it has more ends the merge (what it holds next may
/// come first).
fn merge(cursors: &mut [ShardCursor], pages: &[Option<ShardPage>], page: usize) -> Vec<StoredEvent> {
    use prost::Message as _;
    let mut used = vec![0usize; pages.len()];
    let mut merged = Vec::new();
    let mut bytes = 0usize;
    while merged.len() < page && bytes < crate::store::MAX_PAGE_BYTES {
        let mut best: Option<usize> = None;
        let mut blocked = false;
        for (shard, shard_page) in pages.iter().enumerate() {
            let Some(shard_page) = shard_page else { continue };
            match shard_page.events.get(used[shard]) {
                Some(event)
                    if best.is_none_or(|b| {
                        key(event) < key(&pages[b].as_ref().expect("a page").events[used[b]])
                    }) =>
                {
                    best = Some(shard);
                }
                None if !shard_page.next_token.is_empty() => blocked = true,
                Some(_) | None => {}
            }
        }
        match best {
            Some(shard) if !blocked => {
                let event = &pages[shard].as_ref().expect("a page").events[used[shard]];
                bytes += event.encoded_len();
                merged.push(event.clone());
                used[shard] += 1;
            }
            _ => break,
        }
    }
    for ((cursor, shard_page), used) in cursors.iter_mut().zip(pages).zip(used) {
        let Some(shard_page) = shard_page else { continue };
        if used == shard_page.events.len() {
            cursor.skip = 0;
            cursor.done = shard_page.next_token.is_empty();
            cursor.token.clone_from(&shard_page.next_token);
        } else {
            cursor.skip += used as u32;
        }
    }
    merged
}

impl QueryNode {
    fn reader<T>(&self, request: &Request<T>, roles: &[Role]) -> Result<Option<Standing>, Status> {
        authorize(request, roles).map_err(|status| {
            refuse(
                &self.counters,
                Refusal::NotAReader {
                    peer: request.remote_addr(),
                    denied: status.into(),
                },
            )
        })?;
        let standing = Standing::of(request);
        if let Some(standing) = &standing
            && let Some(why) = standing.lapsed(&self.revocations)
        {
            return Err(refuse(&self.counters, lapsed(standing, why)));
        }
        Ok(standing)
    }

    /// `call` on every shard; the first failure names its shard.
    async fn each<T, F, Fut>(&self, call: F) -> Result<Vec<T>, Status>
    where
        F: Fn(QueryClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let mut answers = Vec::with_capacity(self.shards.len());
        for (shard, client) in self.shards.iter().enumerate() {
            answers.push(
                call(client.clone())
                    .await
                    .map_err(|s| shard_failed(shard, &s))?
                    .into_inner(),
            );
        }
        Ok(answers)
    }
}

/// A shard's failure, passed on with its shard named.
fn shard_failed(shard: usize, status: &Status) -> Status {
    tracing::warn!(shard, code = ?status.code(), error = status.message(), "query node: a shard did not answer");
    Status::new(status.code(), format!("shard {shard}: {}", status.message()))
}

const READERS: &[Role] = &[Role::Reader, Role::Admin];

#[tonic::async_trait]
impl Query for QueryNode {
    async fn query_events(
        &self,
        request: Request<QueryEventsRequest>,
    ) -> Result<Response<QueryEventsResponse>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let page = match request.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_MERGED_PAGE),
        };
        let mut cursors: Vec<ShardCursor> = if request.page_token.is_empty() {
            vec![ShardCursor::default(); self.shards.len()]
        } else {
            serde_json::from_slice(&request.page_token)
                .ok()
                .filter(|c: &Vec<ShardCursor>| c.len() == self.shards.len())
                .ok_or_else(|| Status::invalid_argument("page_token is not one this query node gave"))?
        };
        let mut pages = Vec::with_capacity(self.shards.len());
        for (shard, (client, cursor)) in self.shards.iter().zip(&cursors).enumerate() {
            if cursor.done {
                pages.push(None);
                continue;
            }
            let answer = client
                .clone()
                .query_events(QueryEventsRequest {
                    filter: request.filter.clone(),
                    page_size: page + cursor.skip,
                    page_token: cursor.token.clone(),
                })
                .await
                .map_err(|s| shard_failed(shard, &s))?
                .into_inner();
            pages.push(Some(ShardPage {
                events: answer.events.into_iter().skip(cursor.skip as usize).collect(),
                next_token: answer.next_page_token,
            }));
        }
        let events = merge(&mut cursors, &pages, page as usize);
        let next_page_token = if cursors.iter().all(|c| c.done) {
            Vec::new()
        } else {
            serde_json::to_vec(&cursors).expect("cursors serialize")
        };
        Ok(Response::new(QueryEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let shard = super::shard_of(&request.host_id, self.shards.len() as u32) as usize;
        self.shards[shard]
            .clone()
            .get_session(request)
            .await
            .map_err(|s| shard_failed(shard, &s))
    }

    async fn list_hosts(
        &self,
        request: Request<ListHostsRequest>,
    ) -> Result<Response<ListHostsResponse>, Status> {
        self.reader(&request, READERS)?;
        let answers = self
            .each(|mut c| async move { c.list_hosts(ListHostsRequest {}).await })
            .await?;
        let mut hosts: Vec<_> = answers.into_iter().flat_map(|a| a.hosts).collect();
        hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        Ok(Response::new(ListHostsResponse { hosts }))
    }

    async fn list_open_sessions(
        &self,
        request: Request<ListOpenSessionsRequest>,
    ) -> Result<Response<ListOpenSessionsResponse>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let answers = self
            .each(|mut c| {
                let request = request.clone();
                async move { c.list_open_sessions(request).await }
            })
            .await?;
        let limit = match request.limit {
            0 => 10_000,
            n => n as usize,
        };
        let mut truncated = answers.iter().any(|a| a.truncated);
        let mut sessions: Vec<_> = answers.into_iter().flat_map(|a| a.sessions).collect();
        sessions.sort_by_key(|s| s.start_unix_ns);
        if sessions.len() > limit {
            sessions.truncate(limit);
            truncated = true;
        }
        Ok(Response::new(ListOpenSessionsResponse { sessions, truncated }))
    }

    type SubscribeStream = ReceiverStream<Result<LiveItem, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let standing = self.reader(&request, READERS)?;
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let mut tails = Vec::with_capacity(self.shards.len());
        for (shard, client) in self.shards.iter().enumerate() {
            let tail = client
                .clone()
                .subscribe(request.clone())
                .await
                .map_err(|s| shard_failed(shard, &s))?
                .into_inner();
            tails.push(tail);
        }
        for (shard, mut tail) in tails.into_iter().enumerate() {
            let tx = tx.clone();
            let standing = standing.clone();
            let revocations = self.revocations.clone();
            let counters = self.counters.clone();
            tokio::spawn(async move {
                while let Some(item) = tail.next().await {
                    if let Some(standing) = &standing
                        && let Some(why) = standing.lapsed(&revocations)
                    {
                        let _ = tx.send(Err(refuse(&counters, lapsed(standing, why)))).await;
                        return;
                    }
                    // A shard's tail that breaks ends the whole tail: it would be incomplete.
                    let item = item.map_err(|s| shard_failed(shard, &s));
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
                let _ = tx
                    .send(Err(Status::unavailable(format!(
                        "shard {shard}: its live tail ended"
                    ))))
                    .await;
            });
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        self.reader(&request, READERS)?;
        let answers = self
            .each(|mut c| async move { c.stats(StatsRequest {}).await })
            .await?;
        let mut total = StatsResponse::default();
        for a in answers {
            total.events_stored += a.events_stored;
            total.duplicates_dropped += a.duplicates_dropped;
            total.batches += a.batches;
            for (reason, n) in a.rejected {
                *total.rejected.entry(reason).or_default() += n;
            }
            total.hosts += a.hosts;
            total.connected_agents += a.connected_agents;
            total.subscribers += a.subscribers;
            total.tls_handshake_failures += a.tls_handshake_failures;
            total.retention_removed += a.retention_removed;
            total.retention_cutoff_unix_ns = total.retention_cutoff_unix_ns.max(a.retention_cutoff_unix_ns);
            if a.oldest_event_unix_ns != 0
                && (total.oldest_event_unix_ns == 0 || a.oldest_event_unix_ns < total.oldest_event_unix_ns)
            {
                total.oldest_event_unix_ns = a.oldest_event_unix_ns;
            }
        }
        total.logs = self.shards.len() as u32;
        Ok(Response::new(total))
    }

    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 1000,
            n => n.min(10_000) as usize,
        };
        let answers = self
            .each(|mut c| async move { c.list_alerts(request).await })
            .await?;
        let mut alerts: Vec<_> = answers.into_iter().flat_map(|a| a.alerts).collect();
        alerts.sort_by_key(|a| a.time_unix_ns);
        // The newest `limit`, oldest first.
        let alerts = alerts.split_off(alerts.len().saturating_sub(limit));
        Ok(Response::new(ListAlertsResponse { alerts }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<SignedCheckpoint>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let (shard, mut client) = self.log_of(request.shard)?;
        client
            .get_checkpoint(GetCheckpointRequest { shard: 0 })
            .await
            .map_err(|s| shard_failed(shard, &s))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<Proof>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let (shard, mut client) = self.log_of(request.shard)?;
        client
            .get_inclusion_proof(InclusionProofRequest { shard: 0, ..request })
            .await
            .map_err(|s| shard_failed(shard, &s))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<ConsistencyProofRequest>,
    ) -> Result<Response<Proof>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let (shard, mut client) = self.log_of(request.shard)?;
        client
            .get_consistency_proof(ConsistencyProofRequest { shard: 0, ..request })
            .await
            .map_err(|s| shard_failed(shard, &s))
    }

    async fn get_log_entries(
        &self,
        request: Request<LogEntriesRequest>,
    ) -> Result<Response<LogEntriesResponse>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        let (shard, mut client) = self.log_of(request.shard)?;
        client
            .get_log_entries(LogEntriesRequest { shard: 0, ..request })
            .await
            .map_err(|s| shard_failed(shard, &s))
    }

    /// The shard's own audit. The query node's certificate must be an admin's for
    /// the indexer to run it; the caller must be one here.
    async fn verify(&self, request: Request<VerifyRequest>) -> Result<Response<VerifyReport>, Status> {
        self.reader(&request, &[Role::Admin])?;
        let request = request.into_inner();
        let (shard, mut client) = self.log_of(request.shard)?;
        client
            .verify(VerifyRequest { shard: 0, ..request })
            .await
            .map_err(|s| shard_failed(shard, &s))
    }

    async fn witness_host(
        &self,
        request: Request<HostWitnessRequest>,
    ) -> Result<Response<WitnessReply>, Status> {
        self.reader(&request, READERS)?;
        let request = request.into_inner();
        self.witness_of(request).await
    }
}

impl QueryNode {
    /// The indexer that keeps log `shard`.
    fn log_of(&self, shard: u32) -> Result<(usize, QueryClient<Channel>), Status> {
        let index = shard as usize;
        let client = self.shards.get(index).ok_or_else(|| {
            Status::invalid_argument(format!(
                "there is no shard {shard}: this fleet has {} (StatsResponse.logs)",
                self.shards.len()
            ))
        })?;
        Ok((index, client.clone()))
    }

    /// What the indexer of `host_id`'s shard answers that host's agent.
    pub(super) async fn witness_of(
        &self,
        request: HostWitnessRequest,
    ) -> Result<Response<WitnessReply>, Status> {
        if request.host_id.is_empty() {
            return Err(Status::invalid_argument("a witness request names its host"));
        }
        let shard = super::shard_of(&request.host_id, self.shards.len() as u32) as usize;
        self.shards[shard]
            .clone()
            .witness_host(request)
            .await
            .map_err(|s| shard_failed(shard, &s))
    }
}

/// Serve the merged Query service until `shutdown`.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let fleet = &config.fleet;
    let (Some(cert), Some(key)) = (&fleet.indexer_cert, &fleet.indexer_key) else {
        anyhow::bail!(
            "a query node needs fleet.indexer_cert and fleet.indexer_key (a reader or admin certificate)"
        );
    };
    let mut shards = Vec::with_capacity(fleet.indexers.len());
    for address in &fleet.indexers {
        let server_name = fleet
            .indexer_server_name
            .clone()
            .unwrap_or_else(|| host_of(address));
        let client = watchtower_pki::ClientTls::from_files(&config.tls.ca, cert, key, server_name)?;
        let channel = client
            .endpoint(address, Duration::from_secs(5))?
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        shards.push(QueryClient::new(channel).max_decoding_message_size(config.ingest.max_message_bytes));
    }
    let counters = Arc::new(ServerCounters::default());
    let revocations = Revocations::load(config.tls.revoked.clone());
    let revocation_watch = revocations.watch();
    let node = QueryNode {
        shards,
        counters: counters.clone(),
        revocations: revocations.clone(),
    };
    let (listener, admission, tls) = super::listen(&config, &counters).await?;
    tracing::info!(address = %listener.local_addr()?, shards = fleet.indexers.len(), "watchtower-server query node listening (mutual TLS)");
    let result = super::grpc_server()
        .add_service(IngestServer::new(node.clone()))
        .add_service(QueryServer::new(node).max_decoding_message_size(config.ingest.max_message_bytes))
        .serve_with_incoming_shutdown(
            tls::incoming(listener, tls, admission, counters, revocations),
            shutdown,
        )
        .await;
    revocation_watch.abort();
    result?;
    Ok(())
}

/// The host part of `https://host:port`.
fn host_of(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        None => authority.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_proto::pb::Event;

    fn stored(host: &str, seq: u64, time: u64) -> StoredEvent {
        StoredEvent {
            event: Some(Event {
                host_id: host.into(),
                seq,
                time_unix_ns: time,
                ..Event::default()
            }),
            ..StoredEvent::default()
        }
    }

    fn seqs(events: &[StoredEvent]) -> Vec<(String, u64)> {
        events
            .iter()
            .map(|e| e.event.as_ref().map(|e| (e.host_id.clone(), e.seq)).unwrap())
            .collect()
    }

    #[test]
    fn pages_merge_in_time_order_and_a_shard_that_runs_out_holds_the_rest_back() {
        let mut cursors = vec![ShardCursor::default(); 2];
        let pages = vec![
            Some(ShardPage {
                events: vec![stored("a", 1, 10), stored("a", 2, 30)],
                next_token: b"a-next".to_vec(),
            }),
            Some(ShardPage {
                events: vec![stored("b", 1, 20), stored("b", 2, 40)],
                next_token: Vec::new(),
            }),
        ];
        let merged = merge(&mut cursors, &pages, 10);
        // b@40 waits: shard 0 has more, and its next event may be earlier.
        assert_eq!(
            seqs(&merged),
            vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
        );
        assert_eq!(
            cursors,
            vec![
                ShardCursor {
                    token: b"a-next".to_vec(),
                    skip: 0,
                    done: false
                },
                ShardCursor {
                    token: Vec::new(),
                    skip: 1,
                    done: false
                },
            ]
        );
    }

    #[test]
    fn a_full_page_keeps_each_shards_place() {
        let mut cursors = vec![ShardCursor::default(); 2];
        let pages = vec![
            Some(ShardPage {
                events: vec![stored("a", 1, 10), stored("a", 2, 11), stored("a", 3, 12)],
                next_token: Vec::new(),
            }),
            None,
        ];
        cursors[1].done = true;
        let merged = merge(&mut cursors, &pages, 2);
        assert_eq!(seqs(&merged), vec![("a".into(), 1), ("a".into(), 2)]);
        assert_eq!((cursors[0].skip, cursors[0].done), (2, false));
        assert!(cursors[1].done);
    }

    #[test]
    fn a_merged_page_ends_at_its_byte_budget_and_keeps_each_shards_place() {
        let large = |host: &str, seq: u64, time: u64| {
            let mut event = stored(host, seq, time);
            event.event.as_mut().unwrap().boot_id = "x".repeat(1 << 20);
            event
        };
        let mut cursors = vec![ShardCursor::default(); 2];
        let pages = vec![
            Some(ShardPage {
                events: (1..=3).map(|n| large("a", n, n * 2)).collect(),
                next_token: Vec::new(),
            }),
            Some(ShardPage {
                events: (1..=3).map(|n| large("b", n, n * 2 + 1)).collect(),
                next_token: Vec::new(),
            }),
        ];
        // 1 MiB each: the third reaches the 3 MiB budget.
        let merged = merge(&mut cursors, &pages, 100);
        assert_eq!(
            seqs(&merged),
            vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
        );
        assert_eq!((cursors[0].skip, cursors[1].skip), (2, 1));
        let rest = merge(
            &mut cursors,
            &[
                Some(ShardPage {
                    events: pages[0].as_ref().unwrap().events[2..].to_vec(),
                    next_token: Vec::new(),
                }),
                Some(ShardPage {
                    events: pages[1].as_ref().unwrap().events[1..].to_vec(),
                    next_token: Vec::new(),
                }),
            ],
            100,
        );
        assert_eq!(
            seqs(&rest),
            vec![("b".into(), 2), ("a".into(), 3), ("b".into(), 3)]
        );
    }

    #[test]
    fn the_indexers_name_comes_from_its_address() {
        assert_eq!(host_of("https://indexer-0.example:7443"), "indexer-0.example");
        assert_eq!(host_of("https://127.0.0.1:7443"), "127.0.0.1");
        assert_eq!(host_of("https://[::1]:7443/"), "::1");
    }
}
