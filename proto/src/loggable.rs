//! Requests as etcd writes them in its log (etcd's
//! `api/etcdserverpb/raft_internal_stringer.go`): Go's text format
//! ([`crate::text`]) with every value replaced by its size (`value_size`,
//! in puts, nested txns and value compares) and passwords left out. The
//! "request stats" and "apply request took too long" warnings carry these.

use crate::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, Compare, InternalRaftRequest, PutRequest, RequestOp, TxnRequest,
};
use crate::text::{compact_text, Text};

/// etcd's `NewLoggablePutRequest(r).String()`: the put with its value's size
/// in place of the value.
pub fn put_request(r: &PutRequest) -> String {
    let mut t = Text::default();
    put_fields(&mut t, r);
    t.into_string()
}

fn put_fields(t: &mut Text, r: &PutRequest) {
    if !r.key.is_empty() {
        t.quoted("key", &r.key);
    }
    if !r.value.is_empty() {
        t.field("value_size", r.value.len());
    }
    if r.lease != 0 {
        t.field("lease", r.lease);
    }
    for (name, set) in [("prev_kv", r.prev_kv), ("ignore_value", r.ignore_value), ("ignore_lease", r.ignore_lease)] {
        if set {
            t.field(name, true);
        }
    }
}

/// etcd's `NewLoggableTxnRequest(r).String()`: the compares and both
/// branches, each element's text joined by a space inside `<>`.
pub fn txn_request(r: &TxnRequest) -> String {
    let compare: Vec<String> = r.compare.iter().map(compare).collect();
    let success: Vec<String> = r.success.iter().map(request_op).collect();
    let failure: Vec<String> = r.failure.iter().map(request_op).collect();
    format!("compare:<{}> success:<{}> failure:<{}>", compare.join(" "), success.join(" "), failure.join(" "))
}

/// A compare of a value shows the value's size; others are as they are.
fn compare(c: &Compare) -> String {
    let Some(TargetUnion::Value(value)) = &c.target_union else { return compact_text(c) };
    let mut t = Text::default();
    if c.result != 0 {
        t.field(
            "result",
            CompareResult::try_from(c.result).map_or(c.result.to_string(), |r| r.as_str_name().to_string()),
        );
    }
    if c.target != 0 {
        t.field(
            "target",
            CompareTarget::try_from(c.target).map_or(c.target.to_string(), |r| r.as_str_name().to_string()),
        );
    }
    if !c.key.is_empty() {
        t.quoted("key", &c.key);
    }
    if !value.is_empty() {
        t.field("value_size", value.len());
    }
    if !c.range_end.is_empty() {
        t.quoted("range_end", &c.range_end);
    }
    t.into_string()
}

fn request_op(op: &RequestOp) -> String {
    match &op.request {
        Some(request_op::Request::RequestPut(p)) => format!("request_put:<{}>", put_request(p)),
        Some(request_op::Request::RequestTxn(t)) => format!("request_txn:<{}>", txn_request(t)),
        _ => compact_text(op),
    }
}

/// etcd's `InternalRaftStringer`: a raft entry's request, its header first.
/// A request a member proposes itself has no header in hub (etcd gives every
/// proposal one); it shows as an empty one.
pub fn internal_raft_request(r: &InternalRaftRequest) -> String {
    let header = r.header.as_ref().map(compact_text).unwrap_or_default();
    if let Some(g) = &r.lease_grant {
        return format!("header:<{header}> lease_grant:<ttl:{}-second id:{:016x}>", g.ttl, g.id);
    }
    if let Some(l) = &r.lease_revoke {
        return format!("header:<{header}> lease_revoke:<id:{:016x}>", l.id);
    }
    if let Some(a) = &r.authenticate {
        return format!("header:<{header}> authenticate:<name:{} simple_token:{}>", a.name, a.simple_token);
    }
    if let Some(u) = &r.auth_user_add {
        return format!("header:<{header}> auth_user_add:<name:{}>", u.name);
    }
    if let Some(u) = &r.auth_user_change_password {
        return format!("header:<{header}> auth_user_change_password:<name:{}>", u.name);
    }
    if let Some(p) = &r.put {
        return format!("header:<{header}> put:<{}>", put_request(p));
    }
    if let Some(t) = &r.txn {
        return format!("header:<{header}> txn:<{}>", txn_request(t));
    }
    compact_text(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::{
        AuthDisableRequest, AuthRoleAddRequest, AuthUserAddRequest, DeleteRangeRequest, LeaseGrantRequest,
        RangeRequest, RequestHeader,
    };

    // The expected texts are etcd 3.6.16's, from its log of the same requests.

    fn header(id: u64) -> Option<RequestHeader> {
        Some(RequestHeader { id, ..Default::default() })
    }

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest { key: key.into(), value: value.into(), ..Default::default() }
    }

    fn op(r: request_op::Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    #[test]
    fn puts_show_the_value_size() {
        assert_eq!(put_request(&put("foo", "bar")), r#"key:"foo" value_size:3 "#);
        let leased = PutRequest { lease: 2324035874623822089, ..put("a", "b") };
        assert_eq!(put_request(&leased), r#"key:"a" value_size:1 lease:2324035874623822089 "#);
        let r = InternalRaftRequest {
            header: header(11547407911478597891),
            put: Some(put("foo", "bar")),
            ..Default::default()
        };
        assert_eq!(internal_raft_request(&r), r#"header:<ID:11547407911478597891 > put:<key:"foo" value_size:3 >"#);
    }

    #[test]
    fn txns_show_value_sizes_in_compares_and_puts() {
        let txn = TxnRequest {
            compare: vec![Compare {
                target: CompareTarget::Value as i32,
                key: b"foo".to_vec(),
                target_union: Some(TargetUnion::Value(b"bar".to_vec())),
                ..Default::default()
            }],
            success: vec![
                op(request_op::Request::RequestPut(put("foo", "bar"))),
                op(request_op::Request::RequestRange(RangeRequest { key: b"foo".to_vec(), ..Default::default() })),
            ],
            failure: vec![op(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"nothing".to_vec(),
                ..Default::default()
            }))],
        };
        let text = r#"compare:<target:VALUE key:"foo" value_size:3 > success:<request_put:<key:"foo" value_size:3 > request_range:<key:"foo" > > failure:<request_delete_range:<key:"nothing" > >"#;
        assert_eq!(txn_request(&txn), text);
        let r = InternalRaftRequest { header: header(11547407911478597893), txn: Some(txn), ..Default::default() };
        assert_eq!(internal_raft_request(&r), format!("header:<ID:11547407911478597893 > txn:<{text}>"));
        assert_eq!(txn_request(&TxnRequest::default()), "compare:<> success:<> failure:<>");
    }

    #[test]
    fn leases_and_users_in_etcds_own_words() {
        let grant = InternalRaftRequest {
            header: header(11547407911478597898),
            lease_grant: Some(LeaseGrantRequest { ttl: 60, id: 0x2040a25090379909 }),
            ..Default::default()
        };
        assert_eq!(
            internal_raft_request(&grant),
            "header:<ID:11547407911478597898 > lease_grant:<ttl:60-second id:2040a25090379909>"
        );
        let add = InternalRaftRequest {
            header: header(11547407911478597904),
            auth_user_add: Some(AuthUserAddRequest {
                name: "root".into(),
                password: "pw".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(internal_raft_request(&add), "header:<ID:11547407911478597904 > auth_user_add:<name:root>");
    }

    #[test]
    fn other_requests_in_plain_text() {
        let role = InternalRaftRequest {
            header: header(11547407911478597905),
            auth_role_add: Some(AuthRoleAddRequest { name: "r".into() }),
            ..Default::default()
        };
        assert_eq!(internal_raft_request(&role), r#"header:<ID:11547407911478597905 > auth_role_add:<name:"r" > "#);
        let disable = InternalRaftRequest {
            header: Some(RequestHeader { id: 11547407911478597913, username: "root".into(), auth_revision: 4 }),
            auth_disable: Some(AuthDisableRequest {}),
            ..Default::default()
        };
        assert_eq!(
            internal_raft_request(&disable),
            r#"header:<ID:11547407911478597913 username:"root" auth_revision:4 > auth_disable:<> "#
        );
    }
}
