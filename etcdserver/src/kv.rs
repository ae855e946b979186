//! etcd's KV operations: Range, Put, DeleteRange, Txn and Compact.

use std::time::Duration;

use hub_proto::etcdserverpb::{
    request_op::Request, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use hub_store::{validate, AuthInfo, Command, Response};

use crate::{quota, unexpected, EtcdServer, Result};

/// How often a physical compaction looks whether the backend is done.
const PHYSICAL_COMPACTION_POLL: Duration = Duration::from_millis(10);

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
        let mut resp = {
            let sm = self.node.state().lock();
            sm.authorize(who, Command::Range(&r))?;
            sm.range(&r)?
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

    /// A physical compaction is answered once this member's backend no
    /// longer holds what it dropped (the deletions go on in the background).
    pub async fn compact(&self, who: &AuthInfo, r: CompactionRequest) -> Result<CompactionResponse> {
        let (revision, physical) = (r.revision, r.physical);
        match self.propose(who, InternalRaftRequest { compaction: Some(r), ..Default::default() }).await? {
            Response::Compaction(mut resp) => {
                if physical {
                    let progress = self.node.state().lock().compaction_progress();
                    while !progress.done(revision) {
                        tokio::time::sleep(PHYSICAL_COMPACTION_POLL).await;
                    }
                }
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }
}
