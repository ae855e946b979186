//! etcd's corruption checks against real hubd clusters: a member whose backend
//! was altered while it was stopped (every value's first byte changed, as
//! etcd's TestEtcdCorruptHash does to its bbolt file)
//! - refuses to start under `--experimental-initial-corrupt-check`, with
//!   etcd's `<id> found data inconsistency with peers`;
//! - under the leader's `--experimental-corrupt-check-time`, gets the CORRUPT
//!   alarm raised: the cluster then refuses writes with etcd's DataLoss
//!   `etcdserver: corrupt cluster` while reads still work;
//! - under the `CompactHashCheck` gate, gets CORRUPT once a compaction's hash
//!   (taken by every member as it compacts) differs from the majority's.

mod common;

use std::time::{Duration, Instant};

use common::{hubd_bin, start_cluster_with, Member};
use etcd_client::Client;
use hub_store::backend::{open_bolt, Backend, Table, WriteBatch};
use prost::Message;

async fn client(m: &Member) -> Client {
    Client::connect([m.endpoint()], None).await.expect("connect")
}

/// Changes the first byte of every stored value of a stopped member.
fn corrupt_values(m: &Member) {
    let backend = open_bolt(&m.data_dir.join("member").join(hub_store::apply::BACKEND_FILE)).expect("open the backend");
    let mut batch = WriteBatch::default();
    backend
        .scan(Table::Key, &[], None, &mut |k, v| {
            let mut kv = hub_proto::mvccpb::KeyValue::decode(v).expect("key value");
            if let Some(b) = kv.value.first_mut() {
                *b = b.wrapping_add(1);
                batch.put(Table::Key, k.to_vec(), kv.encode_to_vec());
            }
            true
        })
        .expect("scan");
    assert!(!batch.is_empty(), "nothing to corrupt");
    backend.commit(batch).expect("commit");
}

async fn fill(m: &Member) {
    let mut c = client(m).await;
    for i in 0..10 {
        c.put(format!("foo{i:05}"), format!("v{i:05}"), None).await.expect("put");
    }
}

/// The index of a member that is not the leader, and its member ID.
async fn follower(members: &[Member]) -> (usize, u64) {
    let mut c = client(&members[0]).await;
    for (i, m) in members.iter().enumerate() {
        let s = c.status().await.expect("status");
        let mut mc = client(m).await;
        let id = mc.status().await.expect("status").header().expect("header").member_id();
        if id != s.leader() {
            return (i, id);
        }
    }
    panic!("no follower");
}

/// Waits until `m` has applied `revision`.
async fn wait_for_revision(m: &Member, revision: i64) {
    let mut c = client(m).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get("x", Some(etcd_client::GetOptions::new().with_serializable())).await.expect("get").header().expect("header").revision() < revision {
        assert!(Instant::now() < deadline, "member never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fills the store through the first member and waits until every member has applied it.
async fn fill_everywhere(members: &[Member]) {
    fill(&members[0]).await;
    let revision = client(&members[0]).await.status().await.expect("status").header().expect("header").revision();
    for m in members {
        wait_for_revision(m, revision).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_check_refuses_a_corrupt_member() {
    let mut members = start_cluster_with(&hubd_bin(), 3, &[]);
    fill_everywhere(&members).await;
    let (i, id) = follower(&members).await;
    members[i].terminate();

    corrupt_values(&members[i]);
    let (status, out) = members[i].run_to_exit(&["--experimental-initial-corrupt-check"], Duration::from_secs(20));
    assert!(!status.success());
    assert!(out.contains(&format!("{id:016x} found data inconsistency with peers")), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_check_passes_a_sound_member() {
    let mut members = start_cluster_with(&hubd_bin(), 3, &["--experimental-initial-corrupt-check"]);
    fill(&members[0]).await;
    let (i, _) = follower(&members).await;
    members[i].terminate();
    // spawn() waits until it serves clients: the check passed.
    members[i].spawn();
    client(&members[i]).await.put("after", "1", None).await.expect("put");
}

/// Waits until `m`'s alarm list is CORRUPT for `id` alone.
fn wait_for_corrupt(m: &Member, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = String::from_utf8_lossy(&m.etcdctl(&["alarm", "list"]).stdout).into_owned();
        if !list.is_empty() {
            assert_eq!(list, format!("memberID:{id} alarm:CORRUPT \n"));
            return;
        }
        assert!(Instant::now() < deadline, "CORRUPT was never raised");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A 3-member cluster started with `flags` whose follower `i` (member ID
/// `id`) was stopped, had its values corrupted and was started again.
async fn cluster_with_a_corrupt_follower(flags: &[&str]) -> (Vec<Member>, usize, u64) {
    let mut members = start_cluster_with(&hubd_bin(), 3, flags);
    fill_everywhere(&members).await;
    let (i, id) = follower(&members).await;
    members[i].terminate();
    corrupt_values(&members[i]);
    members[i].spawn();
    (members, i, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_hash_check_raises_corrupt_for_the_odd_member() {
    let flags = ["--feature-gates=CompactHashCheck=true", "--compact-hash-check-time", "500ms"];
    let (members, i, id) = cluster_with_a_corrupt_follower(&flags).await;
    // Nothing checks a backend until it compacts: each member hashes what it
    // compacts away and keeps, and the leader compares those.
    let other = &members[(i + 1) % 3];
    client(other).await.compact(5, None).await.expect("compact");
    wait_for_corrupt(other, id);
    assert!(
        members.iter().any(|m| m.log_lines().iter().any(|l| l.contains("Detected compaction hash mismatch"))),
        "the leader logs etcd's line"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_check_raises_corrupt() {
    let (members, i, id) = cluster_with_a_corrupt_follower(&["--experimental-corrupt-check-time", "500ms"]).await;
    let other = &members[(i + 1) % 3];
    wait_for_corrupt(other, id);
    let mut c = client(other).await;
    match c.put("k", "v", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::DataLoss, "{s:?}");
            assert_eq!(s.message(), "etcdserver: corrupt cluster");
        }
        other => panic!("expected CORRUPT, got {other:?}"),
    }
    match c.delete("foo00000", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => assert_eq!(s.code(), tonic::Code::DataLoss, "{s:?}"),
        other => panic!("expected CORRUPT, got {other:?}"),
    }
    assert_eq!(c.get("foo00001", None).await.expect("reads still work").kvs()[0].value(), b"v00001");
}
