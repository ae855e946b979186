//! A raft member: openraft wired to the WAL, the state machine and the peer
//! transport, and the operations the services need (propose, read index,
//! lease renewal, membership), each working on any member: a follower forwards
//! to the leader, as etcd does.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_proto::etcdserverpb::InternalRaftRequest;
use hub_proto::hubpeer::{peer_client::PeerClient, Payload};
use hub_store::{EtcdError, Response, StateMachine, StoreError};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::broadcast;
use tonic::transport::Channel;

use crate::forward;
use crate::log_store::LogStore;
use crate::membership::{self, MemberChange, MemberChangeError};
use crate::network::{decode, encode, peer_channel, PeerNetwork};
use crate::state_machine::HubStateMachine;
use hub_tls::Tls;
use crate::metrics::RaftMetrics;
use crate::types::{Command, Member, Raft};
use crate::wal::{Wal, WalOptions};
use crate::Committed;

/// How a member is started, from hubd's flags.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub cluster_id: u64,
    /// Where the WAL lives (`<data-dir>/member/wal`, or `--wal-dir`).
    pub wal_dir: PathBuf,
    /// The members of `--initial-cluster`, used only to bootstrap a new cluster.
    pub initial_members: BTreeMap<u64, Member>,
    /// `--initial-cluster-state new`: bootstrap if the log is empty.
    pub bootstrap: bool,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// `--snapshot-count`: entries between snapshots.
    pub snapshot_count: u64,
    /// Peer TLS, when any `--peer-*` TLS flag is set.
    pub tls: Option<Arc<Tls>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft configuration: {0}")]
    Config(String),
    #[error("wal: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("raft: {0}")]
    Raft(String),
}

/// How many applied commands a slow watch stream may fall behind before it
/// resynchronizes from the store.
const WATCH_BACKLOG: usize = 4096;

/// etcd's request timeout for a single member: 5 s plus two election timeouts.
fn request_timeout(election_timeout_ms: u64) -> Duration {
    Duration::from_millis(5000 + 2 * election_timeout_ms)
}

pub struct Node {
    id: u64,
    cluster_id: u64,
    raft: Raft,
    state: Arc<Mutex<StateMachine>>,
    machine: HubStateMachine,
    committed: broadcast::Sender<Arc<Committed>>,
    peers: Mutex<HashMap<u64, PeerClient<Channel>>>,
    tls: Option<Arc<Tls>>,
    timeout: Duration,
    /// Set once this member is removed from the cluster.
    removed: tokio::sync::watch::Sender<bool>,
    metrics: RaftMetrics,
    #[cfg(feature = "failpoints")]
    wal: Arc<Wal>,
}

impl Node {
    /// Opens the WAL, starts openraft and, for a new cluster with an empty log,
    /// bootstraps the initial membership (safe on every member at once).
    pub async fn start(config: NodeConfig, state: StateMachine) -> Result<Arc<Node>, NodeError> {
        let raft_config = Config {
            cluster_name: format!("{:x}", config.cluster_id),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_ms,
            // Randomized in [timeout, 1.5 timeout): a dead leader is replaced
            // within about two election timeouts, as with etcd.
            election_timeout_max: config.election_timeout_ms * 3 / 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count.max(1)),
            max_in_snapshot_log_to_keep: 5000.min(config.snapshot_count),
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(|e| NodeError::Config(e.to_string()))?);
        let metrics = RaftMetrics::new().map_err(|e| NodeError::Config(format!("metrics: {e}")))?;
        let wal_options = WalOptions { metrics: Some(metrics.wal.clone()), ..WalOptions::default() };
        let wal = Wal::open(&config.wal_dir, wal_options)?;
        let fresh = wal.last_entry().is_none() && wal.purged().is_none() && wal.vote().is_none();
        if fresh && config.bootstrap {
            bootstrap(&wal, &config).await?;
        }
        // A backend restored from a snapshot holds data that no log entry carries.
        let restored = fresh && state.current_revision() > 1;
        let wal = Arc::new(wal);
        let (committed, _) = broadcast::channel(WATCH_BACKLOG);
        let state = Arc::new(Mutex::new(state));
        let machine = HubStateMachine::new(state.clone(), committed.clone(), metrics.clone());
        let log_store = LogStore::new(wal.clone(), machine.durable());
        let heartbeat = Duration::from_millis(config.heartbeat_interval_ms);
        let network = PeerNetwork::new(config.tls.clone(), metrics.clone(), heartbeat);
        // Re-applies the log up to the saved committed index before it returns.
        let raft = Raft::new(config.id, raft_config, network, log_store, machine.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        #[cfg(feature = "failpoints")]
        machine.running.store(true, std::sync::atomic::Ordering::SeqCst);
        {
            let sm = state.lock();
            tracing::info!(applied_index = sm.applied_index(), revision = sm.current_revision(), "raft started");
        }
        let node = Arc::new(Node {
            id: config.id,
            cluster_id: config.cluster_id,
            raft,
            state,
            machine,
            committed,
            peers: Mutex::new(HashMap::new()),
            tls: config.tls.clone(),
            timeout: request_timeout(config.election_timeout_ms),
            removed: tokio::sync::watch::Sender::new(false),
            metrics,
            #[cfg(feature = "failpoints")]
            wal,
        });
        tokio::spawn(watch_leadership(node.clone()));
        tokio::spawn(crate::prober::run(Arc::downgrade(&node)));
        if restored {
            tokio::spawn(snapshot_restored_backend(node.clone()));
        }
        if fresh && config.bootstrap && config.initial_members.len() == 1 {
            // A lone voter need not wait out an election timeout (nor does etcd's).
            let _ = node.raft.trigger().elect().await;
        }
        Ok(node)
    }

    /// The WAL's disk-fault hooks, for the chaos suite.
    #[cfg(feature = "failpoints")]
    pub fn wal_failpoints(&self) -> &crate::wal::Failpoints {
        self.wal.failpoints()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Waits until some member leads the cluster (etcd serves clients only then).
    pub async fn wait_for_leader(&self) {
        let mut metrics = self.raft.metrics();
        loop {
            if metrics.borrow().current_leader.is_some() {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Proposes a command and waits until it is committed and applied; a
    /// follower forwards it to the leader.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<Response, StoreError> {
        match tokio::time::timeout(self.timeout, self.propose_inner(req)).await {
            Ok(result) => result.and_then(|r| r.map_err(StoreError::Etcd)),
            Err(_) => Err(EtcdError::Timeout.into()),
        }
    }

    async fn propose_inner(&self, req: InternalRaftRequest) -> Result<Result<Response, EtcdError>, StoreError> {
        let bytes = req.encode_to_vec();
        match self.raft.client_write(Command(bytes.clone())).await {
            Ok(resp) => Ok(resp.data.result.unwrap_or(Ok(Response::AlreadyApplied))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let (Some(leader), Some(node)) = (f.leader_id, f.leader_node) else {
                    return Err(EtcdError::NoLeader.into());
                };
                let mut client = self.peer(leader, &node)?;
                let sent = bytes.len();
                let reply = client.propose(Payload { data: bytes }).await.map_err(|s| {
                    self.metrics.send_failed(leader);
                    unavailable(&s)
                })?;
                // etcd forwards proposals over its peer streams, so they count as peer traffic.
                self.metrics.sent(leader, sent);
                self.metrics.received(leader, reply.get_ref().data.len());
                forward::decode_answer(&reply.get_ref().data).map_err(StoreError::Corrupt)
            }
            Err(RaftError::APIError(e)) => Err(StoreError::Corrupt(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped.into()),
        }
    }

    /// Proposes on this member only (the peer service, for a follower's forward).
    pub(crate) async fn propose_here(&self, bytes: Vec<u8>) -> Result<Response, EtcdError> {
        match self.raft.client_write(Command(bytes)).await {
            Ok(resp) => resp.data.result.unwrap_or(Ok(Response::AlreadyApplied)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(EtcdError::LeaderChanged),
            Err(_) => Err(EtcdError::Stopped),
        }
    }

    pub(crate) fn peer(&self, id: u64, node: &Member) -> Result<PeerClient<Channel>, StoreError> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(&id) {
            return Ok(c.clone());
        }
        let channel = peer_channel(node, self.tls.as_deref()).map_err(StoreError::Corrupt)?;
        let client = PeerClient::new(channel).max_decoding_message_size(usize::MAX);
        peers.insert(id, client.clone());
        Ok(client)
    }

    fn leader(&self) -> Result<(u64, Member), EtcdError> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader.ok_or(EtcdError::NoLeader)?;
        let node = m.membership_config.membership().get_node(&leader).cloned().ok_or(EtcdError::NoLeader)?;
        Ok((leader, node))
    }

    /// Waits until a read on this member sees every write committed before the
    /// call (etcd's ReadIndex): the leader confirms its leadership with a quorum;
    /// a follower asks the leader for the commit index and waits to apply it.
    pub async fn read_index(&self) -> Result<(), StoreError> {
        #[cfg(feature = "failpoints")]
        if crate::chaos::enabled(crate::chaos::Bug::StaleRead) {
            return Ok(());
        }
        let work = async {
            let (leader, node) = self.leader()?;
            let index = if leader == self.id {
                self.read_index_here().await?
            } else {
                let mut client = self.peer(leader, &node)?;
                let reply = client.read_index(Payload::default()).await.map_err(|s| unavailable(&s))?;
                decode::<Result<u64, String>>(reply.get_ref()).map_err(corrupt)?.map_err(refusal)?
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

    /// Renews a lease on the leader (leases are counted down there only).
    pub async fn lease_renew(&self, id: i64) -> Result<i64, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(self.renew_here(id)?);
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.lease_renew(encode(&id).map_err(corrupt)?).await.map_err(|s| unavailable(&s))?;
        decode::<Result<i64, String>>(reply.get_ref()).map_err(corrupt)?.map_err(refusal)
    }

    /// Renews a lease in this member's lessor (the leader's is the one that counts).
    pub(crate) fn renew_here(&self, id: i64) -> Result<i64, EtcdError> {
        self.state.lock().lease_renew(id, Instant::now())
    }

    /// Changes the membership on the leader (forwarded by a follower).
    pub async fn change_members(&self, change: MemberChange) -> Result<(), MemberChangeError> {
        let (leader, node) = self.leader().map_err(|_| MemberChangeError::NotLeader)?;
        if leader == self.id {
            let promote = matches!(change, MemberChange::Promote { .. });
            let result = membership::apply(&self.raft, change).await;
            match &result {
                Ok(()) if promote => self.metrics.learner_promoted(None),
                Err(e @ MemberChangeError::LearnerNotReady) => self.metrics.learner_promoted(Some(&e.to_string())),
                _ => {}
            }
            return result;
        }
        let other = |e: &dyn std::fmt::Display| MemberChangeError::Other(e.to_string());
        let mut client = self.peer(leader, &node).map_err(|e| other(&e))?;
        let payload = encode(&change).map_err(|e| other(&e))?;
        let reply = client.change_membership(payload).await.map_err(|s| other(&s.message()))?;
        decode::<Result<(), MemberChangeError>>(reply.get_ref()).map_err(|e| other(&e))?
    }

    /// Hands leadership to `target` (etcd's MoveLeader), on the leader.
    ///
    /// openraft 0.9 has no leadership transfer, so it is done the way a
    /// transfer works underneath: the leader stops heartbeating and every
    /// member but the target stops starting elections; the target's election
    /// timer fires first and it wins (its log is complete: it is a voter of the
    /// committed configuration). Everything is switched back on afterwards,
    /// whatever happened.
    pub async fn move_leader(&self, target: u64) -> Result<(), MoveLeaderError> {
        if !self.is_leader() {
            return Err(MoveLeaderError::NotLeader);
        }
        if target == self.id {
            return Ok(());
        }
        let members = self.members();
        let Some(transferee) = members.iter().find(|(id, _, learner)| *id == target && !learner).map(|(_, m, _)| m.clone())
        else {
            return Err(MoveLeaderError::BadTransferee);
        };
        let others: Vec<(u64, Member)> =
            members.into_iter().filter(|(id, _, _)| *id != target && *id != self.id).map(|(id, m, _)| (id, m)).collect();
        self.set_elections(&others, false).await;
        self.raft.runtime_config().elect(false);
        self.raft.runtime_config().heartbeat(false);
        let mut metrics = self.raft.metrics();
        let handed_over = async {
            while metrics.borrow().current_leader != Some(target) || metrics.borrow().state == ServerState::Leader {
                if metrics.changed().await.is_err() {
                    break;
                }
            }
        };
        // Voters refuse a candidate while they heard from the leader within its
        // lease (openraft's: the longest election timeout). Once that has run
        // out the transferee is told to campaign at once, and again every
        // election timeout, rather than left to its own timer, which the
        // leader's appends keep resetting.
        let config = self.raft.config();
        let campaign = async {
            tokio::time::sleep(Duration::from_millis(config.election_timeout_max)).await;
            loop {
                if let Ok(mut client) = self.peer(target, &transferee) {
                    if let Err(e) = client.campaign(Payload { data: Vec::new() }).await {
                        tracing::debug!(member = format_args!("{target:x}"), error = %e, "could not start the transferee's campaign");
                    }
                }
                tokio::time::sleep(Duration::from_millis(config.election_timeout_min)).await;
            }
        };
        let moved = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                () = handed_over => {}
                () = campaign => {}
            }
        })
        .await;
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
        self.set_elections(&others, true).await;
        match moved {
            Ok(()) if self.raft.metrics().borrow().current_leader == Some(target) => Ok(()),
            _ => Err(MoveLeaderError::Timeout),
        }
    }

    async fn set_elections(&self, members: &[(u64, Member)], enabled: bool) {
        for (id, m) in members {
            let Ok(mut client) = self.peer(*id, m) else { continue };
            let Ok(data) = bincode::serialize(&enabled) else { continue };
            if let Err(e) = client.set_election(Payload { data }).await {
                tracing::warn!(member = format_args!("{id:x}"), error = %e, enabled, "could not switch elections");
            }
        }
    }

    /// Publishes this member's name and client URLs to the cluster once a
    /// leader exists, retrying until it succeeds (etcd's publish).
    pub async fn publish(self: Arc<Self>, name: String, client_urls: Vec<String>) {
        loop {
            self.wait_for_leader().await;
            let change = MemberChange::Publish { id: self.id, name: name.clone(), client_urls: client_urls.clone() };
            match self.change_members(change).await {
                Ok(()) => {
                    tracing::info!(member = format_args!("{:x}", self.id), "published local member to cluster");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A lease's remaining and granted TTL and keys, as the leader counts them
    /// (`None`: no such lease).
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseTtl>, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(self.local_lease_ttl(id));
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.lease_time_to_live(encode(&id).map_err(corrupt)?).await.map_err(|s| unavailable(&s))?;
        decode(reply.get_ref()).map_err(corrupt)
    }

    pub(crate) fn local_lease_ttl(&self, id: i64) -> Option<LeaseTtl> {
        let sm = self.state.lock();
        sm.lease(id).map(|l| LeaseTtl {
            remaining: l.remaining_secs(Instant::now()),
            granted: l.ttl,
            keys: l.keys.iter().cloned().collect(),
        })
    }

    /// The state machine, for reads. Hold the lock briefly: applies wait on it.
    pub fn state(&self) -> &Mutex<StateMachine> {
        &self.state
    }

    /// The state machine, for a blocking thread.
    pub(crate) fn state_arc(&self) -> Arc<Mutex<StateMachine>> {
        self.state.clone()
    }

    /// Subscribes to applied changes; subscribe before reading the store's
    /// revision so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.committed.subscribe()
    }

    /// This member's WAL, peer and apply metrics, for `/metrics`.
    pub fn metrics(&self) -> &RaftMetrics {
        &self.metrics
    }

    pub fn member_id(&self) -> u64 {
        self.id
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn leader_id(&self) -> u64 {
        self.raft.metrics().borrow().current_leader.unwrap_or(0)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The last log index this member holds.
    pub fn raft_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// Every member of the current configuration, with whether it is a learner.
    pub fn members(&self) -> Vec<(u64, Member, bool)> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership.nodes().map(|(id, node)| (*id, node.clone(), !voters.contains(id))).collect()
    }

    /// Resolves when this member has been removed from the cluster (it should
    /// then stop, as etcd does).
    pub async fn removed(&self) {
        let mut removed = self.removed.subscribe();
        let _ = removed.wait_for(|r| *r).await;
    }

    /// Resolves, with the reason, once this member must stop serving: its
    /// backend could not be made durable (a failed fsync leaves pages whose
    /// write-back failed), or raft stopped on a storage error. etcd exits then.
    pub async fn failed(&self) -> String {
        let mut durable = self.machine.durable();
        let mut metrics = self.raft.metrics();
        let backend = async {
            let reason = durable.wait_for(|d| d.is_err()).await.ok().and_then(|d| d.clone().err());
            match reason {
                Some(reason) => reason,
                None => std::future::pending().await,
            }
        };
        let raft = async {
            // A stop asked for (shutdown) is no failure.
            let reason = metrics
                .wait_for(|m| matches!(m.running_state, Err(ref e) if !matches!(e, openraft::error::Fatal::Stopped)))
                .await
                .ok()
                .and_then(|m| m.running_state.clone().err());
            match reason {
                Some(e) => format!("raft stopped: {e}"),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = backend => reason,
            reason = raft => reason,
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        // What was applied last may not have been synced yet.
        if let Err(e) = self.machine.sync().await {
            tracing::warn!(error = %e, "backend sync at shutdown");
        }
    }
}

/// A lease as its time-to-live query reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseTtl {
    /// Seconds left (-1 once expired).
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

/// Why a leadership transfer failed, with etcd's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveLeaderError {
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    Timeout,
}

/// A peer message that does not encode or decode.
fn corrupt(e: bincode::Error) -> StoreError {
    StoreError::Corrupt(format!("peer message: {e}"))
}

/// The leader refused with an etcd error, sent as its text.
fn refusal(text: String) -> StoreError {
    StoreError::Etcd(EtcdError::from_message(&text).unwrap_or(EtcdError::NoLeader))
}

fn unavailable(status: &tonic::Status) -> StoreError {
    tracing::debug!(%status, "forward to the leader failed");
    StoreError::Etcd(EtcdError::NoLeader)
}

/// Writes a new cluster's first log entry, the initial membership, as every
/// member of `--initial-cluster` does on its own (the same entry everywhere,
/// like openraft's `initialize`), with a term-1 vote: etcd's raft bootstraps at
/// term 1, so the first leader is elected at term 2, and clients see etcd's terms.
async fn bootstrap(wal: &Wal, config: &NodeConfig) -> Result<(), NodeError> {
    let voters: std::collections::BTreeSet<u64> = config.initial_members.keys().copied().collect();
    let membership = openraft::Membership::new(vec![voters], config.initial_members.clone());
    let entry = crate::types::Entry {
        log_id: openraft::LogId::default(),
        payload: openraft::EntryPayload::Membership(membership),
    };
    let encode = |e: bincode::Error| NodeError::Raft(e.to_string());
    let data = bincode::serialize(&entry).map_err(encode)?;
    wal.save_vote(bincode::serialize(&openraft::Vote::new(1, config.id)).map_err(encode)?)?;
    let first = crate::wal::LogEntry { index: 0, term: 0, data: data.into() };
    wal.append(vec![first]).await?;
    tracing::info!(members = config.initial_members.len(), "bootstrapped a new cluster");
    Ok(())
}

/// A member that joins later must get a restored backend's data (`etcdctl
/// snapshot restore`) by snapshot, since replaying the log from its start
/// gives none of it; so the first snapshot is taken as soon as the first
/// entries are applied and the log behind it is purged, as etcd's restore
/// starts its WAL from a snapshot.
async fn snapshot_restored_backend(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    if metrics.wait_for(|m| m.last_applied.is_some()).await.is_err() {
        return;
    }
    if let Err(e) = node.raft.trigger().snapshot().await {
        tracing::warn!(error = %e, "cannot snapshot the restored backend");
        return;
    }
    let Ok(snapshot) = metrics.wait_for(|m| m.snapshot.is_some()).await.map(|m| m.snapshot) else { return };
    if let Some(log_id) = snapshot {
        tracing::info!(index = log_id.index, "snapshot of the restored backend taken; later members start from it");
        if let Err(e) = node.raft.trigger().purge_log(log_id.index).await {
            tracing::warn!(error = %e, "cannot purge the log behind the restored backend's snapshot");
        }
    }
}

/// A member that becomes leader restarts every lease's countdown, so leases do
/// not expire for the time the cluster had no leader (etcd's lessor promote).
async fn watch_leadership(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let mut was_leader = false;
    let mut was_member = false;
    loop {
        let is_member = metrics.borrow().membership_config.membership().get_node(&node.id).is_some();
        if was_member && !is_member {
            tracing::warn!(member = format_args!("{:x}", node.id), "the member has been permanently removed from the cluster");
            node.removed.send_replace(true);
        }
        was_member |= is_member;
        let leader = metrics.borrow().state == ServerState::Leader;
        if leader && !was_leader {
            tracing::info!(member = format_args!("{:x}", node.id), term = node.term(), "became leader");
            node.state.lock().refresh_leases(Instant::now());
        }
        was_leader = leader;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
