//! The Lease service on the wire; each call is the server layer's operation
//! (`hub_etcdserver::lease`), a keep-alive stream one renewal per message.

use std::pin::Pin;

use futures::Stream;
use hub_proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{status, Context};

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
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.lease_grant(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.lease_revoke(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.ctx.caller(&req).await?;
        // Each renewal checks the caller as it stands then.
        let credentials = self.ctx.credentials(&req)?;
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.ctx.server.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = incoming.message().await {
                let answer = server.lease_renew(&credentials, r.id).await.map_err(status::from_server);
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.lease_time_to_live(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.lease_leases(&who).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }
}
