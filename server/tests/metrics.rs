//! `/metrics` of a 3-member cluster after a write workload: every metric the
//! public etcd dashboards and alerts use is there under etcd's name, on the
//! client URL and on `--listen-metrics-urls`, and the ones that measure work
//! moved on every member — WAL fsyncs, backend commits, peer bytes labelled
//! with the peer's ID, round trips to every peer, proposals, gRPC calls.
//! `--metrics extensive` adds the gRPC handling-time histogram; defrags and
//! snapshots are timed.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, hubd_bin, start_cluster_each, Member};

/// The names issue 8 requires (process_* by one of them).
const REQUIRED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_version",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_resident_memory_bytes",
    // What etcd's own Grafana dashboard plots besides.
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
];

const PUT_OK: &str =
    r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;

fn get(url: &str) -> String {
    let out = Command::new("curl").args(["-s", url]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// One scrape, sample by sample (`name{labels}` → value).
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn of(url: &str) -> Scrape {
        let text = get(&format!("{url}/metrics"));
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape { text, samples }
    }

    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Whether `name` is exported with its type, as Prometheus reads it.
    fn has(&self, name: &str) -> bool {
        self.text.lines().any(|l| l.strip_prefix("# TYPE ").is_some_and(|t| t.split(' ').next() == Some(name)))
    }
}

/// Scrapes `url` until `ready` holds (the counters of a write land on a
/// follower when it applies it, shortly after the client's answer).
fn scrape_until(url: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = Scrape::of(url);
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{url}: {what} never held; last scrape:\n{}", s.text);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Member name → ID in hex, as `etcdctl member list` and etcd's labels print it.
fn member_ids(m: &Member) -> HashMap<String, String> {
    let out = m.etcdctl(&["member", "list"]);
    assert!(out.status.success(), "member list: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(", ").collect();
            Some((fields.get(2)?.to_string(), fields.first()?.to_string()))
        })
        .collect()
}

#[test]
fn cluster_metrics_move_with_a_workload() {
    let metrics_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let metrics_urls: Vec<String> = metrics_ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let members = start_cluster_each(&hubd_bin(), 3, |i| vec!["--listen-metrics-urls".into(), metrics_urls[i].clone()]);
    let client_urls: Vec<String> = members.iter().map(|m| format!("http://{}", m.endpoint())).collect();
    let ids = member_ids(&members[0]);
    let id = |m: &Member| ids.get(&m.name).cloned().unwrap_or_else(|| panic!("{} not in {ids:?}", m.name));

    let before: Vec<Scrape> = metrics_urls
        .iter()
        .map(|url| scrape_until(url, "a leader", |s| s.get("etcd_server_has_leader") == 1.0))
        .collect();
    // Writes through every member: followers forward them to the leader.
    const PUTS: usize = 6;
    for i in 0..PUTS {
        let out = members[i % 3].etcdctl(&["put", &format!("k{i}"), "v"]);
        assert!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    }

    let leader = before.iter().position(|s| s.get("etcd_server_is_leader") == 1.0).expect("one member leads");
    let leader_id = id(&members[leader]);
    for (i, m) in members.iter().enumerate() {
        let applied_before = before[i].get("etcd_server_proposals_applied_total");
        let rtt = |peer: &Member| format!(r#"etcd_network_peer_round_trip_time_seconds_count{{To="{}"}}"#, id(peer));
        let peers: Vec<&Member> = members.iter().filter(|p| p.name != m.name).collect();
        // Every member probes every peer every few seconds.
        let after = scrape_until(&client_urls[i], "the puts applied and every peer probed", |s| {
            s.get("etcd_server_proposals_applied_total") >= applied_before + PUTS as f64
                && peers.iter().all(|p| s.get(&rtt(p)) > 0.0)
        });
        for name in REQUIRED {
            assert!(after.has(name), "{}: no {name} in\n{}", m.name, after.text);
        }
        assert!(!after.has("grpc_server_handling_seconds"), "basic metrics have no handling-time histogram");
        assert!(
            after.get("etcd_server_proposals_committed_total") > before[i].get("etcd_server_proposals_committed_total"),
            "{}: committed did not move",
            m.name
        );
        assert_eq!(after.get(PUT_OK), before[i].get(PUT_OK) + (PUTS / 3) as f64, "{}: Put calls handled", m.name);
        assert!(after.get("etcd_disk_wal_fsync_duration_seconds_count") > 0.0, "{}: no WAL fsync timed", m.name);
        assert!(after.get("etcd_disk_backend_commit_duration_seconds_count") > 0.0, "{}: no backend commit timed", m.name);
        assert_eq!(after.get("etcd_debugging_mvcc_keys_total"), PUTS as f64, "{}", m.name);
        for traffic in ["etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"] {
            assert!(after.get(traffic) > before[i].get(traffic), "{}: {traffic} did not move", m.name);
        }

        // Raft traffic between the leader and each follower, labelled by the
        // peer's ID in hex (followers do not talk to each other).
        for peer in peers.iter().filter(|p| i == leader || id(p) == leader_id) {
            let peer_id = id(peer);
            let sent = after.get(&format!(r#"etcd_network_peer_sent_bytes_total{{To="{peer_id}"}}"#));
            let received = after.get(&format!(r#"etcd_network_peer_received_bytes_total{{From="{peer_id}"}}"#));
            assert!(sent > 0.0 && received > 0.0, "{}: sent {sent} to / received {received} from {peer_id}", m.name);
        }

        // The --listen-metrics-urls listener serves the same registry.
        let separate = Scrape::of(&metrics_urls[i]);
        assert!(separate.get(PUT_OK) >= after.get(PUT_OK), "{}: {} lags", m.name, metrics_urls[i]);
    }
}

#[test]
fn extensive_metrics_add_grpc_handling_time() {
    let hub = Member::start_with(&hubd_bin(), &["--metrics", "extensive"]);
    assert!(hub.etcdctl(&["put", "k", "v"]).status.success());
    let scrape = Scrape::of(&format!("http://{}", hub.endpoint()));
    assert!(scrape.has("grpc_server_handling_seconds"), "{}", scrape.text);
    let put = r#"grpc_server_handling_seconds_count{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    assert_eq!(scrape.get(put), 1.0, "{}", scrape.text);
    let bucket = r#"grpc_server_handling_seconds_bucket{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary",le="+Inf"}"#;
    assert_eq!(scrape.get(bucket), 1.0, "go-grpc-prometheus's default buckets end at +Inf");
}

#[test]
fn defrag_and_snapshot_are_timed() {
    let hub = Member::start(&hubd_bin());
    assert!(hub.etcdctl(&["put", "k", "v"]).status.success());
    assert!(hub.etcdctl(&["defrag"]).status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snap.db");
    assert!(hub.etcdctl(&["snapshot", "save", &file.to_string_lossy()]).status.success());
    // The snapshot is timed once its last piece is sent, just after etcdctl has it.
    let scrape = scrape_until(&format!("http://{}", hub.endpoint()), "the snapshot timed", |s| {
        s.get("etcd_disk_backend_snapshot_duration_seconds_count") == 1.0
    });
    assert_eq!(scrape.get("etcd_disk_backend_defrag_duration_seconds_count"), 1.0);
    assert_eq!(scrape.get("etcd_disk_defrag_inflight"), 0.0);
}
