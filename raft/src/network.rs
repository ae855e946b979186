//! The peer transport: openraft's RPCs (and hub's forwarded proposals) over
//! tonic gRPC on `--listen-peer-urls`, each message a bincode payload.
//!
//! [`PeerNetwork`] is the client side openraft drives, one connection per
//! target member, connected lazily so an unreachable member only costs a
//! retry. [`PeerService`] (in `peer_service.rs`) is the server side.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hub_tls::net::{Address, Url};
use hub_tls::Tls;

use hub_proto::hubpeer::{peer_client, Payload};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::cluster_id::NameCluster;

use crate::membership::Removal;
use crate::metrics::RaftMetrics;
use crate::types::{Member, TypeConfig};

/// Encodes a peer message.
pub fn encode<T: Serialize>(value: &T) -> Result<Payload, bincode::Error> {
    Ok(Payload { data: bincode::serialize(value)? })
}

/// Decodes a peer message.
pub fn decode<T: DeserializeOwned>(payload: &Payload) -> Result<T, bincode::Error> {
    bincode::deserialize(&payload.data)
}

/// A client of a member's peer service; its requests name this member's
/// cluster (`crate::cluster_id`).
pub type PeerClient = peer_client::PeerClient<InterceptedService<Channel, NameCluster>>;

/// A peer client over `channel`, for a member of cluster `cluster_id`.
pub fn peer_client(channel: Channel, cluster_id: u64) -> PeerClient {
    peer_client::PeerClient::with_interceptor(channel, NameCluster::new(cluster_id)).max_decoding_message_size(usize::MAX)
}

/// A lazily connected gRPC channel to a member's first peer URL: TCP or a
/// Unix socket, with the peer TLS for `https`/`unixs` URLs.
pub fn peer_channel(member: &Member, tls: Option<&Tls>) -> Result<Channel, String> {
    let url = member.peer_urls.first().ok_or_else(|| format!("member {} has no peer URL", member.name))?;
    let parsed = Url::parse(url)?;
    if parsed.secure && tls.is_none() {
        return Err(format!("peer URL {url} needs peer TLS (--peer-auto-tls or --peer-cert-file)"));
    }
    // The URI only names the peer in requests; the connector below dials.
    let authority = match &parsed.address {
        Address::Tcp(host_port) => host_port.clone(),
        Address::Unix(_) => "localhost".to_string(),
    };
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| format!("peer URL {url}: {e}"))?
        .connect_timeout(Duration::from_secs(1));
    let client = tls.map(|t| t.client.clone());
    let url = url.clone();
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (parsed, client, url) = (parsed.clone(), client.clone(), url.clone());
        async move {
            let io = hub_tls::net::dial(&parsed, client.as_ref()).await.inspect_err(|e| {
                if hub_tls::net::HandshakeError::is(e) {
                    // A refused certificate is a configuration error an operator must see.
                    tracing::warn!(peer = %url, error = %e, "peer TLS handshake failed");
                }
            })?;
            Ok::<_, std::io::Error>(TokioIo::new(io))
        }
    })))
}

/// etcd's `Transport.ActiveSince`: since when each peer has answered without
/// a failure in between. The leader's raft messages and every member's probes
/// (`prober.rs`) feed it; etcd's strict reconfiguration checks read it.
#[derive(Default)]
pub struct PeerActivity {
    since: parking_lot::Mutex<HashMap<u64, Instant>>,
}

impl PeerActivity {
    /// `peer` answered: active from now on, unless it already was.
    pub(crate) fn answered(&self, peer: u64) {
        self.since.lock().entry(peer).or_insert_with(Instant::now);
    }

    /// A message to `peer` did not get through: inactive until it answers.
    pub(crate) fn failed(&self, peer: u64) {
        self.since.lock().remove(&peer);
    }

    /// Since when `peer` has been active; `None` while it is not.
    pub fn active_since(&self, peer: u64) -> Option<Instant> {
        self.since.lock().get(&peer).copied()
    }
}

#[derive(Clone)]
pub struct PeerNetwork {
    tls: Option<Arc<Tls>>,
    metrics: RaftMetrics,
    activity: Arc<PeerActivity>,
    removal: Arc<Removal>,
    heartbeats: Arc<HeartbeatGaps>,
    cluster_id: u64,
    /// One channel per member and peer URL, shared by every connection openraft
    /// asks for: it asks for a new one for each linearizable read's heartbeat
    /// round, and a fresh TCP + HTTP/2 handshake per read would often not fit in
    /// that round's heartbeat-interval deadline.
    channels: Arc<parking_lot::Mutex<HashMap<(u64, String), Channel>>>,
}

impl PeerNetwork {
    /// `heartbeat_interval` is `--heartbeat-interval`: a leader's messages to a
    /// member further apart than twice that count as a late heartbeat.
    /// `activity` and `removal` are the node's: what the messages tell of
    /// each peer, and a peer's answer that this member was removed.
    pub fn new(
        cluster_id: u64,
        tls: Option<Arc<Tls>>,
        metrics: RaftMetrics,
        heartbeat_interval: Duration,
        activity: Arc<PeerActivity>,
        removal: Arc<Removal>,
    ) -> PeerNetwork {
        let heartbeats = Arc::new(HeartbeatGaps { max: 2 * heartbeat_interval, last: Default::default() });
        PeerNetwork { tls, metrics, activity, removal, heartbeats, cluster_id, channels: Arc::default() }
    }

    fn channel(&self, target: u64, node: &Member) -> Result<Channel, String> {
        let key = (target, node.peer_urls.first().cloned().unwrap_or_default());
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(&key) {
            return Ok(c.clone());
        }
        let channel = peer_channel(node, self.tls.as_deref())?;
        channels.insert(key, channel.clone());
        Ok(channel)
    }
}

/// etcd's heartbeat timeout detector: when did the leader last send each
/// member an AppendEntries (any carries its heartbeat), in which term.
struct HeartbeatGaps {
    max: Duration,
    last: parking_lot::Mutex<HashMap<u64, (u64, Instant)>>,
}

impl HeartbeatGaps {
    /// Records a message to `target` in `term`; whether it came later than it
    /// should have after the previous one of the same term.
    fn late(&self, target: u64, term: u64) -> bool {
        let now = Instant::now();
        let previous = self.last.lock().insert(target, (term, now));
        previous.is_some_and(|(t, at)| t == term && now - at > self.max)
    }

    /// After a failed send the next one is a fresh start: a member that was
    /// unreachable is the network's fault, not a late heartbeat.
    fn forget(&self, target: u64) {
        self.last.lock().remove(&target);
    }
}

pub struct PeerConnection {
    target: u64,
    client: Result<PeerClient, String>,
    metrics: RaftMetrics,
    activity: Arc<PeerActivity>,
    removal: Arc<Removal>,
    heartbeats: Arc<HeartbeatGaps>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &Member) -> Self::Network {
        let client = self.channel(target, node).map(|c| peer_client(c, self.cluster_id));
        PeerConnection {
            target,
            client,
            metrics: self.metrics.clone(),
            activity: self.activity.clone(),
            removal: self.removal.clone(),
            heartbeats: self.heartbeats.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

type RpcResult<T, E> = Result<T, RPCError<u64, Member, E>>;

impl PeerConnection {
    /// Sends one RPC; the answer is the remote's `Result<Resp, Err>`.
    async fn call<Req, Resp, Err>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        rpc: fn(&mut PeerClient, tonic::Request<Payload>) -> RpcFuture<'_>,
    ) -> RpcResult<Resp, Err>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        Err: std::error::Error + DeserializeOwned,
    {
        let (target, metrics, heartbeats, activity) = (self.target, &self.metrics, &self.heartbeats, &self.activity);
        let client = self.client.as_mut().map_err(|e| {
            metrics.send_failed(target);
            heartbeats.forget(target);
            activity.failed(target);
            RPCError::Unreachable(Unreachable::new(&TransportError(e.clone())))
        })?;
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let sent = payload.data.len();
        let mut request = tonic::Request::new(payload);
        request.set_timeout(option.hard_ttl());
        let removal = &self.removal;
        let reply = rpc(client, request).await.map_err(|status| {
            metrics.send_failed(target);
            heartbeats.forget(target);
            activity.failed(target);
            removal.check_answer(&status);
            let e = TransportError(status.to_string());
            match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            }
        })?;
        metrics.sent(target, sent);
        metrics.received(target, reply.get_ref().data.len());
        activity.answered(target);
        let answer: Result<Resp, Err> =
            decode(reply.get_ref()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

type RpcFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Payload>, tonic::Status>> + Send + 'a>>;

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        if self.heartbeats.late(self.target, rpc.vote.leader_id().term) {
            self.metrics.heartbeat_late();
        }
        self.call(&rpc, &option, |c, r| Box::pin(c.append_entries(r))).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        let (first, last) = (rpc.offset == 0, rpc.done);
        let (index, bytes) = (rpc.meta.last_log_id.map_or(0, |l| l.index), rpc.offset + rpc.data.len() as u64);
        let result = self.call(&rpc, &option, |c, r| Box::pin(c.install_snapshot(r))).await;
        self.metrics.snapshot_sent(self.target, first, last, result.is_ok());
        if last && result.is_ok() {
            // etcd's words (its rafthttp snapshot sender).
            tracing::info!(
                snapshot_index = index,
                remote_peer_id = %format_args!("{:x}", self.target),
                bytes,
                "sent database snapshot"
            );
        }
        result
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>, RaftError<u64>> {
        self.call(&rpc, &option, |c, r| Box::pin(c.vote(r))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft asks for a connection per linearizable read; each must reuse the
    /// member's channel, not open a new TCP connection (found by hub-chaos: reads
    /// failed with "leader changed" when the handshakes missed the deadline).
    #[tokio::test]
    async fn one_channel_per_member() {
        let mut net = PeerNetwork::new(
            1,
            None,
            RaftMetrics::new().unwrap(),
            Duration::from_millis(100),
            Arc::default(),
            Arc::default(),
        );
        let member = Member { name: "a".into(), peer_urls: vec!["http://127.0.0.1:1".into()], client_urls: Vec::new() };
        for _ in 0..3 {
            let _ = net.new_client(1, &member).await;
        }
        assert_eq!(net.channels.lock().len(), 1);
        let _ = net.new_client(2, &member).await;
        assert_eq!(net.channels.lock().len(), 2, "another member ID gets its own channel");
    }

    #[test]
    fn heartbeats_further_apart_than_two_intervals_are_late() {
        let gaps = HeartbeatGaps { max: Duration::from_millis(20), last: Default::default() };
        assert!(!gaps.late(1, 5), "the first message of a term is never late");
        assert!(!gaps.late(1, 5));
        std::thread::sleep(Duration::from_millis(30));
        assert!(gaps.late(1, 5));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!gaps.late(1, 6), "a new term starts over, as etcd resets its detector");
        assert!(!gaps.late(2, 6), "members are timed apart");
    }
}
