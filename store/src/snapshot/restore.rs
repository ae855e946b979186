//! Restoring a snapshot (hub's or etcd's) into a fresh hub backend.
//!
//! The `key`, `lease`, `meta`, `auth`, `authUsers`, `authRoles`, `alarm` and
//! `cluster` buckets (and `members`, `members_removed` for a raft snapshot
//! install) become the backend tables of the same names, byte for byte: hub keeps etcd's encodings, so
//! [`StateMachine::open`](crate::StateMachine::open) afterwards serves the
//! same keys, revisions, versions and leases. Like etcd's `mvcc.restore`, a
//! compaction the snapshot had scheduled but not finished is carried out here.
//! The backend is built beside its final name and renamed into place last, so
//! an interrupted restore never leaves a half-filled backend to be opened.

use std::path::Path;
use std::sync::Arc;

use hub_proto::{authpb, leasepb};
use hub_proto::mvccpb::KeyValue;
use prost::Message;

use super::layout;
use super::reader::SnapshotReader;
use crate::apply::BACKEND_FILE;
use crate::backend::{open_bolt, Backend, Table, WriteBatch};
use crate::error::StoreError;
use crate::compaction::CompactionConfig;
use crate::mvcc::{Mvcc, META_CONSISTENT_INDEX, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT};
use crate::revision::Revision;

/// Bytes of records per backend commit while restoring.
const RESTORE_BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Consistent index of the restored backend; `None` keeps the snapshot's.
    /// A member that starts a new raft log from the snapshot (as
    /// `etcdctl snapshot restore` sets it to the number of members) passes
    /// the index its log will continue from.
    pub consistent_index: Option<u64>,
}

/// What the restored backend holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Entries of the `key` bucket (revisions, tombstones included).
    pub revisions: usize,
    pub leases: usize,
    /// The store revision the backend opens at.
    pub revision: i64,
    /// The compacted revision, -1 when never compacted.
    pub compact_revision: i64,
    pub consistent_index: u64,
}

/// Builds the backend that `StateMachine::open(dir, ..)` opens from the
/// snapshot; `dir` must not already hold one.
pub fn restore_into(
    snapshot: &mut SnapshotReader,
    dir: &Path,
    options: &RestoreOptions,
) -> Result<RestoreSummary, StoreError> {
    let target = dir.join(BACKEND_FILE);
    if target.exists() {
        return Err(StoreError::Snapshot(format!(
            "restore into {}: a backend already exists there; restore needs a fresh directory",
            dir.display()
        )));
    }
    let io =
        |what: &str, e: std::io::Error| StoreError::Snapshot(format!("restore into {}: {what}: {e}", dir.display()));
    crate::durable_fs::create_dir_all(target.parent().unwrap_or(dir)).map_err(|e| io("create the directory", e))?;
    let staging = dir.join(format!("{BACKEND_FILE}.restoring"));
    if staging.exists() {
        // Left by an interrupted restore; it was never renamed into place.
        std::fs::remove_file(&staging).map_err(|e| io("remove a stale partial restore", e))?;
    }

    let filled = open_bolt(&staging)
        .map_err(StoreError::from)
        .and_then(|backend| fill_backend(snapshot, Arc::new(backend), options));
    let summary = match filled {
        Ok(summary) => summary,
        Err(e) => {
            // The backend is closed (fill_backend owned it); leave nothing half-done.
            let _ = std::fs::remove_file(&staging);
            if let Some(snap) = target.parent().filter(|p| *p != dir) {
                // Only if empty: the directory the backend was to live in.
                let _ = std::fs::remove_dir(snap);
            }
            return Err(e);
        }
    };
    crate::durable_fs::rename(&staging, &target).map_err(|e| io("move the backend into place", e))?;
    tracing::info!(
        snapshot = %snapshot.path().display(),
        revision = summary.revision,
        compact_revision = summary.compact_revision,
        index = summary.consistent_index,
        "snapshot restored"
    );
    Ok(summary)
}

/// Batches of backend writes, committed whenever they grow large.
struct Loader {
    backend: Arc<dyn Backend>,
    batch: WriteBatch,
    bytes: usize,
}

impl Loader {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.bytes += key.len() + value.len();
        self.batch.put(table, key.to_vec(), value.to_vec());
        if self.bytes >= RESTORE_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        if !batch.is_empty() {
            self.backend.commit(batch)?;
        }
        Ok(())
    }
}

fn corrupt(bucket: &[u8], what: String) -> StoreError {
    StoreError::Snapshot(format!("bucket {:?}: {what}", String::from_utf8_lossy(bucket)))
}

fn fill_backend(
    snapshot: &mut SnapshotReader,
    backend: Arc<dyn Backend>,
    options: &RestoreOptions,
) -> Result<RestoreSummary, StoreError> {
    let mut loader = Loader { backend: backend.clone(), batch: WriteBatch::default(), bytes: 0 };

    let mut revisions = 0usize;
    let mut last_main = 1i64;
    let found = snapshot.for_each(layout::KEY, |k, v| {
        let (rev, _) =
            Revision::from_bytes(k).ok_or_else(|| corrupt(layout::KEY, format!("{k:?} is not a revision")))?;
        KeyValue::decode(v).map_err(|e| corrupt(layout::KEY, format!("revision {rev:?}: {e}")))?;
        last_main = last_main.max(rev.main);
        revisions += 1;
        loader.put(Table::Key, k, v)
    })?;
    if !found {
        return Err(StoreError::Snapshot("no `key` bucket: not an etcd v3 snapshot".into()));
    }

    let mut leases = 0usize;
    snapshot.for_each(layout::LEASE, |k, v| {
        let lease = leasepb::Lease::decode(v).map_err(|e| corrupt(layout::LEASE, format!("{k:?}: {e}")))?;
        if k != lease.id.to_be_bytes() {
            return Err(corrupt(layout::LEASE, format!("key {k:?} does not name lease {:x}", lease.id)));
        }
        leases += 1;
        loader.put(Table::Lease, k, v)
    })?;

    // Users, roles and the auth flags, and the raised alarms, in etcd's
    // encodings as hub keeps them.
    for table in [Table::Auth, Table::AuthUsers, Table::AuthRoles, Table::Alarm] {
        let bucket = table.name().as_bytes();
        snapshot.for_each(bucket, |k, v| {
            let bad = |e: prost::DecodeError| corrupt(bucket, format!("{:?}: {e}", String::from_utf8_lossy(k)));
            match table {
                Table::AuthUsers => drop(authpb::User::decode(v).map_err(bad)?),
                Table::AuthRoles => drop(authpb::Role::decode(v).map_err(bad)?),
                Table::Alarm => drop(hub_proto::etcdserverpb::AlarmMember::decode(k).map_err(bad)?),
                _ => {}
            }
            loader.put(table, k, v)
        })?;
    }

    // The members carry over when the same log goes on (a raft snapshot
    // install); a new cluster started from the snapshot drops them, as etcd's
    // restore trims them, and its first membership entry writes its own.
    let mut membership = vec![Table::Cluster];
    if options.consistent_index.is_none() {
        membership.extend([Table::Members, Table::MembersRemoved]);
    }
    for table in membership {
        snapshot.for_each(table.name().as_bytes(), |k, v| loader.put(table, k, v))?;
    }

    // The whole meta bucket is kept: besides etcd's records it carries what
    // the layers above hub-store stage there (raft's applied log position).
    let mut meta = snapshot.records(layout::META)?;
    if let Some(index) = options.consistent_index {
        meta.retain(|(k, _)| k != META_CONSISTENT_INDEX);
        meta.push((META_CONSISTENT_INDEX.to_vec(), index.to_be_bytes().to_vec()));
    }
    let read_meta = |key: &[u8]| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice());
    let consistent_index =
        read_meta(META_CONSISTENT_INDEX).and_then(|v| v.get(..8)?.try_into().ok()).map_or(0, u64::from_be_bytes);
    let compact_main = |key: &[u8]| -> Result<Option<i64>, StoreError> {
        match read_meta(key) {
            None => Ok(None),
            Some(v) => Revision::from_bytes(v)
                .map(|(r, _)| Some(r.main))
                .ok_or_else(|| corrupt(layout::META, format!("{} is not a revision", String::from_utf8_lossy(key)))),
        }
    };
    let finished = compact_main(META_FINISHED_COMPACT)?;
    let scheduled = compact_main(META_SCHEDULED_COMPACT)?;
    for (k, v) in &meta {
        loader.put(Table::Meta, k, v)?;
    }
    loader.flush()?;

    let mut compact_revision = finished.unwrap_or(-1);
    if scheduled.is_some_and(|s| s > compact_revision) {
        // A compaction scheduled but not finished when the snapshot was
        // taken: opening the store resumes it, here to the end.
        compact_revision = Mvcc::restore(backend.clone(), CompactionConfig::default(), None)?.mvcc.compact_revision();
    }
    Ok(RestoreSummary {
        revisions,
        leases,
        revision: last_main.max(compact_revision),
        compact_revision,
        consistent_index,
    })
}
