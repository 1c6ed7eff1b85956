//! The gRPC edge: [`ingest`] (one stream per agent) and [`query`] (readers and
//! admins), over mutual TLS. Every failure becomes a status in [`status`], and
//! every store call runs off the async threads through [`blocking`].

pub mod ingest;
pub mod query;
pub mod status;

use tonic::Status;
use watchtower_proto::pb::Proof;

use crate::store::StoreError;

/// A proof's hashes on the wire.
fn proof(hashes: Vec<[u8; 32]>) -> Proof {
    Proof {
        hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
    }
}

/// Run a store call off the async threads; its failure becomes a status by
/// [`status`]'s rules.
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(status::task_failed(&e)),
    }
}
