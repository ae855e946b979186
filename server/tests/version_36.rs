//! Every version surface against etcd 3.6.16: `/version`, Status (gRPC and
//! the gateway, with 3.6's storage version, quota, learner flag and
//! downgrade info), the version metrics, Maintenance.Downgrade (gRPC, the
//! gateway and `etcdctl downgrade`), and the storage version in the backend
//! and in snapshots as 3.6.16's `etcdctl` and `etcdutl` read it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{curl_get, curl_post, etcd36_bin, hubd_bin, json_blanking, Member};
use hub_proto::etcdserverpb::{
    downgrade_request::DowngradeAction, maintenance_client::MaintenanceClient, DowngradeRequest, StatusRequest,
};

/// Both servers, etcd 3.6.16 first.
fn both(etcd: &Path, extra: &[&str]) -> [(&'static str, Member); 2] {
    [("etcd 3.6.16", Member::start_with(etcd, extra)), ("hubd", Member::start_with(&hubd_bin(), extra))]
}

/// etcd 3.6.16's etcdctl or etcdutl (beside its etcd).
fn tool(etcd: &Path, name: &str, args: &[&str]) -> Output {
    let bin: PathBuf = etcd.with_file_name(name);
    Command::new(&bin).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The last line of `out` (etcdctl prints its JSON log lines before it).
fn last_line(out: &Output) -> String {
    text(out).lines().last().unwrap_or_default().to_string()
}

#[tokio::test]
async fn versions_and_status_answer_as_etcd_3_6() {
    let Some(etcd) = etcd36_bin() else { return };
    let servers = both(&etcd, &["--quota-backend-bytes", "123456789"]);
    let mut answers = Vec::new();
    for (name, m) in &servers {
        let version = curl_get(&format!("http://{}/version", m.endpoint()));
        let mut client = MaintenanceClient::connect(format!("http://{}", m.endpoint())).await.expect("connect");
        let mut status = client.status(StatusRequest {}).await.expect("status").into_inner();
        status.header = None;
        (status.db_size, status.db_size_in_use, status.leader) = (0, 0, 0);
        (status.raft_index, status.raft_term, status.raft_applied_index) = (0, 0, 0);
        let (_, gateway) = curl_post(m, "/v3/maintenance/status", "{}");
        let gateway = json_blanking(
            &gateway,
            &["header", "dbSize", "dbSizeInUse", "leader", "raftIndex", "raftTerm", "raftAppliedIndex"],
        );
        let metrics = curl_get(&format!("http://{}/metrics", m.endpoint()));
        let version_metrics: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("etcd_server_version") || l.starts_with("etcd_cluster_version"))
            .collect();
        let answer = format!("{version}\n{status:?}\n{gateway}\n{version_metrics:?}");
        answers.push((name, answer));
    }
    assert_eq!(answers[1].1, answers[0].1, "hubd (left) and etcd 3.6.16 (right) differ");
    assert!(answers[0].1.starts_with(r#"{"etcdserver":"3.6.16","etcdcluster":"3.6.0","storage":"3.6.0"}"#));
}

#[tokio::test]
async fn downgrade_answers_as_etcd_3_6() {
    let Some(etcd) = etcd36_bin() else { return };
    let servers = both(&etcd, &[]);
    let requests: Vec<(i32, &str)> = vec![
        (DowngradeAction::Validate as i32, "3.5"),
        (DowngradeAction::Validate as i32, "3.5.7-rc.1"),
        (DowngradeAction::Validate as i32, "3.4"),
        (DowngradeAction::Validate as i32, "3.6"),
        (DowngradeAction::Validate as i32, "3.7.0"),
        (DowngradeAction::Validate as i32, "3.0"),
        (DowngradeAction::Validate as i32, ""),
        (DowngradeAction::Validate as i32, "3"),
        (DowngradeAction::Validate as i32, "v3.5"),
        (DowngradeAction::Enable as i32, "3.4"),
        (DowngradeAction::Enable as i32, "x"),
        (DowngradeAction::Enable as i32, ""),
        (DowngradeAction::Cancel as i32, ""),
        (DowngradeAction::Cancel as i32, "3.5"),
        (7, "3.5"),
    ];
    let mut answers = Vec::new();
    for (_, m) in &servers {
        let mut client = MaintenanceClient::connect(format!("http://{}", m.endpoint())).await.expect("connect");
        let mut got = Vec::new();
        for &(action, version) in &requests {
            let answer = match client.downgrade(DowngradeRequest { action, version: version.into() }).await {
                Ok(r) => {
                    let r = r.into_inner();
                    format!("ok header:{} version:{}", r.header.is_some(), r.version)
                }
                Err(s) => format!("{:?} {}", s.code(), s.message()),
            };
            let body = format!(r#"{{"action":{action},"version":"{version}"}}"#);
            let (code, gateway) = curl_post(m, "/v3/maintenance/downgrade", &body);
            let gateway = json_blanking(&gateway, &["header"]);
            got.push(format!("{action} {version:?}: {answer} | {code} {gateway}"));
        }
        for args in [["downgrade", "validate", "3.5"], ["downgrade", "validate", "3.4"], ["downgrade", "cancel", ""]] {
            let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
            let out = tool(&etcd, "etcdctl", &[&["--endpoints", &m.endpoint()][..], &args].concat());
            got.push(format!("etcdctl {args:?}: {} {}", out.status, last_line(&out)));
        }
        answers.push(got);
    }
    assert_eq!(answers[1], answers[0], "hubd (left) and etcd 3.6.16 (right) differ");
}

/// What a member says of its versions: `/version`, Status' versions and
/// downgrade info, the version metrics.
async fn versions(m: &Member) -> String {
    let version = curl_get(&format!("http://{}/version", m.endpoint()));
    let mut client = MaintenanceClient::connect(format!("http://{}", m.endpoint())).await.expect("connect");
    let s = client.status(StatusRequest {}).await.expect("status").into_inner();
    let metrics = curl_get(&format!("http://{}/metrics", m.endpoint()));
    let metrics: Vec<&str> = metrics.lines().filter(|l| l.starts_with("etcd_cluster_version")).collect();
    format!("{version} {} {} {:?} {metrics:?}", s.version, s.storage_version, s.downgrade_info)
}

/// A downgrade call's answer.
async fn downgrade(m: &Member, action: DowngradeAction, version: &str) -> String {
    let mut client = MaintenanceClient::connect(format!("http://{}", m.endpoint())).await.expect("connect");
    match client.downgrade(DowngradeRequest { action: action as i32, version: version.into() }).await {
        Ok(r) => format!("ok {}", r.into_inner().version),
        Err(s) => format!("{:?} {}", s.code(), s.message()),
    }
}

/// etcd's version monitor moves the cluster version a few seconds after a
/// downgrade is enabled or cancelled; hub at once. Waits until `m`'s
/// `/version` names `cluster`.
async fn wait_for_cluster_version(m: &Member, cluster: &str) {
    let want = format!(r#""etcdcluster":"{cluster}""#);
    for _ in 0..100 {
        if curl_get(&format!("http://{}/version", m.endpoint())).contains(&want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{} never reported cluster version {cluster}", m.endpoint());
}

#[tokio::test]
async fn downgrade_enable_and_cancel_as_etcd_3_6() {
    let Some(etcd) = etcd36_bin() else { return };
    let servers = both(&etcd, &[]);
    let mut answers = Vec::new();
    for (_, m) in &servers {
        let mut got = vec![downgrade(m, DowngradeAction::Enable, "3.5").await];
        // Compared once etcd's monitor moved the cluster version (right
        // after the enable, etcd still checks targets against 3.6).
        wait_for_cluster_version(m, "3.5.0").await;
        got.push(versions(m).await);
        got.push(downgrade(m, DowngradeAction::Enable, "3.5").await);
        got.push(downgrade(m, DowngradeAction::Enable, "3.4").await);
        got.push(downgrade(m, DowngradeAction::Validate, "3.5").await);
        got.push(downgrade(m, DowngradeAction::Validate, "3.4").await);
        got.push(downgrade(m, DowngradeAction::Cancel, "").await);
        wait_for_cluster_version(m, "3.6.0").await;
        got.push(versions(m).await);
        got.push(downgrade(m, DowngradeAction::Cancel, "").await);
        answers.push(got);
    }
    assert_eq!(answers[1], answers[0], "hubd (left) and etcd 3.6.16 (right) differ");
}

#[test]
fn snapshots_and_stopped_members_carry_the_storage_version() {
    let Some(etcd) = etcd36_bin() else { return };
    let mut servers = both(&etcd, &["--snapshot-count", "1"]);
    let mut answers = Vec::new();
    for (_, m) in &mut servers {
        let endpoint = m.endpoint();
        for i in 0..3 {
            let out = tool(&etcd, "etcdctl", &["--endpoints", &endpoint, "put", &format!("k{i}"), "v"]);
            assert!(out.status.success(), "{}", text(&out));
        }
        let file = m.data_dir.with_file_name("snapshot.db");
        let file = file.to_string_lossy();
        let save = tool(&etcd, "etcdctl", &["--endpoints", &endpoint, "snapshot", "save", &file]);
        let status = tool(&etcd, "etcdutl", &["snapshot", "status", &file, "-w", "json"]);
        let status = json_blanking(&last_line(&status), &["hash", "totalSize"]);
        m.terminate();
        let dir = m.data_dir.to_string_lossy().to_string();
        let migrate = tool(&etcd, "etcdutl", &["migrate", "--data-dir", &dir, "--target-version", "3.6"]);
        let migrate = last_line(&migrate).split_once("\t{").map(|(_, fields)| fields.to_string()).unwrap_or_default();
        answers.push(format!(
            "save: {} {:?}\nstatus: {status}\nmigrate 3.6: {migrate}",
            save.status,
            String::from_utf8_lossy(&save.stdout).replace(&*file, "FILE")
        ));
    }
    assert_eq!(answers[1], answers[0], "hubd (left) and etcd 3.6.16 (right) differ");
    assert!(answers[0].contains(r#""version":"3.6.0""#), "{}", answers[0]);
    assert!(answers[0].contains(r#""storage-version": "3.6""#), "{}", answers[0]);
}

#[tokio::test]
async fn a_downgrade_reaches_every_member() {
    // Enabled and cancelled through any member (a follower forwards the
    // proposal), every member reports it.
    let members = common::start_cluster(&hubd_bin(), 3);
    let via = &members[(common::leader(&members).await + 1) % 3];
    assert_eq!(downgrade(via, DowngradeAction::Enable, "3.5").await, "ok 3.6");
    for m in &members {
        wait_for_cluster_version(m, "3.5.0").await;
        assert!(versions(m).await.contains("enabled: true, target_version: \"3.5.0\""), "{}", versions(m).await);
    }
    assert_eq!(downgrade(via, DowngradeAction::Cancel, "").await, "ok 3.5");
    for m in &members {
        wait_for_cluster_version(m, "3.6.0").await;
    }
}
