//! etcd's lease operations, lease ID generation, the leader's renewals and
//! time-to-live answers ([`LeaderLeases`], which `hub_raft` routes every
//! member's calls to), and the loop that revokes expired leases through raft
//! (so every member deletes their keys at the same revision). The leases
//! themselves live in the state machine (`hub_store::lease`); the leader alone
//! counts them down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hub_proto::etcdserverpb::{
    InternalRaftRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use hub_raft::{LeaderLeases, LeaseTtl};
use hub_store::{AuthInfo, EtcdError, Response, StoreError};

use crate::{quota, unexpected, Credentials, EtcdServer, Result};

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
        IdGenerator { prefix: (member_id & 0xffff) << SUFFIX_BITS, suffix: AtomicU64::new((ms & ((1 << 40) - 1)) << 8) }
    }

    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (s & ((1 << SUFFIX_BITS) - 1))
    }
}

impl EtcdServer {
    /// A new lease ID from the member's one generator.
    fn next_lease_id(&self) -> i64 {
        (self.lease_ids.next() & (i64::MAX as u64)) as i64
    }

    pub async fn lease_grant(&self, who: &AuthInfo, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        self.check_quota(quota::lease_cost()).await?;
        while r.id == 0 {
            r.id = self.next_lease_id();
        }
        // Refuse before proposing what the state machine would refuse anyway.
        self.node.state().lock().check_lease_grant(r.id, r.ttl)?;
        match self.propose(who, InternalRaftRequest { lease_grant: Some(r), ..Default::default() }).await? {
            Response::LeaseGrant(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn lease_revoke(&self, who: &AuthInfo, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        match self.propose(who, InternalRaftRequest { lease_revoke: Some(r), ..Default::default() }).await? {
            Response::LeaseRevoke(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    /// One keep-alive of a stream, checked as etcd's `checkLeaseRenew`: the
    /// caller as it stands now (the auth revision moves on while a stream
    /// lives) may write every key of the lease.
    pub async fn lease_renew(&self, credentials: &Credentials, id: i64) -> Result<LeaseKeepAliveResponse> {
        let who = self.who(credentials).await?;
        self.node.state().lock().authorize_lease_renew(&who, id)?;
        let header = self.header(0);
        // etcd answers TTL 0 for a lease it does not know.
        let ttl = match self.node.lease_renew(self, id).await {
            Ok(ttl) => ttl,
            Err(StoreError::Etcd(EtcdError::LeaseNotFound)) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(LeaseKeepAliveResponse { header, id, ttl })
    }

    pub async fn lease_time_to_live(
        &self,
        who: &AuthInfo,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        self.node.state().lock().authorize_user(who)?;
        let ttl = self.node.lease_time_to_live(self, r.id).await?;
        if let Some(l) = ttl.as_ref().filter(|_| r.keys) {
            // The key names are data: only for who may read every one of them
            // (etcd gave them to anyone, CVE-2023-32082).
            let sm = self.node.state().lock();
            for key in &l.keys {
                sm.authorize_read(who, key, &[])?;
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
        Ok(LeaseTimeToLiveResponse { header: self.header(0), ..resp })
    }

    pub async fn lease_leases(&self, who: &AuthInfo) -> Result<LeaseLeasesResponse> {
        let leases = {
            let sm = self.node.state().lock();
            sm.authorize_lease_list(who)?;
            sm.leases().map(|l| LeaseStatus { id: l.id }).collect()
        };
        Ok(LeaseLeasesResponse { header: self.header(0), leases })
    }
}

/// The leader's lessor: renewals restart a lease's countdown, which only the
/// leader keeps (a new leader restarts every lease's, `hub_raft::node`).
impl LeaderLeases for EtcdServer {
    fn renew(&self, id: i64) -> std::result::Result<i64, EtcdError> {
        self.node.state().lock().lease_renew(id, Instant::now())
    }

    fn time_to_live(&self, id: i64) -> Option<LeaseTtl> {
        let sm = self.node.state().lock();
        sm.lease(id).map(|l| LeaseTtl {
            remaining: l.remaining_secs(Instant::now()),
            granted: l.ttl,
            keys: l.keys.iter().cloned().collect(),
        })
    }
}

/// Revokes expired leases through raft, on the leader, until the node stops.
pub async fn run_expiry(server: Arc<EtcdServer>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if !server.node.is_leader() {
            continue;
        }
        let expired = server.node.state().lock().expired_leases(Instant::now());
        for id in expired {
            let req = InternalRaftRequest { lease_revoke: Some(LeaseRevokeRequest { id }), ..Default::default() };
            match server.node.propose(req).await {
                Ok(_) => {
                    server.metrics.lease_expired.inc();
                    tracing::info!(lease = id, "revoked expired lease")
                }
                Err(e) => tracing::warn!(lease = id, error = %e, "failed to revoke expired lease"),
            }
        }
    }
}
