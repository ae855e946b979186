//! etcd's membership operations. Changes go through raft's joint consensus
//! on the leader (`hub_raft::membership`).

use std::time::{SystemTime, UNIX_EPOCH};

use hub_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteResponse, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use hub_raft::membership::etcd_member_id;
use hub_raft::MemberChange;
use hub_store::EtcdError;

use crate::{EtcdServer, Result};

/// etcd refuses peer URLs it cannot parse as URLs.
fn check_urls(urls: &[String]) -> Result<()> {
    let valid = |u: &String| matches!(u.split_once("://"), Some(("http" | "https" | "unix" | "unixs", rest)) if !rest.is_empty());
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(EtcdError::MemberBadUrls.into());
    }
    Ok(())
}

impl EtcdServer {
    fn members(&self) -> Vec<Member> {
        self.node
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

    /// etcd's Cluster headers carry no revision.
    fn cluster_header(&self) -> Option<ResponseHeader> {
        self.header(0).map(|h| ResponseHeader { revision: 0, ..h })
    }

    pub async fn member_add(&self, r: MemberAddRequest) -> Result<MemberAddResponse> {
        check_urls(&r.peer_ur_ls)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let id = etcd_member_id(&r.peer_ur_ls, "", Some(now));
        let member = hub_raft::Member { name: String::new(), peer_urls: r.peer_ur_ls.clone(), client_urls: Vec::new() };
        self.node.change_members(MemberChange::Add { id, member, learner: r.is_learner }).await?;
        let added = Member {
            id,
            name: String::new(),
            peer_ur_ls: r.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: r.is_learner,
        };
        Ok(MemberAddResponse { header: self.cluster_header(), member: Some(added), members: self.members() })
    }

    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        self.node.change_members(MemberChange::Remove { id }).await?;
        Ok(MemberRemoveResponse { header: self.cluster_header(), members: self.members() })
    }

    pub async fn member_update(&self, r: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        check_urls(&r.peer_ur_ls)?;
        self.node.change_members(MemberChange::UpdatePeerUrls { id: r.id, peer_urls: r.peer_ur_ls }).await?;
        Ok(MemberUpdateResponse { header: self.cluster_header(), members: self.members() })
    }

    /// The members as this member knows them; with `linearizable` (etcd
    /// 3.5's field, clientv3's default) after a linearizable read, so no
    /// change committed before the call is missing.
    pub async fn member_list(&self, r: MemberListRequest) -> Result<MemberListResponse> {
        if r.linearizable {
            self.read_index().await?;
        }
        Ok(MemberListResponse { header: self.cluster_header(), members: self.members() })
    }

    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        self.node.change_members(MemberChange::Promote { id }).await?;
        Ok(MemberPromoteResponse { header: self.cluster_header(), members: self.members() })
    }
}
