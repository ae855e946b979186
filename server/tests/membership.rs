//! Membership changes as etcd 3.6.16 makes them, on real clusters: any member
//! takes a change (a follower forwards it, and waits out a leader change), a
//! removed member stops and a restart of its data directory does not hang,
//! `--force-new-cluster` restarts a member alone with its data, and the
//! strict reconfiguration checks refuse what etcd refuses, with etcd's codes
//! and texts (compared with etcd 3.6.16 where it is installed), and a stopped
//! member's backend holds the members where etcd 3.6.16 keeps them; a
//! linearizable member list needs a quorum.

mod common;

use std::time::Duration;

use common::{etcd36_bin, free_port, hubd_bin, joining_member, leader, start_cluster, start_cluster_with, Member};
use hub_proto::etcdserverpb::cluster_client::ClusterClient;
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, PutRequest,
    RangeRequest, StatusRequest,
};
use hub_store::snapshot::SnapshotReader;
use tonic::transport::Channel;

/// etcd's `HealthInterval` and then some: peers count as connected for the
/// strict reconfiguration checks once they have been up this long.
const HEALTHY_AFTER: Duration = Duration::from_millis(5500);

async fn channel(m: &Member) -> Channel {
    Channel::from_shared(format!("http://{}", m.endpoint())).expect("uri").connect().await.expect("connect")
}

async fn cluster(m: &Member) -> ClusterClient<Channel> {
    ClusterClient::new(channel(m).await)
}

async fn member_id(m: &Member) -> u64 {
    let mut c = hub_proto::etcdserverpb::maintenance_client::MaintenanceClient::new(channel(m).await);
    let status = c.status(StatusRequest {}).await.expect("status").into_inner();
    status.header.expect("header").member_id
}

/// Three hubd members, up for longer than etcd's health interval, and which
/// one leads.
async fn healthy_cluster() -> (Vec<Member>, usize) {
    let members = start_cluster(&hubd_bin(), 3);
    tokio::time::sleep(HEALTHY_AFTER).await;
    let l = leader(&members).await;
    (members, l)
}

/// An answer as a comparable line: "ok", or the status code and text.
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

fn add(urls: &[String], learner: bool) -> MemberAddRequest {
    MemberAddRequest { peer_ur_ls: urls.to_vec(), is_learner: learner }
}

/// A peer URL nothing listens on.
fn nowhere() -> Vec<String> {
    vec![format!("http://127.0.0.1:{}", free_port())]
}

/// The leader removed through a follower, then a member added through the
/// other follower at once: etcd takes it (the change waits for the next
/// leader); hub answered "etcdserver: not leader" (etcd's TestMemberReplace).
/// The removed leader stops on its own, as etcd's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_through_followers_while_the_leader_is_removed() {
    let (mut members, l) = healthy_cluster().await;
    let (f1, f2) = ((l + 1) % 3, (l + 2) % 3);
    let leader_id = member_id(&members[l]).await;
    cluster(&members[f1]).await.member_remove(MemberRemoveRequest { id: leader_id }).await.expect("remove the leader");
    let peer = nowhere();
    let added = cluster(&members[f2]).await.member_add(add(&peer, true)).await.expect("add through a follower");
    assert!(added.get_ref().members.iter().any(|m| m.peer_ur_ls == peer));
    let status = members[l].wait_for_exit(Duration::from_secs(10)).expect("the removed leader stops");
    assert!(status.success(), "{status:?}");
    assert!(members[l].log_lines().iter().any(|l| l.contains("the member has been permanently removed from the cluster")));
    let list = cluster(&members[f1]).await.member_list(MemberListRequest { linearizable: true }).await.expect("list");
    assert_eq!(list.get_ref().members.len(), 3, "two of the first three and the learner");
}

/// A follower removed while it runs stops (it never gets the entry that
/// removes it: the leader stops replicating to it), and restarting its data
/// directory stops again rather than hanging; a member restarted after the
/// removal comes back. hub's removed member kept running, and its restart
/// never became ready nor exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_member_stops_and_its_restart_does_not_hang() {
    let (mut members, l) = healthy_cluster().await;
    let (removed, other) = ((l + 1) % 3, (l + 2) % 3);
    let id = member_id(&members[removed]).await;
    cluster(&members[l]).await.member_remove(MemberRemoveRequest { id }).await.expect("remove a follower");
    // The leader tells it at once (etcd's removed member applies its own
    // removal); it stops a second later, as etcd's does.
    let status = members[removed].wait_for_exit(Duration::from_secs(5)).expect("the removed member stops");
    assert!(status.success(), "{status:?}");
    let (status, printed) = members[removed].run_to_exit(&[], Duration::from_secs(20));
    assert!(printed.contains("the member has been permanently removed from the cluster"), "{status:?}\n{printed}");
    // The other follower restarts into the two-member cluster.
    members[other].kill9();
    members[other].spawn();
    let mut kv = KvClient::new(channel(&members[other]).await);
    kv.put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.expect("put");
}

/// `--force-new-cluster` restarts a member of a three-member cluster as a
/// one-member cluster with its data; hub ignored the flag (the member waited
/// for the other two forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_new_cluster_keeps_the_data_of_one_member() {
    let mut members = start_cluster(&hubd_bin(), 3);
    let mut kv = KvClient::new(channel(&members[0]).await);
    for i in 0..20 {
        kv.put(PutRequest { key: format!("k{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() })
            .await
            .expect("put");
    }
    for m in members.iter_mut() {
        m.kill9();
    }
    let mut m = members.remove(0);
    m.add_flags(&["--force-new-cluster"]);
    m.spawn();
    let list = cluster(&m).await.member_list(MemberListRequest { linearizable: true }).await.expect("member list");
    assert_eq!(list.get_ref().members.len(), 1);
    let mut kv = KvClient::new(channel(&m).await);
    let all = RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    assert_eq!(kv.range(all.clone()).await.expect("range").get_ref().count, 20);
    kv.put(PutRequest { key: b"after".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.expect("put");
    // Restarted with the flag still given, as etcd's TestForceNewCluster does.
    m.kill9();
    m.spawn();
    let mut kv = KvClient::new(channel(&m).await);
    assert_eq!(kv.range(all).await.expect("range").get_ref().count, 20);
    // And it grows again.
    tokio::time::sleep(HEALTHY_AFTER).await;
    let (client_port, peer_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{peer_port}");
    cluster(&m).await.member_add(add(&[url.clone()], false)).await.expect("member add");
    let initial = format!("{}=http://127.0.0.1:{},m9={url}", m.name, m.peer_port);
    let mut joined = joining_member(&hubd_bin(), "m9", client_port, peer_port, &initial);
    joined.spawn();
    let mut kv = KvClient::new(channel(&joined).await);
    assert_eq!(kv.range(RangeRequest { key: b"after".to_vec(), ..Default::default() }).await.expect("range").get_ref().count, 1);
}

/// One member, default flags: etcd's learner limit, its promote check and
/// its started-members check, answered with etcd's codes and texts.
async fn single_member_refusals(bin: &std::path::Path) -> Vec<String> {
    let m = Member::start(bin);
    let mut c = cluster(&m).await;
    let mut out = Vec::new();
    let learner = c.member_add(add(&nowhere(), true)).await;
    let learner_id = learner.as_ref().ok().and_then(|r| r.get_ref().member.as_ref()).map_or(0, |m| m.id);
    out.push(outcome(learner));
    out.push(outcome(c.member_add(add(&nowhere(), true)).await));
    out.push(outcome(c.member_promote(MemberPromoteRequest { id: learner_id }).await));
    out.push(outcome(c.member_promote(MemberPromoteRequest { id: 42 }).await));
    out.push(outcome(c.member_remove(MemberRemoveRequest { id: learner_id }).await));
    // A second voter may join a lone member (restoring a cluster), not a third.
    out.push(outcome(c.member_add(add(&nowhere(), false)).await));
    out.push(outcome(c.member_add(add(&nowhere(), false)).await));
    out
}

/// Three members, one killed: adding or removing a running voter would leave
/// too few connected members (etcd's `unhealthy cluster`); the dead one goes.
async fn one_of_three_down_refusals(bin: &std::path::Path) -> Vec<String> {
    let mut members = start_cluster(bin, 3);
    let ids = [member_id(&members[0]).await, member_id(&members[1]).await];
    members[0].kill9();
    tokio::time::sleep(HEALTHY_AFTER + Duration::from_secs(2)).await;
    let mut c = cluster(&members[2]).await;
    let mut out = vec![outcome(c.member_add(add(&nowhere(), true)).await)];
    out.push(outcome(c.member_add(add(&nowhere(), false)).await));
    out.push(outcome(c.member_remove(MemberRemoveRequest { id: ids[1] }).await));
    out.push(outcome(c.member_remove(MemberRemoveRequest { id: ids[0] }).await));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_reconfig_checks_answer_as_etcd() {
    let hub = single_member_refusals(&hubd_bin()).await;
    let expected = [
        "ok",
        "FailedPrecondition: etcdserver: too many learner members in cluster",
        "FailedPrecondition: etcdserver: can only promote a learner member which is in sync with leader",
        "NotFound: etcdserver: member not found",
        "ok",
        "ok",
        // etcd's own quirk: its error map holds the client-side error here.
        "Unknown: etcdserver: re-configuration failed due to not enough started members",
    ];
    assert_eq!(hub, expected);
    if let Some(etcd) = etcd36_bin() {
        assert_eq!(single_member_refusals(&etcd).await, expected, "etcd 3.6.16");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_reconfig_checks_with_a_member_down_answer_as_etcd() {
    let expected = [
        "Unavailable: etcdserver: unhealthy cluster",
        "Unavailable: etcdserver: unhealthy cluster",
        "Unavailable: etcdserver: unhealthy cluster",
        "ok",
    ];
    assert_eq!(one_of_three_down_refusals(&hubd_bin()).await, expected);
    if let Some(etcd) = etcd36_bin() {
        assert_eq!(one_of_three_down_refusals(&etcd).await, expected, "etcd 3.6.16");
    }
}

/// Three members, two killed: a linearizable member list (clientv3's and
/// etcdctl's default since 3.5) gets no answer without a quorum, a
/// serializable one answers from the member's own view.
async fn member_list_without_a_quorum(bin: &std::path::Path) -> (&'static str, usize) {
    let mut members = start_cluster(bin, 3);
    let mut c = cluster(&members[2]).await;
    let list = |linearizable| {
        let mut request = tonic::Request::new(MemberListRequest { linearizable });
        request.set_timeout(Duration::from_secs(2));
        request
    };
    assert_eq!(c.member_list(list(true)).await.expect("with a quorum").get_ref().members.len(), 3);
    members[0].kill9();
    members[1].kill9();
    let linearizable = match tokio::time::timeout(Duration::from_secs(3), c.member_list(list(true))).await {
        Ok(Ok(_)) => "answered",
        // hub says "no leader" (Unavailable, which clientv3 retries until its
        // deadline) once it knows; etcd lets the call wait.
        Ok(Err(_)) | Err(_) => "no answer",
    };
    let serializable = c.member_list(list(false)).await.expect("serializable list").into_inner();
    (linearizable, serializable.members.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_linearizable_member_list_needs_a_quorum() {
    assert_eq!(member_list_without_a_quorum(&hubd_bin()).await, ("no answer", 3));
    if let Some(etcd) = etcd36_bin() {
        assert_eq!(member_list_without_a_quorum(&etcd).await, ("no answer", 3), "etcd 3.6.16");
    }
}

/// `--strict-reconfig-check=false` lets a change through while a member is
/// down, taken by a follower right after the kill (the leader may be the one
/// killed: the change waits for the next; hub answered "not leader").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_strict_reconfig_check_a_change_is_not_refused() {
    let mut members = start_cluster_with(&hubd_bin(), 3, &["--strict-reconfig-check=false"]);
    members[0].kill9();
    let mut c = cluster(&members[2]).await;
    c.member_add(add(&nowhere(), true)).await.expect("a learner while a member is down");
}

/// What a backend (a stopped member's, or a snapshot) holds in etcd's
/// `members`, `members_removed` and `cluster` buckets, each record as
/// `key=value` with the member IDs and URLs of the run replaced by their roles.
fn membership_buckets(db: &std::path::Path, roles: &[(String, &str)]) -> Vec<String> {
    let mut reader = SnapshotReader::open(db, true).unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    let mut out = Vec::new();
    for bucket in ["members", "members_removed", "cluster"] {
        for (k, v) in reader.records(bucket.as_bytes()).expect("bucket") {
            let mut record = format!("{bucket}/{}={}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            for (value, role) in roles {
                record = record.replace(value.as_str(), role);
            }
            out.push(record);
        }
    }
    out.sort();
    out
}

/// What [`member_buckets_after_changes`] found.
#[derive(Debug, PartialEq)]
struct Found {
    /// The answer to adding the removed ID again.
    re_added: String,
    /// The stopped member's buckets.
    stopped: Vec<String>,
    /// With etcd 3.6.16's tools: a snapshot's buckets (`etcdctl snapshot
    /// save`), and those of the backend `etcdutl snapshot restore` made of it.
    snapshot: Vec<String>,
    restored: Vec<String>,
}

/// One member published itself; a learner added, removed, and added again
/// with the same peer URL in the same second (so the same ID: etcd refuses a
/// removed ID); another learner added and given new peer URLs; a snapshot
/// saved and restored by etcd 3.6.16's tools (`etcd`, beside them), if there.
async fn member_buckets_after_changes(bin: &std::path::Path, etcd: Option<&std::path::Path>) -> Found {
    let mut m = Member::start(bin);
    let me = member_id(&m).await;
    let mut c = cluster(&m).await;
    let (removed_url, re_added) = loop {
        // Right after a second starts: the three calls share it.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
        tokio::time::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))).await;
        let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let url = nowhere();
        let added = c.member_add(add(&url, true)).await.expect("add a learner").into_inner();
        let id = added.member.expect("member").id;
        c.member_remove(MemberRemoveRequest { id }).await.expect("remove it");
        let again = outcome(c.member_add(add(&url, true)).await);
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        if after == second {
            break ((id, url), again);
        }
    };
    let learner_url = nowhere();
    let learner = c.member_add(add(&learner_url, true)).await.expect("add a learner").into_inner();
    let learner_id = learner.member.expect("member").id;
    let new_url = nowhere();
    c.member_update(MemberUpdateRequest { id: learner_id, peer_ur_ls: new_url.clone() })
        .await
        .expect("update its peer URLs");
    let tool = |name: &str, args: &[&str]| {
        let etcd = etcd.expect("etcd 3.6.16");
        let out = std::process::Command::new(etcd.with_file_name(name)).args(args).output().expect(name);
        assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let snapshot = m.data_dir.with_file_name("snapshot.db");
    if etcd.is_some() {
        tool("etcdctl", &["--endpoints", &m.endpoint(), "snapshot", "save", &snapshot.to_string_lossy()]);
    }
    // etcd ends by its SIGTERM; both sync their backend first.
    assert!(m.terminate().is_some(), "{} stops", bin.display());
    let quoted = |s: &str| format!("\"{s}\"");
    let roles = [
        (format!("\"id\":{me}"), "\"id\":<me>"),
        (format!("\"id\":{learner_id}"), "\"id\":<learner>"),
        (format!("{me:x}="), "<me>="),
        (format!("{learner_id:x}="), "<learner>="),
        (format!("{:x}=", removed_url.0), "<removed>="),
        (quoted(&format!("http://127.0.0.1:{}", m.client_port)), "<client URL>"),
        (quoted(&format!("http://127.0.0.1:{}", m.peer_port)), "<peer URL>"),
        (quoted(&new_url[0]), "<learner's new peer URL>"),
    ];
    let roles: Vec<(String, &str)> = roles.into_iter().collect();
    let mut found = Found {
        re_added,
        stopped: membership_buckets(&m.data_dir.join("member/snap/db"), &roles),
        snapshot: Vec::new(),
        restored: Vec::new(),
    };
    if etcd.is_some() {
        found.snapshot = membership_buckets(&snapshot, &roles);
        let restored = m.data_dir.with_file_name("restored");
        let peer = "http://127.0.0.1:1";
        tool("etcdutl", &["snapshot", "restore", &snapshot.to_string_lossy(), "--data-dir", &restored.to_string_lossy()]
            .into_iter()
            .chain(["--name", "r", "--initial-cluster", &format!("r={peer}"), "--initial-advertise-peer-urls", peer])
            .collect::<Vec<_>>());
        found.restored = membership_buckets(&restored.join("member/snap/db"), &roles);
    }
    found
}

/// The buckets etcd 3.6.16 writes, record for record (etcd's tools, and
/// etcd's own e2e tests, read a stopped member's members there); hub had no
/// `members` bucket in its backend, and took a removed ID back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_buckets_are_etcds() {
    let etcd = etcd36_bin();
    let hub = member_buckets_after_changes(&hubd_bin(), etcd.as_deref()).await;
    let expected = [
        "cluster/clusterVersion=3.6.0",
        r#"members/<learner>={"id":<learner>,"peerURLs":[<learner's new peer URL>],"isLearner":true}"#,
        r#"members/<me>={"id":<me>,"peerURLs":[<peer URL>],"name":"default","clientURLs":[<client URL>]}"#,
        "members_removed/<removed>=removed",
    ];
    assert_eq!(hub.re_added, "NotFound: etcdserver: member not found");
    assert_eq!(hub.stopped, expected);
    if let Some(etcd) = etcd {
        // The snapshot carries the buckets; the restore keeps only its new member.
        assert_eq!(hub.snapshot, expected);
        assert!(
            matches!(&hub.restored[..], [version, r] if version == &expected[0] && r.contains(r#""name":"r""#)),
            "{:#?}",
            hub.restored
        );
        assert_eq!(member_buckets_after_changes(&etcd, Some(&etcd)).await, hub, "etcd 3.6.16 (left), hubd (right)");
    }
}
