//! etcd's backend quota (`etcdserver/quota.go`, `api/v3rpc/quota.go`): before
//! a Put, a Txn with puts or a LeaseGrant is proposed, the member estimates
//! what it adds (etcd's cost: 256 bytes and the key and value per put, the
//! larger branch of a txn, 64 bytes per lease) and, when the backend plus that
//! would reach `--quota-backend-bytes`, raises the NOSPACE alarm through raft
//! and refuses with `etcdserver: mvcc: database space exceeded`. Once NOSPACE is
//! raised every member's state machine refuses such writes itself
//! (`hub_store::alarm`), whatever its own size.

use hub_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmType, InternalRaftRequest, PutRequest, TxnRequest,
};
use hub_store::EtcdError;

use crate::{EtcdServer, Result};

/// etcd's `DefaultQuotaBytes`: the quota when the flag is 0.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// etcd's `MaxQuotaBytes`: a larger quota is allowed, with a warning.
pub const MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;
const LEASE_OVERHEAD: u64 = 64;
const KV_OVERHEAD: u64 = 256;

/// The quota `--quota-backend-bytes` stands for, as etcd's `NewBackendQuota`
/// reads it: none when negative, 2 GiB when 0 (logged as etcd does).
pub fn quota_bytes(flag: i64) -> Option<u64> {
    match flag {
        f if f < 0 => {
            tracing::info!(quota_size_bytes = f, "disabled backend quota");
            None
        }
        0 => {
            tracing::info!(quota_size_bytes = DEFAULT_QUOTA_BYTES, "enabled backend quota with default value");
            Some(DEFAULT_QUOTA_BYTES as u64)
        }
        f => {
            if f > MAX_QUOTA_BYTES {
                tracing::warn!(
                    quota_size_bytes = f,
                    quota_maximum_size_bytes = MAX_QUOTA_BYTES,
                    "quota exceeds the maximum value"
                );
            }
            tracing::info!(quota_size_bytes = f, "enabled backend quota");
            Some(f as u64)
        }
    }
}

pub fn put_cost(p: &PutRequest) -> u64 {
    KV_OVERHEAD + (p.key.len() + p.value.len()) as u64
}

/// The costlier branch's top-level puts (nested txns are free, as in etcd).
pub fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[hub_proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

pub fn lease_cost() -> u64 {
    LEASE_OVERHEAD
}

impl EtcdServer {
    /// etcd's `quotaAlarmer.check`: refuses a write of `cost` bytes that does
    /// not fit in the quota, raising NOSPACE first.
    pub(crate) async fn check_quota(&self, cost: u64) -> Result<()> {
        let Some(quota) = self.config.quota_backend_bytes else { return Ok(()) };
        if cost == 0 {
            return Ok(());
        }
        let (size, raised) = {
            let sm = self.node.state().lock();
            // The bytes in use never exceed the file: counting them (a walk
            // of every tree) is needed only when the file alone is too big.
            if sm.db_size().saturating_add(cost) < quota {
                return Ok(());
            }
            let raised = sm.alarms().iter().any(|a| a.alarm == AlarmType::Nospace as i32);
            (sm.quota_size()?, raised)
        };
        if size.saturating_add(cost) < quota {
            return Ok(());
        }
        if !raised {
            // etcd's words, once: not again for every write the alarm refuses.
            tracing::warn!(
                quota_size_bytes = quota,
                error = %EtcdError::NoSpace,
                size,
                cost,
                "message exceeded backend quota; raising alarm"
            );
        }
        let raise = InternalRaftRequest {
            alarm: Some(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.node.member_id(),
                alarm: AlarmType::Nospace as i32,
            }),
            ..Default::default()
        };
        // The member's own proposal (no header); the request is refused
        // whether or not the alarm got through, as in etcd.
        if let Err(e) = self.node.propose(raise).await {
            tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
        }
        Err(EtcdError::NoSpace.into())
    }
}
