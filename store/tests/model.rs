//! Property test: the store against a tiny in-memory model of etcd's key space,
//! over random sequences of puts, deletes, txns, compactions, historical reads
//! and restarts.

use std::collections::BTreeMap;
use std::time::Instant;

use hub_proto::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, InternalRaftRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use hub_store::{EtcdError, StateMachine, StoreError};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct Kv {
    value: u8,
    create: i64,
    modified: i64,
    version: i64,
}

/// The model: the whole key space at every revision.
struct Model {
    history: Vec<BTreeMap<u8, Kv>>, // index = revision - 1
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        Model { history: vec![BTreeMap::new()], compacted: -1 }
    }
    fn rev(&self) -> i64 {
        self.history.len() as i64
    }
    fn now(&self) -> &BTreeMap<u8, Kv> {
        self.history.last().unwrap()
    }
    /// Applies puts and deletes as one revision (if anything changed).
    fn write(&mut self, puts: &[(u8, u8)], dels: &[(u8, u8)]) {
        let rev = self.rev() + 1;
        let mut next = self.now().clone();
        let mut changed = false;
        for &(lo, hi) in dels {
            let keys: Vec<u8> = next.range(lo..hi.max(lo + 1)).map(|(k, _)| *k).collect();
            for k in keys {
                next.remove(&k);
                changed = true;
            }
        }
        for &(k, v) in puts {
            let old = next.get(&k).cloned();
            next.insert(k, Kv {
                value: v,
                create: old.as_ref().map_or(rev, |o| o.create),
                modified: rev,
                version: old.map_or(1, |o| o.version + 1),
            });
            changed = true;
        }
        if changed {
            self.history.push(next);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    /// if version(k) == v then put(a) else put(b)
    Txn { key: u8, version: i64, then_put: (u8, u8), else_put: (u8, u8) },
    Compact(i64),
    Get { lo: u8, hi: u8, back: i64 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..8, 0u8..9).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => (0u8..8, 0i64..3, (0u8..8, any::<u8>()), (0u8..8, any::<u8>()))
            .prop_map(|(key, version, then_put, else_put)| Op::Txn { key, version, then_put, else_put }),
        1 => (0i64..40).prop_map(Op::Compact),
        3 => (0u8..8, 0u8..9, 0i64..10).prop_map(|(lo, hi, back)| Op::Get { lo, hi, back }),
        1 => Just(Op::Restart),
    ]
}

fn put_op(k: u8, v: u8) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key: vec![b'k', k], value: vec![v], ..Default::default() })) }
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path(), 2).unwrap();
    let mut model = Model::new();
    let mut index = 0;
    for op in ops {
        index += 1;
        let now = Instant::now();
        match op {
            Op::Put(k, v) => {
                let req = PutRequest { key: vec![b'k', k], value: vec![v], ..Default::default() };
                sm.apply(index, &InternalRaftRequest { put: Some(req), ..Default::default() }, now).unwrap();
                model.write(&[(k, v)], &[]);
            }
            Op::Delete(k, e) => {
                let range_end = if e <= k { vec![] } else { vec![b'k', e] };
                let req = DeleteRangeRequest { key: vec![b'k', k], range_end, ..Default::default() };
                sm.apply(index, &InternalRaftRequest { delete_range: Some(req), ..Default::default() }, now).unwrap();
                model.write(&[], &[(k, if e <= k { k + 1 } else { e })]);
            }
            Op::Txn { key, version, then_put, else_put } => {
                let cmp = Compare {
                    key: vec![b'k', key],
                    target: compare::CompareTarget::Version as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(compare::TargetUnion::Version(version)),
                    ..Default::default()
                };
                let txn = TxnRequest { compare: vec![cmp], success: vec![put_op(then_put.0, then_put.1)], failure: vec![put_op(else_put.0, else_put.1)] };
                let resp = sm.apply(index, &InternalRaftRequest { txn: Some(txn), ..Default::default() }, now).unwrap();
                let holds = model.now().get(&key).map_or(0, |kv| kv.version) == version;
                let hub_store::Response::Txn(t) = resp.response else { panic!() };
                prop_assert_eq!(t.succeeded, holds);
                model.write(&[if holds { then_put } else { else_put }], &[]);
            }
            Op::Compact(rev) => {
                let req = CompactionRequest { revision: rev, physical: true };
                let got = sm.apply(index, &InternalRaftRequest { compaction: Some(req), ..Default::default() }, now);
                let want = if rev <= model.compacted {
                    Err(EtcdError::Compacted)
                } else if rev > model.rev() {
                    Err(EtcdError::FutureRev)
                } else {
                    model.compacted = rev;
                    Ok(())
                };
                match (got, want) {
                    (Ok(_), Ok(())) => {}
                    (Err(StoreError::Etcd(g)), Err(w)) => prop_assert_eq!(g, w),
                    (g, w) => prop_assert!(false, "compact {}: got {:?} want {:?}", rev, g.map(|_| ()), w),
                }
            }
            Op::Get { lo, hi, back } => {
                let rev = (model.rev() - back).max(0);
                let range_end = if hi <= lo { vec![] } else { vec![b'k', hi] };
                let req = RangeRequest { key: vec![b'k', lo], range_end, revision: rev, ..Default::default() };
                let got = sm.range(&req);
                let at = if rev == 0 { model.rev() } else { rev };
                if at < model.compacted {
                    prop_assert!(matches!(got, Err(StoreError::Etcd(EtcdError::Compacted))));
                    continue;
                }
                let want: Vec<(Vec<u8>, Kv)> = model.history[(at - 1) as usize]
                    .range(lo..if hi <= lo { lo + 1 } else { hi })
                    .map(|(k, kv)| (vec![b'k', *k], kv.clone()))
                    .collect();
                let got: Vec<(Vec<u8>, Kv)> = got
                    .unwrap()
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key, Kv { value: kv.value[0], create: kv.create_revision, modified: kv.mod_revision, version: kv.version }))
                    .collect();
                prop_assert_eq!(got, want, "range at {}", at);
            }
            Op::Restart => {
                drop(sm);
                sm = StateMachine::open(dir.path(), 2).unwrap();
                prop_assert_eq!(sm.current_revision(), model.rev());
            }
        }
        prop_assert_eq!(sm.current_revision(), model.rev());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        check(ops)?;
    }
}
