//! etcd's KV operations: Range, Put, DeleteRange, Txn and Compact.

use hub_proto::etcdserverpb::{
    request_op::Request, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use hub_store::{validate, AuthInfo, Command, Response};

use crate::{quota, unexpected, EtcdServer, Result};

/// etcd answers a txn whose ops are all ranges without the log.
fn is_read_only(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

fn is_serializable(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| matches!(&op.request, Some(Request::RequestRange(q)) if q.serializable))
}

impl EtcdServer {
    pub async fn range(&self, who: &AuthInfo, r: RangeRequest) -> Result<RangeResponse> {
        validate::check_range(&r)?;
        if !r.serializable {
            self.read_index().await?;
        }
        // The values are read after the state machine's lock is released
        // (`PlannedRange`): a large range does not hold up the applies.
        let planned = {
            let sm = self.node.state().lock();
            sm.authorize(who, Command::Range(&r))?;
            sm.plan_range(r.clone())?
        };
        let mut resp = match planned.run()? {
            Some(resp) => resp,
            None => self.node.state().lock().range(&r)?,
        };
        resp.header = self.fill(resp.header);
        Ok(resp)
    }

    pub async fn put(&self, who: &AuthInfo, r: PutRequest) -> Result<PutResponse> {
        self.check_quota(quota::put_cost(&r)).await?;
        validate::check_put(&r)?;
        match self.propose(who, InternalRaftRequest { put: Some(r), ..Default::default() }).await? {
            Response::Put(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, who: &AuthInfo, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        validate::check_delete(&r)?;
        match self.propose(who, InternalRaftRequest { delete_range: Some(r), ..Default::default() }).await? {
            Response::DeleteRange(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, who: &AuthInfo, r: TxnRequest) -> Result<TxnResponse> {
        self.check_quota(quota::txn_cost(&r)).await?;
        validate::check_txn(&r, self.config.max_txn_ops)?;
        let mut resp = if is_read_only(&r) {
            if !is_serializable(&r) {
                self.read_index().await?;
            }
            let sm = self.node.state().lock();
            sm.authorize(who, Command::Txn(&r))?;
            sm.read_only_txn(&r)?
        } else {
            match self.propose(who, InternalRaftRequest { txn: Some(r), ..Default::default() }).await? {
                Response::Txn(resp) => resp,
                other => return Err(unexpected(other)),
            }
        };
        // etcd fills only the outer header: a nested txn has an empty one, its
        // ops just a revision.
        resp.header = self.fill(resp.header);
        Ok(resp)
    }

    pub async fn compact(&self, who: &AuthInfo, r: CompactionRequest) -> Result<CompactionResponse> {
        match self.propose(who, InternalRaftRequest { compaction: Some(r), ..Default::default() }).await? {
            Response::Compaction(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }
}
