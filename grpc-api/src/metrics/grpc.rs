//! go-grpc-prometheus's `grpc_server_*` families and etcd's per-call client
//! metrics (`etcd_server_client_requests_total`,
//! `etcd_network_client_grpc_{received,sent}_bytes_total`), kept by the
//! [`grpc_layer`] middleware around every gRPC call.
//!
//! Every method's rows are resolved once, when the table is built from
//! `hub_proto`'s descriptors: a call finds its method by path and bumps
//! counters it already holds. As go-grpc-prometheus does for the services
//! registered when it is (etcd's `etcdserverpb` ones), their rows exist from
//! the start, at zero, for every code; the rows of the other services
//! (Election, Lock) appear with their first call, as in etcd.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use prost_reflect::{DescriptorPool, MethodDescriptor};
use tonic::Code;

use crate::framing::{status_of, Framing};

/// The services whose rows exist before their first call (etcd registers
/// go-grpc-prometheus after these and before Election and Lock).
const PREREGISTERED: &str = "etcdserverpb.";
/// The packages of the services hub serves to clients.
pub(crate) const SERVED: [&str; 3] = ["etcdserverpb.", "v3electionpb.", "v3lockpb."];

/// Every gRPC code, in go-grpc-prometheus's spelling, by number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The families, by name.
struct Families {
    started: IntCounterVec,
    handled: IntCounterVec,
    msg_received: IntCounterVec,
    msg_sent: IntCounterVec,
    /// `--metrics extensive` only, as etcd enables it.
    handling: Option<HistogramVec>,
}

/// One method's rows.
struct MethodRows {
    labels: [String; 3],
    /// A streaming call counts as etcd's `stream` client request.
    streaming: bool,
    rows: OnceLock<Rows>,
}

struct Rows {
    started: IntCounter,
    handled: Vec<IntCounter>,
    msg_received: IntCounter,
    msg_sent: IntCounter,
    handling: Option<Histogram>,
}

impl MethodRows {
    fn new(m: &MethodDescriptor) -> Self {
        let kind = match (m.is_client_streaming(), m.is_server_streaming()) {
            (true, true) => "bidi_stream",
            (true, false) => "client_stream",
            (false, true) => "server_stream",
            (false, false) => "unary",
        };
        let labels = [kind.to_string(), m.parent_service().full_name().to_string(), m.name().to_string()];
        MethodRows { labels, streaming: kind != "unary", rows: OnceLock::new() }
    }

    fn rows(&self, f: &Families) -> &Rows {
        self.rows.get_or_init(|| {
            let [kind, service, method] = &self.labels;
            let labels = [kind.as_str(), service.as_str(), method.as_str()];
            Rows {
                started: f.started.with_label_values(&labels),
                handled: CODES.iter().map(|c| f.handled.with_label_values(&[labels[0], labels[1], labels[2], c])).collect(),
                msg_received: f.msg_received.with_label_values(&labels),
                msg_sent: f.msg_sent.with_label_values(&labels),
                handling: f.handling.as_ref().map(|h| h.with_label_values(&labels)),
            }
        })
    }
}

/// etcd's `etcd_server_client_requests_total` rows of one client API version.
struct ClientVersion {
    version: String,
    unary: IntCounter,
    stream: IntCounter,
}

/// Everything the middleware keeps.
pub struct GrpcMetrics {
    families: Families,
    methods: HashMap<String, Arc<MethodRows>>,
    client_requests: IntCounterVec,
    /// The versions clients sent so far; a client sends the same one on
    /// every call, so the first entry almost always matches.
    client_versions: parking_lot::RwLock<Vec<Arc<ClientVersion>>>,
    sent_bytes: IntCounter,
    received_bytes: IntCounter,
}

impl GrpcMetrics {
    pub(super) fn new(extensive: bool) -> prometheus::Result<Self> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let vec = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &labels);
        let families = Families {
            started: vec("grpc_server_started_total", "Total number of RPCs started on the server.")?,
            handled: IntCounterVec::new(
                Opts::new(
                    "grpc_server_handled_total",
                    "Total number of RPCs completed on the server, regardless of success or failure.",
                ),
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            )?,
            msg_received: vec("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.")?,
            msg_sent: vec("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.")?,
            handling: if extensive {
                Some(HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    ),
                    &labels,
                )?)
            } else {
                None
            },
        };
        let pool = DescriptorPool::decode(hub_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| prometheus::Error::Msg(format!("hub_proto's descriptors: {e}")))?;
        let mut methods = HashMap::new();
        for service in pool.services().filter(|s| SERVED.iter().any(|p| s.full_name().starts_with(p))) {
            for m in service.methods() {
                let rows = Arc::new(MethodRows::new(&m));
                if service.full_name().starts_with(PREREGISTERED) {
                    rows.rows(&families);
                }
                methods.insert(format!("/{}/{}", service.full_name(), m.name()), rows);
            }
        }
        Ok(GrpcMetrics {
            families,
            methods,
            client_requests: IntCounterVec::new(
                Opts::new("etcd_server_client_requests_total", "The total number of client requests per client version."),
                &["type", "client_api_version"],
            )?,
            client_versions: Default::default(),
            sent_bytes: IntCounter::new("etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.")?,
            received_bytes: IntCounter::new(
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            )?,
        })
    }

    pub(super) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let f = &self.families;
        let mut all: Vec<Box<dyn Collector>> = vec![
            Box::new(f.started.clone()),
            Box::new(f.handled.clone()),
            Box::new(f.msg_received.clone()),
            Box::new(f.msg_sent.clone()),
            Box::new(self.client_requests.clone()),
            Box::new(self.sent_bytes.clone()),
            Box::new(self.received_bytes.clone()),
        ];
        all.extend(f.handling.clone().map(|h| Box::new(h) as Box<dyn Collector>));
        for c in all {
            registry.register(c)?;
        }
        Ok(())
    }

    /// etcd's interceptors count every call by the `client-api-version` its
    /// client sent (`unknown` without one).
    fn client_request(&self, version: &[u8], streaming: bool) {
        let known = self.client_versions.read().iter().find(|v| v.version.as_bytes() == version).cloned();
        let v = match known {
            Some(v) => v,
            None => {
                // etcd refuses a version that is not UTF-8; it is counted here, lossily, before that.
                let version = String::from_utf8_lossy(version).into_owned();
                let counter = |kind: &str| self.client_requests.with_label_values(&[kind, &version]);
                let v = Arc::new(ClientVersion { unary: counter("unary"), stream: counter("stream"), version });
                self.client_versions.write().push(v.clone());
                v
            }
        };
        if streaming { &v.stream } else { &v.unary }.inc();
    }
}

/// One call in flight, of a method whose rows exist.
struct Call {
    method: Arc<MethodRows>,
    started: Instant,
}

impl Call {
    fn handled(&self, code: Code) {
        if let Some(rows) = self.method.rows.get() {
            if let Some(c) = rows.handled.get(code as usize) {
                c.inc();
            }
            if let Some(h) = &rows.handling {
                h.observe(self.started.elapsed().as_secs_f64());
            }
        }
    }
}

/// Middleware counting every gRPC call started and handled, by its code,
/// its messages and bytes each way; a stream the client abandons counts as
/// Canceled, as in etcd.
pub async fn grpc_layer(metrics: Arc<super::Metrics>, req: Request, next: Next) -> Response {
    let is_grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let Some(method) = is_grpc.then(|| metrics.grpc.methods.get(req.uri().path())).flatten().cloned() else {
        return next.run(req).await;
    };
    let g = &metrics.grpc;
    let rows = method.rows(&g.families);
    rows.started.inc();
    let version = req.headers().get("client-api-version").map_or(&b"unknown"[..], |v| v.as_bytes());
    g.client_request(version, method.streaming);
    let (received, sent) = (rows.msg_received.clone(), rows.msg_sent.clone());
    let call = Call { method, started: Instant::now() };
    let (parts, body) = req.into_parts();
    let body = CountedBody::new(body, g.received_bytes.clone(), received, None);
    let resp = next.run(Request::from_parts(parts, Body::new(body))).await;
    if let Some(code) = status_of(resp.headers()) {
        call.handled(code);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = CountedBody::new(body, g.sent_bytes.clone(), sent, Some(call));
    Response::from_parts(parts, Body::new(body))
}

/// A gRPC body that counts its bytes (the messages with their 5-byte
/// prefixes) and its messages; a response body also counts its call handled
/// when the trailers carry the status, or Canceled if it is dropped before.
struct CountedBody {
    inner: Body,
    bytes: IntCounter,
    messages: IntCounter,
    framing: Framing,
    /// For a response: the call to count handled.
    done: Option<Call>,
}

impl CountedBody {
    fn new(inner: Body, bytes: IntCounter, messages: IntCounter, done: Option<Call>) -> Self {
        CountedBody { inner, bytes, messages, framing: Framing::default(), done }
    }
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.inc_by(data.len() as u64);
                let Ok(messages) = self.framing.feed(data, |_| Ok::<_, Infallible>(()));
                self.messages.inc_by(messages);
            }
            if let Some(code) = frame.trailers_ref().and_then(status_of) {
                if let Some(call) = self.done.take() {
                    call.handled(code);
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
        if let Some(call) = self.done.take() {
            call.handled(Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_methods_are_preregistered() {
        let g = GrpcMetrics::new(false).expect("metrics");
        let put = g.methods.get("/etcdserverpb.KV/Put").expect("KV.Put");
        assert!(put.rows.get().is_some());
        assert_eq!(put.labels, ["unary", "etcdserverpb.KV", "Put"].map(String::from));
        let watch = g.methods.get("/etcdserverpb.Watch/Watch").expect("Watch");
        assert_eq!(watch.labels[0], "bidi_stream");
        assert!(g.methods.get("/v3lockpb.Lock/Lock").is_some_and(|m| m.rows.get().is_none()));
    }
}
