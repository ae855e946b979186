//! openraft's state machine, backed by `hub_store::StateMachine`.
//!
//! Every committed entry reaches [`HubStateMachine::apply`] in log order on every
//! member: a command is decoded and applied through the store's one apply path;
//! the entry's log ID (and a new membership, when the entry carries one, both
//! as openraft's and in etcd's `members` buckets, `hub_store::members`) is
//! committed in the same backend transaction, so what openraft reads back after
//! a crash is exactly what the backend holds. Applied changes are published on
//! the commit feed for watchers on this member.
//!
//! The backend is made durable after the fact (the WAL already holds every
//! committed entry), at most every 100 ms and only once the member's own WAL
//! holds everything applied (a leader applies what a quorum of followers made
//! durable, possibly before its own flush): [`Durable`] says up to which log
//! index it is, and the log store never purges past that (a follower's
//! snapshot install would otherwise leave a backend older than the log's
//! start). A sync that fails makes it an
//! error for good: the log stops purging and the member stops serving.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hub_proto::etcdserverpb::InternalRaftRequest;
use hub_store::snapshot::Frozen;
use hub_store::{StateMachine, StoreError as HubStoreError, Syncer};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, MutexGuard};
use prost::Message;
use tokio::sync::{broadcast, watch, Notify};

use crate::slow_apply::SlowApply;
use crate::types::{ApplyOutput, Entry, LogId, Member, StorageError, TypeConfig};
use crate::wait::Wait;
use crate::wal::Wal;
use crate::Committed;

const META_APPLIED: &[u8] = b"hub_raft_applied";
const META_MEMBERSHIP: &[u8] = b"hub_raft_membership";

fn io_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

#[derive(Clone)]
pub struct HubStateMachine {
    pub(crate) state: Arc<Mutex<StateMachine>>,
    committed: broadcast::Sender<Arc<Committed>>,
    slow_apply: SlowApply,
    /// The newest snapshot point and the newest snapshot file.
    snapshots: Arc<Mutex<Snapshots>>,
    /// Wakes [`sync_backend`] after each applied batch.
    sync_wanted: Arc<Notify>,
    /// The log: a leader applies entries its own WAL may not have made durable
    /// yet (a quorum of followers has), so the backend is synced only after
    /// the WAL holds everything applied ([`Wal::barrier`]).
    wal: Arc<Wal>,
    durable: Arc<watch::Sender<Durable>>,
    /// Proposers on this member waiting for their entry's answer.
    wait: Arc<Wait>,
    /// Set once openraft runs (entries applied before are re-applied at start).
    #[cfg(feature = "failpoints")]
    pub(crate) running: Arc<std::sync::atomic::AtomicBool>,
}

/// The last log index the backend holds durably, or why it cannot be made
/// durable any more.
pub type Durable = Result<u64, String>;

/// Snapshots as etcd takes them: a raft snapshot every `--snapshot-count`
/// entries is only a point (the backend durable there, so the log before it
/// may go); the backend is copied into a snapshot file only when a follower
/// needs one, as etcd sends its backend only to a member behind the log.
#[derive(Default)]
struct Snapshots {
    /// The newest point built, or the snapshot installed from the leader.
    point: Option<SnapshotMeta<u64, Member>>,
    /// The newest snapshot file (`crate::snapshot::KEPT_FILE`), with what it
    /// holds: written for a follower, or installed from the leader.
    file: Option<(SnapshotMeta<u64, Member>, PathBuf)>,
}

impl Snapshots {
    /// The file, if it is at or past the newest point (the log after it is
    /// still there for a follower that installs it).
    fn fresh_file(&self) -> Option<(SnapshotMeta<u64, Member>, PathBuf)> {
        let point = self.point.as_ref()?;
        self.file.clone().filter(|(meta, _)| meta.last_log_id >= point.last_log_id)
    }
}

impl HubStateMachine {
    /// Also starts [`sync_backend`] for `state`.
    pub fn new(
        state: Arc<Mutex<StateMachine>>,
        wal: Arc<Wal>,
        committed: broadcast::Sender<Arc<Committed>>,
        wait: Arc<Wait>,
        slow_apply: SlowApply,
    ) -> Self {
        // The WAL holds every committed entry durably, so the backend need only
        // be durable after the fact (and before the WAL is purged).
        let on_disk = {
            let sm = state.lock();
            sm.defer_durability(true);
            // A previous run's: openraft starts with no current snapshot.
            let _ = std::fs::remove_file(crate::snapshot::kept_path(&sm));
            sm.applied_index()
        };
        let durable = Arc::new(watch::Sender::new(Ok(on_disk)));
        let sync_wanted = Arc::new(Notify::new());
        let wake = sync_wanted.clone();
        state.lock().on_background_commit(Arc::new(move || wake.notify_one()));
        let this = HubStateMachine {
            state,
            committed,
            slow_apply,
            snapshots: Arc::default(),
            sync_wanted,
            wal,
            durable,
            wait,
            #[cfg(feature = "failpoints")]
            running: Arc::default(),
        };
        tokio::spawn(sync_backend(this.weak(), this.sync_wanted.clone()));
        this
    }

    /// Writes etcd's `members` buckets from the membership the backend holds
    /// when they are not in step with it: a backend written before hub kept
    /// them (each membership entry writes them from then on).
    pub(crate) fn members_in_step(&self) -> Result<(), StorageError> {
        let mut sm = self.state.lock();
        let (_, membership) = Self::applied(&sm)?;
        if membership.log_id().is_none() {
            return Ok(());
        }
        if sm.stage_members(&crate::membership::etcd_members(membership.membership())).map_err(io_err)? {
            let index = sm.applied_index();
            sm.commit_meta(index).map_err(io_err)?;
        }
        Ok(())
    }

    pub(crate) fn slow_apply(&self) -> &SlowApply {
        &self.slow_apply
    }

    /// How far the backend is durable, as it changes.
    pub fn durable(&self) -> watch::Receiver<Durable> {
        self.durable.subscribe()
    }

    /// What [`sync_backend`] holds: nothing that keeps the state machine alive.
    fn weak(&self) -> Backend {
        Backend { state: Arc::downgrade(&self.state), wal: Arc::downgrade(&self.wal), durable: Arc::downgrade(&self.durable) }
    }

    /// Makes what was applied so far durable (at shutdown).
    pub(crate) async fn sync(&self) -> Result<(), String> {
        sync(&self.state, &self.wal, &self.durable).await
    }

    /// Makes the backend durable while `sm` is locked (before a snapshot is
    /// built or after one is installed).
    fn sync_locked(&self, sm: &StateMachine) -> Result<(), StorageError> {
        let index = sm.applied_index();
        let synced = make_durable(&self.wal, &sm.syncer());
        record_sync(&self.durable, index, synced).map_err(io_err)
    }

    /// The snapshot meta of what `sm` holds now.
    fn snapshot_meta(sm: &StateMachine) -> Result<SnapshotMeta<u64, Member>, StorageError> {
        let (last_log_id, last_membership) = Self::applied(sm)?;
        let snapshot_id = format!("{}-{}", last_log_id.map_or(0, |l| l.leader_id.term), last_log_id.map_or(0, |l| l.index));
        Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
    }

    /// Writes the state as it is now into the kept snapshot file (frozen under
    /// the lock in a moment, written without it: entries go on being applied).
    fn write_snapshot_file(&self) -> Result<(SnapshotMeta<u64, Member>, PathBuf), StorageError> {
        let (frozen, meta, path, metrics) = {
            let sm = self.state.lock();
            let frozen = Frozen::of(&sm).map_err(io_err)?;
            (frozen, Self::snapshot_meta(&sm)?, crate::snapshot::kept_path(&sm), sm.metrics().clone())
        };
        crate::snapshot::build(&frozen, &path, &metrics).map_err(io_err)?;
        Ok((meta, path))
    }

    fn applied(sm: &StateMachine) -> Result<(Option<LogId>, StoredMembership<u64, Member>), StorageError> {
        // Stored as `Option<LogId>` (a snapshot's last log ID may be none).
        let applied: Option<LogId> = match sm.meta(META_APPLIED).map_err(io_err)? {
            Some(b) => bincode::deserialize(&b).map_err(io_err)?,
            None => None,
        };
        let membership = match sm.meta(META_MEMBERSHIP).map_err(io_err)? {
            Some(b) => bincode::deserialize(&b).map_err(io_err)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Applies one entry; returns the output for the proposer.
    fn apply_entry(&self, sm: &mut StateMachine, entry: &Entry) -> Result<ApplyOutput, StorageError> {
        let index = entry.log_id.index;
        sm.stage_meta(META_APPLIED, bincode::serialize(&Some(entry.log_id)).map_err(io_err)?);
        let command = match &entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                sm.stage_meta(META_MEMBERSHIP, bincode::serialize(&stored).map_err(io_err)?);
                // etcd's buckets, in the same commit: never out of step with the entry.
                sm.stage_members(&crate::membership::etcd_members(m)).map_err(io_err)?;
                None
            }
            EntryPayload::Normal(cmd) => Some(InternalRaftRequest::decode(cmd.0.as_slice()).map_err(io_err)?),
        };
        let Some(req) = command else {
            sm.commit_meta(index).map_err(io_err)?;
            return Ok(ApplyOutput::default());
        };
        let request_id = req.header.as_ref().map_or(0, |h| h.id);
        if sm.has_applied(index) {
            // In the backend already (replayed after a restart): it was
            // answered when it was first applied.
            if request_id != 0 && self.wait.waits_for(request_id) {
                tracing::warn!(index, applied_index = sm.applied_index(), request_id, "an entry awaited here was applied before");
            }
            return Ok(ApplyOutput::default());
        }
        let started = Instant::now();
        let result = sm.apply(index, &req, started);
        self.slow_apply.applied(started, &req, &result);
        let (answer, events) = match result {
            Ok(applied) => (Ok(applied.response), applied.events),
            Err(HubStoreError::Etcd(e)) => {
                // Refused without a change; still record that the entry was applied.
                sm.commit_meta(index).map_err(io_err)?;
                (Err(e), Vec::new())
            }
            Err(fatal) => return Err(io_err(fatal)),
        };
        // The proposer first (if it waits here), then the watchers: its answer
        // does not queue behind the entry's watch fan-out.
        let answer = match request_id {
            0 => Some(answer),
            id => self.wait.trigger(id, answer),
        };
        if !events.is_empty() {
            let revision = sm.current_revision();
            // Nobody watching is not an error.
            let _ = self.committed.send(Arc::new(Committed { revision, events }));
        }
        Ok(ApplyOutput { request_id, result: answer })
    }
}

/// etcd's backend batch interval: applied writes wait in the backend's write
/// buffer (`hub_store::write_buffer`) and reach the disk at most this often.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// What [`sync_backend`] syncs, held weakly.
struct Backend {
    state: Weak<Mutex<StateMachine>>,
    wal: Weak<Wal>,
    durable: Weak<watch::Sender<Durable>>,
}

/// Makes the backend durable after applied batches, at most every
/// [`SYNC_INTERVAL`], off the apply path and without the state's lock. A
/// failed fsync poisons the backend: the next apply fails and stops raft, and
/// [`Durable`] turns into the error, on which the member stops. Ends when the
/// state machine is gone.
async fn sync_backend(backend: Backend, wanted: Arc<Notify>) {
    #[cfg(feature = "failpoints")]
    let mut syncs = 0u64;
    loop {
        wanted.notified().await;
        let (Some(state), Some(wal), Some(durable)) =
            (backend.state.upgrade(), backend.wal.upgrade(), backend.durable.upgrade())
        else {
            return;
        };
        #[cfg(feature = "failpoints")]
        {
            syncs += 1;
            if crate::failpoints::enabled("backend-sync-skip") {
                continue;
            }
            if crate::failpoints::number("backend-sync-error").is_some_and(|n| syncs >= n) {
                tracing::warn!("failpoint: the backend sync fails");
                let _ = record_sync(&durable, 0, Err("failpoint: backend fsync failed".into()));
                return;
            }
        }
        let started = tokio::time::Instant::now();
        if sync(&state, &wal, &durable).await.is_err() {
            return;
        }
        drop((state, wal, durable));
        tokio::time::sleep_until(started + SYNC_INTERVAL).await;
    }
}

/// Makes the backend durable on a blocking thread, without holding the state's
/// lock during the fsync; first waits until the WAL holds every entry applied.
async fn sync(state: &Mutex<StateMachine>, wal: &Arc<Wal>, durable: &watch::Sender<Durable>) -> Result<(), String> {
    let (syncer, index) = {
        let sm = state.lock();
        (sm.syncer(), sm.applied_index())
    };
    let wal = wal.clone();
    let synced =
        tokio::task::spawn_blocking(move || make_durable(&wal, &syncer)).await.unwrap_or_else(|e| Err(e.to_string()));
    record_sync(durable, index, synced)
}

/// Syncs the backend once the WAL holds every entry applied (a leader may
/// have applied entries before its own flush was done).
fn make_durable(wal: &Wal, syncer: &Syncer) -> Result<(), String> {
    wal.barrier().map_err(|e| e.to_string())?;
    syncer.sync().map_err(|e| e.to_string())
}

/// Records a sync's outcome: the backend is durable up to `index`, or, after a
/// failure, never again (what reached the disk is unknown once an fsync failed).
fn record_sync(durable: &watch::Sender<Durable>, index: u64, synced: Result<(), String>) -> Result<(), String> {
    match synced {
        Ok(()) => {
            durable.send_if_modified(|d| match d {
                Ok(at) if *at < index => {
                    *at = index;
                    true
                }
                _ => false,
            });
            durable.borrow().clone().map(|_| ())
        }
        Err(e) => {
            tracing::error!(error = %e, "backend sync failed; the backend can no longer be trusted");
            let _ = durable.send_replace(Err(format!("backend sync failed: {e}")));
            Err(e)
        }
    }
}

impl RaftStateMachine<TypeConfig> for HubStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<u64, Member>), StorageError> {
        Self::applied(&self.state.lock())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutput>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            #[cfg(feature = "failpoints")]
            if this.running.load(std::sync::atomic::Ordering::SeqCst) {
                crate::failpoints::pause("apply-pause");
            }
            // The state is locked entry by entry and handed on fairly after
            // each: a read or a proposal's quota check waits for one entry at
            // most, not for the whole batch.
            let mut outputs = Vec::with_capacity(entries.len());
            for entry in &entries {
                let mut sm = this.state.lock();
                outputs.push(this.apply_entry(&mut sm, entry)?);
                MutexGuard::unlock_fair(sm);
            }
            // The fsync is left to `sync_backend`: the WAL holds these entries
            // durably, so their proposers need not wait for the backend's.
            this.sync_wanted.notify_one();
            Ok(outputs)
        })
        .await
        .map_err(io_err)?
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let install = snapshot.into_inner();
        let this = self.clone();
        let m = meta.clone();
        let kept = tokio::task::spawn_blocking(move || {
            #[cfg(feature = "failpoints")]
            crate::failpoints::pause("snapshot-install-pause");
            let mut sm = this.state.lock();
            let installed = (|| {
                crate::snapshot::install(&mut sm, &install).map_err(io_err)?;
                sm.defer_durability(true);
                sm.stage_meta(META_APPLIED, bincode::serialize(&m.last_log_id).map_err(io_err)?);
                sm.stage_meta(META_MEMBERSHIP, bincode::serialize(&m.last_membership).map_err(io_err)?);
                sm.commit_meta(m.last_log_id.map_or(0, |l| l.index)).map_err(io_err)
            })();
            match installed {
                // Durable before openraft's purge of the log it covers may go on.
                Ok(()) => {
                    this.sync_locked(&sm)?;
                    crate::snapshot::keep(&sm, &install).map_err(io_err)
                }
                Err(e) => {
                    // The backend is in doubt: the log must keep what it has.
                    let _ = record_sync(&this.durable, 0, Err(format!("snapshot install failed: {e}")));
                    Err(e)
                }
            }
        })
        .await
        .map_err(io_err)??;
        // etcd's words (its server's applySnapshot).
        tracing::info!(
            incoming_leader_snapshot_index = meta.last_log_id.map_or(0, |l| l.index),
            incoming_leader_snapshot_term = meta.last_log_id.map_or(0, |l| l.leader_id.term),
            "applied snapshot"
        );
        *self.snapshots.lock() = Snapshots { point: Some(meta.clone()), file: Some((meta.clone(), kept)) };
        Ok(())
    }

    /// The snapshot a follower behind the log is sent: the file when it is at
    /// or past the newest point, else one written now from the current state
    /// (past the point: the log after it is still there). openraft's
    /// state-machine worker waits for it, so applies pause while a file is
    /// written: the price, paid only when a member is behind the log, of not
    /// copying the backend every `--snapshot-count` entries.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        if self.snapshots.lock().point.is_none() {
            return Ok(None);
        }
        let this = self.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || {
            let fresh = this.snapshots.lock().fresh_file();
            let (meta, path) = match fresh {
                Some(file) => file,
                None => {
                    let file = this.write_snapshot_file()?;
                    this.snapshots.lock().file = Some(file.clone());
                    file
                }
            };
            Ok::<_, StorageError>((meta, std::fs::read(path).map_err(io_err)?))
        })
        .await
        .map_err(io_err)??;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for HubStateMachine {
    /// A snapshot point: the backend made durable at the applied entry, so the
    /// log before it may be purged. No file is written (`get_current_snapshot`
    /// writes one when a follower needs it).
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let this = self.clone();
        let meta = tokio::task::spawn_blocking(move || {
            let sm = this.state.lock();
            // The WAL may be purged up to this point: the backend must hold it on disk first.
            this.sync_locked(&sm)?;
            Self::snapshot_meta(&sm)
        })
        .await
        .map_err(io_err)??;
        tracing::info!(snapshot_index = meta.last_log_id.map_or(0, |l| l.index), "saved snapshot");
        self.snapshots.lock().point = Some(meta.clone());
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
    }
}
