//! Leases: each round grants a lease, attaches keys to it in one txn, then
//! revokes it, lets it expire, or keeps it alive to the end of the run. The
//! checker then looks at what happened to the keys.

use std::sync::Arc;
use std::time::Duration;

use hub_proto::etcdserverpb::{
    request_op::Request, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RequestOp,
    TxnRequest,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{breathe, Ctx};
use crate::cluster::{kv, lease};

pub const PREFIX: &str = "lease/";
const KEYS: usize = 3;
/// TTL of leases left to expire or revoked.
pub const SHORT_TTL: i64 = 3;
/// TTL of kept-alive leases (renewed every second).
pub const LONG_TTL: i64 = 10;
const KEPT_ALIVE_MAX: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Revoked; `acked` whether the revoke was acknowledged.
    Revoke { acked: bool },
    Expire,
    KeepAlive,
}

#[derive(Debug, Clone)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl: i64,
    pub keys: Vec<String>,
    /// Revision of the acknowledged txn that attached the keys.
    pub attached: Option<i64>,
    /// When the grant was acknowledged (ns since the run started).
    pub granted_at: u64,
    pub fate: Fate,
    /// Keep-alive only: the last successful renewal, the longest gap between
    /// renewals, and whether a renewal said the lease was gone.
    pub last_renewal: u64,
    pub max_gap: u64,
    pub lost: bool,
}

pub type Leases = Arc<Mutex<Vec<LeaseRecord>>>;

pub async fn worker(ctx: Ctx, seed: u64, leases: Leases, keepers: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let process = "lease-0";
    let mut n = 0;
    while !ctx.stopped() {
        n += 1;
        let kept = leases.lock().iter().filter(|l| l.fate == Fate::KeepAlive).count();
        let fate = match rng.random_range(0..4) {
            0 if kept < KEPT_ALIVE_MAX => Fate::KeepAlive,
            0 | 1 => Fate::Expire,
            _ => Fate::Revoke { acked: false },
        };
        let ttl = if fate == Fate::KeepAlive { LONG_TTL } else { SHORT_TTL };
        let (member, ch) = ctx.pick(&mut rng);
        let mut client = lease(&ch);
        let grant = client.lease_grant(LeaseGrantRequest { ttl, id: 0 });
        let Ok(granted) = ctx.run(process, "lease/grant", "", member, json!({"ttl": ttl}), true, grant, |r| json!({"id": r.get_ref().id})).await else {
            breathe(&mut rng).await;
            continue;
        };
        let id = granted.into_inner().id;
        let granted_at = ctx.rec.now();
        let keys: Vec<String> = (0..KEYS).map(|k| format!("{PREFIX}{id:x}/{n}-{k}")).collect();
        let txn = TxnRequest {
            success: keys
                .iter()
                .map(|k| RequestOp {
                    request: Some(Request::RequestPut(PutRequest { key: k.clone().into_bytes(), value: b"x".to_vec(), lease: id, ..Default::default() })),
                })
                .collect(),
            ..Default::default()
        };
        let (member, ch) = ctx.pick(&mut rng);
        let attached = ctx
            .run(process, "lease/attach", &keys[0], member, json!({"lease": id, "keys": keys}), true, kv(&ch).txn(txn), |r| {
                json!({"revision": r.get_ref().header.as_ref().map(|h| h.revision)})
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().header.map(|h| h.revision));
        let mut record = LeaseRecord { id, ttl, keys, attached, granted_at, fate: fate.clone(), last_renewal: granted_at, max_gap: 0, lost: false };
        match fate {
            Fate::Revoke { .. } => {
                let (member, ch) = ctx.pick(&mut rng);
                let mut client = lease(&ch);
                let revoke = client.lease_revoke(LeaseRevokeRequest { id });
                let acked = ctx.run(process, "lease/revoke", "", member, json!({"lease": id}), true, revoke, |_| json!(null)).await.is_ok();
                record.fate = Fate::Revoke { acked };
                leases.lock().push(record);
            }
            Fate::Expire => leases.lock().push(record),
            Fate::KeepAlive => {
                let index = {
                    let mut l = leases.lock();
                    l.push(record);
                    l.len() - 1
                };
                let task = tokio::spawn(keep_alive(ctx.clone(), id, index, leases.clone(), rng.random()));
                keepers.lock().push(task);
            }
        }
        breathe(&mut rng).await;
    }
}

/// Renews lease `id` every second through a random member until aborted.
async fn keep_alive(ctx: Ctx, id: i64, index: usize, leases: Leases, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (member, ch) = ctx.pick(&mut rng);
        let mut client = lease(&ch);
        let call = async move {
            let mut stream = client.lease_keep_alive(futures::stream::iter(vec![LeaseKeepAliveRequest { id }])).await?.into_inner();
            stream.message().await?.ok_or_else(|| tonic::Status::unavailable("keep-alive stream ended"))
        };
        let r = ctx.run("lease-keepalive", "lease/keepalive", "", member, json!({"lease": id}), false, call, |r| json!({"ttl": r.ttl})).await;
        if let Ok(resp) = r {
            let now = ctx.rec.now();
            let mut l = leases.lock();
            let rec = &mut l[index];
            if resp.ttl <= 0 {
                rec.lost = true;
            } else {
                rec.max_gap = rec.max_gap.max(now - rec.last_renewal);
                rec.last_renewal = now;
            }
        }
    }
}
