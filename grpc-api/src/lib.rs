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
//! - [`auth`]: the Auth service (users, roles, enable, authenticate).
//! - [`token`]: simple and JWT tokens; [`identity`]: the client certificate's name.
//! - [`election`], [`lock`]: etcd's Election and Lock services, built from the
//!   [`concurrency`] recipes over the services above.
//! - [`gateway`], [`http`]: the JSON gateway, `/health` and `/version` on the
//!   client port, beside gRPC.
//! - [`metrics`]: etcd's Prometheus metrics.
//! - [`quota`]: `--quota-backend-bytes` and the NOSPACE alarm.
//! - [`limit`]: gRPC's received-message limit, in Go's words.
//! - [`status`]: the one mapping from hub errors to gRPC statuses.
//!
//! Who sends a request ([`Context::caller`]: a token, else the client
//! certificate's common name) is resolved once per call, which passes the
//! gate of its request type there ([`access`]: a user, or the root role, as
//! etcd 3.6 requires). The caller travels in the header of every proposal,
//! and the state machine authorizes it when it applies it; reads are
//! authorized under the same lock that reads the state (`hub_store::auth`).
//! Election and Lock hand their caller to the calls they make ([`access::relay`]).

pub mod access;
pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod framing;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod lock;
pub mod metrics;
pub mod maintenance;
pub mod quota;
pub mod status;
pub mod token;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use hub_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, InternalRaftRequest, ResponseHeader,
};
use hub_proto::v3electionpb::election_server::ElectionServer;
use hub_proto::v3lockpb::lock_server::LockServer;
use hub_raft::Node;
use hub_store::{AuthInfo, EtcdError, Response};
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
    /// `--auth-token`.
    pub tokens: Arc<token::Tokens>,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--client-cert-auth`: a certificate's common name is the user when
    /// a request carries no token.
    pub client_cert_auth: bool,
    /// `--max-concurrent-streams`: calls one client connection may have open;
    /// the JSON gateway, one client of the services, keeps to it as well.
    pub max_concurrent_streams: u32,
    /// `--report-etcd-version`: the etcd release Status, `/version` and
    /// `etcd_server_version` report.
    pub etcd_version: String,
    /// `--quota-backend-bytes` as [`quota::quota_bytes`] reads it (none: no quota).
    pub quota_backend_bytes: Option<u64>,
    /// `--metrics extensive`: gRPC handling-time histograms too.
    pub metrics_extensive: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            watch_progress_notify_interval: Duration::from_secs(600),
            tokens: Arc::new(token::Tokens::Simple),
            bcrypt_cost: 10,
            client_cert_auth: false,
            max_concurrent_streams: u32::MAX,
            etcd_version: maintenance::ETCD_VERSION.to_string(),
            quota_backend_bytes: Some(quota::DEFAULT_QUOTA_BYTES as u64),
            metrics_extensive: false,
        }
    }
}

/// What a request says about who sends it; see [`Context::credentials`].
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    common_name: Option<String>,
}

/// What every service holds: the raft node and the limits.
#[derive(Clone)]
pub struct Context {
    node: Arc<Node>,
    config: Arc<ServiceConfig>,
    metrics: Arc<metrics::Metrics>,
    /// The member's one source of lease IDs: the Lease service, the
    /// gateway's and Election's and Lock's sessions all draw from it, as
    /// from etcd's one `reqIDGen` (two generators seeded alike collide).
    lease_ids: Arc<lease::IdGenerator>,
}

/// gRPC adds this much around a request; etcd allows it on top of
/// `--max-request-bytes` before the transport itself refuses a message.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

impl Context {
    pub fn new(node: Arc<Node>, config: ServiceConfig) -> Self {
        // Registration fails only for a name registered twice, a bug caught by any test.
        let metrics = metrics::Metrics::new(&config, &node);
        let metrics = Arc::new(metrics.expect("every metric name is registered once"));
        let lease_ids = Arc::new(lease::IdGenerator::new(node.member_id()));
        Context { node, config: Arc::new(config), metrics, lease_ids }
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

    /// Proposes a client's command after etcd's size check; returns what
    /// applying it gave. The header names `who`, so the state machine
    /// authorizes the command when it applies it.
    async fn propose(&self, who: &AuthInfo, mut req: InternalRaftRequest) -> Result<Response, Status> {
        req.header = Some(who.header());
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

    /// Who sends `request` (etcd's `AuthInfoFromCtx`, then `AuthInfoFromTLS`;
    /// or the caller a service relays it for), once it passed the gate of
    /// its call ([`access::Gated`]).
    pub async fn caller<T: access::Gated>(&self, request: &tonic::Request<T>) -> Result<AuthInfo, Status> {
        let who = match request.extensions().get::<access::Relayed>() {
            Some(access::Relayed(who)) => who.clone(),
            None => self.who(&self.credentials(request)?).await?,
        };
        let access = request.get_ref().access();
        self.node.state().lock().auth().check_access(&who, access).map_err(status::from_etcd)?;
        Ok(who)
    }

    /// What `request` carries to say who sends it: a token (`token`
    /// metadata, or `authorization` as etcd's gateway sends it) and, with
    /// `--client-cert-auth`, its certificate's common name (not for requests
    /// relayed by the gateway, whose certificate is the server's).
    pub fn credentials<T>(&self, request: &tonic::Request<T>) -> Result<Credentials, Status> {
        let md = request.metadata();
        let token = match md.get("token").or_else(|| md.get("authorization")) {
            Some(t) => Some(t.to_str().map_err(|_| status::from_etcd(EtcdError::InvalidAuthToken))?.to_string()),
            None => None,
        };
        let common_name = if self.config.client_cert_auth && md.get("grpcgateway-accept").is_none() {
            identity::client_common_name(request)
        } else {
            None
        };
        Ok(Credentials { token, common_name })
    }

    /// The user `credentials` stand for now: a token's user, else the
    /// certificate's name, else nobody (revision 0).
    pub async fn who(&self, credentials: &Credentials) -> Result<AuthInfo, Status> {
        if let Some(token) = &credentials.token {
            return self.token_user(token).await.ok_or_else(|| {
                tracing::warn!("invalid auth token");
                status::from_etcd(EtcdError::InvalidAuthToken)
            });
        }
        if let Some(name) = &credentials.common_name {
            let sm = self.node.state().lock();
            if sm.auth().is_enabled() {
                return Ok(AuthInfo { username: name.clone(), revision: sm.auth().revision() });
            }
        }
        Ok(AuthInfo::default())
    }

    async fn token_user(&self, token: &str) -> Option<AuthInfo> {
        if let token::Tokens::Jwt(jwt) = self.config.tokens.as_ref() {
            return jwt.verify(token);
        }
        let lookup = || self.node.state().lock().auth_mut().simple_token_user(token, std::time::Instant::now());
        if let Some(info) = lookup() {
            return Some(info);
        }
        // Issued by an Authenticate this member has not applied yet: wait
        // until it has caught up with the leader, then look again.
        let index = token::simple_token_index(token)?;
        if index <= self.node.state().lock().applied_index() {
            return None;
        }
        self.node.read_index().await.ok()?;
        lookup()
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
            .add_service(AuthServer::new(auth::AuthService::new(self.clone())).max_decoding_message_size(max))
            .add_service(ElectionServer::new(election::ElectionService::new(self.clone())).max_decoding_message_size(max))
            .add_service(LockServer::new(lock::LockService::new(self.clone())).max_decoding_message_size(max))
            .into_axum_router()
            .layer(axum::middleware::from_fn(move |req, next| limit::layer(max, req, next)))
            .into()
    }
}
