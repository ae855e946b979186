//! The requests' semantics over the key space, as etcd's `etcdserver/apply.go`
//! and `txn.go` give them: Range (sorted, limited, counted), Put and
//! DeleteRange (with `prev_kv` and lease attachments), a Txn's compares, the
//! path they pick through nested txns, and its ops. Reads run on a
//! [`ReadView`]: the committed store, or the write txn of the request being
//! applied, which sees its own changes. The state machine (`apply.rs`) checks
//! a request, then runs it here.

use std::cmp::Ordering;

use hub_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use hub_proto::mvccpb::KeyValue;

use crate::error::{EtcdError, StoreError};
use crate::key_index::RangeEnd;
use crate::lease::Lessor;
use crate::mvcc::{Mvcc, RangeResult, WriteTxn};

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// Where a read runs: the committed store, or a write txn that sees its own changes.
pub(crate) trait ReadView {
    fn range_kvs(&self, key: &[u8], end: RangeEnd<'_>, rev: i64, limit: usize, count_only: bool)
        -> Result<RangeResult, StoreError>;
    fn rev(&self) -> i64;
}

impl ReadView for Mvcc {
    fn range_kvs(&self, key: &[u8], end: RangeEnd<'_>, rev: i64, limit: usize, count_only: bool)
        -> Result<RangeResult, StoreError> {
        self.range(key, end, rev, limit, count_only)
    }
    fn rev(&self) -> i64 {
        self.current_revision()
    }
}

impl ReadView for WriteTxn<'_> {
    fn range_kvs(&self, key: &[u8], end: RangeEnd<'_>, rev: i64, limit: usize, count_only: bool)
        -> Result<RangeResult, StoreError> {
        self.range(key, end, rev, limit, count_only)
    }
    fn rev(&self) -> i64 {
        self.revision()
    }
}

pub(crate) fn put(txn: &mut WriteTxn<'_>, lessor: &mut Lessor, r: &PutRequest) -> Result<PutResponse, StoreError> {
    let mut prev = None;
    if r.ignore_value || r.ignore_lease || r.prev_kv {
        prev = txn.range(&r.key, RangeEnd::Single, 0, 0, false)?.kvs.pop();
    }
    let (value, lease) = match &prev {
        Some(p) => (
            if r.ignore_value { p.value.clone() } else { r.value.clone() },
            if r.ignore_lease { p.lease } else { r.lease },
        ),
        None if r.ignore_value || r.ignore_lease => return Err(EtcdError::KeyNotFound.into()),
        None => (r.value.clone(), r.lease),
    };
    txn.put(&r.key, value, lease);
    if lease != 0 {
        lessor.attach(lease, &r.key);
    } else {
        lessor.detach(&r.key);
    }
    Ok(PutResponse { header: header(txn.revision()), prev_kv: if r.prev_kv { prev } else { None } })
}

pub(crate) fn delete_range(txn: &mut WriteTxn<'_>, lessor: &mut Lessor, r: &DeleteRangeRequest) -> Result<DeleteRangeResponse, StoreError> {
    let end = RangeEnd::from_request(&r.range_end);
    let prev_kvs = if r.prev_kv { txn.range(&r.key, end, 0, 0, false)?.kvs } else { Vec::new() };
    let deleted = txn.delete_range(&r.key, end);
    for key in &deleted {
        lessor.detach(key);
    }
    Ok(DeleteRangeResponse { header: header(txn.revision()), deleted: deleted.len() as i64, prev_kvs })
}

pub(crate) fn range(view: &impl ReadView, r: &RangeRequest) -> Result<RangeResponse, StoreError> {
    let rr = view.range_kvs(&r.key, RangeEnd::from_request(&r.range_end), r.revision, range_limit(r), r.count_only)?;
    Ok(range_response(r, rr, view.rev()))
}

/// How many keys a range loads: all of them when it sorts or filters (the
/// limit applies after), else one over its limit (it tells whether there are more).
pub(crate) fn range_limit(r: &RangeRequest) -> usize {
    let sorted = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None) != SortOrder::None;
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    if sorted || filtered || r.limit <= 0 {
        0
    } else {
        r.limit as usize + 1
    }
}

/// The answer to `r` from the keys it loaded (`rr`) at store revision `rev`:
/// filtered, sorted and limited as etcd does.
pub(crate) fn range_response(r: &RangeRequest, rr: RangeResult, rev: i64) -> RangeResponse {
    let sort_order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut kvs = rr.kvs;
    kvs.retain(|kv| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    });
    // etcd sorts ascending when a target other than the key is named without an order.
    let order = if sort_target != SortTarget::Key && sort_order == SortOrder::None { SortOrder::Ascend } else { sort_order };
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
            _ => kvs.sort_by(cmp),
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    RangeResponse { header: header(rev), kvs, more, count: rr.count as i64 }
}

/// Evaluates the compares of the txn and of every nested txn on the chosen
/// branches, depth first: etcd's `compareToPath`.
pub(crate) fn compare_path(view: &impl ReadView, r: &TxnRequest) -> Result<Vec<bool>, StoreError> {
    let mut path = Vec::new();
    fn walk(view: &impl ReadView, r: &TxnRequest, path: &mut Vec<bool>) -> Result<(), StoreError> {
        let mut ok = true;
        for c in &r.compare {
            if !compare_holds(view, c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &r.success } else { &r.failure } {
            if let Some(Request::RequestTxn(t)) = &op.request {
                walk(view, t, path)?;
            }
        }
        Ok(())
    }
    walk(view, r, &mut path)?;
    Ok(path)
}

pub(crate) fn compare_holds(view: &impl ReadView, c: &Compare) -> Result<bool, StoreError> {
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let kvs = view.range_kvs(&c.key, RangeEnd::from_request(&c.range_end), 0, 0, false)?.kvs;
    if kvs.is_empty() {
        // A missing key has no value to compare, but has zero revisions and version.
        return Ok(target != CompareTarget::Value && compare_kv(c, target, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

pub(crate) fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[][..]),
        (CompareTarget::Create, u) => kv.create_revision.cmp(&match u { Some(TargetUnion::CreateRevision(r)) => *r, _ => 0 }),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&match u { Some(TargetUnion::ModRevision(r)) => *r, _ => 0 }),
        (CompareTarget::Version, u) => kv.version.cmp(&match u { Some(TargetUnion::Version(r)) => *r, _ => 0 }),
        (CompareTarget::Lease, u) => kv.lease.cmp(&match u { Some(TargetUnion::Lease(r)) => *r, _ => 0 }),
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// Runs the ops of the branch `path` selects, recursing into nested txns.
pub(crate) fn apply_txn_ops(
    txn: &mut WriteTxn<'_>,
    lessor: &mut Lessor,
    r: &TxnRequest,
    path: &mut impl Iterator<Item = bool>,
) -> Result<TxnResponse, StoreError> {
    let succeeded = path.next().unwrap_or(false);
    let ops = if succeeded { &r.success } else { &r.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(q)) => Some(response_op::Response::ResponseRange(range(txn, q)?)),
            Some(Request::RequestPut(p)) => Some(response_op::Response::ResponsePut(put(txn, lessor, p)?)),
            Some(Request::RequestDeleteRange(d)) => {
                Some(response_op::Response::ResponseDeleteRange(delete_range(txn, lessor, d)?))
            }
            Some(Request::RequestTxn(t)) => {
                // etcd gives a nested txn an empty header (`newTxnResp`).
                let mut nested = apply_txn_ops(txn, lessor, t, path)?;
                nested.header = Some(ResponseHeader::default());
                Some(response_op::Response::ResponseTxn(nested))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}
