//! etcd's `clientv3/concurrency` recipes run inside the server: what the
//! Election and Lock services are made of. etcd builds those services on an
//! in-process client; hub calls its own KV and Lease services and waits on the
//! node's commit feed instead of a watch stream. Each call is made for the
//! caller of the Election or Lock call ([`relay`](crate::access::relay)), so it is authorized as
//! that caller's own would be: without credentials the first one is refused.
//!
//! A participant's key is `<prefix><lease in hex>`, bound to its lease; the key
//! with the lowest create revision under the prefix holds the lock or leads the
//! election, and everyone else waits for the deletion of every key created
//! before theirs.

use hub_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    kv_server::Kv,
    lease_server::Lease,
    range_request::{SortOrder, SortTarget},
    request_op::Request as Op,
    response_op::Response as OpResponse,
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use hub_proto::mvccpb::{event::EventType, KeyValue};
use hub_proto::range::prefix_end;
use hub_store::AuthInfo;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::access::relay;
use crate::Context;

/// etcd's `concurrency.defaultSessionTTL`: a participant that names no lease
/// gets one of this many seconds, which nobody keeps alive.
const DEFAULT_SESSION_TTL: i64 = 60;

/// The KV and Lease services as an in-process client.
pub struct Client {
    pub ctx: Context,
    kv: KvService,
    lease: LeaseService,
}


/// The participant key of `lease` under `prefix`, as Go's `fmt.Sprintf("%s%x")`.
pub fn participant_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    [prefix, hex.as_bytes()].concat()
}

/// A compare of `key`'s create revision with `rev`.
pub fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub fn get_op(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(r)) }
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: key.to_vec(), ..Default::default() })) }
}

pub fn get_key(key: &[u8]) -> RangeRequest {
    RangeRequest { key: key.to_vec(), ..Default::default() }
}

/// The oldest key under `prefix` (clientv3's `WithFirstCreate`).
pub fn get_first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The kvs of the `i`th response of a txn, if it is a range.
pub fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// An error of a call the recipes make, as the Election or Lock caller gets
/// it: etcd's services return their client's error as a plain Go error, which
/// gRPC sends as Unknown with the message (so `etcdserver: user name is
/// empty` is Unknown there, InvalidArgument from KV itself).
fn as_client_error(e: Status) -> Status {
    Status::unknown(e.message())
}

impl Client {
    pub fn new(ctx: Context) -> Self {
        Client { kv: KvService::new(ctx.clone()), lease: LeaseService::new(ctx.clone()), ctx }
    }

    pub async fn txn(&self, who: &AuthInfo, r: TxnRequest) -> Result<TxnResponse, Status> {
        Ok(self.kv.txn(relay(who, r)).await.map_err(as_client_error)?.into_inner())
    }

    pub async fn range(&self, who: &AuthInfo, r: RangeRequest) -> Result<RangeResponse, Status> {
        Ok(self.kv.range(relay(who, r)).await.map_err(as_client_error)?.into_inner())
    }

    pub async fn delete(&self, who: &AuthInfo, key: &[u8]) -> Result<Option<ResponseHeader>, Status> {
        let r = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
        Ok(self.kv.delete_range(relay(who, r)).await.map_err(as_client_error)?.into_inner().header)
    }

    /// The lease of a session as `concurrency.NewSession(WithLease(lease))`
    /// makes it: the given one, or a new lease of the default TTL for 0.
    pub async fn session_lease(&self, who: &AuthInfo, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let r = LeaseGrantRequest { ttl: DEFAULT_SESSION_TTL, id: 0 };
        Ok(self.lease.lease_grant(relay(who, r)).await.map_err(as_client_error)?.into_inner().id)
    }

    /// etcd's `waitDeletes`: returns once no key under `prefix` created at or
    /// before `max_create_rev` is left, with the header of the read that saw so.
    pub async fn wait_deletes(
        &self,
        who: &AuthInfo,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<Option<ResponseHeader>, Status> {
        let newest_older = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            max_create_revision: max_create_rev,
            ..Default::default()
        };
        loop {
            // Subscribed before the read: no deletion after it can be missed.
            let mut feed = self.ctx.server().subscribe();
            let resp = self.range(who, newest_older.clone()).await?;
            let Some(kv) = resp.kvs.first() else { return Ok(resp.header) };
            let read_rev = resp.header.as_ref().map_or(0, |h| h.revision);
            // Wait for that key's deletion, then look again.
            loop {
                match feed.recv().await {
                    Ok(batch) if batch.revision > read_rev => {
                        let deleted = batch.events.iter().any(|e| {
                            e.r#type == EventType::Delete as i32 && e.kv.as_ref().is_some_and(|k| k.key == kv.key)
                        });
                        if deleted {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return Err(Status::unavailable("etcdserver: server stopped")),
                }
            }
        }
    }
}
