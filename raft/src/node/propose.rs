//! Proposing a command from any member: the leader appends it; a follower
//! forwards it to the leader over the peer wire (`forward.rs`) and relays the
//! answer.
//!
//! A follower forwards the writes that arrive together in one request, as
//! etcd sends its proposals over one stream: [`forward_rounds`] takes every
//! write waiting, with at most [`FORWARDS_IN_FLIGHT`] requests out at once,
//! so under load each request carries many writes, and the leader proposes
//! them together (one append for all).

use std::sync::Weak;

use hub_proto::hubpeer::Proposals;
use tokio::sync::{oneshot, Semaphore};

use super::waiting::Waiting;
use super::*;

/// Forward requests a follower has out at once.
const FORWARDS_IN_FLIGHT: usize = 2;

/// What the entry at the log index a proposal was given answered: on the
/// leader openraft's answer, on a follower the leader's to its forward.
type Forwarded = Result<ApplyOutput, StoreError>;

/// A write waiting to be forwarded to the leader: the encoded request and
/// where its answer goes.
pub(crate) type Forward = (Vec<u8>, oneshot::Sender<Forwarded>);

impl Node {
    /// Proposes a command and waits until it is committed and applied; a
    /// follower forwards it to the leader. The answer is the first of: this
    /// member's own apply of the entry (`crate::wait`, found by the request ID
    /// given here, as etcd's), openraft's answer on the leader, or the
    /// leader's answer to a forward; the last two only if the entry they
    /// answer for is this request (a leader change may have put another at
    /// its index).
    pub async fn propose(&self, mut req: InternalRaftRequest) -> Result<Response, StoreError> {
        // A request without a header is the server's own (lease expiry, an
        // alarm), which the apply does not authorize: it stays without one,
        // and is answered through openraft.
        let mut waiter = req.header.as_mut().map(|h| {
            h.id = self.request_ids.next();
            self.wait.register(h.id)
        });
        let id = req.header.as_ref().map_or(0, |h| h.id);
        let proposed = self.propose_inner(req);
        tokio::pin!(proposed);
        let answered = async {
            tokio::select! {
                // Applied here, the answer is this member's at once (it was
                // handed over before the apply returned to openraft).
                biased;
                Some(Ok(applied)) = async { Some((&mut waiter.as_mut()?.rx).await) } => Ok(applied),
                answer = &mut proposed => match answer? {
                    ApplyOutput { request_id, result: Some(result) } if request_id == id => Ok(result),
                    other => {
                        if other.request_id != id {
                            tracing::warn!(
                                request_id = id,
                                answered_for = other.request_id,
                                "a proposal's log index holds another entry; waiting for its own apply"
                            );
                        }
                        // Only its own apply (if any) answers it now; else it
                        // is lost, as etcd's proposals lost in a leader change.
                        match waiter.as_mut() {
                            Some(w) => (&mut w.rx).await.map_err(|_| StoreError::from(EtcdError::Stopped)),
                            None => Err(EtcdError::Timeout.into()),
                        }
                    }
                },
            }
        };
        match tokio::time::timeout(self.timeout, answered).await {
            Ok(result) => result.and_then(|r| r.map_err(StoreError::Etcd)),
            Err(_) => Err(EtcdError::Timeout.into()),
        }
    }

    async fn propose_inner(&self, req: InternalRaftRequest) -> Forwarded {
        let bytes = req.encode_to_vec();
        match self.raft.client_write(Command(bytes)).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                let bytes = req.encode_to_vec();
                let (tx, rx) = oneshot::channel();
                self.forwarding.push((bytes, tx));
                rx.await.unwrap_or(Err(EtcdError::Stopped.into()))
            }
            Err(RaftError::APIError(e)) => Err(StoreError::Corrupt(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped.into()),
        }
    }

    /// Proposes on this member only (for a follower's forward).
    pub(crate) async fn propose_here(&self, bytes: Vec<u8>) -> Result<ApplyOutput, EtcdError> {
        match self.raft.client_write(Command(bytes)).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(EtcdError::LeaderChanged),
            Err(_) => Err(EtcdError::Stopped),
        }
    }

    /// Forwards writes to the leader in one request; each waiter gets its answer.
    async fn forward(&self, batch: Vec<Forward>) {
        let (requests, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let n = requests.len();
        self.metrics.forwarded(n);
        match self.send_to_leader(requests).await {
            Ok(answers) if answers.len() == n => {
                for (waiter, answer) in waiters.into_iter().zip(answers) {
                    let _ = waiter.send(match answer {
                        Ok(Ok(output)) => Ok(output),
                        Ok(Err(not_proposed)) => Err(not_proposed.into()),
                        Err(unreadable) => Err(StoreError::Corrupt(unreadable)),
                    });
                }
            }
            Ok(answers) => {
                let e = format!("the leader answered {} of {n} forwarded writes", answers.len());
                for waiter in waiters {
                    let _ = waiter.send(Err(StoreError::Corrupt(e.clone())));
                }
            }
            Err(e) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(copy_error(&e)));
                }
            }
        }
    }

    async fn send_to_leader(
        &self,
        requests: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Result<ApplyOutput, EtcdError>, String>>, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            // Elected meanwhile.
            let proposed = requests.into_iter().map(|r| self.propose_here(r));
            return Ok(futures::future::join_all(proposed).await.into_iter().map(Ok).collect());
        }
        let mut client = self.peer(leader, &node)?;
        let sent = requests.iter().map(Vec::len).sum();
        let mut request = tonic::Request::new(Proposals { requests });
        request.set_timeout(self.timeout);
        let reply = client.propose(request).await.map_err(|s| {
            self.metrics.send_failed(leader);
            unavailable(&s)
        })?;
        let answers = reply.into_inner().answers;
        // etcd forwards proposals over its peer streams, so they count as peer traffic.
        self.metrics.sent(leader, sent);
        self.metrics.received(leader, answers.iter().map(Message::encoded_len).sum());
        Ok(answers.into_iter().map(forward::result_of).collect())
    }
}

/// Forwards the writes waiting, all of them in each request, while the node
/// lives.
pub(crate) async fn forward_rounds(node: Weak<Node>, forwarding: Arc<Waiting<Forward>>) {
    let in_flight = Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let Some(batch) = forwarding.next(&node).await else { return };
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            node.forward(batch).await;
            drop(permit);
        });
    }
}
