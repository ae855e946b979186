//! The Maintenance service: member status, alarms, defragmentation, the
//! consistency hashes (HashKV, Hash), the Snapshot stream and leader transfer.
//!
//! The hashes and the snapshot read the whole backend; they run on a blocking
//! thread with the state machine locked, so they see one state and no
//! command is applied meanwhile (etcd holds its backend read lock the same
//! way). A snapshot holds the lock only while its file is built, never while
//! a client downloads it.

use std::io::Read;
use std::pin::Pin;

use futures::Stream;
use hub_proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    InternalRaftRequest, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use hub_store::snapshot::{SnapshotFile, SHA256_LEN};
use hub_store::{EtcdError, Response as StoreResponse, StateMachine, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{status, Context};

/// The etcd release hub reports by default (Status, `/version`,
/// `etcd_server_version`): the reference whose API and behaviour it
/// reproduces. `--report-etcd-version` may name a later 3.4 patch release up
/// to [`NEWEST_ETCD_VERSION`], whose behaviour hub also has.
pub const ETCD_VERSION: &str = "3.4.23";

/// The newest etcd release whose behaviour hub has: 3.4.23's API with the
/// watch-progress fixes of 3.4.31 (see watch.rs). The Kubernetes API server
/// turns on progress requests, and with them consistent reads from its watch
/// cache, only from 3.4.31 on.
pub const NEWEST_ETCD_VERSION: &str = "3.4.31";

pub struct MaintenanceService {
    ctx: Context,
}

/// Bytes of the database per Snapshot message, as etcd (`snapshotSendBufferSize`).
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

impl MaintenanceService {
    pub fn new(ctx: Context) -> Self {
        MaintenanceService { ctx }
    }

    /// Runs `f` on a blocking thread with the state machine locked.
    async fn with_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let node = self.ctx.node.clone();
        tokio::task::spawn_blocking(move || f(&node.state().lock()))
            .await
            .map_err(|e| Status::internal(format!("hub: {e}")))?
            .map_err(status::from_store)
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // Listing needs a user, arming and disarming the root role (the
        // state machine checks them again when it applies the request).
        let who = self.ctx.caller(&req).await?;
        // Every action goes through raft (as etcd's), so a list is as of
        // every entry before it. etcd's answer carries no header.
        let req = InternalRaftRequest { alarm: Some(req.into_inner()), ..Default::default() };
        match self.ctx.propose(&who, req).await? {
            StoreResponse::Alarm(resp) => Ok(Response::new(AlarmResponse { header: None, alarms: resp.alarms })),
            other => Err(Status::internal(format!("unexpected apply result {other:?}"))),
        }
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.ctx.caller(&req).await?;
        let (db_size, db_size_in_use, applied, alarms) = {
            let sm = self.ctx.node.state().lock();
            (sm.db_size() as i64, sm.db_size_in_use().map_err(status::from_store)? as i64, sm.applied_index(), sm.alarms())
        };
        let leader = self.ctx.node.leader_id();
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(EtcdError::NoLeader.to_string());
        }
        errors.extend(alarms.iter().map(alarm_text));
        Ok(Response::new(StatusResponse {
            header: self.ctx.header(0),
            version: self.ctx.config.etcd_version.clone(),
            db_size,
            leader,
            raft_index: self.ctx.node.raft_index(),
            raft_term: self.ctx.node.term(),
            raft_applied_index: applied,
            errors,
            db_size_in_use,
            is_learner: false,
        }))
    }

    /// Rewrites this member's backend without its free pages, with every
    /// apply held meanwhile (etcd blocks its backend the same way).
    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.ctx.caller(&req).await?;
        tracing::info!("starting defragment");
        let (before, after) = self
            .with_state(|sm| {
                let before = sm.db_size();
                sm.defragment()?;
                Ok((before, sm.db_size()))
            })
            .await
            .inspect_err(|e| tracing::warn!(error = %e.message(), "failed to defragment"))?;
        tracing::info!(db_size_before = before, db_size_after = after, "finished defragment");
        Ok(Response::new(DefragmentResponse { header: self.ctx.header(0) }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.ctx.caller(&req).await?;
        let (hash, revision) = self.with_state(|sm| Ok((sm.hash()?, sm.current_revision()))).await?;
        Ok(Response::new(HashResponse { header: self.ctx.header(revision), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.ctx.caller(&req).await?;
        let rev = req.into_inner().revision;
        let h = self.with_state(move |sm| sm.hash_kv(rev)).await?;
        Ok(Response::new(HashKvResponse {
            header: self.ctx.header(h.revision),
            hash: h.hash,
            compact_revision: h.compact_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.ctx.caller(&req).await?;
        // etcd times a snapshot from its start until it is sent.
        let started = std::time::Instant::now();
        let duration = self.ctx.node.state().lock().metrics().snapshot_duration.clone();
        // Built beside the backend: a snapshot is about its size, and the
        // system's temporary directory may be a small tmpfs.
        let snapshot = self.with_state(|sm| SnapshotFile::create(sm, sm.dir())).await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send_snapshot(&snapshot, &tx) {
                let _ = tx.blocking_send(Err(status::from_store(e)));
            }
            duration.observe(started.elapsed().as_secs_f64());
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.ctx.caller(&req).await?;
        use hub_raft::MoveLeaderError;
        match self.ctx.node.move_leader(req.into_inner().target_id).await {
            Ok(()) => Ok(Response::new(MoveLeaderResponse { header: self.ctx.header(0) })),
            Err(e @ (MoveLeaderError::NotLeader | MoveLeaderError::BadTransferee)) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ MoveLeaderError::Timeout) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// An alarm as etcd prints it (gogo's compact text form of `AlarmMember`,
/// fields at their zero value left out), in Status errors and logs.
pub fn alarm_text(a: &AlarmMember) -> String {
    let mut text = String::new();
    if a.member_id != 0 {
        text.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        let name = AlarmType::try_from(a.alarm).map_or_else(|_| a.alarm.to_string(), |t| t.as_str_name().to_string());
        text.push_str(&format!("alarm:{name} "));
    }
    text
}

/// Streams a snapshot as etcd's `Maintenance.Snapshot` does: the bbolt
/// database in 32 KiB pieces, each with the bytes still to come, then one
/// message whose blob is the sha256 of all of them (the file's trailer), which
/// `etcdctl snapshot save` stores after the database. Stops quietly when the
/// client goes away.
fn send_snapshot(
    snapshot: &SnapshotFile,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| StoreError::Snapshot(format!("send the snapshot: {what}: {e}"));
    let total = snapshot.info().total_size;
    tracing::info!(total_bytes = total, revision = snapshot.info().revision, "sending database snapshot to client");
    let mut file = snapshot.open()?;
    let mut remaining = total;
    loop {
        let len = usize::try_from(remaining).map_or(SNAPSHOT_CHUNK_BYTES, |r| r.min(SNAPSHOT_CHUNK_BYTES));
        let mut blob = vec![0u8; len];
        file.read_exact(&mut blob).map_err(|e| io("read the database", e))?;
        remaining -= len as u64;
        if tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: remaining, blob })).is_err() {
            return Ok(());
        }
        if remaining == 0 {
            break;
        }
    }
    let mut sha = vec![0u8; SHA256_LEN];
    file.read_exact(&mut sha).map_err(|e| io("read the sha256 trailer", e))?;
    if tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: 0, blob: sha })).is_ok() {
        tracing::info!(total_bytes = total, "sent database snapshot to client");
    }
    Ok(())
}
