//! What the proxy's port serves: every gRPC call passed through to the
//! pinned member ([`Routes::forward`]), and etcd's proxy HTTP endpoints:
//! `/health` (a read through the proxy's connection to the cluster),
//! `/proxy/health` (a read and a watch through the proxy itself),
//! `/metrics` (the pinned member's) and `/proxy/metrics` (the proxy's own).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hub_grpc_api::health::json_answer;
use hub_grpc_api::http::not_found;
use hub_proto::etcdserverpb::watch_request::RequestUnion;
use hub_proto::etcdserverpb::{kv_client::KvClient, watch_client::WatchClient};
use hub_proto::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest};
use http_body_util::BodyExt as _;
use tokio_stream::StreamExt as _;
use tonic::codegen::Service as _;

use super::backends::Backends;

/// etcd's health checks: a read within a second, a watch within three.
const GET_TIMEOUT: Duration = Duration::from_secs(1);
const WATCH_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Routes {
    /// The cluster.
    backends: Arc<Backends>,
    /// The proxy itself, as its clients reach it.
    myself: Arc<Backends>,
    /// `--experimental-enable-grpc-logging`.
    log_calls: bool,
}

impl Routes {
    pub fn new(backends: Arc<Backends>, myself: Arc<Backends>, log_calls: bool) -> Arc<Routes> {
        Arc::new(Routes { backends, myself, log_calls })
    }

    /// The proxy's port: gRPC and the HTTP endpoints.
    pub fn all(self: &Arc<Self>) -> tonic::service::Routes {
        self.router(true)
    }

    /// `--metrics-addr`: the HTTP endpoints only.
    pub fn http_only(self: &Arc<Self>) -> tonic::service::Routes {
        self.router(false)
    }

    fn router(self: &Arc<Self>, grpc: bool) -> tonic::service::Routes {
        let routes = self.clone();
        tonic::service::Routes::from(axum::Router::new().fallback(move |req: Request<Body>| {
            let routes = routes.clone();
            async move {
                let is_grpc = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"));
                if grpc && is_grpc {
                    return routes.forward(req).await;
                }
                routes.http(req).await
            }
        }))
    }

    /// Passes a gRPC call through to the pinned member: its request stream,
    /// headers (the caller's token among them) and answer, trailers
    /// included, unchanged. A call that cannot reach the member fails
    /// `Unavailable` (clientv3 retries it) and moves the pin on.
    async fn forward(&self, req: Request<Body>) -> Response<Body> {
        if self.log_calls {
            tracing::info!(method = %req.uri().path(), "gRPC call");
        }
        let pinned = match self.backends.pinned().await {
            Ok(pinned) => pinned,
            Err(e) => return tonic::Status::unavailable(e).into_http(),
        };
        let mut channel = pinned.channel;
        let sent = async {
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(req.map(tonic::body::Body::new)).await
        };
        match sent.await {
            Ok(response) => {
                // A member that is stopping answers without serving the call.
                if response.headers().get("grpc-status").is_some_and(|s| s == "14") {
                    self.backends.failed(pinned.generation);
                }
                response.map(Body::new)
            }
            Err(e) => {
                self.backends.failed(pinned.generation);
                tonic::Status::unavailable(e.to_string()).into_http()
            }
        }
    }

    async fn http(&self, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path();
        if !matches!(path, "/health" | "/proxy/health" | "/metrics" | "/proxy/metrics") {
            return not_found();
        }
        if path.ends_with("/health") && req.method() != Method::GET {
            tracing::warn!(status_code = 405, "/health error");
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n".into());
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
            return resp;
        }
        match path {
            "/health" => answer(read(&self.backends).await),
            "/proxy/health" => answer(self.proxy_health().await),
            "/metrics" => self.members_metrics().await,
            _ => proxy_metrics(),
        }
    }

    /// etcd's `checkProxyHealth`: a read through the proxy, then a watch
    /// created through it.
    async fn proxy_health(&self) -> Result<(), String> {
        read(&self.myself).await?;
        let pinned = self.myself.pinned().await.map_err(|e| format!("WATCH ERROR:{e}"))?;
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })),
        };
        // The request stream stays open until the watch is created.
        let requests = tokio_stream::once(create).chain(tokio_stream::pending());
        let created = async {
            let mut events = WatchClient::new(pinned.channel).watch(requests).await.ok()?.into_inner();
            while let Some(Ok(response)) = events.next().await {
                if response.created {
                    return Some(());
                }
            }
            None
        };
        match tokio::time::timeout(WATCH_TIMEOUT, created).await {
            Ok(Some(())) => Ok(()),
            _ => Err("WATCH TIMEOUT".to_string()),
        }
    }

    /// etcd's proxy `/metrics`: the metrics of a member, fetched over HTTP/1.1.
    async fn members_metrics(&self) -> Response<Body> {
        let (url, tls) = self.backends.pinned_url();
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let fetched = async {
            let io = hub_tls::net::dial(&url, Some(&Arc::new(tls))).await.map_err(|e| e.to_string())?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let request = Request::get("/metrics")
                .header(header::HOST, url.host.as_str())
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(body.to_bytes())
        };
        match fetched.await {
            Ok(body) => {
                let mut resp = Response::new(Body::from(body));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                resp
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch a member's metrics");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n".into())
            }
        }
    }
}

/// etcd's `checkHealth`: a read of key `a` within a second (a refusal for
/// want of permission is healthy too).
async fn read(backends: &Backends) -> Result<(), String> {
    let pinned = backends.pinned().await.map_err(|e| format!("GET ERROR:{e}"))?;
    let request = RangeRequest { key: b"a".to_vec(), ..Default::default() };
    match tokio::time::timeout(GET_TIMEOUT, KvClient::new(pinned.channel).range(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if status.message() == "etcdserver: permission denied" => Ok(()),
        Ok(Err(status)) => {
            if status.code() == tonic::Code::Unavailable {
                backends.failed(pinned.generation);
            }
            Err(format!("GET ERROR:{}", status.message()))
        }
        Err(_) => Err("GET ERROR:context deadline exceeded".to_string()),
    }
}

fn answer(health: Result<(), String>) -> Response<Body> {
    match health {
        Ok(()) => json_answer(true, ""),
        Err(reason) => json_answer(false, &reason),
    }
}

/// The proxy's own metrics, etcd's names: hub's proxy caches and coalesces
/// nothing, so they stay at zero.
fn proxy_metrics() -> Response<Body> {
    let metrics = [
        ("watchers_coalescing_total", "gauge", "Total number of current watchers coalescing"),
        ("events_coalescing_total", "counter", "Total number of events coalescing"),
        ("cache_keys_total", "gauge", "Total number of keys/ranges cached"),
        ("cache_hits_total", "gauge", "Total number of cache hits"),
        ("cache_misses_total", "gauge", "Total number of cache misses"),
    ];
    let mut out = String::new();
    for (name, kind, help) in metrics {
        out.push_str(&format!(
            "# HELP etcd_grpc_proxy_{name} {help}\n# TYPE etcd_grpc_proxy_{name} {kind}\netcd_grpc_proxy_{name} 0\n"
        ));
    }
    let mut resp = Response::new(Body::from(out));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
