//! Auth tokens on real hubd processes: simple tokens replicated to every
//! member, a token of a deleted user, tampered and expired JWTs, and users
//! and roles that survive a restart, watches refused at creation.

mod common;

use common::{hubd_bin, start_cluster_with, Member};
use hub_proto::etcdserverpb::auth_client::AuthClient;
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::watch_client::WatchClient;
use hub_proto::etcdserverpb::watch_request::RequestUnion;
use hub_proto::etcdserverpb::{AuthenticateRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest};
use tonic::transport::Channel;
use tonic::Code;

fn setup(m: &Member) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["auth", "enable"],
        &["--user=root:rootpw", "role", "add", "rw"],
        &["--user=root:rootpw", "role", "grant-permission", "rw", "readwrite", "k/", "--prefix"],
        &["--user=root:rootpw", "user", "add", "alice:alicepw"],
        &["--user=root:rootpw", "user", "grant-role", "alice", "rw"],
    ] {
        let out = m.etcdctl(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn channel(m: &Member) -> Channel {
    Channel::from_shared(format!("http://{}", m.endpoint())).expect("uri").connect().await.expect("connect")
}

async fn authenticate(m: &Member, name: &str, password: &str) -> Result<String, tonic::Status> {
    let req = AuthenticateRequest { name: name.into(), password: password.into() };
    Ok(AuthClient::new(channel(m).await).authenticate(req).await?.into_inner().token)
}

/// A put of `key` with `token`: Ok, or the status.
async fn put_with(m: &Member, token: &str, key: &str) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() });
    req.metadata_mut().insert("token", token.parse().expect("ascii token"));
    KvClient::new(channel(m).await).put(req).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn simple_tokens_work_on_every_member_and_die_with_their_user() {
    let members = start_cluster_with(&hubd_bin(), 3, &["--bcrypt-cost", "4"]);
    setup(&members[0]);

    // Authenticated on one member, used on the others: the token is a raft entry.
    let token = authenticate(&members[1], "alice", "alicepw").await.expect("authenticate");
    for m in &members {
        put_with(m, &token, "k/1").await.expect("alice writes k/1 on every member");
        let denied = put_with(m, &token, "other").await.expect_err("outside k/");
        assert_eq!((denied.code(), denied.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
    }
    let bad = authenticate(&members[2], "alice", "wrong").await.expect_err("wrong password");
    assert_eq!(
        (bad.code(), bad.message()),
        (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password")
    );

    // A permission change: the same token is checked against the new state.
    let out = members[0].etcdctl(&["--user=root:rootpw", "role", "revoke-permission", "rw", "k/", "--prefix"]);
    assert!(out.status.success());
    // Once members[2] applied the revoke (a linearizable read there waits for
    // it); before, its proposal names an auth revision the leader has moved
    // past, which etcd refuses as old too.
    assert!(members[2].etcdctl(&["--user=root:rootpw", "get", "k/1"]).status.success());
    let denied = put_with(&members[2], &token, "k/1").await.expect_err("permission revoked");
    assert_eq!(denied.message(), "etcdserver: permission denied");

    // The user deleted: its token is gone on every member.
    let out = members[0].etcdctl(&["--user=root:rootpw", "user", "delete", "alice"]);
    assert!(out.status.success());
    for m in &members {
        // A linearizable read: this member has applied the deletion too (a
        // member still behind refuses the put at apply time instead, with
        // "revision of auth store is old").
        assert!(m.etcdctl(&["--user=root:rootpw", "get", "k/1"]).status.success());
        let gone = put_with(m, &token, "k/1").await.expect_err("deleted user");
        assert_eq!((gone.code(), gone.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
    }
    let forged = put_with(&members[0], "notatoken.12", "k/1").await.expect_err("unknown token");
    assert_eq!(forged.message(), "etcdserver: invalid auth token");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_tokens_are_verified_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, b"a secret only the members know").expect("write key");
    let spec = format!("jwt,priv-key={},sign-method=HS256,ttl=2s", secret.display());
    let m = Member::start_with(&hubd_bin(), &["--bcrypt-cost", "4", "--auth-token", &spec]);
    setup(&m);

    let token = authenticate(&m, "alice", "alicepw").await.expect("authenticate");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    put_with(&m, &token, "k/1").await.expect("valid JWT");

    // Any change to the token breaks its signature.
    let mut tampered = token.clone().into_bytes();
    let at = token.find('.').expect("header.") + 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let err = put_with(&m, &String::from_utf8(tampered).expect("ascii"), "k/1").await.expect_err("tampered");
    assert_eq!((err.code(), err.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));

    // A JWT issued before a permission change carries the old auth revision.
    let out = m.etcdctl(&["--user=root:rootpw", "role", "grant-permission", "rw", "read", "x"]);
    assert!(out.status.success());
    let err = put_with(&m, &token, "k/1").await.expect_err("stale revision");
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "etcdserver: revision of auth store is old"));

    // Past its ttl the token is refused.
    let fresh = authenticate(&m, "alice", "alicepw").await.expect("authenticate again");
    put_with(&m, &fresh, "k/2").await.expect("fresh JWT");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let err = put_with(&m, &fresh, "k/2").await.expect_err("expired");
    assert_eq!(err.message(), "etcdserver: invalid auth token");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_roles_and_the_enabled_flag_survive_a_restart() {
    let mut m = Member::start_with(&hubd_bin(), &["--bcrypt-cost", "4"]);
    setup(&m);
    m.terminate();
    m.spawn();
    let token = authenticate(&m, "alice", "alicepw").await.expect("alice still exists");
    put_with(&m, &token, "k/1").await.expect("her role still holds k/");
    let mut req = tonic::Request::new(RangeRequest { key: b"k/1".to_vec(), ..Default::default() });
    req.metadata_mut().insert("token", token.parse().expect("ascii"));
    KvClient::new(channel(&m).await).range(req).await.expect("read k/1");
    let anonymous = KvClient::new(channel(&m).await).range(RangeRequest { key: b"k/1".to_vec(), ..Default::default() }).await;
    assert_eq!(anonymous.expect_err("auth still enabled").message(), "etcdserver: user name is empty");

    // A watch needs read permission on its whole range when it is created.
    // etcd 3.6 gives the refusal as Go's error text.
    let refused_text = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
    for (key, range_end, refused) in [("k/", "k0", ""), ("k/", "\0", refused_text), ("x", "", refused_text)] {
        let create = WatchCreateRequest { key: key.into(), range_end: range_end.into(), ..Default::default() };
        let requests = tokio_stream::iter([WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }]);
        let mut req = tonic::Request::new(requests);
        req.metadata_mut().insert("token", token.parse().expect("ascii"));
        let mut stream = WatchClient::new(channel(&m).await).watch(req).await.expect("watch").into_inner();
        let created = stream.message().await.expect("response").expect("created");
        assert!(created.created);
        assert_eq!((created.canceled, created.cancel_reason.as_str()), (!refused.is_empty(), refused), "{key}..{range_end}");
    }
}
