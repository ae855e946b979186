//! The writer thread: the only code that writes segment files.
//!
//! Every change reaches it as a `Request` over a channel, in the order the callers
//! changed the in-memory log. It takes everything queued, writes all of it with one
//! `write` per segment touched, syncs once, and only then completes the requests, in
//! the order they were sent — so concurrent appends share one fsync (group commit)
//! and a truncation can never overtake the append it conflicts with. A batch of
//! requests that need no fsync (openraft's committed index) is only written.
//!
//! The active segment is kept zero-filled ahead of its records
//! ([`ZEROED_AHEAD_BYTES`]), and records are written over those zeros at their
//! offset: a write that stays inside the file's length changes no metadata, so its
//! fdatasync flushes the data alone, where an append that grows the file also
//! writes the inode (ext4 waits for that second write on every fsync). The file
//! grows once per [`ZEROED_AHEAD_BYTES`] instead of once per fsync; replay reads a
//! run of zeros to the end of a segment as its end (`segment.rs`). etcd
//! preallocates its WAL segments for the same reason.
//!
//! After any I/O error the writer stops: what reached the disk is unknown once an
//! fsync has failed (the kernel may have dropped the dirty pages), so every later
//! request fails with `WalError::Stopped` until the WAL is reopened and replayed.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::record::{LogHeader, Record};
use super::segment::{self, io_error, Segment};
use super::{WalError, WalOptions};

/// How far past its last record the active segment is zero-filled: when a write
/// would reach the end of the file, the file is extended by this much with zeros
/// (written in the same batch, so flushed by the same fsync).
pub(crate) const ZEROED_AHEAD_BYTES: u64 = 1 << 20;

/// etcd's `warnSyncDuration`: an fsync slower than this is logged.
const WARN_SYNC_DURATION: std::time::Duration = std::time::Duration::from_secs(1);

/// Called once the request's records are durable, or failed; runs on the writer thread.
pub(crate) type Completion = Box<dyn FnOnce(Result<(), WalError>) + Send>;

pub(crate) struct Request {
    pub records: Vec<Record>,
    pub done: Completion,
    /// Whether `done` waits for an fsync. A request that does not is complete once
    /// its records are written (a process crash keeps them; a power cut may not)
    /// and becomes durable with the next fsync.
    pub sync: bool,
}

/// What the writer shares with the `Wal` handle.
#[derive(Debug, Default)]
pub(crate) struct WriterStatus {
    /// Segment fsyncs so far: the group-commit tests count them.
    pub syncs: AtomicU64,
    /// Set once the writer has stopped after an error, so new submissions fail early.
    pub stopped: AtomicBool,
    #[cfg(any(test, feature = "failpoints"))]
    pub failpoints: super::Failpoints,
}

pub(crate) struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    /// Oldest first; the last is the one being written. Never empty.
    segments: VecDeque<Segment>,
    file: File,
    /// Where the next record goes in `file`: the end of the records written to it.
    written: u64,
    /// `file`'s length: `written` and the zeros ahead of it.
    file_len: u64,
    /// The non-entry state as of the last record written (not as of the in-memory
    /// log, which runs ahead): it opens the next segment.
    header: LogHeader,
    /// Index of the last entry written, for naming the next segment.
    last_index: Option<u64>,
    status: Arc<WriterStatus>,
    metrics: Option<crate::metrics::WalMetrics>,
    stopped: bool,
    /// Held for the writer's lifetime so no second process writes the directory.
    _dir_lock: File,
}

impl Writer {
    /// Takes over the replayed segments; writes a header into the newest one if a
    /// crash left it without one, or creates the first segment of a new WAL.
    pub(crate) fn new(
        dir: &Path,
        opts: &WalOptions,
        segments: Vec<Segment>,
        header: LogHeader,
        last_index: Option<u64>,
        status: Arc<WriterStatus>,
        dir_lock: File,
    ) -> Result<Writer, WalError> {
        let mut segments = VecDeque::from(segments);
        let file = match segments.back() {
            Some(newest) => {
                fs::OpenOptions::new().write(true).open(&newest.path).map_err(io_error("open segment", &newest.path))?
            }
            None => {
                let first_index = next_index_hint(last_index, &header);
                let (segment, file) = segment::create(dir, 0, first_index)?;
                segments.push_back(segment);
                file
            }
        };
        let newest = &segments[segments.len() - 1];
        let written = newest.bytes;
        let file_len = file.metadata().map_err(io_error("open segment", &newest.path))?.len();
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            segment_bytes: opts.segment_bytes,
            segments,
            file,
            written,
            file_len,
            header,
            last_index,
            status,
            metrics: opts.metrics.clone(),
            stopped: false,
            _dir_lock: dir_lock,
        };
        if writer.active().bytes == 0 {
            let mut buf = Vec::new();
            writer.start_segment(&mut buf);
            writer.write_out(&mut buf)?;
            writer.sync()?;
            // The file may be one a crash left without a durable directory entry.
            segment::sync_dir(&writer.dir)?;
        }
        Ok(writer)
    }

    pub(crate) fn spawn(self) -> Result<(Sender<Request>, JoinHandle<()>), WalError> {
        let (requests, queue) = mpsc::channel();
        let dir = self.dir.clone();
        let handle = thread::Builder::new()
            .name("hub-wal".into())
            .spawn(move || self.run(queue))
            .map_err(io_error("start writer thread", &dir))?;
        Ok((requests, handle))
    }

    /// Runs until every sender is dropped, finishing what was queued first.
    fn run(mut self, queue: Receiver<Request>) {
        while let Ok(first) = queue.recv() {
            #[cfg(feature = "failpoints")]
            if crate::chaos::enabled(crate::chaos::Bug::AckBeforeFsync) {
                // The volatile cache the injected bug acknowledges from.
                thread::sleep(std::time::Duration::from_millis(500));
            }
            let mut batch = vec![first];
            batch.extend(queue.try_iter());
            let result = if self.stopped { Err(WalError::Stopped) } else { self.write_batch(&batch) };
            if let Err(error) = &result {
                if !self.stopped {
                    tracing::error!(dir = %self.dir.display(), %error, "wal: write failed, refusing further writes until reopened");
                    self.stopped = true;
                    self.status.stopped.store(true, Ordering::SeqCst);
                }
            }
            for request in batch {
                (request.done)(result.clone());
            }
        }
    }

    fn write_batch(&mut self, batch: &[Request]) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let mut purge_upto = None;
        for record in batch.iter().flat_map(|r| &r.records) {
            if self.active_is_full() {
                // The old segment is complete and durable before the new one exists,
                // so replay only ever finds a torn record in the newest file.
                self.write_out(&mut buf)?;
                self.sync()?;
                self.roll(&mut buf)?;
            }
            let start = buf.len();
            record.encode_frame(&mut buf);
            self.maybe_tear(&mut buf, start)?;
            self.active_mut().bytes += (buf.len() - start) as u64;
            self.note_written(record);
            if let Record::Purge { upto } = record {
                purge_upto = purge_upto.max(Some(upto.index));
            }
        }
        if buf.is_empty() {
            // Only no-op requests: everything before them is already written.
            return Ok(());
        }
        self.write_out(&mut buf)?;
        if !batch.iter().any(|r| r.sync) {
            return Ok(());
        }
        self.sync()?;
        if let Some(m) = &self.metrics {
            let entries = batch.iter().flat_map(|r| &r.records).filter(|r| matches!(r, Record::Entry(_))).count();
            m.fsync_entries.observe(entries as f64);
        }
        if let Some(upto) = purge_upto {
            // Only after the Purge record is durable: a replay must never find
            // segments missing that no record says were purged.
            self.remove_purged_segments(upto)?;
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty (see `new`); an empty deque would be a bug here.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let newest = self.segments.len() - 1;
        &mut self.segments[newest]
    }

    fn active_is_full(&self) -> bool {
        let active = self.active();
        active.bytes >= self.segment_bytes && active.bytes > active.header_bytes
    }

    /// Keeps the writer's view (header, per-segment indexes) in step with the records
    /// written, so the next segment's header says what the stream says at that point.
    fn note_written(&mut self, record: &Record) {
        Segment::note_record(self.segments.make_contiguous(), record);
        match record {
            Record::Entry(entry) => self.last_index = Some(entry.index),
            Record::Vote(vote) => self.header.vote = Some(vote.clone()),
            Record::Truncate { from_index } => {
                if self.last_index.is_some_and(|last| last >= *from_index) {
                    self.last_index = from_index.checked_sub(1);
                }
            }
            Record::Purge { upto } => {
                if self.header.purged.is_none_or(|p| p.index < upto.index) {
                    self.header.purged = Some(*upto);
                }
            }
            Record::Meta { key, value } => {
                self.header.meta.insert(key.clone(), value.clone());
            }
            Record::Header(_) => {}
        }
    }

    /// Creates the next segment; its header goes into `buf`, which the caller has
    /// flushed to the old segment.
    fn roll(&mut self, buf: &mut Vec<u8>) -> Result<(), WalError> {
        let seq = self.active().seq + 1;
        let (segment, file) = segment::create(&self.dir, seq, next_index_hint(self.last_index, &self.header))?;
        tracing::debug!(segment = %segment.path.display(), "wal: new segment");
        // The finished segment ends at its last record (a crash before this
        // reaches the disk leaves zeros after it, which replay reads as its end).
        let old = self.active();
        self.file.set_len(self.written).map_err(io_error("truncate segment", &old.path))?;
        self.segments.push_back(segment);
        self.file = file;
        self.written = 0;
        self.file_len = 0;
        self.start_segment(buf);
        Ok(())
    }

    /// Puts the header record that opens the (empty) active segment into `buf`.
    fn start_segment(&mut self, buf: &mut Vec<u8>) {
        let start = buf.len();
        Record::Header(self.header.clone()).encode_frame(buf);
        let len = (buf.len() - start) as u64;
        let active = self.active_mut();
        active.bytes += len;
        active.header_bytes = len;
    }

    fn write_out(&mut self, buf: &mut Vec<u8>) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = &self.segments[self.segments.len() - 1].path;
        let started = std::time::Instant::now();
        self.file.write_all_at(buf, self.written).map_err(io_error("write segment", path))?;
        self.written += buf.len() as u64;
        if self.written > self.file_len {
            let zeros = vec![0; ZEROED_AHEAD_BYTES as usize];
            self.file.write_all_at(&zeros, self.written).map_err(io_error("write segment", path))?;
            self.file_len = self.written + ZEROED_AHEAD_BYTES;
        }
        if let Some(m) = &self.metrics {
            m.write_duration.observe(started.elapsed().as_secs_f64());
            m.write_bytes.add(buf.len() as i64);
        }
        buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        let path = &self.segments[self.segments.len() - 1].path;
        #[cfg(any(test, feature = "failpoints"))]
        if self.status.failpoints.take_sync_failure() {
            return Err(io_error("sync segment", path)(std::io::Error::other("failpoint: fsync failed")));
        }
        let started = std::time::Instant::now();
        self.file.sync_data().map_err(io_error("sync segment", path))?;
        let took = started.elapsed();
        if let Some(m) = &self.metrics {
            m.fsync_duration.observe(took.as_secs_f64());
        }
        if took > WARN_SYNC_DURATION {
            // etcd's words, which operators alert on.
            tracing::warn!(took = ?took, expected_duration = ?WARN_SYNC_DURATION, "slow fdatasync");
        }
        self.status.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Failpoint: write only the first half of the record that starts at `start` in
    /// `buf` (with everything before it), then fail as a crash would.
    #[cfg(any(test, feature = "failpoints"))]
    fn maybe_tear(&mut self, buf: &mut Vec<u8>, start: usize) -> Result<(), WalError> {
        if !self.status.failpoints.take_tear() {
            return Ok(());
        }
        buf.truncate(start + (buf.len() - start) / 2);
        self.write_out(buf)?;
        let path = &self.active().path;
        Err(io_error("write segment", path)(std::io::Error::other("failpoint: torn write")))
    }

    #[cfg(not(any(test, feature = "failpoints")))]
    fn maybe_tear(&mut self, _buf: &mut Vec<u8>, _start: usize) -> Result<(), WalError> {
        Ok(())
    }

    /// Deletes the oldest segments while everything in them is purged or truncated
    /// away. Only a prefix goes, and never the active segment: the newest header and
    /// any later Vote, Purge and Meta records always survive.
    fn remove_purged_segments(&mut self, upto: u64) -> Result<(), WalError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_index.is_none_or(|m| m <= upto) {
            let oldest = &self.segments[0];
            fs::remove_file(&oldest.path).map_err(io_error("remove segment", &oldest.path))?;
            self.segments.pop_front();
            removed += 1;
        }
        if removed > 0 {
            segment::sync_dir(&self.dir)?;
            tracing::info!(dir = %self.dir.display(), purged_index = upto, segments_removed = removed, "wal: removed purged segments");
        }
        Ok(())
    }
}

fn next_index_hint(last_index: Option<u64>, header: &LogHeader) -> u64 {
    // After a purge past the last entry (an installed snapshot) the log continues
    // after the purge point.
    last_index.max(header.purged.map(|p| p.index)).map_or(0, |i| i.saturating_add(1))
}
