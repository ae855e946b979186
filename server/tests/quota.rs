//! The backend quota, alarms and defragmentation against real hubd processes:
//! - a small `--quota-backend-bytes` fills up: the write that does not fit is
//!   refused with etcd's ResourceExhausted `etcdserver: mvcc: database space
//!   exceeded`, NOSPACE is raised and listed (etcdctl's output), /health says
//!   false; reads and deletes still work, puts, txns with puts and lease grants
//!   do not; compact + defrag + disarm, and writes work again;
//! - the alarm survives a restart;
//! - raised on one member, it holds on every member of a cluster;
//! - every auth check stays in force meanwhile (deletes, disarm, defrag);
//! - defrag gives the space of deleted data back: Status's dbSize drops;
//!   so does a start past `--bootstrap-defrag-threshold-megabytes`.

mod common;

use std::time::{Duration, Instant};

use common::{curl_get, hubd_bin, start_cluster_with, Member};
use etcd_client::{Client, Compare, CompareOp, TxnOp, Txn};
use tonic::Code;

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

async fn client(m: &Member) -> Client {
    Client::connect([m.endpoint()], None).await.expect("connect")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_nospace<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>) {
    match r {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
            assert_eq!(s.message(), NOSPACE);
        }
        other => panic!("expected NOSPACE, got {other:?}"),
    }
}

/// Puts 4 KiB values under one key until the quota refuses one.
async fn fill(c: &mut Client) -> usize {
    let value = vec![b'b'; 4096];
    for i in 0..10_000 {
        match c.put("fill", value.clone(), None).await {
            Ok(_) => {}
            Err(e) => {
                assert_nospace::<()>(Err(e));
                return i;
            }
        }
    }
    panic!("the quota never filled");
}

async fn status(c: &mut Client) -> (i64, i64, Vec<String>) {
    let s = c.status().await.expect("status");
    (s.db_size(), s.raft_used_db_size(), s.errors().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn nospace_refuses_growth_until_compacted_defragmented_and_disarmed() {
    let mut m = Member::start_with(&hubd_bin(), &["--quota-backend-bytes", "262144"]);
    let mut c = client(&m).await;
    c.put("small", "a", None).await.expect("a small put fits");
    let lease = c.lease_grant(60, None).await.expect("lease before the alarm").id();
    let puts = fill(&mut c).await;
    assert!(puts > 10, "only {puts} puts fitted");

    // NOSPACE is raised, by this member, as etcdctl lists it.
    let list = stdout(&m.etcdctl(&["alarm", "list"]));
    let members = c.member_list().await.expect("members");
    let id = members.members()[0].id();
    assert_eq!(list, format!("memberID:{id} alarm:NOSPACE \n"));
    let (_, _, errors) = status(&mut c).await;
    assert_eq!(errors, vec![format!("memberID:{id} alarm:NOSPACE ")]);
    // 503 with Go's http.Error text, unless the alarm is excluded (as etcd).
    let health = reqwest_health(&m).await;
    assert_eq!(health, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n");
    let excluded = curl_get(&format!("http://{}/health?exclude=NOSPACE", m.endpoint()));
    assert_eq!(excluded, r#"{"health":"true","reason":""}"#);

    // What grows the store is refused, however small.
    assert_nospace(c.put("tiny", "x", None).await);
    assert_nospace(c.lease_grant(60, None).await);
    let txn = Txn::new().when([Compare::version("small", CompareOp::Greater, 100)]).or_else([TxnOp::put("t", "1", None)]);
    assert_nospace(c.txn(txn).await);
    // Reads, deletes, read-only txns, lease revokes and compaction still work.
    assert_eq!(c.get("small", None).await.expect("get").kvs()[0].value(), b"a");
    let ro = Txn::new().when([]).and_then([TxnOp::get("small", None)]);
    assert!(c.txn(ro).await.expect("read-only txn").succeeded());
    c.delete("small", None).await.expect("delete");
    let del = Txn::new().when([]).and_then([TxnOp::delete("fill", None)]);
    c.txn(del).await.expect("txn with a delete only");
    c.lease_revoke(lease).await.expect("lease revoke");
    let rev = c.status().await.expect("status").header().expect("header").revision();
    c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compact");

    // The alarm outlives a restart.
    m.terminate();
    m.spawn();
    let mut c = client(&m).await;
    assert_nospace(c.put("tiny", "x", None).await);
    assert_eq!(stdout(&m.etcdctl(&["alarm", "list"])), format!("memberID:{id} alarm:NOSPACE \n"));

    let (size_before, _, _) = status(&mut c).await;
    let out = m.etcdctl(&["defrag"]);
    assert!(stdout(&out).starts_with("Finished defragmenting etcd member["), "{out:?}");
    let (size_after, in_use, _) = status(&mut c).await;
    assert!(size_after < size_before, "defrag left dbSize at {size_after} (was {size_before})");
    assert!(in_use <= size_after);

    // Disarmed, writes fit again.
    assert_eq!(stdout(&m.etcdctl(&["alarm", "disarm"])), format!("memberID:{id} alarm:NOSPACE \n"));
    assert_eq!(stdout(&m.etcdctl(&["alarm", "list"])), "");
    c.put("after", "a", None).await.expect("a put after disarming");
    c.lease_grant(60, None).await.expect("a lease after disarming");
    assert_eq!(reqwest_health(&m).await, r#"{"health":"true","reason":""}"#);
}

/// `/health` on the client port.
async fn reqwest_health(m: &Member) -> String {
    curl_get(&format!("http://{}/health", m.endpoint()))
}

#[tokio::test(flavor = "multi_thread")]
async fn nospace_holds_on_every_member() {
    let members = start_cluster_with(&hubd_bin(), 3, &["--quota-backend-bytes", "262144"]);
    let mut first = client(&members[0]).await;
    fill(&mut first).await;
    for m in &members[1..] {
        let mut c = client(m).await;
        // Applied on every member through raft: wait for this one to have it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.put("other", "x", None).await {
                Err(e) => {
                    assert_nospace::<()>(Err(e));
                    break;
                }
                Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(_) => panic!("member {} still takes puts", m.name),
            }
        }
        c.get("fill", None).await.expect("reads work on every member");
    }
    // Space made and the alarm disarmed from another member: every member
    // takes writes again.
    first.delete("fill", None).await.expect("delete");
    let rev = first.status().await.expect("status").header().expect("header").revision();
    first.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compact");
    let out = members[2].etcdctl(&["defrag", "--cluster"]);
    assert_eq!(stdout(&out).matches("Finished defragmenting etcd member").count(), 3, "{out:?}");
    let out = members[2].etcdctl(&["alarm", "disarm"]);
    assert!(stdout(&out).contains("alarm:NOSPACE"), "{out:?}");
    for m in &members {
        client(m).await.put("again", "x", None).await.expect("a put after disarming");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn defrag_gives_deleted_space_back() {
    let m = Member::start(&hubd_bin());
    let mut c = client(&m).await;
    let value = vec![b'v'; 16 * 1024];
    for i in 0..200 {
        c.put(format!("k{i:04}"), value.clone(), None).await.expect("put");
    }
    // The file holds the writes once the backend's batch is committed (at
    // most 100 ms later, as etcd's batch interval).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (full, full_in_use) = loop {
        let (full, in_use, _) = status(&mut c).await;
        if full >= 3 * 1024 * 1024 || Instant::now() > deadline {
            break (full, in_use);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(full >= 3 * 1024 * 1024, "dbSize {full} for 3 MiB of values");
    assert!(full_in_use <= full);
    c.delete("k", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    let rev = c.status().await.expect("status").header().expect("header").revision();
    c.compact(rev, None).await.expect("compact");
    // Compaction frees pages inside the file; defrag gives them back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, in_use, _) = status(&mut c).await;
        if in_use < full_in_use / 4 {
            break;
        }
        assert!(Instant::now() < deadline, "in use stayed at {in_use} of {full_in_use}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.defragment().await.expect("defragment");
    let (size, in_use, _) = status(&mut c).await;
    assert!(size < full / 4, "dbSize {size} after defrag (was {full})");
    assert!(in_use <= size);
    // Still serving, and the metrics follow.
    c.put("k", "after", None).await.expect("put after defrag");
    let metrics = curl_get(&format!("http://{}/metrics", m.endpoint()));
    let gauge = |name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics")) as i64
    };
    assert!(gauge("etcd_mvcc_db_total_size_in_bytes ") < full / 4);
    assert!(gauge("etcd_mvcc_db_total_size_in_use_in_bytes ") <= gauge("etcd_mvcc_db_total_size_in_bytes "));
}

/// While NOSPACE is raised every auth check stays in force: a user may not
/// delete or disarm what its role does not allow (etcd 3.4's capped applier
/// dropped the auth applier; hub authorizes first, always).
#[tokio::test(flavor = "multi_thread")]
async fn auth_stays_in_force_under_nospace() {
    let m = Member::start_with(&hubd_bin(), &["--quota-backend-bytes", "262144"]);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "fill"],
        &["user", "grant-role", "alice", "reader"],
        &["auth", "enable"],
    ] {
        let out = m.etcdctl(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let options = etcd_client::ConnectOptions::new().with_user("root", "rootpw");
    let mut root = Client::connect([m.endpoint()], Some(options)).await.expect("connect");
    fill(&mut root).await;

    let alice = |args: &[&str]| {
        let mut all = vec!["--user", "alice:alicepw"];
        all.extend_from_slice(args);
        m.etcdctl(&all)
    };
    assert!(stdout(&alice(&["get", "fill", "--print-value-only"])).starts_with("bbbb"), "a permitted read works");
    // A put is refused by the quota before anything else, as in etcd.
    assert!(!alice(&["put", "fill", "x"]).status.success());
    for args in [&["del", "fill"][..], &["alarm", "disarm"]] {
        let out = alice(args);
        assert!(!out.status.success(), "{args:?} was allowed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("permission denied"), "{args:?}: {stderr}");
    }
    let nobody = m.etcdctl(&["alarm", "disarm"]);
    assert!(!nobody.status.success(), "an unauthenticated disarm was allowed");
    let root_list = m.etcdctl(&["--user", "root:rootpw", "alarm", "list"]);
    assert!(stdout(&root_list).contains("alarm:NOSPACE"), "{root_list:?}");
    root.delete("fill", None).await.expect("root deletes");
    let rev = root.status().await.expect("status").header().expect("header").revision();
    root.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compact");
    assert!(!alice(&["defrag"]).status.success(), "defrag is the root's");
    root.defragment().await.expect("defragment");
    let out = m.etcdctl(&["--user", "root:rootpw", "alarm", "disarm"]);
    assert!(stdout(&out).contains("alarm:NOSPACE"), "{out:?}");
    root.put("after", "1", None).await.expect("a put after disarming");
}

/// `--bootstrap-defrag-threshold-megabytes` (etcd 3.6): a member
/// defragments its backend at start when that frees the threshold, and says
/// it skips otherwise, in etcd's words.
#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_defrag_gives_space_back_past_the_threshold() {
    let mut m = Member::start_with(&hubd_bin(), &["--bootstrap-defrag-threshold-megabytes", "1"]);
    assert!(m.wait_for_log("Skipping defragmentation", Duration::from_secs(5)), "nothing to free at first");
    let mut c = client(&m).await;
    let value = vec![b'v'; 16 * 1024];
    for i in 0..200 {
        c.put(format!("k{i:04}"), value.clone(), None).await.expect("put");
    }
    c.delete("k", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    let rev = c.status().await.expect("status").header().expect("header").revision();
    c.compact(rev, None).await.expect("compact");
    // Until the compaction's pages are free in the file.
    let deadline = Instant::now() + Duration::from_secs(5);
    let full = loop {
        let (size, in_use, _) = status(&mut c).await;
        if size - in_use >= 2 * 1024 * 1024 {
            break size;
        }
        assert!(Instant::now() < deadline, "{in_use} of {size} still in use");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(c);
    m.terminate();
    m.spawn();
    assert!(!m.log_lines().iter().any(|l| l.contains("Skipping defragmentation")), "{:?}", m.log_lines());
    let (size, _, _) = status(&mut client(&m).await).await;
    assert!(size < full / 4, "dbSize {size} after a start past the threshold (was {full})");
}
