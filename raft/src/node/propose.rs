//! Proposing a command from any member: the leader appends it; a follower
//! forwards it over the peer wire (`forward.rs`) and relays the answer.

use super::*;

impl Node {
    /// Proposes a command and waits until it is committed and applied; a
    /// follower forwards it to the leader.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<Response, StoreError> {
        match tokio::time::timeout(self.timeout, self.propose_inner(req)).await {
            Ok(result) => result.and_then(|r| r.map_err(StoreError::Etcd)),
            Err(_) => Err(EtcdError::Timeout.into()),
        }
    }

    async fn propose_inner(&self, req: InternalRaftRequest) -> Result<Result<Response, EtcdError>, StoreError> {
        let bytes = req.encode_to_vec();
        match self.raft.client_write(Command(bytes.clone())).await {
            Ok(resp) => Ok(resp.data.result.unwrap_or(Ok(Response::AlreadyApplied))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let (Some(leader), Some(node)) = (f.leader_id, f.leader_node) else {
                    return Err(EtcdError::NoLeader.into());
                };
                let mut client = self.peer(leader, &node)?;
                let sent = bytes.len();
                let reply = client.propose(Payload { data: bytes }).await.map_err(|s| {
                    self.metrics.send_failed(leader);
                    unavailable(&s)
                })?;
                // etcd forwards proposals over its peer streams, so they count as peer traffic.
                self.metrics.sent(leader, sent);
                self.metrics.received(leader, reply.get_ref().data.len());
                forward::decode_answer(&reply.get_ref().data).map_err(StoreError::Corrupt)
            }
            Err(RaftError::APIError(e)) => Err(StoreError::Corrupt(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped.into()),
        }
    }

    /// Proposes on this member only (the peer service, for a follower's forward).
    pub(crate) async fn propose_here(&self, bytes: Vec<u8>) -> Result<Response, EtcdError> {
        match self.raft.client_write(Command(bytes)).await {
            Ok(resp) => resp.data.result.unwrap_or(Ok(Response::AlreadyApplied)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(EtcdError::LeaderChanged),
            Err(_) => Err(EtcdError::Stopped),
        }
    }
}
