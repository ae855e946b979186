//! etcd's v3 discovery (`--discovery-token`, `--discovery-endpoints`): a new
//! member finds the other members of its cluster through an existing etcd (or
//! hub) cluster instead of `--initial-cluster`.
//!
//! Place in the request path: before anything else, on a member's first start.
//! It owns the registry protocol of etcd's `v3discovery` package: the member
//! registers `/_etcd/registry/<token>/members/<member ID>` = `name=peerURL,...`,
//! reads the cluster size from `/_etcd/registry/<token>/_config/size`, and waits
//! (a get, then a watch) until that many members registered; the first `size`
//! by create revision are the initial cluster. It never touches the member's
//! own data: hubd bootstraps with the answer as with `--initial-cluster`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hub_proto::etcdserverpb::{
    auth_client::AuthClient, kv_client::KvClient, watch_client::WatchClient, watch_request::RequestUnion,
    AuthenticateRequest, PutRequest, RangeRequest, RangeResponse, WatchCreateRequest, WatchRequest,
};
use hub_tls::net::Url;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

const REGISTRY: &str = "/_etcd/registry";

/// The longest pause between retries: etcd doubles it from 2s up to 2^8 s.
const MAX_EXPONENTIAL_RETRIES: u32 = 8;

/// The discovery client's settings, from the `--discovery-*` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub token: String,
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub insecure_transport: bool,
    pub insecure_skip_tls_verify: bool,
    pub cert: String,
    pub key: String,
    pub cacert: String,
    pub user: String,
    pub password: String,
}

/// etcd's `v3discovery` errors, with its texts.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiscoveryError {
    #[error("discovery: invalid peer URL")]
    InvalidUrl,
    #[error("discovery: size key is bad")]
    BadSizeKey,
    #[error("discovery: size key not found")]
    SizeNotFound,
    #[error("discovery: cluster is full")]
    FullCluster,
    /// The client could not be set up (bad TLS files or endpoints).
    #[error("{0}")]
    Client(String),
}

/// A member registered in the discovery service.
struct Registered {
    key: String,
    /// `name=peerURL[,name=peerURL2]`.
    peers: String,
    create_revision: i64,
}

/// The members registered so far, in create revision order (etcd's `clusterInfo`).
struct Registry {
    members_prefix: String,
    members: Vec<Registered>,
}

impl Registry {
    /// Adds a member the service reported, logging it as etcd does.
    fn add(&mut self, key: &[u8], value: &[u8], create_revision: i64) {
        let key = String::from_utf8_lossy(key).trim().to_string();
        let value = String::from_utf8_lossy(value).trim().to_string();
        let refused = if !key.starts_with(&self.members_prefix) {
            Some("invalid peer registry key")
        } else if !value.contains('=') {
            Some("invalid peer info returned from discovery service")
        } else if self.members.iter().any(|m| m.key == key) {
            Some("found duplicate peer from discovery service")
        } else {
            None
        };
        if let Some(reason) = refused {
            tracing::warn!(memberKey = %key, memberInfo = %value, "{reason}");
            return;
        }
        tracing::info!(memberKey = %key, memberInfo = %value, "found peer from discovery service");
        self.members.push(Registered { key, peers: value, create_revision });
        // Members registering at once may outnumber the size: the first by
        // create revision make the cluster.
        self.members.sort_by_key(|m| m.create_revision);
    }

    /// The initial cluster: the first `size` members' `name=peerURL` lists.
    fn initial_cluster(&self, size: usize) -> Result<String, DiscoveryError> {
        let cluster: Vec<&str> = self.members.iter().take(size).map(|m| m.peers.as_str()).collect();
        let cluster = cluster.join(",");
        match crate::config::parse_initial_cluster(&cluster) {
            Ok(_) => Ok(cluster),
            Err(_) => Err(DiscoveryError::InvalidUrl),
        }
    }
}

/// etcd's `JoinCluster`: registers this member (`member_id`, with `me` as
/// `name=peerURL,...`) and answers the initial cluster once `size` members
/// registered. Logs its outcome as etcd does.
pub async fn join_cluster(settings: &Settings, member_id: u64, me: &str) -> Result<String, DiscoveryError> {
    let endpoints = settings.endpoints.join(",");
    let result = Discovery::new(settings, member_id)?.join(me).await;
    match &result {
        Ok(cluster) => {
            tracing::info!(discovery_token = %settings.token, discovery_endpoints = %endpoints, cluster = %cluster, "discovery joined cluster successfully")
        }
        Err(e) => {
            tracing::error!(discovery_token = %settings.token, discovery_endpoints = %endpoints, cluster = "", error = %e, "discovery failed to join cluster")
        }
    }
    result
}

struct Discovery<'a> {
    settings: &'a Settings,
    client: Client,
    self_key: String,
    size_key: String,
    members_prefix: String,
    retries: u32,
}

impl<'a> Discovery<'a> {
    fn new(settings: &'a Settings, member_id: u64) -> Result<Self, DiscoveryError> {
        let cluster = format!("{REGISTRY}/{}", settings.token);
        let members_prefix = format!("{cluster}/members");
        Ok(Discovery {
            settings,
            client: Client::new(settings)?,
            self_key: format!("{members_prefix}/{member_id:x}"),
            size_key: format!("{cluster}/_config/size"),
            members_prefix,
            retries: 0,
        })
    }

    async fn join(&mut self, me: &str) -> Result<String, DiscoveryError> {
        self.check_cluster().await?;
        self.register_self(me).await;
        let (mut registry, size, revision) = self.check_cluster().await?;
        while registry.members.len() < size {
            self.wait_peers(&mut registry, size, revision).await;
        }
        registry.initial_cluster(size)
    }

    /// etcd's `checkCluster`: the size and the members registered so far, and
    /// whether this member is (or would be) among the first `size` of them.
    async fn check_cluster(&mut self) -> Result<(Registry, usize, i64), DiscoveryError> {
        loop {
            let size = match self.cluster_size().await {
                Ok(size) => size,
                Err(None) => {
                    self.back_off("cluster status check").await;
                    continue;
                }
                Err(Some(e)) => return Err(e),
            };
            let Some((registry, revision)) = self.cluster_members().await else {
                self.back_off("cluster status check").await;
                continue;
            };
            self.retries = 0;
            let position = registry.members.iter().position(|m| m.key == self.self_key);
            if position.unwrap_or(registry.members.len()) >= size {
                return Err(DiscoveryError::FullCluster);
            }
            return Ok((registry, size, revision));
        }
    }

    /// The size key's value; `Err(None)` when the service did not answer.
    async fn cluster_size(&mut self) -> Result<usize, Option<DiscoveryError>> {
        let request = RangeRequest { key: self.size_key.clone().into_bytes(), ..Default::default() };
        let response = self.range(request).await.map_err(|e| {
            tracing::warn!(clusterSizeKey = %self.size_key, error = %e, "failed to get cluster size from discovery service");
            None
        })?;
        let kv = response.kvs.first().ok_or(Some(DiscoveryError::SizeNotFound))?;
        match String::from_utf8_lossy(&kv.value).parse::<i64>() {
            Ok(size) if size > 0 => Ok(size as usize),
            _ => Err(Some(DiscoveryError::BadSizeKey)),
        }
    }

    /// The members registered, and the revision the service answered at.
    async fn cluster_members(&mut self) -> Option<(Registry, i64)> {
        let prefix = self.members_prefix.clone().into_bytes();
        let request =
            RangeRequest { range_end: hub_proto::range::prefix_end(&prefix), key: prefix, ..Default::default() };
        let response = match self.range(request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(membersKeyPrefix = %self.members_prefix, error = %e, "failed to get cluster members from discovery service");
                return None;
            }
        };
        let mut registry = Registry { members_prefix: self.members_prefix.clone(), members: Vec::new() };
        for kv in &response.kvs {
            registry.add(&kv.key, &kv.value, kv.create_revision);
        }
        Some((registry, response.header.map_or(0, |h| h.revision)))
    }

    async fn range(&mut self, request: RangeRequest) -> Result<RangeResponse, String> {
        let channel = self.client.channel().await?;
        let timeout = self.settings.request_timeout;
        let mut kv = KvClient::new(channel);
        let answer = tokio::time::timeout(timeout, kv.range(self.client.request(request))).await;
        self.client.answer(answer)
    }

    /// Puts this member's key, retrying until the service takes it.
    async fn register_self(&mut self, me: &str) {
        loop {
            let result = match self.client.channel().await {
                Ok(channel) => {
                    let request =
                        PutRequest { key: self.self_key.clone().into_bytes(), value: me.into(), ..Default::default() };
                    let mut kv = KvClient::new(channel);
                    let call = kv.put(self.client.request(request));
                    let answer = tokio::time::timeout(self.settings.request_timeout, call).await;
                    self.client.answer(answer).map(drop)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(memberKey = %self.self_key, error = %e, "failed to register members itself to the discovery service");
                    self.back_off("register member itself").await;
                }
            }
        }
        self.retries = 0;
        tracing::info!(memberKey = %self.self_key, memberInfo = %me, "register member itself successfully");
    }

    /// etcd's `waitPeers`: watches the members' prefix from `revision + 1`
    /// until `size` members registered or the watch breaks.
    async fn wait_peers(&mut self, registry: &mut Registry, size: usize, revision: i64) {
        tracing::info!(
            clusterSize = size,
            found_peers = registry.members.len(),
            "waiting for peers from discovery service"
        );
        if let Err(e) = self.watch(registry, size, revision).await {
            tracing::warn!(error = %e, "discovery watch failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        tracing::info!(
            clusterSize = size,
            found_peers = registry.members.len(),
            "found all needed peers from discovery service"
        );
    }

    async fn watch(&mut self, registry: &mut Registry, size: usize, revision: i64) -> Result<(), String> {
        let channel = self.client.channel().await?;
        let prefix = self.members_prefix.clone().into_bytes();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                range_end: hub_proto::range::prefix_end(&prefix),
                key: prefix,
                start_revision: revision + 1,
                ..Default::default()
            })),
        };
        // The request stream stays open while the watch runs.
        let (requests, outgoing) = tokio::sync::mpsc::channel(1);
        requests.send(create).await.map_err(|e| e.to_string())?;
        let outgoing = tokio_stream::wrappers::ReceiverStream::new(outgoing);
        let answer = WatchClient::new(channel).watch(self.client.request(outgoing)).await;
        let mut stream = self.client.answer(Ok(answer))?;
        while registry.members.len() < size {
            let Some(response) = stream.message().await.map_err(|e| e.message().to_string())? else {
                return Err("watch closed".to_string());
            };
            if response.canceled {
                return Err(response.cancel_reason);
            }
            for event in response.events {
                if let Some(kv) = event.kv {
                    registry.add(&kv.key, &kv.value, kv.create_revision);
                }
            }
        }
        Ok(())
    }

    /// etcd's `logAndBackoffForRetry`: 2^retries seconds, at most 2^8.
    async fn back_off(&mut self, reason: &str) {
        self.retries += 1;
        let pause = Duration::from_secs(1 << self.retries.min(MAX_EXPONENTIAL_RETRIES));
        tracing::warn!(reason, backoff = ?pause, "retry connecting to discovery service");
        self.client.next_endpoint();
        tokio::time::sleep(pause).await;
    }
}

/// A gRPC connection to one of the discovery endpoints at a time, moving to
/// the next after a failure, authenticated when `--discovery-user` is set.
struct Client {
    targets: Vec<(Endpoint, Url)>,
    current: usize,
    channel: Option<Channel>,
    tls: Arc<rustls::ClientConfig>,
    credentials: Option<(String, String)>,
    token: Option<AsciiMetadataValue>,
}

impl Client {
    fn new(settings: &Settings) -> Result<Client, DiscoveryError> {
        let s = settings;
        // clientv3's TLS setup: with a TLS file, or --discovery-insecure-transport=false.
        let wants_tls = !s.cert.is_empty() || !s.key.is_empty() || !s.cacert.is_empty() || !s.insecure_transport;
        // Go's defaults (the system's CAs) for an https endpoint without TLS flags.
        let path = |p: &str| Some(Path::new(p).to_owned()).filter(|_| !p.is_empty());
        let identity = match (path(&s.cert), path(&s.key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        };
        let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let skip_verify = s.insecure_skip_tls_verify;
        let tls = hub_tls::client_config(path(&s.cacert).as_deref(), identity, skip_verify)
            .map_err(|e| DiscoveryError::Client(e.to_string()))?;
        let mut targets = Vec::new();
        for address in &s.endpoints {
            let (url, endpoint) = hub_tls::net::client_endpoint(address, wants_tls).map_err(DiscoveryError::Client)?;
            let endpoint = endpoint
                .connect_timeout(s.dial_timeout)
                // grpc-go raises keepalive times below 10s to 10s.
                .http2_keep_alive_interval(s.keepalive_time.max(Duration::from_secs(10)))
                .keep_alive_timeout(s.keepalive_timeout);
            targets.push((endpoint, url));
        }
        if targets.is_empty() {
            return Err(DiscoveryError::Client("no endpoints available".to_string()));
        }
        let credentials = (!s.user.is_empty()).then(|| (s.user.clone(), s.password.clone()));
        Ok(Client { targets, current: 0, channel: None, tls: Arc::new(tls), credentials, token: None })
    }

    /// The connection to the current endpoint, dialed (and authenticated) once.
    async fn channel(&mut self) -> Result<Channel, String> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let (endpoint, url) = &self.targets[self.current];
        let channel = hub_tls::net::connect(endpoint, url, &self.tls).await.map_err(|e| format!("{}: {e}", url.host))?;
        if let Some((name, password)) = &self.credentials {
            let request = AuthenticateRequest { name: name.clone(), password: password.clone() };
            match AuthClient::new(channel.clone()).authenticate(request).await {
                Ok(response) => {
                    self.token =
                        Some(AsciiMetadataValue::try_from(response.into_inner().token).map_err(|e| e.to_string())?)
                }
                Err(status) if status.message() == "etcdserver: authentication is not enabled" => self.token = None,
                Err(status) => return Err(status.message().to_string()),
            }
        }
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// A request with the user's token, as clientv3 sends it.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }

    /// An RPC's answer; a failure drops the connection, so the next call dials again.
    fn answer<T>(
        &mut self,
        answer: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
    ) -> Result<T, String> {
        let error = match answer {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status.message().to_string(),
            Err(_) => "context deadline exceeded".to_string(),
        };
        self.channel = None;
        Err(error)
    }

    /// After a failure, the next call goes to the next endpoint.
    fn next_endpoint(&mut self) {
        self.channel = None;
        self.current = (self.current + 1) % self.targets.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(members: &[(&str, &str, i64)]) -> Registry {
        let mut r = Registry { members_prefix: "/_etcd/registry/t/members".into(), members: Vec::new() };
        for (key, value, rev) in members {
            r.add(key.as_bytes(), value.as_bytes(), *rev);
        }
        r
    }

    #[test]
    fn the_first_members_by_create_revision_make_the_cluster() {
        let r = registry(&[
            ("/_etcd/registry/t/members/b", "b=http://h:2", 7),
            ("/_etcd/registry/t/members/a", "a=http://h:1", 5),
            ("/_etcd/registry/t/members/c", "c=http://h:3", 9),
            ("/_etcd/registry/t/members/a", "a=http://h:9", 11),
            ("/_etcd/registry/t/members/d", "no-equals-sign", 12),
            ("/elsewhere/d", "d=http://h:4", 13),
        ]);
        assert_eq!(r.members.len(), 3);
        assert_eq!(r.initial_cluster(2), Ok("a=http://h:1,b=http://h:2".to_string()));
        assert_eq!(r.initial_cluster(5), Ok("a=http://h:1,b=http://h:2,c=http://h:3".to_string()));
        assert_eq!(
            registry(&[("/_etcd/registry/t/members/a", "a=ftp://h:1", 1)]).initial_cluster(1),
            Err(DiscoveryError::InvalidUrl)
        );
    }
}
