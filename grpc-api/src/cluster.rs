//! The Cluster service on the wire; each call is the server layer's
//! operation (`hub_etcdserver::cluster`). Membership changes are the root's,
//! the list any user's (see `access`).

use hub_proto::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::{status, Context};

pub struct ClusterService {
    ctx: Context,
}

impl ClusterService {
    pub fn new(ctx: Context) -> Self {
        ClusterService { ctx }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.ctx.caller(&req).await?;
        let resp = self.ctx.server.member_add(req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.ctx.caller(&req).await?;
        let resp = self.ctx.server.member_remove(req.into_inner().id).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.ctx.caller(&req).await?;
        let resp = self.ctx.server.member_update(req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.ctx.caller(&req).await?;
        let resp = self.ctx.server.member_list(req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.ctx.caller(&req).await?;
        let resp = self.ctx.server.member_promote(req.into_inner().id).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }
}
