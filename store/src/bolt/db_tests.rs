//! The live engine against a model (a map per bucket), across commits,
//! deferred durability, reopening, defragmentation and simulated crashes.

use std::collections::BTreeMap;
use std::io::Cursor;

use proptest::prelude::*;

use super::*;
use crate::bolt::read::BoltReader;

const BUCKETS: [&[u8]; 3] = [b"key", b"lease", b"meta"];

type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn open(path: &Path) -> BoltDb {
    BoltDb::open(path, &BUCKETS).unwrap()
}

fn contents(db: &BoltDb) -> Model {
    let view = db.begin_read();
    BUCKETS
        .iter()
        .map(|b| {
            let mut entries = BTreeMap::new();
            view.scan(b, &[], None, &mut |k, v| {
                entries.insert(k.to_vec(), v.to_vec());
                true
            })
            .unwrap();
            (b.to_vec(), entries)
        })
        .collect()
}

fn empty_model() -> Model {
    BUCKETS.iter().map(|b| (b.to_vec(), BTreeMap::new())).collect()
}

/// What the snapshot reader (an independent reader of the format) sees.
fn read_independently(bytes: &[u8]) -> Model {
    let mut r = BoltReader::open(Cursor::new(bytes), bytes.len() as u64).unwrap();
    let mut out = Model::new();
    for bucket in r.buckets().unwrap() {
        let mut entries = BTreeMap::new();
        r.for_each(&bucket, &mut |e| {
            entries.insert(e.key.to_vec(), e.value.to_vec());
            Ok(())
        })
        .unwrap();
        out.insert(bucket.name, entries);
    }
    out
}

/// Every page is exactly one of: a meta page, reachable from the latest
/// commit, free, or freed by a commit that older views may still read.
fn check_accounting(db: &BoltDb) {
    let w = db.writer.lock();
    let mut seen = vec![false; w.meta.high_water as usize];
    w.view().mark_reachable(Root::Page(w.meta.root), &mut seen, 0).unwrap();
    let reachable = seen.iter().filter(|s| **s).count() as u64;
    let mut other: Vec<u64> = w.free.iter().copied().chain(w.pending.values().flatten().copied()).collect();
    let n = other.len() as u64;
    other.sort_unstable();
    other.dedup();
    assert_eq!(other.len() as u64, n, "a page is free twice");
    assert!(other.iter().all(|&p| p >= 2 && !seen[p as usize]), "a reachable page is free");
    assert_eq!(2 + reachable + n, w.meta.high_water, "pages leaked");
}

#[derive(Debug, Clone)]
enum Action {
    Put { bucket: usize, key: u16, len: usize },
    Delete { bucket: usize, key: u16 },
    /// Deletes every key of a bucket in `[from, from + span)`.
    DeleteSpan { bucket: usize, from: u16, span: u16 },
    Commit,
    Defer(bool),
    Sync,
    Reopen,
    Defragment,
}

fn action() -> impl Strategy<Value = Action> {
    let len = prop_oneof![8 => 0usize..120, 1 => 1000usize..3000, 1 => 5000usize..20000];
    prop_oneof![
        30 => (0..3usize, 0..600u16, len).prop_map(|(bucket, key, len)| Action::Put { bucket, key, len }),
        10 => (0..3usize, 0..600u16).prop_map(|(bucket, key)| Action::Delete { bucket, key }),
        2 => (0..3usize, 0..600u16, 1..300u16).prop_map(|(bucket, from, span)| Action::DeleteSpan { bucket, from, span }),
        8 => Just(Action::Commit),
        2 => any::<bool>().prop_map(Action::Defer),
        2 => Just(Action::Sync),
        1 => Just(Action::Reopen),
        1 => Just(Action::Defragment),
    ]
}

fn key_of(k: u16) -> Vec<u8> {
    format!("k{k:05}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_a_model(actions in prop::collection::vec(action(), 1..400)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = open(&path);
        let mut model = empty_model();
        let mut staged = model.clone();
        let mut batch: Vec<(usize, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut deferred = false;
        let mut durable = model.clone();
        for (n, a) in actions.into_iter().enumerate() {
            match a {
                Action::Put { bucket, key, len } => {
                    let value = vec![(n % 251) as u8; len];
                    staged.get_mut(BUCKETS[bucket]).unwrap().insert(key_of(key), value.clone());
                    batch.push((bucket, key_of(key), Some(value)));
                }
                Action::Delete { bucket, key } => {
                    staged.get_mut(BUCKETS[bucket]).unwrap().remove(&key_of(key));
                    batch.push((bucket, key_of(key), None));
                }
                Action::DeleteSpan { bucket, from, span } => {
                    for key in from..from.saturating_add(span) {
                        staged.get_mut(BUCKETS[bucket]).unwrap().remove(&key_of(key));
                        batch.push((bucket, key_of(key), None));
                    }
                }
                Action::Commit => {
                    let ops: Vec<Op<'_>> = batch.iter().map(|(b, k, v)| (BUCKETS[*b], k.as_slice(), v.as_deref())).collect();
                    db.update(&ops).unwrap();
                    batch.clear();
                    model = staged.clone();
                    if !deferred {
                        durable = model.clone();
                    }
                    prop_assert_eq!(&contents(&db), &model);
                    check_accounting(&db);
                }
                Action::Defer(d) => {
                    deferred = d;
                    db.defer_durability(d);
                }
                Action::Sync => {
                    db.sync().unwrap();
                    durable = model.clone();
                }
                Action::Reopen => {
                    // What a crash now would leave: only durable commits.
                    let crashed = dir.path().join("crashed");
                    std::fs::copy(&path, &crashed).unwrap();
                    prop_assert_eq!(&contents(&open(&crashed)), &durable);
                    std::fs::remove_file(&crashed).unwrap();

                    db.sync().unwrap();
                    drop(db);
                    db = open(&path);
                    db.defer_durability(deferred);
                    durable = model.clone();
                    prop_assert_eq!(&contents(&db), &model);
                    check_accounting(&db);
                }
                Action::Defragment => {
                    db.defragment().unwrap();
                    durable = model.clone();
                    // Only the new file's (empty) freelist page is free.
                    prop_assert_eq!(db.size() - db.size_in_use(), 4096);
                    prop_assert_eq!(&contents(&db), &model);
                    check_accounting(&db);
                }
            }
        }
        db.sync().unwrap();
        prop_assert_eq!(&read_independently(&std::fs::read(&path).unwrap()), &model);
    }
}

#[test]
fn a_reader_keeps_its_commit_while_the_writer_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let keys: Vec<Vec<u8>> = (0..2000u16).map(key_of).collect();
    let ops: Vec<Op<'_>> = keys.iter().map(|k| (&b"key"[..], k.as_slice(), Some(&b"old value"[..]))).collect();
    db.update(&ops).unwrap();
    let old = db.begin_read();
    for round in 0..20 {
        let value = format!("new value {round}").into_bytes();
        let ops: Vec<Op<'_>> = keys.iter().map(|k| (&b"key"[..], k.as_slice(), Some(value.as_slice()))).collect();
        db.update(&ops).unwrap();
        let deletes: Vec<Op<'_>> = keys.iter().step_by(3).map(|k| (&b"key"[..], k.as_slice(), None)).collect();
        db.update(&deletes).unwrap();
    }
    let mut seen = 0;
    old.scan(b"key", &[], None, &mut |_, v| {
        assert_eq!(v, b"old value");
        seen += 1;
        true
    })
    .unwrap();
    assert_eq!(seen, 2000);
    check_accounting(&db);
    drop(old);
    // Once the reader is gone its pages are reused instead of growing the file.
    let size = db.size();
    for _ in 0..5 {
        db.update(&ops).unwrap();
    }
    assert_eq!(db.size(), size);
}

#[test]
fn scans_stop_at_the_end_and_get_many_finds_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let keys: Vec<Vec<u8>> = (0..5000u16).map(key_of).collect();
    let ops: Vec<Op<'_>> = keys.iter().map(|k| (&b"key"[..], k.as_slice(), Some(k.as_slice()))).collect();
    db.update(&ops).unwrap();
    let view = db.begin_read();
    let mut got = Vec::new();
    view.scan(b"key", &key_of(1234), Some(&key_of(1240)), &mut |k, _| {
        got.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(got, (1234..1240).map(key_of).collect::<Vec<_>>());
    let found = view.get_many(b"key", &[key_of(0), key_of(4999), b"k".to_vec(), b"z".to_vec()]).unwrap();
    assert_eq!(found, vec![Some(key_of(0)), Some(key_of(4999)), None, None]);
    assert_eq!(view.get_many(b"nonesuch", &[key_of(0)]).unwrap(), vec![None]);
}

#[test]
fn refuses_a_damaged_file_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open(&path);
    let keys: Vec<Vec<u8>> = (0..3000u16).map(key_of).collect();
    let ops: Vec<Op<'_>> = keys.iter().map(|k| (&b"key"[..], k.as_slice(), Some(&b"v"[..]))).collect();
    db.update(&ops).unwrap();
    drop(db);
    let good = std::fs::read(&path).unwrap();
    // Overwrite each data page in turn with garbage: open or read fails cleanly.
    for page in 2..good.len() / 4096 {
        let mut bad = good.clone();
        for b in &mut bad[page * 4096..page * 4096 + 64] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bad).unwrap();
        if let Ok(db) = BoltDb::open(&path, &BUCKETS) {
            let _ = db.begin_read().scan(b"key", &[], None, &mut |_, _| true);
        }
    }
    // A truncated file is refused.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(BoltDb::open(&path, &BUCKETS).is_err());
}

/// A commit (which apply makes while readers wait for it) never waits out a
/// backend fsync: the sync holds no writer lock while it flushes. Commits made
/// meanwhile are durable at the next sync, and the paused one's at its end.
#[test]
fn commits_and_reads_go_on_while_a_sync_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = std::sync::Arc::new(open(&path));
    db.defer_durability(true);
    db.update(&[(b"key", b"a", Some(b"1"))]).unwrap();
    let (paused_tx, paused_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = parking_lot::Mutex::new(go_rx);
    *db.sync_hook.lock() = Box::new(move || {
        paused_tx.send(()).unwrap();
        go_rx.lock().recv().unwrap();
    });
    let syncing = {
        let db = db.clone();
        std::thread::spawn(move || db.sync())
    };
    paused_rx.recv().unwrap();
    // The sync is paused before its fsyncs: a commit and a read must not wait for it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let db = db.clone();
        std::thread::spawn(move || {
            db.update(&[(b"key", b"b", Some(b"2"))]).unwrap();
            let view = db.begin_read();
            done_tx.send(view.get_many(b"key", &[b"a".to_vec(), b"b".to_vec()]).unwrap()).unwrap();
        });
    }
    let seen = done_rx.recv_timeout(std::time::Duration::from_secs(5)).expect("a commit waited for the sync");
    assert_eq!(seen, vec![Some(b"1".to_vec()), Some(b"2".to_vec())]);
    // The paused sync runs its hook under the hook's lock: release it first.
    go_tx.send(()).unwrap();
    syncing.join().unwrap().unwrap();
    *db.sync_hook.lock() = Box::new(|| {});
    // What the paused sync covered is durable; the commit made during it is not yet.
    let copy = dir.path().join("copy");
    std::fs::copy(&path, &copy).unwrap();
    let crashed = BoltDb::open(&copy, &BUCKETS).unwrap();
    assert_eq!(crashed.begin_read().get_many(b"key", &[b"a".to_vec(), b"b".to_vec()]).unwrap(), vec![Some(b"1".to_vec()), None]);
    drop(crashed);
    db.sync().unwrap();
    std::fs::copy(&path, &copy).unwrap();
    let crashed = BoltDb::open(&copy, &BUCKETS).unwrap();
    assert_eq!(crashed.begin_read().get_many(b"key", &[b"b".to_vec()]).unwrap(), vec![Some(b"2".to_vec())]);
    check_accounting(&db);
}
