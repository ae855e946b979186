//! etcd's corruption checks (`etcdserver/corrupt.go`): members compare the
//! HashKV of their key spaces at one revision, asked over the peer transport
//! (`hubpeer.Peer/HashKv`, as etcd asks its peers' `/members/hashkv`).
//!
//! - [`Node::check_initial_hash_kv`] (`--experimental-initial-corrupt-check`):
//!   before serving clients, a member compares its hash at its revision with
//!   every peer's at that revision; a peer with the same compaction but
//!   another hash means this member's data differs, and it refuses to start.
//! - [`Node::monitor_kv_hash`] (`--experimental-corrupt-check-time`): the
//!   leader periodically does the same with every follower; a follower ahead
//!   of it, or with the same compaction and another hash, raises CORRUPT
//!   through raft, and every member then refuses writes
//!   (`hub_store::alarm`).
//! - [`Node::monitor_compact_hash`] (the `CompactHashCheck` gate,
//!   `--compact-hash-check-time`): the leader compares the hash each member
//!   took when it compacted, at the same revision; members outside a
//!   majority that agrees get CORRUPT (member 0, the whole cluster, when
//!   none agrees).

use std::sync::Arc;
use std::time::Duration;

use hub_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType, InternalRaftRequest};
use hub_store::{EtcdError, KvHash, StoreError};
use serde::{Deserialize, Serialize};

use crate::network::{decode, encode};
use crate::node::Node;

/// A member's HashKV answer as it crosses the peer wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PeerHash {
    pub member_id: u64,
    pub hash: u32,
    pub compact_revision: i64,
    /// The member's current revision (the response header's).
    pub revision: i64,
}

/// How long a peer has to answer a hash request.
const PEER_HASH_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// This member's HashKV at `rev` (0: current), computed on a blocking
    /// thread with the state machine locked.
    async fn local_hash(&self, rev: i64) -> Result<KvHash, StoreError> {
        let state = self.state_arc();
        tokio::task::spawn_blocking(move || state.lock().hash_kv(rev))
            .await
            .map_err(|e| StoreError::Corrupt(format!("hash task: {e}")))?
    }

    /// Answers a peer's `HashKv`: the hash or etcd's error text.
    pub(crate) async fn hash_kv_here(&self, rev: i64) -> Result<PeerHash, String> {
        let h = self.local_hash(rev).await.map_err(|e| e.to_string())?;
        Ok(PeerHash { member_id: self.member_id(), hash: h.hash, compact_revision: h.compact_revision, revision: h.revision })
    }

    /// Every other member's HashKV at `rev`, asked at once.
    async fn peer_hashes(&self, rev: i64) -> Vec<(u64, Result<PeerHash, String>)> {
        let asks = self.members().into_iter().filter(|(id, _, _)| *id != self.member_id()).map(|(id, member, _)| async move {
            let answer = async {
                let mut client = self.peer(id, &member).map_err(|e| e.to_string())?;
                let request = encode(&rev).map_err(|e| e.to_string())?;
                let reply = tokio::time::timeout(PEER_HASH_TIMEOUT, client.hash_kv(request))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|s| s.message().to_string())?;
                decode::<Result<PeerHash, String>>(reply.get_ref()).map_err(|e| e.to_string())?
            }
            .await;
            (id, answer)
        });
        futures::future::join_all(asks).await
    }

    /// etcd's `CheckInitialHashKV`: Err (etcd's message) when a peer at the
    /// same compaction has another hash at this member's revision.
    pub async fn check_initial_hash_kv(&self) -> Result<(), String> {
        let me = self.member_id();
        tracing::info!(local_member_id = %format_args!("{me:x}"), "starting initial corruption check");
        // After a restart whose log was purged by a snapshot, the membership
        // is known only once the snapshot's has been installed into raft's
        // metrics; asking before then would ask no peers at all.
        let deadline = tokio::time::Instant::now() + PEER_HASH_TIMEOUT;
        while self.members().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let local = self.local_hash(0).await.map_err(|e| format!("{me:x} failed to fetch hash ({e})"))?;
        let mut mismatch = 0;
        for (id, answer) in self.peer_hashes(local.revision).await {
            match answer {
                Ok(p) if p.hash != local.hash && p.compact_revision == local.compact_revision => {
                    tracing::warn!(
                        local_member_revision = local.revision,
                        local_member_hash = local.hash,
                        remote_peer_id = %format_args!("{id:x}"),
                        remote_peer_hash = p.hash,
                        compact_revision = p.compact_revision,
                        "found different hash values from remote peer"
                    );
                    mismatch += 1;
                }
                Ok(p) if p.hash != local.hash => tracing::warn!(
                    local_member_compact_revision = local.compact_revision,
                    remote_peer_id = %format_args!("{id:x}"),
                    remote_peer_compact_revision = p.compact_revision,
                    "found different compact revision values from remote peer"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    local_member_revision = local.revision,
                    remote_peer_id = %format_args!("{id:x}"),
                    error = %e,
                    "cannot fetch hash from remote peer"
                ),
            }
        }
        if mismatch > 0 {
            return Err(format!("{me:016x} found data inconsistency with peers"));
        }
        tracing::info!(local_member_id = %format_args!("{me:x}"), "initial corruption checking passed; no corruption");
        Ok(())
    }

    /// etcd's `monitorKVHash`: every `every`, while leader, compares hashes
    /// with the followers and raises CORRUPT on a mismatch. Runs until the
    /// member stops.
    pub async fn monitor_kv_hash(self: Arc<Self>, every: Duration) {
        tracing::info!(local_member_id = %format_args!("{:x}", self.member_id()), interval = ?every, "enabled corruption checking");
        loop {
            tokio::time::sleep(every).await;
            if !self.is_leader() {
                continue;
            }
            if let Err(e) = self.check_hash_kv().await {
                tracing::warn!(error = %e, "failed to check hash KV");
            }
        }
    }

    /// etcd's `checkHashKV`, one pass.
    async fn check_hash_kv(&self) -> Result<(), StoreError> {
        let first = self.local_hash(0).await?;
        let peers = self.peer_hashes(first.revision).await;
        self.read_index().await?;
        let second = self.local_hash(0).await?;
        let mut corrupt = None;
        if second.hash != first.hash
            && second.revision == first.revision
            && second.compact_revision == first.compact_revision
        {
            tracing::warn!(revision = first.revision, hash_1 = first.hash, hash_2 = second.hash, "found hash mismatch");
            corrupt = Some(self.member_id());
        }
        for (id, answer) in peers {
            let Ok(p) = answer else { continue };
            let why = if p.revision > second.revision {
                Some(format!("revision {} from member {id:x}, expected at most {}", p.revision, second.revision))
            } else if p.compact_revision > second.compact_revision {
                Some(format!(
                    "compact revision {} from member {id:x}, expected at most {}",
                    p.compact_revision, second.compact_revision
                ))
            } else if p.compact_revision == first.compact_revision && p.hash != first.hash {
                Some(format!("hash {} at revision {} from member {id:x}, expected hash {}", p.hash, first.revision, first.hash))
            } else {
                None
            };
            if let Some(why) = why {
                tracing::warn!(follower_peer_id = %format_args!("{id:x}"), "{why}");
                corrupt.get_or_insert(id);
            }
        }
        if let Some(id) = corrupt {
            self.raise_corrupt(id).await?;
        }
        Ok(())
    }

    /// etcd's `monitorCompactHash`: every `every`, while leader, checks the
    /// hashes taken at compactions against the followers' (etcd's
    /// `CompactHashCheck`). Runs until the member stops.
    pub async fn monitor_compact_hash(self: Arc<Self>, every: Duration) {
        // The newest compaction revision the whole cluster agreed on.
        let mut checked = 0;
        loop {
            tokio::time::sleep(every).await;
            if self.is_leader() {
                self.compact_hash_check(&mut checked).await;
            }
        }
    }

    /// One pass of etcd's `CompactHashCheck`: the newest compaction hashes
    /// not yet checked, newest first, until one is checked on every member.
    async fn compact_hash_check(&self, checked: &mut i64) {
        tracing::info!(
            local_member_id = %format_args!("{:x}", self.member_id()),
            timeout = ?PEER_HASH_TIMEOUT,
            "starting compact hash check"
        );
        let mut hashes = self.state().lock().mvcc().compaction_hashes();
        hashes.retain(|h| h.revision > *checked);
        hashes.sort_by(|a, b| b.revision.cmp(&a.revision));
        for (i, hash) in hashes.iter().enumerate() {
            let peers = self.peer_hashes(hash.revision).await;
            if peers.is_empty() {
                continue;
            }
            if self.check_peer_hashes(hash, &peers, checked).await {
                tracing::info!(number_of_hashes_checked = i + 1, "finished compaction hash check");
                return;
            }
        }
        tracing::info!(number_of_hashes_checked = hashes.len(), "finished compaction hash check");
    }

    /// etcd's `checkPeerHashes`: groups the members by their hash at the
    /// leader's compaction; true when the revision needs no further look
    /// (every peer agreed, or alarms were raised).
    async fn check_peer_hashes(&self, leader: &KvHash, peers: &[(u64, Result<PeerHash, String>)], checked: &mut i64) -> bool {
        let me = self.member_id();
        let mut groups: Vec<(u32, Vec<u64>)> = vec![(leader.hash, vec![me])];
        let mut peers_checked = 0;
        for (id, answer) in peers {
            let p = match answer {
                Ok(p) if p.compact_revision == leader.compact_revision => p,
                other => {
                    let reason = match other {
                        Ok(p) => format!(
                            "the peer's CompactRevision {} doesn't match leader's CompactRevision {}",
                            p.compact_revision, leader.compact_revision
                        ),
                        Err(_) => "no response".to_string(),
                    };
                    tracing::warn!(
                        number_of_peers = peers.len(),
                        leader_id = %format_args!("{me:x}"),
                        peer_id = %format_args!("{id:x}"),
                        reason,
                        "Skipped peer's hash"
                    );
                    continue;
                }
            };
            peers_checked += 1;
            match groups.iter_mut().find(|(hash, _)| *hash == p.hash) {
                Some((_, ids)) => ids.push(*id),
                None => groups.push((p.hash, vec![*id])),
            }
        }
        if groups.len() == 1 {
            if peers_checked == peers.len() {
                tracing::info!(
                    number_of_peers_checked = peers_checked,
                    revision = leader.revision,
                    compactRevision = leader.compact_revision,
                    "successfully checked hash on whole cluster"
                );
                *checked = (*checked).max(leader.revision);
                return true;
            }
            tracing::warn!(
                number_of_peers_checked = peers_checked,
                number_of_peers = peers.len(),
                revision = leader.revision,
                compactRevision = leader.compact_revision,
                "skipped revision in compaction hash check; was not able to check all peers"
            );
            return false;
        }
        // A majority that agrees is taken to be right; without one, nobody knows
        // which members are corrupt, and member 0 (the whole cluster) gets the alarm.
        let quorum = (peers.len() + 1) / 2 + 1;
        let majority = groups.iter().position(|(_, ids)| ids.len() >= quorum);
        if let Some(i) = majority {
            groups.remove(i);
        } else {
            tracing::error!(
                leader_id = %format_args!("{me:x}"),
                leader_revision = leader.revision,
                leader_compact_revision = leader.compact_revision,
                leader_hash = leader.hash,
                "Detected compaction hash mismatch but cannot identify the corrupted members, so intentionally set the memberID as 0"
            );
            self.raise_corrupt_logged(0).await;
        }
        for (hash, ids) in &groups {
            if majority.is_some() {
                for id in ids {
                    self.raise_corrupt_logged(*id).await;
                }
            }
            tracing::error!(
                leader_id = %format_args!("{me:x}"),
                leader_revision = leader.revision,
                leader_compact_revision = leader.compact_revision,
                leader_hash = leader.hash,
                peer_hash = hash,
                peer_ids = %ids.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>().join(","),
                quorum_exist = majority.is_some(),
                "Detected compaction hash mismatch"
            );
        }
        true
    }

    async fn raise_corrupt_logged(&self, member_id: u64) {
        if let Err(e) = self.raise_corrupt(member_id).await {
            tracing::warn!(member_id = %format_args!("{member_id:x}"), error = %e, "could not raise the CORRUPT alarm");
        }
    }

    /// Raises CORRUPT for `member_id` through raft (the member's own
    /// proposal, without a user).
    async fn raise_corrupt(&self, member_id: u64) -> Result<(), StoreError> {
        let alarm = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id,
            alarm: AlarmType::Corrupt as i32,
        };
        match self.propose(InternalRaftRequest { alarm: Some(alarm), ..Default::default() }).await {
            Ok(_) | Err(StoreError::Etcd(EtcdError::Corrupt)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
