//! hub's consensus layer: turns proposals into an ordered log of commands and
//! applies each committed command to the state machine, on every member.
//!
//! Place in the request path: below the gRPC services, above `hub-store`.
//! Services hand writes to [`Node::propose`] and wait for the applied result;
//! linearizable reads call [`Node::read_index`] first. Nothing above this crate
//! touches the state machine's write path.
//!
//! This version runs a single voting member: a proposal is committed as soon as
//! the member's own storage has it, so the log index is assigned here and the
//! command is applied at once, durably (the backend commit is fsynced together
//! with the consistent index). The replicated version (openraft, WAL, peer
//! transport) keeps this interface.

use std::sync::Arc;
use std::time::Instant;

use hub_proto::etcdserverpb::InternalRaftRequest;
use hub_proto::mvccpb::Event;
use hub_store::{Applied, StateMachine, StoreError};
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// The changes one applied command made, published to watchers in log order.
#[derive(Debug)]
pub struct Committed {
    /// Store revision after the command.
    pub revision: i64,
    pub events: Vec<Event>,
}

/// Who this member is, for response headers and Cluster.MemberList.
#[derive(Debug, Clone)]
pub struct Membership {
    pub cluster_id: u64,
    pub member_id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

pub struct Node {
    state: Arc<Mutex<StateMachine>>,
    /// Serializes proposals so log order is apply order.
    propose_lock: tokio::sync::Mutex<()>,
    committed: broadcast::Sender<Arc<Committed>>,
    membership: Membership,
    term: u64,
}

/// How many applied commands a slow watcher stream may fall behind before it
/// resynchronizes from the store.
const WATCH_BACKLOG: usize = 4096;

impl Node {
    pub fn new(state: StateMachine, membership: Membership, term: u64) -> Self {
        let (committed, _) = broadcast::channel(WATCH_BACKLOG);
        Node {
            state: Arc::new(Mutex::new(state)),
            propose_lock: tokio::sync::Mutex::new(()),
            committed,
            membership,
            term,
        }
    }

    /// Appends `req` to the log and applies it once committed. Returns the
    /// state machine's answer; an etcd error means the command changed nothing.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<Applied, StoreError> {
        let _order = self.propose_lock.lock().await;
        let state = self.state.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let mut sm = state.lock();
            let index = sm.applied_index() + 1;
            sm.apply(index, &req, Instant::now()).map(|a| (a, sm.current_revision()))
        })
        .await
        .map_err(|_| StoreError::Etcd(hub_store::EtcdError::Stopped))?;
        let (applied, revision) = applied?;
        if !applied.events.is_empty() {
            // No receiver is not an error: nobody watches.
            let _ = self.committed.send(Arc::new(Committed { revision, events: applied.events.clone() }));
        }
        Ok(applied)
    }

    /// Waits until this member has applied everything committed before the call,
    /// so a local read is linearizable. With one member that is already so.
    pub async fn read_index(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The state machine, for reads. Hold the lock briefly: applies wait on it.
    pub fn state(&self) -> &Mutex<StateMachine> {
        &self.state
    }

    /// Subscribes to applied changes; subscribe before reading the store's
    /// revision so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.committed.subscribe()
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn is_leader(&self) -> bool {
        true
    }

    pub fn leader_id(&self) -> u64 {
        self.membership.member_id
    }
}
