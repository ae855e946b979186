//! etcd's health endpoints (`etcdhttp/health.go`): `/health` (etcd 3.6's
//! answer, `{"health":"true","reason":""}`, with `?exclude=<alarm>` and
//! `?serializable=true`), and etcd 3.6's `/livez` and `/readyz`, each a list
//! of named checks run in turn, with a path per check
//! (`/readyz/linearizable_read`), `?exclude=<check>` and `?verbose` (the
//! checks' lines in a healthy answer; an unhealthy one always has them).
//! Every one answers 503 when unhealthy and 405 to anything but GET.
//!
//! etcd runs the checks in its map's (random) order; hub runs them in the
//! order etcd registers them.

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hub_proto::etcdserverpb::AlarmType;

use crate::Context;

/// One check of `/livez` or `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// No CORRUPT alarm is raised.
    DataCorruption,
    /// A local read succeeds.
    SerializableRead,
    /// A read confirmed by a quorum succeeds.
    LinearizableRead,
    /// This member votes.
    NonLearner,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
            Check::NonLearner => "non_learner",
        }
    }

    /// Ok, or why the check fails, in etcd's words.
    async fn run(self, ctx: &Context) -> Result<(), String> {
        let server = ctx.server();
        match self {
            Check::DataCorruption => {
                let corrupt = server.read_state(|sm| sm.alarms().iter().any(|a| a.alarm == AlarmType::Corrupt as i32));
                if corrupt {
                    return Err(format!("alarm activated: {}", AlarmType::Corrupt.as_str_name()));
                }
                Ok(())
            }
            // etcd's serializable Range of one key fails only when the server
            // stops; hub's local state is always readable while it serves.
            Check::SerializableRead => Ok(()),
            Check::LinearizableRead => server.node().read_index().await.map_err(|e| e.to_string()),
            Check::NonLearner => {
                let me = server.node().member_id();
                if server.node().members().iter().any(|(id, _, learner)| *id == me && *learner) {
                    return Err("not supported for learner".to_string());
                }
                Ok(())
            }
        }
    }
}

/// `/livez` and `/readyz` with their checks, in etcd's registration order.
const REGISTRIES: [(&str, &[Check]); 2] = [
    ("livez", &[Check::SerializableRead]),
    ("readyz", &[Check::DataCorruption, Check::SerializableRead, Check::LinearizableRead, Check::NonLearner]),
];

/// Whether `path` is one of the health endpoints.
pub(crate) fn handles(path: &str) -> bool {
    path == "/health" || endpoint(path).is_some()
}

/// The registry (`livez`/`readyz`) `path` names, and its one check if the
/// path names one (`/readyz/non_learner`).
fn endpoint(path: &str) -> Option<(&'static str, &'static [Check], Option<Check>)> {
    let path = path.strip_prefix('/')?;
    let (root, check) = match path.split_once('/') {
        Some((root, check)) => (root, Some(check)),
        None => (path, None),
    };
    let &(kind, checks) = REGISTRIES.iter().find(|(kind, _)| *kind == root)?;
    match check {
        None => Some((kind, checks, None)),
        Some(name) => checks.iter().find(|c| c.name() == name).map(|&c| (kind, checks, Some(c))),
    }
}

/// Answers a request to a health endpoint ([`handles`]).
pub(crate) async fn serve(ctx: &Context, req: Request<Body>) -> Response<Body> {
    let (path, method, query) = (req.uri().path().to_string(), req.method().clone(), req.uri().query().unwrap_or(""));
    let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    drop(req);
    if method != Method::GET && handles(&path) {
        let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".to_string());
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        tracing::warn!(path, status_code = 405, "Health request error");
        return resp;
    }
    let values = |key: &str| -> Vec<String> {
        query.iter().filter(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    };
    if path == "/health" {
        let serializable = query.iter().any(|(k, v)| k == "serializable" && v == "true");
        let health = ctx.server().health(&values("exclude"), serializable).await;
        ctx.metrics().health_checked(health.is_ok());
        let (healthy, reason) = match &health {
            Ok(()) => (true, ""),
            Err(reason) => (false, reason.as_str()),
        };
        return json_answer(healthy, reason);
    }
    let Some((kind, checks, only)) = endpoint(&path) else {
        return crate::http::not_found();
    };
    let run: Vec<Check> = match only {
        Some(check) => vec![check],
        None => {
            let excluded = values("exclude");
            let missing: Vec<String> =
                excluded.iter().filter(|e| !checks.iter().any(|c| c.name() == **e)).map(|e| format!("{e:?}")).collect();
            if !missing.is_empty() {
                // As etcd: excluding a check it does not have is no error.
                tracing::warn!(missing_health_checks = %missing.join(","), "some health checks cannot be excluded");
            }
            checks.iter().copied().filter(|c| !excluded.iter().any(|e| e == c.name())).collect()
        }
    };
    let mut reason = String::new();
    let mut healthy = true;
    for check in run {
        let result = check.run(ctx).await;
        ctx.metrics().health_check_ran(kind, check.name(), result.is_ok());
        match result {
            Ok(()) => reason.push_str(&format!("[+]{} ok\n", check.name())),
            Err(e) => {
                healthy = false;
                reason.push_str(&format!("[-]{} failed: {e}\n", check.name()));
            }
        }
    }
    if !healthy {
        tracing::error!(path, reason = %reason, status_code = 503, "Health check error");
        return error(StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    let mut resp =
        text(StatusCode::OK, if query.iter().any(|(k, _)| k == "verbose") { format!("{reason}ok\n") } else { "ok\n".into() });
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// etcd's `/health` answer, `{"health":"true","reason":""}`: 200 when
/// healthy, else 503 (with the reason) and a warning in the log.
pub fn json_answer(healthy: bool, reason: &str) -> Response<Body> {
    let body = serde_json::json!({ "health": healthy.to_string(), "reason": reason }).to_string();
    if healthy {
        return text(StatusCode::OK, body);
    }
    tracing::warn!(output = %body, status_code = 503, "/health error");
    error(StatusCode::SERVICE_UNAVAILABLE, body)
}

/// A plain-text answer (Go's `net/http` finds etcd's JSON `/health` body
/// to be text too).
fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Go's `http.Error`: the text and a newline, not to be sniffed.
fn error(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = text(status, format!("{message}\n"));
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
