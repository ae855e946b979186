//! The Maintenance service on the wire; each call is the server layer's
//! operation (`hub_etcdserver::maintenance`). A snapshot is built by the
//! server layer and streamed from its file here.

use std::io::Read;
use std::pin::Pin;

use futures::Stream;
use hub_proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use hub_store::snapshot::{SnapshotFile, SHA256_LEN};
use hub_store::StoreError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{status, Context};

pub struct MaintenanceService {
    ctx: Context,
}

/// Bytes of the database per Snapshot message, as etcd (`snapshotSendBufferSize`).
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

impl MaintenanceService {
    pub fn new(ctx: Context) -> Self {
        MaintenanceService { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // Listing needs a user, arming and disarming the root role (the
        // state machine checks them again when it applies the request).
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.alarm(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.ctx.caller(&req).await?;
        Ok(Response::new(self.ctx.server.status().map_err(status::from_server)?))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.ctx.caller(&req).await?;
        Ok(Response::new(self.ctx.server.defragment().await.map_err(status::from_server)?))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.ctx.caller(&req).await?;
        Ok(Response::new(self.ctx.server.hash().await.map_err(status::from_server)?))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.ctx.caller(&req).await?;
        let revision = req.into_inner().revision;
        Ok(Response::new(self.ctx.server.hash_kv(revision).await.map_err(status::from_server)?))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.ctx.caller(&req).await?;
        // etcd times a snapshot from its start until it is sent.
        let started = std::time::Instant::now();
        let (snapshot, duration) = self.ctx.server.snapshot().await.map_err(status::from_server)?;
        let version = self.ctx.server.storage_version().map_err(status::from_server)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send_snapshot(&snapshot, &version, &tx) {
                let _ = tx.blocking_send(Err(status::from_store(e)));
            }
            duration.observe(started.elapsed().as_secs_f64());
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.ctx.caller(&req).await?;
        let target = req.into_inner().target_id;
        Ok(Response::new(self.ctx.server.move_leader(target).await.map_err(status::from_server)?))
    }

    async fn downgrade(&self, req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        Ok(Response::new(self.ctx.server.downgrade(&who, req.into_inner()).await.map_err(status::from_server)?))
    }
}

/// Streams a snapshot as etcd's `Maintenance.Snapshot` does: the bbolt
/// database in 32 KiB pieces, each with the bytes still to come, then one
/// message whose blob is the sha256 of all of them (the file's trailer), which
/// `etcdctl snapshot save` stores after the database. Every message names
/// the storage `version` (etcd 3.6; `etcdctl` prints it). Stops quietly when
/// the client goes away.
fn send_snapshot(
    snapshot: &SnapshotFile,
    version: &str,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| StoreError::Snapshot(format!("send the snapshot: {what}: {e}"));
    let total = snapshot.info().total_size;
    tracing::info!(total_bytes = total, revision = snapshot.info().revision, "sending database snapshot to client");
    let message = |blob: Vec<u8>, remaining_bytes: u64| {
        Ok(SnapshotResponse { header: None, remaining_bytes, blob, version: version.to_string() })
    };
    let mut file = snapshot.open()?;
    let mut remaining = total;
    loop {
        let len = usize::try_from(remaining).map_or(SNAPSHOT_CHUNK_BYTES, |r| r.min(SNAPSHOT_CHUNK_BYTES));
        let mut blob = vec![0u8; len];
        file.read_exact(&mut blob).map_err(|e| io("read the database", e))?;
        remaining -= len as u64;
        if tx.blocking_send(message(blob, remaining)).is_err() {
            return Ok(());
        }
        if remaining == 0 {
            break;
        }
    }
    let mut sha = vec![0u8; SHA256_LEN];
    file.read_exact(&mut sha).map_err(|e| io("read the sha256 trailer", e))?;
    if tx.blocking_send(message(sha, 0)).is_ok() {
        tracing::info!(total_bytes = total, "sent database snapshot to client");
    }
    Ok(())
}
