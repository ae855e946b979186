//! The KV service: etcd's Range, Put, DeleteRange, Txn and Compact on the
//! wire; each call is the server layer's operation (`hub_etcdserver::kv`).

use hub_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::{status, Context};

pub struct KvService {
    ctx: Context,
}

impl KvService {
    pub fn new(ctx: Context) -> Self {
        KvService { ctx }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.range(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.put(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.delete_range(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.txn(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.compact(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }
}
