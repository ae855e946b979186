//! Golden scripts for the server layer: each file in `tests/golden/` is a
//! sequence of requests, each followed by the answer etcd gives, run against
//! one in-process member (its raft node and state machine, no socket).
//!
//! A script's lines:
//! - `# ...`: a comment;
//! - `OP {json}`: a request as etcd's JSON gateway takes it (bytes in
//!   base64), `OP` one of `put`, `range`, `delete`, `txn`, `compact`,
//!   `lease_grant`, `lease_revoke`, `lease_time_to_live`, `auth_enable`,
//!   `auth_disable`, `user_*` and `role_*` (Auth's calls, as `run` names them);
//! - `watch {json}`: a new watch stream, opened with one request (as through
//!   etcd's gateway); its answer is the stream's first response;
//! - `watch_next`: the next response of the newest stream;
//! - `=> {json}`: the answer as etcd's gateway writes it (proto field names,
//!   64-bit numbers as strings, zero values left out), its header cut to the
//!   revision (the cluster and member IDs and the term are the member's own);
//! - `=> error: TEXT`: etcd's error text;
//! - `=> none`: no response within a second (`watch_next`).
//!
//! The answers were read from etcd 3.6.16 (its gateway, the same requests in
//! the same order on a fresh member).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hub_etcdserver::token::Tokens;
use hub_etcdserver::watch::WatchOptions;
use hub_etcdserver::{Credentials, EtcdServer, ServerConfig, ServerMetrics};
use hub_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGrantRoleRequest,
    AuthUserRevokeRoleRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, TxnRequest, WatchRequest, WatchResponse,
};
use hub_raft::{Member, Node, NodeConfig};
use hub_store::{AuthInfo, StateMachine};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use tokio::sync::mpsc;

/// One member, bootstrapped alone in `dir`.
async fn member(dir: &Path) -> Arc<EtcdServer> {
    let state = StateMachine::open(&dir.join("snap"), 2).expect("open the backend");
    let member = Member { name: "golden".into(), peer_urls: vec!["http://127.0.0.1:1".into()], client_urls: Vec::new() };
    let config = NodeConfig {
        id: 1,
        cluster_id: 2,
        wal_dir: dir.join("wal"),
        initial_members: BTreeMap::from([(1, member)]),
        bootstrap: true,
        heartbeat_interval_ms: 100,
        election_timeout_ms: 1000,
        snapshot_count: 10_000,
        tls: None,
        strict_reconfig_check: true,
        max_learners: 1,
        force_new_cluster: false,
        warning_apply_duration: std::time::Duration::from_millis(100),
    };
    let node = Node::start(config, state).await.expect("start raft");
    node.wait_for_leader().await;
    let config = ServerConfig {
        max_request_bytes: 1536 * 1024,
        max_txn_ops: 128,
        tokens: Arc::new(Tokens::Simple),
        bcrypt_cost: 4,
        etcd_version: hub_etcdserver::version::ETCD_VERSION.into(),
        quota_backend_bytes: None,
        db_size_quota: -1,
    };
    EtcdServer::new(node, config, ServerMetrics::new().expect("metrics"))
}

struct Codec {
    pool: DescriptorPool,
}

impl Codec {
    fn new() -> Self {
        Codec { pool: DescriptorPool::decode(hub_proto::FILE_DESCRIPTOR_SET).expect("descriptors") }
    }

    /// `json` as the message `name` (etcd's gateway JSON).
    fn request<M: Message + Default>(&self, name: &str, json: &str) -> M {
        let desc = self.pool.get_message_by_name(name).unwrap_or_else(|| panic!("no message {name}"));
        let mut de = serde_json::Deserializer::from_str(json);
        let dynamic = DynamicMessage::deserialize_with_options(desc, &mut de, &DeserializeOptions::new())
            .unwrap_or_else(|e| panic!("{name} {json}: {e}"));
        M::decode(dynamic.encode_to_vec().as_slice()).expect("re-decode")
    }

    /// `m` as etcd's gateway writes it, its header cut to the revision.
    fn answer<M: Message>(&self, name: &str, m: &M) -> serde_json::Value {
        let desc = self.pool.get_message_by_name(name).unwrap_or_else(|| panic!("no message {name}"));
        let dynamic = DynamicMessage::decode(desc, m.encode_to_vec().as_slice()).expect("decode");
        let options = SerializeOptions::new().use_proto_field_name(true);
        let mut v = dynamic.serialize_with_options(serde_json::value::Serializer, &options).expect("to JSON");
        if let Some(header) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
            header.retain(|k, _| k == "revision");
        }
        v
    }
}

/// The next response of a watch stream (`Null`: none within a second).
async fn watch_next(codec: &Codec, stream: Option<&mut mpsc::Receiver<WatchResponse>>) -> serde_json::Value {
    let stream = stream.expect("watch_next before any watch");
    match tokio::time::timeout(Duration::from_secs(1), stream.recv()).await {
        Ok(Some(resp)) => codec.answer("etcdserverpb.WatchResponse", &resp),
        Ok(None) => panic!("the watch stream ended"),
        Err(_) => serde_json::Value::Null,
    }
}

/// Runs `op` with the request `json`: the answer, or etcd's error text.
/// `streams`: the script's watch streams, newest last.
async fn run(
    server: &Arc<EtcdServer>,
    codec: &Codec,
    streams: &mut Vec<mpsc::Receiver<WatchResponse>>,
    op: &str,
    json: &str,
) -> Result<serde_json::Value, String> {
    let who = AuthInfo::default();
    let e = |e: hub_etcdserver::Error| e.to_string();
    macro_rules! call {
        ($req:ty, $resp:literal, $f:ident) => {{
            let req: $req = codec.request(concat!("etcdserverpb.", stringify!($req)), json);
            server.$f(&who, req).await.map(|r| codec.answer(concat!("etcdserverpb.", $resp), &r)).map_err(e)
        }};
    }
    match op {
        "put" => call!(PutRequest, "PutResponse", put),
        "range" => call!(RangeRequest, "RangeResponse", range),
        "delete" => call!(DeleteRangeRequest, "DeleteRangeResponse", delete_range),
        "txn" => call!(TxnRequest, "TxnResponse", txn),
        "compact" => call!(CompactionRequest, "CompactionResponse", compact),
        "lease_grant" => call!(LeaseGrantRequest, "LeaseGrantResponse", lease_grant),
        "lease_revoke" => call!(LeaseRevokeRequest, "LeaseRevokeResponse", lease_revoke),
        "lease_time_to_live" => call!(LeaseTimeToLiveRequest, "LeaseTimeToLiveResponse", lease_time_to_live),
        "auth_enable" => call!(AuthEnableRequest, "AuthEnableResponse", auth_enable),
        "auth_disable" => call!(AuthDisableRequest, "AuthDisableResponse", auth_disable),
        "user_add" => call!(AuthUserAddRequest, "AuthUserAddResponse", user_add),
        "user_get" => call!(AuthUserGetRequest, "AuthUserGetResponse", user_get),
        "user_delete" => call!(AuthUserDeleteRequest, "AuthUserDeleteResponse", user_delete),
        "user_change_password" => {
            call!(AuthUserChangePasswordRequest, "AuthUserChangePasswordResponse", user_change_password)
        }
        "user_grant_role" => call!(AuthUserGrantRoleRequest, "AuthUserGrantRoleResponse", user_grant_role),
        "user_revoke_role" => call!(AuthUserRevokeRoleRequest, "AuthUserRevokeRoleResponse", user_revoke_role),
        "user_list" => {
            let r = server.user_list(&who).await.map_err(e)?;
            Ok(codec.answer("etcdserverpb.AuthUserListResponse", &r))
        }
        "role_add" => call!(AuthRoleAddRequest, "AuthRoleAddResponse", role_add),
        "role_get" => call!(AuthRoleGetRequest, "AuthRoleGetResponse", role_get),
        "role_delete" => call!(AuthRoleDeleteRequest, "AuthRoleDeleteResponse", role_delete),
        "role_grant_permission" => {
            call!(AuthRoleGrantPermissionRequest, "AuthRoleGrantPermissionResponse", role_grant_permission)
        }
        "role_revoke_permission" => {
            call!(AuthRoleRevokePermissionRequest, "AuthRoleRevokePermissionResponse", role_revoke_permission)
        }
        "role_list" => {
            let r = server.role_list(&who).await.map_err(e)?;
            Ok(codec.answer("etcdserverpb.AuthRoleListResponse", &r))
        }
        "watch" => {
            let req: WatchRequest = codec.request("etcdserverpb.WatchRequest", json);
            let (tx, rx) = mpsc::channel(16);
            let options =
                WatchOptions { progress_notify_interval: Duration::from_secs(600), reason: |e| e.to_string() };
            let requests = futures::stream::iter([Ok::<_, ()>(req)]);
            server.serve_watch(Credentials::default(), requests, tx, options);
            streams.push(rx);
            Ok(watch_next(codec, streams.last_mut()).await)
        }
        "watch_next" => Ok(watch_next(codec, streams.last_mut()).await),
        other => panic!("unknown op {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_scripts() {
    let codec = Codec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/golden")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    for script in scripts {
        let tmp = tempfile::tempdir().expect("tempdir");
        let server = member(tmp.path()).await;
        let text = std::fs::read_to_string(&script).expect("script");
        let mut last: Option<(usize, Result<serde_json::Value, String>)> = None;
        let mut streams = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            let at = format!("{}:{n}", script.display());
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(want) = line.strip_prefix("=> ") {
                let (_, got) = last.take().unwrap_or_else(|| panic!("{at}: an answer without a request"));
                let want = if want == "none" { "null" } else { want };
                match (want.strip_prefix("error: "), got) {
                    (Some(text), Err(got)) => assert_eq!(got, text, "{at}"),
                    (None, Ok(got)) => {
                        let want: serde_json::Value =
                            serde_json::from_str(want).unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
                        assert_eq!(got, want, "{at}");
                    }
                    (_, got) => panic!("{at}: want {want}, got {got:?}"),
                }
                continue;
            }
            if let Some((n, _)) = &last {
                panic!("{}:{n}: a request without its answer", script.display());
            }
            let (op, json) = line.split_once(' ').unwrap_or((line, "{}"));
            last = Some((n, run(&server, &codec, &mut streams, op, json).await));
        }
        server.node().shutdown().await;
    }
}
