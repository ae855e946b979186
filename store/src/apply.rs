//! The state machine: `apply(index, command)` is the one path by which the key
//! space and the leases change. Raft drives it in log order on every member.
//!
//! The semantics are etcd 3.4's `etcdserver/apply.go`: a Txn's compares pick a
//! branch, every check that can refuse the request runs before the first write
//! (so a Txn is applied whole or not at all), and a Txn is one revision. The
//! consistent index (the log index last applied) is committed in the same backend
//! transaction as the changes it covers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hub_proto::etcdserverpb::{
    request_op::Request, response_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, AuthenticateResponse,
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, InternalRaftRequest,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestHeader, ResponseOp, TxnRequest, TxnResponse,
};
use hub_proto::mvccpb::{Event, KeyValue};

use crate::alarm::AlarmStore;
use crate::auth::{AuthInfo, AuthStore};
use crate::backend::{open_bolt, Backend, Table, WriteBatch};
use crate::write_buffer::WriteBuffer;
use crate::command::{AuthCommand, Command};
use crate::compaction::{CompactionConfig, CompactionProgress};
use crate::error::{EtcdError, StoreError};
use crate::key_index::RangeEnd;
use crate::lease::{Lease, Lessor};
use crate::metrics::{OpTally, StoreMetrics};
use crate::mvcc::{KvHash, Mvcc, WriteTxn, ETCD_META_KEYS};
use crate::planned_range::PlannedRange;
use crate::txn::{apply_txn_ops, compare_path, delete_range, header, put, range, range_limit};

/// Makes the backend durable: every commit made before [`Syncer::sync`] runs
/// (see [`StateMachine::syncer`]).
pub struct Syncer {
    backend: Arc<dyn Backend>,
    metrics: StoreMetrics,
}

impl Syncer {
    pub fn sync(&self) -> Result<(), StoreError> {
        Ok(self.metrics.commit(|| self.backend.sync())?)
    }
}

/// What applying one command produced.
#[derive(Debug)]
pub struct Applied {
    pub response: Response,
    /// The changes, in revision order, for watchers.
    pub events: Vec<Event>,
}

/// The reply to one applied command; headers carry only the revision, the
/// service layer adds cluster, member and term.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Range(RangeResponse),
    /// An auth command: only Authenticate fills it (with a simple token).
    Auth(AuthenticateResponse),
    Alarm(AlarmResponse),
    /// A command this member already applied (replayed after a restart).
    AlreadyApplied,
}

pub struct StateMachine {
    mvcc: Mvcc,
    lessor: Lessor,
    auth: AuthStore,
    alarms: AlarmStore,
    applied_index: u64,
    min_lease_ttl: i64,
    /// Records of the layer above (raft's last applied log ID and membership
    /// in `meta`, the members' buckets), written atomically with the next
    /// commit; `None` deletes.
    staged: Vec<Staged>,
    /// The directory holding the backend file.
    dir: PathBuf,
    /// Kept across [`StateMachine::reload`] and snapshot installs.
    metrics: StoreMetrics,
    compaction: CompactionConfig,
}

/// The backend file inside a member's data directory.
pub const BACKEND_FILE: &str = "snap/db";

impl StateMachine {
    /// Opens (or creates) the backend in `dir` and rebuilds the index and
    /// leases; compactions finish inside the call that applies them.
    pub fn open(dir: &Path, min_lease_ttl: i64) -> Result<Self, StoreError> {
        Self::open_compacting(dir, min_lease_ttl, CompactionConfig::default())
    }

    /// [`StateMachine::open`], compactions done as `compaction` says (hubd's
    /// in the background, etcd's `--compaction-*` flags).
    pub fn open_compacting(dir: &Path, min_lease_ttl: i64, compaction: CompactionConfig) -> Result<Self, StoreError> {
        crate::durable_fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt(format!("create {}: {e}", dir.display())))?;
        // Constant names and buckets: only a bug makes this fail, and every test would catch it.
        let metrics = StoreMetrics::new().expect("etcd's store metric options are valid");
        Self::open_with(dir, min_lease_ttl, metrics, compaction)
    }

    fn open_with(
        dir: &Path,
        min_lease_ttl: i64,
        metrics: StoreMetrics,
        compaction: CompactionConfig,
    ) -> Result<Self, StoreError> {
        let backend: Arc<dyn Backend> = Arc::new(WriteBuffer::new(open_bolt(&dir.join(BACKEND_FILE))?));
        Self::from_backend(backend, min_lease_ttl, dir.to_path_buf(), metrics, compaction)
    }

    fn from_backend(
        backend: Arc<dyn Backend>,
        min_lease_ttl: i64,
        dir: PathBuf,
        metrics: StoreMetrics,
        compaction: CompactionConfig,
    ) -> Result<Self, StoreError> {
        crate::schema::migrate(backend.as_ref())?;
        let restored = Mvcc::restore(backend.clone(), compaction, Some(metrics.clone()))?;
        let mut records = Vec::new();
        backend.scan(Table::Lease, &[], None, &mut |k, v| {
            records.push((k.to_vec(), v.to_vec()));
            true
        })?;
        let mut lessor = Lessor::new(min_lease_ttl);
        lessor.restore(&records, restored.leased_keys, Instant::now())?;
        let auth = AuthStore::load(backend.as_ref())?;
        let alarms = AlarmStore::load(backend.as_ref())?;
        Ok(StateMachine {
            mvcc: restored.mvcc,
            lessor,
            auth,
            alarms,
            applied_index: restored.consistent_index,
            min_lease_ttl,
            staged: Vec::new(),
            dir,
            metrics,
            compaction,
        })
    }

    /// Throws away in-memory state and reloads it from the backend: used when a
    /// command failed after it had started changing the index, so that nothing
    /// of it survives.
    fn reload(&mut self) -> Result<(), StoreError> {
        // The reloaded store resumes the compaction in progress.
        self.mvcc.stop_compaction();
        let backend = self.mvcc.backend().clone();
        let reloaded =
            Self::from_backend(backend, self.min_lease_ttl, self.dir.clone(), self.metrics.clone(), self.compaction)?;
        let old = std::mem::replace(self, reloaded);
        self.auth.keep_tokens_of(old.auth);
        Ok(())
    }

    /// Replaces everything with the contents of an etcd-format snapshot (raft's
    /// InstallSnapshot): the snapshot is restored into a fresh backend beside the
    /// current one, which then takes its place by an atomic rename.
    pub fn replace_from_snapshot(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let metrics = self.metrics.clone();
        metrics.snapshot_installed(|| self.install_snapshot(data))
    }

    fn install_snapshot(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError::Snapshot(format!("install snapshot: {what}: {e}"));
        let work = self.dir.join("snapshot.install");
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| io("clear the work directory", e))?;
        }
        std::fs::create_dir_all(&work).map_err(|e| io("create the work directory", e))?;
        let file = work.join("snapshot.db");
        std::fs::write(&file, data).map_err(|e| io("write the snapshot", e))?;
        let mut reader = crate::snapshot::SnapshotReader::open(&file, false)?;
        let restored = work.join("restored");
        crate::snapshot::restore_into(&mut reader, &restored, &crate::snapshot::RestoreOptions::default())?;
        // Nothing may write to the backend that is about to be replaced.
        self.mvcc.stop_compaction();
        // The rename and the fsync of `snap/`, where it lands, timed as etcd's snapshot db fsync.
        let install = || crate::durable_fs::rename(&restored.join(BACKEND_FILE), &self.dir.join(BACKEND_FILE));
        self.metrics.snapshot_synced(install).map_err(|e| io("move the restored backend into place", e))?;
        let reopened = Self::open_with(&self.dir, self.min_lease_ttl, self.metrics.clone(), self.compaction)?;
        let old = std::mem::replace(self, reopened);
        self.auth.keep_tokens_of(old.auth);
        std::fs::remove_dir_all(&work).map_err(|e| io("remove the work directory", e))?;
        Ok(())
    }

    /// Defers the backend's durability to [`StateMachine::sync`] (see
    /// [`Backend::defer_durability`]); for a caller whose own log is durable.
    pub fn defer_durability(&self, deferred: bool) {
        self.mvcc.backend().defer_durability(deferred);
    }

    /// Calls `wake` whenever the backend takes a commit of its own, outside
    /// any apply (a compaction's batches): with durability deferred, the
    /// caller's sync is what brings it to the engine and the disk.
    pub fn on_background_commit(&self, wake: crate::compaction::BackgroundCommit) {
        self.mvcc.on_background_commit(wake);
    }

    /// Makes everything applied so far durable in the backend: with
    /// durability deferred, this is the commit that reaches the disk, timed as
    /// etcd times its backend's commits.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.syncer().sync()
    }

    /// What [`StateMachine::sync`] does, as a handle usable without holding
    /// the state machine: the fsync then keeps no reader or proposer waiting.
    pub fn syncer(&self) -> Syncer {
        Syncer { backend: self.mvcc.backend().clone(), metrics: self.metrics.clone() }
    }

    /// Stages a metadata record to be committed with the next change.
    pub fn stage_meta(&mut self, key: &[u8], value: Vec<u8>) {
        self.stage(Table::Meta, key.to_vec(), Some(value));
    }

    /// Stages a record to be written (`None`: deleted) with the next change.
    pub(crate) fn stage(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.staged.push((table, key, value));
    }

    /// Commits staged metadata (and `index` as the consistent index) on its own,
    /// for log entries that change nothing in the key space.
    pub fn commit_meta(&mut self, index: u64) -> Result<(), StoreError> {
        let txn = self.mvcc.write();
        commit(txn, &mut self.staged, index)?;
        self.applied_index = self.applied_index.max(index);
        Ok(())
    }

    /// A metadata record as last committed.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.mvcc.backend().get_many(Table::Meta, &[key.to_vec()])?.pop().flatten())
    }

    /// Gives every lease its full TTL again from `now`: a new leader does this
    /// so that leases do not expire for the time no leader was counting.
    pub fn refresh_leases(&mut self, now: Instant) {
        self.lessor.refresh_all(now);
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Whether the command at log `index` is applied already (in the backend
    /// when the store opened, or since): applying it again changes nothing.
    pub fn has_applied(&self, index: u64) -> bool {
        index != 0 && index <= self.applied_index
    }

    pub fn current_revision(&self) -> i64 {
        self.mvcc.current_revision()
    }

    pub fn compact_revision(&self) -> i64 {
        self.mvcc.compact_revision()
    }

    /// Tells when a compaction is done in the backend (etcd's physical compaction waits for it).
    pub fn compaction_progress(&self) -> CompactionProgress {
        self.mvcc.compaction_progress()
    }

    /// Stops the compaction in progress, which resumes when the backend is
    /// opened again: at shutdown.
    pub fn stop_compaction(&mut self) {
        self.mvcc.stop_compaction();
    }

    pub fn db_size(&self) -> u64 {
        self.mvcc.backend().size()
    }

    /// Bytes of [`StateMachine::db_size`] holding data (etcd's `dbSizeInUse`).
    pub fn db_size_in_use(&self) -> Result<u64, StoreError> {
        Ok(self.mvcc.backend().size_in_use()?)
    }

    /// What the backend quota is measured against: as etcd, the database
    /// size (bbolt's high-water mark), which only a defragmentation lowers.
    pub fn quota_size(&self) -> Result<u64, StoreError> {
        Ok(self.db_size())
    }

    /// Gives the backend's free pages back to the file system (etcd's defrag).
    pub fn defragment(&self) -> Result<(), StoreError> {
        Ok(self.metrics.defrag(|| self.mvcc.backend().defragment())?)
    }

    /// The store's metrics (backend timings, MVCC and lease counters), for `/metrics`.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    pub fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }

    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    pub fn auth_mut(&mut self) -> &mut AuthStore {
        &mut self.auth
    }

    /// Whether `who` may have `c` applied (see [`AuthStore::authorize`]).
    pub fn authorize(&self, who: &AuthInfo, c: Command<'_>) -> Result<(), EtcdError> {
        self.auth.authorize(who, c, &self.lessor)
    }

    /// Read permission on a key range (see [`AuthStore::authorize_read`]).
    pub fn authorize_read(&self, who: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.auth.authorize_read(who, key, range_end, &self.lessor)
    }

    /// Renewing a lease (see [`AuthStore::authorize_lease_renew`]).
    pub fn authorize_lease_renew(&self, who: &AuthInfo, id: i64) -> Result<(), EtcdError> {
        self.auth.authorize_lease_renew(who, id, &self.lessor)
    }

    /// Listing the leases (see [`AuthStore::authorize_lease_list`]).
    pub fn authorize_lease_list(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        self.auth.authorize_lease_list(who, &self.lessor)
    }

    /// Any known user (see [`AuthStore::authorize_user`]).
    pub fn authorize_user(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        self.auth.authorize_user(who, &self.lessor)
    }

    /// The directory holding the backend (where snapshots are built, on the
    /// same file system).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maintenance.HashKV: see [`Mvcc::hash_kv`].
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, StoreError> {
        self.metrics.hash(true, || self.mvcc.hash_kv(rev))
    }

    /// Maintenance.Hash: the whole backend, see [`crate::hash::backend_hash`].
    pub fn hash(&self) -> Result<u32, StoreError> {
        self.metrics.hash(false, || crate::hash::backend_hash(self.mvcc.backend().as_ref()))
    }

    /// Deletes every meta record that is not etcd's own, and any staged one:
    /// what the layers above staged there (raft's applied log ID and
    /// membership) describes a log this member no longer has once it starts a
    /// new one from imported data. Returns how many records it deleted.
    pub fn retain_etcd_meta(&mut self) -> Result<usize, StoreError> {
        self.staged.clear();
        let mut foreign = Vec::new();
        self.mvcc.backend().scan(Table::Meta, &[], None, &mut |k, _| {
            if !ETCD_META_KEYS.contains(&k) {
                foreign.push(k.to_vec());
            }
            true
        })?;
        let mut batch = WriteBatch::default();
        for k in &foreign {
            batch.delete(Table::Meta, k.clone());
        }
        if !batch.is_empty() {
            self.mvcc.backend().commit(batch)?;
        }
        Ok(foreign.len())
    }

    /// Applies the command at log `index`. An `Err(StoreError::Etcd)` is the
    /// request's answer and changed nothing; any other error is fatal.
    pub fn apply(&mut self, index: u64, req: &InternalRaftRequest, now: Instant) -> Result<Applied, StoreError> {
        if self.has_applied(index) {
            return Ok(Applied { response: Response::AlreadyApplied, events: Vec::new() });
        }
        let started = Instant::now();
        let command = Command::of(req);
        let result = self.apply_command(index, req.header.as_ref(), command, now);
        let compacted = matches!(&result, Err(StoreError::Etcd(EtcdError::Compacted)));
        self.metrics.applied(command, result.is_ok() || compacted, started);
        if index != 0 {
            self.applied_index = index;
        }
        match result {
            Err(StoreError::Etcd(e)) => Err(e.into()),
            Err(fatal) => {
                tracing::error!(index, error = %fatal, "apply failed; reloading state from the backend");
                self.reload()?;
                Err(fatal)
            }
            ok => ok,
        }
    }

    fn apply_command(&mut self, index: u64, header: Option<&RequestHeader>, command: Command<'_>, now: Instant)
        -> Result<Applied, StoreError> {
        // A client's request carries who sent it (proposals of the members
        // themselves, lease expiry for one, carry no header): it is checked
        // here against the auth state it is applied to, whatever checks ran
        // before proposing.
        if let Some(h) = header {
            self.authorize(&AuthInfo::from_header(h), command)?;
        }
        self.alarms.check(command)?;
        match command {
            Command::Auth(c) => self.apply_auth(index, c, now),
            Command::Alarm(r) => self.apply_alarm(index, r),
            Command::DowngradeInfoSet(r) => {
                let mut txn = self.mvcc.write();
                crate::schema::set_downgrade(r, txn.batch_mut());
                commit(txn, &mut self.staged, index)?;
                // Nothing to answer (as for a command applied before).
                Ok(Applied { response: Response::AlreadyApplied, events: Vec::new() })
            }
            Command::Put(r) => self.apply_put(index, r),
            Command::DeleteRange(r) => self.apply_delete_range(index, r),
            Command::Txn(r) => self.apply_txn(index, r),
            Command::Compaction(r) => self.apply_compaction(index, r),
            Command::LeaseGrant(r) => self.apply_lease_grant(index, r, now),
            Command::LeaseRevoke(r) => self.apply_lease_revoke(index, r),
            Command::Range(r) => {
                let response = Response::Range(range(&self.mvcc, r)?);
                self.metrics.count(OpTally::range());
                Ok(Applied { response, events: Vec::new() })
            }
            // Nothing else is proposed (members, for one, change through raft itself).
            Command::Unknown => Ok(Applied { response: Response::AlreadyApplied, events: Vec::new() }),
        }
    }

    fn apply_auth(&mut self, index: u64, c: AuthCommand<'_>, now: Instant) -> Result<Applied, StoreError> {
        let mut txn = self.mvcc.write();
        // A refusal comes before any change, in memory or in the batch.
        let token = self.auth.apply(c, index, now, txn.batch_mut())?;
        let rev = txn.revision();
        commit(txn, &mut self.staged, index)?;
        let resp = AuthenticateResponse { header: header(rev), token: token.unwrap_or_default() };
        Ok(Applied { response: Response::Auth(resp), events: Vec::new() })
    }

    fn apply_alarm(&mut self, index: u64, r: &AlarmRequest) -> Result<Applied, StoreError> {
        let mut txn = self.mvcc.write();
        let alarms = self.alarms.apply(r, txn.batch_mut());
        let rev = txn.revision();
        commit(txn, &mut self.staged, index)?;
        Ok(Applied { response: Response::Alarm(AlarmResponse { header: header(rev), alarms }), events: Vec::new() })
    }

    /// The raised alarms (all types).
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.get(AlarmType::None as i32)
    }

    fn check_lease(&self, lease: i64) -> Result<(), EtcdError> {
        if lease != 0 && self.lessor.lookup(lease).is_none() {
            return Err(EtcdError::LeaseNotFound);
        }
        Ok(())
    }

    fn apply_put(&mut self, index: u64, r: &PutRequest) -> Result<Applied, StoreError> {
        self.check_lease(r.lease)?;
        if r.ignore_value || r.ignore_lease {
            self.mvcc.get_at(&r.key, self.mvcc.current_revision())?.ok_or(EtcdError::KeyNotFound)?;
        }
        let mut txn = self.mvcc.write();
        let resp = put(&mut txn, &mut self.lessor, r)?;
        let events = commit(txn, &mut self.staged, index)?;
        self.metrics.count(OpTally::put(r));
        Ok(Applied { response: Response::Put(resp), events })
    }

    fn apply_delete_range(&mut self, index: u64, r: &DeleteRangeRequest) -> Result<Applied, StoreError> {
        let mut txn = self.mvcc.write();
        let resp = delete_range(&mut txn, &mut self.lessor, r)?;
        let events = commit(txn, &mut self.staged, index)?;
        self.metrics.count(OpTally::delete_range(r));
        Ok(Applied { response: Response::DeleteRange(resp), events })
    }

    fn apply_txn(&mut self, index: u64, r: &TxnRequest) -> Result<Applied, StoreError> {
        let path = compare_path(&self.mvcc, r)?;
        self.check_txn_ops(r, &path)?;
        let mut txn = self.mvcc.write();
        let mut path_iter = path.iter().copied();
        let mut resp = apply_txn_ops(&mut txn, &mut self.lessor, r, &mut path_iter)?;
        resp.header = header(txn.revision());
        let events = commit(txn, &mut self.staged, index)?;
        self.metrics.count_txn(OpTally::txn(r, &path, false));
        Ok(Applied { response: Response::Txn(resp), events })
    }

    /// etcd's `checkRequests` with `checkPut` and `checkRange`, over the ops the
    /// compares selected, against the state before the txn.
    fn check_txn_ops(&self, r: &TxnRequest, path: &[bool]) -> Result<(), StoreError> {
        fn walk(sm: &StateMachine, r: &TxnRequest, path: &mut impl Iterator<Item = bool>) -> Result<(), StoreError> {
            let ops = if path.next().unwrap_or(false) { &r.success } else { &r.failure };
            for op in ops {
                match &op.request {
                    Some(Request::RequestTxn(t)) => walk(sm, t, path)?,
                    Some(Request::RequestPut(p)) => {
                        if p.ignore_value || p.ignore_lease {
                            sm.mvcc.get_at(&p.key, sm.mvcc.current_revision())?.ok_or(EtcdError::KeyNotFound)?;
                        }
                        sm.check_lease(p.lease)?;
                    }
                    Some(Request::RequestRange(q)) if q.revision != 0 => {
                        sm.mvcc.check_read_revision(q.revision)?;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        walk(self, r, &mut path.iter().copied())
    }

    /// The compaction is answered once scheduled: its deletions in the
    /// backend may still be going on (see [`StateMachine::compaction_progress`]).
    fn apply_compaction(&mut self, index: u64, r: &CompactionRequest) -> Result<Applied, StoreError> {
        let mut txn = self.mvcc.write();
        txn.compact(r.revision)?;
        commit(txn, &mut self.staged, index)?;
        let resp = CompactionResponse { header: header(self.mvcc.current_revision()) };
        Ok(Applied { response: Response::Compaction(resp), events: Vec::new() })
    }

    fn apply_lease_grant(&mut self, index: u64, r: &LeaseGrantRequest, now: Instant) -> Result<Applied, StoreError> {
        let mut txn = self.mvcc.write();
        let ttl = self.lessor.grant(r.id, r.ttl, now, txn.batch_mut())?;
        let rev = txn.revision();
        commit(txn, &mut self.staged, index)?;
        self.metrics.lease_granted(ttl);
        let resp = LeaseGrantResponse { header: header(rev), id: r.id, ttl, error: String::new() };
        Ok(Applied { response: Response::LeaseGrant(resp), events: Vec::new() })
    }

    fn apply_lease_revoke(&mut self, index: u64, r: &LeaseRevokeRequest) -> Result<Applied, StoreError> {
        let mut txn = self.mvcc.write();
        let keys = self.lessor.revoke(r.id, txn.batch_mut())?;
        for key in &keys {
            txn.delete_range(key, RangeEnd::Single);
        }
        let rev = txn.revision();
        let events = commit(txn, &mut self.staged, index)?;
        self.metrics.lease_revoked();
        self.metrics.count(OpTally::lease_revoke(keys.len()));
        let resp = LeaseRevokeResponse { header: header(rev) };
        Ok(Applied { response: Response::LeaseRevoke(resp), events })
    }

    /// A Range outside raft (serializable, or after a ReadIndex).
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let started = Instant::now();
        let result = range(&self.mvcc, r);
        self.metrics.ranged(result.is_ok(), started);
        self.metrics.count(OpTally::range());
        result
    }

    /// A Range up to reading its values, which [`PlannedRange::run`] does
    /// without this state machine (its lock released meanwhile).
    pub fn plan_range(&self, r: RangeRequest) -> Result<PlannedRange, StoreError> {
        let started = Instant::now();
        let planned = self.mvcc.range_unloaded(&r.key, RangeEnd::from_request(&r.range_end), r.revision, range_limit(&r), r.count_only);
        match planned {
            Ok(unloaded) => Ok(PlannedRange::new(r, self.mvcc.current_revision(), unloaded, self.metrics.clone(), started)),
            Err(e) => {
                self.metrics.ranged(false, started);
                self.metrics.count(OpTally::range());
                Err(e)
            }
        }
    }

    /// A Txn without writes, answered from local state without a log entry.
    pub fn read_only_txn(&self, r: &TxnRequest) -> Result<TxnResponse, StoreError> {
        let path = compare_path(&self.mvcc, r)?;
        self.check_txn_ops(r, &path)?;
        let ops = if path.first().copied().unwrap_or(false) { &r.success } else { &r.failure };
        let responses = ops
            .iter()
            .map(|op| match &op.request {
                Some(Request::RequestRange(q)) => Ok(ResponseOp {
                    response: Some(response_op::Response::ResponseRange(range(&self.mvcc, q)?)),
                }),
                _ => Ok(ResponseOp { response: None }),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.metrics.count_txn(OpTally::txn(r, &path, true));
        Ok(TxnResponse { header: header(self.mvcc.current_revision()), succeeded: path.first().copied().unwrap_or(false), responses })
    }

    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.lessor.lookup(id)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.lessor.leases()
    }

    /// Renews a lease (not a log entry: leases are kept alive by the leader).
    pub fn lease_renew(&mut self, id: i64, now: Instant) -> Result<i64, EtcdError> {
        let ttl = self.lessor.renew(id, now)?;
        self.metrics.lease_renewed();
        Ok(ttl)
    }

    pub fn expired_leases(&self, now: Instant) -> Vec<i64> {
        self.lessor.expired(now)
    }

    pub fn check_lease_grant(&self, id: i64, ttl: i64) -> Result<(), EtcdError> {
        self.lessor.check_grant(id, ttl)
    }

    /// Every change in `[from, to]`, for watchers catching up.
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>, StoreError> {
        self.mvcc.events(from, to)
    }

    /// A watch event's `prev_kv`, see [`Mvcc::watch_prev_kv`].
    pub fn watch_prev_kv(&self, event: &Event) -> Result<Option<KeyValue>, StoreError> {
        self.mvcc.watch_prev_kv(event)
    }
}

/// A record staged by the layer above: table, key, value (`None`: deleted).
type Staged = (Table, Vec<u8>, Option<Vec<u8>>);

/// Commits a write transaction with the staged records and the consistent index.
fn commit(mut txn: WriteTxn<'_>, staged: &mut Vec<Staged>, index: u64) -> Result<Vec<Event>, StoreError> {
    for (table, k, v) in staged.drain(..) {
        match v {
            Some(v) => txn.batch_mut().put(table, k, v),
            None => txn.batch_mut().delete(table, k),
        }
    }
    txn.commit(index)
}
