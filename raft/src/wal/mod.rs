//! The raft log on disk: hub's write-ahead log.
//!
//! Place in the request path: below openraft's log storage (`RaftLogStorage`; the
//! adapter lives elsewhere and maps openraft's types onto [`LogEntry`] and
//! [`LogId`]), above the file system. A write is acknowledged to a client only after
//! its entry is durable here, so this log — not the state machine's backend — is the
//! source of truth after a crash.
//!
//! It owns:
//! - framing and checksums: `[u32 LE length][u32 LE crc32][payload]` records
//!   (`record.rs`);
//! - segment files `<seq>-<first index>.wal`, rolled past [`WalOptions::segment_bytes`]
//!   and deleted whole once purged (`segment.rs`); the newest is zero-filled ahead
//!   of its records so an fsync changes no metadata (`writer.rs`);
//! - group commit: one writer thread writes everything queued with one fsync, then
//!   completes the callers in submission order (`writer.rs`);
//! - repair at open: a torn record at the end of the newest segment is cut off with a
//!   warning; damage anywhere else is [`WalError::Corrupt`] (`segment.rs`);
//! - an in-memory copy of the unpurged log, so reads never touch the disk (`memlog.rs`).
//!
//! Entries and the vote are opaque bytes: it never interprets them, never decides
//! what to truncate or purge (raft does), never skips a record it cannot read, and
//! never acknowledges an append before the fsync that covers it.

mod memlog;
mod record;
mod segment;
mod writer;

#[cfg(any(test, feature = "failpoints"))]
mod failpoints;
#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "failpoints"))]
pub use failpoints::Failpoints;

use std::fs::{File, TryLockError};
use std::future::Future;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use bytes::Bytes;
use parking_lot::RwLock;

use memlog::MemLog;
use record::{Record, MAX_PAYLOAD_BYTES};
use segment::io_error;
use writer::{Completion, Request, Writer, WriterStatus};

/// One raft log entry. `data` is the serialized entry as the raft layer made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
}

/// A position in the log: an entry's index and the term it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogId {
    pub index: u64,
    pub term: u64,
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment that has reached this size is closed and a new one started before
    /// the next record (so a segment can exceed it by one record).
    pub segment_bytes: u64,
    /// Where fsync latencies and bytes written are counted, if anywhere.
    pub metrics: Option<crate::metrics::WalMetrics>,
}

impl Default for WalOptions {
    fn default() -> Self {
        // etcd's SegmentSizeBytes.
        WalOptions { segment_bytes: 64 * 1024 * 1024, metrics: None }
    }
}

/// Errors are `Clone` because one failed fsync fails every request it covered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("wal: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A record that fails its checksum (or cannot be decoded) with valid records
    /// after it, or anywhere but the end of the newest segment.
    #[error("wal: corrupt record in {} at offset {offset}", segment.display())]
    Corrupt { segment: PathBuf, offset: u64 },
    /// The files are readable but do not form one log (a missing segment, a gap
    /// between entries, a stray `.wal` file).
    #[error("wal: {}: {reason}", path.display())]
    Inconsistent { path: PathBuf, reason: String },
    #[error("wal: {} is in use by another process", dir.display())]
    Locked { dir: PathBuf },
    #[error("wal: entry {got} does not continue the log (expected index {expected})")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("wal: cannot truncate from {from_index}: the log is purged up to {purged}")]
    TruncatePurged { from_index: u64, purged: u64 },
    #[error("wal: a record of {bytes} bytes is larger than a frame can hold")]
    TooLarge { bytes: usize },
    /// An earlier write or fsync failed; reopen the WAL to find out what is durable.
    #[error("wal: stopped after an earlier I/O error")]
    Stopped,
}

/// The raft log on disk. `Send + Sync`; share it with an `Arc`.
///
/// Changes take effect in memory when submitted — `entries()` sees an append as
/// soon as `append` returns, as openraft requires — and are durable when their
/// completion fires (or the blocking call returns). Completions fire in submission
/// order, on the writer thread: a callback must not block, and must never wait for
/// another WAL operation (that would wait for the thread running it).
pub struct Wal {
    dir: PathBuf,
    /// Submission order is decided under this lock: the in-memory change and the
    /// send to the writer happen together, so disk order equals memory order.
    state: RwLock<State>,
    status: Arc<WriterStatus>,
    writer: Option<JoinHandle<()>>,
}

struct State {
    log: MemLog,
    /// `None` only while dropping.
    requests: Option<Sender<Request>>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`: replays every segment into memory,
    /// repairing a torn tail, and starts the writer thread. Holds an exclusive lock
    /// on `dir/LOCK` until dropped.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal, WalError> {
        hub_store::durable_fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let dir_lock = lock_dir(dir)?;
        let (log, segments) = replay(dir)?;
        tracing::info!(
            dir = %dir.display(),
            segments = segments.len(),
            first_index = log.first_index(),
            last_index = log.last_entry().map(|l| l.index),
            purged_index = log.header.purged.map(|p| p.index),
            "wal: opened"
        );
        let status = Arc::new(WriterStatus::default());
        let last_index = log.last_entry().map(|l| l.index);
        let writer = Writer::new(dir, &opts, segments, log.header.clone(), last_index, status.clone(), dir_lock)?;
        let (requests, handle) = writer.spawn()?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            state: RwLock::new(State { log, requests: Some(requests) }),
            status,
            writer: Some(handle),
        })
    }

    /// Appends entries, which must continue the log (the first index after the last
    /// entry, or after the purge point; any index in a log that never held one).
    /// They are readable when this returns; `done` runs once they are durable.
    /// On `Err` nothing changed and `done` is dropped uncalled. This is the shape of
    /// openraft's `append(entries, IOFlushed)`.
    pub fn append_with_callback<F>(&self, entries: Vec<LogEntry>, done: F) -> Result<(), WalError>
    where
        F: FnOnce(Result<(), WalError>) + Send + 'static,
    {
        let records: Vec<Record> = entries.iter().cloned().map(Record::Entry).collect();
        self.submit(records, Box::new(done), true, |log| {
            log.check_append(&entries)?;
            log.append(&entries);
            Ok(true)
        })
    }

    /// Appends entries (see [`Wal::append_with_callback`]). The submission happens
    /// in this call, before the future is polled; the future resolves once durable.
    pub fn append(&self, entries: Vec<LogEntry>) -> impl Future<Output = Result<(), WalError>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let submitted = self.append_with_callback(entries, move |result| {
            // The caller may have stopped waiting; the entries are durable regardless.
            let _ = tx.send(result);
        });
        async move {
            submitted?;
            rx.await.map_err(|_| WalError::Stopped)?
        }
    }

    /// Discards the entries from `from_index` on (a suffix that conflicts with the
    /// leader's log), durably before returning. Blocks the calling thread for the
    /// fsync. Refused if `from_index` is purged.
    pub fn truncate(&self, from_index: u64) -> Result<(), WalError> {
        self.submit_and_wait(vec![Record::Truncate { from_index }], |log| {
            let changes = log.check_truncate(from_index)?;
            log.truncate(from_index);
            Ok(changes)
        })
    }

    /// Records that everything up to and including `upto` is covered by a snapshot:
    /// drops those entries from memory, and deletes the oldest segment files that
    /// hold nothing else. `upto` may be past the last entry (an installed snapshot);
    /// appends then continue after it. Blocks for the fsync; a no-op if already purged
    /// that far.
    pub fn purge(&self, upto: LogId) -> Result<(), WalError> {
        self.submit_and_wait(vec![Record::Purge { upto }], |log| Ok(log.purge(upto)))
    }

    /// Stores the serialized vote, durably before returning (blocks for the fsync).
    pub fn save_vote(&self, vote: Vec<u8>) -> Result<(), WalError> {
        self.submit_and_wait(vec![Record::Vote(vote.clone())], |log| {
            log.header.vote = Some(vote);
            Ok(true)
        })
    }

    /// Stores an opaque named value, durably before returning (blocks for the fsync).
    pub fn set_meta(&self, key: &str, value: Vec<u8>) -> Result<(), WalError> {
        let record = Record::Meta { key: key.to_owned(), value: value.clone() };
        self.submit_and_wait(vec![record], |log| {
            log.header.meta.insert(key.to_owned(), value);
            Ok(true)
        })
    }

    /// Stores an opaque named value without waiting and without an fsync of its
    /// own (openraft's committed log id, which etcd's raft also writes without
    /// one): the writer writes it after everything submitted before, so a process
    /// crash keeps it once written, and the next fsync makes it durable.
    pub fn set_meta_unsynced(&self, key: &str, value: Vec<u8>) -> Result<(), WalError> {
        let record = Record::Meta { key: key.to_owned(), value: value.clone() };
        self.submit(vec![record], Box::new(|_| {}), false, |log| {
            log.header.meta.insert(key.to_owned(), value);
            Ok(true)
        })
    }

    /// Waits until every entry appended before the call is durable: the
    /// writer takes requests in order and fsyncs each batch that holds an
    /// entry before it takes the next, so an empty request that needs an
    /// fsync completes only after them.
    pub fn barrier(&self) -> Result<(), WalError> {
        self.submit_and_wait(Vec::new(), |_| Ok(true))
    }

    pub fn vote(&self) -> Option<Vec<u8>> {
        self.state.read().log.header.vote.clone()
    }

    pub fn meta(&self, key: &str) -> Option<Vec<u8>> {
        self.state.read().log.header.meta.get(key).cloned()
    }

    /// Index of the first entry held (the first after the purge point).
    pub fn first_index(&self) -> Option<u64> {
        self.state.read().log.first_index()
    }

    /// The last entry held; `None` if there is none (even if some were purged).
    pub fn last_entry(&self) -> Option<LogId> {
        self.state.read().log.last_entry()
    }

    /// The last purged entry.
    pub fn purged(&self) -> Option<LogId> {
        self.state.read().log.header.purged
    }

    /// The last entry, or the purge point if no entry follows it: openraft's
    /// `LogState::last_log_id`.
    pub fn last_log_id(&self) -> Option<LogId> {
        let state = self.state.read();
        state.log.last_entry().or(state.log.header.purged)
    }

    /// The entries held within `range`, in order (purged or absent ones are left out).
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Vec<LogEntry> {
        self.state.read().log.entries(range)
    }

    pub fn entry(&self, index: u64) -> Option<LogEntry> {
        self.state.read().log.entry(index).cloned()
    }

    /// How many fsyncs of segment files this WAL has done (not counting directories).
    pub fn sync_count(&self) -> u64 {
        self.status.syncs.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(any(test, feature = "failpoints"))]
    pub fn failpoints(&self) -> &Failpoints {
        &self.status.failpoints
    }

    /// Applies `change` to the in-memory log and queues `records` for the writer, both
    /// under the state lock. `change` returns whether there is anything to write; if
    /// not, the request still goes through the writer (with no records), so its
    /// completion cannot overtake earlier ones.
    fn submit(
        &self,
        records: Vec<Record>,
        done: Completion,
        sync: bool,
        change: impl FnOnce(&mut MemLog) -> Result<bool, WalError>,
    ) -> Result<(), WalError> {
        if let Some(bytes) = records.iter().map(Record::payload_len).find(|&n| n > MAX_PAYLOAD_BYTES) {
            return Err(WalError::TooLarge { bytes });
        }
        if self.status.stopped.load(Ordering::SeqCst) {
            return Err(WalError::Stopped);
        }
        let mut state = self.state.write();
        let Some(requests) = state.requests.clone() else { return Err(WalError::Stopped) };
        let records = if change(&mut state.log)? { records } else { Vec::new() };
        #[cfg(feature = "failpoints")]
        if crate::chaos::enabled(crate::chaos::Bug::AckBeforeFsync) {
            requests.send(Request { records, done: Box::new(|_| {}), sync }).map_err(|_| WalError::Stopped)?;
            drop(state);
            done(Ok(()));
            return Ok(());
        }
        // Fails only if the writer thread is gone (it panicked).
        requests.send(Request { records, done, sync }).map_err(|_| WalError::Stopped)
    }

    fn submit_and_wait(
        &self,
        records: Vec<Record>,
        change: impl FnOnce(&mut MemLog) -> Result<bool, WalError>,
    ) -> Result<(), WalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            records,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
            true,
            change,
        )?;
        rx.recv().map_err(|_| WalError::Stopped)?
    }
}

impl Drop for Wal {
    /// Lets the writer finish what is queued, then waits for it — unless this runs on
    /// the writer thread itself (a completion held the last reference), which then
    /// exits on its own once the queue is empty.
    fn drop(&mut self) {
        self.state.write().requests = None;
        if let Some(handle) = self.writer.take() {
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Two writers on one directory would interleave records; the OS lock dies with the
/// process, so a crash never leaves it held.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked { dir: dir.to_path_buf() }),
        Err(TryLockError::Error(source)) => Err(io_error("lock", &path)(source)),
    }
}

/// Reads every segment, oldest first, into the in-memory log, and notes what each
/// segment still holds so purges know which files to delete.
fn replay(dir: &Path) -> Result<(MemLog, Vec<segment::Segment>), WalError> {
    let mut segments = segment::list(dir)?;
    let mut log = MemLog::default();
    let count = segments.len();
    for i in 0..count {
        let contents = segment::read(&segments[i].path, i + 1 == count)?;
        segments[i].bytes = contents.bytes;
        segments[i].header_bytes = contents.header_bytes;
        for (offset, record) in contents.records {
            segment::Segment::note_record(&mut segments[..=i], &record);
            log.replay(record).map_err(|reason| WalError::Inconsistent {
                path: segments[i].path.clone(),
                reason: format!("record at offset {offset}: {reason}"),
            })?;
        }
    }
    log.check_replayed().map_err(|reason| WalError::Inconsistent { path: dir.to_path_buf(), reason })?;
    Ok((log, segments))
}
