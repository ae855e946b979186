//! The WAL's behaviour, one property per test: API semantics here, crash repair in
//! `repair.rs`, a model-based crash-consistency property in `crash.rs`.

mod crash;
mod repair;

use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Barrier, Mutex};

use bytes::Bytes;
use tempfile::TempDir;

use super::{LogEntry, LogId, Wal, WalError, WalOptions};

fn entry(index: u64, term: u64) -> LogEntry {
    LogEntry { index, term, data: Bytes::from(format!("entry {index} of term {term}")) }
}

fn entries(indexes: RangeInclusive<u64>, term: u64) -> Vec<LogEntry> {
    indexes.map(|i| entry(i, term)).collect()
}

fn open(dir: &Path, segment_bytes: u64) -> Wal {
    Wal::open(dir, WalOptions { segment_bytes, metrics: None }).unwrap()
}

/// Appends and waits until durable.
fn append(wal: &Wal, entries: Vec<LogEntry>) -> Result<(), WalError> {
    let (tx, rx) = mpsc::channel();
    wal.append_with_callback(entries, move |r| tx.send(r).unwrap())?;
    rx.recv().unwrap()
}

/// (index, term) of every entry held.
fn ids(wal: &Wal) -> Vec<(u64, u64)> {
    wal.entries(..).iter().map(|e| (e.index, e.term)).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Where a segment file's records end: its length less the zeros after them
/// (the writer keeps the newest segment zero-filled ahead of its records).
fn records_end(path: &Path) -> u64 {
    let buf = fs::read(path).unwrap();
    let mut at = 0;
    while buf[at..].iter().any(|&b| b != 0) {
        at = super::record::frame_at(&buf, at).unwrap().1;
    }
    at as u64
}

fn copy_dir(from: &Path) -> TempDir {
    let to = tempfile::tempdir().unwrap();
    for file in fs::read_dir(from).unwrap() {
        let file = file.unwrap();
        fs::copy(file.path(), to.path().join(file.file_name())).unwrap();
    }
    to
}

#[test]
fn wal_is_send_and_sync() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Wal>();
    shareable::<WalError>();
}

#[test]
fn entries_survive_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 256);
    for batch in 0..10 {
        append(&wal, entries(batch * 10 + 1..=batch * 10 + 10, 1 + batch / 4)).unwrap();
    }
    let written = wal.entries(..);
    assert_eq!(written.len(), 100);
    assert!(segment_files(dir.path()).len() >= 5, "{:?}", segment_files(dir.path()));
    drop(wal);

    let wal = open(dir.path(), 256);
    assert_eq!(wal.entries(..), written);
    assert_eq!(wal.first_index(), Some(1));
    assert_eq!(wal.last_entry(), Some(LogId { index: 100, term: 3 }));
    assert_eq!(wal.last_log_id(), Some(LogId { index: 100, term: 3 }));
    assert_eq!(wal.purged(), None);
    assert_eq!(wal.entry(42), Some(entry(42, 2)));
    assert_eq!(wal.entries(20..25).len(), 5);
    assert_eq!(wal.entries(98..).len(), 3);
    assert_eq!(wal.entries(..=0), vec![]);
    assert_eq!(wal.entries(101..200), vec![]);
    // And it keeps going where it stopped.
    append(&wal, vec![entry(101, 3)]).unwrap();
    drop(wal);
    assert_eq!(open(dir.path(), 256).last_entry(), Some(LogId { index: 101, term: 3 }));
}

#[test]
fn segments_are_named_by_sequence_and_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1);
    append(&wal, vec![entry(1, 1)]).unwrap();
    append(&wal, vec![entry(2, 1)]).unwrap();
    let names: Vec<String> =
        segment_files(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["0000000000000000-0000000000000000.wal", "0000000000000001-0000000000000002.wal"]);
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(open(dir.path(), 64 << 20));
    let syncs_before = wal.sync_count();
    // Like a raft leader: indexes are assigned in order, durability is awaited apart.
    let next_index = Arc::new(Mutex::new(1u64));
    let start = Arc::new(Barrier::new(50));
    let appenders: Vec<_> = (0..50)
        .map(|_| {
            let (wal, next_index, start) = (wal.clone(), next_index.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let (tx, rx) = mpsc::channel();
                {
                    let mut next = next_index.lock().unwrap();
                    wal.append_with_callback(vec![entry(*next, 1)], move |r| tx.send(r).unwrap()).unwrap();
                    *next += 1;
                }
                rx.recv().unwrap().unwrap();
            })
        })
        .collect();
    for appender in appenders {
        appender.join().unwrap();
    }
    let syncs = wal.sync_count() - syncs_before;
    assert!(syncs < 50, "50 appends took {syncs} fsyncs");
    assert_eq!(wal.entries(..).len(), 50);
}

#[test]
fn completions_fire_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 64 << 20);
    let completed = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    for index in 1..=50 {
        let (completed, tx) = (completed.clone(), tx.clone());
        wal.append_with_callback(vec![entry(index, 1)], move |r| {
            r.unwrap();
            completed.lock().unwrap().push(index);
            tx.send(()).unwrap();
        })
        .unwrap();
    }
    // An empty append still waits its turn behind the others.
    let (completed2, tx2) = (completed.clone(), tx.clone());
    wal.append_with_callback(vec![], move |r| {
        r.unwrap();
        completed2.lock().unwrap().push(0);
        tx2.send(()).unwrap();
    })
    .unwrap();
    for _ in 0..51 {
        rx.recv().unwrap();
    }
    let mut expected: Vec<u64> = (1..=50).collect();
    expected.push(0);
    assert_eq!(*completed.lock().unwrap(), expected);
    assert!(wal.sync_count() < 50);
}

#[tokio::test]
async fn async_append_resolves_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1024);
    let syncs = wal.sync_count();
    let durable = wal.append(entries(1..=3, 1));
    // Readable before it is durable, as openraft expects.
    assert_eq!(wal.last_entry(), Some(LogId { index: 3, term: 1 }));
    durable.await.unwrap();
    assert!(wal.sync_count() > syncs);
    assert!(matches!(wal.append(vec![entry(9, 1)]).await, Err(WalError::OutOfOrder { expected: 4, got: 9 })));
}

#[test]
fn appends_must_continue_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1024);
    // openraft's log starts at index 0.
    append(&wal, entries(0..=3, 1)).unwrap();
    assert!(matches!(append(&wal, vec![entry(5, 1)]), Err(WalError::OutOfOrder { expected: 4, got: 5 })));
    assert!(matches!(append(&wal, vec![entry(3, 2)]), Err(WalError::OutOfOrder { expected: 4, got: 3 })));
    assert!(matches!(append(&wal, vec![entry(4, 1), entry(6, 1)]), Err(WalError::OutOfOrder { expected: 5, got: 6 })));
    // A refused append changes nothing.
    assert_eq!(wal.last_entry(), Some(LogId { index: 3, term: 1 }));
}

#[test]
fn truncate_then_append_a_new_term_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 200);
    append(&wal, entries(1..=20, 1)).unwrap();
    wal.truncate(11).unwrap();
    assert_eq!(wal.last_entry(), Some(LogId { index: 10, term: 1 }));
    append(&wal, entries(11..=15, 2)).unwrap();
    // Truncating past the end changes nothing.
    wal.truncate(16).unwrap();
    drop(wal);

    let wal = open(dir.path(), 200);
    let expected: Vec<(u64, u64)> = (1..=10).map(|i| (i, 1)).chain((11..=15).map(|i| (i, 2))).collect();
    assert_eq!(ids(&wal), expected);
    // Again, reaching into an older segment.
    wal.truncate(3).unwrap();
    append(&wal, entries(3..=4, 3)).unwrap();
    drop(wal);
    let wal = open(dir.path(), 200);
    assert_eq!(ids(&wal), vec![(1, 1), (2, 1), (3, 3), (4, 3)]);
    assert_eq!(wal.entry(3), Some(entry(3, 3)));
}

#[test]
fn truncate_cannot_reach_purged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1024);
    append(&wal, entries(1..=10, 1)).unwrap();
    wal.purge(LogId { index: 5, term: 1 }).unwrap();
    assert!(matches!(wal.truncate(5), Err(WalError::TruncatePurged { from_index: 5, purged: 5 })));
    wal.truncate(6).unwrap();
    assert_eq!(wal.last_log_id(), Some(LogId { index: 5, term: 1 }));
    assert_eq!(wal.last_entry(), None);
    append(&wal, vec![entry(6, 2)]).unwrap();
}

#[test]
fn purge_deletes_whole_segments_and_reopen_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 256);
    for batch in 0..10 {
        append(&wal, entries(batch * 10 + 1..=batch * 10 + 10, 1)).unwrap();
    }
    let before = segment_files(dir.path());
    wal.purge(LogId { index: 60, term: 1 }).unwrap();
    let after = segment_files(dir.path());
    assert!(after.len() < before.len(), "{} segments before, {} after", before.len(), after.len());
    // The oldest files went, whole; the rest are untouched.
    assert_eq!(after[..], before[before.len() - after.len()..]);
    let rest = wal.entries(..);
    assert_eq!(rest.first().map(|e| e.index), Some(61));
    assert_eq!(rest.len(), 40);
    assert_eq!(wal.entries(50..=61).len(), 1);
    assert_eq!(wal.purged(), Some(LogId { index: 60, term: 1 }));
    // Purging less than before is a no-op.
    wal.purge(LogId { index: 30, term: 1 }).unwrap();
    drop(wal);

    let wal = open(dir.path(), 256);
    assert_eq!(wal.entries(..), rest);
    assert_eq!(wal.purged(), Some(LogId { index: 60, term: 1 }));
    assert_eq!(wal.first_index(), Some(61));
    // Everything purged: only the newest segment is left.
    wal.purge(LogId { index: 100, term: 1 }).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    append(&wal, vec![entry(101, 2)]).unwrap();
    drop(wal);
    let wal = open(dir.path(), 256);
    assert_eq!(ids(&wal), vec![(101, 2)]);
    assert_eq!(wal.purged(), Some(LogId { index: 100, term: 1 }));
}

#[test]
fn truncated_entries_do_not_keep_segments_alive() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 200);
    append(&wal, entries(1..=50, 1)).unwrap();
    let mut old_segments = segment_files(dir.path());
    old_segments.pop();
    assert!(old_segments.len() > 3);
    wal.truncate(3).unwrap();
    append(&wal, entries(3..=10, 2)).unwrap();
    append(&wal, vec![entry(11, 2)]).unwrap();
    // Entries 11..=50 of term 1 are gone, so purging up to 10 frees their files.
    wal.purge(LogId { index: 10, term: 2 }).unwrap();
    assert!(old_segments.iter().all(|p| !p.exists()), "{:?}", segment_files(dir.path()));
    drop(wal);
    assert_eq!(ids(&open(dir.path(), 200)), vec![(11, 2)]);
}

#[test]
fn purge_past_the_last_entry_continues_after_it() {
    // What installing a snapshot from the leader does.
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 256);
    append(&wal, entries(1..=10, 1)).unwrap();
    wal.purge(LogId { index: 50, term: 3 }).unwrap();
    assert_eq!(wal.entries(..), vec![]);
    assert_eq!(wal.last_entry(), None);
    assert_eq!(wal.last_log_id(), Some(LogId { index: 50, term: 3 }));
    assert!(matches!(append(&wal, vec![entry(11, 1)]), Err(WalError::OutOfOrder { expected: 51, got: 11 })));
    append(&wal, entries(51..=52, 3)).unwrap();
    drop(wal);
    let wal = open(dir.path(), 256);
    assert_eq!(ids(&wal), vec![(51, 3), (52, 3)]);
    assert_eq!(wal.purged(), Some(LogId { index: 50, term: 3 }));
}

#[test]
fn vote_and_meta_survive_reopen_after_their_segment_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 200);
    wal.save_vote(b"term 1, voted for 7".to_vec()).unwrap();
    wal.set_meta("committed", b"3".to_vec()).unwrap();
    let first_segment = segment_files(dir.path())[0].clone();
    append(&wal, entries(1..=40, 1)).unwrap();
    wal.purge(LogId { index: 40, term: 1 }).unwrap();
    assert!(!first_segment.exists());
    drop(wal);

    let wal = open(dir.path(), 200);
    assert_eq!(wal.vote(), Some(b"term 1, voted for 7".to_vec()));
    assert_eq!(wal.meta("committed"), Some(b"3".to_vec()));
    assert_eq!(wal.meta("absent"), None);
    wal.save_vote(b"term 2, voted for 9".to_vec()).unwrap();
    drop(wal);
    assert_eq!(open(dir.path(), 200).vote(), Some(b"term 2, voted for 9".to_vec()));
}

#[test]
fn an_unsynced_meta_record_costs_no_fsync_and_survives_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1 << 20);
    append(&wal, entries(1..=3, 1)).unwrap();
    let syncs = wal.sync_count();
    wal.set_meta_unsynced("committed", b"3".to_vec()).unwrap();
    assert_eq!(wal.meta("committed"), Some(b"3".to_vec()), "visible at once");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(wal.sync_count(), syncs, "written without an fsync of its own");
    append(&wal, entries(4..=4, 1)).unwrap();
    assert_eq!(wal.sync_count(), syncs + 1, "the next append's fsync covers it");
    wal.set_meta_unsynced("committed", b"4".to_vec()).unwrap();
    drop(wal);
    assert_eq!(open(dir.path(), 1 << 20).meta("committed"), Some(b"4".to_vec()));
}

#[test]
fn a_directory_opens_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1024);
    assert!(matches!(Wal::open(dir.path(), WalOptions::default()), Err(WalError::Locked { .. })));
    drop(wal);
    Wal::open(dir.path(), WalOptions::default()).unwrap();
}

#[test]
fn a_failed_fsync_stops_the_wal_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1024);
    append(&wal, entries(1..=3, 1)).unwrap();
    wal.failpoints().fail_next_sync();
    assert!(matches!(append(&wal, vec![entry(4, 1)]), Err(WalError::Io { .. })));
    assert!(matches!(append(&wal, vec![entry(5, 1)]), Err(WalError::Stopped)));
    assert!(matches!(wal.save_vote(vec![1]), Err(WalError::Stopped)));
    drop(wal);
    // Entry 4 was written, only its fsync "failed": it may or may not be there.
    let wal = open(dir.path(), 1024);
    assert_eq!(&ids(&wal)[..3], &[(1, 1), (2, 1), (3, 1)]);
    let next = wal.last_entry().unwrap().index + 1;
    append(&wal, vec![entry(next, 2)]).unwrap();
}

#[test]
fn a_torn_write_is_cut_off_at_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1024);
    append(&wal, entries(1..=5, 1)).unwrap();
    wal.failpoints().tear_next_record();
    assert!(matches!(append(&wal, entries(6..=8, 1)), Err(WalError::Io { .. })));
    drop(wal);
    let wal = open(dir.path(), 1024);
    assert_eq!(ids(&wal), (1..=5).map(|i| (i, 1)).collect::<Vec<_>>());
    append(&wal, entries(6..=8, 2)).unwrap();
    drop(wal);
    assert_eq!(open(dir.path(), 1024).last_entry(), Some(LogId { index: 8, term: 2 }));
}
