//! Pins what survives a restart of a member: every acknowledged put survives
//! SIGKILL with gap-free revisions, on one member and on a whole cluster
//! killed at once under load, again and again; SIGTERM exits cleanly keeping keys (with
//! their revisions and versions) and leases; the current and compacted
//! revisions are kept across a restart; a db older than the purged log is
//! refused, as etcd refuses it.
//!
//! `HUB_TEST_REFERENCE=etcd` runs the same tests against /usr/bin/etcd (where
//! SIGTERM ends the process by the re-raised signal rather than exit code 0).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{converged, etcd_bin, hubd_bin, leader, spawn_all, start_cluster, Member};
use etcd_client::{Client, ConnectOptions, Error, GetOptions, LeaseTimeToLiveOptions, PutOptions};
use tonic::Code;

fn reference() -> bool {
    std::env::var("HUB_TEST_REFERENCE").as_deref() == Ok("etcd")
}

/// The binary under test: hubd, or etcd itself when HUB_TEST_REFERENCE=etcd.
fn bin() -> PathBuf {
    if reference() {
        etcd_bin()
    } else {
        hubd_bin()
    }
}

async fn connect(m: &Member) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2));
    Client::connect([m.endpoint()], Some(opts)).await.expect("connect")
}

/// Restarts the member on its data directory (blocking until it serves).
fn restart(m: &mut Member) {
    tokio::task::block_in_place(|| m.spawn());
}

/// SIGTERM; hubd must exit with status 0 (etcd re-raises the signal instead).
fn terminate(m: &mut Member) {
    let status = tokio::task::block_in_place(|| m.terminate()).expect("member was running");
    if reference() {
        use std::os::unix::process::ExitStatusExt;
        assert!(status.success() || status.signal() == Some(15), "etcd exit: {status:?}");
    } else {
        assert!(status.success(), "hubd did not exit cleanly on SIGTERM: {status:?}");
    }
}

/// (key, value, create_revision, mod_revision, version, lease) of every key.
async fn dump(c: &mut Client) -> (i64, Vec<(String, String, i64, i64, i64, i64)>) {
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await.expect("range all keys");
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect();
    (r.header().expect("header").revision(), kvs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_keeps_every_acknowledged_put() {
    let mut m = Member::start(&bin());
    let client = connect(&m).await;
    let deadline = Instant::now() + Duration::from_millis(1500);

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = false;
                for n in 0.. {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let (k, v) = (format!("w{w}/{n:06}"), format!("value-{w}-{n}"));
                    // The client's own timeout does not cover a request queued while
                    // no connection is up, hence this one.
                    match tokio::time::timeout(Duration::from_secs(2), c.put(k.clone(), v.clone(), None)).await {
                        Ok(Ok(_)) => acked.push((k, v)),
                        Ok(Err(_)) | Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                (acked, failed)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    m.kill9();

    let mut acked = BTreeMap::new();
    let mut writers_that_failed = 0;
    for w in writers {
        let (a, failed) = w.await.unwrap();
        writers_that_failed += failed as usize;
        acked.extend(a);
    }
    drop(client);
    assert!(acked.len() >= 20, "too few puts acknowledged before the kill: {}", acked.len());
    assert_eq!(writers_that_failed, 4, "every writer sees the member die");

    restart(&mut m);
    let mut c = connect(&m).await;
    let (revision, kvs) = dump(&mut c).await;
    eprintln!("{} puts acknowledged before SIGKILL, {} keys after restart", acked.len(), kvs.len());
    let present: BTreeMap<&str, &str> = kvs.iter().map(|kv| (kv.0.as_str(), kv.1.as_str())).collect();
    let lost: Vec<_> = acked.iter().filter(|(k, v)| present.get(k.as_str()) != Some(&v.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged puts lost after SIGKILL, e.g. {:?}", lost.len(), acked.len(), &lost[..lost.len().min(5)]);

    // Each put created a distinct key in its own revision, nothing else wrote:
    // the keys' revisions are exactly 2..=revision, with no gap and no repeat.
    let mut created: Vec<i64> = kvs.iter().map(|kv| kv.2).collect();
    created.sort();
    assert!(kvs.iter().all(|kv| kv.2 == kv.3 && kv.4 == 1 && kv.5 == 0), "every key was put once");
    assert_eq!(kvs.len() as i64, revision - 1, "keys vs current revision {revision}");
    assert_eq!(created, (2..=revision).collect::<Vec<_>>());
    // At most the few in-flight puts (one per writer) were applied but not acknowledged.
    assert!(kvs.len() <= acked.len() + 4, "{} keys, {} acknowledged", kvs.len(), acked.len());

    // The restarted member goes on from that revision.
    let r = c.put("after", "restart", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), revision + 1);
}

/// The raft term the cluster's leader reports.
async fn leader_term(members: &[Member]) -> u64 {
    let lead = leader(members).await;
    let mut c = connect(&members[lead]).await;
    let status = c.status().await.expect("status of the leader");
    status.header().map(|h| h.raft_term()).unwrap_or_default()
}

/// openraft resumed leading in the same term when a leader restarted; a
/// leader replicates before its own flush, so a kill could take the tail it
/// sent but never wrote, and the entries it appended after the restart reused
/// (term, index) pairs its followers held with other contents: the members'
/// data diverged (the test below found it about one run in eight). A member
/// now starts as a follower, as etcd's do: a restart elects in a new term.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_elects_the_leader_in_a_new_term() {
    for size in [1, 3] {
        let mut members = start_cluster(&bin(), size);
        let mut c = connect(&members[leader(&members).await]).await;
        c.put("k", "v", None).await.expect("put");
        let before = leader_term(&members).await;
        for m in members.iter_mut() {
            m.kill9();
        }
        spawn_all(&mut members);
        let after = leader_term(&members).await;
        assert!(after > before, "{size} member(s): leader at term {after} after a restart, as before it");
    }
}

/// A 3-member cluster under put load from clients on every member (writes
/// reach the leader batched: forwarded together, appended together, applied
/// into the backend's write buffer) is killed with SIGKILL, every member at
/// once, three times over: after each restart every acknowledged put is there,
/// on every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_every_member_under_load_keeps_every_acknowledged_put() {
    let mut members = start_cluster(&bin(), 3);
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..3 {
        let endpoints: Vec<String> = members.iter().map(Member::endpoint).collect();
        let deadline = Instant::now() + Duration::from_secs(3);
        let writers: Vec<_> = (0..24)
            .map(|w| {
                let endpoint = endpoints[w % endpoints.len()].clone();
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let Ok(mut c) = Client::connect([endpoint], None).await else { return acked };
                    for n in 0.. {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let (k, v) = (format!("r{round}/w{w:02}/{n:06}"), format!("value-{round}-{w}-{n}"));
                        match tokio::time::timeout(Duration::from_secs(2), c.put(k.clone(), v.clone(), None)).await {
                            Ok(Ok(_)) => acked.push((k, v)),
                            Ok(Err(_)) | Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        // Under load for a while, then every member dies at the same instant.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for m in members.iter_mut() {
            m.kill9();
        }
        let before = acked.len();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        assert!(acked.len() >= before + 100, "round {round}: too few puts acknowledged: {}", acked.len() - before);

        spawn_all(&mut members);
        let held = converged(&members).await;
        let lost: Vec<_> = acked
            .iter()
            .filter(|(k, v)| held.get(k.as_bytes()).map(Vec::as_slice) != Some(v.as_bytes()))
            .collect();
        eprintln!("round {round}: {} puts acknowledged so far, {} keys after the restart", acked.len(), held.len());
        assert!(lost.is_empty(), "round {round}: {} of {} acknowledged puts lost, e.g. {:?}", lost.len(), acked.len(), &lost[..lost.len().min(5)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_restart_keeps_data() {
    let mut m = Member::start(&bin());
    let mut c = connect(&m).await;
    c.put("k1", "a", None).await.unwrap(); // 2
    c.put("k2", "b", None).await.unwrap(); // 3
    c.put("k1", "c", None).await.unwrap(); // 4
    c.delete("k2", None).await.unwrap(); // 5
    c.put("k3", "d", None).await.unwrap(); // 6
    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.put("leased", "e", Some(PutOptions::new().with_lease(lease))).await.unwrap(); // 7
    let before = dump(&mut c).await;
    assert_eq!(before.0, 7);
    assert_eq!(
        before.1,
        [
            ("k1".to_string(), "c".to_string(), 2, 4, 2, 0),
            ("k3".to_string(), "d".to_string(), 6, 6, 1, 0),
            ("leased".to_string(), "e".to_string(), 7, 7, 1, lease),
        ]
    );
    drop(c);

    terminate(&mut m);
    restart(&mut m);

    let mut c = connect(&m).await;
    assert_eq!(dump(&mut c).await, before, "keys, revisions and versions after SIGTERM and restart");
    // History too: k2 at revision 3.
    let r = c.get("k2", Some(GetOptions::new().with_revision(3))).await.unwrap();
    assert_eq!(r.kvs()[0].value(), b"b");

    let t = c.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(t.granted_ttl(), 60);
    assert!(t.ttl() > 50, "lease TTL after restart: {}", t.ttl());
    assert_eq!(t.keys(), [b"leased".to_vec()]);
    let ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(ids, [lease]);

    // Revoking the restored lease still deletes its key.
    c.lease_revoke(lease).await.unwrap();
    assert_eq!(c.get("leased", None).await.unwrap().count(), 0);
    assert_eq!(dump(&mut c).await.0, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_revision_and_compaction() {
    let compacted = |r: Result<etcd_client::GetResponse, Error>| match r {
        Err(Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
            assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        }
        other => panic!("expected the compacted error, got {other:?}"),
    };

    let mut m = Member::start(&bin());
    let mut c = connect(&m).await;
    for i in 0..5 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // revs 2..=6
    }
    c.compact(4, None).await.unwrap();
    compacted(c.get("k", Some(GetOptions::new().with_revision(3))).await);
    drop(c);

    // Once after a clean stop, once after SIGKILL.
    for how in ["SIGTERM", "SIGKILL"] {
        if how == "SIGTERM" {
            terminate(&mut m);
        } else {
            tokio::task::block_in_place(|| m.kill9());
        }
        restart(&mut m);
        let mut c = connect(&m).await;

        let r = c.get("k", None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), 6, "current revision after {how}");
        assert_eq!(r.kvs()[0].value(), b"v4");
        assert_eq!((r.kvs()[0].create_revision(), r.kvs()[0].mod_revision(), r.kvs()[0].version()), (2, 6, 5));

        compacted(c.get("k", Some(GetOptions::new().with_revision(3))).await);
        compacted(c.get("k", Some(GetOptions::new().with_revision(2))).await);
        let r = c.get("k", Some(GetOptions::new().with_revision(4))).await.unwrap();
        assert_eq!(r.kvs()[0].value(), b"v2", "revision 4 itself is kept after {how}");
        let r = c.get("k", Some(GetOptions::new().with_revision(5))).await.unwrap();
        assert_eq!(r.kvs()[0].value(), b"v3");
        match c.compact(4, None).await {
            Err(Error::GRpcStatus(s)) => {
                assert_eq!(s.code(), Code::OutOfRange);
                assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
            }
            other => panic!("compacting again at 4 after {how}: {other:?}"),
        }
    }
}

/// A db file copied back from before the newest snapshot cannot be brought up
/// to date (the log it needs is purged): the member refuses to start, in
/// etcd 3.6's words (TestBreakConsistentIndexNewerThanSnapshot), as etcd does.
#[test]
fn a_backend_older_than_the_purged_log_refuses_to_start_as_etcd() {
    let mut bins = vec![hubd_bin()];
    bins.extend(common::etcd36_bin());
    for bin in bins {
        let mut m = Member::start_with(&bin, &["--snapshot-count", "50"]);
        m.terminate();
        let db = m.data_dir.join("member/snap/db");
        let old = m.data_dir.with_file_name("old-db");
        std::fs::copy(&db, &old).unwrap();
        m.spawn();
        for i in 0..120 {
            assert!(m.etcdctl(&["put", &format!("k{i}"), "v"]).status.success(), "put {i} on {bin:?}");
        }
        assert!(m.wait_for_log("saved snapshot", Duration::from_secs(10)), "no snapshot on {bin:?}");
        m.terminate();
        std::fs::copy(&old, &db).unwrap();
        let (status, printed) = m.run_to_exit(&[], Duration::from_secs(20));
        assert!(!status.success(), "{bin:?} started on an old db:\n{printed}");
        assert!(
            printed.contains("failed to find database snapshot file (snap: snapshot file doesn't exist)"),
            "{bin:?} printed:\n{printed}"
        );
    }
}
