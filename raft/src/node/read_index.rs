//! The read index: a linearizable read waits until this member has applied
//! everything committed when it asked (the leader confirms its leadership with
//! a quorum; a follower asks the leader).
//!
//! Reads share rounds, as etcd's `linearizableReadLoop` does: the reads that
//! arrive while a round runs wait together for the next one, which starts
//! after all of them arrived, so one quorum round (or one request to the
//! leader) serves every read that was waiting.

use std::sync::Weak;

use tokio::sync::oneshot;

use super::waiting::Waiting;
use super::*;

/// What a round answers its readers: the index to wait for, or why there is none.
type RoundResult = Result<u64, Arc<StoreError>>;

/// A linearizable read waiting for the next round.
pub(crate) type Reader = oneshot::Sender<RoundResult>;

impl Node {
    /// Waits until a read on this member sees every write committed before the
    /// call (etcd's ReadIndex).
    pub async fn read_index(&self) -> Result<(), StoreError> {
        #[cfg(feature = "failpoints")]
        if crate::chaos::enabled(crate::chaos::Bug::StaleRead) {
            return Ok(());
        }
        let work = async {
            let (tx, rx) = oneshot::channel();
            self.reads.push(tx);
            let index = match rx.await {
                Ok(Ok(index)) => index,
                Ok(Err(e)) => return Err(copy_error(&e)),
                Err(_) => return Err(EtcdError::Stopped.into()),
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

    /// One round: the commit index a read must wait for, confirmed by the
    /// leader with a quorum (asked of the leader by a follower).
    async fn read_round(&self) -> Result<u64, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(self.read_index_here().await?);
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.read_index(Payload::default()).await.map_err(|s| unavailable(&s))?;
        decode::<Result<u64, String>>(reply.get_ref()).map_err(corrupt)?.map_err(refusal)
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

/// Runs read rounds while reads wait, each for all the reads that arrived
/// before it started; ends once the node is gone.
pub(crate) async fn read_rounds(node: Weak<Node>, reads: Arc<Waiting<Reader>>) {
    while let Some(waiting) = reads.next(&node).await {
        let Some(node) = node.upgrade() else { return };
        node.metrics.read_round(waiting.len());
        let result = node.read_round().await.map_err(Arc::new);
        drop(node);
        for reader in waiting {
            let _ = reader.send(result.clone());
        }
    }
}
