//! The backend's half of a compaction: deleting the revisions a compaction
//! dropped, in batches, resumable after a crash (etcd's `scheduleCompaction`).
//!
//! [`Mvcc`](crate::mvcc::Mvcc) compacts its in-memory index at once (reads of
//! the compacted revisions fail from then on) and commits
//! `scheduledCompactRev` with the entry that asked for the compaction. Then
//! the [`Compactor`] walks the `key` table up to the compacted revision,
//! deleting at most `batch_limit` revisions per backend commit with a pause
//! of `sleep_interval` between commits, and hashes what it walks (the hash
//! etcd's CompactHashCheck compares, [`Compactor::hashes`]); the last batch
//! commits `finishedCompactRev`. Whatever commit a crash stops after, the
//! backend restarts: with scheduled past finished, `Mvcc::restore` schedules
//! the compaction again (etcd's "resume scheduled compaction") and it deletes
//! what is left. Its hash is not kept: it did not see what the first run
//! deleted (etcd-io/etcd#15919).
//!
//! hubd compacts on one background thread, in the order compactions were
//! applied (etcd's FIFO scheduler), and stops it before the backend is
//! replaced or closed; tools and tests compact inside the call that
//! schedules, the same batches without the pauses.

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::backend::{Backend, Table, WriteBatch};
use crate::error::{BackendError, StoreError};
use crate::hash::KvHasher;
use crate::metrics::StoreMetrics;
use crate::mvcc::{KvHash, META_FINISHED_COMPACT};
use crate::revision::Revision;

/// etcd's default `--compaction-batch-limit`.
pub const DEFAULT_BATCH_LIMIT: usize = 1000;
/// etcd's default `--compaction-sleep-interval`.
pub const DEFAULT_SLEEP_INTERVAL: Duration = Duration::from_millis(10);
/// How many compactions' hashes are kept (etcd's `hashStorageMaxSize`).
pub const KEPT_COMPACTION_HASHES: usize = 10;

/// How compactions delete from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionConfig {
    /// Revisions read (and those of them dropped, deleted) per backend commit.
    pub batch_limit: usize,
    /// The pause between two batches.
    pub sleep_interval: Duration,
    /// On a thread of its own (hubd), or inside the call that schedules it.
    pub background: bool,
}

impl Default for CompactionConfig {
    /// Inside the call, in batches of etcd's default size.
    fn default() -> Self {
        CompactionConfig { batch_limit: DEFAULT_BATCH_LIMIT, sleep_interval: DEFAULT_SLEEP_INTERVAL, background: false }
    }
}

impl CompactionConfig {
    /// hubd's, from `--compaction-batch-limit` and
    /// `--compaction-sleep-interval`: zero is etcd's default for either. A
    /// negative limit is one batch (etcd would never finish).
    pub fn background(batch_limit: i64, sleep_interval: Duration) -> Self {
        let batch_limit = match batch_limit {
            0 => DEFAULT_BATCH_LIMIT,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let sleep_interval = if sleep_interval.is_zero() { DEFAULT_SLEEP_INTERVAL } else { sleep_interval };
        CompactionConfig { batch_limit, sleep_interval, background: true }
    }
}

/// One compaction, its index already compacted: what is left to do in the backend.
pub(crate) struct Job {
    pub(crate) revision: i64,
    /// The compaction before it (-1: none), the hash's lower bound.
    pub(crate) previous: i64,
    /// The revisions at or below `revision` that stay.
    pub(crate) keep: HashSet<Revision>,
    /// Whether the compaction before had finished when this one was
    /// scheduled: only then does this one's hash cover every revision since.
    pub(crate) keeps_hash: bool,
}

/// Why a compaction did not finish.
enum Unfinished {
    Stopped,
    Failed(StoreError),
}

impl From<StoreError> for Unfinished {
    fn from(e: StoreError) -> Self {
        Unfinished::Failed(e)
    }
}

impl From<BackendError> for Unfinished {
    fn from(e: BackendError) -> Self {
        Unfinished::Failed(e.into())
    }
}

/// What the compactor and its thread share.
struct Shared {
    backend: Arc<dyn Backend>,
    config: CompactionConfig,
    metrics: Option<StoreMetrics>,
    /// The hashes the last compactions took, oldest first.
    hashes: Mutex<VecDeque<KvHash>>,
    progress: Arc<Progress>,
    /// Told after each batch's commit (see [`Compactor::on_commit`]).
    on_commit: Mutex<Option<BackgroundCommit>>,
}

/// Wakes whoever makes the backend durable: a background commit landed.
pub type BackgroundCommit = Arc<dyn Fn() + Send + Sync>;

/// How far compactions got, shared with those who wait for them (without
/// the backend, which they must not keep open).
struct Progress {
    state: Mutex<ProgressState>,
    /// Signalled on a stop: a pause ends at once.
    changed: Condvar,
}

struct ProgressState {
    /// The newest compaction that ended in the backend, done or failed
    /// (-1: none).
    ended: i64,
    stopping: bool,
}

/// Runs the compactions' backend work, in the order they are scheduled.
pub struct Compactor {
    shared: Arc<Shared>,
    /// The background thread's queue and the thread; none inline.
    worker: Option<(mpsc::Sender<Job>, JoinHandle<()>)>,
}

impl Compactor {
    /// A compactor over `backend`, whose last finished compaction is `finished`.
    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        config: CompactionConfig,
        metrics: Option<StoreMetrics>,
        finished: i64,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            backend,
            config,
            metrics,
            hashes: Mutex::new(VecDeque::new()),
            progress: Arc::new(Progress {
                state: Mutex::new(ProgressState { ended: finished, stopping: false }),
                changed: Condvar::new(),
            }),
            on_commit: Mutex::new(None),
        });
        let worker = if config.background {
            let (queue, jobs) = mpsc::channel::<Job>();
            let on_thread = shared.clone();
            let thread = std::thread::Builder::new()
                .name("compaction".into())
                .spawn(move || {
                    for job in jobs {
                        on_thread.run(job);
                    }
                })
                .map_err(|e| BackendError::new(format!("start the compaction thread: {e}")))?;
            Some((queue, thread))
        } else {
            None
        };
        Ok(Compactor { shared, worker })
    }

    /// Deletes what `job` dropped: queued for the thread, or now.
    pub(crate) fn schedule(&self, job: Job) -> Result<(), StoreError> {
        match &self.worker {
            Some((queue, _)) => {
                // Only a stopped thread takes no more: the compaction then
                // resumes when the backend is opened again.
                let _ = queue.send(job);
                Ok(())
            }
            None => match self.shared.compact(job) {
                Ok(()) | Err(Unfinished::Stopped) => Ok(()),
                Err(Unfinished::Failed(e)) => Err(e),
            },
        }
    }

    /// Calls `wake` after each batch the compaction commits. With durability
    /// deferred, a commit waits in the backend's write buffer for the next
    /// sync, which raft's applies ask for; a compaction commits after the
    /// apply that scheduled it, so it asks too, or its deletions would wait
    /// for the next write (etcd's backend commits them within its batch
    /// interval).
    pub(crate) fn on_commit(&self, wake: BackgroundCommit) {
        *self.shared.on_commit.lock() = Some(wake);
    }

    /// Observes the pause of a compaction of the in-memory index.
    pub(crate) fn index_compacted(&self, took: Duration) {
        if let Some(m) = &self.shared.metrics {
            m.index_compacted(took);
        }
    }

    /// The hashes the last [`KEPT_COMPACTION_HASHES`] compactions took of
    /// their revision (etcd's `HashStorage.Hashes`), oldest first.
    pub fn hashes(&self) -> Vec<KvHash> {
        self.shared.hashes.lock().iter().copied().collect()
    }

    /// The hash a compaction at `revision` took, if it is kept.
    pub(crate) fn hash_at(&self, revision: i64) -> Option<KvHash> {
        self.shared.hashes.lock().iter().find(|h| h.revision == revision).copied()
    }

    /// A handle that tells when compactions are done in the backend.
    pub fn progress(&self) -> CompactionProgress {
        CompactionProgress(self.shared.progress.clone())
    }

    /// Stops the work in progress after its current batch (a pause ends at
    /// once) and waits for it; queued compactions are left to resume when
    /// the backend is opened again. Called before the backend is replaced
    /// or closed.
    pub(crate) fn stop(&mut self) {
        self.shared.progress.state.lock().stopping = true;
        self.shared.progress.changed.notify_all();
        if let Some((queue, thread)) = self.worker.take() {
            drop(queue);
            if thread.join().is_err() {
                tracing::error!("the compaction thread panicked");
            }
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tells whether a compaction is done in the backend (etcd's physical
/// compaction waits for it).
#[derive(Clone)]
pub struct CompactionProgress(Arc<Progress>);

impl CompactionProgress {
    /// True once the compaction at `revision` (or a later one) ended in the
    /// backend (done, or failed: etcd's physical compaction answers then
    /// too), or the compactor stopped (its backend is no longer used).
    pub fn done(&self, revision: i64) -> bool {
        self.0.state.lock().done(revision)
    }

    /// Blocks until [`CompactionProgress::done`] holds for `revision`.
    pub fn wait(&self, revision: i64) {
        let mut p = self.0.state.lock();
        self.0.changed.wait_while(&mut p, |p| !p.done(revision));
    }
}

impl ProgressState {
    fn done(&self, revision: i64) -> bool {
        self.ended >= revision || self.stopping
    }
}

impl Shared {
    /// A compaction on the thread: its outcome is logged, as etcd's.
    fn run(&self, job: Job) {
        match self.compact(job) {
            Ok(()) => {}
            Err(Unfinished::Stopped) => {
                tracing::warn!(error = "interrupted due to stop signal", "Failed compaction");
            }
            Err(Unfinished::Failed(e)) => tracing::warn!(error = %e, "Failed compaction"),
        }
    }

    /// Deletes every revision up to `job.revision` that it does not keep, in
    /// batches, hashing each one on the way, and records the compaction as
    /// finished with the last batch.
    fn compact(&self, job: Job) -> Result<(), Unfinished> {
        let revision = job.revision;
        let outcome = self.compact_in_batches(job);
        if !matches!(outcome, Err(Unfinished::Stopped)) {
            let mut progress = self.progress.state.lock();
            progress.ended = progress.ended.max(revision);
            self.progress.changed.notify_all();
        }
        outcome
    }

    fn compact_in_batches(&self, job: Job) -> Result<(), Unfinished> {
        let started = Instant::now();
        let mut deleted = 0;
        let outcome = self.delete_batches(&job, &mut deleted);
        if let Some(m) = &self.metrics {
            m.compaction_ended(started.elapsed(), deleted);
        }
        let hash = outcome?;
        let (size, in_use) = (self.backend.size(), self.backend.size_in_use().unwrap_or(0));
        // etcd's words, which operators and its tests look for.
        tracing::info!(
            compact_revision = job.revision,
            took = ?started.elapsed(),
            hash = hash.hash,
            current_db_size_bytes = size,
            current_db_size = %hub_go::humanize::bytes(size),
            current_db_size_in_use_bytes = in_use,
            current_db_size_in_use = %hub_go::humanize::bytes(in_use),
            "finished scheduled compaction"
        );
        if job.keeps_hash {
            let mut hashes = self.hashes.lock();
            if hashes.len() == KEPT_COMPACTION_HASHES {
                hashes.pop_front();
            }
            hashes.push_back(hash);
        } else {
            tracing::info!("previous compaction was interrupted, skip storing compaction hash value");
        }
        Ok(())
    }

    fn delete_batches(&self, job: &Job, deleted: &mut usize) -> Result<KvHash, Unfinished> {
        let limit = self.config.batch_limit.max(1);
        let end = Revision::new(job.revision.saturating_add(1), 0).to_bytes(false);
        let mut hasher = KvHasher::new(job.previous, job.revision, &job.keep);
        let mut from = Vec::new();
        loop {
            let mut next = Vec::new();
            let batch_started = Instant::now();
            let mut batch = WriteBatch::default();
            let (mut read, mut failure) = (0, None);
            self.backend.view()?.scan_bulk(Table::Key, &from, Some(&end), &mut |k, v| {
                let kept = Revision::from_bytes(k).is_some_and(|(r, _)| job.keep.contains(&r));
                if !kept {
                    batch.delete(Table::Key, k.to_vec());
                }
                failure = hasher.write(k, v).err();
                read += 1;
                if read == limit {
                    // The next batch starts right after this key.
                    next = [k, &[0]].concat();
                }
                failure.is_none() && read < limit
            })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            *deleted += batch.len();
            let last = read < limit;
            if last {
                batch.put(Table::Meta, META_FINISHED_COMPACT.to_vec(), Revision::new(job.revision, 0).to_bytes(false));
            }
            self.backend.commit(batch)?;
            if let Some(wake) = self.on_commit.lock().clone() {
                wake();
            }
            if let Some(m) = &self.metrics {
                m.compaction_batch(batch_started.elapsed());
            }
            if last {
                return Ok(KvHash { hash: hasher.hash(), compact_revision: job.previous, revision: job.revision });
            }
            self.pause()?;
            from = next;
        }
    }

    /// The pause between two batches (none inline); ends at once on a stop.
    fn pause(&self) -> Result<(), Unfinished> {
        let mut progress = self.progress.state.lock();
        if self.config.background {
            match Instant::now().checked_add(self.config.sleep_interval) {
                Some(until) => {
                    self.progress.changed.wait_while_until(&mut progress, |p| !p.stopping, until);
                }
                None => self.progress.changed.wait_while(&mut progress, |p| !p.stopping),
            }
        }
        if progress.stopping {
            return Err(Unfinished::Stopped);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hub_proto::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, InternalRaftRequest, PutRequest, RangeRequest,
    };

    use super::*;
    use crate::{EtcdError, StateMachine};

    /// Applies commands as raft would, one log index each.
    fn apply(sm: &mut StateMachine, req: InternalRaftRequest) -> Result<(), StoreError> {
        let index = sm.applied_index() + 1;
        sm.apply(index, &req, Instant::now()).map(|_| ())
    }

    /// 30 revisions over 5 keys: each put 6 times, two of them deleted on the way.
    fn fill(sm: &mut StateMachine) {
        for round in 0..6 {
            for k in 0..5 {
                let put =
                    PutRequest { key: format!("k{k}").into(), value: format!("v{round}").into(), ..Default::default() };
                apply(sm, InternalRaftRequest { put: Some(put), ..Default::default() }).unwrap();
            }
            if round == 2 {
                for k in ["k1", "k3"] {
                    let del = DeleteRangeRequest { key: k.into(), ..Default::default() };
                    apply(sm, InternalRaftRequest { delete_range: Some(del), ..Default::default() }).unwrap();
                }
            }
        }
    }

    fn compact(sm: &mut StateMachine, revision: i64) {
        let req = CompactionRequest { revision, physical: false };
        apply(sm, InternalRaftRequest { compaction: Some(req), ..Default::default() }).unwrap();
    }

    /// The `key` table and the compaction marks, as the backend holds them.
    fn backend_state(sm: &StateMachine) -> (Vec<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>) {
        let mut keys = Vec::new();
        sm.mvcc()
            .backend()
            .scan(Table::Key, &[], None, &mut |k, _| {
                keys.push(k.to_vec());
                true
            })
            .unwrap();
        let marks = [crate::mvcc::META_SCHEDULED_COMPACT, META_FINISHED_COMPACT];
        let [scheduled, finished] = marks.map(|m| sm.meta(m).unwrap());
        (keys, scheduled, finished)
    }

    fn open(dir: &Path, config: CompactionConfig) -> StateMachine {
        StateMachine::open_compacting(dir, 2, config).unwrap()
    }

    fn slow(batch_limit: i64) -> CompactionConfig {
        CompactionConfig::background(batch_limit, Duration::from_secs(3600))
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Compacted at 20 in one step: what every other way must end with.
    fn reference() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path(), CompactionConfig::default());
        fill(&mut sm);
        compact(&mut sm, 20);
        (dir, sm)
    }

    #[test]
    fn batches_in_the_background_end_as_one_step_does() {
        let (_ref_dir, want) = reference();
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path(), CompactionConfig::background(1, Duration::from_millis(1)));
        fill(&mut sm);
        compact(&mut sm, 20);
        sm.compaction_progress().wait(20);
        assert_eq!(backend_state(&sm), backend_state(&want));
        assert_eq!(
            sm.mvcc().compaction_hashes(),
            want.mvcc().compaction_hashes(),
            "the same hash, taken batch by batch"
        );
        assert_eq!(sm.mvcc().compaction_hashes().len(), 1);
        for rev in [0, 20, 25] {
            assert_eq!(sm.hash_kv(rev).unwrap(), want.hash_kv(rev).unwrap(), "HashKV at {rev}");
        }
    }

    #[test]
    fn an_interrupted_compaction_resumes_when_the_backend_opens() {
        let (_ref_dir, want) = reference();
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path(), slow(4));
        fill(&mut sm);
        let (all, _, _) = backend_state(&sm);
        compact(&mut sm, 20);
        // Reads below the compaction are refused at once, whatever the backend still holds.
        let old = RangeRequest { key: "k0".into(), revision: 10, ..Default::default() };
        assert!(matches!(sm.range(&old), Err(StoreError::Etcd(EtcdError::Compacted))));
        wait_until("the first batch is committed", || backend_state(&sm).0.len() < all.len());
        let (partial, scheduled, finished) = backend_state(&sm);
        assert!(partial.len() > backend_state(&want).0.len(), "one batch of 4 deleted only some");
        assert_eq!((scheduled.is_some(), finished), (true, None));
        assert!(!sm.compaction_progress().done(20));
        // HashKV hashes out what the compaction still has to delete.
        for rev in [0, 21, 25] {
            assert_eq!(sm.hash_kv(rev).unwrap(), want.hash_kv(rev).unwrap(), "HashKV at {rev} mid-compaction");
        }

        // Stopped mid-compaction (as at shutdown; a crash stops it at some
        // commit too), then opened again: it resumes and finishes.
        let progress = sm.compaction_progress();
        let waiting = std::thread::spawn(move || progress.wait(20));
        drop(sm);
        waiting.join().unwrap(); // a stopped compactor keeps no one waiting
        let sm = open(dir.path(), CompactionConfig::default());
        assert_eq!(backend_state(&sm), backend_state(&want));
        assert_eq!(sm.compact_revision(), 20);
        assert!(sm.mvcc().compaction_hashes().is_empty(), "a resumed compaction's hash did not see everything");
        assert_eq!(sm.hash_kv(0).unwrap(), want.hash_kv(0).unwrap());
        // A compaction after the resumed one keeps its hash again.
        drop(sm);
        let (mut sm, mut want) = (open(dir.path(), CompactionConfig::default()), want);
        compact(&mut sm, 30);
        compact(&mut want, 30);
        assert_eq!(sm.mvcc().compaction_hashes().last(), want.mvcc().compaction_hashes().last());
    }

    #[test]
    fn a_compaction_scheduled_behind_an_unfinished_one_keeps_no_hash() {
        let (_ref_dir, want) = reference();
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path(), CompactionConfig::background(1, Duration::from_millis(20)));
        fill(&mut sm);
        compact(&mut sm, 10);
        compact(&mut sm, 20);
        assert_eq!(sm.compact_revision(), 20, "the index is compacted at once");
        let again = CompactionRequest { revision: 15, physical: false };
        let refused = apply(&mut sm, InternalRaftRequest { compaction: Some(again), ..Default::default() });
        assert!(matches!(refused, Err(StoreError::Etcd(EtcdError::Compacted))), "{refused:?}");
        wait_until("both compactions finished", || sm.compaction_progress().done(20));
        let hashed: Vec<i64> = sm.mvcc().compaction_hashes().iter().map(|h| h.revision).collect();
        assert_eq!(hashed, [10], "as etcd: the second did not start from a finished compaction");
        assert_eq!(backend_state(&sm), backend_state(&want));
    }

    #[test]
    fn flag_values_take_etcds_defaults() {
        let c = CompactionConfig::background(0, Duration::ZERO);
        assert_eq!(
            (c.batch_limit, c.sleep_interval, c.background),
            (DEFAULT_BATCH_LIMIT, DEFAULT_SLEEP_INTERVAL, true)
        );
        assert_eq!(CompactionConfig::background(-1, Duration::from_secs(1)).batch_limit, usize::MAX);
        assert_eq!(CompactionConfig::background(7, Duration::from_secs(1)).batch_limit, 7);
    }
}
