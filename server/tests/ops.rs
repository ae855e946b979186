//! The operational surface against real processes:
//! - the JSON gateway: the same curl calls to etcd 3.6.16 and to hubd give the
//!   same JSON, field by field (IDs and terms aside), errors included;
//! - `/metrics`: after a workload etcd's metric names are there and moved;
//!   `/health` and `/version` as etcd answers them, on `--listen-metrics-urls` too;
//! - Lock and Election through etcdctl: waiters queue, observers follow leaders.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{curl_get as get, curl_post as post, etcd36_bin, free_port, hubd_bin, json_blanking, Member};
use serde_json::Value;

/// The JSON with what differs between two clusters by nature blanked out.
fn normalized(body: &str) -> Value {
    json_blanking(body, &["cluster_id", "member_id", "raft_term", "leader", "ID", "id"])
}

#[test]
fn gateway_json_matches_etcd() {
    // etcd 3.6's gateway (grpc-gateway v2) is the reference: its error bodies
    // differ from 3.4's.
    let Some(etcd36) = etcd36_bin() else { return };
    let etcd = Member::start(&etcd36);
    let hub = Member::start(&hubd_bin());
    let calls: &[(&str, &str)] = &[
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("/v3beta/kv/range", r#"{"key":"Zm9v","keysOnly":true}"#),
        ("/v3/kv/range", r#"{"key":"bm9uZQ=="}"#),
        ("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","count_only":true}"#),
        ("/v3/kv/range", r#"{"key":""}"#),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy","lease":"123"}"#),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"CREATE","create_revision":"2"}],"success":[{"request_put":{"key":"Zm9v","value":"eA=="}}]}"#,
        ),
        ("/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#),
        ("/v3/kv/compaction", r#"{"revision":"100"}"#),
        ("/v3/lease/timetolive", r#"{"ID":"7"}"#),
        ("/v3/election/leader", r#"{"name":"eA=="}"#),
        ("/v3/election/proclaim", r#"{"value":"eA=="}"#),
        ("/v3/election/resign", "{}"),
        ("/v3/lock/unlock", r#"{"key":"bm9uZQ=="}"#),
        ("/v3/kv/nope", "{}"),
    ];
    for (path, body) in calls {
        let (etcd_code, etcd_body) = post(&etcd, path, body);
        let (hub_code, hub_body) = post(&hub, path, body);
        assert_eq!(hub_code, etcd_code, "{path} {body}: etcd said {etcd_body}, hubd {hub_body}");
        if etcd_body.starts_with('{') {
            assert_eq!(normalized(&hub_body), normalized(&etcd_body), "{path} {body}");
        } else {
            assert_eq!(hub_body, etcd_body, "{path} {body}");
        }
    }
    // A body that is not JSON: etcd's own message is Go's decoder's.
    let (code, body) = post(&hub, "/v3/kv/txn", r#"{"bad"#);
    assert_eq!(code, 400);
    assert_eq!(normalized(&body)["code"], 3);
    let version = get(&format!("http://{}/version", etcd.endpoint()));
    assert_eq!(get(&format!("http://{}/version", hub.endpoint())), version);
}

#[test]
fn gateway_watch_streams_json_lines() {
    let hub = Member::start(&hubd_bin());
    let mut curl = Command::new("curl")
        .args(["-s", "-N", "-X", "POST", "-d", r#"{"create_request":{"key":"Zm9v"}}"#])
        .arg(format!("http://{}/v3/watch", hub.endpoint()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let stdout = curl.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let created: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).expect("created")).expect("json");
    assert_eq!(created["result"]["created"], true);
    post(&hub, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    let event: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).expect("event")).expect("json");
    assert_eq!(event["result"]["events"][0]["kv"]["value"], "YmFy");
    assert_eq!(event["result"]["events"][0]["kv"]["mod_revision"], "2");
    let _ = curl.kill();
    let _ = curl.wait();
}

/// The value of the sample named exactly `series` in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_move_with_a_workload() {
    let metrics_port = free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let hub = Member::start_with(&hubd_bin(), &["--listen-metrics-urls", &metrics_url]);
    let before = get(&format!("{metrics_url}/metrics"));
    assert_eq!(sample(&before, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample(&before, "etcd_server_is_leader"), Some(1.0));
    assert_eq!(sample(&before, r#"etcd_server_version{server_version="3.6.16"}"#), Some(1.0));
    assert!(before.contains("process_resident_memory_bytes"));
    for i in 0..3 {
        assert!(hub.etcdctl(&["put", &format!("k{i}"), "v"]).status.success());
    }
    assert!(hub.etcdctl(&["del", "k0"]).status.success());
    let out = hub.etcdctl(&["get", "k1"]);
    assert!(out.status.success());
    // Counters from the commit feed land shortly after the answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let text = get(&format!("http://{}/metrics", hub.endpoint()));
        if sample(&text, "etcd_mvcc_delete_total") == Some(1.0) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sample(&after, "etcd_mvcc_put_total"), Some(3.0));
    assert_eq!(sample(&after, "etcd_mvcc_delete_total"), Some(1.0));
    assert_eq!(sample(&after, "etcd_debugging_mvcc_keys_total"), Some(2.0));
    assert!(sample(&after, "etcd_server_proposals_committed_total") > sample(&before, "etcd_server_proposals_committed_total"));
    assert!(sample(&after, "etcd_server_proposals_applied_total").is_some_and(|v| v >= 4.0));
    assert!(sample(&after, "etcd_mvcc_db_total_size_in_bytes").is_some_and(|v| v > 0.0));
    let put = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    assert_eq!(sample(&after, put), Some(3.0));
    let started = r#"grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    assert_eq!(sample(&after, started), Some(1.0));
    assert_eq!(get(&format!("{metrics_url}/health")), r#"{"health":"true","reason":""}"#);
}

#[test]
fn lock_waiters_queue_and_observers_follow_the_leader() {
    let hub = Member::start(&hubd_bin());
    let ctl = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &hub.endpoint()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl")
    };
    // The first holder keeps the lock 1.5 s; the second waits for it.
    let first = ctl(&["lock", "l", "--", "sh", "-c", "echo first; sleep 1.5"]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let second = ctl(&["lock", "l", "--", "echo", "second"]).wait_with_output().expect("second");
    assert!(started.elapsed() >= Duration::from_millis(800), "the second holder did not wait");
    assert_eq!(String::from_utf8_lossy(&second.stdout), "second\n");
    assert_eq!(String::from_utf8_lossy(&first.wait_with_output().expect("first").stdout), "first\n");

    let mut observer = ctl(&["elect", "-l", "e"]);
    let mut candidate = ctl(&["elect", "e", "v1"]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = candidate.kill();
    let _ = candidate.wait();
    let _ = observer.kill();
    let out = observer.wait_with_output().expect("observer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("e/") && text.contains("\nv1\n"), "observer saw {text:?}");
}

#[test]
fn reported_version_follows_the_flag() {
    // hub reports etcd 3.6.16 unless told to report another release (a 3.4
    // one for clients that must see 3.4); Status, /version and the metrics
    // agree, and the cluster version is the release's major.minor.
    let hub = Member::start_with(&hubd_bin(), &["--report-etcd-version", "3.4.31"]);
    let status = hub.etcdctl(&["endpoint", "status", "-w", "json"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(r#""version":"3.4.31""#));
    let version = get(&format!("http://{}/version", hub.endpoint()));
    assert_eq!(version, r#"{"etcdserver":"3.4.31","etcdcluster":"3.4.0","storage":"3.6.0"}"#);
    let metrics = get(&format!("http://{}/metrics", hub.endpoint()));
    assert_eq!(sample(&metrics, r#"etcd_server_version{server_version="3.4.31"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"etcd_cluster_version{cluster_version="3.4"}"#), Some(1.0));
}
