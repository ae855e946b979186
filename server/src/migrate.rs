//! Starting on a data directory written by `etcdctl snapshot restore` (or
//! left by a stopped etcd 3.4): hub takes over etcd's backend.
//!
//! etcd and hub both keep their backend in `<data-dir>/member/snap/db`, a
//! bbolt file in etcd's layout. etcd's WAL (`member/wal`) is not read: hub
//! keeps its identity in `member/identity` and its log in `member/hub-wal`.
//! A backend without hub's identity beside it was written by etcd (or by
//! `etcdctl`/`hubctl snapshot restore`): before the state machine opens, it is
//! restored afresh at consistent index 0, without what an old cluster's raft
//! position staged in `meta`. The member then bootstraps its membership from
//! the flags as a new cluster, the same flags `etcdctl snapshot restore` was
//! given (so the member IDs match), and starts a new raft log.

use std::path::Path;

use anyhow::Context as _;
use hub_store::apply::BACKEND_FILE;
use hub_store::key_index::RangeEnd;
use hub_store::snapshot::{restore_into, RestoreOptions, SnapshotReader};
use hub_store::StateMachine;

/// Where the import is built before its backend is moved into place.
const IMPORT_DIR: &str = "etcd-import";

/// Imports the backend in `member_dir` when it is not hub's yet (no identity
/// beside it); returns whether it did. Call it before [`StateMachine::open`]
/// on `member_dir`.
pub fn import_etcd_backend(member_dir: &Path) -> anyhow::Result<bool> {
    let backend = member_dir.join(BACKEND_FILE);
    // hub kept a redb backend at `member/db` before it kept etcd's bbolt file;
    // starting on such a directory would start from an empty backend.
    let redb = member_dir.join("db");
    if redb.is_file() && !backend.exists() {
        anyhow::bail!(
            "{} is a backend of an earlier hub (redb), which this hub does not read: \
             save a snapshot with that hub and restore it (hubctl or etcdctl snapshot restore)",
            redb.display()
        );
    }
    if crate::identity::exists(member_dir) || !backend.exists() {
        return Ok(false);
    }
    // Built aside and moved into place last: an interrupted import leaves
    // etcd's backend as it was, and the next start imports again.
    let work = member_dir.join(IMPORT_DIR);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    // A data directory's database has no sha256 trailer to check.
    let mut reader = SnapshotReader::open(&backend, true)?;
    // Index 0: every entry of the new raft log, from the first, must apply.
    let summary = restore_into(&mut reader, &work, &RestoreOptions { consistent_index: Some(0) })?;
    drop(reader);

    let mut state = StateMachine::open(&work, 0)?;
    // A snapshot saved from hub also carries its old cluster's raft position
    // and membership in `meta`; this member starts a new log.
    let dropped = state.retain_etcd_meta()?;
    let keys = state.mvcc().range(&[], RangeEnd::Unbounded, 0, 0, true)?.count;
    drop(state);

    std::fs::rename(work.join(BACKEND_FILE), &backend)
        .with_context(|| format!("move the backend to {}", backend.display()))?;
    let dir = backend.parent().unwrap_or(member_dir);
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("sync {}", dir.display()))?;
    std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    tracing::info!(
        backend = %backend.display(),
        revision = summary.revision,
        compact_revision = summary.compact_revision,
        keys,
        leases = summary.leases,
        dropped_meta_records = dropped,
        "imported etcd's backend"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hub_proto::etcdserverpb::{InternalRaftRequest, PutRequest, RangeRequest};
    use hub_store::snapshot::write_snapshot;

    use super::*;

    fn put(sm: &mut StateMachine, index: u64, key: &str, value: &str) {
        let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        sm.apply(index, &InternalRaftRequest { put: Some(req), ..Default::default() }, Instant::now()).unwrap();
    }

    /// Writes `snap/db` as `etcdctl snapshot restore` leaves it: a snapshot
    /// without its sha256 trailer.
    fn etcd_member_dir(sm: &StateMachine) -> tempfile::TempDir {
        let mut bytes = Vec::new();
        write_snapshot(sm, &mut bytes).unwrap();
        bytes.truncate(bytes.len() - hub_store::snapshot::SHA256_LEN);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("snap")).unwrap();
        std::fs::write(dir.path().join(BACKEND_FILE), bytes).unwrap();
        dir
    }

    #[test]
    fn imports_etcds_backend_once_and_starts_a_new_log() {
        let source_dir = tempfile::tempdir().unwrap();
        let mut source = StateMachine::open(source_dir.path(), 2).unwrap();
        put(&mut source, 7, "a", "1");
        source.stage_meta(b"upper_layer_position", b"7".to_vec());
        put(&mut source, 8, "b", "2");
        let member = etcd_member_dir(&source);

        assert!(import_etcd_backend(member.path()).unwrap());
        assert!(!member.path().join(IMPORT_DIR).exists());
        let sm = StateMachine::open(member.path(), 2).unwrap();
        assert_eq!(sm.current_revision(), 3);
        assert_eq!(sm.applied_index(), 0, "the new log's entries must all apply");
        assert_eq!(sm.meta(b"upper_layer_position").unwrap(), None);
        let all = RangeRequest { key: b"a".to_vec(), range_end: b"c".to_vec(), ..Default::default() };
        let kvs = sm.range(&all).unwrap().kvs;
        assert_eq!(kvs.iter().map(|kv| (kv.key.as_slice(), kv.value.as_slice())).collect::<Vec<_>>(), [
            (&b"a"[..], &b"1"[..]),
            (&b"b"[..], &b"2"[..])
        ]);
        drop(sm);

        // Once the member has its identity, the backend is hub's.
        crate::identity::load_or_create(member.path(), || (1, 2)).unwrap();
        assert!(!import_etcd_backend(member.path()).unwrap());
    }

    #[test]
    fn refuses_an_earlier_hubs_redb_backend() {
        let member = tempfile::tempdir().unwrap();
        std::fs::write(member.path().join("db"), b"redb").unwrap();
        let err = import_etcd_backend(member.path()).unwrap_err().to_string();
        assert!(err.contains("earlier hub"), "{err}");
    }

    #[test]
    fn does_nothing_without_etcds_backend() {
        let member = tempfile::tempdir().unwrap();
        assert!(!import_etcd_backend(member.path()).unwrap());
        assert!(!member.path().join(BACKEND_FILE).exists());
    }
}
