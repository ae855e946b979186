//! What a member logs about the cluster as it sees it change: leaders and
//! members, in etcd 3.6's words ("elected leader", "became leader", "added
//! member", "removed member"), which operators' alerts and etcd's own tests
//! look for. Fed from openraft's metrics by the node's watcher; decides
//! nothing, only logs.

use std::collections::BTreeMap;

use openraft::{LogId, RaftMetrics, ServerState};

use crate::types::Member;

/// The last leader and members this member logged.
#[derive(Default)]
pub(super) struct Observed {
    leader: Option<u64>,
    state: Option<ServerState>,
    /// `None` until the first look: members already there when the member
    /// starts are not news (etcd logs them as recovered, not added).
    members: Option<BTreeMap<u64, (Member, bool)>>,
    /// The log entry of the membership `members` is, so that the metrics'
    /// every other change (each write moves them) costs a comparison only.
    membership_log_id: Option<LogId<u64>>,
}

impl Observed {
    /// Logs what changed since the last call.
    pub(super) fn update(&mut self, me: u64, cluster: u64, m: &RaftMetrics<u64, Member>) {
        let term = m.current_term;
        if m.current_leader != self.leader {
            match (m.current_leader, self.leader) {
                (Some(new), _) => tracing::info!("raft.node: {me:x} elected leader {new:x} at term {term}"),
                (None, Some(old)) => tracing::info!("raft.node: {me:x} lost leader {old:x} at term {term}"),
                (None, None) => {}
            }
            self.leader = m.current_leader;
        }
        if m.state == ServerState::Leader && self.state != Some(ServerState::Leader) {
            tracing::info!("{me:x} became leader at term {term}");
        }
        self.state = Some(m.state);

        let log_id = *m.membership_config.log_id();
        if self.members.is_some() && log_id == self.membership_log_id {
            return;
        }
        self.membership_log_id = log_id;
        let membership = m.membership_config.membership();
        let now: BTreeMap<u64, (Member, bool)> = membership
            .nodes()
            .map(|(id, member)| (*id, (member.clone(), !membership.voter_ids().any(|v| v == *id))))
            .collect();
        let before = match self.members.replace(now.clone()) {
            Some(before) => before,
            None if now.is_empty() => BTreeMap::new(),
            None => return,
        };
        for (id, (member, learner)) in &now {
            if !before.contains_key(id) {
                tracing::info!(
                    cluster_id = %format_args!("{cluster:x}"),
                    local_member_id = %format_args!("{me:x}"),
                    added_peer_id = %format_args!("{id:x}"),
                    added_peer_peer_urls = %member.peer_urls.join(","),
                    added_peer_is_learner = *learner,
                    "added member"
                );
            }
        }
        for (id, (member, learner)) in &before {
            if !now.contains_key(id) {
                tracing::info!(
                    cluster_id = %format_args!("{cluster:x}"),
                    local_member_id = %format_args!("{me:x}"),
                    removed_remote_peer_id = %format_args!("{id:x}"),
                    removed_remote_peer_urls = %member.peer_urls.join(","),
                    removed_remote_peer_is_learner = *learner,
                    "removed member"
                );
            }
        }
    }
}
