//! The server side of the peer transport: openraft's RPCs from other members,
//! and the requests followers forward to the leader.

use std::sync::Arc;

use hub_proto::hubpeer::{peer_server::Peer, Payload, ProposeAnswers, Proposals};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::forward;
use crate::membership::Removal;
use crate::network::{decode, encode};
use crate::node::{LeaderLeases, Node};
use crate::types::TypeConfig;

pub struct PeerService {
    node: Arc<Node>,
    /// Answers the lease calls followers forward while this member leads.
    leases: Arc<dyn LeaderLeases>,
}

impl PeerService {
    pub fn new(node: Arc<Node>, leases: Arc<dyn LeaderLeases>) -> Self {
        PeerService { node, leases }
    }

    /// Counts a raft message from `from` (the leader or candidate it names)
    /// and the answer going back, as etcd counts its peer streams' bytes.
    fn count(
        &self,
        from: Option<u64>,
        req: &Request<Payload>,
        answer: Result<Response<Payload>, Status>,
    ) -> Result<Response<Payload>, Status> {
        if let (Some(from), Ok(resp)) = (from, &answer) {
            self.node.metrics().received(from, req.get_ref().data.len());
            self.node.metrics().sent(from, resp.get_ref().data.len());
        }
        answer
    }
}

fn bad_request(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    encode(value).map(Response::new).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_request)?;
        let from = rpc.vote.leader_id().voted_for();
        let answer = reply(&self.node.raft().append_entries(rpc).await);
        self.count(from, &req, answer)
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<u64> = decode(req.get_ref()).map_err(bad_request)?;
        let from = rpc.vote.leader_id().voted_for();
        // A removed voter that never learnt it campaigns once the leader
        // stops replicating to it; this is how it learns.
        if from.is_some_and(|from| self.node.has_removed(from)) {
            return Err(Removal::refusal());
        }
        let answer = reply(&self.node.raft().vote(rpc).await);
        self.count(from, &req, answer)
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_request)?;
        let from = rpc.vote.leader_id().voted_for();
        let (first, last) = (rpc.offset == 0, rpc.done);
        let result = self.node.raft().install_snapshot(rpc).await;
        if let Some(from) = from {
            self.node.metrics().snapshot_received(from, first, last, result.is_ok());
        }
        self.count(from, &req, reply(&result))
    }

    async fn propose(&self, req: Request<Proposals>) -> Result<Response<ProposeAnswers>, Status> {
        // Proposed together, they reach raft together: one append for all.
        let proposed = req.into_inner().requests.into_iter().map(|r| self.node.propose_here(r));
        let answers = futures::future::join_all(proposed).await.into_iter().map(forward::answer_of).collect();
        // Forwarded proposals name no sender; the member that forwarded them
        // counts them as sent, and their answers as received.
        Ok(Response::new(ProposeAnswers { answers }))
    }

    async fn read_index(&self, _req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let answer = self.node.read_index_here().await.map_err(|e| e.to_string());
        let data = bincode::serialize(&answer).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Payload { data }))
    }

    async fn change_membership(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let change: crate::membership::MemberChange = decode(req.get_ref()).map_err(bad_request)?;
        reply(&self.node.change_members_here(change).await)
    }

    async fn set_election(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        // `(enabled, transferee)`; a leader before hub had transfers sends `enabled` alone.
        let (enabled, transferee): (bool, Option<u64>) =
            decode(req.get_ref()).or_else(|_| decode(req.get_ref()).map(|e| (e, None))).map_err(bad_request)?;
        self.node.raft().runtime_config().elect(enabled);
        if let Some(candidate) = transferee {
            let until = tokio::time::Instant::now() + self.node.request_timeout();
            self.node.raft().trigger().waive_leader_lease(candidate, until).await.map_err(|e| Status::unavailable(e.to_string()))?;
        }
        reply(&())
    }

    async fn campaign(&self, _req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.node.raft().trigger().elect().await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&())
    }

    async fn lease_time_to_live(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let id: i64 = decode(req.get_ref()).map_err(bad_request)?;
        reply(&self.leases.time_to_live(id))
    }

    async fn removed(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        // The removed member's ID: a member started since on the same peer URL is not it.
        let id: u64 = decode(req.get_ref()).map_err(bad_request)?;
        if id == self.node.member_id() {
            self.node.removal().mark();
        }
        reply(&())
    }

    async fn hash_kv(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rev: i64 = decode(req.get_ref()).map_err(bad_request)?;
        reply(&self.node.hash_kv_here(rev).await)
    }

    async fn members(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        // A probe names the member that sends it (a joining member's
        // discovery names none): a removed one learns it is.
        let from: Option<u64> = decode(req.get_ref()).ok();
        if from.is_some_and(|from| self.node.has_removed(from)) {
            return Err(Removal::refusal());
        }
        reply(&(self.node.cluster_id(), self.node.members()))
    }

    async fn lease_renew(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let id: i64 = decode(req.get_ref()).map_err(bad_request)?;
        let answer = if self.node.is_leader() {
            self.leases.renew(id).map_err(|e| e.to_string())
        } else {
            Err(hub_store::EtcdError::LeaderChanged.to_string())
        };
        let data = bincode::serialize(&answer).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Payload { data }))
    }
}
