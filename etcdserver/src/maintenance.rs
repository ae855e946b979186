//! etcd's maintenance operations: member status, alarms, defragmentation,
//! the consistency hashes (HashKV, Hash), snapshots and leader transfer.
//!
//! The hashes and the snapshot read the whole backend; they run on a blocking
//! thread with the state machine locked, so they see one state and no
//! command is applied meanwhile (etcd holds its backend read lock the same
//! way). A snapshot holds the lock only while its file is built, never while
//! a client downloads it (the wire streams the file).

use hub_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentResponse, HashKvResponse, HashResponse,
    InternalRaftRequest, MoveLeaderResponse, StatusResponse,
};
use hub_store::snapshot::{Frozen, SnapshotFile};
use hub_store::{AuthInfo, EtcdError, Response};

use crate::{unexpected, Error, EtcdServer, Result};

impl EtcdServer {
    /// Every action goes through raft (as etcd's), so a list is as of every
    /// entry before it. The answer has a header, as etcd 3.6's (3.4's had none).
    pub async fn alarm(&self, who: &AuthInfo, r: AlarmRequest) -> Result<AlarmResponse> {
        match self.propose(who, InternalRaftRequest { alarm: Some(r), ..Default::default() }).await? {
            Response::Alarm(resp) => Ok(AlarmResponse { header: self.header(0), alarms: resp.alarms }),
            other => Err(unexpected(other)),
        }
    }

    /// etcd 3.6's answer: with the storage version, the quota and the
    /// downgrade in progress (see [`crate::version`]).
    pub fn status(&self) -> Result<StatusResponse> {
        let storage_version = self.storage_version()?;
        let (db_size, db_size_in_use, applied, alarms) = {
            let sm = self.node.state().lock();
            (sm.db_size() as i64, sm.db_size_in_use()? as i64, sm.applied_index(), sm.alarms())
        };
        let member_id = self.node.member_id();
        let leader = self.node.leader_id();
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(EtcdError::NoLeader.to_string());
        }
        errors.extend(alarms.iter().map(alarm_text));
        Ok(StatusResponse {
            header: self.header(0),
            version: self.config.etcd_version.clone(),
            db_size,
            leader,
            raft_index: self.node.raft_index(),
            raft_term: self.node.term(),
            raft_applied_index: applied,
            errors,
            db_size_in_use,
            is_learner: self.node.members().iter().any(|(id, _, learner)| *id == member_id && *learner),
            storage_version,
            db_size_quota: self.config.db_size_quota,
            downgrade_info: Some(self.downgrade_info()?),
        })
    }

    /// Rewrites this member's backend without its free pages, with every
    /// apply held meanwhile (etcd blocks its backend the same way).
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        // etcd's backend's words.
        let started = std::time::Instant::now();
        let (before, after) = self
            .with_state(|sm| {
                let before = sm.db_size();
                tracing::info!(current_db_size_bytes = before, "defragmenting");
                sm.defragment()?;
                Ok((before, sm.db_size()))
            })
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "failed to defragment"))?;
        tracing::info!(
            current_db_size_bytes_diff = after as i64 - before as i64,
            current_db_size_bytes = after,
            took = ?started.elapsed(),
            "finished defragmenting directory"
        );
        // etcd answers an empty message, without a header.
        Ok(DefragmentResponse { header: None })
    }

    pub async fn hash(&self) -> Result<HashResponse> {
        let (hash, revision) = self.with_state(|sm| Ok((sm.hash()?, sm.current_revision()))).await?;
        Ok(HashResponse { header: self.header(revision), hash })
    }

    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let h = self.with_state(move |sm| sm.hash_kv(revision)).await?;
        Ok(HashKvResponse {
            header: self.header(h.revision),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: if revision == 0 { h.revision } else { revision },
        })
    }

    /// A snapshot of the backend as etcd sends it (the database and its
    /// sha256), in a file the caller streams, and the histogram its sending
    /// is timed into.
    pub async fn snapshot(&self) -> Result<(SnapshotFile, prometheus::Histogram)> {
        let duration = self.node.state().lock().metrics().snapshot_duration.clone();
        // Built beside the backend: a snapshot is about its size, and the
        // system's temporary directory may be a small tmpfs.
        // The state is frozen under the lock in a moment; the file is written
        // from that view while commands go on being applied.
        let (frozen, dir) = self.with_state(|sm| Ok((Frozen::of(sm)?, sm.dir().to_owned()))).await?;
        let file = tokio::task::spawn_blocking(move || SnapshotFile::create_from(&frozen, &dir))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok((file, duration))
    }

    /// etcd 3.6's `/health` checks (`etcdhttp/health.go`), in its order:
    /// no alarm raised that `excluded` does not name (`NOSPACE`, `CORRUPT`);
    /// then, unless `serializable` (this member's own state only), a leader
    /// and a linearizable read that succeeds. Err: etcd's reason, the
    /// `reason` of its answer (`ALARM NOSPACE`, `RAFT NO LEADER`,
    /// `RANGE ERROR:...`), each logged in etcd's words.
    pub async fn health(&self, excluded: &[String], serializable: bool) -> std::result::Result<(), String> {
        let alarms = self.node.state().lock().alarms();
        let name = |a: &AlarmMember| AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
        if let Some(a) = alarms.iter().find(|a| !excluded.iter().any(|e| e == name(a))) {
            tracing::warn!(alarm = %alarm_text(a), "serving /health false due to an alarm");
            return Err(format!("ALARM {}", name(a)));
        }
        if serializable {
            return Ok(());
        }
        if self.node.leader_id() == 0 {
            tracing::warn!("serving /health false; no leader");
            return Err("RAFT NO LEADER".to_string());
        }
        self.node.read_index().await.map_err(|e| {
            tracing::warn!(error = %e, "serving /health false; Range fails");
            format!("RANGE ERROR:{e}")
        })
    }

    pub async fn move_leader(&self, target: u64) -> Result<MoveLeaderResponse> {
        self.node.move_leader(target).await?;
        Ok(MoveLeaderResponse { header: self.header(0) })
    }
}

/// An alarm as etcd prints it (gogo's compact text form of `AlarmMember`,
/// fields at their zero value left out), in Status errors and logs.
pub fn alarm_text(a: &AlarmMember) -> String {
    let mut text = String::new();
    if a.member_id != 0 {
        text.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        let name = AlarmType::try_from(a.alarm).map_or_else(|_| a.alarm.to_string(), |t| t.as_str_name().to_string());
        text.push_str(&format!("alarm:{name} "));
    }
    text
}
