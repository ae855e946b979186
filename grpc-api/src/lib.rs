//! etcd's v3 gRPC API (and its JSON gateway, health and metrics): the wire.
//!
//! Place in the request path: first thing after the socket. Each service decodes
//! a request, resolves who sends it ([`Context::caller`]) and calls the typed
//! operation of the server layer (`hub_etcdserver::EtcdServer`), which checks,
//! authorizes, proposes or reads; the service words the answer or the error
//! ([`status`]) as etcd's gRPC server does. Watch streams are served here too,
//! reading the state through the server layer.
//!
//! - [`kv`]: Range, Put, DeleteRange, Txn, Compact.
//! - [`watch`]: the Watch stream.
//! - [`lease`]: Lease grant, revoke, keep-alive, time-to-live, list; expiry.
//! - [`maintenance`]: Status, Alarm, Defragment, Hash, HashKV, Snapshot.
//! - [`cluster`]: MemberList.
//! - [`auth`]: the Auth service (users, roles, enable, authenticate).
//! - [`identity`]: the client certificate's name.
//! - [`election`], [`lock`]: etcd's Election and Lock services, built from the
//!   [`concurrency`] recipes over the services above.
//! - [`gateway`], [`http`], [`health`], [`debug_vars`]: the JSON gateway,
//!   `/health`, `/livez`, `/readyz`, `/version` and `/debug/vars` on the
//!   client port, beside gRPC (or on listeners of their own,
//!   `--listen-client-http-urls`).
//! - [`metrics`]: etcd's Prometheus metrics.
//! - [`limit`]: gRPC's received-message limit, in Go's words.
//! - [`request_stats`]: etcd's "request stats" log line of slow unary calls.
//! - [`status`]: the one mapping from hub errors to gRPC statuses.
//!
//! Who sends a request ([`Context::caller`]: a token, else the client
//! certificate's common name) is resolved once per call by the server layer,
//! which also checks the gate of its request type ([`access`]: a user, or the
//! root role, as etcd 3.6 requires). Election and Lock hand their caller to
//! the calls they make ([`access::relay`]).

pub mod access;
pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod debug_vars;
pub mod election;
pub mod framing;
pub mod gateway;
pub mod health;
pub mod http;
pub mod identity;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod lock;
pub mod metrics;
pub mod maintenance;
pub mod request_stats;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use hub_etcdserver::{Credentials, EtcdServer, ServerConfig, ServerMetrics};
use hub_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, ResponseHeader,
};
use hub_proto::v3electionpb::election_server::ElectionServer;
use hub_proto::v3lockpb::lock_server::LockServer;
use hub_raft::Node;
use hub_store::{AuthInfo, EtcdError};
use tonic::Status;

/// What the services need from hubd's flags: the server layer's limits and
/// options, and the wire's own.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub server: ServerConfig,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Duration,
    /// `--client-cert-auth`: a certificate's common name is the user when
    /// a request carries no token.
    pub client_cert_auth: bool,
    /// `--max-concurrent-streams`: calls one client connection may have open;
    /// the JSON gateway, one client of the services, keeps to it as well.
    pub max_concurrent_streams: u32,
    /// `--metrics extensive`: gRPC handling-time histograms too.
    pub metrics_extensive: bool,
    /// `--warning-unary-request-duration`: a unary call slower than this is
    /// logged ([`request_stats`]).
    pub warning_unary_request_duration: Duration,
    /// etcd 3.6's server feature gates, `(name, stage, enabled)`, for
    /// `etcd_server_feature_enabled`.
    pub feature_gates: Vec<(&'static str, &'static str, bool)>,
}

/// What every service holds: the server layer, the wire's options, the metrics.
#[derive(Clone)]
pub struct Context {
    server: Arc<EtcdServer>,
    config: Arc<ServiceConfig>,
    metrics: Arc<metrics::Metrics>,
    request_stats: Arc<request_stats::RequestStats>,
}

/// gRPC adds this much around a request; etcd allows it on top of
/// `--max-request-bytes` before the transport itself refuses a message.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

impl Context {
    pub fn new(node: Arc<Node>, config: ServiceConfig) -> Self {
        // Registration fails only for a name registered twice, a bug caught by any test.
        let server_metrics = ServerMetrics::new().expect("the server's metrics are well-formed");
        let server = EtcdServer::new(node, config.server.clone(), server_metrics);
        let metrics = metrics::Metrics::new(&config, &server);
        let metrics = Arc::new(metrics.expect("every metric name is registered once"));
        // hub_proto's own descriptors: only a broken build fails to read them.
        let request_stats = request_stats::RequestStats::new(config.warning_unary_request_duration)
            .expect("hub_proto's descriptors decode");
        Context { server, config: Arc::new(config), metrics, request_stats: Arc::new(request_stats) }
    }

    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn server(&self) -> &Arc<EtcdServer> {
        &self.server
    }

    /// A response header as etcd fills it: a zero revision becomes the current one.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        self.server.header(revision)
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
        let access = request.get_ref().access();
        let who = match request.extensions().get::<access::Relayed>() {
            Some(access::Relayed(who)) => {
                self.server.gate(who, access).map_err(status::from_server)?;
                who.clone()
            }
            None => self.server.caller(&self.credentials(request)?, access).await.map_err(status::from_server)?,
        };
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

    /// Every service of the API, ready to mount on a tonic server: each call
    /// logged if slow ([`request_stats`]), its messages held to the size limit.
    pub fn routes(&self) -> tonic::service::Routes {
        let max = self.config.server.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let stats = self.request_stats.clone();
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
            .layer(axum::middleware::from_fn(move |req, next| request_stats::layer(stats.clone(), req, next)))
            .into()
    }
}
