//! Compare-and-set registers over many keys: reads (linearizable, from any
//! member), writes and CAS txns on the value, on a small value space so CAS
//! often succeeds. A group of workers shares a key for [`OPS_PER_KEY`]
//! operations, then moves on to a fresh key, so each key's history stays small
//! enough for the linearizability search.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hub_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{breathe, Ctx};
use crate::cluster::kv;

pub const PREFIX: &str = "reg/";
const OPS_PER_KEY: u64 = 40;

pub fn parse(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

pub async fn worker(ctx: Ctx, id: usize, group: usize, counter: Arc<AtomicU64>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let process = format!("register-{id}");
    while !ctx.stopped() {
        let key = format!("{PREFIX}{group}/{}", counter.fetch_add(1, Ordering::SeqCst) / OPS_PER_KEY);
        let (member, ch) = ctx.pick(&mut rng);
        let mut kv = kv(&ch);
        match rng.random_range(0..4) {
            0 | 1 => {
                let req = RangeRequest { key: key.clone().into_bytes(), ..Default::default() };
                let _ = ctx
                    .run(&process, "register/read", &key, member, json!(null), false, kv.range(req), |r| {
                        let r = r.get_ref();
                        json!({"value": r.kvs.first().and_then(|kv| parse(&kv.value)), "revision": r.header.as_ref().map(|h| h.revision)})
                    })
                    .await;
            }
            2 => {
                let v: i64 = rng.random_range(0..5);
                let req = PutRequest { key: key.clone().into_bytes(), value: v.to_string().into_bytes(), ..Default::default() };
                let _ = ctx
                    .run(&process, "register/write", &key, member, json!({"value": v}), true, kv.put(req), |r| {
                        json!({"revision": r.get_ref().header.as_ref().map(|h| h.revision)})
                    })
                    .await;
            }
            _ => {
                let (from, to): (i64, i64) = (rng.random_range(0..5), rng.random_range(0..5));
                let req = TxnRequest {
                    compare: vec![Compare {
                        key: key.clone().into_bytes(),
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        target_union: Some(TargetUnion::Value(from.to_string().into_bytes())),
                        ..Default::default()
                    }],
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: key.clone().into_bytes(),
                            value: to.to_string().into_bytes(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![],
                };
                let _ = ctx
                    .run(&process, "register/cas", &key, member, json!({"from": from, "to": to}), true, kv.txn(req), |r| {
                        let r = r.get_ref();
                        json!({"ok": r.succeeded, "revision": r.header.as_ref().map(|h| h.revision)})
                    })
                    .await;
            }
        }
        breathe(&mut rng).await;
    }
}
