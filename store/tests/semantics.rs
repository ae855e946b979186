//! etcd 3.4's MVCC and txn rules, pinned: each case applies a sequence of
//! commands and checks the answers etcd gives for the same sequence.

use std::time::Instant;

use hub_proto::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, InternalRaftRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use hub_store::{EtcdError, Response, StateMachine, StoreError};

struct Harness {
    sm: StateMachine,
    index: u64,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), 2).unwrap();
        Harness { sm, index: 0, _dir: dir }
    }

    fn apply(&mut self, req: InternalRaftRequest) -> Result<Response, EtcdError> {
        self.index += 1;
        match self.sm.apply(self.index, &req, Instant::now()) {
            Ok(a) => Ok(a.response),
            Err(StoreError::Etcd(e)) => Err(e),
            Err(e) => panic!("fatal: {e}"),
        }
    }

    fn put(&mut self, k: &str, v: &str) -> i64 {
        let req = PutRequest { key: k.into(), value: v.into(), ..Default::default() };
        match self.apply(InternalRaftRequest { put: Some(req), ..Default::default() }) {
            Ok(Response::Put(r)) => r.header.unwrap().revision,
            other => panic!("{other:?}"),
        }
    }

    fn delete(&mut self, k: &str, end: &str) -> (i64, i64) {
        let req = DeleteRangeRequest { key: k.into(), range_end: end.into(), ..Default::default() };
        match self.apply(InternalRaftRequest { delete_range: Some(req), ..Default::default() }) {
            Ok(Response::DeleteRange(r)) => (r.deleted, r.header.unwrap().revision),
            other => panic!("{other:?}"),
        }
    }

    fn get(&self, r: RangeRequest) -> Result<Vec<(String, String, i64, i64, i64)>, EtcdError> {
        match self.sm.range(&r) {
            Ok(resp) => Ok(resp
                .kvs
                .into_iter()
                .map(|kv| {
                    (
                        String::from_utf8(kv.key).unwrap(),
                        String::from_utf8(kv.value).unwrap(),
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                    )
                })
                .collect()),
            Err(StoreError::Etcd(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    }
}

fn range(k: &str, end: &str) -> RangeRequest {
    RangeRequest { key: k.into(), range_end: end.into(), ..Default::default() }
}

#[test]
fn revisions_versions_and_unchanged_puts() {
    let mut h = Harness::new();
    assert_eq!(h.sm.current_revision(), 1, "an empty store is at revision 1");
    assert_eq!(h.put("a", "1"), 2);
    assert_eq!(h.put("a", "1"), 3, "a put of the same value is a new revision");
    assert_eq!(h.get(range("a", "")).unwrap(), vec![("a".into(), "1".into(), 2, 3, 2)]);
    assert_eq!(h.delete("zzz", ""), (0, 3), "deleting nothing is no revision");
    assert_eq!(h.delete("a", ""), (1, 4));
    assert_eq!(h.put("a", "2"), 5);
    assert_eq!(h.get(range("a", "")).unwrap(), vec![("a".into(), "2".into(), 5, 5, 1)], "new generation");
    let at3 = RangeRequest { revision: 3, ..range("a", "") };
    assert_eq!(h.get(at3).unwrap(), vec![("a".into(), "1".into(), 2, 3, 2)], "history");
    let at4 = RangeRequest { revision: 4, ..range("a", "") };
    assert_eq!(h.get(at4).unwrap(), vec![]);
    let future = RangeRequest { revision: 6, ..range("a", "") };
    assert_eq!(h.get(future), Err(EtcdError::FutureRev));
}

#[test]
fn compaction_rules() {
    let mut h = Harness::new();
    h.put("a", "1"); // 2
    h.put("a", "2"); // 3
    h.put("b", "1"); // 4
    h.delete("b", ""); // 5
    let compact = |rev| InternalRaftRequest { compaction: Some(CompactionRequest { revision: rev, physical: true }), ..Default::default() };
    assert!(matches!(h.apply(compact(7)), Err(EtcdError::FutureRev)));
    assert!(h.apply(compact(4)).is_ok());
    assert!(matches!(h.apply(compact(4)), Err(EtcdError::Compacted)));
    assert_eq!(h.get(RangeRequest { revision: 3, ..range("a", "") }), Err(EtcdError::Compacted));
    assert_eq!(h.get(RangeRequest { revision: 4, ..range("a", "\0") }).unwrap().len(), 2, "the compact revision itself stays readable");
    assert_eq!(h.get(range("a", "")).unwrap(), vec![("a".into(), "2".into(), 2, 3, 2)]);
    // restart: the index is rebuilt from the backend
    let dir = h._dir;
    drop(h.sm);
    let sm = StateMachine::open(dir.path(), 2).unwrap();
    assert_eq!(sm.current_revision(), 5);
    assert_eq!(sm.compact_revision(), 4);
    let kvs = sm.range(&range("a", "\0")).unwrap().kvs;
    assert_eq!(kvs.len(), 1);
    assert_eq!((kvs[0].create_revision, kvs[0].mod_revision, kvs[0].version), (2, 3, 2));
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key: k.into(), value: v.into(), ..Default::default() })) }
}

#[test]
fn txn_is_one_revision_and_nested_txns_follow_their_compares() {
    let mut h = Harness::new();
    h.put("k", "v"); // 2
    let cmp = |v: &str| Compare {
        key: "k".into(),
        target: compare::CompareTarget::Value as i32,
        result: compare::CompareResult::Equal as i32,
        target_union: Some(compare::TargetUnion::Value(v.into())),
        ..Default::default()
    };
    let nested = TxnRequest { compare: vec![cmp("nope")], success: vec![op_put("x", "1")], failure: vec![op_put("y", "1")] };
    let txn = TxnRequest {
        compare: vec![cmp("v")],
        success: vec![op_put("a", "1"), op_put("b", "1"), RequestOp { request: Some(request_op::Request::RequestTxn(nested)) }],
        failure: vec![],
    };
    let Ok(Response::Txn(resp)) = h.apply(InternalRaftRequest { txn: Some(txn), ..Default::default() }) else { panic!() };
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    let kvs = h.get(range("a", "z")).unwrap();
    assert_eq!(kvs.iter().map(|k| (k.0.as_str(), k.3)).collect::<Vec<_>>(), vec![("a", 3), ("b", 3), ("k", 2), ("y", 3)]);
}

#[test]
fn failing_checks_change_nothing() {
    let mut h = Harness::new();
    h.put("k", "v"); // 2
    // a put with a missing lease anywhere in the chosen branch refuses the whole txn
    let leased = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest { key: "l".into(), lease: 99, ..Default::default() })),
    };
    let txn = TxnRequest { compare: vec![], success: vec![op_put("a", "1"), leased], failure: vec![] };
    assert!(matches!(h.apply(InternalRaftRequest { txn: Some(txn), ..Default::default() }), Err(EtcdError::LeaseNotFound)));
    assert_eq!(h.sm.current_revision(), 2);
    assert!(h.get(range("a", "")).unwrap().is_empty());
    let ignore = PutRequest { key: "missing".into(), ignore_value: true, ..Default::default() };
    assert!(matches!(h.apply(InternalRaftRequest { put: Some(ignore), ..Default::default() }), Err(EtcdError::KeyNotFound)));
}

#[test]
fn lease_revoke_deletes_keys_in_one_revision() {
    let mut h = Harness::new();
    let grant = LeaseGrantRequest { id: 7, ttl: 1 };
    let Ok(Response::LeaseGrant(g)) = h.apply(InternalRaftRequest { lease_grant: Some(grant), ..Default::default() }) else { panic!() };
    assert_eq!(g.ttl, 2, "raised to the minimum TTL");
    for k in ["a", "b"] {
        let req = PutRequest { key: k.into(), value: "v".into(), lease: 7, ..Default::default() };
        h.apply(InternalRaftRequest { put: Some(req), ..Default::default() }).unwrap();
    }
    assert_eq!(h.sm.lease(7).unwrap().keys.len(), 2);
    let Ok(Response::LeaseRevoke(r)) = h.apply(InternalRaftRequest { lease_revoke: Some(LeaseRevokeRequest { id: 7 }), ..Default::default() }) else { panic!() };
    assert_eq!(r.header.unwrap().revision, 4);
    assert!(h.get(range("a", "c")).unwrap().is_empty());
    assert!(matches!(
        h.apply(InternalRaftRequest { lease_revoke: Some(LeaseRevokeRequest { id: 7 }), ..Default::default() }),
        Err(EtcdError::LeaseNotFound)
    ));
}

#[test]
fn range_limit_sort_and_count() {
    let mut h = Harness::new();
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2")] {
        h.put(k, v);
    }
    let r = RangeRequest { limit: 2, ..range("a", "\0") };
    let resp = h.sm.range(&r).unwrap();
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 3));
    let sorted = RangeRequest { sort_target: 4 /* VALUE */, sort_order: 2 /* DESCEND */, limit: 1, ..range("a", "\0") };
    let resp = h.sm.range(&sorted).unwrap();
    assert_eq!(resp.kvs[0].key, b"a");
    let count = RangeRequest { count_only: true, ..range("a", "\0") };
    let resp = h.sm.range(&count).unwrap();
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
}

/// A planned range (the key index read under the state machine's lock, the
/// values after it) answers as of when it was planned, whatever was applied
/// in between; a compaction in between that removed its values makes it ask
/// to be run again (None), and the range run again answers as the store now is.
#[test]
fn planned_ranges_answer_as_of_their_planning() {
    let mut h = Harness::new();
    h.put("a", "1");
    let planned_rev = h.put("b", "1");
    let all = range("a", "z");
    let planned = h.sm.plan_range(all.clone()).unwrap();
    let at_revision = h.sm.plan_range(RangeRequest { revision: planned_rev, ..all.clone() }).unwrap();
    h.put("a", "2");
    h.put("c", "2");
    let answer = planned.run().unwrap().expect("no compaction in between");
    let values: Vec<(&[u8], &[u8])> = answer.kvs.iter().map(|kv| (&kv.key[..], &kv.value[..])).collect();
    assert_eq!(values, [(&b"a"[..], &b"1"[..]), (b"b", b"1")]);
    assert_eq!((answer.count, answer.header.unwrap().revision), (2, planned_rev));

    let compact = CompactionRequest { revision: h.sm.current_revision(), physical: true };
    h.apply(InternalRaftRequest { compaction: Some(compact), ..Default::default() }).unwrap();
    match at_revision.run().unwrap() {
        // The compaction removed a's value at the planned revision.
        None => assert_eq!(h.get(RangeRequest { revision: planned_rev, ..all }), Err(EtcdError::Compacted)),
        // (Or its deletions had not reached the backend yet.)
        Some(answer) => assert_eq!(answer.kvs.len(), 2),
    }
}
