//! The Lease service, lease ID generation, and the loop that revokes expired
//! leases through raft (so every member deletes their keys at the same revision).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::Stream;
use hub_proto::etcdserverpb::{
    lease_server::Lease, InternalRaftRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use hub_store::{EtcdError, Response, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response as GrpcResponse, Status, Streaming};

use crate::{status, Context};

/// etcd's `idutil.Generator`: the member ID's low 16 bits, then a counter
/// seeded with the start time in milliseconds, so IDs from different members
/// and restarts do not collide.
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;

impl IdGenerator {
    pub fn new(member_id: u64) -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        IdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((ms & ((1 << 40) - 1)) << 8),
        }
    }

    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (s & ((1 << SUFFIX_BITS) - 1))
    }
}

pub struct LeaseService {
    ctx: Context,
}

impl LeaseService {
    pub fn new(ctx: Context) -> Self {
        LeaseService { ctx }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<GrpcResponse<LeaseGrantResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let mut r = req.into_inner();
        self.ctx.check_quota(crate::quota::lease_cost()).await?;
        while r.id == 0 {
            r.id = (self.ctx.lease_ids.next() & (i64::MAX as u64)) as i64;
        }
        // Refuse before proposing what the state machine would refuse anyway.
        self.ctx.node.state().lock().check_lease_grant(r.id, r.ttl).map_err(status::from_etcd)?;
        match self.ctx.propose(&who, InternalRaftRequest { lease_grant: Some(r), ..Default::default() }).await? {
            Response::LeaseGrant(mut resp) => {
                resp.header = self.ctx.fill(resp.header);
                Ok(GrpcResponse::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply result {other:?}"))),
        }
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<GrpcResponse<LeaseRevokeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        match self.ctx.propose(&who, InternalRaftRequest { lease_revoke: Some(r), ..Default::default() }).await? {
            Response::LeaseRevoke(mut resp) => {
                resp.header = self.ctx.fill(resp.header);
                Ok(GrpcResponse::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply result {other:?}"))),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<GrpcResponse<Self::LeaseKeepAliveStream>, Status> {
        self.ctx.caller(&req).await?;
        // Each renewal is checked as etcd's `checkLeaseRenew`: the caller as
        // it stands now (the auth revision moves on while a stream lives) may
        // write every key of the lease.
        let credentials = self.ctx.credentials(&req)?;
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = incoming.message().await {
                let allowed = match ctx.who(&credentials).await {
                    Ok(who) => ctx.node.state().lock().authorize_lease_renew(&who, r.id).map_err(status::from_etcd),
                    Err(e) => Err(e),
                };
                if let Err(e) = allowed {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                let header = ctx.header(0);
                // etcd answers TTL 0 for a lease it does not know.
                let ttl = match ctx.node.lease_renew(r.id).await {
                    Ok(ttl) => ttl,
                    Err(StoreError::Etcd(EtcdError::LeaseNotFound)) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(status::from_store(e))).await;
                        return;
                    }
                };
                if tx.send(Ok(LeaseKeepAliveResponse { header, id: r.id, ttl })).await.is_err() {
                    return;
                }
            }
        });
        Ok(GrpcResponse::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<GrpcResponse<LeaseTimeToLiveResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        self.ctx.node.state().lock().authorize_user(&who).map_err(status::from_etcd)?;
        let ttl = self.ctx.node.lease_time_to_live(r.id).await.map_err(status::from_store)?;
        if let Some(l) = ttl.as_ref().filter(|_| r.keys) {
            // The key names are data: only for who may read every one of them
            // (etcd gave them to anyone, CVE-2023-32082).
            let sm = self.ctx.node.state().lock();
            for key in &l.keys {
                sm.authorize_read(&who, key, &[]).map_err(status::from_etcd)?;
            }
        }
        let resp = match ttl {
            Some(l) => LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: l.remaining,
                granted_ttl: l.granted,
                keys: if r.keys { l.keys } else { Vec::new() },
            },
            // etcd answers an unknown lease with TTL -1, not an error.
            None => LeaseTimeToLiveResponse { header: None, id: r.id, ttl: -1, granted_ttl: 0, keys: Vec::new() },
        };
        Ok(GrpcResponse::new(LeaseTimeToLiveResponse { header: self.ctx.header(0), ..resp }))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<GrpcResponse<LeaseLeasesResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let leases = {
            let sm = self.ctx.node.state().lock();
            sm.authorize_lease_list(&who).map_err(status::from_etcd)?;
            sm.leases().map(|l| LeaseStatus { id: l.id }).collect()
        };
        Ok(GrpcResponse::new(LeaseLeasesResponse { header: self.ctx.header(0), leases }))
    }
}

/// Revokes expired leases through raft, on the leader, until the node stops.
pub async fn run_expiry(ctx: Context) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if !ctx.node.is_leader() {
            continue;
        }
        let expired = ctx.node.state().lock().expired_leases(Instant::now());
        for id in expired {
            let req = InternalRaftRequest { lease_revoke: Some(LeaseRevokeRequest { id }), ..Default::default() };
            match ctx.node.propose(req).await {
                Ok(_) => {
                    ctx.metrics().lease_expired();
                    tracing::info!(lease = id, "revoked expired lease")
                }
                Err(e) => tracing::warn!(lease = id, error = %e, "failed to revoke expired lease"),
            }
        }
    }
}
