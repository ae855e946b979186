//! hub's server layer: etcd's `etcdserver`, every client operation typed.
//!
//! Place in the request path: between the wire (`hub-grpc-api`: gRPC, the
//! JSON gateway) and the raft node (`hub-raft`). A service decodes a request,
//! asks [`EtcdServer::caller`] who sends it, and calls one operation here —
//! [`kv`]: range, put, delete_range, txn, compact; [`lease`]; [`maintenance`];
//! [`auth`]; [`cluster`]; [`watch`]; [`version`] — with the caller. An operation checks the request
//! as etcd does, passes the gate of its kind of request ([`caller`]), checks
//! the quota ([`quota`]), waits for a ReadIndex when it reads linearizably,
//! proposes writes with the caller in their header (the state machine
//! authorizes them when it applies them), authorizes reads under the lock
//! that reads the state, and fills the response header. The answer or
//! etcd's error ([`Error`]) goes back to the wire, which words it.
//!
//! The state machine's lock is taken here only (the wire's `/metrics` reads
//! the store's gauges through [`EtcdServer::read_state`]).
//!
//! `tests/golden.rs` runs the scripts in `tests/golden/` (requests, and the
//! answers etcd 3.6.16 gave to them) against one in-process member.

pub mod auth;
pub mod caller;
pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod quota;
pub mod token;
pub mod version;
pub mod watch;

use std::sync::Arc;

use hub_proto::etcdserverpb::{InternalRaftRequest, ResponseHeader};
use hub_raft::{MemberChangeError, MoveLeaderError, Node};
use hub_store::{AuthInfo, EtcdError, Response, StateMachine, StoreError};
use prometheus::{IntCounter, IntGauge};
use prost::Message;

pub use caller::Credentials;

/// Why an operation failed: etcd's error for the client, or a failure of hub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Member(#[from] MemberChangeError),
    #[error(transparent)]
    MoveLeader(#[from] MoveLeaderError),
    #[error(transparent)]
    Downgrade(#[from] version::DowngradeError),
    /// Something hub itself got wrong (a task that died, an answer of the
    /// wrong kind from the state machine).
    #[error("hub: {0}")]
    Internal(String),
}

impl From<EtcdError> for Error {
    fn from(e: EtcdError) -> Self {
        Error::Store(StoreError::Etcd(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The state machine answered a command with a response of another kind.
fn unexpected(r: Response) -> Error {
    Error::Internal(format!("unexpected apply result {r:?}"))
}

/// Limits and options of the operations, from hubd's flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `--max-request-bytes`: the largest command a client may propose.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--auth-token`.
    pub tokens: Arc<token::Tokens>,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--report-etcd-version`: the etcd release Status reports.
    pub etcd_version: String,
    /// `--quota-backend-bytes` as [`quota::quota_bytes`] reads it (none: no quota).
    pub quota_backend_bytes: Option<u64>,
    /// Status' `dbSizeQuota` as etcd 3.6 answers it: the flag, its default
    /// for 0 (a negative flag, no quota, as it is).
    pub db_size_quota: i64,
}

/// The server's own metrics (etcd's `etcd_server_proposals_*`, the lease
/// expiry counter, the watch gauges), registered by whoever exports them.
#[derive(Clone)]
pub struct ServerMetrics {
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub lease_expired: IntCounter,
    /// The watch streams' gauges and event counter.
    pub(crate) watch: watch::WatchMetrics,
}

impl ServerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        Ok(ServerMetrics {
            proposals_pending: IntGauge::new(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )?,
            proposals_failed: IntCounter::new(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )?,
            lease_expired: IntCounter::new(
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            )?,
            watch: watch::WatchMetrics::new()?,
        })
    }

    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.proposals_pending.clone()))?;
        registry.register(Box::new(self.proposals_failed.clone()))?;
        registry.register(Box::new(self.lease_expired.clone()))?;
        self.watch.register(registry)
    }
}

/// One member's server: the raft node, the limits, the member's one source
/// of lease IDs.
pub struct EtcdServer {
    node: Arc<Node>,
    config: ServerConfig,
    metrics: ServerMetrics,
    /// The member's one source of lease IDs: the Lease service, the
    /// gateway's and Election's and Lock's sessions all draw from it, as
    /// from etcd's one `reqIDGen` (two generators seeded alike collide).
    lease_ids: lease::IdGenerator,
}

impl EtcdServer {
    pub fn new(node: Arc<Node>, config: ServerConfig, metrics: ServerMetrics) -> Arc<Self> {
        let lease_ids = lease::IdGenerator::new(node.member_id());
        Arc::new(EtcdServer { node, config, metrics, lease_ids })
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    /// Runs `read` on the state machine, under its lock: for the watch
    /// streams, which read events and revisions as they go, and the store's
    /// gauges in `/metrics`.
    pub fn read_state<T>(&self, read: impl FnOnce(&StateMachine) -> T) -> T {
        read(&self.node.state().lock())
    }

    /// The feed of applied commands' events (watchers, Election's observers).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<hub_raft::Committed>> {
        self.node.subscribe()
    }

    /// The revision everything applied so far has reached.
    pub fn current_revision(&self) -> i64 {
        self.node.state().lock().current_revision()
    }

    /// A response header as etcd fills it: a zero revision becomes the current one.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let revision = if revision == 0 { self.current_revision() } else { revision };
        Some(ResponseHeader {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.member_id(),
            revision,
            raft_term: self.node.term(),
        })
    }

    /// Completes a header the store filled with a revision.
    fn fill(&self, h: Option<ResponseHeader>) -> Option<ResponseHeader> {
        self.header(h.map_or(0, |h| h.revision))
    }

    /// Proposes a client's command after etcd's size check; returns what
    /// applying it gave. The header names `who`, so the state machine
    /// authorizes the command when it applies it.
    async fn propose(&self, who: &AuthInfo, mut req: InternalRaftRequest) -> Result<Response> {
        req.header = Some(who.header());
        if req.encoded_len() > self.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge.into());
        }
        self.metrics.proposals_pending.inc();
        let result = self.node.propose(req).await;
        self.metrics.proposals_pending.dec();
        if result.is_err() {
            self.metrics.proposals_failed.inc();
        }
        Ok(result?)
    }

    /// Waits until this member has applied everything committed when it
    /// asked (etcd's `linearizableReadNotify`).
    async fn read_index(&self) -> Result<()> {
        Ok(self.node.read_index().await?)
    }

    /// Runs `f` on a blocking thread with the state machine locked: the
    /// whole-backend reads (hashes, snapshots, defragmentation) see one state,
    /// and no command is applied meanwhile.
    async fn with_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        let node = self.node.clone();
        let result = tokio::task::spawn_blocking(move || f(&node.state().lock()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(result?)
    }
}
