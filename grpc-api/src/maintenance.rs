//! The Maintenance service: member status and alarms. Snapshot, hashes and
//! leader transfer come with the replication and hubctl work.

use std::pin::Pin;

use futures::Stream;
use hub_proto::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use crate::Context;

/// The etcd release whose API and behaviour hub reproduces; clients read it
/// from Status to decide which features they may use.
pub const ETCD_VERSION: &str = "3.4.23";

pub struct MaintenanceService {
    ctx: Context,
}

impl MaintenanceService {
    pub fn new(ctx: Context) -> Self {
        MaintenanceService { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No alarm is ever raised yet (quotas come later), so listing and
        // disarming see none; raising one by hand is not supported.
        match AlarmAction::try_from(req.into_inner().action) {
            Ok(AlarmAction::Get) | Ok(AlarmAction::Deactivate) => {
                Ok(Response::new(AlarmResponse { header: self.ctx.header(0), alarms: Vec::new() }))
            }
            _ => Err(Status::unimplemented("hub: raising alarms by request is not supported yet")),
        }
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (db_size, applied) = {
            let sm = self.ctx.node.state().lock();
            (sm.db_size() as i64, sm.applied_index())
        };
        Ok(Response::new(StatusResponse {
            header: self.ctx.header(0),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: self.ctx.node.leader_id(),
            raft_index: self.ctx.node.raft_index(),
            raft_term: self.ctx.node.term(),
            raft_applied_index: applied,
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: false,
        }))
    }

    async fn defragment(&self, _req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        // redb reuses freed pages itself; there is nothing to rewrite.
        Ok(Response::new(DefragmentResponse { header: self.ctx.header(0) }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(Status::unimplemented("hub: Hash is not supported yet"))
    }

    async fn hash_kv(&self, _req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(Status::unimplemented("hub: HashKV is not supported yet"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("hub: Snapshot is not supported yet"))
    }

    async fn move_leader(&self, _req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(Status::failed_precondition("etcdserver: bad leader transferee"))
    }
}
