//! The HTTP/1.1 side of the client port, beside gRPC (as etcd serves it):
//! the JSON gateway (`/v3/...`), the health endpoints ([`crate::health`]),
//! `/version`, `/metrics` and `/debug/vars` ([`crate::debug_vars`]); the same alone on `--listen-client-http-urls`
//! ([`http_only`]); and the `--listen-metrics-urls` listeners (`/metrics` and
//! the health endpoints).

use axum::body::Body;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tonic::service::Routes;

use crate::gateway::Gateway;
use crate::{debug_vars, health, Context};

/// The JSON gateway over `routes` (the services, called in-process).
fn gateway(ctx: &Context, routes: Routes) -> Option<Gateway> {
    match Gateway::new(routes, ctx.config().max_concurrent_streams) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::error!(error = %e, "the JSON gateway cannot read its descriptors; serving gRPC only");
            None
        }
    }
}

/// `routes` with the HTTP endpoints added for every other path.
pub fn with_http(ctx: Context, routes: Routes) -> Routes {
    let gateway = gateway(&ctx, routes.clone());
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

/// What a `--listen-client-http-urls` listener serves: the HTTP endpoints
/// of the client port, without gRPC.
pub fn http_only(ctx: Context) -> Routes {
    let gateway = gateway(&ctx, ctx.routes());
    Routes::from(axum::Router::new().fallback(move |req: Request<Body>| {
        let (ctx, gateway) = (ctx.clone(), gateway.clone());
        async move { serve(&ctx, gateway.as_ref(), req).await }
    }))
}

/// What a `--listen-metrics-urls` listener serves: `/metrics` and the
/// health endpoints.
pub fn metrics_only(ctx: Context) -> Routes {
    Routes::from(axum::Router::new().fallback(move |req: Request<Body>| {
        let ctx = ctx.clone();
        async move {
            match req.uri().path() {
                path if path == "/metrics" || health::handles(path) => serve(&ctx, None, req).await,
                _ => not_found(),
            }
        }
    }))
}

/// Go's `http.NotFound`.
pub fn not_found() -> Response<Body> {
    let mut resp = Response::new(Body::from("404 page not found\n"));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

async fn serve(ctx: &Context, gateway: Option<&Gateway>, req: Request<Body>) -> Response<Body> {
    match (req.uri().path(), gateway) {
        (path, _) if health::handles(path) => health::serve(ctx, req).await,
        (debug_vars::PATH, _) => debug_vars::serve(ctx, req.method()),
        ("/version", _) => version(ctx),
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

/// etcd 3.6's `/version`: the server's release, the cluster version and,
/// while the backend has one, the storage version.
fn version(ctx: &Context) -> Response<Body> {
    let server = &ctx.server;
    let (cluster, storage) = match (server.cluster_version(), server.storage_version()) {
        (Ok(cluster), Ok(storage)) => (cluster, storage),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot read the cluster and storage versions");
            (String::new(), String::new())
        }
    };
    let storage = if storage.is_empty() { String::new() } else { format!(r#","storage":"{storage}""#) };
    json(format!(r#"{{"etcdserver":"{}","etcdcluster":"{cluster}"{storage}}}"#, server.config().etcd_version))
}

pub(crate) fn json(body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
