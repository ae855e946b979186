//! etcd's "request stats" log line (`api/v3rpc/interceptor.go`,
//! `logUnaryRequestStats`): every unary call slower than
//! `--warning-unary-request-duration` is logged as a warning, and every unary
//! call at debug level while debug logging is on, with the time it started
//! and took, who sent it, the method, and for the KV calls (Range, Put,
//! DeleteRange, Txn) the request's count, size and content (etcd's loggable
//! text, values as sizes) and the response's count and size. Other calls
//! show `-1` and no content, as in etcd.
//!
//! Place: a middleware around every service ([`crate::Context::routes`]), as
//! etcd's outermost unary interceptor, so calls the JSON gateway relays are
//! logged too (etcd's gateway is a gRPC client of its own server). What a
//! call that is not logged pays: a clock reading, a lookup of its path and,
//! for the KV calls, holding the request's bytes (shared, not copied) until
//! it is answered. Nothing is decoded or formatted unless the call is
//! logged; then the answer, a unary one tonic encodes at once, is read
//! before it goes on.

use std::collections::HashMap;
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
use http_body_util::{BodyExt as _, StreamBody};
use hub_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use hub_proto::{loggable, text};
use parking_lot::Mutex;
use prost::{Message, Name};
use prost_reflect::DescriptorPool;
use tonic::Code;

use crate::framing::{status_of, PREFIX_LEN};

/// The unary calls etcd logs, and which of them show their content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Range,
    Put,
    DeleteRange,
    Txn,
    Other,
}

/// The threshold and the unary methods, by path.
pub struct RequestStats {
    /// `--warning-unary-request-duration`.
    threshold: Duration,
    methods: HashMap<String, Method>,
}

impl RequestStats {
    pub fn new(threshold: Duration) -> Result<Self, prost_reflect::DescriptorError> {
        let pool = DescriptorPool::decode(hub_proto::FILE_DESCRIPTOR_SET)?;
        let mut methods = HashMap::new();
        for service in pool.services().filter(|s| crate::metrics::SERVED.iter().any(|p| s.full_name().starts_with(p))) {
            for m in service.methods().filter(|m| !m.is_client_streaming() && !m.is_server_streaming()) {
                let method = match (service.full_name(), m.name()) {
                    ("etcdserverpb.KV", "Range") => Method::Range,
                    ("etcdserverpb.KV", "Put") => Method::Put,
                    ("etcdserverpb.KV", "DeleteRange") => Method::DeleteRange,
                    ("etcdserverpb.KV", "Txn") => Method::Txn,
                    _ => Method::Other,
                };
                methods.insert(format!("/{}/{}", service.full_name(), m.name()), method);
            }
        }
        Ok(RequestStats { threshold, methods })
    }
}

/// Middleware: logs every unary call as etcd's interceptor does (see the
/// module doc).
pub async fn layer(stats: Arc<RequestStats>, req: Request, next: Next) -> Response {
    let Some((path, &method)) = stats.methods.get_key_value(req.uri().path()) else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let remote = req.extensions().get::<hub_tls::net::ConnInfo>().and_then(|c| c.remote_addr);
    let (req, request) = if method == Method::Other { (req, None) } else { capture(req) };
    let resp = next.run(req).await;
    let spent = started.elapsed();
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    if !debug && spent <= stats.threshold {
        return resp;
    }
    // A refused call's status comes alone, in the headers: it has no answer.
    let (resp, answer) = match request {
        Some(_) if status_of(resp.headers()).is_none() => read_answer(resp).await,
        _ => (resp, None),
    };
    let request = request.and_then(|r| message(&r.lock()));
    let s = Stats::of(method, request.as_deref(), answer.as_deref());
    let start_time = hub_go::time::local_before(spent);
    let time_spent = hub_go::duration::format(spent);
    let remote = remote.map_or_else(|| "No remote client info.".to_string(), |a| a.to_string());
    macro_rules! log {
        ($level:ident) => {
            // etcd's field names have spaces: tracing takes them in braces.
            tracing::$level!(
                {
                    "start time" = start_time.as_str(),
                    "time spent" = time_spent.as_str(),
                    "remote" = remote.as_str(),
                    "response type" = path.as_str(),
                    "request count" = s.request_count,
                    "request size" = s.request_size,
                    "response count" = s.response_count,
                    "response size" = s.response_size,
                    "request content" = s.request_content.as_str(),
                },
                "request stats"
            )
        };
    }
    // As etcd: at debug level every call is logged at debug, slow or not.
    if debug {
        log!(debug);
    } else {
        log!(warn);
    }
    resp
}

/// What etcd logs of a call's request and response.
#[derive(Debug, PartialEq)]
struct Stats {
    request_count: i64,
    request_size: i64,
    response_count: i64,
    response_size: i64,
    request_content: String,
}

impl Stats {
    /// etcd's fields for `method`, from the request's message and the
    /// answer's (none if the call was refused). Like etcd: a refused Range,
    /// Put or DeleteRange still shows its request; a refused Txn shows
    /// nothing (its count depends on the branch taken).
    fn of(method: Method, request: Option<&[u8]>, answer: Option<&[u8]>) -> Stats {
        let size = |m: Option<&[u8]>| m.map_or(0, |m| m.len() as i64);
        let (request_size, response_size) = (size(request), size(answer));
        let stats = |request_count, response_count, request_content| Stats {
            request_count,
            request_size,
            response_count,
            response_size,
            request_content,
        };
        let text = |name: String| request.map(|r| text::compact_text_encoded(&name, r)).unwrap_or_default();
        match method {
            Method::Range => {
                let count = answer.and_then(|a| RangeResponse::decode(a).ok()).map_or(0, |r| r.count);
                stats(0, count, text(RangeRequest::full_name()))
            }
            Method::Put => {
                let content = request.and_then(|r| PutRequest::decode(r).ok()).map(|p| loggable::put_request(&p));
                stats(1, 0, content.unwrap_or_default())
            }
            Method::DeleteRange => {
                let deleted = answer.and_then(|a| DeleteRangeResponse::decode(a).ok()).map_or(0, |r| r.deleted);
                stats(0, deleted, text(DeleteRangeRequest::full_name()))
            }
            Method::Txn => {
                let txn = request.and_then(|r| TxnRequest::decode(r).ok());
                let succeeded = answer.and_then(|a| TxnResponse::decode(a).ok()).map(|r| r.succeeded);
                let (Some(txn), Some(succeeded)) = (txn, succeeded) else {
                    return Stats { request_size: 0, ..stats(0, 0, String::new()) };
                };
                // The count and size of the branch the compares took.
                let ops = if succeeded { &txn.success } else { &txn.failure };
                let request_size = ops.iter().map(|op| op.encoded_len() as i64).sum();
                Stats { request_size, ..stats(ops.len() as i64, 0, loggable::txn_request(&txn)) }
            }
            Method::Other => Stats { request_size: -1, response_size: -1, ..stats(-1, -1, String::new()) },
        }
    }
}

/// The request's data as it streams by, kept for the log line.
type Captured = Arc<Mutex<Vec<Bytes>>>;

fn capture(req: Request) -> (Request, Option<Captured>) {
    let seen = Captured::default();
    let (parts, inner) = req.into_parts();
    let body = CapturedBody { inner, seen: seen.clone() };
    (Request::from_parts(parts, Body::new(body)), Some(seen))
}

/// A request body that keeps (a share of) every chunk it passes on.
struct CapturedBody {
    inner: Body,
    seen: Captured,
}

impl HttpBody for CapturedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.seen.lock().push(data.clone());
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

/// Reads a unary answer's body and gives the response back whole, with the
/// message it carries (none if the trailers say the call failed).
async fn read_answer(resp: Response) -> (Response, Option<Bytes>) {
    let (parts, mut body) = resp.into_parts();
    let mut frames = Vec::new();
    let (mut data, mut failed) = (Vec::new(), false);
    while let Some(frame) = body.frame().await {
        let end = match &frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    data.push(d.clone());
                }
                failed |= f.trailers_ref().and_then(status_of).is_some_and(|c| c != Code::Ok);
                false
            }
            // The error goes on to the client; nothing follows it.
            Err(_) => {
                failed = true;
                true
            }
        };
        frames.push(frame);
        if end {
            break;
        }
    }
    let answer = if failed { None } else { message(&data) };
    let body = Body::new(StreamBody::new(futures::stream::iter(frames)));
    (Response::from_parts(parts, body), answer)
}

/// The one gRPC message in `chunks`: none if it is compressed or incomplete.
fn message(chunks: &[Bytes]) -> Option<Bytes> {
    let all = match chunks {
        [one] => one.clone(),
        many => Bytes::from(many.concat()),
    };
    let [compressed, a, b, c, d] = *all.first_chunk::<PREFIX_LEN>()?;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    (compressed == 0 && all.len() >= PREFIX_LEN + len).then(|| all.slice(PREFIX_LEN..PREFIX_LEN + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_proto::etcdserverpb::{
        compare::{CompareTarget, TargetUnion},
        request_op, Compare, RequestOp, ResponseHeader,
    };

    fn framed(m: &impl Message) -> Vec<Bytes> {
        let body = m.encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        // Split in two, as HTTP/2 frames may split it.
        let mut all = Bytes::from(framed);
        let rest = all.split_off(3);
        vec![all, rest]
    }

    fn stats(method: Method, request: &impl Message, answer: Option<&impl Message>) -> Stats {
        let request = message(&framed(request));
        let answer = answer.and_then(|a| message(&framed(a)));
        Stats::of(method, request.as_deref(), answer.as_deref())
    }

    fn header() -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: 324952591200643719,
            member_id: 3319814642761637952,
            revision: 2,
            raft_term: 2,
        })
    }

    // The expected fields are etcd 3.6.16's, from its log of the same calls.

    #[test]
    fn a_put_and_a_range_as_etcd_logs_them() {
        let put = PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), ..Default::default() };
        let answer = hub_proto::etcdserverpb::PutResponse { header: header(), prev_kv: None };
        let want = Stats {
            request_count: 1,
            request_size: 10,
            response_count: 0,
            response_size: 26,
            request_content: r#"key:"foo" value_size:3 "#.into(),
        };
        assert_eq!(stats(Method::Put, &put, Some(&answer)), want);
        let range = RangeRequest { key: b"foo".to_vec(), revision: 100, ..Default::default() };
        let refused = Stats {
            request_count: 0,
            request_size: 7,
            response_count: 0,
            response_size: 0,
            request_content: r#"key:"foo" revision:100 "#.into(),
        };
        assert_eq!(stats(Method::Range, &range, None::<&RangeResponse>), refused);
        let answer = RangeResponse { header: header(), count: 1, ..Default::default() };
        assert_eq!(stats(Method::Range, &range, Some(&answer)).response_count, 1);
    }

    #[test]
    fn a_txn_counts_the_branch_taken() {
        let put = PutRequest { key: b"foo".to_vec(), value: b"baz".to_vec(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![Compare {
                target: CompareTarget::Value as i32,
                key: b"foo".to_vec(),
                target_union: Some(TargetUnion::Value(b"bar".to_vec())),
                ..Default::default()
            }],
            success: vec![
                RequestOp { request: Some(request_op::Request::RequestPut(put)) },
                RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: b"foo".to_vec(),
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![],
        };
        let answer = TxnResponse { header: header(), succeeded: true, responses: vec![] };
        let s = stats(Method::Txn, &txn, Some(&answer));
        assert_eq!((s.request_count, s.request_size), (2, 19));
        assert_eq!(
            s.request_content,
            r#"compare:<target:VALUE key:"foo" value_size:3 > success:<request_put:<key:"foo" value_size:3 > request_range:<key:"foo" > > failure:<>"#
        );
        let refused = stats(Method::Txn, &txn, None::<&TxnResponse>);
        assert_eq!(
            refused,
            Stats {
                request_count: 0,
                request_size: 0,
                response_count: 0,
                response_size: 0,
                request_content: String::new()
            }
        );
    }

    #[test]
    fn other_calls_show_no_content() {
        let s = Stats::of(Method::Other, None, None);
        assert_eq!((s.request_count, s.request_size, s.response_count, s.response_size), (-1, -1, -1, -1));
        assert_eq!(s.request_content, "");
    }

    #[test]
    fn only_unary_calls_are_logged() {
        let stats = RequestStats::new(Duration::from_millis(300)).expect("descriptors");
        assert_eq!(stats.methods.get("/etcdserverpb.KV/Txn"), Some(&Method::Txn));
        assert_eq!(stats.methods.get("/etcdserverpb.Lease/LeaseGrant"), Some(&Method::Other));
        assert_eq!(stats.methods.get("/v3lockpb.Lock/Lock"), Some(&Method::Other));
        for streaming in [
            "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Lease/LeaseKeepAlive",
            "/etcdserverpb.Maintenance/Snapshot",
            "/v3electionpb.Election/Observe",
        ] {
            assert!(!stats.methods.contains_key(streaming), "{streaming}");
        }
        assert!(!stats.methods.keys().any(|k| k.starts_with("/hubpeer.")));
    }

    #[test]
    fn a_compressed_or_cut_message_is_not_read() {
        assert_eq!(message(&[Bytes::from_static(&[0, 0, 0, 0, 2, 7, 7])]).as_deref(), Some(&[7u8, 7][..]));
        assert_eq!(message(&[Bytes::from_static(&[1, 0, 0, 0, 2, 7, 7])]), None);
        assert_eq!(message(&[Bytes::from_static(&[0, 0, 0, 0, 3, 7, 7])]), None);
        assert_eq!(message(&[]), None);
    }
}
