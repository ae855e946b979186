//! etcd's v3 gRPC API (and its JSON gateway, health and metrics) served over hub's raft node.
//!
//! Place in the request path: first thing after the socket. Each service checks a
//! request as etcd's `v3rpc` does, proposes writes to [`hub_raft::Node`] (reads go
//! to the state machine, after a ReadIndex when linearizable) and fills response
//! headers. No service implements storage semantics; those live in `hub-store`.
//!
//! - [`kv`]: Range, Put, DeleteRange, Txn, Compact.
//! - [`watch`]: the Watch stream.
//! - [`lease`]: Lease grant, revoke, keep-alive, time-to-live, list; expiry.
//! - [`maintenance`]: Status, Alarm, Defragment, Hash, HashKV, Snapshot.
//! - [`cluster`]: MemberList.
//! - [`election`], [`lock`]: etcd's Election and Lock services, built from the
//!   [`concurrency`] recipes over the services above.
//! - [`gateway`], [`http`]: the JSON gateway, `/health` and `/version` on the
//!   client port, beside gRPC.
//! - [`metrics`]: etcd's Prometheus metrics.
//! - [`status`]: the one mapping from hub errors to gRPC statuses.

pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod gateway;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod metrics;
pub mod maintenance;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use hub_proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, InternalRaftRequest, ResponseHeader,
};
use hub_proto::v3electionpb::election_server::ElectionServer;
use hub_proto::v3lockpb::lock_server::LockServer;
use hub_raft::Node;
use hub_store::{EtcdError, Response};
use prost::Message;
use tonic::Status;

/// Limits and intervals the services enforce, from hubd's flags.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `--max-request-bytes`: the largest command a client may propose.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Duration,
    /// `--max-concurrent-streams`: calls one client connection may have open;
    /// the JSON gateway, one client of the services, keeps to it as well.
    pub max_concurrent_streams: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            watch_progress_notify_interval: Duration::from_secs(600),
            max_concurrent_streams: u32::MAX,
        }
    }
}

/// What every service holds: the raft node and the limits.
#[derive(Clone)]
pub struct Context {
    node: Arc<Node>,
    config: Arc<ServiceConfig>,
    metrics: Arc<metrics::Metrics>,
}

/// gRPC adds this much around a request; etcd allows it on top of
/// `--max-request-bytes` before the transport itself refuses a message.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

impl Context {
    pub fn new(node: Arc<Node>, config: ServiceConfig) -> Self {
        // Registration fails only for a name registered twice, a bug caught by any test.
        let metrics = Arc::new(metrics::Metrics::new().expect("every metric name is registered once"));
        Context { node, config: Arc::new(config), metrics }
    }

    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// A response header as etcd fills it: a zero revision becomes the current one.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let revision = if revision == 0 { self.node.state().lock().current_revision() } else { revision };
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

    /// Proposes a command after etcd's size check; returns what applying it gave.
    async fn propose(&self, req: InternalRaftRequest) -> Result<Response, Status> {
        if req.encoded_len() > self.config.max_request_bytes {
            return Err(status::from_etcd(EtcdError::RequestTooLarge));
        }
        self.metrics.proposals_pending.inc();
        let result = self.node.propose(req).await;
        self.metrics.proposals_pending.dec();
        if result.is_err() {
            self.metrics.proposals_failed.inc();
        }
        result.map_err(status::from_store)
    }

    /// What a client port serves: every gRPC service, and over HTTP/1.1 the
    /// JSON gateway, `/health`, `/version` and `/metrics`.
    pub fn client_routes(&self) -> tonic::service::Routes {
        http::with_http(self.clone(), self.routes())
    }

    /// Every service of the API, ready to mount on a tonic server.
    pub fn routes(&self) -> tonic::service::Routes {
        let max = self.config.max_request_bytes + GRPC_OVERHEAD_BYTES;
        tonic::service::Routes::new(KvServer::new(kv::KvService::new(self.clone())).max_decoding_message_size(max))
            .add_service(WatchServer::new(watch::WatchService::new(self.clone())).max_decoding_message_size(max))
            .add_service(LeaseServer::new(lease::LeaseService::new(self.clone())).max_decoding_message_size(max))
            .add_service(
                MaintenanceServer::new(maintenance::MaintenanceService::new(self.clone())).max_decoding_message_size(max),
            )
            .add_service(ClusterServer::new(cluster::ClusterService::new(self.clone())).max_decoding_message_size(max))
            .add_service(ElectionServer::new(election::ElectionService::new(self.clone())).max_decoding_message_size(max))
            .add_service(LockServer::new(lock::LockService::new(self.clone())).max_decoding_message_size(max))
    }
}
