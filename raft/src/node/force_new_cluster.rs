//! `--force-new-cluster`: a member restarts as the one voter of its cluster,
//! keeping its data, as etcd's `restartAsStandaloneNode` does. Before openraft
//! starts, the log gets one more entry, a membership of this member alone, in a
//! term above any the log has seen, and everything up to it counts as
//! committed (etcd commits its WAL the same way). The member then elects
//! itself; the other members are no longer part of the cluster and must be
//! added back with fresh data directories.
//!
//! etcd also drops the entries past its saved commit index; hub keeps them:
//! hub saves its commit index without an fsync, so an entry past it may have
//! been committed and acknowledged, and committing an entry that never was is
//! what the new leader of a cluster may do anyway.

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, EntryPayload, Membership, Vote};

use super::{NodeConfig, NodeError};
use crate::log_store::LogStore;
use crate::types::{Entry, LogId, Member};
use crate::wal::{self, Wal};

/// How many entries are read at a time looking back for the last membership.
const CHUNK: u64 = 1024;

/// Appends the one-member membership and commits the log up to it.
pub(super) async fn rewrite(wal: &Wal, log: &mut LogStore, config: &NodeConfig) -> Result<(), NodeError> {
    let raft = |e: &dyn std::fmt::Display| NodeError::Raft(format!("--force-new-cluster: {e}"));
    let state = log.get_log_state().await.map_err(|e| raft(&e))?;
    let last = state.last_log_id;
    let vote = log.read_vote().await.map_err(|e| raft(&e))?;
    let term = vote.map_or(0, |v| v.leader_id().term).max(last.map_or(0, |l| l.leader_id.term)) + 1;
    let me = own_member(log, last, config).await?;
    let index = last.map_or(0, |l| l.index + 1);
    let log_id = LogId::new(CommittedLeaderId::new(term, config.id), index);
    let membership = Membership::new(vec![BTreeSet::from([config.id])], BTreeMap::from([(config.id, me)]));
    let entry = Entry { log_id, payload: EntryPayload::Membership(membership) };
    let data = bincode::serialize(&entry).map_err(|e| raft(&e))?;
    log.save_vote(&Vote::new(term, config.id)).await.map_err(|e| raft(&e))?;
    wal.append(vec![wal::LogEntry { index, term, data: data.into() }]).await?;
    log.save_committed(Some(log_id)).await.map_err(|e| raft(&e))?;
    tracing::warn!(
        local_member_id = %format_args!("{:x}", config.id),
        commit_index = index,
        term,
        "forcing restart member as a one-member cluster (--force-new-cluster)"
    );
    Ok(())
}

/// This member as the cluster last knew it (name, URLs): from the log's last
/// membership that names it, else from `--initial-cluster`.
async fn own_member(log: &mut LogStore, last: Option<LogId>, config: &NodeConfig) -> Result<Member, NodeError> {
    let mut end = last.map_or(0, |l| l.index + 1);
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let entries = log.try_get_log_entries(start..end).await.map_err(|e| NodeError::Raft(e.to_string()))?;
        if entries.is_empty() {
            break;
        }
        for entry in entries.iter().rev() {
            if let EntryPayload::Membership(m) = &entry.payload {
                if let Some(me) = m.get_node(&config.id) {
                    return Ok(me.clone());
                }
            }
        }
        end = start;
    }
    Ok(config.initial_members.get(&config.id).cloned().unwrap_or_default())
}
