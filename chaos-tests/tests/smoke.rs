//! A short run of the whole suite: a 3-member cluster under kills and
//! partitions, every workload, every checker; it must find no anomaly.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hub_chaos_tests::{run, Config};

/// The hubd of this test's profile, `target/<profile>/hubd`, that `cargo test
/// --workspace` builds (built here if missing).
fn hubd() -> PathBuf {
    if let Some(p) = std::env::var_os("HUB_CHAOS_HUBD") {
        return PathBuf::from(p);
    }
    // A test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let bin = profile.join("hubd");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = profile.file_name().is_some_and(|p| p == "release");
        let mut args = vec!["build", "-p", "hub-server", "--bin", "hubd"];
        args.extend(release.then_some("--release"));
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(cargo).current_dir(&root).args(args).status();
        assert!(status.is_ok_and(|s| s.success()), "cargo build hubd");
    }
    bin
}

/// A 30-second run of 3 members under `nemesis`, writing into `dir`.
fn short_run(dir: &std::path::Path, nemesis: Vec<String>, seed: u64) -> Config {
    Config {
        hubd: hubd(),
        members: 3,
        time: Duration::from_secs(30),
        nemesis,
        seed,
        bugs: Vec::new(),
        dir: dir.to_path_buf(),
        op_timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_run_finds_no_anomaly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = short_run(dir.path(), vec!["kill".into(), "partition".into()], 7);
    let summary = run(config).await.expect("run");
    summary.print();
    assert!(summary.anomalies.is_empty(), "anomalies: {:?}", summary.anomalies);
    assert!(summary.faults.values().sum::<usize>() >= 1, "no fault was injected");
    let ok: usize = summary.ops.values().map(|c| c.ok).sum();
    assert!(ok > 100, "too few operations succeeded: {ok}");
}

/// The disk-full nemesis: each time, a write through the full member is
/// refused with NOSPACE, the alarm is disarmed afterwards, and the refused
/// writes leave no anomaly (they are definite failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_raises_nospace_and_finds_no_anomaly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = short_run(dir.path(), vec!["disk-full".into()], 3);
    let summary = run(config).await.expect("run");
    summary.print();
    assert!(summary.anomalies.is_empty(), "anomalies: {:?}", summary.anomalies);
    let history = std::fs::read_to_string(dir.path().join("history.jsonl")).expect("history");
    let faults: Vec<serde_json::Value> = history
        .lines()
        .filter(|l| l.contains("nemesis/disk-full"))
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(!faults.is_empty(), "no disk-full fault was injected");
    for f in &faults {
        assert_eq!(f["output"]["nospace"], true, "{f}");
        assert_eq!(f["output"]["disarmed"], true, "{f}");
    }
}

/// `--inject-bug` (and the disk faults) need a `failpoints` build: against any
/// other hubd the run refuses to start (exit 2) instead of running clean.
#[test]
fn injected_bugs_need_a_failpoints_build() {
    let hubd = hubd();
    if hub_chaos_tests::cluster::has_failpoints(&hubd).expect("run hubd --version") {
        eprintln!("skipped: {} is a failpoints build", hubd.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for fault in [["--inject-bug", "stale-read"], ["--nemesis", "disk"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_hub-chaos"))
            .arg("--hubd")
            .arg(&hubd)
            .args(fault)
            .args(["--time", "2s", "--members", "3", "--seed", "1"])
            .arg("--dir")
            .arg(dir.path())
            .output()
            .expect("run hub-chaos");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fault:?}: {stderr}");
        assert!(stderr.contains("built without `--features failpoints`"), "{fault:?}: {stderr}");
    }
}
