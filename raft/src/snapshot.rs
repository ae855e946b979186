//! State-machine snapshots for raft, in etcd's snapshot format (a bbolt file in
//! etcd 3.4's layout plus its sha256 trailer), the one format that also serves
//! Maintenance.Snapshot and hubctl.

use hub_store::{StateMachine, StoreError};

/// The state machine as a snapshot file's bytes.
pub fn build(sm: &StateMachine) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    sm.metrics().snapshot_saved(|| hub_store::snapshot::write_snapshot(sm, &mut out))?;
    Ok(out)
}

/// Replaces the state machine's contents with a snapshot's.
pub fn install(sm: &mut StateMachine, data: &[u8]) -> Result<(), StoreError> {
    sm.replace_from_snapshot(data)
}
