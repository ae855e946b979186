//! Membership changes, leadership transfer and a member publishing itself,
//! made by the leader as etcd makes them.

use super::*;

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

impl Node {
    /// Changes the membership, on any member: the leader makes the change, a
    /// follower forwards it there. While the cluster has no leader, or the one
    /// this member knows has lost it, the change waits for the next, as etcd's
    /// proposals do, until the request times out.
    pub async fn change_members(&self, change: MemberChange) -> Result<(), MemberChangeError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.change_members_once(&change)).await {
                Err(_) => return Err(MemberChangeError::Timeout),
                Ok(Err(MemberChangeError::NotLeader)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(answer) => return answer,
            }
        }
    }

    async fn change_members_once(&self, change: &MemberChange) -> Result<(), MemberChangeError> {
        self.wait_for_leader().await;
        let (leader, node) = self.leader().map_err(|_| MemberChangeError::NotLeader)?;
        if leader == self.id {
            return self.change_members_here(change.clone()).await;
        }
        let other = |e: &dyn std::fmt::Display| MemberChangeError::Other(e.to_string());
        let mut client = self.peer(leader, &node).map_err(|e| other(&e))?;
        let payload = encode(change).map_err(|e| other(&e))?;
        let reply = client.change_membership(payload).await.map_err(|s| match s.code() {
            // The leader is gone: the next one will take it.
            tonic::Code::Unavailable => MemberChangeError::NotLeader,
            _ => other(&s.message()),
        })?;
        decode::<Result<(), MemberChangeError>>(reply.get_ref()).map_err(|e| other(&e))?
    }

    /// Makes a membership change as the leader, checked as etcd checks it
    /// (`--strict-reconfig-check`, `--max-learners`).
    pub(crate) async fn change_members_here(&self, change: MemberChange) -> Result<(), MemberChangeError> {
        if !self.is_leader() {
            return Err(MemberChangeError::NotLeader);
        }
        let rules = membership::Rules {
            me: self.id,
            strict: self.strict_reconfig_check,
            max_learners: self.max_learners,
            activity: &self.activity,
            one_at_a_time: &self.member_changes,
        };
        // etcd's ErrIDRemoved, which its API words as a member not found: a
        // removed ID never comes back (an ID added again within the second
        // it was generated in would be the same).
        let removed = self.state.lock().member_removed(change.id());
        if removed.map_err(|e| MemberChangeError::Other(e.to_string()))? {
            return Err(MemberChangeError::NotFound);
        }
        let promote = matches!(change, MemberChange::Promote { .. });
        let result = membership::apply(&self.raft, &rules, change).await;
        match &result {
            Ok(()) if promote => self.metrics.learner_promoted(None),
            Err(e @ MemberChangeError::LearnerNotReady) => self.metrics.learner_promoted(Some(&e.to_string())),
            _ => {}
        }
        result
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
                    tracing::info!(
                        local_member_id = %format_args!("{:x}", self.id),
                        // Go's %+v of etcd's Attributes.
                        local_member_attributes = %format_args!("{{Name:{name} ClientURLs:[{}]}}", client_urls.join(" ")),
                        cluster_id = %format_args!("{:x}", self.cluster_id),
                        "published local member to cluster through raft"
                    );
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
