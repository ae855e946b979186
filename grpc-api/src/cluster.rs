//! The Cluster service: membership as etcd reports it.

use hub_proto::etcdserverpb::{
    cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use crate::Context;

pub struct ClusterService {
    ctx: Context,
}

impl ClusterService {
    pub fn new(ctx: Context) -> Self {
        ClusterService { ctx }
    }

    fn members(&self) -> Vec<Member> {
        self.ctx
            .node
            .members()
            .into_iter()
            .map(|(id, m, is_learner)| Member {
                id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner,
            })
            .collect()
    }
}

/// Membership changes need replication; a single member refuses them the way
/// etcd refuses a change it cannot make safely.
fn needs_replication() -> Status {
    Status::failed_precondition("etcdserver: re-configuration failed due to not enough started members")
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(needs_replication())
    }

    async fn member_remove(&self, _req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(needs_replication())
    }

    async fn member_update(&self, _req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(needs_replication())
    }

    async fn member_list(&self, _req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        // etcd's Cluster service headers carry no revision.
        let header = self.ctx.header(0).map(|h| ResponseHeader { revision: 0, ..h });
        Ok(Response::new(MemberListResponse { header, members: self.members() }))
    }

    async fn member_promote(
        &self,
        _req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::failed_precondition("etcdserver: can only promote a learner member"))
    }
}
