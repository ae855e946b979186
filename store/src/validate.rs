//! Checks a request before it is proposed, as etcd's `v3rpc/key.go` does: empty
//! keys, contradictory put flags, too many txn operations, and puts/deletes of the
//! same key in one txn. A request that passes can be applied without failing
//! half-way (the remaining checks, on leases and revisions, run in `apply` before
//! the first write).

use hub_proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use std::collections::BTreeSet;

use crate::error::EtcdError;

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Everything etcd checks on a Txn before proposing it.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    // etcd passes the remaining budget down to nested txns.
    let nested_budget = max_txn_ops - opc;
    r.success.iter().chain(&r.failure).try_for_each(|op| check_request_op(op, nested_budget))
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(r)) => check_txn_ops(r, max_txn_ops),
        // etcd answers an empty op with this (surprising) error.
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted interval as etcd's `adt.StringAffineInterval`: `[start, end)`, where
/// an empty end is +infinity and a delete without range end is the point `start`.
#[derive(Debug, Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            Some(end) => self.start.as_slice() <= key && (end.is_empty() || key < end.as_slice()),
        }
    }
}

/// etcd's `checkIntervals` (`v3rpc/key.go`): a key may not be put twice, nor put
/// and deleted, in the ops that can run together. Returns the set of keys `ops`
/// put and the intervals they delete, for the enclosing level. As in etcd:
/// - the deletes of this level are collected first, so a put below is checked
///   against every delete of this level whatever its position;
/// - a nested txn's puts are checked against this level's deletes and the puts
///   of the nested txns before it; its `else` puts may repeat its own `then`
///   puts (the two branches exclude each other), and its deletes join this
///   level's only after its puts were checked;
/// - this level's puts come last, checked against everything collected.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                start: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Deleted], k: &[u8]| dels.iter().any(|d| d.contains(k));

    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(Request::RequestTxn(txn)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&txn.success)?;
        let (puts_else, dels_else) = check_intervals(&txn.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || deleted(&dels, &k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else { continue };
        if puts.contains(&put.key) || deleted(&dels, &put.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }
    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(t)) }
    }

    #[test]
    fn duplicate_keys_as_etcd() {
        let cases: Vec<(TxnRequest, Result<(), EtcdError>)> = vec![
            (txn(vec![put("a"), put("b")], vec![]), Ok(())),
            (txn(vec![put("a"), put("a")], vec![]), Err(EtcdError::DuplicateKey)),
            (txn(vec![put("b"), del("a", "c")], vec![]), Err(EtcdError::DuplicateKey)),
            (txn(vec![put("c"), del("a", "c")], vec![]), Ok(())),
            (txn(vec![put("a"), del("a", "")], vec![]), Err(EtcdError::DuplicateKey)),
            // then and else of a nested txn never both run
            (txn(vec![nested(txn(vec![put("a")], vec![put("a")]))], vec![]), Ok(())),
            (txn(vec![put("a"), nested(txn(vec![put("a")], vec![]))], vec![]), Err(EtcdError::DuplicateKey)),
            (txn(vec![put("a")], vec![put("a")]), Ok(())),
            // then/else puts of a txn nested two deep (issue 16: refused before)
            (txn(vec![nested(txn(vec![nested(txn(vec![put("k")], vec![put("k")]))], vec![]))], vec![]), Ok(())),
            (
                txn(vec![nested(txn(vec![nested(txn(vec![put("k")], vec![put("k")]))], vec![])), put("k")], vec![]),
                Err(EtcdError::DuplicateKey),
            ),
            // a nested delete is seen by the puts of later siblings' levels only once merged
            (txn(vec![nested(txn(vec![del("a", "c")], vec![])), put("b")], vec![]), Err(EtcdError::DuplicateKey)),
        ];
        for (i, (req, want)) in cases.into_iter().enumerate() {
            assert_eq!(check_txn(&req, 128), want, "case {i}");
        }
    }

    #[test]
    fn too_many_ops_and_empty_keys() {
        let big = txn((0..129).map(|i| put(&i.to_string())).collect(), vec![]);
        assert_eq!(check_txn(&big, 128), Err(EtcdError::TooManyOps));
        assert_eq!(check_txn(&txn(vec![put("")], vec![]), 128), Err(EtcdError::EmptyKey));
        let empty_op = txn(vec![RequestOp { request: None }], vec![]);
        assert_eq!(check_txn(&empty_op, 128), Err(EtcdError::KeyNotFound));
    }
}
