//! The Kubernetes storage pattern, as the apiserver's etcd3 store uses it:
//! create-if-absent txns (mod_revision == 0), GuaranteedUpdate (read, then a
//! txn on mod_revision, retried on conflict with the returned object), and
//! paginated lists at one revision compared with an unpaginated list at that
//! revision. Its watch (with progress notifications) is a [`super::watch`] watcher
//! on [`PREFIX`]. Objects hold a counter each update increments.

use hub_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op::Response as OpResponse,
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use hub_proto::range::prefix_end;

use super::{breathe, Ctx};
use crate::cluster::kv;
use crate::workload::register::parse;

pub const PREFIX: &str = "k8s/";
const OBJECTS: usize = 16;
const PAGE: i64 = 3;

fn txn_on_mod_revision(key: &str, mod_revision: i64, value: String) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            key: key.as_bytes().to_vec(),
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            target_union: Some(TargetUnion::ModRevision(mod_revision)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest { key: key.as_bytes().to_vec(), value: value.into_bytes(), ..Default::default() })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key: key.as_bytes().to_vec(), ..Default::default() })),
        }],
    }
}

/// The object a failed txn read back: (counter, mod_revision).
fn current(r: &TxnResponse) -> Option<(i64, i64)> {
    r.responses.iter().find_map(|op| match &op.response {
        Some(OpResponse::ResponseRange(rr)) => rr.kvs.first().and_then(|kv| Some((parse(&kv.value)?, kv.mod_revision))),
        _ => None,
    })
}

pub async fn worker(ctx: Ctx, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let process = format!("k8s-{id}");
    while !ctx.stopped() {
        let key = format!("{PREFIX}obj/{:02}", rng.random_range(0..OBJECTS));
        let (member, ch) = ctx.pick(&mut rng);
        let mut kv = kv(&ch);
        match rng.random_range(0..10) {
            0..3 => {
                let txn = txn_on_mod_revision(&key, 0, "0".into());
                let _ = ctx.run(&process, "k8s/create", &key, member, json!(null), true, kv.txn(txn), |r| {
                    let r = r.get_ref();
                    json!({"ok": r.succeeded, "revision": r.header.as_ref().map(|h| h.revision)})
                }).await;
            }
            3..8 => {
                let get = RangeRequest { key: key.clone().into_bytes(), ..Default::default() };
                let Ok(got) = ctx.run(&process, "k8s/get", &key, member, json!(null), false, kv.range(get), |r| {
                    json!({"value": r.get_ref().kvs.first().and_then(|kv| parse(&kv.value))})
                }).await else { continue };
                let Some(mut obj) = got.into_inner().kvs.first().and_then(|kv| Some((parse(&kv.value)?, kv.mod_revision))) else { continue };
                // GuaranteedUpdate: retry on conflict with the object the txn returned.
                for _ in 0..5 {
                    let (counter, mod_revision) = obj;
                    let txn = txn_on_mod_revision(&key, mod_revision, (counter + 1).to_string());
                    let input = json!({"from": counter, "mod_revision": mod_revision});
                    let Ok(r) = ctx.run(&process, "k8s/update", &key, member, input, true, kv.txn(txn), |r| {
                        let r = r.get_ref();
                        json!({"ok": r.succeeded, "revision": r.header.as_ref().map(|h| h.revision)})
                    }).await else { break };
                    let r = r.into_inner();
                    match (r.succeeded, current(&r)) {
                        (false, Some(now)) => obj = now,
                        _ => break,
                    }
                }
            }
            _ => {
                let _ = ctx.run(&process, "k8s/list", PREFIX, member, json!({"limit": PAGE}), false, paginated_list(kv), |r| json!(r)).await;
            }
        }
        breathe(&mut rng).await;
    }
}

/// Lists [`PREFIX`] page by page at the first page's revision, then in one
/// request at that revision; answers whether both agree (and the revision).
async fn paginated_list(mut kv: hub_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>) -> Result<serde_json::Value, tonic::Status> {
    let end = prefix_end(PREFIX.as_bytes());
    let mut from = PREFIX.as_bytes().to_vec();
    let mut revision = 0;
    let mut paged = Vec::new();
    loop {
        let page = kv.range(RangeRequest { key: from.clone(), range_end: end.clone(), limit: PAGE, revision, ..Default::default() }).await?.into_inner();
        if revision == 0 {
            revision = page.header.as_ref().map_or(0, |h| h.revision);
        }
        paged.extend(page.kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)));
        match page.kvs.last() {
            Some(last) if page.more => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    let all = kv.range(RangeRequest { key: PREFIX.as_bytes().to_vec(), range_end: end, revision, ..Default::default() }).await?.into_inner();
    let whole: Vec<(Vec<u8>, i64)> = all.kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect();
    Ok(json!({"revision": revision, "agree": whole == paged && all.count as usize == paged.len(), "items": paged.len()}))
}
