//! hubd refuses what etcd 3.6.16 refuses, as it refuses it: each command
//! line below is given to etcd 3.6.16 and to hubd; both must exit with the
//! same status, and hubd's output must carry etcd's message (etcd prints a
//! flag it cannot parse on a line of its own and exits 2; a configuration
//! it rejects goes in the `error` field of a JSON log line, exit 1).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{etcd36_bin, hubd_bin};

/// Command lines etcd 3.6.16 refuses (on top of a data directory of their own).
const REFUSED: &[&[&str]] = &[
    &["--feature-gates=Foo=true"],
    &["--feature-gates=CompactHashCheck=x"],
    &["--feature-gates", "CompactHashCheck"],
    &["--v2-deprecation=bad"],
    &["--max-learners=x"],
    &["--snapshot-catchup-entries=-1"],
    &["--discovery-dial-timeout=5"],
    &["--tls-min-version=TLS1.1"],
    &["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"],
    &["--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    &["--corrupt-check-time=5s", "--experimental-corrupt-check-time=5s"],
    &["--watch-progress-notify-interval=1s", "--experimental-watch-progress-notify-interval=1s"],
    &["--experimental-initial-corrupt-check=true", "--feature-gates=InitialCorruptCheck=true"],
    &["--experimental-enable-lease-checkpoint=true", "--feature-gates=LeaseCheckpointPersist=true"],
    &["--feature-gates=AllAlpha=true", "--experimental-compact-hash-check-enabled"],
    &["--experimental-enable-lease-checkpoint-persist"],
    &["--discovery-token=x"],
    &["--discovery-endpoints=a,,b", "--discovery-token=t"],
    &["--discovery-proxy=x", "--discovery-token=t"],
    &["--compact-hash-check-time=0"],
    &["--warning-unary-request-duration=1s", "--experimental-warning-unary-request-duration=2s"],
    // hubd's default logger is etcd 3.4's (capnslog); etcd 3.6 has only zap.
    &["--logger=zap", "--log-format=xml"],
    &["--logger=zap", "--log-outputs=default,stderr"],
    &["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/hub-flags36.log", "--log-rotation-config-json={\"maxsize\":\"x\"}"],
    &["--enable-distributed-tracing", "--distributed-tracing-sampling-rate=-1"],
    &["--listen-client-http-urls=http://example.com:1"],
    &[
        "--listen-client-urls=http://127.0.0.1:1",
        "--advertise-client-urls=http://127.0.0.1:1",
        "--listen-client-http-urls=http://127.0.0.1:1",
    ],
];

/// Runs `bin` with `args` until it exits: its status and what it printed.
fn run(bin: &Path, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} {args:?} did not exit", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// etcd's message: the first line of a parse error (exit 2), else the
/// `error` of its last JSON log line that has one.
fn etcd_message(status: i32, text: &str) -> String {
    if status == 2 {
        return text.lines().next().unwrap_or_default().to_string();
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .last()
        .unwrap_or_else(|| panic!("no error in etcd's output:\n{text}"))
}

#[test]
fn hubd_refuses_what_etcd_36_refuses_in_its_words() {
    let Some(etcd) = etcd36_bin() else { return };
    assert_refused_alike(&etcd, REFUSED.iter().map(|a| a.iter().map(|s| s.to_string()).collect()).collect());
}

/// An `https` listener without a certificate, on ports of its own (etcd
/// finds out when it binds them).
#[test]
fn https_listeners_without_a_certificate_are_refused_as_etcd_36_refuses_them() {
    let Some(etcd) = etcd36_bin() else { return };
    let url = |scheme: &str| format!("{scheme}://127.0.0.1:{}", common::free_port());
    let member = |client: &str| {
        let peer = url("http");
        vec![
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
        ]
    };
    let mut metrics = member(&url("http"));
    metrics.push(format!("--listen-metrics-urls={}", url("https")));
    assert_refused_alike(&etcd, vec![member(&url("https")), metrics]);
}

/// Each command line in `cases` fails on etcd and on hubd alike.
fn assert_refused_alike(etcd: &Path, cases: Vec<Vec<String>>) {
    let mut wrong = Vec::new();
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let args = args.as_slice();
        let (etcd_status, etcd_text) = run(etcd, args);
        assert_ne!(etcd_status, 0, "etcd 3.6.16 took {args:?}:\n{etcd_text}");
        let message = etcd_message(etcd_status, &etcd_text);
        let (hub_status, hub_text) = run(&hubd_bin(), args);
        if hub_status != etcd_status || !hub_text.contains(&message) {
            wrong.push(format!("{args:?}: etcd exit {etcd_status}: {message}\n  hubd exit {hub_status}: {hub_text}"));
        }
    }
    assert!(wrong.is_empty(), "hubd refuses unlike etcd 3.6.16:\n{}", wrong.join("\n"));
}

/// hub has no v2 discovery: a new member asked to find its cluster so
/// refuses to start, rather than make a cluster of its own beside the others.
/// (v3 discovery, `--discovery-endpoints`, is tests/discovery.rs.)
#[test]
fn hubd_refuses_to_bootstrap_by_v2_discovery() {
    let (status, text) = run(&hubd_bin(), &["--discovery=http://127.0.0.1:9/x"]);
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("bootstrapping by --discovery is not implemented by hub"), "{text}");
}
