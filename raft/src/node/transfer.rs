//! Leadership transfer, as etcd does it: on request (Maintenance.MoveLeader)
//! and when a leader stops gracefully.

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
    /// No other voter is connected to take over.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
}

impl Node {
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
        let started = Instant::now();
        tracing::info!(
            local_member_id = %format_args!("{:x}", self.id),
            current_leader_member_id = %format_args!("{:x}", self.id),
            transferee_member_id = %format_args!("{target:x}"),
            "leadership transfer starting"
        );
        let others: Vec<(u64, Member)> =
            members.into_iter().filter(|(id, _, _)| *id != target && *id != self.id).map(|(id, m, _)| (id, m)).collect();
        // Every voter (this one too) grants the transferee's vote inside its
        // leader lease for the transfer's time, as etcd's campaignTransfer.
        self.set_elections(&others, false, Some(target)).await;
        let until = tokio::time::Instant::now() + self.timeout;
        if let Err(e) = self.raft.trigger().waive_leader_lease(target, until).await {
            tracing::debug!(error = %e, "could not waive the leader lease");
        }
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
        // The transferee is told to campaign at once (the voters waived their
        // leader lease for it), and again every election timeout, rather than
        // left to its own timer, which the leader's appends keep resetting. A
        // transferee that cannot be reached (it is stopping too, say) ends the
        // transfer at once, not at the timeout.
        let config = self.raft.config();
        let campaign = async {
            loop {
                let Ok(mut client) = self.peer(target, &transferee) else { return };
                if let Err(e) = client.campaign(Payload { data: Vec::new() }).await {
                    tracing::debug!(member = format_args!("{target:x}"), error = %e, "could not start the transferee's campaign");
                    if e.code() == tonic::Code::Unavailable {
                        return;
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
        self.set_elections(&others, true, None).await;
        match moved {
            Ok(()) if self.raft.metrics().borrow().current_leader == Some(target) => {
                tracing::info!(
                    local_member_id = %format_args!("{:x}", self.id),
                    old_leader_member_id = %format_args!("{:x}", self.id),
                    new_leader_member_id = %format_args!("{target:x}"),
                    took = ?started.elapsed(),
                    "leadership transfer finished"
                );
                Ok(())
            }
            _ => Err(MoveLeaderError::Timeout),
        }
    }

    /// Switches the members' elections; with a transferee, they also grant
    /// its vote inside their leader lease (`hubpeer.Peer/SetElection` carries
    /// `(enabled, transferee)`; a member before this reads the first alone).
    async fn set_elections(&self, members: &[(u64, Member)], enabled: bool, transferee: Option<u64>) {
        for (id, m) in members {
            let Ok(mut client) = self.peer(*id, m) else { continue };
            let Ok(data) = bincode::serialize(&(enabled, transferee)) else { continue };
            if let Err(e) = client.set_election(Payload { data }).await {
                tracing::warn!(member = format_args!("{id:x}"), error = %e, enabled, "could not switch elections");
            }
        }
    }

    /// etcd's `TryTransferLeadershipOnShutdown`: a leader stopping gracefully
    /// hands leadership to the voter it has been connected to longest, so the
    /// others need not wait out an election timeout, and a restart comes back
    /// as a follower. Failures are logged; the stop goes on.
    pub async fn transfer_leadership_on_shutdown(&self) {
        let me = format!("{:x}", self.id);
        let leader = format!("{:x}", self.raft.metrics().borrow().current_leader.unwrap_or(0));
        if !self.is_leader() {
            tracing::info!(local_member_id = %me, current_leader_member_id = %leader, "skipped leadership transfer; local server is not leader");
            return;
        }
        let voters: Vec<u64> = self.members().into_iter().filter(|(_, _, learner)| !learner).map(|(id, _, _)| id).collect();
        if voters.len() < 2 {
            tracing::info!(local_member_id = %me, current_leader_member_id = %leader, "skipped leadership transfer for single voting member cluster");
            return;
        }
        // etcd's longestConnected: the voter active since the earliest instant.
        let transferee = voters
            .into_iter()
            .filter(|id| *id != self.id)
            .filter_map(|id| self.activity.active_since(id).map(|since| (since, id)))
            .min()
            .map(|(_, id)| id);
        let result = match transferee {
            Some(id) => self.move_leader(id).await,
            None => Err(MoveLeaderError::Unhealthy),
        };
        if let Err(e) = result {
            tracing::warn!(local_member_id = %me, error = %e, "leadership transfer failed");
        }
    }
}
