//! Compaction in batches, against etcd 3.6.16 where it is installed: with
//! `--compaction-batch-limit` and `--compaction-sleep-interval` a compaction
//! is answered at once (reads below it fail at once) while its deletions go
//! on in the background; a `--physical` one is answered when they are done;
//! a member killed mid-compaction finds it scheduled but not finished in its
//! backend, resumes it when it starts again ("resume scheduled compaction",
//! then "finished scheduled compaction") and ends with the same data.

mod common;

use std::time::{Duration, Instant};

use common::{etcd36_bin, hubd_bin, Member};
use hub_store::backend::{open_bolt, Backend, Table};
use hub_store::mvcc::{META_FINISHED_COMPACT, META_SCHEDULED_COMPACT};
use hub_store::revision::Revision;

/// etcdctl's answer, stdout and the error line, without what differs
/// between servers (etcdctl prints nothing of the kind for these commands).
fn etcdctl(m: &Member, args: &[&str]) -> String {
    let out = m.etcdctl(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr.lines().find(|l| l.starts_with("Error:")).unwrap_or("");
    format!("$ etcdctl {}\n{}{error}", args.join(" "), String::from_utf8_lossy(&out.stdout))
}

/// The number after `"name":` in etcdctl's JSON.
fn json_number<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &json[start..];
    let end = rest.find(|c: char| c != '-' && !c.is_ascii_digit()).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn hash_kv(m: &Member) -> String {
    let out = m.etcdctl(&["endpoint", "hashkv", "-w", "json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    format!(
        "hashkv: hash {:?} compact_revision {:?}",
        json_number(&json, "hash"),
        json_number(&json, "compact_revision")
    )
}

/// The compaction marks in a stopped member's backend (etcd's and hub's
/// are both bbolt files in etcd's layout): `(scheduled, finished)`.
fn compaction_marks(m: &Member) -> (Option<i64>, Option<i64>) {
    let backend = open_bolt(&m.data_dir.join("member").join(hub_store::apply::BACKEND_FILE)).expect("open the backend");
    let marks = backend
        .get_many(Table::Meta, &[META_SCHEDULED_COMPACT.to_vec(), META_FINISHED_COMPACT.to_vec()])
        .expect("read meta");
    let main = |v: &Option<Vec<u8>>| v.as_deref().and_then(Revision::from_bytes).map(|(r, _)| r.main);
    (main(&marks[0]), main(&marks[1]))
}

/// Reads at, around and below the compaction at 5.
fn reads(m: &Member) -> Vec<String> {
    vec![
        etcdctl(m, &["get", "key", "--rev", "4"]),
        etcdctl(m, &["get", "key", "--rev", "5"]),
        etcdctl(m, &["get", "key"]),
        etcdctl(m, &["get", "", "--prefix", "--keys-only"]),
        hash_kv(m),
    ]
}

/// A member whose compactions crawl (one revision an hour) is killed after
/// compacting; it starts again with etcd's defaults.
fn killed_mid_compaction(bin: &std::path::Path) -> Vec<String> {
    let mut m = Member::start_with(bin, &["--compaction-batch-limit", "1", "--compaction-sleep-interval", "1h"]);
    let mut out = Vec::new();
    for i in 0..10 {
        m.etcdctl(&["put", "key", &format!("v{i}")]);
    }
    m.etcdctl(&["put", "other", "o"]);
    out.push(etcdctl(&m, &["compaction", "5"]));
    out.extend(reads(&m));
    // The mark reaches the disk with the next backend commit (etcd's at
    // once, hub's within its 100 ms batch interval).
    std::thread::sleep(Duration::from_millis(500));
    m.kill9();
    let (scheduled, finished) = compaction_marks(&m);
    out.push(format!("killed: scheduled {scheduled:?}, finished {finished:?}"));
    // The last repetition of a flag wins, as in Go.
    m.add_flags(&["--compaction-batch-limit", "0", "--compaction-sleep-interval", "0s"]);
    m.spawn();
    for message in ["resume scheduled compaction", "finished scheduled compaction"] {
        let logged = m.wait_for_log(message, Duration::from_secs(20));
        out.push(format!("logged {message:?}: {logged}"));
    }
    out.extend(reads(&m));
    m.terminate();
    let (scheduled, finished) = compaction_marks(&m);
    out.push(format!("stopped: scheduled {scheduled:?}, finished {finished:?}"));
    out
}

#[test]
fn a_member_killed_mid_compaction_resumes_it() {
    let got = killed_mid_compaction(&hubd_bin());
    let text = got.join("\n");
    assert!(text.contains("killed: scheduled Some(5), finished None"), "{text}");
    assert!(text.contains("stopped: scheduled Some(5), finished Some(5)"), "{text}");
    assert!(!text.contains("logged \"finished scheduled compaction\": false"), "{text}");
    assert!(text.contains("required revision has been compacted"), "{text}");
    if let Some(etcd) = etcd36_bin() {
        let want = killed_mid_compaction(&etcd);
        let mismatches: Vec<String> =
            want.iter().zip(&got).filter(|(w, g)| w != g).map(|(w, g)| format!("etcd: {w}\nhubd: {g}")).collect();
        assert!(mismatches.is_empty(), "{} answers differ:\n{}", mismatches.len(), mismatches.join("\n"));
    }
}

/// A physical compaction is answered once the backend is done: with one
/// revision per batch and 100 ms between batches, walking the 5 revisions
/// up to revision 6 takes 5 pauses; a compaction without `--physical` is
/// answered at once.
fn physical_waits(bin: &std::path::Path) -> (Duration, Duration) {
    let m = Member::start_with(bin, &["--compaction-batch-limit", "1", "--compaction-sleep-interval", "100ms"]);
    for i in 0..10 {
        m.etcdctl(&["put", "key", &format!("v{i}")]);
    }
    let timed = |args: &[&str]| {
        let started = Instant::now();
        let out = m.etcdctl(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        started.elapsed()
    };
    let logical = timed(&["compaction", "2"]);
    let physical = timed(&["compaction", "6", "--physical"]);
    (logical, physical)
}

#[test]
fn a_physical_compaction_waits_for_the_backend() {
    let mut bins = vec![hubd_bin()];
    bins.extend(etcd36_bin());
    for bin in bins {
        let (logical, physical) = physical_waits(&bin);
        assert!(
            physical >= Duration::from_millis(300),
            "{}: physical compaction answered after {physical:?}",
            bin.display()
        );
        assert!(logical < physical, "{}: {logical:?} then {physical:?}", bin.display());
    }
}
