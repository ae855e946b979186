//! The Lock service (etcd's `v3lock`): a distributed mutex per name, held by
//! a lease. Lock waits until the caller's key is the oldest under the name;
//! Unlock deletes the key Lock returned.

use std::sync::Arc;

use hub_proto::etcdserverpb::TxnRequest;
use hub_proto::v3lockpb::{lock_server::Lock, LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use hub_store::AuthInfo;
use tonic::{Request, Response, Status};

use crate::concurrency::{
    create_revision_is, delete_op, get_first_created, get_key, get_op, participant_key, put_op, range_kvs, Client,
};
use crate::Context;

pub struct LockService {
    client: Arc<Client>,
}

impl LockService {
    pub fn new(ctx: Context) -> Self {
        LockService { client: Arc::new(Client::new(ctx)) }
    }
}

/// Deletes a waiter's key if its request goes away before it holds the lock,
/// as etcd's `Mutex.Lock` does when its context is cancelled (as the caller
/// who put it).
pub(crate) struct Withdraw {
    pub client: Arc<Client>,
    pub who: AuthInfo,
    pub txn: Option<TxnRequest>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(txn) = self.txn.take() {
            let client = self.client.clone();
            let who = std::mem::take(&mut self.who);
            tokio::spawn(async move {
                if let Err(e) = client.txn(&who, txn).await {
                    tracing::warn!(error = %e, "failed to withdraw a lock or election key");
                }
            });
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let r = req.into_inner();
        let lease = self.client.session_lease(&who, r.lease).await?;
        let prefix = [r.name.as_slice(), b"/"].concat();
        let key = participant_key(&prefix, lease);
        // Join the waiters (or find our key from an earlier Lock) and read the holder in one txn.
        let resp = self
            .client
            .txn(&who, TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![put_op(&key, b"", lease), get_op(get_first_created(&prefix))],
                failure: vec![get_op(get_key(&key)), get_op(get_first_created(&prefix))],
            })
            .await?;
        let my_rev = if resp.succeeded {
            resp.header.as_ref().map_or(0, |h| h.revision)
        } else {
            range_kvs(&resp, 0).first().map_or(0, |kv| kv.create_revision)
        };
        let holder = range_kvs(&resp, 1).first();
        if holder.is_none_or(|kv| kv.create_revision == my_rev) {
            return Ok(Response::new(LockResponse { header: resp.header, key }));
        }
        let mut withdraw = Withdraw {
            client: self.client.clone(),
            who: who.clone(),
            txn: Some(TxnRequest { success: vec![delete_op(&key)], ..Default::default() }),
        };
        let header = self.client.wait_deletes(&who, &prefix, my_rev - 1).await?;
        withdraw.txn = None;
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let header = self.client.delete(&who, &req.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header }))
    }
}
