//! A raft member: openraft wired to the WAL, the state machine and the peer
//! transport, and the operations the services need (propose, read index,
//! lease renewal, membership), each working on any member: a follower forwards
//! to the leader, as etcd does.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_proto::etcdserverpb::InternalRaftRequest;
use hub_proto::hubpeer::Payload;
use hub_store::{EtcdError, Response, StateMachine, StoreError};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::broadcast;

use crate::forward;
use crate::log_store::LogStore;
use crate::membership::{self, MemberChange, MemberChangeError, Removal};
use crate::network::{decode, encode, peer_channel, peer_client, PeerActivity, PeerClient, PeerNetwork};
use crate::state_machine::HubStateMachine;
use hub_tls::Tls;
use crate::metrics::RaftMetrics;
use crate::types::{ApplyOutput, Command, Member, Raft};
use crate::wait::{RequestIds, Wait};
use crate::wal::{Wal, WalOptions};
use crate::Committed;

mod events;
mod force_new_cluster;
mod lease;
mod members;
mod propose;
mod read_index;
mod transfer;
mod waiting;

pub use lease::{LeaderLeases, LeaseTtl};
pub use transfer::MoveLeaderError;

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
    /// `--strict-reconfig-check`: refuse membership changes that risk quorum.
    pub strict_reconfig_check: bool,
    /// `--max-learners`.
    pub max_learners: usize,
    /// `--force-new-cluster`: restart as the one voter of the cluster.
    pub force_new_cluster: bool,
    /// `--warning-apply-duration`: an apply slower than this is logged and counted.
    pub warning_apply_duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft configuration: {0}")]
    Config(String),
    #[error("wal: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("raft: {0}")]
    Raft(String),
    /// The backend was applied only up to a point the log has purged since
    /// (a db file copied back from before the newest snapshot): nothing can
    /// bring it up to date. etcd's words: it finds no db for the snapshot.
    #[error("failed to recover v3 backend from snapshot: {BACKEND_BEHIND_SNAPSHOT} (backend applied to {applied}, log purged to {purged})")]
    BackendBehindSnapshot { applied: u64, purged: u64 },
}

/// etcd's error when its backend is older than its newest snapshot and no
/// database file for that snapshot exists.
const BACKEND_BEHIND_SNAPSHOT: &str = "failed to find database snapshot file (snap: snapshot file doesn't exist)";

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
    peers: Mutex<HashMap<u64, PeerClient>>,
    tls: Option<Arc<Tls>>,
    timeout: Duration,
    /// Whether this member has been removed from the cluster.
    removal: Arc<Removal>,
    /// Since when each peer has answered (etcd's strict reconfiguration checks).
    activity: Arc<PeerActivity>,
    strict_reconfig_check: bool,
    max_learners: usize,
    /// Held by the membership change being made on this member (the leader):
    /// one at a time, as openraft takes them.
    member_changes: Arc<tokio::sync::Mutex<()>>,
    /// Linearizable reads waiting for their read-index round.
    reads: Arc<waiting::Waiting<read_index::Reader>>,
    /// Writes a follower forwards to the leader.
    forwarding: Arc<waiting::Waiting<propose::Forward>>,
    /// Proposers waiting for their entry's apply here, by request ID.
    wait: Arc<Wait>,
    request_ids: RequestIds,
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
        // The log is purged only up to what the backend holds durably, so
        // only a backend put back from an older copy is behind it.
        if let Some(purged) = wal.purged().filter(|p| p.index > state.applied_index()) {
            let (applied, purged) = (state.applied_index(), purged.index);
            tracing::error!(error = BACKEND_BEHIND_SNAPSHOT, applied, purged, "failed to recover v3 backend from snapshot");
            return Err(NodeError::BackendBehindSnapshot { applied, purged });
        }
        if fresh && config.bootstrap {
            bootstrap(&wal, &config).await?;
        }
        // A backend restored from a snapshot holds data that no log entry carries.
        let restored = fresh && state.current_revision() > 1;
        let wal = Arc::new(wal);
        let (committed, _) = broadcast::channel(WATCH_BACKLOG);
        let state = Arc::new(Mutex::new(state));
        let wait = Arc::new(Wait::default());
        let slow_apply = metrics.slow_apply(config.warning_apply_duration);
        let machine = HubStateMachine::new(state.clone(), wal.clone(), committed.clone(), wait.clone(), slow_apply);
        machine.members_in_step().map_err(|e| NodeError::Raft(e.to_string()))?;
        let mut log_store = LogStore::new(config.id, wal.clone(), machine.durable());
        if config.force_new_cluster && !fresh {
            force_new_cluster::rewrite(&wal, &mut log_store, &config).await?;
        }
        let heartbeat = Duration::from_millis(config.heartbeat_interval_ms);
        let (removal, activity) = (Arc::new(Removal::default()), Arc::new(PeerActivity::default()));
        let network = PeerNetwork::new(config.cluster_id, config.tls.clone(), metrics.clone(), heartbeat, activity.clone(), removal.clone());
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
            removal,
            activity,
            strict_reconfig_check: config.strict_reconfig_check,
            max_learners: config.max_learners,
            member_changes: Arc::default(),
            reads: Arc::default(),
            forwarding: Arc::default(),
            wait,
            request_ids: RequestIds::new(config.id),
            metrics,
            #[cfg(feature = "failpoints")]
            wal,
        });
        tokio::spawn(watch_leadership(node.clone()));
        tokio::spawn(crate::prober::run(Arc::downgrade(&node)));
        tokio::spawn(read_index::read_rounds(Arc::downgrade(&node), node.reads.clone()));
        tokio::spawn(propose::forward_rounds(Arc::downgrade(&node), node.forwarding.clone()));
        if restored {
            tokio::spawn(snapshot_restored_backend(node.clone()));
        }
        // A lone voter need not wait out an election timeout (nor does etcd's),
        // new, restarted (a member starts as a follower: `LogStore::read_vote`)
        // or forced into a new cluster.
        let voters: Vec<u64> = node.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if voters == [config.id] {
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

    /// How long a request may wait for raft (etcd's request timeout).
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn peer(&self, id: u64, node: &Member) -> Result<PeerClient, StoreError> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(&id) {
            return Ok(c.clone());
        }
        let channel = peer_channel(node, self.tls.as_deref()).map_err(StoreError::Corrupt)?;
        let client = peer_client(channel, self.cluster_id);
        peers.insert(id, client.clone());
        Ok(client)
    }

    pub(crate) fn leader(&self) -> Result<(u64, Member), EtcdError> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader.ok_or(EtcdError::NoLeader)?;
        let node = m.membership_config.membership().get_node(&leader).cloned().ok_or(EtcdError::NoLeader)?;
        Ok((leader, node))
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

    /// The slow-apply warning, for the reads answered without the log.
    pub fn slow_apply(&self) -> &crate::SlowApply {
        self.machine.slow_apply()
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
        self.removal.wait().await
    }

    /// Whether `peer` is no longer a member, as only the leader can tell: its
    /// log holds every membership change, and the one that left `peer` out is
    /// applied (a lagging follower's view, or one not yet committed, could
    /// leave out a member that still is one).
    pub(crate) fn has_removed(&self, peer: u64) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let index = |l: Option<&crate::types::LogId>| l.map_or(0, |l| l.index);
        m.state == ServerState::Leader
            && m.last_applied.is_some()
            && index(m.membership_config.log_id().as_ref()) <= index(m.last_applied.as_ref())
            && m.membership_config.membership().get_node(&peer).is_none()
    }

    pub(crate) fn removal(&self) -> &Removal {
        &self.removal
    }

    pub(crate) fn activity(&self) -> &PeerActivity {
        &self.activity
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
        // A compaction in progress resumes at the next start, as etcd's.
        let state = self.state_arc();
        let _ = tokio::task::spawn_blocking(move || state.lock().stop_compaction()).await;
        // What was applied last may not have been synced yet.
        if let Err(e) = self.machine.sync().await {
            tracing::warn!(error = %e, "backend sync at shutdown");
        }
    }
}

/// A peer message that does not encode or decode.
fn corrupt(e: bincode::Error) -> StoreError {
    StoreError::Corrupt(format!("peer message: {e}"))
}

/// The leader refused with an etcd error, sent as its text.
fn refusal(text: String) -> StoreError {
    StoreError::Etcd(EtcdError::from_message(&text).unwrap_or(EtcdError::NoLeader))
}

/// One failure, for each of the callers that share it.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Etcd(e) => StoreError::Etcd(e.clone()),
        other => StoreError::Corrupt(other.to_string()),
    }
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
/// A member removed from the cluster stops serving.
async fn watch_leadership(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let mut was_leader = false;
    let mut was_member = false;
    let mut observed = events::Observed::default();
    loop {
        let (is_member, leader) = {
            let m = metrics.borrow();
            observed.update(node.id, node.cluster_id, &m);
            (m.membership_config.membership().get_node(&node.id).is_some(), m.state == ServerState::Leader)
        };
        if was_member && !is_member {
            node.removal.mark();
            was_member = false;
        }
        was_member |= is_member;
        if leader && !was_leader {
            node.state.lock().refresh_leases(Instant::now());
        }
        was_leader = leader;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
