//! A set: each add puts a new key under [`PREFIX`]. At the end every
//! acknowledged add must be present, and nothing that was never added.

use hub_proto::etcdserverpb::PutRequest;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use super::{breathe, Ctx};
use crate::cluster::kv;

pub const PREFIX: &str = "set/";

pub async fn worker(ctx: Ctx, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let process = format!("set-{id}");
    let mut n = 0u64;
    while !ctx.stopped() {
        let key = format!("{PREFIX}{id}-{n}");
        n += 1;
        let (member, ch) = ctx.pick(&mut rng);
        let req = PutRequest { key: key.clone().into_bytes(), value: b"1".to_vec(), ..Default::default() };
        let _ = ctx
            .run(&process, "set/add", &key, member, json!(null), true, kv(&ch).put(req), |r| {
                json!({"revision": r.get_ref().header.as_ref().map(|h| h.revision)})
            })
            .await;
        breathe(&mut rng).await;
    }
}
