//! etcd's v3 discovery on real processes: a one-member hubd is the discovery
//! service, three hubd members bootstrap through it (`--discovery-token`,
//! `--discovery-endpoints`) into one cluster, a fourth is refused as etcd
//! refuses it ("discovery: cluster is full"), and the registry entries a member
//! writes are the ones etcd 3.6.16 writes (compared where it is installed).

mod common;

use std::time::Duration;

use common::{discovering_member, etcd36_bin, hubd_bin, Member};
use hub_proto::etcdserverpb::cluster_client::ClusterClient;
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::{DeleteRangeRequest, MemberListRequest, PutRequest, RangeRequest};
use tonic::transport::Channel;

async fn kv(m: &Member) -> KvClient<Channel> {
    KvClient::new(
        Channel::from_shared(format!("http://{}", m.endpoint())).expect("uri").connect().await.expect("connect"),
    )
}

async fn put(m: &Member, key: &str, value: &str) {
    let request = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    kv(m).await.put(request).await.expect("put");
}

/// The registry's member entries for `token`: (key, value), in key order.
async fn registered(service: &Member, token: &str) -> Vec<(String, String)> {
    let prefix = format!("/_etcd/registry/{token}/members");
    let request = RangeRequest {
        key: prefix.clone().into(),
        range_end: hub_proto::range::prefix_end(prefix.as_bytes()),
        ..Default::default()
    };
    let kvs = kv(service).await.range(request).await.expect("range").into_inner().kvs;
    kvs.into_iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned()))
        .collect()
}

/// Starts `members` together: each waits for the others in the discovery service.
fn start_all(members: &mut [Member]) {
    std::thread::scope(|s| {
        for m in members.iter_mut() {
            s.spawn(move || m.spawn());
        }
    });
}

#[tokio::test]
async fn members_bootstrap_through_a_discovery_service_until_it_is_full() {
    let service = Member::start(&hubd_bin());
    let token = "8A591FAB-1D72-41FA-BDF2-A27162FDA1E0";
    put(&service, &format!("/_etcd/registry/{token}/_config/size"), "3").await;
    let endpoints = format!("http://{}", service.endpoint());

    let mut members: Vec<Member> =
        (0..3).map(|i| discovering_member(&hubd_bin(), &format!("m{i}"), token, &endpoints)).collect();
    start_all(&mut members);

    // One cluster of the three, each registered under its member ID.
    let list = ClusterClient::new(
        Channel::from_shared(format!("http://{}", members[0].endpoint()))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    )
    .member_list(MemberListRequest { linearizable: true })
    .await
    .expect("member list")
    .into_inner();
    let mut expected: Vec<(String, String)> = list
        .members
        .iter()
        .map(|m| {
            let key = format!("/_etcd/registry/{token}/members/{:x}", m.id);
            (key, format!("{}={}", m.name, m.peer_ur_ls.join(",")))
        })
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 3, "{list:?}");
    assert_eq!(registered(&service, token).await, expected);
    put(&members[2], "k", "v").await;
    let got = kv(&members[0]).await.range(RangeRequest { key: "k".into(), ..Default::default() }).await.expect("get");
    assert_eq!(got.into_inner().kvs[0].value, b"v");

    // A fourth finds the cluster full and exits, with etcd's words.
    let fourth = discovering_member(&hubd_bin(), "m3", token, &endpoints);
    let (status, printed) = fourth.run_to_exit(&[], Duration::from_secs(20));
    assert!(!status.success(), "{printed}");
    assert!(printed.contains("discovery failed to join cluster"), "{printed}");
    assert!(printed.contains("failed to join discovery cluster (discovery: cluster is full)"), "{printed}");
    assert!(printed.contains("failed to bootstrap; discovery token was already used"), "{printed}");
    // It looked before registering (as etcd's member does): the registry is unchanged.
    assert_eq!(registered(&service, token).await, expected);
}

/// A member started by etcd 3.6.16 and then by hubd, same name, peer URL and
/// token, registers the same key and value.
#[tokio::test]
async fn the_registry_entry_is_etcds() {
    let Some(etcd) = etcd36_bin() else {
        eprintln!("HUB_ETCD36 not set and etcd 3.6.16 not found: skipped");
        return;
    };
    let service = Member::start(&hubd_bin());
    let token = "registry-entry";
    put(&service, &format!("/_etcd/registry/{token}/_config/size"), "1").await;
    let endpoints = format!("http://{}", service.endpoint());

    let mut by_etcd = discovering_member(&etcd, "solo", token, &endpoints);
    by_etcd.spawn();
    let etcds = registered(&service, token).await;
    by_etcd.kill9();

    let prefix = format!("/_etcd/registry/{token}/members");
    let request = DeleteRangeRequest {
        key: prefix.clone().into(),
        range_end: hub_proto::range::prefix_end(prefix.as_bytes()),
        ..Default::default()
    };
    kv(&service).await.delete_range(request).await.expect("delete");
    let _ = std::fs::remove_dir_all(&by_etcd.data_dir);
    // The same member again, by hubd: same ports, an empty data directory.
    let mut by_hub = by_etcd;
    by_hub.set_bin(&hubd_bin());
    by_hub.spawn();
    assert_eq!(registered(&service, token).await, etcds);
    assert_eq!(etcds.len(), 1);
}
