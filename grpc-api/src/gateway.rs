//! etcd's grpc-gateway: the v3 API as JSON over HTTP/1.1 on the client port.
//!
//! `POST /v3/<service>/<call>` (and `/v3beta/...`, as etcd 3.4) takes the
//! request message as JSON and answers the response message as JSON, written
//! as etcd's gateway writes it (original field names, 64-bit integers as
//! strings, bytes in base64, default values left out). The request is
//! transcoded by the protobuf descriptors of `hub_proto` and handed to the
//! very gRPC services the port serves, in process, so every check, error and
//! header is theirs. Streaming calls (Watch, LeaseKeepAlive, Observe,
//! Snapshot) answer one `{"result":{...}}` line per message.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use bytes::{Buf, Bytes};
use futures::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::service::Routes;
use tokio::sync::Semaphore;
use tonic::{Code, Status};

/// etcd's gateway paths (after `/v3/`) and the gRPC method each one calls, in
/// etcd 3.6's order.
const ROUTES: &[(&str, &str, &str)] = &[
    ("kv/range", "etcdserverpb.KV", "Range"),
    ("kv/put", "etcdserverpb.KV", "Put"),
    ("kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("kv/txn", "etcdserverpb.KV", "Txn"),
    ("kv/compaction", "etcdserverpb.KV", "Compact"),
    ("watch", "etcdserverpb.Watch", "Watch"),
    ("lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"),
    ("lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"),
    ("cluster/member/remove", "etcdserverpb.Cluster", "MemberRemove"),
    ("cluster/member/update", "etcdserverpb.Cluster", "MemberUpdate"),
    ("cluster/member/list", "etcdserverpb.Cluster", "MemberList"),
    ("cluster/member/promote", "etcdserverpb.Cluster", "MemberPromote"),
    ("maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    ("maintenance/status", "etcdserverpb.Maintenance", "Status"),
    ("maintenance/defragment", "etcdserverpb.Maintenance", "Defragment"),
    ("maintenance/hash", "etcdserverpb.Maintenance", "Hash"),
    ("maintenance/hashkv", "etcdserverpb.Maintenance", "HashKV"),
    ("maintenance/snapshot", "etcdserverpb.Maintenance", "Snapshot"),
    ("maintenance/transfer-leadership", "etcdserverpb.Maintenance", "MoveLeader"),
    ("maintenance/downgrade", "etcdserverpb.Maintenance", "Downgrade"),
    ("auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("auth/status", "etcdserverpb.Auth", "AuthStatus"),
    ("auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    ("auth/user/changepw", "etcdserverpb.Auth", "UserChangePassword"),
    ("auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    ("auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"),
    ("auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    ("auth/role/grant", "etcdserverpb.Auth", "RoleGrantPermission"),
    ("auth/role/revoke", "etcdserverpb.Auth", "RoleRevokePermission"),
    ("election/campaign", "v3electionpb.Election", "Campaign"),
    ("election/proclaim", "v3electionpb.Election", "Proclaim"),
    ("election/leader", "v3electionpb.Election", "Leader"),
    ("election/observe", "v3electionpb.Election", "Observe"),
    ("election/resign", "v3electionpb.Election", "Resign"),
    ("lock/lock", "v3lockpb.Lock", "Lock"),
    ("lock/unlock", "v3lockpb.Lock", "Unlock"),
];

/// The JSON gateway over a set of gRPC services.
#[derive(Clone)]
pub struct Gateway {
    routes: Routes,
    pool: DescriptorPool,
    /// etcd's gateway reaches the services over one gRPC connection, so
    /// `--max-concurrent-streams` bounds its calls in flight (a watch holds
    /// one until its client goes away); more wait for a free one.
    streams: Arc<Semaphore>,
}

/// A method behind a gateway path.
struct Route {
    path: String,
    method: MethodDescriptor,
}

impl Gateway {
    /// A gateway calling `routes` (the gRPC services, not the gateway itself)
    /// with at most `max_streams` calls in flight.
    pub fn new(routes: Routes, max_streams: u32) -> Result<Self, prost_reflect::DescriptorError> {
        let pool = DescriptorPool::decode(hub_proto::FILE_DESCRIPTOR_SET)?;
        let permits = usize::try_from(max_streams).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Ok(Gateway { routes, pool, streams: Arc::new(Semaphore::new(permits)) })
    }

    fn route(&self, path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/v3/").or_else(|| path.strip_prefix("/v3beta/"))?;
        let (_, service, name) = ROUTES.iter().find(|(p, _, _)| *p == rest.trim_end_matches('/'))?;
        // A call whose service is not compiled in (none today) is not found.
        let method = self.pool.get_service_by_name(service)?.methods().find(|m| m.name() == *name)?;
        Some(Route { path: format!("/{service}/{name}"), method })
    }

    /// Whether `path` is the gateway's (the rest of the HTTP surface is not).
    pub fn handles(path: &str) -> bool {
        path.starts_with("/v3/") || path.starts_with("/v3beta/")
    }

    /// Answers one HTTP request to a gateway path.
    pub async fn serve(&self, req: Request<Body>) -> Response<Body> {
        // grpc-gateway v2 (etcd 3.6) answers these as gRPC errors.
        let Some(route) = self.route(req.uri().path()) else {
            return error_response(&Status::not_found("Not Found"));
        };
        if req.method() != Method::POST {
            return error_response(&Status::unimplemented("Method Not Allowed"));
        }
        let token = req.headers().get(header::AUTHORIZATION).cloned();
        let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
            Ok(b) => b,
            Err(e) => return error_response(&Status::invalid_argument(e.to_string())),
        };
        let messages = match decode_json(&route.method.input(), &body) {
            Ok(m) => m,
            Err(e) => return error_response(&e),
        };
        let Ok(permit) = self.streams.clone().acquire_owned().await else {
            return error_response(&Status::unavailable("etcdserver: server stopped"));
        };
        match self.call(&route, messages, token).await {
            Ok(Answer::One(msg)) => json_response(StatusCode::OK, Body::from(to_json(&msg))),
            Ok(Answer::Stream(stream)) => {
                let lines = stream.map(move |item| {
                    let _held = &permit;
                    let line = match item {
                        Ok(msg) => format!("{{\"result\":{}}}\n", to_json(&msg)),
                        Err(s) => stream_error(&s),
                    };
                    Ok::<_, Infallible>(Bytes::from(line))
                });
                json_response(StatusCode::OK, Body::from_stream(lines))
            }
            Err(status) => error_response(&status),
        }
    }

    async fn call(
        &self,
        route: &Route,
        mut messages: Vec<DynamicMessage>,
        token: Option<HeaderValue>,
    ) -> Result<Answer, Status> {
        let mut grpc = tonic::client::Grpc::new(self.routes.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::try_from(route.path.as_str())
            .map_err(|e| Status::internal(format!("gateway route {}: {e}", route.path)))?;
        let codec = DynamicCodec(route.method.output());
        let token = token.as_ref();
        let m = &route.method;
        if m.is_client_streaming() {
            // As etcd's gateway: the body's messages, then the end of the
            // request stream (a watch goes on; a keep-alive answers and ends).
            let requests = futures::stream::iter(messages);
            let resp = grpc.streaming(with_token(requests, token), path, codec).await?;
            return Ok(Answer::Stream(resp.into_inner().boxed()));
        }
        let msg = if messages.is_empty() { DynamicMessage::new(m.input()) } else { messages.swap_remove(0) };
        if m.is_server_streaming() {
            let resp = grpc.server_streaming(with_token(msg, token), path, codec).await?;
            Ok(Answer::Stream(resp.into_inner().boxed()))
        } else {
            Ok(Answer::One(grpc.unary(with_token(msg, token), path, codec).await?.into_inner()))
        }
    }
}

/// A request carrying the HTTP `Authorization` header as gRPC metadata, as
/// etcd's gateway passes the token on.
fn with_token<T>(msg: T, token: Option<&HeaderValue>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token.and_then(|t| tonic::metadata::MetadataValue::try_from(t.as_bytes()).ok()) {
        r.metadata_mut().insert("authorization", t);
    }
    r
}

enum Answer {
    One(DynamicMessage),
    Stream(futures::stream::BoxStream<'static, Result<DynamicMessage, Status>>),
}

/// Every JSON value of the body as a request message; none for an empty body
/// (etcd's gateway takes that as the empty request). Unknown fields are
/// ignored, as grpc-gateway's unmarshaler does.
fn decode_json(desc: &MessageDescriptor, body: &[u8]) -> Result<Vec<DynamicMessage>, Status> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| Status::invalid_argument(e.to_string()))?;
        let msg = DynamicMessage::deserialize_with_options(desc.clone(), value, &options)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        out.push(msg);
    }
    Ok(out)
}

/// A message as etcd's gateway writes it (`runtime.JSONPb{OrigName: true}`).
fn to_json(msg: &DynamicMessage) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    let options = SerializeOptions::new().use_proto_field_name(true);
    if let Err(e) = msg.serialize_with_options(&mut ser, &options) {
        tracing::error!(error = %e, "gateway: cannot write a response as JSON");
        return "{}".to_string();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// grpc-gateway's `HTTPStatusFromCode`.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway v2's error body, as etcd 3.6 answers: `{"code":N,"message":..}`
/// (3.4's v1 gateway also repeated the message as `"error"`).
fn error_response(s: &Status) -> Response<Body> {
    let message = serde_json::Value::from(s.message());
    let body = format!(r#"{{"code":{},"message":{message}}}"#, s.code() as i32);
    json_response(http_status(s.code()), Body::from(body))
}

/// grpc-gateway's error line inside a streaming answer.
fn stream_error(s: &Status) -> String {
    let http = http_status(s.code());
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}\n",
        s.code() as i32,
        http.as_u16(),
        serde_json::Value::from(s.message()),
        serde_json::Value::from(http.canonical_reason().unwrap_or_default()),
    )
}

/// The headers etcd's gateway puts on every answer.
fn with_gateway_headers(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}

fn json_response(status: StatusCode, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::OK {
        resp.headers_mut().insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    }
    with_gateway_headers(resp)
}

/// A gRPC codec for messages known only by their descriptor.
struct DynamicCodec(MessageDescriptor);

struct DynamicEncoder;
struct DynamicDecoder(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.0.clone())
    }
}

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        DynamicMessage::decode(self.0.clone(), bytes).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_a_compiled_method() {
        let gw = Gateway::new(Routes::default(), u32::MAX).expect("descriptors");
        for (path, service, name) in ROUTES {
            // Auth is served by the auth branch; its descriptors are compiled here already.
            let route = gw.route(&format!("/v3/{path}"));
            assert!(route.is_some(), "{path} -> {service}/{name}");
        }
        assert_eq!(gw.route("/v3/maintenance/hash").map(|r| r.path), Some("/etcdserverpb.Maintenance/Hash".into()));
        assert!(gw.route("/v3alpha/kv/range").is_none());
    }

    #[test]
    fn json_is_written_as_etcds_gateway_writes_it() {
        let gw = Gateway::new(Routes::default(), u32::MAX).expect("descriptors");
        let range = gw.route("/v3/kv/range").expect("route").method;
        let req = decode_json(&range.input(), br#"{"key":"Zm9v","keysOnly":true,"limit":"2","unknown":1}"#)
            .expect("decode");
        assert_eq!(to_json(&req[0]), r#"{"key":"Zm9v","limit":"2","keys_only":true}"#);
        assert!(decode_json(&range.input(), b"").expect("empty body").is_empty());
        assert!(decode_json(&range.input(), b"{\"bad").is_err());
    }
}
