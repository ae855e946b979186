//! The KV service: etcd's Range, Put, DeleteRange, Txn and Compact.

use hub_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
    request_op::Request,
};
use hub_store::{validate, Response};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::{status, Context};

pub struct KvService {
    ctx: Context,
}

impl KvService {
    pub fn new(ctx: Context) -> Self {
        KvService { ctx }
    }
}

fn unexpected(r: Response) -> Status {
    Status::internal(format!("unexpected apply result {r:?}"))
}

/// etcd answers a txn whose ops are all serializable ranges locally.
fn is_read_only(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

fn is_serializable(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(&op.request, Some(Request::RequestRange(q)) if q.serializable))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: GrpcRequest<RangeRequest>) -> Result<GrpcResponse<RangeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        validate::check_range(&r).map_err(status::from_etcd)?;
        if !r.serializable {
            self.ctx.node.read_index().await.map_err(status::from_store)?;
        }
        let mut resp = {
            let sm = self.ctx.node.state().lock();
            sm.authorize_read(&who, &r.key, &r.range_end).map_err(status::from_etcd)?;
            sm.range(&r).map_err(status::from_store)?
        };
        resp.header = self.ctx.fill(resp.header);
        Ok(GrpcResponse::new(resp))
    }

    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        self.ctx.check_quota(crate::quota::put_cost(&r)).await?;
        validate::check_put(&r).map_err(status::from_etcd)?;
        match self.ctx.propose(&who, InternalRaftRequest { put: Some(r), ..Default::default() }).await? {
            Response::Put(mut resp) => {
                resp.header = self.ctx.fill(resp.header);
                Ok(GrpcResponse::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<GrpcResponse<DeleteRangeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        validate::check_delete(&r).map_err(status::from_etcd)?;
        match self.ctx.propose(&who, InternalRaftRequest { delete_range: Some(r), ..Default::default() }).await? {
            Response::DeleteRange(mut resp) => {
                resp.header = self.ctx.fill(resp.header);
                Ok(GrpcResponse::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: GrpcRequest<TxnRequest>) -> Result<GrpcResponse<TxnResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        self.ctx.check_quota(crate::quota::txn_cost(&r)).await?;
        validate::check_txn(&r, self.ctx.config.max_txn_ops).map_err(status::from_etcd)?;
        let mut resp = if is_read_only(&r) {
            if !is_serializable(&r) {
                self.ctx.node.read_index().await.map_err(status::from_store)?;
            }
            let sm = self.ctx.node.state().lock();
            sm.authorize_txn(&who, &r).map_err(status::from_etcd)?;
            sm.read_only_txn(&r).map_err(status::from_store)?
        } else {
            match self.ctx.propose(&who, InternalRaftRequest { txn: Some(r), ..Default::default() }).await? {
                Response::Txn(resp) => resp,
                other => return Err(unexpected(other)),
            }
        };
        // etcd fills only the outer header: a nested txn has an empty one, its
        // ops just a revision.
        resp.header = self.ctx.fill(resp.header);
        Ok(GrpcResponse::new(resp))
    }

    async fn compact(&self, req: GrpcRequest<CompactionRequest>) -> Result<GrpcResponse<CompactionResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        match self.ctx.propose(&who, InternalRaftRequest { compaction: Some(r), ..Default::default() }).await? {
            Response::Compaction(mut resp) => {
                resp.header = self.ctx.fill(resp.header);
                Ok(GrpcResponse::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }
}
