//! Membership changes as etcd's Cluster service asks for them, made through
//! openraft's joint consensus on the leader (a follower forwards them).

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use sha1::{Digest, Sha1};

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

/// Applies `change` on the leader; returns the member list after it.
pub async fn apply(raft: &Raft, change: MemberChange) -> Result<(), MemberChangeError> {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let nodes: BTreeMap<u64, Member> = membership.nodes().map(|(id, m)| (*id, m.clone())).collect();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    match change {
        MemberChange::Add { id, member, learner } => {
            if nodes.contains_key(&id) {
                return Err(MemberChangeError::IdExists);
            }
            if nodes.values().any(|m| m.peer_urls.iter().any(|u| member.peer_urls.contains(u))) {
                return Err(MemberChangeError::PeerUrlExists);
            }
            raft.add_learner(id, member, false).await.map_err(write_err)?;
            if !learner {
                // etcd's conf change commits under the old configuration, so a
                // member added to a one-member cluster is acknowledged before it
                // runs. openraft's joint consensus needs the new member for that,
                // so the promotion is proposed here and completes once the new
                // member catches up; the answer waits only until it is proposed.
                let promote = raft.clone();
                tokio::spawn(async move {
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
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), proposed).await;
            }
        }
        MemberChange::Remove { id } => {
            if !nodes.contains_key(&id) {
                return Err(MemberChangeError::NotFound);
            }
            if voters.contains(&id) {
                if voters.len() == 1 {
                    return Err(MemberChangeError::NotEnoughStarted);
                }
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map_err(write_err)?;
            } else {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
                    .map_err(write_err)?;
            }
        }
        MemberChange::UpdatePeerUrls { id, peer_urls } => {
            let mut member = nodes.get(&id).cloned().ok_or(MemberChangeError::NotFound)?;
            if nodes.iter().any(|(other, m)| *other != id && m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
                return Err(MemberChangeError::PeerUrlExists);
            }
            member.peer_urls = peer_urls;
            set_node(raft, id, member).await?;
        }
        MemberChange::Promote { id } => {
            if !nodes.contains_key(&id) {
                return Err(MemberChangeError::NotFound);
            }
            if voters.contains(&id) {
                return Err(MemberChangeError::NotLearner);
            }
            // etcd promotes only a learner whose log is within 10% of the leader's.
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(0, |l| l.index);
            if (matched as f64) < (last as f64) * 0.9 {
                return Err(MemberChangeError::LearnerNotReady);
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(write_err)?;
        }
        MemberChange::Publish { id, name, client_urls } => {
            let mut member = nodes.get(&id).cloned().ok_or(MemberChangeError::NotFound)?;
            if member.name == name && member.client_urls == client_urls {
                return Ok(());
            }
            member.name = name;
            member.client_urls = client_urls;
            set_node(raft, id, member).await?;
        }
    }
    Ok(())
}

async fn set_node(raft: &Raft, id: u64, member: Member) -> Result<(), MemberChangeError> {
    raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, member)])), false)
        .await
        .map_err(write_err)?;
    Ok(())
}
