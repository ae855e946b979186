//! Crash points and stalls: a `failpoints` build of hubd (`HUB_FAILPOINTS`,
//! `raft/src/failpoints.rs`) pauses or fails at a named place, the test kills
//! the member there with SIGKILL (or watches it stop), restarts it, and checks
//! that it starts, holds every acknowledged write and agrees with its peers.

mod common;

use std::time::Duration;

use common::{converged, failpoints_hubd, leader, start_cluster_each, Member};
use etcd_client::{Client, GetOptions};

async fn client(m: &Member) -> Client {
    Client::connect([m.endpoint()], None).await.expect("connect")
}

fn failpoints(m: &mut Member, points: &str) {
    m.env = vec![("HUB_FAILPOINTS".into(), points.into())];
}

/// Puts `n` keys `{prefix}{i}` through `m`; all must be acknowledged.
async fn put_keys(m: &Member, prefix: &str, n: usize) {
    let mut c = client(m).await;
    for i in 0..n {
        c.put(format!("{prefix}{i:03}"), format!("v{i}"), None).await.expect("put with a quorum up");
    }
}

/// openraft purges a follower's log as soon as it has queued the install of a
/// snapshot from the leader; a kill before the new backend was durable left a
/// backend older than the log's start: the entries between were in neither.
/// (Here the leader happens to send its snapshot again, so the member would
/// still catch up: the test checks what it finds on disk when it restarts.) The
/// log is now purged only up to what the backend holds durably.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_during_a_snapshot_install_leaves_a_member_that_catches_up() {
    let bin = failpoints_hubd();
    let mut members = start_cluster_each(&bin, 3, |_| vec!["--snapshot-count".into(), "20".into()]);
    let lead = leader(&members).await;
    let down = (lead + 1) % 3;
    members[down].kill9();
    // Far past the snapshot and the entries kept behind it: the member can
    // only catch up by snapshot.
    put_keys(&members[lead], "s", 150).await;
    failpoints(&mut members[down], "snapshot-install-pause=4000");
    let _ = tokio::task::block_in_place(|| members[down].start_process());
    assert!(
        tokio::task::block_in_place(|| members[down].wait_for_log("failpoint: pausing", Duration::from_secs(20))),
        "the member never started installing the leader's snapshot"
    );
    // openraft has queued the log's purge by now; it may not have happened.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    members[down].kill9();
    failpoints(&mut members[down], "");
    tokio::task::block_in_place(|| members[down].spawn());
    // A field of the first JSON log line with this message.
    let logged = |msg: &str, field: &str| -> Option<u64> {
        members[down].log_lines().iter().find_map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).ok()?;
            (line["msg"] == msg).then(|| line[field].as_u64())?
        })
    };
    let applied = logged("restore consistentIndex", "index").expect("hubd logs its backend's applied index");
    let purged = logged("wal: opened", "purged-index").unwrap_or(0);
    assert!(purged <= applied, "the log was purged up to {purged}, past what the backend applied ({applied})");
    put_keys(&members[lead], "t", 5).await;
    let kvs = converged(&members).await;
    assert_eq!(kvs.len(), 155);
}

/// A follower's backend is made durable after the fact; after a restart it
/// served reads (and headers) from what its backend held until the leader's
/// commit index reached it. It now re-applies its log up to the committed index
/// it saved before it serves anything, as etcd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_member_answers_no_older_state_than_it_did() {
    let bin = failpoints_hubd();
    let mut members = start_cluster_each(&bin, 3, |_| Vec::new());
    let lead = leader(&members).await;
    let follower = (lead + 1) % 3;
    // Its backend stays as it was at start: everything it serves is in the log only.
    failpoints(&mut members[follower], "backend-sync-skip");
    members[follower].kill9();
    tokio::task::block_in_place(|| members[follower].spawn());
    put_keys(&members[lead], "k", 50).await;
    let acknowledged = {
        let mut c = client(&members[follower]).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = c.get("k049", Some(GetOptions::new().with_serializable())).await.expect("serializable get");
            if !r.kvs().is_empty() {
                break r.header().map(|h| h.revision()).unwrap_or_default();
            }
            assert!(std::time::Instant::now() < deadline, "the follower never applied the puts");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    members[follower].kill9();
    // Back, with the leader's commits reaching it late.
    failpoints(&mut members[follower], "apply-pause=5000");
    tokio::task::block_in_place(|| members[follower].spawn());
    let mut c = client(&members[follower]).await;
    let r = c.get("k049", Some(GetOptions::new().with_serializable())).await.expect("serializable get");
    let revision = r.header().map(|h| h.revision()).unwrap_or_default();
    assert!(revision >= acknowledged, "answered at revision {revision} after answering at {acknowledged}");
    assert_eq!(r.kvs().first().map(|kv| kv.value()), Some(&b"v49"[..]), "a write it had served is missing");
}

/// A backend fsync that fails leaves pages whose write-back failed: the member
/// stops (exits, as etcd does) instead of logging it and serving them; it comes
/// back without the fault and holds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_backend_sync_stops_the_member() {
    let bin = failpoints_hubd();
    let mut members = start_cluster_each(&bin, 3, |_| Vec::new());
    let lead = leader(&members).await;
    let faulty = (lead + 1) % 3;
    failpoints(&mut members[faulty], "backend-sync-error=5");
    members[faulty].kill9();
    tokio::task::block_in_place(|| members[faulty].spawn());
    put_keys(&members[lead], "k", 100).await;
    // The backend syncs at most every 100 ms: keep the member applying until
    // its fifth sync has failed.
    let mut c = client(&members[lead]).await;
    let mut exited = None;
    for i in 0..200 {
        exited = tokio::task::block_in_place(|| members[faulty].wait_for_exit(Duration::from_millis(100)));
        if exited.is_some() {
            break;
        }
        c.put(format!("more{i:03}"), "v", None).await.expect("put with a quorum up");
    }
    let status = exited.expect("the member kept running after its backend sync failed");
    assert!(!status.success(), "exit status {status}");
    failpoints(&mut members[faulty], "");
    tokio::task::block_in_place(|| members[faulty].spawn());
    let kvs = converged(&members).await;
    assert_eq!(kvs.keys().filter(|k| k.starts_with(b"k")).count(), 100);
}
