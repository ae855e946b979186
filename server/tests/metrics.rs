//! `/metrics` against etcd 3.6.16's. The same workload on an etcd member (or
//! three) and on hubd: hub exports the same families (name, type, label
//! names) but those [`NOT_IN_HUB`] lists with the reason, and the same
//! families move. Then, on hub alone: every metric the public etcd dashboards
//! and alerts use is there on the client URL and on `--listen-metrics-urls`,
//! and the ones that measure work moved on every member — WAL fsyncs, backend
//! commits, peer bytes labelled with the peer's ID, round trips to every
//! peer, proposals, gRPC calls. `--metrics extensive` adds the gRPC
//! handling-time histogram; defrags and snapshots are timed.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{curl_get as get, etcd36_bin, free_port, hubd_bin, start_cluster, start_cluster_each, Member};

/// Families etcd 3.6.16 exports that hub does not, by name prefix, with the reason.
const NOT_IN_HUB: &[(&str, &str)] = &[
    ("go_", "Go's runtime (goroutines, GC, heap, threads): hub is not a Go program"),
    ("etcd_server_go_version", "the Go release etcd was built with: hub is not a Go program"),
    ("etcd_debugging_store_", "etcd's v2 store (the v2 API and its copy of the membership): hub has none"),
    ("etcd_grpc_proxy_", "`etcd grpc-proxy`'s cache and coalescing: hub has no gRPC proxy"),
];

/// Families etcd shows only some time after they move, so a comparison right
/// after a workload may miss them on etcd's side: etcd observes the round
/// trip to each peer every 30 s, hub every 5 s.
const LATER_IN_ETCD: &[&str] = &["etcd_network_peer_round_trip_time_seconds"];

/// What moves under the workload, on etcd and on hub alike (series as the
/// exposition prints them).
const MOVED_BY_WORKLOAD: &[&str] = &[
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_total_put_size_in_bytes",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_ttl_total_count",
    "etcd_mvcc_hash_rev_duration_seconds_count",
    "etcd_disk_backend_defrag_duration_seconds_count",
    "etcd_disk_wal_write_duration_seconds_count",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_health_success",
    r#"etcd_server_apply_duration_seconds_count{op="Put",success="true",version="v3"}"#,
    r#"etcd_server_apply_duration_seconds_count{op="Txn",success="true",version="v3"}"#,
    r#"etcd_server_apply_duration_seconds_count{op="LeaseGrant",success="true",version="v3"}"#,
    r#"etcd_server_range_duration_seconds_count{success="true"}"#,
    r#"etcd_server_client_requests_total{client_api_version="3.4",type="unary"}"#,
    r#"etcd_server_client_requests_total{client_api_version="3.4",type="stream"}"#,
    r#"grpc_server_msg_received_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
    r#"grpc_server_msg_sent_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
    r#"grpc_server_msg_sent_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}"#,
    r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
    r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
    r#"promhttp_metric_handler_requests_total{code="200"}"#,
];

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

/// A family as Prometheus reads it: its type and the names of its labels.
type Families = BTreeMap<String, (String, BTreeSet<String>)>;

/// The families of an exposition text, without the ones hub leaves out.
fn families(text: &str) -> Families {
    let mut families = Families::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("# TYPE name type");
            families.insert(name.to_string(), (kind.to_string(), BTreeSet::new()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = ["_bucket", "_sum", "_count", ""]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|f| families.contains_key(*f))
                .unwrap_or_else(|| panic!("{name} has no # TYPE"));
            let names = labels.split("\",").filter_map(|l| l.split_once("=\"")).map(|(n, _)| n.trim_start_matches(','));
            let set = &mut families.get_mut(family).expect("family").1;
            set.extend(names.filter(|n| *n != "le" && *n != "quantile").map(String::from));
        }
    }
    families.retain(|name, _| !NOT_IN_HUB.iter().any(|(prefix, _)| name.starts_with(prefix)));
    families
}

/// What `hub` and `etcd` export differently, one family a line; empty when alike.
fn differences(etcd: &Families, hub: &Families) -> String {
    let mut out = String::new();
    for (name, e) in etcd.iter().filter(|(n, _)| !LATER_IN_ETCD.contains(&n.as_str())) {
        match hub.get(name) {
            None => out += &format!("missing in hub: {name} {} {:?}\n", e.0, e.1),
            Some(h) if h != e => out += &format!("differs: {name}: etcd {e:?}, hub {h:?}\n"),
            Some(_) => {}
        }
    }
    // hub's own families (`hub_*`: the sizes of its batches) are additions.
    let extra = |n: &str| !etcd.contains_key(n) && !LATER_IN_ETCD.contains(&n) && !n.starts_with("hub_");
    for (name, h) in hub.iter().filter(|(n, _)| extra(n)) {
        out += &format!("not in etcd: {name} {} {:?}\n", h.0, h.1);
    }
    out
}

/// The same small workload on any server: writes, reads, a txn, a lease, a
/// watch that sees an event, a compaction, a defrag, a snapshot, a hash, a
/// health check.
fn workload(m: &Member) {
    let ok = |args: &[&str]| {
        let out = m.etcdctl(args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(&["put", "a", "1"]);
    ok(&["put", "b", "2"]);
    ok(&["get", "a"]);
    ok(&["get", "", "--prefix"]);
    let txn = m.etcdctl_stdin(&["txn"], Some("value(\"a\") = \"1\"\n\nput a 3\nput d 4\n\n\n"));
    assert!(String::from_utf8_lossy(&txn.stdout).contains("SUCCESS"), "txn: {txn:?}");
    let lease = ok(&["lease", "grant", "60"]);
    let id = lease.split_whitespace().nth(1).expect("lease ID");
    ok(&["put", "--lease", id, "c", "3"]);
    ok(&["lease", "keep-alive", "--once", id]);
    ok(&["lease", "revoke", id]);
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &m.endpoint(), "watch", "a"])
        .stdout(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    std::thread::sleep(Duration::from_millis(500));
    ok(&["put", "a", "5"]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let _ = watch.wait();
    ok(&["compact", "3"]);
    ok(&["defrag"]);
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&["snapshot", "save", &dir.path().join("s.db").to_string_lossy()]);
    ok(&["del", "a"]);
    ok(&["endpoint", "hashkv"]);
    get(&format!("http://{}/health", m.endpoint()));
}

/// Runs the workload on `m` between two scrapes; the second once etcd's
/// asynchronous compaction is done.
fn scrapes_around_workload(m: &Member) -> (Scrape, Scrape) {
    let url = format!("http://{}", m.endpoint());
    let before = Scrape::of(&url);
    workload(m);
    let after = scrape_until(&url, "the compaction finished", |s| {
        s.get("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count") > 0.0
    });
    (before, after)
}

/// What the workload leaves equal on etcd and on hub: what etcd's MVCC
/// layer counts (a txn's compares and its writes are two of its
/// transactions), revisions, leases, watch events, unary gRPC messages (how
/// many messages a client sends on a stream before it goes away depends on
/// its timing).
const SAME_AFTER_WORKLOAD: &[&str] = &[
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_total_put_size_in_bytes",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_auth_revision",
    r#"etcd_server_apply_duration_seconds_count{op="Put",success="true",version="v3"}"#,
    r#"etcd_server_apply_duration_seconds_count{op="Txn",success="true",version="v3"}"#,
    r#"etcd_server_client_requests_total{client_api_version="3.4",type="unary"}"#,
    r#"etcd_server_client_requests_total{client_api_version="3.4",type="stream"}"#,
    r#"grpc_server_msg_received_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
    r#"grpc_server_msg_sent_total{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
    r#"grpc_server_msg_sent_total{grpc_method="Snapshot",grpc_service="etcdserverpb.Maintenance",grpc_type="server_stream"}"#,
];

/// Which of [`MOVED_BY_WORKLOAD`] did not move.
fn unmoved(before: &Scrape, after: &Scrape) -> Vec<&'static str> {
    MOVED_BY_WORKLOAD.iter().copied().filter(|s| after.get(s) <= before.get(s)).collect()
}

#[test]
fn one_member_exports_and_moves_what_etcd_36_does() {
    let Some(etcd) = etcd36_bin() else { return };
    let etcd = Member::start(&etcd);
    let hub = Member::start(&hubd_bin());
    let (etcd_before, etcd_after) = scrapes_around_workload(&etcd);
    let (hub_before, hub_after) = scrapes_around_workload(&hub);
    let diff = differences(&families(&etcd_after.text), &families(&hub_after.text));
    assert!(diff.is_empty(), "families hub exports unlike etcd 3.6.16:\n{diff}");
    assert_eq!(unmoved(&etcd_before, &etcd_after), Vec::<&str>::new(), "the workload moves these on etcd too");
    assert_eq!(unmoved(&hub_before, &hub_after), Vec::<&str>::new(), "did not move on hub:\n{}", hub_after.text);
    let unequal: Vec<String> = SAME_AFTER_WORKLOAD
        .iter()
        .filter(|s| etcd_after.get(s) != hub_after.get(s))
        .map(|s| format!("{s}: etcd {}, hub {}", etcd_after.get(s), hub_after.get(s)))
        .collect();
    assert!(unequal.is_empty(), "the same workload counted differently:\n{}", unequal.join("\n"));
    // Every KV method has its OK row before its first call, as go-grpc-prometheus makes them.
    for method in ["Range", "Put", "DeleteRange", "Txn", "Compact"] {
        let row = format!(r#"grpc_server_handled_total{{grpc_code="OK",grpc_method="{method}",grpc_service="etcdserverpb.KV",grpc_type="unary"}}"#);
        assert!(hub_before.samples.contains_key(&row), "no {row} before any call");
    }
}

#[test]
fn three_members_export_the_peer_families_etcd_36_does() {
    let Some(etcd) = etcd36_bin() else { return };
    for (i, (etcd, hub)) in start_cluster(&etcd, 3).iter().zip(start_cluster(&hubd_bin(), 3).iter()).enumerate() {
        // Each member serves some of the workload, so each has every row.
        let put = format!("k{i}");
        assert!(etcd.etcdctl(&["put", &put, "v"]).status.success());
        assert!(hub.etcdctl(&["put", &put, "v"]).status.success());
        let ready = |s: &Scrape| {
            s.text.contains("etcd_network_peer_received_bytes_total{")
                && s.text.lines().filter(|l| l.starts_with("etcd_network_active_peers{")).count() == 2
        };
        let etcd_scrape = scrape_until(&format!("http://{}", etcd.endpoint()), "peer traffic", ready);
        let hub_scrape = scrape_until(&format!("http://{}", hub.endpoint()), "peer traffic", ready);
        let diff = differences(&families(&etcd_scrape.text), &families(&hub_scrape.text));
        assert!(diff.is_empty(), "member {i}: families hub exports unlike etcd 3.6.16:\n{diff}");
        for family in ["etcd_network_known_peers{", "etcd_network_active_peers{"] {
            let rows = |s: &Scrape| s.text.lines().filter(|l| l.starts_with(family)).count();
            assert_eq!(rows(&hub_scrape), rows(&etcd_scrape), "member {i}: rows of {family}");
        }
    }
}

const PUT_OK: &str =
    r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;

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
