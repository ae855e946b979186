//! Snapshots against the real thing (etcd 3.4.23 and etcdctl, run as
//! processes on free loopback ports):
//! - a hub snapshot passes `etcdctl snapshot status` with hub's figures, and
//!   an etcd restored from it with `etcdctl snapshot restore` serves the same
//!   keys, revisions, versions, compaction and leases as hub;
//! - an etcd snapshot (`etcdctl snapshot save`) restored with
//!   [`restore_into`] opens as a state machine that serves what etcd served.
//!
//! Skipped (with a line on stderr) where etcd or etcdctl is not installed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hub_proto::etcdserverpb::{
    request_op, CompactionRequest, DeleteRangeRequest, InternalRaftRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use hub_proto::mvccpb::KeyValue;
use hub_store::snapshot::{layout, restore_into, write_snapshot, RestoreOptions, SnapshotInfo, SnapshotReader};
use hub_store::{EtcdError, StateMachine, StoreError};
use serde_json::Value;

const ETCD: &str = "etcd";
const ETCDCTL: &str = "etcdctl";

/// Whether both binaries can be started at all; any other failure is the
/// test's to report.
fn installed() -> bool {
    let found = |bin: &str| Command::new(bin).arg("--version").output().is_ok();
    if found(ETCD) && found(ETCDCTL) {
        true
    } else {
        eprintln!("skipped: etcd and etcdctl (Debian etcd-server, etcd-client) are not installed");
        false
    }
}

use hub_testkit::free_port;

fn etcdctl(args: &[&str]) -> Output {
    Command::new(ETCDCTL).env("ETCDCTL_API", "3").args(args).output().unwrap()
}

fn etcdctl_ok(args: &[&str]) -> String {
    let out = etcdctl(args);
    assert!(out.status.success(), "etcdctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One etcd member on loopback, stopped when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    /// Starts etcd on `data_dir` (fresh, or restored with the same `peer_url`).
    fn start(data_dir: &Path, peer_url: &str, log_path: &Path) -> Etcd {
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let log = File::create(log_path).unwrap();
        let child = Command::new(ETCD)
            .args(["--name", "default", "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut etcd = Etcd { child, endpoint };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcdctl(&["--endpoints", &etcd.endpoint, "--dial-timeout", "1s", "endpoint", "health"]).status.success()
        {
            let exited = etcd.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "etcd did not become healthy ({exited:?}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn ctl(&self, args: &[&str]) -> String {
        let mut all = vec!["--endpoints", &self.endpoint];
        all.extend_from_slice(args);
        etcdctl_ok(&all)
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-w", "json"]);
        serde_json::from_str(&self.ctl(&all)).unwrap()
    }

    /// A txn of puts without compares: one revision, many sub-revisions.
    fn txn_puts(&self, puts: &[(String, String)]) {
        let mut script = String::from("\n");
        for (k, v) in puts {
            script.push_str(&format!("put {k} {v}\n"));
        }
        script.push_str("\n\n");
        let mut child = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint, "txn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("SUCCESS"), "txn: {out:?}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key as both sides report it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Kv {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Kv {
        Kv {
            key: kv.key.clone(),
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).unwrap()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// etcd's keys at `rev` (0 = current) and its header revision.
fn etcd_keys(etcd: &Etcd, rev: i64) -> (Vec<Kv>, i64) {
    let json = etcd.ctl_json(&["get", "", "--prefix", &format!("--rev={rev}")]);
    let kvs = json["kvs"].as_array().map(Vec::as_slice).unwrap_or_default();
    let kvs = kvs
        .iter()
        .map(|kv| Kv {
            key: b64(&kv["key"]),
            value: b64(&kv["value"]),
            create_revision: int(&kv["create_revision"]),
            mod_revision: int(&kv["mod_revision"]),
            version: int(&kv["version"]),
            lease: int(&kv["lease"]),
        })
        .collect();
    (kvs, int(&json["header"]["revision"]))
}

fn hub_keys(sm: &StateMachine, rev: i64) -> Result<Vec<Kv>, StoreError> {
    let all = RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() };
    Ok(sm.range(&all)?.kvs.iter().map(Kv::from).collect())
}

/// etcd's leases: (id, granted TTL, attached keys).
fn etcd_leases(etcd: &Etcd) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    let list = etcd.ctl_json(&["lease", "list"]);
    let mut leases: Vec<_> = list["leases"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let id = int(&l["id"]);
            let ttl = etcd.ctl_json(&["lease", "timetolive", &format!("{id:x}"), "--keys"]);
            let mut keys: Vec<Vec<u8>> =
                ttl["keys"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(b64).collect();
            keys.sort();
            (id, int(&ttl["granted-ttl"]), keys)
        })
        .collect();
    leases.sort();
    leases
}

fn hub_leases(sm: &StateMachine) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    sm.leases().map(|l| (l.id, l.ttl, l.keys.iter().cloned().collect())).collect()
}

fn snapshot_status(path: &Path) -> SnapshotInfo {
    let json: Value =
        serde_json::from_str(&etcdctl_ok(&["snapshot", "status", path.to_str().unwrap(), "-w", "json"])).unwrap();
    SnapshotInfo {
        hash: json["hash"].as_u64().unwrap() as u32,
        revision: int(&json["revision"]),
        total_keys: json["totalKey"].as_u64().unwrap() as usize,
        total_size: json["totalSize"].as_u64().unwrap(),
    }
}

struct Hub {
    sm: StateMachine,
    index: u64,
}

impl Hub {
    fn apply(&mut self, req: InternalRaftRequest) {
        self.index += 1;
        self.sm.apply(self.index, &req, Instant::now()).unwrap();
    }

    fn put(&mut self, key: &str, value: &[u8], lease: i64) {
        let put = PutRequest { key: key.into(), value: value.to_vec(), lease, ..Default::default() };
        self.apply(InternalRaftRequest { put: Some(put), ..Default::default() });
    }

    fn delete(&mut self, key: &str, end: &str) {
        let del = DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
        self.apply(InternalRaftRequest { delete_range: Some(del), ..Default::default() });
    }

    fn txn_puts(&mut self, puts: &[(String, String)]) {
        let success = puts
            .iter()
            .map(|(k, v)| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: k.clone().into_bytes(),
                    value: v.clone().into_bytes(),
                    ..Default::default()
                })),
            })
            .collect();
        let txn = TxnRequest { compare: Vec::new(), success, failure: Vec::new() };
        self.apply(InternalRaftRequest { txn: Some(txn), ..Default::default() });
    }
}

fn batch(prefix: &str, from: usize, n: usize) -> Vec<(String, String)> {
    (from..from + n).map(|i| (format!("{prefix}/{i:05}"), format!("value-{i}"))).collect()
}

#[test]
fn hub_snapshot_restores_into_etcd() {
    if !installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub { sm: StateMachine::open(&work.path().join("hub"), 1).unwrap(), index: 0 };
    hub.apply(InternalRaftRequest {
        lease_grant: Some(LeaseGrantRequest { id: 0x1234, ttl: 600 }),
        ..Default::default()
    });
    hub.apply(InternalRaftRequest {
        lease_grant: Some(LeaseGrantRequest { id: 0x99, ttl: 300 }),
        ..Default::default()
    });
    hub.put("a", b"1", 0);
    hub.put("b", b"2", 0);
    hub.put("a", b"3", 0);
    hub.delete("b", "");
    hub.put("c", b"4", 0x1234);
    hub.apply(InternalRaftRequest {
        compaction: Some(CompactionRequest { revision: 4, physical: false }),
        ..Default::default()
    });
    for i in 0..15 {
        hub.txn_puts(&batch("many", i * 100, 100));
    }
    hub.put("big", &vec![b'x'; 6000], 0x99);
    hub.put("a", b"5", 0);
    hub.delete("many/00100", "many/00200");
    let current = hub.sm.current_revision();

    let snap = work.path().join("hub.snap");
    let info = write_snapshot(&hub.sm, &mut File::create(&snap).unwrap()).unwrap();
    assert_eq!(snapshot_status(&snap), info, "etcdctl snapshot status disagrees with hub");
    assert_eq!(info.revision, current);

    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let data_dir = work.path().join("etcd");
    etcdctl_ok(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--name",
        "default",
        "--initial-cluster",
        &format!("default={peer_url}"),
        "--initial-advertise-peer-urls",
        &peer_url,
    ]);
    let etcd = Etcd::start(&data_dir, &peer_url, &work.path().join("etcd.log"));

    let (kvs, revision) = etcd_keys(&etcd, 0);
    assert_eq!(revision, current);
    assert_eq!(kvs, hub_keys(&hub.sm, 0).unwrap());
    assert_eq!(kvs.len(), 3 + 1500 - 100);
    for rev in [4, 5, 6, 7, 12, current - 2, current - 1] {
        assert_eq!(etcd_keys(&etcd, rev).0, hub_keys(&hub.sm, rev).unwrap(), "at revision {rev}");
    }
    let compacted = etcdctl(&["--endpoints", &etcd.endpoint, "get", "a", "--rev=3"]);
    assert!(String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted"));
    assert_eq!(etcd_leases(&etcd), hub_leases(&hub.sm));
    assert_eq!(etcd_leases(&etcd).len(), 2);

    // The restored etcd goes on from hub's revision, and its bbolt changes the
    // pages hub wrote: a compaction deletes most revisions (bbolt rebalances
    // hub's leaves and branches), a defrag copies every bucket.
    etcd.ctl(&["put", "after", "x"]);
    assert_eq!(etcd_keys(&etcd, 0).1, current + 1);
    etcd.ctl(&["compact", &(current + 1).to_string(), "--physical"]);
    etcd.ctl(&["defrag"]);
    let (mut kvs, revision) = etcd_keys(&etcd, 0);
    assert_eq!(revision, current + 1);
    kvs.retain(|kv| kv.key != b"after");
    assert_eq!(kvs, hub_keys(&hub.sm, 0).unwrap());
}

#[test]
fn etcd_snapshot_restores_into_hub() {
    if !installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let etcd = Etcd::start(&work.path().join("etcd"), &peer_url, &work.path().join("etcd.log"));
    etcd.ctl(&["put", "a", "1"]);
    etcd.ctl(&["put", "b", "2"]);
    etcd.ctl(&["put", "a", "3"]);
    etcd.ctl(&["del", "b"]);
    let grant = |ttl: &str| {
        let out = etcd.ctl(&["lease", "grant", ttl]);
        let hex = out.split_whitespace().nth(1).unwrap().to_string();
        (i64::from_str_radix(&hex, 16).unwrap(), hex)
    };
    let (_, lease_hex) = grant("600");
    grant("300"); // a lease without keys
    etcd.ctl(&["put", "c", "4", "--lease", &lease_hex]);
    etcd.ctl(&["compact", "3"]);
    for i in 0..12 {
        etcd.txn_puts(&batch("many", i * 100, 100));
    }
    etcd.ctl(&["put", "big", &"y".repeat(6000), "--lease", &lease_hex]);
    etcd.ctl(&["del", "many/001", "--prefix"]);
    etcd.ctl(&["put", "a", "5"]);
    let (expected, revision) = etcd_keys(&etcd, 0);
    let history: Vec<(i64, Vec<Kv>)> =
        [3, 4, 6, 8, 12, revision - 2].iter().map(|&r| (r, etcd_keys(&etcd, r).0)).collect();
    let expected_leases = etcd_leases(&etcd);
    assert_eq!(expected_leases.len(), 2);

    let snap = work.path().join("etcd.snap");
    etcd.ctl(&["snapshot", "save", snap.to_str().unwrap()]);
    drop(etcd);

    let mut reader = SnapshotReader::open(&snap, false).unwrap();
    assert_eq!(reader.status().unwrap(), snapshot_status(&snap), "hub's status figures differ from etcdctl's");
    let members = reader.records(layout::MEMBERS).unwrap();
    assert_eq!(members.len(), 1);
    assert!(String::from_utf8_lossy(&members[0].1).contains(&peer_url));
    assert_eq!(reader.records(layout::CLUSTER).unwrap(), vec![(b"clusterVersion".to_vec(), b"3.4.0".to_vec())]);
    let index = reader.records(layout::META).unwrap().into_iter().find(|(k, _)| k == b"consistent_index").unwrap().1;

    let dir = work.path().join("hub");
    let summary = restore_into(&mut reader, &dir, &RestoreOptions::default()).unwrap();
    assert_eq!(summary.revision, revision);
    assert_eq!(summary.compact_revision, 3);
    let sm = StateMachine::open(&dir, 1).unwrap();
    assert_eq!(sm.current_revision(), revision);
    assert_eq!(sm.compact_revision(), 3);
    assert_eq!(sm.applied_index().to_be_bytes().to_vec(), index);
    assert_eq!(hub_keys(&sm, 0).unwrap(), expected);
    for (rev, kvs) in history {
        assert_eq!(hub_keys(&sm, rev).unwrap(), kvs, "at revision {rev}");
    }
    assert!(matches!(hub_keys(&sm, 2), Err(StoreError::Etcd(EtcdError::Compacted))));
    assert_eq!(hub_leases(&sm), expected_leases);
}

/// etcdctl refuses a damaged hub snapshot the way hub refuses a damaged etcd one.
#[test]
fn both_sides_refuse_a_corrupted_snapshot() {
    if !installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub { sm: StateMachine::open(&work.path().join("hub"), 1).unwrap(), index: 0 };
    hub.put("k", &vec![b'v'; 5000], 0);
    let mut bytes = Vec::new();
    write_snapshot(&hub.sm, &mut bytes).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let path: PathBuf = work.path().join("bad.snap");
    std::fs::write(&path, &bytes).unwrap();

    let err = SnapshotReader::open(&path, false).err().unwrap().to_string();
    assert!(err.contains("sha256 mismatch"), "{err}");
    let out = etcdctl(&[
        "snapshot",
        "restore",
        path.to_str().unwrap(),
        "--data-dir",
        work.path().join("d").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected sha256"));
}

/// Peak resident memory of this process, after resetting the peak (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok());
    kib.unwrap_or(0) / 1024
}

/// ~100 MB of values, a three-level tree in the `key` bucket: hub → etcd →
/// hub. Slow in a debug build (about a minute), so run by hand:
/// `cargo test -p hub-store --test snapshot_etcd -- --ignored --nocapture`.
#[test]
#[ignore]
fn a_large_snapshot_goes_through_etcd_and_back() {
    if !installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut hub = Hub { sm: StateMachine::open(&work.path().join("hub"), 1).unwrap(), index: 0 };
    let value = "v".repeat(1000);
    for i in 0..800 {
        let puts: Vec<_> = (0..128).map(|j| (format!("large/{:07}", i * 128 + j), value.clone())).collect();
        hub.txn_puts(&puts);
    }
    let snap = work.path().join("large.snap");
    reset_peak_rss();
    let before = peak_rss_mib();
    let started = Instant::now();
    let info = write_snapshot(&hub.sm, &mut File::create(&snap).unwrap()).unwrap();
    eprintln!(
        "wrote {} MB in {:?}, peak RSS {} MiB (was {} MiB before)",
        info.total_size >> 20,
        started.elapsed(),
        peak_rss_mib(),
        before
    );
    let started = Instant::now();
    assert_eq!(snapshot_status(&snap), info);
    eprintln!("etcdctl snapshot status agreed in {:?}: {info:?}", started.elapsed());

    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let data_dir = work.path().join("etcd");
    etcdctl_ok(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--initial-cluster",
        &format!("default={peer_url}"),
        "--initial-advertise-peer-urls",
        &peer_url,
    ]);
    let etcd = Etcd::start(&data_dir, &peer_url, &work.path().join("etcd.log"));
    let count = etcd.ctl_json(&["get", "large/", "--prefix", "--limit=1"]);
    assert_eq!(int(&count["count"]), 800 * 128);
    assert_eq!(int(&count["header"]["revision"]), hub.sm.current_revision());
    let sample = etcd.ctl_json(&["get", "large/0050000"]);
    assert_eq!(b64(&sample["kvs"][0]["value"]), value.as_bytes());
    let back = work.path().join("etcd.snap");
    etcd.ctl(&["snapshot", "save", back.to_str().unwrap()]);
    drop(etcd);

    reset_peak_rss();
    let started = Instant::now();
    let mut reader = SnapshotReader::open(&back, false).unwrap();
    let summary = restore_into(&mut reader, &work.path().join("hub2"), &RestoreOptions::default()).unwrap();
    eprintln!("restored etcd's snapshot in {:?}, peak RSS {} MiB: {summary:?}", started.elapsed(), peak_rss_mib());
    let sm = StateMachine::open(&work.path().join("hub2"), 1).unwrap();
    assert_eq!(sm.current_revision(), hub.sm.current_revision());
    assert_eq!(hub_keys(&sm, 0).unwrap(), hub_keys(&hub.sm, 0).unwrap());
}
