//! The HTTP/1.1 side of the client port, beside gRPC (as etcd serves it):
//! the JSON gateway (`/v3/...`), `/health`, `/version` and `/metrics`; and
//! the `--listen-metrics-urls` listeners (`/metrics` and `/health`).

use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tonic::service::Routes;

use crate::gateway::Gateway;
use crate::Context;

/// The cluster version etcd 3.4 reports (its major.minor, patch 0).
pub const CLUSTER_VERSION: &str = "3.4.0";

/// How long `/health` waits for a linearizable read, as etcd's health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// `routes` with the HTTP endpoints added for every other path.
pub fn with_http(ctx: Context, routes: Routes) -> Routes {
    let gateway = match Gateway::new(routes.clone(), ctx.config().max_concurrent_streams) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::error!(error = %e, "the JSON gateway cannot read its descriptors; serving gRPC only");
            None
        }
    };
    let metrics = ctx.metrics().clone();
    let router = routes
        .into_axum_router()
        .fallback(move |req: Request<Body>| {
            let (ctx, gateway) = (ctx.clone(), gateway.clone());
            async move { serve(&ctx, gateway.as_ref(), req).await }
        })
        .layer(axum::middleware::from_fn(move |req, next| crate::metrics::grpc_layer(metrics.clone(), req, next)));
    Routes::from(router)
}

/// What a `--listen-metrics-urls` listener serves: `/metrics` and `/health`.
pub fn metrics_only(ctx: Context) -> Routes {
    Routes::from(axum::Router::new().fallback(move |req: Request<Body>| {
        let ctx = ctx.clone();
        async move {
            match req.uri().path() {
                "/metrics" | "/health" => serve(&ctx, None, req).await,
                _ => not_found(),
            }
        }
    }))
}

fn not_found() -> Response<Body> {
    let mut resp = Response::new(Body::from("404 page not found\n"));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

async fn serve(ctx: &Context, gateway: Option<&Gateway>, req: Request<Body>) -> Response<Body> {
    match (req.uri().path(), gateway) {
        ("/health", _) => json(health_body(ctx).await),
        ("/version", _) => {
            let version = &ctx.config.server.etcd_version;
            json(format!(r#"{{"etcdserver":"{version}","etcdcluster":"{CLUSTER_VERSION}"}}"#))
        }
        ("/metrics", _) => {
            let mut resp = Response::new(Body::from(ctx.metrics().render(ctx)));
            let text = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
            resp.headers_mut().insert(header::CONTENT_TYPE, text);
            resp
        }
        (path, Some(gw)) if Gateway::handles(path) => gw.serve(req).await,
        _ => not_found(),
    }
}

/// etcd 3.4's `/health` (`hub_etcdserver::EtcdServer::healthy`).
async fn health_body(ctx: &Context) -> String {
    let healthy = ctx.server().healthy(HEALTH_TIMEOUT).await;
    ctx.metrics().health_checked(healthy);
    format!(r#"{{"health":"{healthy}"}}"#)
}

fn json(body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
