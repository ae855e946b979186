//! Membership changes as etcd's Cluster service asks for them, made through
//! openraft's joint consensus on the leader (a follower forwards them), after
//! etcd's checks: `--strict-reconfig-check` (enough started members, a quorum
//! of peers connected for etcd's health interval), `--max-learners`, a
//! learner promoted only once in sync. The leader makes them one at a time,
//! each once the last is applied ([`apply`]). How a membership looks in etcd's
//! `members` bucket ([`etcd_members`]), and how a removed member learns it is
//! ([`Removal`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use hub_store::EtcdMember;
use openraft::{ChangeMembers, Membership, RaftMetrics};
use serde::{Deserialize, Serialize};

use sha1::{Digest, Sha1};

use crate::network::PeerActivity;
use crate::types::{Member, Raft};

fn sha1_u64(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

/// etcd's `membership.NewMember`: SHA-1 of the sorted peer URLs, the cluster
/// token and (for a member added at run time) the Unix time, first 8 bytes.
pub fn etcd_member_id(peer_urls: &[String], token: &str, unix_time: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    if let Some(t) = unix_time {
        b.extend_from_slice(t.to_string().as_bytes());
    }
    sha1_u64(&b)
}

/// etcd's `RaftCluster.genID`: SHA-1 of the sorted member IDs.
pub fn etcd_cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_u64(&b)
}

/// For a member joining an existing cluster (`--initial-cluster-state
/// existing`): asks the members at `peer_urls` for the cluster, and finds the
/// member added with this member's peer URLs. Returns (member ID, cluster ID).
pub async fn discover(
    peer_urls: &[String],
    my_peer_urls: &[String],
    tls: Option<&hub_tls::Tls>,
) -> Result<(u64, u64), String> {
    use hub_proto::hubpeer::{peer_client::PeerClient, Payload};
    let mut last_error = String::from("no other member in --initial-cluster");
    for url in peer_urls {
        let member = Member { name: String::new(), peer_urls: vec![url.clone()], client_urls: Vec::new() };
        let Ok(channel) = crate::network::peer_channel(&member, tls) else { continue };
        let reply = match PeerClient::new(channel).members(Payload::default()).await {
            Ok(r) => r,
            Err(e) => {
                last_error = format!("{url}: {}", e.message());
                continue;
            }
        };
        let (cluster_id, members): (u64, Vec<(u64, Member, bool)>) =
            bincode::deserialize(&reply.get_ref().data).map_err(|e| e.to_string())?;
        let mut mine: Vec<String> = my_peer_urls.to_vec();
        mine.sort();
        for (id, m, _) in members {
            let mut theirs = m.peer_urls.clone();
            theirs.sort();
            if theirs == mine {
                return Ok((id, cluster_id));
            }
        }
        return Err(format!("no member with peer URLs {} in the cluster (add it with member add first)", mine.join(",")));
    }
    Err(format!("could not reach the cluster: {last_error}"))
}

/// The members of `membership` as etcd keeps them in its `members` bucket:
/// a member is a learner unless it votes in one of the configurations (the
/// old or the new one while a change is joint).
pub(crate) fn etcd_members(membership: &Membership<u64, Member>) -> Vec<EtcdMember> {
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, m)| EtcdMember {
            id: *id,
            peer_urls: m.peer_urls.clone(),
            is_learner: !voters.contains(id),
            name: m.name.clone(),
            client_urls: m.client_urls.clone(),
        })
        .collect()
}

/// One change to the cluster's membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberChange {
    /// etcd's MemberAdd: a voter (or a learner) that may not be running yet.
    Add { id: u64, member: Member, learner: bool },
    /// etcd's MemberRemove.
    Remove { id: u64 },
    /// etcd's MemberUpdate: new peer URLs.
    UpdatePeerUrls { id: u64, peer_urls: Vec<String> },
    /// etcd's MemberPromote: a learner becomes a voter.
    Promote { id: u64 },
    /// A starting member publishes its name and client URLs (etcd's
    /// "published local member to cluster").
    Publish { id: u64, name: String, client_urls: Vec<String> },
}

impl MemberChange {
    /// The member the change is about.
    pub fn id(&self) -> u64 {
        match self {
            MemberChange::Add { id, .. }
            | MemberChange::Remove { id }
            | MemberChange::UpdatePeerUrls { id, .. }
            | MemberChange::Promote { id }
            | MemberChange::Publish { id, .. } => *id,
        }
    }
}

/// Why a change was refused, with etcd's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MemberChangeError {
    #[error("etcdserver: member ID already exist")]
    IdExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: {0}")]
    Other(String),
    // Later variants go last: forwarded answers carry the variant's index.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: request timed out")]
    Timeout,
}

/// etcd's `HealthInterval`: a peer counts as connected for the strict
/// reconfiguration checks once it has been active this long.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// etcd promotes a learner whose log matches at least this share of the leader's.
const LEARNER_READY_PERCENT: f64 = 0.9;

/// What the leader checks a change against, from the member's flags.
pub(crate) struct Rules<'a> {
    pub me: u64,
    /// `--strict-reconfig-check`.
    pub strict: bool,
    /// `--max-learners`.
    pub max_learners: usize,
    pub activity: &'a PeerActivity,
    /// Held while a change is checked and proposed: openraft refuses a change
    /// proposed while another is in progress.
    pub one_at_a_time: &'a std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// The membership a change is checked against: the leader's latest.
struct Cluster {
    nodes: BTreeMap<u64, Member>,
    voters: BTreeSet<u64>,
}

impl Cluster {
    /// etcd's `Member.IsStarted`: the member has published its name.
    fn started_voters(&self, except: Option<u64>) -> (usize, usize) {
        let voters = self.voters.iter().filter(|id| Some(**id) != except);
        let started = voters.clone().filter(|id| self.nodes.get(id).is_some_and(|m| !m.name.is_empty())).count();
        (voters.count(), started)
    }

    fn learners(&self) -> usize {
        self.nodes.len() - self.voters.len()
    }

    fn peer_url_taken(&self, urls: &[String], except: Option<u64>) -> bool {
        self.nodes.iter().any(|(id, m)| Some(*id) != except && m.peer_urls.iter().any(|u| urls.contains(u)))
    }
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

impl Rules<'_> {
    /// etcd's `numConnectedSince`: this member and the voters active since
    /// before `HEALTH_INTERVAL` ago.
    fn connected(&self, cluster: &Cluster) -> usize {
        let since = Instant::now().checked_sub(HEALTH_INTERVAL);
        let connected = |id: &&u64| {
            **id == self.me
                || matches!((self.activity.active_since(**id), since), (Some(t), Some(since)) if t <= since)
        };
        cluster.voters.iter().filter(connected).count()
    }

    /// etcd's `mayAddMember`.
    fn may_add(&self, cluster: &Cluster, learner: bool) -> Result<(), MemberChangeError> {
        if !self.strict {
            return Ok(());
        }
        // IsReadyToAddVotingMember: the new member counts, not as started
        // (but a second member may join one that runs: restoring a cluster).
        let (voters, started) = cluster.started_voters(None);
        if !learner && !(started == 1 && voters == 1) && started < quorum(voters + 1) {
            return Err(MemberChangeError::NotEnoughStarted);
        }
        // The new member counts as unavailable.
        if voters > 1 && self.connected(cluster) < quorum(voters + 1) {
            return Err(MemberChangeError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `mayRemoveMember`.
    fn may_remove(&self, cluster: &Cluster, id: u64) -> Result<(), MemberChangeError> {
        if !self.strict || (cluster.nodes.contains_key(&id) && !cluster.voters.contains(&id)) {
            return Ok(());
        }
        let (voters, started) = cluster.started_voters(Some(id));
        if started < quorum(voters) {
            return Err(MemberChangeError::NotEnoughStarted);
        }
        // A member that is down is no part of the active quorum.
        if id != self.me && self.activity.active_since(id).is_none() {
            return Ok(());
        }
        let voters = cluster.voters.len();
        if self.connected(cluster).saturating_sub(1) < 1 + voters.saturating_sub(1) / 2 {
            return Err(MemberChangeError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `mayPromoteMember`, after the learner is known to be in sync.
    fn may_promote(&self, cluster: &Cluster) -> Result<(), MemberChangeError> {
        if !self.strict {
            return Ok(());
        }
        // IsReadyToPromoteMember: the learner counts, as started.
        let (voters, started) = cluster.started_voters(None);
        if started + 1 < quorum(voters + 1) {
            return Err(MemberChangeError::NotEnoughStarted);
        }
        Ok(())
    }
}

fn raft_err<E: std::fmt::Display>(e: E) -> MemberChangeError {
    MemberChangeError::Other(e.to_string())
}

fn write_err(e: RaftError<u64, ClientWriteError<u64, Member>>) -> MemberChangeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MemberChangeError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::LearnerNotFound(_))) => {
            MemberChangeError::NotFound
        }
        other => raft_err(other),
    }
}

/// What openraft is asked to do for a change that passed etcd's checks.
enum Step {
    /// Nothing changes (a member publishing what the cluster has already).
    Nothing,
    /// A new member, as a learner first; a voter once it caught up.
    Add { id: u64, member: Member, voter: bool },
    Change(ChangeMembers<u64, Member>),
}

/// Applies `change` on the leader, checked as etcd checks it. The leader
/// makes one change at a time, each once the last is [`settled`]; the checks
/// run first against the latest membership (a refusal does not wait), and
/// again once it is this change's turn.
pub(crate) async fn apply(raft: &Raft, rules: &Rules<'_>, change: MemberChange) -> Result<(), MemberChangeError> {
    plan(&raft.metrics().borrow(), rules, &change)?;
    let one_at_a_time = rules.one_at_a_time.clone().lock_owned().await;
    settled(raft).await;
    let step = plan(&raft.metrics().borrow(), rules, &change)?;
    match step {
        Step::Nothing => {}
        Step::Change(change) => {
            raft.change_membership(change, false).await.map_err(write_err)?;
        }
        Step::Add { id, member, voter } => {
            raft.add_learner(id, member, false).await.map_err(write_err)?;
            if voter {
                // etcd's conf change commits under the old configuration, so a
                // member added to a one-member cluster is acknowledged before it
                // runs. openraft's joint consensus needs the new member for that,
                // so the promotion is proposed here and completes once the new
                // member catches up; the answer waits only until it is proposed.
                drop(one_at_a_time);
                let (promote, next) = (raft.clone(), rules.one_at_a_time.clone());
                tokio::spawn(async move {
                    let _one_at_a_time = next.lock().await;
                    settled(&promote).await;
                    let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                    if let Err(e) = promote.change_membership(change, false).await {
                        tracing::warn!(member = format_args!("{id:x}"), error = %e, "adding the voter failed");
                    }
                });
                let mut metrics = raft.metrics();
                let proposed = async {
                    while !metrics.borrow().membership_config.membership().voter_ids().any(|v| v == id) {
                        if metrics.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), proposed).await;
            }
        }
    }
    Ok(())
}

/// etcd's checks of `change` against the leader's latest membership, and what
/// openraft is to do if they pass.
fn plan(metrics: &RaftMetrics<u64, Member>, rules: &Rules<'_>, change: &MemberChange) -> Result<Step, MemberChangeError> {
    let membership = metrics.membership_config.membership();
    let cluster = Cluster {
        nodes: membership.nodes().map(|(id, m)| (*id, m.clone())).collect(),
        voters: membership.voter_ids().collect(),
    };
    let set_node = |id: u64, member: Member| Step::Change(ChangeMembers::SetNodes(BTreeMap::from([(id, member)])));
    Ok(match change.clone() {
        MemberChange::Add { id, member, learner } => {
            rules.may_add(&cluster, learner)?;
            if cluster.nodes.contains_key(&id) {
                return Err(MemberChangeError::IdExists);
            }
            if cluster.peer_url_taken(&member.peer_urls, None) {
                return Err(MemberChangeError::PeerUrlExists);
            }
            if learner && cluster.learners() + 1 > rules.max_learners {
                return Err(MemberChangeError::TooManyLearners);
            }
            Step::Add { id, member, voter: !learner }
        }
        MemberChange::Remove { id } => {
            rules.may_remove(&cluster, id)?;
            if !cluster.nodes.contains_key(&id) {
                return Err(MemberChangeError::NotFound);
            }
            if cluster.voters.contains(&id) {
                // openraft keeps at least one voter.
                if cluster.voters.len() == 1 {
                    return Err(MemberChangeError::NotEnoughStarted);
                }
                Step::Change(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
            } else {
                Step::Change(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
            }
        }
        MemberChange::UpdatePeerUrls { id, peer_urls } => {
            let mut member = cluster.nodes.get(&id).cloned().ok_or(MemberChangeError::NotFound)?;
            if cluster.peer_url_taken(&peer_urls, Some(id)) {
                return Err(MemberChangeError::PeerUrlExists);
            }
            member.peer_urls = peer_urls;
            set_node(id, member)
        }
        MemberChange::Promote { id } => {
            if !cluster.nodes.contains_key(&id) {
                return Err(MemberChangeError::NotFound);
            }
            // etcd's isLearnerReady, which looks at any member's progress.
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = if id == rules.me {
                last
            } else {
                metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index)
            };
            if (matched as f64) < (last as f64) * LEARNER_READY_PERCENT {
                return Err(MemberChangeError::LearnerNotReady);
            }
            rules.may_promote(&cluster)?;
            if cluster.voters.contains(&id) {
                return Err(MemberChangeError::NotLearner);
            }
            Step::Change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
        }
        MemberChange::Publish { id, name, client_urls } => {
            let mut member = cluster.nodes.get(&id).cloned().ok_or(MemberChangeError::NotFound)?;
            if member.name == name && member.client_urls == client_urls {
                return Ok(Step::Nothing);
            }
            member.name = name;
            member.client_urls = client_urls;
            set_node(id, member)
        }
    })
}

/// Waits until the latest membership this member knows (on the leader: the
/// one it proposed last, or the one a new leader inherited uncommitted) is
/// applied here, so committed. openraft refuses a change proposed before
/// that, and logs the refusal as an error: a member publishing itself at
/// start, before the new leader committed the first membership, got one.
async fn settled(raft: &Raft) {
    let mut metrics = raft.metrics();
    // Err: raft is shutting down, and the change will say so.
    let _ = metrics.wait_for(|m| m.membership_config.log_id() <= &m.last_applied).await;
}

/// rafthttp's `errMemberRemoved`: what etcd's peers answer a removed member,
/// and what it logs before it stops.
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

/// Whether this member has been removed from the cluster. It learns so by
/// applying the change that removed it, or, when that never reaches it (the
/// leader stops replicating to a member it removes; the member may have been
/// down), by a peer's answer: the leader refuses a removed member's messages
/// with [`REMOVED`] (`PeerService`), as etcd's peers do.
pub struct Removal {
    removed: tokio::sync::watch::Sender<bool>,
}

impl Default for Removal {
    fn default() -> Self {
        Removal { removed: tokio::sync::watch::Sender::new(false) }
    }
}

impl Removal {
    /// This member is no longer part of the cluster; logged once, in etcd's words.
    pub fn mark(&self) {
        if self.removed.send_if_modified(|removed| !std::mem::replace(removed, true)) {
            tracing::warn!(error = REMOVED, "server error");
        }
    }

    /// A peer's refusal of a message: marks the removal if that is what it says.
    pub(crate) fn check_answer(&self, status: &tonic::Status) {
        if status.code() == tonic::Code::FailedPrecondition && status.message() == REMOVED {
            self.mark();
        }
    }

    /// The answer to a removed member's message.
    pub(crate) fn refusal() -> tonic::Status {
        tonic::Status::failed_precondition(REMOVED)
    }

    /// Resolves once this member is removed.
    pub async fn wait(&self) {
        let mut removed = self.removed.subscribe();
        let _ = removed.wait_for(|r| *r).await;
    }
}
