//! Snapshots hub to hub: a state machine written out and restored serves the
//! same keys, revisions, versions and leases; damaged files are refused with
//! a clear error. (`snapshot_etcd.rs` checks the same files against etcd.)

use std::fs::File;
use std::io::{Cursor, Write};
use std::path::Path;
use std::time::Instant;

use hub_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, InternalRaftRequest, LeaseGrantRequest, PutRequest, RangeRequest,
};
use hub_proto::mvccpb::KeyValue;
use hub_store::bolt::write::BoltWriter;
use hub_store::snapshot::{layout, restore_into, write_snapshot, Frozen, RestoreOptions, SnapshotFile, SnapshotReader};
use hub_store::{EtcdError, StateMachine, StoreError};
use prost::Message;

struct Hub {
    sm: StateMachine,
    index: u64,
}

impl Hub {
    fn open(dir: &Path) -> Hub {
        let sm = StateMachine::open(dir, 1).unwrap();
        let index = sm.applied_index();
        Hub { sm, index }
    }

    fn apply(&mut self, req: InternalRaftRequest) {
        self.index += 1;
        self.sm.apply(self.index, &req, Instant::now()).unwrap();
    }

    fn put(&mut self, key: &str, value: &[u8], lease: i64) {
        let put = PutRequest { key: key.into(), value: value.to_vec(), lease, ..Default::default() };
        self.apply(InternalRaftRequest { put: Some(put), ..Default::default() });
    }

    fn delete(&mut self, key: &str, end: &str) {
        let del = DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
        self.apply(InternalRaftRequest { delete_range: Some(del), ..Default::default() });
    }

    fn grant(&mut self, id: i64, ttl: i64) {
        let grant = LeaseGrantRequest { id, ttl };
        self.apply(InternalRaftRequest { lease_grant: Some(grant), ..Default::default() });
    }

    fn compact(&mut self, revision: i64) {
        let compaction = CompactionRequest { revision, physical: false };
        self.apply(InternalRaftRequest { compaction: Some(compaction), ..Default::default() });
    }
}

/// Every live key at `rev` (0 = current).
fn all_keys(sm: &StateMachine, rev: i64) -> Result<Vec<KeyValue>, StoreError> {
    Ok(sm.range(&RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() })?.kvs)
}

fn leases(sm: &StateMachine) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    sm.leases().map(|l| (l.id, l.ttl, l.keys.iter().cloned().collect())).collect()
}

/// A store with history: overwrites, deletes, a compaction, leases, a value
/// larger than a page and enough keys for a multi-level tree.
fn populate(hub: &mut Hub) {
    hub.grant(0x1234, 600);
    hub.grant(0x99, 300);
    hub.put("a", b"1", 0);
    hub.put("b", b"2", 0);
    hub.put("a", b"3", 0);
    hub.delete("b", "");
    hub.put("c", b"4", 0x1234);
    hub.compact(4);
    for i in 0..1500 {
        hub.put(&format!("many/{i:05}"), format!("value-{i}").as_bytes(), 0);
    }
    hub.put("big", &vec![b'x'; 6000], 0x99);
    hub.put("a", b"5", 0);
    hub.delete("many/00100", "many/00200");
}

#[test]
fn hub_snapshot_restores_into_an_equal_state_machine() {
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub::open(&work.path().join("source"));
    populate(&mut hub);
    let path = work.path().join("snap.db");
    let info = write_snapshot(&hub.sm, &mut File::create(&path).unwrap()).unwrap();
    assert_eq!(info.revision, hub.sm.current_revision());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), info.total_size + 32);

    let mut reader = SnapshotReader::open(&path, false).unwrap();
    assert_eq!(reader.status().unwrap(), info);
    let names = reader.bucket_names().unwrap();
    assert_eq!(names, layout::BUCKETS.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
    assert_eq!(reader.records(layout::CLUSTER).unwrap(), vec![(b"clusterVersion".to_vec(), b"3.6.0".to_vec())]);
    let meta = reader.records(layout::META).unwrap();
    assert!(meta.contains(&(b"storageVersion".to_vec(), b"3.6.0".to_vec())), "etcd 3.6's storage version");

    let target = work.path().join("restored");
    let summary = restore_into(&mut reader, &target, &RestoreOptions::default()).unwrap();
    assert_eq!(summary.revision, hub.sm.current_revision());
    assert_eq!(summary.compact_revision, 4);
    assert_eq!(summary.leases, 2);
    assert_eq!(summary.consistent_index, hub.sm.applied_index());

    let restored = StateMachine::open(&target, 1).unwrap();
    assert_eq!(restored.current_revision(), hub.sm.current_revision());
    assert_eq!(restored.compact_revision(), 4);
    assert_eq!(restored.applied_index(), hub.sm.applied_index());
    for rev in [0, 4, 5, 6, 100, 1000, hub.sm.current_revision() - 1] {
        assert_eq!(all_keys(&restored, rev).unwrap(), all_keys(&hub.sm, rev).unwrap(), "at revision {rev}");
    }
    assert!(matches!(all_keys(&restored, 3), Err(StoreError::Etcd(EtcdError::Compacted))));
    assert_eq!(leases(&restored), leases(&hub.sm));
    assert_eq!(restored.events(5, 1510).unwrap(), hub.sm.events(5, 1510).unwrap());

    // A second restore into the same directory is refused.
    let mut reader = SnapshotReader::open(&path, false).unwrap();
    let err = restore_into(&mut reader, &target, &RestoreOptions::default()).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn restore_can_set_the_consistent_index() {
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub::open(&work.path().join("source"));
    hub.put("k", b"v", 0);
    let file = SnapshotFile::create(&hub.sm, work.path()).unwrap();
    let path = work.path().join("kept.db");
    let info = file.persist(&path).unwrap();
    assert_eq!(info.revision, 2);
    let mut reader = SnapshotReader::open(&path, false).unwrap();
    let options = RestoreOptions { consistent_index: Some(1) };
    restore_into(&mut reader, &work.path().join("restored"), &options).unwrap();
    let restored = StateMachine::open(&work.path().join("restored"), 1).unwrap();
    assert_eq!(restored.applied_index(), 1);
    assert_eq!(all_keys(&restored, 0).unwrap(), all_keys(&hub.sm, 0).unwrap());
}

/// A snapshot is written from the state frozen when it was asked for, however
/// far the state machine moved on meanwhile (writes, deletes, a compaction that
/// removes revisions the frozen state still holds), buffered writes included.
#[test]
fn a_snapshot_holds_the_state_it_was_frozen_at() {
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub::open(&work.path().join("source"));
    hub.sm.defer_durability(true);
    for i in 0..50 {
        hub.put(&format!("k{i:02}"), format!("v{i}").as_bytes(), 0);
        hub.put(&format!("k{i:02}"), format!("w{i}").as_bytes(), 0);
    }
    let frozen = Frozen::of(&hub.sm).unwrap();
    let (want, want_index) = (all_keys(&hub.sm, 0).unwrap(), hub.sm.applied_index());
    hub.delete("k10", "k20");
    hub.put("k99", b"after", 0);
    hub.compact(hub.sm.current_revision());
    let path = work.path().join("frozen.db");
    let info = SnapshotFile::create_from(&frozen, work.path()).unwrap().persist(&path).unwrap();
    assert_eq!(info.revision, 101);
    let mut reader = SnapshotReader::open(&path, false).unwrap();
    restore_into(&mut reader, &work.path().join("restored"), &RestoreOptions::default()).unwrap();
    let restored = StateMachine::open(&work.path().join("restored"), 1).unwrap();
    assert_eq!(all_keys(&restored, 0).unwrap(), want);
    assert_eq!(all_keys(&restored, 2).unwrap().len(), 1, "the old revisions are there, uncompacted");
    assert_eq!(restored.applied_index(), want_index);
}

#[test]
fn an_empty_store_snapshots_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::open(&work.path().join("source"));
    let mut bytes = Vec::new();
    let info = write_snapshot(&hub.sm, &mut bytes).unwrap();
    assert_eq!(info.revision, 0, "etcdctl reports 0 when the key bucket is empty");
    let path = work.path().join("snap.db");
    std::fs::write(&path, &bytes).unwrap();
    let mut reader = SnapshotReader::open(&path, false).unwrap();
    let summary = restore_into(&mut reader, &work.path().join("restored"), &RestoreOptions::default()).unwrap();
    assert_eq!(summary.revision, 1);
    let restored = StateMachine::open(&work.path().join("restored"), 1).unwrap();
    assert_eq!(restored.current_revision(), 1);
    assert!(all_keys(&restored, 0).unwrap().is_empty());
}

#[test]
fn damaged_snapshots_are_refused_clearly() {
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub::open(&work.path().join("source"));
    populate(&mut hub);
    let mut bytes = Vec::new();
    write_snapshot(&hub.sm, &mut bytes).unwrap();

    let write = |name: &str, data: &[u8]| {
        let p = work.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let open_err = |p: &Path, skip: bool| SnapshotReader::open(p, skip).err().map(|e| e.to_string());

    // One flipped byte in the middle of a value: only the sha256 notices.
    let mut corrupted = bytes.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x01;
    let p = write("corrupted.db", &corrupted);
    let err = open_err(&p, false).unwrap();
    assert!(err.contains("sha256 mismatch") && err.contains("corrupted"), "{err}");

    // Cut short anywhere: no trailer where etcd expects one.
    for cut in [32, 4096, bytes.len() / 3, bytes.len() - 1] {
        let p = write("truncated.db", &bytes[..bytes.len() - cut]);
        let err = open_err(&p, false).unwrap();
        assert!(err.contains("truncated"), "cut {cut}: {err}");
    }
    // Cut by whole pages, keeping a plausible trailer length: the hash fails.
    let mut short = bytes[..bytes.len() - 32 - 8192].to_vec();
    short.extend_from_slice(&bytes[bytes.len() - 32..]);
    let p = write("short.db", &short);
    assert!(open_err(&p, false).unwrap().contains("sha256 mismatch"));
    // ... and skipping the check, the bbolt reader sees the missing pages.
    let err = open_err(&p, true).unwrap();
    assert!(err.contains("truncated"), "{err}");

    // A bare database (as copied from a data directory) needs the skip.
    let bare = &bytes[..bytes.len() - 32];
    let p = write("bare.db", bare);
    assert!(open_err(&p, false).unwrap().contains("no sha256 trailer"));
    let mut reader = SnapshotReader::open(&p, true).unwrap();
    assert!(!reader.has_sha256_trailer());
    assert_eq!(reader.status().unwrap().revision, hub.sm.current_revision());
}

/// A compaction the snapshot scheduled but did not finish is carried out by
/// the restore, as etcd's mvcc restore resumes it.
#[test]
fn restore_finishes_a_scheduled_compaction() {
    let rev = |main: i64, sub: i64, tomb: bool| {
        let mut b = main.to_be_bytes().to_vec();
        b.push(b'_');
        b.extend_from_slice(&sub.to_be_bytes());
        if tomb {
            b.push(b't');
        }
        b
    };
    let kv = |key: &str, create: i64, modr: i64, version: i64, value: &str| {
        KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: modr,
            version,
            value: value.into(),
            lease: 0,
        }
        .encode_to_vec()
    };
    let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
    for bucket in layout::BUCKETS {
        w.begin_bucket(bucket).unwrap();
        match bucket {
            layout::KEY => {
                w.put(&rev(2, 0, false), &kv("a", 2, 2, 1, "1")).unwrap();
                w.put(&rev(3, 0, false), &kv("a", 2, 3, 2, "2")).unwrap();
                w.put(&rev(4, 0, false), &kv("b", 4, 4, 1, "3")).unwrap();
            }
            layout::META => {
                w.put(b"consistent_index", &7u64.to_be_bytes()).unwrap();
                w.put(b"scheduledCompactRev", &rev(3, 0, false)).unwrap();
            }
            _ => {}
        }
        w.end_bucket().unwrap();
    }
    let (out, _) = w.finish().unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("pending.db");
    File::create(&path).unwrap().write_all(out.get_ref()).unwrap();

    let mut reader = SnapshotReader::open(&path, true).unwrap();
    let summary = restore_into(&mut reader, &work.path().join("restored"), &RestoreOptions::default()).unwrap();
    assert_eq!(summary.compact_revision, 3);
    let restored = StateMachine::open(&work.path().join("restored"), 1).unwrap();
    assert_eq!(restored.compact_revision(), 3);
    assert_eq!(restored.current_revision(), 4);
    assert_eq!(restored.applied_index(), 7);
    assert!(matches!(all_keys(&restored, 2), Err(StoreError::Etcd(EtcdError::Compacted))));
    let at3: Vec<_> = all_keys(&restored, 3).unwrap().into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(at3, vec![(b"a".to_vec(), b"2".to_vec())]);
}

/// A snapshot whose records do not decode is refused, and the restore leaves
/// no backend behind, finished or partial.
#[test]
fn a_restore_that_fails_leaves_nothing_behind() {
    let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
    for bucket in layout::BUCKETS {
        w.begin_bucket(bucket).unwrap();
        if bucket == layout::KEY {
            w.put(b"not-a-revision", b"junk").unwrap();
        }
        w.end_bucket().unwrap();
    }
    let (out, _) = w.finish().unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("junk.db");
    std::fs::write(&path, out.get_ref()).unwrap();

    let mut reader = SnapshotReader::open(&path, true).unwrap();
    let dir = work.path().join("restored");
    let err = restore_into(&mut reader, &dir, &RestoreOptions::default()).unwrap_err().to_string();
    assert!(err.contains("is not a revision"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "restore left files behind");
}

#[test]
fn users_roles_and_the_auth_flags_survive_a_snapshot() {
    use hub_proto::authpb::{permission::Type, Permission};
    use hub_proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest,
    };
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub::open(&work.path().join("source"));
    let user = |name: &str| AuthUserAddRequest { name: name.into(), hashed_password: format!("hash of {name}"), ..Default::default() };
    let grant = |user: &str, role: &str| AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
    hub.apply(InternalRaftRequest { auth_user_add: Some(user("root")), ..Default::default() });
    hub.apply(InternalRaftRequest { auth_role_add: Some(AuthRoleAddRequest { name: "root".into() }), ..Default::default() });
    hub.apply(InternalRaftRequest { auth_user_grant_role: Some(grant("root", "root")), ..Default::default() });
    hub.apply(InternalRaftRequest { auth_role_add: Some(AuthRoleAddRequest { name: "r".into() }), ..Default::default() });
    let perm = Permission { perm_type: Type::Readwrite as i32, key: b"a".to_vec(), range_end: b"b".to_vec() };
    let grant_perm = AuthRoleGrantPermissionRequest { name: "r".into(), perm: Some(perm.clone()) };
    hub.apply(InternalRaftRequest { auth_role_grant_permission: Some(grant_perm), ..Default::default() });
    hub.apply(InternalRaftRequest { auth_user_add: Some(user("alice")), ..Default::default() });
    hub.apply(InternalRaftRequest { auth_user_grant_role: Some(grant("alice", "r")), ..Default::default() });
    hub.apply(InternalRaftRequest { auth_enable: Some(AuthEnableRequest {}), ..Default::default() });
    let revision = hub.sm.auth().revision();
    assert_eq!(revision, 8, "etcd's count: 1, then one per change except enabling");

    let path = work.path().join("snap.db");
    write_snapshot(&hub.sm, &mut File::create(&path).unwrap()).unwrap();
    let mut reader = SnapshotReader::open(&path, false).unwrap();
    assert_eq!(
        reader.records(layout::AUTH).unwrap(),
        vec![(b"authEnabled".to_vec(), vec![1]), (b"authRevision".to_vec(), revision.to_be_bytes().to_vec())]
    );
    let users: Vec<Vec<u8>> = reader.records(layout::AUTH_USERS).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(users, vec![b"alice".to_vec(), b"root".to_vec()]);

    let target = work.path().join("restored");
    restore_into(&mut reader, &target, &RestoreOptions::default()).unwrap();
    let restored = StateMachine::open(&target, 1).unwrap();
    let auth = restored.auth();
    assert!(auth.is_enabled());
    assert_eq!(auth.revision(), revision);
    assert_eq!(auth.user("alice").unwrap().roles, vec!["r".to_string()]);
    assert_eq!(auth.user("alice").unwrap().password, b"hash of alice");
    assert_eq!(auth.role("r").unwrap().key_permission, vec![perm]);
    assert_eq!(restored.hash().unwrap(), hub.sm.hash().unwrap());
}
