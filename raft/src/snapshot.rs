//! State-machine snapshots for raft, in etcd's snapshot format (a bbolt file in
//! etcd 3.4's layout plus its sha256 trailer), the one format that also serves
//! Maintenance.Snapshot and hubctl.
//!
//! A snapshot file is written only when a follower fell behind the log (raft's
//! periodic snapshot is a point, not a copy: `state_machine::Snapshots`), and
//! kept on disk, in [`KEPT_FILE`] beside the backend, not in memory: it is as
//! big as the backend. A snapshot installed from the leader is kept there too.

use std::path::{Path, PathBuf};

use hub_store::snapshot::{Frozen, SnapshotFile};
use hub_store::metrics::StoreMetrics;
use hub_store::{StateMachine, StoreError};

/// Where the newest snapshot is kept, under the state machine's directory
/// (beside `snap/db`; not a `.snap` file, which etcd's tools would read as
/// one of etcd's raft snapshots).
pub const KEPT_FILE: &str = "snap/hub-raft.snapshot";

/// The kept snapshot's path for `sm`.
pub fn kept_path(sm: &StateMachine) -> PathBuf {
    sm.dir().join(KEPT_FILE)
}

/// Writes the state machine's snapshot into the kept file (replacing the
/// previous one at once, by a rename).
pub fn build(state: &Frozen, path: &Path, metrics: &StoreMetrics) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    metrics.snapshot_saved(|| SnapshotFile::create_from(state, dir)?.persist(path))?;
    Ok(())
}

/// Keeps a snapshot received from the leader as the member's newest.
pub fn keep(sm: &StateMachine, data: &[u8]) -> Result<PathBuf, StoreError> {
    let path = kept_path(sm);
    let partial = path.with_extension("partial");
    let io = |what: &str, e: std::io::Error| StoreError::Snapshot(format!("keep the installed snapshot: {what}: {e}"));
    std::fs::write(&partial, data).map_err(|e| io("write", e))?;
    std::fs::rename(&partial, &path).map_err(|e| io("rename", e))?;
    Ok(path)
}

/// Replaces the state machine's contents with a snapshot's.
pub fn install(sm: &mut StateMachine, data: &[u8]) -> Result<(), StoreError> {
    sm.replace_from_snapshot(data)
}
