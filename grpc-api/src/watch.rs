//! The Watch service on the wire: each client stream is served by the server
//! layer (`hub_etcdserver::watch`), its requests handed in as they arrive and
//! its responses streamed back.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use hub_etcdserver::watch::WatchOptions;
use hub_proto::etcdserverpb::{watch_server::Watch, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::Context;

pub struct WatchService {
    ctx: Context,
}

impl WatchService {
    pub fn new(ctx: Context) -> Self {
        WatchService { ctx }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// etcd's `cancel_reason` for a refused create: the gRPC error as Go prints
/// it, code included.
fn reason(e: hub_etcdserver::Error) -> String {
    crate::status::go_error_text(&crate::status::from_server(e))
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let credentials = self.ctx.credentials(&req)?;
        let (tx, rx) = mpsc::channel(256);
        let options =
            WatchOptions { progress_notify_interval: self.ctx.config.watch_progress_notify_interval, reason };
        self.ctx.server.serve_watch(credentials, req.into_inner(), tx, options);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }
}
