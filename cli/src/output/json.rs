//! `-w json`: what Go's `encoding/json` makes of the structs etcdctl prints.
//!
//! etcdctl marshals etcd's gogo-generated structs, so field names come from
//! their `json:"..."` tags (snake_case, some camelCase), zero values carrying
//! `omitempty` are left out, `[]byte` is base64 and 64-bit integers are plain
//! numbers. Some values are clientv3 wrappers instead of protobuf messages
//! (lease responses embed the header, watch responses use Go field names);
//! each encoder below says which Go type it mirrors.

use base64::Engine as _;
use hub_proto::etcdserverpb::{
    response_op, AlarmMember, AlarmResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse,
    LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, Member,
    MemberAddResponse, MemberListResponse, MoveLeaderResponse, PutResponse, RangeResponse, ResponseHeader, ResponseOp,
    StatusResponse, TxnResponse, WatchResponse,
};
use hub_proto::authpb::Permission;
use hub_proto::mvccpb::{Event, KeyValue};

use hub_store::snapshot::SnapshotInfo;

use super::{EndpointHashKv, EndpointHealth, EndpointStatus};

/// A JSON value in the order Go would write its fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    /// Written in decimal, never with an exponent (zap's epoch seconds and durations).
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    /// Compact text, as `json.Marshal` writes it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Uint(n) => out.push_str(&n.to_string()),
            Json::Float(n) if n.is_finite() => out.push_str(&n.to_string()),
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(name, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Go's string escaping, including its HTML-safe `\u003c`, `\u003e`, `\u0026`.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds an object field by field; the `*_omit` methods implement `omitempty`.
#[derive(Default)]
struct Obj(Vec<(&'static str, Json)>);

impl Obj {
    fn new() -> Self {
        Obj(Vec::new())
    }
    fn field(mut self, name: &'static str, value: Json) -> Self {
        self.0.push((name, value));
        self
    }
    fn int_omit(self, name: &'static str, v: i64) -> Self {
        if v == 0 {
            self
        } else {
            self.field(name, Json::Int(v))
        }
    }
    fn uint_omit(self, name: &'static str, v: u64) -> Self {
        if v == 0 {
            self
        } else {
            self.field(name, Json::Uint(v))
        }
    }
    fn bool_omit(self, name: &'static str, v: bool) -> Self {
        if v {
            self.field(name, Json::Bool(true))
        } else {
            self
        }
    }
    fn str_omit(self, name: &'static str, v: &str) -> Self {
        if v.is_empty() {
            self
        } else {
            self.field(name, Json::Str(v.to_string()))
        }
    }
    fn bytes_omit(self, name: &'static str, v: &[u8]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.field(name, bytes(v))
        }
    }
    fn opt(self, name: &'static str, v: Option<Json>) -> Self {
        match v {
            Some(v) => self.field(name, v),
            None => self,
        }
    }
    fn list_omit(self, name: &'static str, items: Vec<Json>) -> Self {
        if items.is_empty() {
            self
        } else {
            self.field(name, Json::Array(items))
        }
    }
    /// The fields of an embedded `*pb.ResponseHeader` (clientv3's lease
    /// responses), which Go flattens into the outer object.
    fn embedded_header(mut self, h: Option<&ResponseHeader>) -> Self {
        if let Some(Json::Object(fields)) = h.map(header) {
            self.0.extend(fields);
        }
        self
    }
    fn build(self) -> Json {
        Json::Object(self.0)
    }
}

fn bytes(v: &[u8]) -> Json {
    Json::Str(base64::engine::general_purpose::STANDARD.encode(v))
}

fn strings(v: &[String]) -> Vec<Json> {
    v.iter().map(|s| Json::Str(s.clone())).collect()
}

/// `etcdserverpb.ResponseHeader`.
pub fn header(h: &ResponseHeader) -> Json {
    Obj::new()
        .uint_omit("cluster_id", h.cluster_id)
        .uint_omit("member_id", h.member_id)
        .int_omit("revision", h.revision)
        .uint_omit("raft_term", h.raft_term)
        .build()
}

fn header_field(h: &Option<ResponseHeader>) -> Option<Json> {
    h.as_ref().map(header)
}

/// `mvccpb.KeyValue`.
pub fn key_value(kv: &KeyValue) -> Json {
    Obj::new()
        .bytes_omit("key", &kv.key)
        .int_omit("create_revision", kv.create_revision)
        .int_omit("mod_revision", kv.mod_revision)
        .int_omit("version", kv.version)
        .bytes_omit("value", &kv.value)
        .int_omit("lease", kv.lease)
        .build()
}

/// `etcdserverpb.RangeResponse`.
pub fn range(r: &RangeResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .list_omit("kvs", r.kvs.iter().map(key_value).collect())
        .bool_omit("more", r.more)
        .int_omit("count", r.count)
        .build()
}

/// `etcdserverpb.PutResponse`.
pub fn put(r: &PutResponse) -> Json {
    Obj::new().opt("header", header_field(&r.header)).opt("prev_kv", r.prev_kv.as_ref().map(key_value)).build()
}

/// `etcdserverpb.DeleteRangeResponse`.
pub fn delete_range(r: &DeleteRangeResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .int_omit("deleted", r.deleted)
        .list_omit("prev_kvs", r.prev_kvs.iter().map(key_value).collect())
        .build()
}

/// `etcdserverpb.TxnResponse`; its `ResponseOp` oneof keeps Go's field names
/// (`{"Response":{"ResponsePut":{...}}}`) because the oneof has no json tag.
pub fn txn(r: &TxnResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .bool_omit("succeeded", r.succeeded)
        .list_omit("responses", r.responses.iter().map(response_op).collect())
        .build()
}

fn response_op(op: &ResponseOp) -> Json {
    let inner = match &op.response {
        None => Json::Null,
        Some(response_op::Response::ResponseRange(r)) => Obj::new().field("ResponseRange", range(r)).build(),
        Some(response_op::Response::ResponsePut(r)) => Obj::new().field("ResponsePut", put(r)).build(),
        Some(response_op::Response::ResponseDeleteRange(r)) => {
            Obj::new().field("ResponseDeleteRange", delete_range(r)).build()
        }
        Some(response_op::Response::ResponseTxn(r)) => Obj::new().field("ResponseTxn", txn(r)).build(),
    };
    Obj::new().field("Response", inner).build()
}

/// clientv3's `WatchResponse` (untagged Go field names; `Events` is never null).
pub fn watch(r: &WatchResponse) -> Json {
    Obj::new()
        .field("Header", r.header.as_ref().map(header).unwrap_or(Json::Object(Vec::new())))
        .field("Events", Json::Array(r.events.iter().map(event).collect()))
        .field("CompactRevision", Json::Int(r.compact_revision))
        .field("Canceled", Json::Bool(r.canceled))
        .field("Created", Json::Bool(r.created))
        .build()
}

/// `mvccpb.Event`; the event type is a number (0, PUT, is omitted).
fn event(e: &Event) -> Json {
    Obj::new()
        .int_omit("type", i64::from(e.r#type))
        .opt("kv", e.kv.as_ref().map(key_value))
        .opt("prev_kv", e.prev_kv.as_ref().map(key_value))
        .build()
}

/// clientv3's `LeaseGrantResponse`: embedded header, then `ID`, `TTL`, `Error`.
pub fn lease_grant(r: &LeaseGrantResponse) -> Json {
    Obj::new()
        .embedded_header(r.header.as_ref())
        .field("ID", Json::Int(r.id))
        .field("TTL", Json::Int(r.ttl))
        .field("Error", Json::Str(r.error.clone()))
        .build()
}

/// clientv3's `LeaseRevokeResponse` (a plain copy of the protobuf message).
pub fn lease_revoke(r: &LeaseRevokeResponse) -> Json {
    Obj::new().opt("header", header_field(&r.header)).build()
}

/// clientv3's `LeaseKeepAliveResponse`.
pub fn lease_keep_alive(r: &LeaseKeepAliveResponse) -> Json {
    Obj::new().embedded_header(r.header.as_ref()).field("ID", Json::Int(r.id)).field("TTL", Json::Int(r.ttl)).build()
}

/// clientv3's `LeaseTimeToLiveResponse` (note `granted-ttl`, and `keys` is null when empty).
pub fn lease_time_to_live(r: &LeaseTimeToLiveResponse) -> Json {
    let keys = if r.keys.is_empty() { Json::Null } else { Json::Array(r.keys.iter().map(|k| bytes(k)).collect()) };
    Obj::new()
        .embedded_header(r.header.as_ref())
        .field("id", Json::Int(r.id))
        .field("ttl", Json::Int(r.ttl))
        .field("granted-ttl", Json::Int(r.granted_ttl))
        .field("keys", keys)
        .build()
}

/// clientv3's `LeaseLeasesResponse` (`leases` is always a list).
pub fn lease_leases(r: &LeaseLeasesResponse) -> Json {
    let leases = r.leases.iter().map(|l| Obj::new().field("id", Json::Int(l.id)).build()).collect();
    Obj::new().embedded_header(r.header.as_ref()).field("leases", Json::Array(leases)).build()
}

/// `etcdserverpb.Member`.
fn member(m: &Member) -> Json {
    Obj::new()
        .uint_omit("ID", m.id)
        .str_omit("name", &m.name)
        .list_omit("peerURLs", strings(&m.peer_ur_ls))
        .list_omit("clientURLs", strings(&m.client_ur_ls))
        .bool_omit("isLearner", m.is_learner)
        .build()
}

/// `MemberListResponse`, `MemberRemoveResponse`, `MemberUpdateResponse` and
/// `MemberPromoteResponse` all have exactly a header and the member list.
pub fn members(h: &Option<ResponseHeader>, ms: &[Member]) -> Json {
    Obj::new().opt("header", header_field(h)).list_omit("members", ms.iter().map(member).collect()).build()
}

pub fn member_list(r: &MemberListResponse) -> Json {
    members(&r.header, &r.members)
}

/// `etcdserverpb.MemberAddResponse`.
pub fn member_add(r: &MemberAddResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .opt("member", r.member.as_ref().map(member))
        .list_omit("members", r.members.iter().map(member).collect())
        .build()
}

/// `etcdserverpb.AlarmResponse`.
pub fn alarm(r: &AlarmResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .list_omit("alarms", r.alarms.iter().map(alarm_member).collect())
        .build()
}

fn alarm_member(a: &AlarmMember) -> Json {
    Obj::new().uint_omit("memberID", a.member_id).int_omit("alarm", i64::from(a.alarm)).build()
}

/// `etcdserverpb.MoveLeaderResponse`.
pub fn move_leader(r: &MoveLeaderResponse) -> Json {
    Obj::new().opt("header", header_field(&r.header)).build()
}

/// etcdctl's `[]epHealth`.
pub fn endpoint_health(list: &[EndpointHealth]) -> Json {
    Json::Array(
        list.iter()
            .map(|h| {
                Obj::new()
                    .field("endpoint", Json::Str(h.endpoint.clone()))
                    .field("health", Json::Bool(h.health))
                    .field("took", Json::Str(h.took.clone()))
                    .str_omit("error", &h.error)
                    .build()
            })
            .collect(),
    )
}

/// etcdctl's `[]epStatus`: `{"Endpoint":..., "Status": StatusResponse}`.
pub fn endpoint_status(list: &[EndpointStatus]) -> Json {
    Json::Array(
        list.iter()
            .map(|s| {
                Obj::new().field("Endpoint", Json::Str(s.endpoint.clone())).field("Status", status(&s.status)).build()
            })
            .collect(),
    )
}

fn status(r: &StatusResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .str_omit("version", &r.version)
        .int_omit("dbSize", r.db_size)
        .uint_omit("leader", r.leader)
        .uint_omit("raftIndex", r.raft_index)
        .uint_omit("raftTerm", r.raft_term)
        .uint_omit("raftAppliedIndex", r.raft_applied_index)
        .list_omit("errors", strings(&r.errors))
        .int_omit("dbSizeInUse", r.db_size_in_use)
        .bool_omit("isLearner", r.is_learner)
        .build()
}

/// etcdctl's `[]epHashKV`: `{"Endpoint":..., "HashKV": HashKVResponse}`.
pub fn endpoint_hashkv(list: &[EndpointHashKv]) -> Json {
    Json::Array(
        list.iter()
            .map(|h| {
                Obj::new().field("Endpoint", Json::Str(h.endpoint.clone())).field("HashKV", hash_kv(&h.hash)).build()
            })
            .collect(),
    )
}

fn hash_kv(r: &HashKvResponse) -> Json {
    Obj::new()
        .opt("header", header_field(&r.header))
        .uint_omit("hash", u64::from(r.hash))
        .int_omit("compact_revision", r.compact_revision)
        .build()
}

/// etcdctl's `snapshot.Status` (no `omitempty`: zeros are written).
pub fn snapshot_status(s: &SnapshotInfo) -> Json {
    Obj::new()
        .field("hash", Json::Uint(u64::from(s.hash)))
        .field("revision", Json::Int(s.revision))
        .field("totalKey", Json::Uint(s.total_keys as u64))
        .field("totalSize", Json::Uint(s.total_size))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: 324952591200643719, member_id: 3319814642761637952, revision, raft_term: 2 })
    }

    #[test]
    fn range_response_matches_etcdctl() {
        let r = RangeResponse {
            header: hdr(4),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 4,
                version: 3,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            range(&r).encode(),
            r#"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":4,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":4,"version":3,"value":"YmFy"}],"count":1}"#
        );
    }

    #[test]
    fn empty_values_are_omitted_and_nested_headers_keep_what_they_have() {
        let r = TxnResponse {
            header: hdr(8),
            succeeded: true,
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponsePut(PutResponse {
                    header: Some(ResponseHeader { revision: 8, ..Default::default() }),
                    prev_kv: None,
                })),
            }],
        };
        assert_eq!(
            txn(&r).encode(),
            r#"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":8,"raft_term":2},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":8}}}}]}"#
        );
    }

    #[test]
    fn lease_responses_flatten_the_header() {
        let r =
            LeaseTimeToLiveResponse { header: hdr(13), id: 2324035657358099225, ttl: -1, granted_ttl: 0, keys: vec![] };
        assert_eq!(
            lease_time_to_live(&r).encode(),
            r#"{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":13,"raft_term":2,"id":2324035657358099225,"ttl":-1,"granted-ttl":0,"keys":null}"#
        );
    }

    #[test]
    fn strings_escape_as_go_does() {
        assert_eq!(Json::Str("a<b>&\"\n\u{1}".into()).encode(), r#""a\u003cb\u003e\u0026\"\n\u0001""#);
    }
}

/// An Auth service response: its header, then its one list (`roles`,
/// `users` or `perm`) when it has one.
pub fn auth(h: &Option<ResponseHeader>, list: Option<(&'static str, Vec<Json>)>) -> Json {
    let obj = Obj::new().opt("header", header_field(h));
    match list {
        Some((name, items)) => obj.list_omit(name, items),
        None => obj,
    }
    .build()
}

/// A list of names in an Auth response.
pub fn names(v: &[String]) -> Vec<Json> {
    strings(v)
}

/// `authpb.Permission`.
pub fn permission(p: &Permission) -> Json {
    Obj::new()
        .int_omit("permType", i64::from(p.perm_type))
        .bytes_omit("key", &p.key)
        .bytes_omit("range_end", &p.range_end)
        .build()
}
