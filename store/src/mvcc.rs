//! The multi-version key space: the key index in memory, every revision's value in
//! the backend, and the revision counters.
//!
//! Mirrors etcd's `mvcc/kvstore*.go`. Reads name a revision (0 = current); writes
//! go through a [`WriteTxn`] that creates at most one main revision, however many
//! keys it changes. The store starts at revision 1 with nothing in it, as etcd
//! does. A compaction compacts the index here and leaves the backend's
//! deletions to the [`Compactor`]. This module knows nothing of requests or
//! leases' lifetimes; `apply` does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use hub_proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

use crate::backend::{Backend, Table, WriteBatch};
use crate::compaction::{BackgroundCommit, CompactionConfig, CompactionProgress, Compactor, Job};
use crate::error::{EtcdError, StoreError};
use crate::hash::KvHasher;
use crate::key_index::{KeyIndexTree, RangeEnd};
use crate::revision::Revision;

pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
/// The meta records etcd itself writes (hub's among them: the storage
/// version, [`crate::schema`]); any other was staged by a layer above the
/// store (`StateMachine::stage_meta`).
pub const ETCD_META_KEYS: [&[u8]; 4] =
    [META_CONSISTENT_INDEX, META_SCHEDULED_COMPACT, META_FINISHED_COMPACT, crate::schema::STORAGE_VERSION_KEY];

/// Keys and their count as of one revision.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range, regardless of the limit.
    pub count: usize,
}

/// What Maintenance.HashKV answers (etcd's `HashByRev`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C over the name `key` and the revisions counted, key then value.
    pub hash: u32,
    /// The compacted revision (-1 when never compacted).
    pub compact_revision: i64,
    /// The store's current revision, whatever revision was hashed.
    pub revision: i64,
}

pub struct Mvcc {
    backend: Arc<dyn Backend>,
    index: KeyIndexTree,
    /// Revision of the last completed write transaction.
    current_rev: i64,
    /// Main revision of the last compaction (-1 when never compacted); the
    /// backend may still hold some of what it dropped.
    compact_rev: i64,
    compactor: Compactor,
}

/// What was read from the backend at open.
pub struct Restored {
    pub mvcc: Mvcc,
    pub consistent_index: u64,
    /// Live keys that carry a lease, to re-attach them.
    pub leased_keys: Vec<(Vec<u8>, i64)>,
}

fn decode_kv(bytes: &[u8]) -> Result<KeyValue, StoreError> {
    KeyValue::decode(bytes).map_err(|e| StoreError::Corrupt(format!("key value: {e}")))
}

/// Values of `revs`, from `pending` (a write txn's own) or the backend; the
/// inner Err names a revision the backend does not hold.
fn load(
    backend: &dyn Backend,
    revs: &[Revision],
    pending: &HashMap<Revision, KeyValue>,
) -> Result<Result<Vec<KeyValue>, Revision>, StoreError> {
    let missing: Vec<Vec<u8>> = revs.iter().filter(|r| !pending.contains_key(r)).map(|r| r.to_bytes(false)).collect();
    let mut stored = if missing.is_empty() { Vec::new() } else { backend.get_many(Table::Key, &missing)? }.into_iter();
    let mut kvs = Vec::with_capacity(revs.len());
    for r in revs {
        match pending.get(r) {
            Some(kv) => kvs.push(kv.clone()),
            None => match stored.next().flatten() {
                Some(bytes) => kvs.push(decode_kv(&bytes)?),
                None => return Ok(Err(*r)),
            },
        }
    }
    Ok(Ok(kvs))
}

/// A range whose revisions the key index named ([`Mvcc::range_unloaded`]),
/// their values not read yet. A revision's value never changes, so they can
/// be read once the store is free for writes again; only a compaction
/// applied in between can remove one.
pub(crate) struct Unloaded {
    revs: Vec<Revision>,
    count: usize,
    backend: Arc<dyn Backend>,
}

impl Unloaded {
    /// Reads the values: None when a compaction removed one of them since
    /// the range was planned (run the range again).
    pub(crate) fn load(self) -> Result<Option<RangeResult>, StoreError> {
        Ok(load(&*self.backend, &self.revs, &HashMap::new())?.ok().map(|kvs| RangeResult { kvs, count: self.count }))
    }
}

fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// The main revision of a compaction mark in `meta` (-1: none).
fn compaction_mark(value: Option<&[u8]>) -> i64 {
    value.and_then(Revision::from_bytes).map_or(-1, |(r, _)| r.main)
}

impl Mvcc {
    /// Rebuilds the index from every stored revision, and resumes a
    /// compaction that was scheduled but did not finish (as etcd's `restore`).
    /// `metrics` observe the compactions, if given.
    pub fn restore(
        backend: Arc<dyn Backend>,
        compaction: CompactionConfig,
        metrics: Option<crate::metrics::StoreMetrics>,
    ) -> Result<Restored, StoreError> {
        let meta = backend.get_many(
            Table::Meta,
            &[META_CONSISTENT_INDEX.to_vec(), META_FINISHED_COMPACT.to_vec(), META_SCHEDULED_COMPACT.to_vec()],
        )?;
        let consistent_index = meta[0].as_deref().and_then(read_u64).unwrap_or(0);
        let compact_rev = compaction_mark(meta[1].as_deref());
        let scheduled = compaction_mark(meta[2].as_deref());

        let mut index = KeyIndexTree::default();
        let mut current_rev = 1;
        let mut leases: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut failure = None;
        backend.view()?.scan_bulk(Table::Key, &[], None, &mut |k, v| {
            let Some((rev, tombstone)) = Revision::from_bytes(k) else {
                failure = Some(StoreError::Corrupt(format!("revision key {k:?}")));
                return false;
            };
            let kv = match decode_kv(v) {
                Ok(kv) => kv,
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            };
            current_rev = current_rev.max(rev.main);
            if tombstone {
                index.update(&kv.key, |ki| ki.tombstone(rev));
                leases.remove(&kv.key);
            } else {
                index.update(&kv.key, |ki| ki.restore(rev, Revision::new(kv.create_revision, 0), kv.version));
                if kv.lease != 0 {
                    leases.insert(kv.key.clone(), kv.lease);
                } else {
                    leases.remove(&kv.key);
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        // The newest revisions may have been compacted away (a tombstone at
        // the compacted revision: etcd before 3.5.15 deleted it, and a resumed
        // compaction may, etcd-io/etcd#17780): the store's revision is never
        // below a compaction's, finished or not.
        current_rev = current_rev.max(compact_rev).max(scheduled);
        let compactor = Compactor::start(backend.clone(), compaction, metrics, compact_rev)?;
        let mut mvcc = Mvcc { backend, index, current_rev, compact_rev, compactor };
        if scheduled > compact_rev {
            let mut txn = mvcc.write();
            txn.compact(scheduled)?;
            txn.commit(consistent_index)?;
            tracing::info!(scheduled_compact_revision = scheduled, "resume scheduled compaction");
        }
        Ok(Restored { mvcc, consistent_index, leased_keys: leases.into_iter().collect() })
    }

    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Checks that `rev` (0 = current) can be read; returns the revision to read at.
    pub fn check_read_revision(&self, rev: i64) -> Result<i64, EtcdError> {
        if rev > self.current_rev {
            return Err(EtcdError::FutureRev);
        }
        let at = if rev <= 0 { self.current_rev } else { rev };
        if at < self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        Ok(at)
    }

    /// The hashes taken by the last compactions (etcd's `HashStorage.Hashes`),
    /// each at the revision compacted to: see [`Compactor::hashes`].
    pub fn compaction_hashes(&self) -> Vec<KvHash> {
        self.compactor.hashes()
    }

    /// Tells when compactions are done in the backend.
    pub fn compaction_progress(&self) -> CompactionProgress {
        self.compactor.progress()
    }

    /// See [`Compactor::on_commit`].
    pub fn on_background_commit(&self, wake: BackgroundCommit) {
        self.compactor.on_commit(wake);
    }

    /// Stops the compaction in progress (see [`Compactor`]): before the
    /// backend is replaced, or the member stops.
    pub fn stop_compaction(&mut self) {
        self.compactor.stop();
    }

    /// etcd's `HashByRev`: the [`KvHasher`] hash of revision `rev` (0 =
    /// current) under the current compaction. As etcd 3.6, the hash each
    /// compaction took of its revision is remembered (the last
    /// [`KEPT_COMPACTION_HASHES`](crate::compaction::KEPT_COMPACTION_HASHES),
    /// in memory) and answers for that revision, with the compaction before
    /// it: the corruption check compares members at those revisions. The
    /// hash of a revision whose compaction is still deleting is the same as
    /// after: the hasher skips what the compaction drops.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, StoreError> {
        let (compact_revision, revision) = (self.compact_rev, self.current_rev);
        if let Some(h) = self.compactor.hash_at(rev) {
            return Ok(KvHash { revision, ..h });
        }
        if rev > 0 && rev < compact_revision {
            return Err(EtcdError::Compacted.into());
        }
        if rev > revision {
            return Err(EtcdError::FutureRev.into());
        }
        let at = if rev == 0 { revision } else { rev };
        // What a compaction at `at` keeps: each key's newest put at or below
        // `at` when the key exists then (etcd's `keyIndex.keep`).
        let keep: HashSet<Revision> =
            self.index.range_at(&[], RangeEnd::Unbounded, at).map(|(_, s)| s.modified).collect();
        let mut hasher = KvHasher::new(compact_revision, at, &keep);
        let mut failure = None;
        if at >= 0 {
            let upper = Revision::new(at.saturating_add(1), 0).to_bytes(false);
            self.backend.view()?.scan_bulk(Table::Key, &[], Some(&upper), &mut |k, v| {
                failure = hasher.write(k, v).err();
                failure.is_none()
            })?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(KvHash { hash: hasher.hash(), compact_revision, revision }),
        }
    }

    /// Reads `[key, end)` at revision `rev` (0 = current), at most `limit` keys
    /// (0 = all); with `count_only` only counts.
    pub fn range(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        rev: i64,
        limit: usize,
        count_only: bool,
    ) -> Result<RangeResult, StoreError> {
        let at = self.check_read_revision(rev)?;
        self.range_at(key, end, at, limit, count_only, &HashMap::new())
    }

    fn range_at(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        at: i64,
        limit: usize,
        count_only: bool,
        pending: &HashMap<Revision, KeyValue>,
    ) -> Result<RangeResult, StoreError> {
        let (revs, count) = self.range_revs(key, end, at, limit, count_only);
        let kvs = self.load(&revs, pending)?;
        Ok(RangeResult { kvs, count })
    }

    /// The revisions a range at `at` loads (at most `limit`, none when
    /// `count_only`) and how many keys it holds.
    fn range_revs(&self, key: &[u8], end: RangeEnd<'_>, at: i64, limit: usize, count_only: bool) -> (Vec<Revision>, usize) {
        let mut revs: Vec<Revision> = self.index.range_at(key, end, at).map(|(_, s)| s.modified).collect();
        let count = revs.len();
        if count_only {
            revs.clear();
        } else if limit != 0 {
            revs.truncate(limit);
        }
        (revs, count)
    }

    /// A range at `rev` (0 = current) up to where its values are read: the key
    /// index names the revisions now; [`Unloaded::load`] reads them later,
    /// without this store (etcd's range over a concurrent read transaction).
    pub(crate) fn range_unloaded(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        rev: i64,
        limit: usize,
        count_only: bool,
    ) -> Result<Unloaded, StoreError> {
        let at = self.check_read_revision(rev)?;
        let (revs, count) = self.range_revs(key, end, at, limit, count_only);
        Ok(Unloaded { revs, count, backend: self.backend.clone() })
    }

    /// Values of live revisions, from the pending writes or the backend.
    fn load(&self, revs: &[Revision], pending: &HashMap<Revision, KeyValue>) -> Result<Vec<KeyValue>, StoreError> {
        load(&*self.backend, revs, pending)?
            .map_err(|r| StoreError::Corrupt(format!("revision {r:?} in index but not in backend")))
    }

    /// The key's value as of main revision `at`, if it existed then.
    pub fn get_at(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>, StoreError> {
        match self.index.get(key).and_then(|ki| ki.get(at)) {
            Some(state) => Ok(self.load(&[state.modified], &HashMap::new())?.pop()),
            None => Ok(None),
        }
    }

    /// Every change with main revision in `[from, to]`, in revision order, as
    /// watch events (a delete's KeyValue holds the key and mod revision only).
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        let mut failure = None;
        let start = Revision::new(from.max(0), 0).to_bytes(false);
        let end = Revision::new(to.saturating_add(1), 0).to_bytes(false);
        self.backend.scan(Table::Key, &start, Some(&end), &mut |k, v| {
            let event = Revision::from_bytes(k)
                .ok_or_else(|| StoreError::Corrupt(format!("revision key {k:?}")))
                .and_then(|(rev, tombstone)| {
                    let mut kv = decode_kv(v)?;
                    let kind = if tombstone {
                        kv = KeyValue { key: kv.key, mod_revision: rev.main, ..Default::default() };
                        EventType::Delete
                    } else {
                        EventType::Put
                    };
                    Ok(Event { r#type: kind as i32, kv: Some(kv), prev_kv: None })
                });
            match event {
                Ok(e) => {
                    events.push(e);
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }

    /// Starts a write transaction; it must be finished with [`WriteTxn::commit`].
    pub fn write(&mut self) -> WriteTxn<'_> {
        let begin_rev = self.current_rev;
        WriteTxn {
            mvcc: self,
            begin_rev,
            changes: Vec::new(),
            pending: HashMap::new(),
            batch: WriteBatch::default(),
            compaction: None,
        }
    }

    /// etcd's `checkPrevCompactionCompleted`: the last compaction scheduled
    /// is done in the backend (or there was none).
    fn previous_compaction_finished(&self) -> Result<bool, StoreError> {
        let marks =
            self.backend.get_many(Table::Meta, &[META_SCHEDULED_COMPACT.to_vec(), META_FINISHED_COMPACT.to_vec()])?;
        Ok(marks[0] == marks[1])
    }

    /// etcd's `prev_kv` of a watch event: the key as of the revision before
    /// the event, read as a Range at `mod_revision - 1` would be — nothing
    /// when that revision is compacted — and never for a put that creates
    /// its key (etcd's `IsCreateEvent`), even when a txn deleted and
    /// re-created the key in one revision.
    pub fn watch_prev_kv(&self, event: &Event) -> Result<Option<KeyValue>, StoreError> {
        let Some(kv) = &event.kv else { return Ok(None) };
        let creates = event.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
        let before = kv.mod_revision - 1;
        if creates || before <= 0 || before < self.compact_rev {
            return Ok(None);
        }
        self.get_at(&kv.key, before)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

/// One write transaction: every change in it shares the main revision
/// `begin_rev + 1`. Reads inside it see its own earlier changes, as in etcd.
pub struct WriteTxn<'a> {
    mvcc: &'a mut Mvcc,
    begin_rev: i64,
    changes: Vec<Event>,
    pending: HashMap<Revision, KeyValue>,
    batch: WriteBatch,
    /// A compaction, handed to the compactor once its mark is committed.
    compaction: Option<Job>,
}

impl WriteTxn<'_> {
    fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.begin_rev + 1
        }
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.begin_rev + 1, self.changes.len() as i64)
    }

    /// Like [`Mvcc::range`], seeing this transaction's changes.
    pub fn range(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        rev: i64,
        limit: usize,
        count_only: bool,
    ) -> Result<RangeResult, StoreError> {
        let current = self.read_rev();
        if rev > current {
            return Err(EtcdError::FutureRev.into());
        }
        let at = if rev <= 0 { current } else { rev };
        if at < self.mvcc.compact_rev {
            return Err(EtcdError::Compacted.into());
        }
        self.mvcc.range_at(key, end, at, limit, count_only, &self.pending)
    }

    /// Writes `key`; returns the new KeyValue. A put of an unchanged value is still
    /// a new revision and version.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> KeyValue {
        let rev = self.next_revision();
        let previous = self.mvcc.index.get(key).and_then(|ki| ki.get(rev.main));
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: previous.map_or(rev.main, |p| p.created.main),
            mod_revision: rev.main,
            version: previous.map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        self.batch.put(Table::Key, rev.to_bytes(false), kv.encode_to_vec());
        self.mvcc.index.update(key, |ki| ki.put(rev));
        self.pending.insert(rev, kv.clone());
        self.changes.push(Event { r#type: EventType::Put as i32, kv: Some(kv.clone()), prev_kv: None });
        kv
    }

    /// Deletes the live keys in the range; returns the deleted keys.
    pub fn delete_range(&mut self, key: &[u8], end: RangeEnd<'_>) -> Vec<Vec<u8>> {
        let at = self.read_rev();
        let keys: Vec<Vec<u8>> = self.mvcc.index.range_at(key, end, at).map(|(k, _)| k.to_vec()).collect();
        for k in &keys {
            let rev = self.next_revision();
            let tomb = KeyValue { key: k.clone(), ..Default::default() };
            self.batch.put(Table::Key, rev.to_bytes(true), tomb.encode_to_vec());
            self.mvcc.index.update(k, |ki| ki.tombstone(rev));
            let kv = KeyValue { key: k.clone(), mod_revision: rev.main, ..Default::default() };
            self.changes.push(Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: None });
        }
        keys
    }

    /// Compacts at `rev`: every revision older than `rev` that is not the
    /// newest version of a live key (nor a tombstone at `rev`, see
    /// [`KeyIndex::compact`](crate::key_index::KeyIndex::compact)) is gone
    /// from the index at once, and from the backend once the
    /// [`Compactor`] deleted it, after this transaction committed
    /// `scheduledCompactRev`.
    pub fn compact(&mut self, rev: i64) -> Result<(), StoreError> {
        let mvcc = &mut *self.mvcc;
        if rev <= mvcc.compact_rev {
            return Err(EtcdError::Compacted.into());
        }
        if rev > mvcc.current_rev {
            return Err(EtcdError::FutureRev.into());
        }
        let keeps_hash = mvcc.previous_compaction_finished()?;
        let started = Instant::now();
        let keep = mvcc.index.compact(rev);
        mvcc.compactor.index_compacted(started.elapsed());
        self.batch.put(Table::Meta, META_SCHEDULED_COMPACT.to_vec(), Revision::new(rev, 0).to_bytes(false));
        self.compaction = Some(Job { revision: rev, previous: mvcc.compact_rev, keep, keeps_hash });
        mvcc.compact_rev = rev;
        Ok(())
    }

    /// Adds other writes (leases, meta) to the same atomic commit.
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// The revision a reader sees after this transaction.
    pub fn revision(&self) -> i64 {
        self.read_rev()
    }

    /// Durably commits the changes together with `consistent_index`, then
    /// hands a compaction to the compactor; returns the events in order. On a
    /// backend failure the in-memory index is ahead of the disk, so the
    /// caller must stop serving (as etcd panics).
    pub fn commit(self, consistent_index: u64) -> Result<Vec<Event>, StoreError> {
        let mut batch = self.batch;
        batch.put(Table::Meta, META_CONSISTENT_INDEX.to_vec(), consistent_index.to_be_bytes().to_vec());
        self.mvcc.backend.commit(batch)?;
        if !self.changes.is_empty() {
            self.mvcc.current_rev = self.begin_rev + 1;
        }
        if let Some(job) = self.compaction {
            self.mvcc.compactor.schedule(job)?;
        }
        Ok(self.changes)
    }
}
