//! Maintenance against etcd 3.4.23 (HashKV against 3.6.16, the reference for
//! behaviour, which answers HashKV at a compacted revision differently):
//! - HashKV: the same etcdctl writes (compactions included) give the same
//!   `etcdctl endpoint hashkv` answers from etcd and from hubd, errors too;
//! - Hash: stable while nothing changes, and it covers the key space;
//! - Snapshot: `etcdctl snapshot save` from hubd gives a file that
//!   `etcdctl snapshot status` reads, that `etcdctl snapshot restore` accepts
//!   (and refuses once corrupted), and whose restored data directory etcd and
//!   hubd both start on, serving the same keys.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{etcd36_bin, etcd_bin, free_port, hubd_bin, Member};
use etcd_client::{Client, ConnectOptions};

/// One step of a session: an etcdctl command that must succeed, or a HashKV
/// at a revision whose answer is compared.
enum Step {
    Run(&'static [&'static str], Option<&'static str>),
    HashKv(i64),
}

use Step::{HashKv, Run};

const SESSION: &[Step] = &[
    HashKv(0),
    Run(&["put", "a", "1"], None),
    Run(&["put", "b", "2"], None),
    Run(&["put", "a", "3"], None),
    Run(&["del", "b"], None),
    Run(&["put", "c", "4"], None),
    // Two changes in one revision.
    Run(&["txn"], Some("version(\"a\") = \"2\"\n\nput d 5\nput e 6\n\n\n")),
    HashKv(0),
    HashKv(1),
    HashKv(3),
    HashKv(5),
    HashKv(7),
    Run(&["compaction", "4", "--physical"], None),
    Run(&["put", "a", "7"], None),
    HashKv(0),
    // etcd 3.6 answers the compacted revision with the hash its compaction
    // took (3.4 refused it).
    HashKv(4),
    HashKv(3),
    HashKv(5),
    HashKv(6),
    HashKv(9),
    // With no key live, etcd counts every revision left below the compaction.
    Run(&["del", "", "--prefix"], None),
    HashKv(0),
    HashKv(8),
    Run(&["compaction", "9", "--physical"], None),
    HashKv(0),
    Run(&["put", "x", "1"], None),
    HashKv(0),
    HashKv(10),
];

/// The number after `"name":` in etcdctl's JSON.
fn json_number<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &json[start..];
    let end = rest.find(|c: char| c != '-' && !c.is_ascii_digit()).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// What `etcdctl endpoint hashkv --rev N` answered: hash, compact revision and
/// header revision, or the error line.
fn hash_kv(m: &Member, rev: i64) -> String {
    let out = m.etcdctl(&["endpoint", "hashkv", "--rev", &rev.to_string(), "-w", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (json_number(&stdout, "hash"), json_number(&stdout, "compact_revision"), json_number(&stdout, "revision")) {
        (Some(hash), Some(compact), Some(revision)) => {
            format!("hash {hash} compact_revision {compact} revision {revision}")
        }
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let error = stderr.lines().find(|l| l.starts_with("Error:")).unwrap_or("no answer");
            format!("{error} (exit {})", out.status.code().unwrap_or(-1))
        }
    }
}

fn transcript(m: &Member) -> Vec<String> {
    SESSION
        .iter()
        .map(|step| match step {
            Run(args, stdin) => {
                let out = m.etcdctl_stdin(args, *stdin);
                assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
                format!("$ etcdctl {}", args.join(" "))
            }
            HashKv(rev) => format!("hashkv --rev {rev}: {}", hash_kv(m, *rev)),
        })
        .collect()
}

#[test]
fn hash_kv_matches_etcd() {
    let Some(etcd36) = etcd36_bin() else { return };
    let want = transcript(&Member::start(&etcd36));
    let got = transcript(&Member::start(&hubd_bin()));
    let mismatches: Vec<String> =
        want.iter().zip(&got).filter(|(w, g)| w != g).map(|(w, g)| format!("etcd: {w}\nhubd: {g}")).collect();
    assert!(mismatches.is_empty(), "{} answers differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[tokio::test]
async fn hash_is_stable_and_covers_the_key_space() {
    let hub = Member::start(&hubd_bin());
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(3)).with_timeout(Duration::from_secs(5));
    let mut client = Client::connect([hub.endpoint()], Some(opts)).await.expect("connect");
    client.put("a", "1", None).await.expect("put");
    let first = client.maintenance_client().hash().await.expect("hash");
    let again = client.maintenance_client().hash().await.expect("hash");
    assert_eq!(first.hash(), again.hash());
    assert_eq!(first.header().map(|h| h.revision()), Some(2));
    client.put("a", "2", None).await.expect("put");
    let changed = client.maintenance_client().hash().await.expect("hash");
    assert_ne!(changed.hash(), first.hash());
    assert_eq!(changed.header().map(|h| h.revision()), Some(3));
}

/// etcdctl without an endpoint (snapshot status and restore read files).
fn etcdctl(args: &[&str]) -> Output {
    Command::new("etcdctl").env("ETCDCTL_API", "3").args(args).output().expect("etcdctl")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn save_snapshot(m: &Member, file: &Path) {
    let file = file.to_string_lossy();
    let out = m.etcdctl(&["snapshot", "save", &file]);
    assert!(text(&out).contains(&format!("Snapshot saved at {file}")), "snapshot save: {}", text(&out));
}

/// `etcdctl snapshot restore` for a single member `default` with this peer port.
fn restore(file: &Path, data_dir: &Path, peer_port: u16) -> Output {
    let peer = format!("http://127.0.0.1:{peer_port}");
    etcdctl(&[
        "snapshot",
        "restore",
        &file.to_string_lossy(),
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--name",
        "default",
        "--initial-cluster",
        &format!("default={peer}"),
        "--initial-advertise-peer-urls",
        &peer,
    ])
}

/// What a client sees of the key space and the leases.
fn contents(m: &Member) -> String {
    let keys = m.etcdctl(&["get", "", "--prefix", "-w", "json"]);
    let leases = m.etcdctl(&["lease", "list"]);
    format!("{}{}", text(&keys), text(&leases))
}

// Starting hubd on the restored directory needs `migrate::import_etcd_backend`
// called in server/src/main.rs before the state machine opens.
#[test]
fn snapshot_saved_from_hubd_restores_into_etcd_and_hubd() {
    let hub = Member::start(&hubd_bin());
    for (k, v) in [("foo1", "val1"), ("foo2", "val2"), ("foo3", "val3")] {
        assert!(hub.etcdctl(&["put", k, v]).status.success());
    }
    let grant = hub.etcdctl(&["lease", "grant", "100"]);
    let lease = String::from_utf8_lossy(&grant.stdout).split_whitespace().nth(1).expect("lease ID").to_string();
    assert!(hub.etcdctl(&["put", "withlease", "x", "--lease", &lease]).status.success());

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.db");
    save_snapshot(&hub, &file);
    drop(hub);

    let status = etcdctl(&["snapshot", "status", &file.to_string_lossy(), "-w", "json"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(json_number(&status, "revision"), Some("5"), "{status}");
    let total: usize = json_number(&status, "totalKey").and_then(|n| n.parse().ok()).expect("totalKey");
    assert!(total >= 4, "{status}");

    // Both servers on the same ports and flags, so headers (cluster and
    // member IDs) must agree too.
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd_dir = dir.path().join("etcd.restored");
    let hub_dir = dir.path().join("hub.restored");
    for d in [&etcd_dir, &hub_dir] {
        let out = restore(&file, d, peer_port);
        assert!(text(&out).contains("added member"), "snapshot restore: {}", text(&out));
    }
    let etcd = Member::start_on(&etcd_bin(), client_port, peer_port, &["--data-dir", &etcd_dir.to_string_lossy()]);
    let want = contents(&etcd);
    assert!(want.contains("\"count\":4"), "etcd serves the restored keys: {want}");
    drop(etcd);

    let mut hub = Member::start_on(&hubd_bin(), client_port, peer_port, &["--data-dir", &hub_dir.to_string_lossy()]);
    assert_eq!(contents(&hub), want, "hubd on the restored directory serves what etcd serves");
    assert!(hub.etcdctl(&["put", "after", "restore"]).status.success());
    // Restarted, hubd keeps its own backend rather than importing again.
    hub.terminate();
    hub.spawn();
    let after = hub.etcdctl(&["get", "after", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&after.stdout), "restore\n");
}

#[test]
fn a_corrupted_snapshot_is_refused_by_restore() {
    let hub = Member::start(&hubd_bin());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.db");
    save_snapshot(&hub, &file);
    // As etcd's TestCtlV3SnapshotCorrupt: zeros over the first 512 bytes.
    let mut bytes = std::fs::read(&file).expect("read snapshot");
    bytes[..512].fill(0);
    std::fs::write(&file, bytes).expect("corrupt snapshot");
    let out = restore(&file, &dir.path().join("restored"), free_port());
    assert!(!out.status.success() && text(&out).contains("expected sha256"), "{}", text(&out));
}
