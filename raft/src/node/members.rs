//! Membership changes and a member publishing itself, made by the leader as
//! etcd makes them.

use super::*;

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
        let removed = match change {
            MemberChange::Remove { id } if id != self.id => self.members().into_iter().find(|(m, _, _)| *m == id),
            _ => None,
        };
        let result = membership::apply(&self.raft, &rules, change).await;
        match &result {
            Ok(()) if promote => self.metrics.learner_promoted(None),
            Err(e @ MemberChangeError::LearnerNotReady) => self.metrics.learner_promoted(Some(&e.to_string())),
            _ => {}
        }
        if let (Ok(()), Some((id, member, _))) = (&result, removed) {
            self.tell_removed(id, &member);
        }
        result
    }

    /// Tells the member `id` (at `member`'s peer URLs) that it was removed, so
    /// that it stops at once, as etcd's does on applying its own removal;
    /// without it, it learns so only when its election or probe is refused.
    fn tell_removed(&self, id: u64, member: &Member) {
        let Ok(mut client) = self.peer(id, member) else { return };
        let Ok(payload) = crate::network::encode(&id) else { return };
        tokio::spawn(async move {
            let told = tokio::time::timeout(Duration::from_secs(1), client.removed(payload)).await;
            if let Ok(Err(e)) = told {
                tracing::debug!(member = format_args!("{id:x}"), error = %e, "could not tell a removed member");
            }
        });
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
