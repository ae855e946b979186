//! hub's consensus layer: openraft orders proposals into a replicated log, and
//! every member applies each committed command to its state machine in order.
//!
//! Place in the request path: below the gRPC services, above `hub-store`.
//! Services hand writes to [`Node::propose`] and wait for the applied answer
//! (a follower forwards to the leader); linearizable reads call
//! [`Node::read_index`] first. Nothing above this crate touches the state
//! machine's write path.
//!
//! - [`types`]: openraft's type configuration (commands, members).
//! - [`wal`]: the raft log on disk (segments, crc32 framing, group commit, repair).
//! - [`log_store`]: openraft's log storage over the WAL.
//! - [`state_machine`]: openraft's state machine over `hub_store::StateMachine`.
//! - [`snapshot`]: state-machine snapshots in etcd's format.
//! - [`network`], [`peer_service`], [`forward`]: the peer transport (tonic on
//!   `--listen-peer-urls`, TLS from `hub-tls`) and what followers forward to the leader;
//!   `prober` times round trips to every peer and keeps how long each has been up;
//!   [`cluster_id`]: etcd's cluster ID on every peer request, another cluster's refused.
//! - [`membership`]: etcd's member add/remove/update/promote on openraft, with
//!   etcd's strict reconfiguration checks; how a removed member learns it is.
//! - [`node`]: a member, wiring it all together.
//! - [`wait`]: proposers waiting for their entry's apply (etcd's request IDs).
//! - [`metrics`]: etcd's WAL, peer-network and apply metrics.
//! - [`slow_apply`]: etcd's "apply request took too long" warning and count.
//! - [`corrupt`]: etcd's corruption checks, HashKV compared across members.
//! - `chaos` (feature `failpoints`): bugs injected on purpose for the chaos suite.
//! - `failpoints` (feature `failpoints`): pauses and faults at named places, for
//!   the tests that kill a member there.

#[cfg(feature = "failpoints")]
pub mod chaos;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod cluster_id;
pub mod corrupt;
pub mod forward;
pub mod log_store;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peer_service;
mod prober;
pub mod slow_apply;
pub mod snapshot;
pub mod state_machine;
pub mod wait;
pub mod types;
pub mod wal;

use hub_proto::mvccpb::Event;

pub use membership::{MemberChange, MemberChangeError};
pub use node::{LeaderLeases, LeaseTtl, MoveLeaderError, Node, NodeConfig, NodeError};
pub use peer_service::PeerService;
pub use slow_apply::SlowApply;
pub use types::Member;

/// The changes one applied command made, published to watchers in log order.
#[derive(Debug)]
pub struct Committed {
    /// Store revision after the command.
    pub revision: i64,
    pub events: Vec<Event>,
}
