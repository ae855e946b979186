//! etcd's `/debug/vars` on the client port: Go's `expvar` page, with the
//! variables etcd publishes — `cmdline`, `file_descriptor_limit` and
//! `raft.status` — in expvar's layout. Go's `memstats` (its runtime's heap)
//! has no counterpart in hub and is left out; `raft.status` has the fields
//! hub's raft node knows in etcd's terms (no vote or per-peer progress).

use axum::body::Body;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::Context;

pub(crate) const PATH: &str = "/debug/vars";

/// The page, or Go's 405 to anything but GET.
pub(crate) fn serve(ctx: &Context, method: &Method) -> Response<Body> {
    if method != Method::GET {
        let mut resp = Response::new(Body::from("Method Not Allowed\n"));
        *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        let headers = resp.headers_mut();
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        return resp;
    }
    let mut vars: Vec<(&str, Value)> = vec![("cmdline", json!(std::env::args().collect::<Vec<_>>()))];
    if let Some(limit) = file_descriptor_limit() {
        vars.push(("file_descriptor_limit", json!(limit)));
    }
    vars.push(("raft.status", raft_status(ctx)));
    // expvar's layout: one variable a line, in name order.
    vars.sort_by_key(|(name, _)| *name);
    let lines: Vec<String> = vars.iter().map(|(name, value)| format!("{}: {value}", json!(name))).collect();
    let mut resp = Response::new(Body::from(format!("{{\n{}\n}}\n", lines.join(",\n"))));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

/// The soft limit on open files (etcd's `runtimeutil.FDLimit`).
fn file_descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// etcd's `raft.status`: member IDs in hex, the role as etcd's raft names it.
fn raft_status(ctx: &Context) -> Value {
    let node = ctx.server().node();
    let (me, leader) = (node.member_id(), node.leader_id());
    let state = if node.is_leader() { "StateLeader" } else { "StateFollower" };
    json!({
        "id": format!("{me:x}"),
        "term": node.term(),
        "lead": format!("{leader:x}"),
        "raftState": state,
        "applied": ctx.server().read_state(|sm| sm.applied_index()),
    })
}
