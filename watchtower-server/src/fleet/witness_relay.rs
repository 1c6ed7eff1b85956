//! The query node's side of the agents' witness: an agent of a fleet (its Acks
//! come from a front door, with `receipts_later`) asks here for its receipts
//! and proofs. The call is checked as a single server checks it (an agent
//! certificate in good standing, the request within the limit), then passed to
//! the indexer of the host's shard as `WitnessHost` for the certified host, so
//! an agent can only ask about its own events. The indexer's reply is returned
//! as it is: it is signed by the shard's key, so this node cannot forge it.

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use watchtower_pki::Role;
use watchtower_proto::pb::ingest_server::Ingest;
use watchtower_proto::pb::{AgentMessage, HostWitnessRequest, ServerMessage, WitnessReply, WitnessRequest};

use super::query_node::QueryNode;
use crate::grpc::ingest::witness_too_large;
use crate::grpc::status::{Refusal, lapsed, refuse};
use crate::tls::{Standing, authorize};

#[tonic::async_trait]
impl Ingest for QueryNode {
    type StreamStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn stream(
        &self,
        _request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        Err(Status::unimplemented(
            "this is a fleet query node: agents send their events to a front door",
        ))
    }

    async fn witness(&self, request: Request<WitnessRequest>) -> Result<Response<WitnessReply>, Status> {
        let identity = authorize(&request, &[Role::Agent]).map_err(|status| {
            refuse(
                &self.counters,
                Refusal::NotAnAgent {
                    peer: request.remote_addr(),
                    denied: status.into(),
                },
            )
        })?;
        if let Some(standing) = Standing::of(&request)
            && let Some(why) = standing.lapsed(&self.revocations)
        {
            return Err(refuse(&self.counters, lapsed(&standing, why)));
        }
        let request = request.into_inner();
        if let Some(refusal) = witness_too_large(&identity.name, &request) {
            return Err(refuse(&self.counters, refusal));
        }
        self.witness_of(HostWitnessRequest {
            host_id: identity.name,
            request: Some(request),
        })
        .await
    }
}
