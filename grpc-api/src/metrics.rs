//! Prometheus metrics under etcd's names and labels, served at `/metrics`.
//!
//! Gauges that mirror the node's state (leader, raft indexes, database size,
//! key count) are read when scraped; counters are kept as things happen:
//! leader changes by a watcher of the node, puts and deletes from the commit
//! feed, proposals in [`crate::Context::propose`], and gRPC calls by the
//! [`grpc_layer`] middleware (go-grpc-prometheus's `grpc_server_*`, with its
//! handling-time histogram under `--metrics extensive`). The consensus layer's
//! metrics (WAL fsyncs, peer traffic) and the backend's (commit, defrag,
//! snapshot timings) are kept where they happen and registered here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hub_proto::etcdserverpb::RangeRequest;
use hub_proto::mvccpb::event::EventType;
use hub_raft::Node;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tokio::sync::broadcast::error::RecvError;
use tonic::Code;

use crate::http::CLUSTER_VERSION;
use crate::Context;

/// Every metric hub exports.
pub struct Metrics {
    registry: Registry,
    has_leader: IntGauge,
    is_leader: IntGauge,
    leader_changes: IntCounter,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    pub(crate) proposals_pending: IntGauge,
    pub(crate) proposals_failed: IntCounter,
    db_total_size: IntGauge,
    db_size_in_use: IntGauge,
    keys_total: IntGauge,
    puts: IntCounter,
    deletes: IntCounter,
    health_success: IntCounter,
    health_failures: IntCounter,
    grpc_started: IntCounterVec,
    grpc_handled: IntCounterVec,
    grpc_sent_bytes: IntCounter,
    grpc_received_bytes: IntCounter,
    /// `--metrics extensive` only, as etcd enables it.
    grpc_handling_seconds: Option<HistogramVec>,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn version_gauge(registry: &Registry, name: &str, help: &str, label: &str, value: &str) -> prometheus::Result<()> {
    let g = GaugeVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(g.clone()))?;
    g.with_label_values(&[value]).set(1.0);
    Ok(())
}

impl Metrics {
    /// `etcd_version` is the release hub reports (`--report-etcd-version`);
    /// `extensive` is `--metrics extensive`; `node`'s own metrics are served too.
    pub fn new(etcd_version: &str, extensive: bool, node: &Node) -> prometheus::Result<Self> {
        let r = Registry::new();
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        node.metrics().register(&r)?;
        node.state().lock().metrics().register(&r)?;
        version_gauge(&r, "etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.", "server_version", etcd_version)?;
        let cluster = CLUSTER_VERSION.rsplit_once('.').map_or(CLUSTER_VERSION, |(mm, _)| mm);
        version_gauge(&r, "etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version", "cluster_version", cluster)?;
        let grpc_labels = ["grpc_type", "grpc_service", "grpc_method"];
        let grpc_started = IntCounterVec::new(
            Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
            &grpc_labels,
        )?;
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        r.register(Box::new(grpc_started.clone()))?;
        r.register(Box::new(grpc_handled.clone()))?;
        let grpc_handling_seconds = if extensive {
            let h = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &grpc_labels,
            )?;
            r.register(Box::new(h.clone()))?;
            Some(h)
        } else {
            None
        };
        Ok(Metrics {
            has_leader: gauge(&r, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")?,
            is_leader: gauge(&r, "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")?,
            leader_changes: counter(&r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen.")?,
            proposals_committed: gauge(&r, "etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")?,
            proposals_applied: gauge(&r, "etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")?,
            proposals_pending: gauge(&r, "etcd_server_proposals_pending", "The current number of pending proposals to commit.")?,
            proposals_failed: counter(&r, "etcd_server_proposals_failed_total", "The total number of failed proposals seen.")?,
            db_total_size: gauge(&r, "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")?,
            db_size_in_use: gauge(&r, "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")?,
            keys_total: gauge(&r, "etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            puts: counter(&r, "etcd_mvcc_put_total", "Total number of puts seen by this member.")?,
            deletes: counter(&r, "etcd_mvcc_delete_total", "Total number of deletes seen by this member.")?,
            health_success: counter(&r, "etcd_server_health_success", "The total number of successful health checks")?,
            health_failures: counter(&r, "etcd_server_health_failures", "The total number of failed health checks")?,
            grpc_started,
            grpc_handled,
            grpc_sent_bytes: counter(&r, "etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.")?,
            grpc_received_bytes: counter(
                &r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            )?,
            grpc_handling_seconds,
            registry: r,
        })
    }

    /// The exposition text, with the node's state read now.
    pub fn render(&self, ctx: &Context) -> String {
        let node = ctx.node();
        self.has_leader.set(i64::from(node.leader_id() != 0));
        self.is_leader.set(i64::from(node.is_leader()));
        self.proposals_committed.set(node.raft_index() as i64);
        {
            let sm = node.state().lock();
            self.proposals_applied.set(sm.applied_index() as i64);
            self.db_total_size.set(sm.db_size() as i64);
            if let Ok(in_use) = sm.db_size_in_use() {
                self.db_size_in_use.set(in_use as i64);
            }
            let all = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
            if let Ok(r) = sm.range(&all) {
                self.keys_total.set(r.count);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn grpc_handled(&self, call: &GrpcCall, code: Code) {
        self.grpc_handled.with_label_values(&[call.kind, &call.service, &call.method, code_name(code)]).inc();
        if let Some(h) = &self.grpc_handling_seconds {
            h.with_label_values(&[call.kind, &call.service, &call.method]).observe(call.started.elapsed().as_secs_f64());
        }
    }

    /// Counts one `/health` answer.
    pub(crate) fn health_checked(&self, healthy: bool) {
        if healthy { &self.health_success } else { &self.health_failures }.inc();
    }
}

/// Counts what the node commits and sees, until it stops.
pub async fn run(ctx: Context) {
    let metrics = ctx.metrics().clone();
    let mut feed = ctx.node().subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut leader = 0;
    loop {
        tokio::select! {
            batch = feed.recv() => match batch {
                Ok(batch) => for e in &batch.events {
                    if e.r#type == EventType::Delete as i32 { metrics.deletes.inc() } else { metrics.puts.inc() }
                },
                Err(RecvError::Lagged(n)) => tracing::debug!(missed = n, "metrics fell behind the commit feed"),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let now = ctx.node().leader_id();
                if now != leader && now != 0 {
                    metrics.leader_changes.inc();
                }
                if now != 0 {
                    leader = now;
                }
            }
        }
    }
}

/// go-grpc-prometheus's name of a code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// One gRPC call as go-grpc-prometheus labels it.
struct GrpcCall {
    kind: &'static str,
    service: String,
    method: String,
    started: Instant,
}

impl GrpcCall {
    fn from_path(path: &str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let kind = match (service, method) {
            ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
            ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => "server_stream",
            _ => "unary",
        };
        Some(GrpcCall { kind, service: service.to_string(), method: method.to_string(), started: Instant::now() })
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from(code))
}

/// Middleware counting every gRPC call started and handled, by its code; a
/// stream the client abandons counts as Canceled, as in etcd.
pub async fn grpc_layer(metrics: Arc<Metrics>, req: Request, next: Next) -> Response {
    let is_grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let call = if is_grpc { GrpcCall::from_path(req.uri().path()) } else { None };
    let Some(call) = call else { return next.run(req).await };
    metrics.grpc_started.with_label_values(&[call.kind, &call.service, &call.method]).inc();
    let (parts, body) = req.into_parts();
    let body = CountedBody { inner: body, bytes: metrics.grpc_received_bytes.clone(), done: None };
    let resp = next.run(Request::from_parts(parts, Body::new(body))).await;
    if let Some(code) = status_of(resp.headers()) {
        metrics.grpc_handled(&call, code);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = CountedBody { inner: body, bytes: metrics.grpc_sent_bytes.clone(), done: Some((metrics, call)) };
    Response::from_parts(parts, Body::new(body))
}

/// A gRPC body that counts its bytes (the messages with their 5-byte frame
/// prefixes) into `etcd_network_client_grpc_{received,sent}_bytes_total`; a
/// response body also counts its call handled when the trailers carry the
/// status, or Canceled if it is dropped before.
struct CountedBody {
    inner: Body,
    bytes: IntCounter,
    /// For a response: the call to count handled.
    done: Option<(Arc<Metrics>, GrpcCall)>,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.inc_by(data.len() as u64);
            }
            if let Some(code) = frame.trailers_ref().and_then(status_of) {
                if let Some((m, call)) = self.done.take() {
                    m.grpc_handled(&call, code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some((m, call)) = self.done.take() {
            m.grpc_handled(&call, Code::Cancelled);
        }
    }
}
