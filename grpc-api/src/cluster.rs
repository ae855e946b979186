//! The Cluster service: membership as etcd reports and changes it. Changes go
//! through raft's joint consensus on the leader (`hub_raft::membership`).

use std::time::{SystemTime, UNIX_EPOCH};

use hub_proto::etcdserverpb::{
    cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, ResponseHeader,
};
use hub_raft::membership::etcd_member_id;
use hub_raft::{MemberChange, MemberChangeError};
use tonic::{Code, Request, Response, Status};

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

    /// etcd's Cluster service headers carry no revision.
    fn header(&self) -> Option<ResponseHeader> {
        self.ctx.header(0).map(|h| ResponseHeader { revision: 0, ..h })
    }

    async fn change(&self, change: MemberChange) -> Result<(), Status> {
        self.ctx.node.change_members(change).await.map_err(status)
    }
}

/// etcd's gRPC codes for membership errors (`rpctypes`).
fn status(e: MemberChangeError) -> Status {
    use MemberChangeError::*;
    let code = match e {
        IdExists | PeerUrlExists | NotLearner | LearnerNotReady | NotEnoughStarted | NotLeader => Code::FailedPrecondition,
        NotFound => Code::NotFound,
        Other(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}

/// etcd refuses peer URLs it cannot parse as URLs.
fn check_urls(urls: &[String]) -> Result<(), Status> {
    let valid = |u: &String| {
        matches!(u.split_once("://"), Some(("http" | "https" | "unix" | "unixs", rest)) if !rest.is_empty())
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(Status::invalid_argument("etcdserver: given member URLs are invalid"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        // Membership changes are the root's (see `access`).
        self.ctx.caller(&req).await?;
        let r = req.into_inner();
        check_urls(&r.peer_ur_ls)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let id = etcd_member_id(&r.peer_ur_ls, "", Some(now));
        let member = hub_raft::Member { name: String::new(), peer_urls: r.peer_ur_ls.clone(), client_urls: Vec::new() };
        self.change(MemberChange::Add { id, member, learner: r.is_learner }).await?;
        let added = Member { id, name: String::new(), peer_ur_ls: r.peer_ur_ls, client_ur_ls: Vec::new(), is_learner: r.is_learner };
        Ok(Response::new(MemberAddResponse { header: self.header(), member: Some(added), members: self.members() }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        // Membership changes are the root's (see `access`).
        self.ctx.caller(&req).await?;
        self.change(MemberChange::Remove { id: req.into_inner().id }).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members: self.members() }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        // Membership changes are the root's (see `access`).
        self.ctx.caller(&req).await?;
        let r = req.into_inner();
        check_urls(&r.peer_ur_ls)?;
        self.change(MemberChange::UpdatePeerUrls { id: r.id, peer_urls: r.peer_ur_ls }).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members: self.members() }))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.ctx.caller(&req).await?;
        Ok(Response::new(MemberListResponse { header: self.header(), members: self.members() }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Membership changes are the root's (see `access`).
        self.ctx.caller(&req).await?;
        self.change(MemberChange::Promote { id: req.into_inner().id }).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members: self.members() }))
    }
}
