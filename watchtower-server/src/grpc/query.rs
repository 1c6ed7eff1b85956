//! The query service, for reader and admin certificates.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use watchtower_model as model;
use watchtower_pki::Role;
use watchtower_proto::pb::query_server::Query;
use watchtower_proto::pb::{
    ConsistencyProofRequest, GetCheckpointRequest, GetSessionRequest, GetSessionResponse, HostWitnessRequest,
    InclusionProofRequest, ListAlertsRequest, ListAlertsResponse, ListHostsRequest, ListHostsResponse,
    ListOpenSessionsRequest, ListOpenSessionsResponse, LiveItem, LogEntriesRequest, LogEntriesResponse,
    LogEntry, Proof, QueryEventsRequest, QueryEventsResponse, SignedCheckpoint, StatsRequest, StatsResponse,
    SubscribeRequest, VerifyReport, VerifyRequest, WitnessReply,
};

use super::ingest::{witness, witness_too_large};
use super::status::{Refusal, fell_behind, lapsed, refuse};
use super::{blocking, proof};
use crate::counters::ServerCounters;
use crate::facets;
use crate::store::EventStore;
use crate::tamper::{self, CheckpointSigner};
use crate::tls::{Revocations, Standing, authorize};

const READERS: &[Role] = &[Role::Reader, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];
pub const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;
/// Open sessions one `ListOpenSessions` returns, at most.
const MAX_OPEN_SESSIONS: usize = 10_000;

#[derive(Clone)]
pub struct QueryService {
    pub store: Arc<EventStore>,
    pub counters: Arc<ServerCounters>,
    pub signer: Arc<CheckpointSigner>,
    pub live: broadcast::Sender<Arc<model::LiveItem>>,
    pub revocations: Arc<Revocations>,
}

/// Alerts a `ListAlerts` call returns at most.
const MAX_ALERTS: u32 = 10_000;

impl QueryService {
    /// A reader's (or admin's) call; the caller's standing, kept by live streams.
    fn reader<T>(&self, request: &Request<T>) -> Result<Option<Standing>, Status> {
        authorize(request, READERS).map_err(|status| {
            refuse(
                &self.counters,
                Refusal::NotAReader {
                    peer: request.remote_addr(),
                    denied: status.into(),
                },
            )
        })?;
        self.standing(request)
    }

    /// The caller's certificate must not have been revoked or have expired since
    /// its connection's handshake.
    fn standing<T>(&self, request: &Request<T>) -> Result<Option<Standing>, Status> {
        let standing = Standing::of(request);
        if let Some(standing) = &standing
            && let Some(why) = standing.lapsed(&self.revocations)
        {
            return Err(refuse(&self.counters, lapsed(standing, why)));
        }
        Ok(standing)
    }
}

impl QueryService {
    fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        authorize(request, ADMINS).map_err(|status| {
            refuse(
                &self.counters,
                Refusal::NotAnAdmin {
                    peer: request.remote_addr(),
                    denied: status.into(),
                },
            )
        })?;
        self.standing(request).map(|_| ())
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn query_events(
        &self,
        request: Request<QueryEventsRequest>,
    ) -> Result<Response<QueryEventsResponse>, Status> {
        self.reader(&request)?;
        let request = request.into_inner();
        let page = match request.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        } as usize;
        let filter = model::EventFilter::from(request.filter.unwrap_or_default());
        let store = self.store.clone();
        let (events, next_page_token) =
            blocking(move || store.query(&filter, page, &request.page_token)).await?;
        Ok(Response::new(QueryEventsResponse {
            events: events.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        self.reader(&request)?;
        let GetSessionRequest { host_id, session } = request.into_inner();
        let store = self.store.clone();
        let found = blocking(move || store.session(&host_id, session)).await?;
        let Some((summary, events, truncated)) = found else {
            return Err(Status::not_found(format!(
                "no session {session:016x} on that host"
            )));
        };
        Ok(Response::new(GetSessionResponse {
            summary: Some(summary.into()),
            events: events.into_iter().map(Into::into).collect(),
            truncated,
        }))
    }

    async fn list_hosts(
        &self,
        request: Request<ListHostsRequest>,
    ) -> Result<Response<ListHostsResponse>, Status> {
        self.reader(&request)?;
        let store = self.store.clone();
        let mut hosts = blocking(move || store.hosts()).await?;
        for host in &mut hosts {
            host.connected = self.counters.is_connected(&host.host_id);
        }
        Ok(Response::new(ListHostsResponse {
            hosts: hosts.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_open_sessions(
        &self,
        request: Request<ListOpenSessionsRequest>,
    ) -> Result<Response<ListOpenSessionsResponse>, Status> {
        self.reader(&request)?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => MAX_OPEN_SESSIONS,
            n => (n as usize).min(MAX_OPEN_SESSIONS),
        };
        let store = self.store.clone();
        let host = Some(request.host_id).filter(|h| !h.is_empty());
        let (sessions, truncated) =
            blocking(move || store.open_session_summaries(host.as_deref(), limit)).await?;
        Ok(Response::new(ListOpenSessionsResponse {
            sessions: sessions.into_iter().map(Into::into).collect(),
            truncated,
        }))
    }

    type SubscribeStream = ReceiverStream<Result<LiveItem, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let standing = self.reader(&request)?;
        let request = request.into_inner();
        let filter = model::EventFilter::from(request.filter.unwrap_or_default());
        let alerts = request.alerts;
        let mut live = self.live.subscribe();
        let (tx, rx) = mpsc::channel(256);
        let counters = self.counters.clone();
        let revocations = self.revocations.clone();
        counters.subscribers.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            // A tail outlives no revocation or expiry by more than a second.
            let mut standing_check = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = tx.closed() => break,
                    _ = standing_check.tick() => {
                        if let Some(standing) = &standing
                            && let Some(why) = standing.lapsed(&revocations)
                        {
                            let _ = tx.send(Err(refuse(&counters, lapsed(standing, why)))).await;
                            break;
                        }
                    }
                    received = live.recv() => match received {
                        Ok(item) => {
                            let wanted = match &*item {
                                model::LiveItem::Stored(stored) => {
                                    stored.event.as_ref().is_some_and(|e| facets::matches(&filter, e))
                                }
                                model::LiveItem::Alert(_) => alerts,
                                // The alert rules read conflicts; tails see their alert.
                                model::LiveItem::Conflict(_) => false,
                            };
                            if wanted && tx.send(Ok(LiveItem::from((*item).clone()))).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            let _ = tx.send(Err(fell_behind(missed))).await;
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            counters.subscribers.fetch_sub(1, Relaxed);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        self.reader(&request)?;
        let ListAlertsRequest {
            from_unix_ns,
            to_unix_ns,
            limit,
        } = request.into_inner();
        let to = if to_unix_ns == 0 { u64::MAX } else { to_unix_ns };
        let limit = match limit {
            0 => 1000,
            n => n.min(MAX_ALERTS),
        } as usize;
        let store = self.store.clone();
        let alerts = blocking(move || store.alerts(from_unix_ns, to, limit)).await?;
        Ok(Response::new(ListAlertsResponse {
            alerts: alerts.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<SignedCheckpoint>, Status> {
        self.reader(&request)?;
        one_log(request.get_ref().shard)?;
        let store = self.store.clone();
        match blocking(move || store.latest_checkpoint()).await? {
            Some(signed) => Ok(Response::new(signed.into())),
            None => Err(Status::not_found("the log has not been signed yet")),
        }
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<Proof>, Status> {
        self.reader(&request)?;
        let InclusionProofRequest {
            index,
            tree_size,
            shard,
        } = request.into_inner();
        one_log(shard)?;
        let store = self.store.clone();
        let hashes = blocking(move || store.inclusion_proof(index, tree_size)).await?;
        Ok(Response::new(proof(hashes)))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<ConsistencyProofRequest>,
    ) -> Result<Response<Proof>, Status> {
        self.reader(&request)?;
        let ConsistencyProofRequest {
            old_size,
            new_size,
            shard,
        } = request.into_inner();
        one_log(shard)?;
        let store = self.store.clone();
        let hashes = blocking(move || store.consistency_proof(old_size, new_size)).await?;
        Ok(Response::new(proof(hashes)))
    }

    async fn get_log_entries(
        &self,
        request: Request<LogEntriesRequest>,
    ) -> Result<Response<LogEntriesResponse>, Status> {
        self.reader(&request)?;
        let LogEntriesRequest { start, count, shard } = request.into_inner();
        one_log(shard)?;
        let store = self.store.clone();
        let (entries, log_size) = blocking(move || {
            let entries = store.log_entries(start, count)?;
            Ok((entries, store.log_head().size))
        })
        .await?;
        let entries = entries
            .into_iter()
            .map(|e| LogEntry {
                index: e.index,
                entry: e.entry,
                record: e.record.map(Into::into),
            })
            .collect();
        Ok(Response::new(LogEntriesResponse { entries, log_size }))
    }

    async fn verify(&self, request: Request<VerifyRequest>) -> Result<Response<VerifyReport>, Status> {
        self.admin(&request)?;
        let VerifyRequest { host_id: host, shard } = request.into_inner();
        one_log(shard)?;
        let store = self.store.clone();
        let verifier = watchtower_tlog::CheckpointVerifier::new(self.signer.verifier_key())
            .map_err(|e| Status::internal(e.to_string()))?;
        let report =
            blocking(move || tamper::verify(&store, (!host.is_empty()).then_some(host.as_str()), &verifier))
                .await?;
        if report.findings.is_empty() {
            tracing::info!(
                leaves = report.leaves_checked,
                "verify: the log and the records agree"
            );
        } else {
            tracing::error!(findings = report.findings.len(), "verify: TAMPERING DETECTED");
        }
        Ok(Response::new(report.into()))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        self.reader(&request)?;
        let store = self.store.clone();
        let (hosts, oldest) = blocking(move || Ok((store.hosts()?, store.oldest_event()?))).await?;
        let c = &self.counters;
        Ok(Response::new(StatsResponse {
            events_stored: hosts.iter().map(|h| h.events_stored).sum(),
            duplicates_dropped: hosts.iter().map(|h| h.duplicates).sum(),
            batches: c.batches.load(Relaxed),
            rejected: c.rejected().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            hosts: hosts.len() as u64,
            connected_agents: c.connected_hosts(),
            subscribers: c.subscribers.load(Relaxed),
            tls_handshake_failures: c.tls_failures.load(Relaxed),
            retention_removed: c.retention_removed.load(Relaxed),
            retention_cutoff_unix_ns: c.retention_cutoff.load(Relaxed),
            oldest_event_unix_ns: oldest.unwrap_or(0),
            logs: 1,
        }))
    }

    async fn witness_host(
        &self,
        request: Request<HostWitnessRequest>,
    ) -> Result<Response<WitnessReply>, Status> {
        self.reader(&request)?;
        let HostWitnessRequest { host_id, request } = request.into_inner();
        let request = request.unwrap_or_default();
        if host_id.is_empty() {
            return Err(Status::invalid_argument("a witness request names its host"));
        }
        if let Some(refusal) = witness_too_large(&host_id, &request) {
            return Err(refuse(&self.counters, refusal));
        }
        let store = self.store.clone();
        let verifier_key = self.signer.verifier_key().to_owned();
        match blocking(move || witness(&store, verifier_key, &host_id, &request)).await? {
            Some(reply) => Ok(Response::new(reply)),
            None => Err(Status::unavailable("the log has not been signed yet")),
        }
    }
}

/// A single server keeps one log: shard 0.
fn one_log(shard: u32) -> Result<(), Status> {
    if shard == 0 {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "this server keeps one tamper-evidence log (shard 0), not shard {shard}"
        )))
    }
}
