//! The read index: a linearizable read waits until this member has applied
//! everything committed when it asked (the leader confirms its leadership with
//! a quorum; a follower asks the leader).

use super::*;

impl Node {
    /// Waits until a read on this member sees every write committed before the
    /// call (etcd's ReadIndex): the leader confirms its leadership with a quorum;
    /// a follower asks the leader for the commit index and waits to apply it.
    pub async fn read_index(&self) -> Result<(), StoreError> {
        #[cfg(feature = "failpoints")]
        if crate::chaos::enabled(crate::chaos::Bug::StaleRead) {
            return Ok(());
        }
        let work = async {
            let (leader, node) = self.leader()?;
            let index = if leader == self.id {
                self.read_index_here().await?
            } else {
                let mut client = self.peer(leader, &node)?;
                let reply = client.read_index(Payload::default()).await.map_err(|s| unavailable(&s))?;
                decode::<Result<u64, String>>(reply.get_ref()).map_err(corrupt)?.map_err(refusal)?
            };
            self.raft
                .wait(Some(self.timeout))
                .applied_index_at_least(Some(index), "read index")
                .await
                .map_err(|_| StoreError::Etcd(EtcdError::Timeout))?;
            Ok(())
        };
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout.into()),
        };
        self.metrics.read_index(&result);
        result
    }

    /// The leader's read index. A round in which a quorum did not answer in time
    /// (a slow network, a loaded host, a paused follower) is retried, as etcd
    /// retries its ReadIndex until the request times out; only a lost leadership
    /// fails the read at once.
    pub(crate) async fn read_index_here(&self) -> Result<u64, EtcdError> {
        let rounds = async {
            loop {
                match self.raft.ensure_linearizable().await {
                    Ok(log_id) => return Ok(log_id.map_or(0, |l| l.index)),
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(RaftError::APIError(_)) => return Err(EtcdError::LeaderChanged),
                    Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
                }
            }
        };
        tokio::time::timeout(self.timeout, rounds).await.unwrap_or(Err(EtcdError::Timeout))
    }
}
