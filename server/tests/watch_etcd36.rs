//! Watch answers compared with etcd 3.6.16, the reference: each scenario runs
//! the same requests against a real etcd 3.6.16 and against hubd, over etcd's
//! gRPC API, and the watch responses must be the same — events with their
//! `prev_kv`, `created`/`canceled`, `compact_revision` and `cancel_reason` —
//! with each response header cut to its revision (cluster, member and term
//! differ by construction).
//!
//! etcd 3.6.16 is found through `HUB_ETCD36` (default
//! `~/.cache/hub-etcd/v3.6.16/etcd`); without it every test says so and skips.

mod common;

use std::time::Duration;

use common::{etcd36_bin, hubd_bin, Member};
use hub_proto::authpb::{permission::Type as PermType, Permission};
use hub_proto::etcdserverpb::{
    auth_client::AuthClient, kv_client::KvClient, maintenance_client::MaintenanceClient, request_op::Request,
    watch_client::WatchClient, watch_request::RequestUnion, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleGrantPermissionRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, AuthenticateRequest,
    CompactionRequest, DeleteRangeRequest, HashKvRequest, PutRequest, RequestOp, ResponseHeader, TxnRequest,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// One server under test: its KV client and its channel.
struct Server {
    _member: Member,
    channel: Channel,
    kv: KvClient<Channel>,
}

impl Server {
    async fn start(bin: &std::path::Path) -> Server {
        let member = Member::start(bin);
        let channel = Channel::from_shared(format!("http://{}", member.endpoint()))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Server { _member: member, kv: KvClient::new(channel.clone()), channel }
    }

    async fn put(&mut self, key: &str, value: &str) -> i64 {
        let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        revision(self.kv.put(req).await.expect("put").into_inner().header)
    }

    async fn delete(&mut self, key: &str) -> i64 {
        let req = DeleteRangeRequest { key: key.into(), ..Default::default() };
        revision(self.kv.delete_range(req).await.expect("delete").into_inner().header)
    }

    async fn compact(&mut self, revision: i64) {
        self.kv.compact(CompactionRequest { revision, physical: true }).await.expect("compact");
    }

    /// Opens a Watch stream with its first create request (etcd answers the
    /// stream's headers with its first response), with `token` metadata when
    /// given.
    async fn watch_stream(&self, token: Option<&str>, first: WatchCreateRequest) -> WatchStream {
        let (tx, rx) = mpsc::channel(16);
        tx.send(create_request(first)).await.expect("queue the first create");
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            req.metadata_mut().insert("token", t.parse().expect("token metadata"));
        }
        let incoming = WatchClient::new(self.channel.clone()).watch(req).await.map(|r| r.into_inner());
        WatchStream { tx, incoming }
    }
}

struct WatchStream {
    tx: mpsc::Sender<WatchRequest>,
    incoming: Result<tonic::Streaming<WatchResponse>, tonic::Status>,
}

impl WatchStream {
    async fn create(&self, c: WatchCreateRequest) {
        self.tx.send(create_request(c)).await.expect("watch stream open");
    }

    /// Every response that arrives until the stream is quiet for a while
    /// (etcd's unsynced watchers are served every 100 ms), written as the
    /// test compares them; a stream that failed is its status.
    async fn responses(&mut self) -> Vec<String> {
        let incoming = match &mut self.incoming {
            Ok(s) => s,
            Err(status) => return vec![format!("stream refused: {:?} {:?}", status.code(), status.message())],
        };
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(700), incoming.message()).await {
                Err(_) => return out,
                Ok(Ok(Some(mut r))) => {
                    r.header = Some(ResponseHeader { revision: revision(r.header), ..Default::default() });
                    out.push(format!("{r:?}"));
                }
                Ok(Ok(None)) => return out,
                Ok(Err(status)) => {
                    out.push(format!("stream failed: {:?} {:?}", status.code(), status.message()));
                    return out;
                }
            }
        }
    }
}

fn create_request(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

fn revision(header: Option<ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

fn watch(key: &str, start_revision: i64, prev_kv: bool) -> WatchCreateRequest {
    WatchCreateRequest { key: key.into(), start_revision, prev_kv, ..Default::default() }
}

/// A scenario's answers, in order.
type Answers<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + 'a>>;

/// Runs `scenario` against etcd 3.6.16 and hubd and asserts both gave the same
/// answers; returns them.
async fn differential<F>(scenario: F) -> Vec<String>
where
    F: for<'a> Fn(&'a mut Server) -> Answers<'a>,
{
    let Some(etcd36) = etcd36_bin() else { return Vec::new() };
    let mut etcd = Server::start(&etcd36).await;
    let expected = scenario(&mut etcd).await;
    let mut hub = Server::start(&hubd_bin()).await;
    let got = scenario(&mut hub).await;
    assert_eq!(got, expected, "\nhubd:\n{}\netcd 3.6.16:\n{}", got.join("\n"), expected.join("\n"));
    expected
}

/// etcd's IsCreateEvent: a put that (re)creates its key never carries a
/// `prev_kv`. A txn that deletes a key with a from-key range (which etcd's
/// duplicate-key check does not see) and puts it again re-creates it in the
/// same revision, where it still existed at `mod_revision - 1` (issue 16
/// item 3: hub gave the value from before the delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prev_kv_on_a_put_that_recreates_its_key() {
    let answers = differential(|s| {
        Box::pin(async move {
            s.put("k", "old").await;
            let all = WatchCreateRequest { key: vec![0], range_end: vec![0], prev_kv: true, ..Default::default() };
            let mut w = s.watch_stream(None, all).await;
            let op = |r| RequestOp { request: Some(r) };
            let txn = TxnRequest {
                success: vec![
                    op(Request::RequestDeleteRange(DeleteRangeRequest {
                        key: "k".into(),
                        range_end: vec![0],
                        ..Default::default()
                    })),
                    op(Request::RequestPut(PutRequest { key: "k".into(), value: "new".into(), ..Default::default() })),
                ],
                ..Default::default()
            };
            let txn = s.kv.txn(txn).await.map(|_| "txn ok".to_string()).unwrap_or_else(|e| e.message().to_string());
            let mut out = vec![txn];
            out.extend(w.responses().await);
            out
        })
    })
    .await;
    assert!(answers.is_empty() || answers[0] == "txn ok", "etcd took the txn: {answers:?}");
}

/// etcd issue 18089 (fixed in 3.5.15 and 3.6): a compaction at a delete's
/// revision keeps the tombstone, so a watch from the compacted revision gets
/// the delete and then the re-creation. HashKV at exactly the compacted
/// revision is answered, not refused as compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_delete_gets_the_delete() {
    differential(|s| {
        Box::pin(async move {
            s.put("key", "v1").await;
            s.put("other", "o").await;
            let deleted = s.delete("key").await;
            s.put("key", "v2").await;
            s.compact(deleted).await;
            let mut w = s.watch_stream(None, watch("key", deleted, true)).await;
            let mut out = w.responses().await;
            let mut m = MaintenanceClient::new(s.channel.clone());
            for rev in [deleted, deleted + 1, deleted - 1] {
                out.push(match m.hash_kv(HashKvRequest { revision: rev }).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        format!("hashkv {rev}: hash {} compact {}", r.hash, r.compact_revision)
                    }
                    Err(e) => format!("hashkv {rev}: {:?} {}", e.code(), e.message()),
                });
            }
            out
        })
    })
    .await;
}

/// Responses grouped by watcher, each watcher's in the order they came: how
/// the responses of different watchers interleave on a stream is timing
/// (etcd serves a catching-up watcher every 100 ms, hub at once).
fn by_watcher(mut responses: Vec<String>) -> Vec<String> {
    let id = |r: &String| r.split("watch_id: ").nth(1).and_then(|s| s.split(',').next()?.parse::<i64>().ok());
    responses.sort_by_key(id);
    responses
}

/// A create below the compacted revision on a stream that already carries
/// watchers gets `created`, then a cancel with `compact_revision` (issue 16
/// item 4), with etcd's header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_on_a_shared_stream_is_canceled() {
    differential(|s| {
        Box::pin(async move {
            for i in 0..5 {
                s.put(&format!("k{i}"), "v").await;
            }
            s.compact(4).await;
            let mut w = s.watch_stream(None, watch("k0", 0, false)).await;
            w.create(watch("k1", 5, true)).await;
            w.create(watch("k2", 2, false)).await;
            w.create(watch("k3", 4, false)).await;
            w.create(watch("k4", 3, true)).await;
            let mut out = by_watcher(w.responses().await);
            s.put("k3", "w").await;
            out.extend(w.responses().await);
            out
        })
    })
    .await;
}

/// Start revisions at the edges of i64 neither overflow nor get other answers
/// than etcd's (issue 16 item 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_start_revisions() {
    differential(|s| {
        Box::pin(async move {
            s.put("k", "v").await;
            let mut out = Vec::new();
            for start in [i64::MIN, i64::MIN + 1, -1, i64::MAX, i64::MAX - 1] {
                let mut w = s.watch_stream(None, watch("k", start, true)).await;
                out.push(format!("start {start}"));
                out.extend(w.responses().await);
            }
            s.compact(2).await;
            for start in [i64::MIN, -1, 1] {
                let mut w = s.watch_stream(None, watch("k", start, true)).await;
                out.push(format!("compacted, start {start}"));
                out.extend(w.responses().await);
            }
            out
        })
    })
    .await;
}

/// Watch refusals under auth carry etcd's full cancel reason, the gRPC error's
/// text (issue 16 item 7): no permission, no credentials, a bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refusals_under_auth() {
    differential(|s| {
        Box::pin(async move {
            let mut auth = AuthClient::new(s.channel.clone());
            for (name, password) in [("root", "rootpw"), ("alice", "alicepw")] {
                let req = AuthUserAddRequest { name: name.into(), password: password.into(), ..Default::default() };
                auth.user_add(req).await.expect("user add");
            }
            for role in ["root", "reader"] {
                auth.role_add(AuthRoleAddRequest { name: role.into() }).await.expect("role add");
            }
            let perm = Permission { perm_type: PermType::Read as i32, key: "a".into(), range_end: "b".into() };
            let grant = AuthRoleGrantPermissionRequest { name: "reader".into(), perm: Some(perm) };
            auth.role_grant_permission(grant).await.expect("grant");
            for (user, role) in [("root", "root"), ("alice", "reader")] {
                let req = AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
                auth.user_grant_role(req).await.expect("grant role");
            }
            auth.auth_enable(AuthEnableRequest {}).await.expect("auth enable");
            let req = AuthenticateRequest { name: "alice".into(), password: "alicepw".into() };
            let token = auth.authenticate(req).await.expect("authenticate").into_inner().token;

            let mut out = Vec::new();
            for (what, token, key) in [
                ("allowed", Some(token.as_str()), "a1"),
                ("denied", Some(token.as_str()), "z"),
                ("no token", None, "a1"),
                ("bad token", Some("nosuchtoken.1"), "a1"),
            ] {
                let mut w = s.watch_stream(token, watch(key, 0, false)).await;
                out.push(what.to_string());
                out.extend(w.responses().await);
            }
            out
        })
    })
    .await;
}
