//! etcd's consistency hashes, which members and operators compare to find a
//! replica that diverged: Maintenance.HashKV (the `key` table up to a
//! revision, [`KvHasher`]; which revision is hashed when is the MVCC
//! layer's, [`Mvcc::hash_kv`](crate::mvcc::Mvcc::hash_kv)) and
//! Maintenance.Hash ([`backend_hash`], the whole backend as etcd's
//! `backend.Hash` walks its bbolt buckets). Both are CRC-32C (Castagnoli),
//! Go's `crc32.Update` with that table, so feeding the same bytes in the same
//! order gives etcd's number; `etcdctl snapshot status` uses it too.

use std::collections::HashSet;

use crate::backend::{Backend, Table};
use crate::error::StoreError;
use crate::mvcc::{ETCD_META_KEYS, META_CONSISTENT_INDEX};
use crate::schema::STORAGE_VERSION_KEY;
use crate::revision::Revision;
use crate::snapshot::layout;

const CASTAGNOLI_REVERSED: u32 = 0x82F6_3B78;

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ CASTAGNOLI_REVERSED } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

/// Continues a CRC-32C (as Go's `crc32.Update` with the Castagnoli table).
pub(crate) fn crc32c(crc: u32, data: &[u8]) -> u32 {
    !data.iter().fold(!crc, |c, &b| CRC32C_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

/// etcd's `kvHasher`: the HashKV of revision `revision`, fed the `key`
/// table's records in revision order.
///
/// It hashes the name `key`, then each revision up to `revision`, its bytes
/// then its value. Revisions at or below `compact_revision` count only if
/// they are in `keep` (those a compaction at `revision` keeps), unless `keep`
/// is empty (a quirk of etcd's, copied), and a tombstone at exactly
/// `compact_revision` never counts: etcd up to 3.5.14 deleted it in the
/// compaction, later versions keep it, and both must hash alike. So revisions
/// an asynchronous compaction has not removed yet are hashed out.
pub(crate) struct KvHasher<'a> {
    hash: u32,
    compact_revision: i64,
    revision: i64,
    keep: &'a HashSet<Revision>,
}

impl<'a> KvHasher<'a> {
    pub(crate) fn new(compact_revision: i64, revision: i64, keep: &'a HashSet<Revision>) -> KvHasher<'a> {
        KvHasher { hash: crc32c(0, Table::Key.name().as_bytes()), compact_revision, revision, keep }
    }

    /// Feeds one record of the `key` table; revisions after `revision` are skipped.
    pub(crate) fn write(&mut self, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        let (r, tombstone) =
            Revision::from_bytes(k).ok_or_else(|| StoreError::Corrupt(format!("revision key {k:?}")))?;
        let counted = r.main <= self.revision
            && (r.main > self.compact_revision || self.keep.is_empty() || self.keep.contains(&r))
            && !(r.main == self.compact_revision && tombstone);
        if counted {
            self.hash = crc32c(crc32c(self.hash, k), v);
        }
        Ok(())
    }

    pub(crate) fn hash(&self) -> u32 {
        self.hash
    }
}

/// etcd's `backend.Hash(DefaultIgnores)`: every bucket of etcd's layout in
/// bbolt's order, its name and then each key and value, skipping
/// `meta/consistent_index` (it moves without the key space changing) and, as
/// etcd 3.6 does, `meta/storageVersion`.
///
/// hub's backend holds every bucket of etcd's layout (the `cluster` bucket
/// over [`layout::fixed_records`], for a backend that has none yet), so the
/// figure equals etcd's where hub keeps the same records. Meta records staged
/// by the layers above the store (raft's applied log ID) are skipped like the
/// consistent index, for the same reason.
pub fn backend_hash(backend: &dyn Backend) -> Result<u32, StoreError> {
    let view = backend.view()?;
    let mut crc = 0;
    for bucket in layout::BUCKETS {
        crc = crc32c(crc, bucket);
        crate::snapshot::for_each_record(view.as_ref(), bucket, &mut |k, v| {
            let ignored = bucket == layout::META
                && (k == META_CONSISTENT_INDEX || k == STORAGE_VERSION_KEY || !ETCD_META_KEYS.contains(&k));
            if !ignored {
                crc = crc32c(crc32c(crc, k), v);
            }
            Ok(())
        })?;
    }
    Ok(crc)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hub_proto::etcdserverpb::{
        compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, InternalRaftRequest, PutRequest,
        RequestOp, TxnRequest,
    };

    use super::*;
    use crate::{EtcdError, KvHash, StateMachine};

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(0, b"123456789"), 0xE306_9283);
        // Feeding in pieces equals feeding at once, as etcd's h.Write calls do.
        assert_eq!(crc32c(crc32c(0, b"1234"), b"56789"), 0xE306_9283);
    }

    /// A state machine fed commands as raft would, one log index each.
    struct Store {
        sm: StateMachine,
        index: u64,
        /// The directory, when the store owns it.
        _dir: Option<tempfile::TempDir>,
    }

    impl Store {
        fn new() -> Store {
            let dir = tempfile::tempdir().unwrap();
            Store { sm: StateMachine::open(dir.path(), 2).unwrap(), index: 0, _dir: Some(dir) }
        }

        fn open(dir: &std::path::Path) -> Store {
            let sm = StateMachine::open(dir, 2).unwrap();
            Store { index: sm.applied_index(), sm, _dir: None }
        }

        fn apply(&mut self, req: InternalRaftRequest) {
            self.index += 1;
            self.sm.apply(self.index, &req, Instant::now()).unwrap();
        }

        fn put(&mut self, k: &str, v: &str) {
            self.apply(InternalRaftRequest { put: Some(put(k, v)), ..Default::default() });
        }

        fn delete(&mut self, k: &str) {
            let req = DeleteRangeRequest { key: k.into(), ..Default::default() };
            self.apply(InternalRaftRequest { delete_range: Some(req), ..Default::default() });
        }

        fn compact(&mut self, revision: i64) {
            let req = CompactionRequest { revision, physical: true };
            self.apply(InternalRaftRequest { compaction: Some(req), ..Default::default() });
        }

        /// `(hash, compact revision, current revision)`, or etcd's error.
        fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), EtcdError> {
            match self.sm.hash_kv(rev) {
                Ok(KvHash { hash, compact_revision, revision }) => Ok((hash, compact_revision, revision)),
                Err(crate::StoreError::Etcd(e)) => Err(e),
                Err(e) => panic!("fatal: {e}"),
            }
        }
    }

    fn put(k: &str, v: &str) -> PutRequest {
        PutRequest { key: k.into(), value: v.into(), ..Default::default() }
    }

    // The expected hashes are etcd 3.4.23's answers to `etcdctl endpoint
    // hashkv --rev N` after the same etcdctl commands (compactions with
    // --physical), recorded by hand.

    #[test]
    fn hash_kv_matches_etcd_before_and_after_compaction() {
        let mut s = Store::new();
        assert_eq!(s.hash_kv(0), Ok((1_084_519_789, -1, 1)), "an empty store hashes the name \"key\" only");
        s.put("a", "1");
        s.put("b", "2");
        s.put("a", "3");
        s.delete("b");
        s.put("c", "4");
        // txn: version("a") = "2" → put d 5, put e 6 (one revision, two changes)
        let ops = [put("d", "5"), put("e", "6")]
            .map(|p| RequestOp { request: Some(request_op::Request::RequestPut(p)) });
        let compare = Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            key: "a".into(),
            target_union: Some(compare::TargetUnion::Version(2)),
            ..Default::default()
        };
        let txn = TxnRequest { compare: vec![compare], success: ops.to_vec(), failure: Vec::new() };
        s.apply(InternalRaftRequest { txn: Some(txn), ..Default::default() });

        let before = [(0, 301_876_649), (1, 1_084_519_789), (3, 1_827_592_406), (5, 1_125_682_900), (7, 301_876_649)];
        for (rev, hash) in before {
            assert_eq!(s.hash_kv(rev), Ok((hash, -1, 7)), "rev {rev}");
        }

        let at_4 = s.hash_kv(4).map(|(hash, compact, _)| (hash, compact, 8));
        s.compact(4);
        s.put("a", "7");
        for (rev, hash) in [(0, 3_093_902_304), (5, 1_468_967_122), (6, 2_450_235_489)] {
            assert_eq!(s.hash_kv(rev), Ok((hash, 4, 8)), "rev {rev} after compaction at 4");
        }
        // etcd 3.6: the compaction's own hash of its revision, taken before.
        assert_eq!(s.hash_kv(4), at_4, "the compacted revision is answered from the compaction");
        assert_eq!(s.hash_kv(3), Err(EtcdError::Compacted));
        assert_eq!(s.hash_kv(9), Err(EtcdError::FutureRev));
    }

    #[test]
    fn hash_kv_counts_every_compacted_revision_when_no_key_is_live() {
        let mut s = Store::new();
        s.put("x", "1");
        s.compact(2);
        s.delete("x");
        // Nothing is live at 3, so etcd's rule keeps x@2 in the hash...
        assert_eq!(s.hash_kv(0), Ok((2_573_566_874, 2, 3)));
        s.put("y", "2");
        // ...and drops it as soon as some key is live at the hashed revision.
        assert_eq!(s.hash_kv(0), Ok((1_730_524_815, 2, 4)));
        assert_eq!(s.hash_kv(3), Ok((2_573_566_874, 2, 4)));
        assert_eq!(s.hash_kv(4), Ok((1_730_524_815, 2, 4)));
    }

    #[test]
    fn hash_kv_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path());
        s.put("x", "1");
        s.compact(2);
        s.delete("x");
        s.put("y", "2");
        let before = (s.hash_kv(0), s.hash_kv(3));
        drop(s);
        let s = Store::open(dir.path());
        assert_eq!((s.hash_kv(0), s.hash_kv(3)), before);
    }

    #[test]
    fn backend_hash_ignores_the_consistent_index_and_staged_meta() {
        let mut s = Store::new();
        s.put("a", "1");
        let before = s.sm.hash().unwrap();
        s.sm.stage_meta(b"upper_layer_position", b"42".to_vec());
        s.sm.commit_meta(100).unwrap();
        s.index = 100;
        assert_eq!(s.sm.hash().unwrap(), before);
        s.put("a", "2");
        assert_ne!(s.sm.hash().unwrap(), before);
    }

    #[test]
    fn retain_etcd_meta_drops_what_upper_layers_staged() {
        let mut s = Store::new();
        s.put("a", "1");
        s.compact(2);
        s.sm.stage_meta(b"upper_layer_position", b"42".to_vec());
        s.sm.commit_meta(s.index).unwrap();
        assert_eq!(s.sm.retain_etcd_meta().unwrap(), 1);
        assert_eq!(s.sm.meta(b"upper_layer_position").unwrap(), None);
        for key in ETCD_META_KEYS {
            assert!(s.sm.meta(key).unwrap().is_some(), "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(s.sm.retain_etcd_meta().unwrap(), 0);
    }
}
