//! Three real hubd processes as one raft cluster: writes through any member,
//! linearizable reads everywhere, and the leader killed with SIGKILL under a
//! write load losing no acknowledged write, after which all members converge.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{converged, free_port, hubd_bin, initial_cluster, joining_member, leader, spawn_all, start_cluster, start_cluster_with, Member};
use etcd_client::{Client, GetOptions};

async fn client(members: &[&Member]) -> Client {
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint()).collect();
    Client::connect(endpoints, None).await.expect("connect")
}

/// Sends `sig` (STOP, CONT, ...) to each process.
fn signal(pids: &[u32], sig: &str) {
    for pid in pids {
        let _ = std::process::Command::new("kill").args([format!("-{sig}"), pid.to_string()]).status();
    }
}

/// A linearizable read on the leader while both followers are paused waits
/// for them, as etcd's ReadIndex does, instead of failing with "leader changed"
/// after one unanswered heartbeat round (found by hub-chaos on a loaded host).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_read_waits_out_paused_followers() {
    let members = start_cluster(&hubd_bin(), 3);
    let l = leader(&members).await;
    let mut c = client(&[&members[l]]).await;
    c.put("k", "v", None).await.expect("put");
    let followers: Vec<u32> = members.iter().enumerate().filter(|(i, _)| *i != l).filter_map(|(_, m)| m.pid()).collect();
    signal(&followers, "STOP");
    // Shorter than an election timeout: the leader stays the leader.
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        signal(&followers, "CONT");
    });
    let got = c.get("k", None).await;
    let _ = resume.join();
    let got = got.expect("the read waits for the paused quorum");
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_reads_through_every_member() {
    let members = start_cluster(&hubd_bin(), 3);
    for (i, m) in members.iter().enumerate() {
        let mut c = client(&[m]).await;
        c.put(format!("k{i}"), format!("v{i}"), None).await.expect("put through a member");
    }
    for m in &members {
        let mut c = client(&[m]).await;
        let resp = c.get("k", Some(GetOptions::new().with_prefix())).await.expect("linearizable get");
        assert_eq!(resp.kvs().len(), 3, "every member sees every write at once");
        assert_eq!(resp.header().map(|h| h.revision()), Some(4));
    }
    let mut c = client(&[&members[0]]).await;
    let list = c.member_list().await.expect("member list");
    assert_eq!(list.members().len(), 3);
    assert!(list.members().iter().all(|m| !m.client_urls().is_empty()), "every member published its client URLs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_behind_the_snapshot_catches_up_by_snapshot() {
    let mut members = start_cluster_with(&hubd_bin(), 3, &["--snapshot-count", "20"]);
    let lead = leader(&members).await;
    let down = (lead + 1) % 3;
    members[down].kill9();
    let mut c = client(&[&members[lead]]).await;
    for i in 0..150 {
        c.put(format!("s{i:03}"), format!("v{i}"), None).await.expect("put with a majority up");
    }
    members[down].spawn();
    let kvs = converged(&members).await;
    assert_eq!(kvs.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_work_through_any_member() {
    let members = start_cluster(&hubd_bin(), 3);
    let lead = leader(&members).await;
    let (f1, f2) = (&members[(lead + 1) % 3], &members[(lead + 2) % 3]);
    let mut c1 = client(&[f1]).await;
    let mut c2 = client(&[f2]).await;
    let id = c1.lease_grant(6, None).await.expect("grant through a follower").id();
    c1.put("leased", "v", Some(etcd_client::PutOptions::new().with_lease(id))).await.expect("put");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (mut keeper, mut responses) = c1.lease_keep_alive(id).await.expect("keep-alive stream");
    keeper.keep_alive().await.expect("keep alive");
    let renewed = responses.message().await.expect("response").expect("renewed");
    assert_eq!(renewed.ttl(), 6);
    let ttl = c2.lease_time_to_live(id, Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
    assert!(ttl.ttl() >= 5, "another follower sees the leader's renewed countdown, got {}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"leased".to_vec()]);
    c2.lease_revoke(id).await.expect("revoke through a follower");
    assert!(converged(&members).await.is_empty(), "the revoke deleted the key everywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_restart_keeps_everything() {
    let mut members = start_cluster(&hubd_bin(), 3);
    let mut c = client(&members.iter().collect::<Vec<_>>()).await;
    for i in 0..30 {
        c.put(format!("r{i:02}"), format!("v{i}"), None).await.expect("put");
    }
    let before = converged(&members).await;
    for m in members.iter_mut() {
        m.kill9();
    }
    spawn_all(&mut members);
    assert_eq!(converged(&members).await, before);
    let mut c = client(&members.iter().collect::<Vec<_>>()).await;
    let resp = c.put("after", "restart", None).await.expect("writes after a full restart");
    assert_eq!(resp.header().map(|h| h.revision()), Some(32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_add_and_remove_while_writing() {
    let mut members = start_cluster(&hubd_bin(), 3);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writer = {
        let mut c = client(&[&members[0]]).await;
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (k, v) = (format!("m/{i:05}"), format!("v{i}"));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), c.put(k.clone(), v.clone(), None)).await {
                    acked.lock().unwrap().push((k, v));
                }
                i += 1;
            }
        })
    };
    // Add a fourth member and start it, as `etcdctl member add` tells an operator to,
    // once the members have been connected for etcd's health interval (strict
    // reconfiguration check).
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (client_port, peer_port) = (free_port(), free_port());
    let mut admin = client(&[&members[1]]).await;
    let added = admin.member_add([format!("http://127.0.0.1:{peer_port}")], None).await.expect("member add");
    let new_id = added.member().map(|m| m.id()).expect("added member");
    let cluster = format!("{},m3=http://127.0.0.1:{peer_port}", initial_cluster(&members.iter().collect::<Vec<_>>()));
    let mut fourth = joining_member(&hubd_bin(), "m3", client_port, peer_port, &cluster);
    fourth.spawn();
    let list = admin.member_list().await.expect("member list");
    assert!(list.members().iter().any(|m| m.id() == new_id && m.name() == "m3"), "the new member published itself");
    // Remove one of the original members while writes go on.
    let lead = leader(&members).await;
    let removed = (lead + 1) % 3;
    let removed_id = {
        let mut c = client(&[&members[removed]]).await;
        c.status().await.expect("status").header().map(|h| h.member_id()).expect("id")
    };
    admin.member_remove(removed_id).await.expect("member remove");
    members[removed].kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let mut remaining: Vec<Member> = members.into_iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, m)| m).collect();
    remaining.push(fourth);
    let kvs = converged(&remaining).await;
    for (k, v) in acked.lock().unwrap().iter() {
        assert_eq!(kvs.get(k.as_bytes()), Some(&v.as_bytes().to_vec()), "acknowledged {k} lost");
    }
    let mut c = client(&[&remaining[0]]).await;
    assert_eq!(c.member_list().await.expect("member list").members().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_of_five_loses_nothing() {
    kill_leader_under_load(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    kill_leader_under_load(3).await;
}

async fn kill_leader_under_load(n: usize) {
    let mut members = start_cluster(&hubd_bin(), n);
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = client(&members.iter().collect::<Vec<_>>()).await;
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (k, v) = (format!("w{w}/{i:05}"), format!("v{i}"));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), c.put(k.clone(), v.clone(), None)).await {
                    acked.lock().unwrap().push((k, v));
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = leader(&members).await;
    members[killed].kill9();
    let acked_before_kill = acked.lock().unwrap().len();
    // The survivors elect a leader and take writes again. Under CI load (every
    // test of this file runs its own cluster on two cores) that can take longer
    // than the few election timeouts it takes on an idle machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < acked_before_kill + 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > acked_before_kill, "the survivors elected a leader and took writes");
    members[killed].spawn();

    // Every member converges to the same contents, holding every acknowledged write.
    let kvs = converged(&members).await;
    for (k, v) in &acked {
        assert_eq!(kvs.get(k.as_bytes()), Some(&v.as_bytes().to_vec()), "acknowledged {k} lost");
    }
}

/// A leader stopped with SIGTERM first hands leadership to a voter it is
/// connected to (etcd's TryTransferLeadershipOnShutdown), with etcd's log
/// lines; a follower stopping skips that. The rest then lead without an
/// election timeout's wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopping_hands_over_leadership() {
    let mut members = start_cluster(&hubd_bin(), 3);
    let l = leader(&members).await;
    let f = (l + 1) % 3;
    members[f].terminate();
    assert!(members[f].log_lines().iter().any(|x| x.contains("skipped leadership transfer; local server is not leader")));
    members[f].spawn();
    members[l].terminate();
    let lines = members[l].log_lines();
    assert!(lines.iter().any(|x| x.contains("leadership transfer starting")), "{lines:#?}");
    assert!(lines.iter().any(|x| x.contains("leadership transfer finished")), "{lines:#?}");
    let rest: Vec<&Member> = members.iter().enumerate().filter(|(i, _)| *i != l).map(|(_, m)| m).collect();
    let mut c = client(&rest).await;
    tokio::time::timeout(Duration::from_secs(2), c.put("after", "1", None))
        .await
        .expect("a leader at once")
        .expect("put");
}
