//! etcd's metrics of the state machine, under etcd 3.6's names, types, labels
//! and buckets: the backend's commits, defragmentations and snapshots
//! (`storage/backend/metrics.go`), what the MVCC store sees
//! (`storage/mvcc/metrics.go`), leases (`lease/metrics.go`) and how long
//! applies and ranges take (`etcdserver/txn/metrics.go`).
//!
//! The [`StateMachine`](crate::StateMachine) keeps one set, updated where the
//! work happens: it times the backend through the
//! [`Backend`](crate::backend::Backend) trait (so every engine is measured
//! alike), and counts each applied or read request once it is done, with an
//! [`OpTally`] of what etcd's `metricsTxnWrite` would have counted for it.
//! Gauges that mirror the store's state (current and compacted revision, key
//! count) are read by whoever serves `/metrics`, which registers this set with
//! [`StoreMetrics::register`]. Labelled rows are resolved once and kept, so
//! no request formats or looks up a label.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hub_proto::etcdserverpb::{request_op::Request, DeleteRangeRequest, PutRequest, TxnRequest};
use prometheus::{
    core::Collector, exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, Registry,
};

use crate::command::Command;

/// etcd's histogram: `count` upper bounds from `start`, doubling.
fn histogram(name: &str, help: &str, start: f64, count: usize) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(exponential_buckets(start, 2.0, count)?))
}

/// The op label of `etcd_server_apply_duration_seconds`, as etcd's
/// `uberApplier.dispatch` names the request it applies; [`apply_op`] picks one.
const APPLY_OPS: &[&str] = &[
    "unknown",
    "Range",
    "Put",
    "DeleteRange",
    "Txn",
    "Compaction",
    "LeaseGrant",
    "LeaseRevoke",
    "Alarm",
    "Authenticate",
    "AuthEnable",
    "AuthDisable",
    "AuthUserAdd",
    "AuthUserDelete",
    "AuthUserChangePassword",
    "AuthUserGrantRole",
    "AuthUserGet",
    "AuthUserRevokeRole",
    "AuthRoleAdd",
    "AuthRoleGrantPermission",
    "AuthRoleGet",
    "AuthRoleRevokePermission",
    "AuthRoleDelete",
    "AuthUserList",
    "AuthRoleList",
];

/// Which entry of [`APPLY_OPS`] names `c`.
fn apply_op(c: Command<'_>) -> usize {
    APPLY_OPS.iter().position(|op| *op == c.name()).unwrap_or(0)
}

/// One row of a labelled family, created on its first use (when etcd's row
/// appears) and kept, so that later uses look nothing up.
#[derive(Clone)]
struct Row<T>(OnceLock<T>);

impl<T: Clone> Row<T> {
    fn get(&self, make: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(make)
    }
}

impl<T> Default for Row<T> {
    fn default() -> Self {
        Row(OnceLock::new())
    }
}

/// `etcd_server_apply_duration_seconds` by op and success (`version` is
/// always `v3`).
#[derive(Clone)]
struct ApplyDurations {
    vec: HistogramVec,
    rows: Vec<[Row<Histogram>; 2]>,
}

impl ApplyDurations {
    fn observe(&self, op: usize, success: bool, took: Duration) {
        let Some(rows) = self.rows.get(op) else { return };
        let name = APPLY_OPS.get(op).copied().unwrap_or_default();
        let ok = if success { "true" } else { "false" };
        rows[usize::from(success)].get(|| self.vec.with_label_values(&["v3", name, ok])).observe(micros(took));
    }
}

/// As etcd observes durations: whole microseconds, in seconds.
fn micros(took: Duration) -> f64 {
    took.as_micros() as f64 / 1e6
}

/// As etcd observes its compaction pauses: whole milliseconds.
fn millis(took: Duration) -> f64 {
    took.as_millis() as f64
}

/// What etcd's `metricsTxnWrite` counts for one request: the ranges (a
/// compare and a `prev_kv` lookup are ranges too), puts and deletes of the
/// one MVCC transaction that serves it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OpTally {
    pub ranges: u64,
    pub puts: u64,
    pub deletes: u64,
    /// Keys and values put, in bytes.
    pub put_bytes: u64,
}

impl OpTally {
    pub fn range() -> Self {
        OpTally { ranges: 1, ..Default::default() }
    }

    pub fn put(r: &PutRequest) -> Self {
        let looks_up = r.prev_kv || r.ignore_value || r.ignore_lease;
        OpTally { ranges: u64::from(looks_up), puts: 1, deletes: 0, put_bytes: (r.key.len() + r.value.len()) as u64 }
    }

    pub fn delete_range(r: &DeleteRangeRequest) -> Self {
        OpTally { ranges: u64::from(r.prev_kv), deletes: 1, ..Default::default() }
    }

    /// A lease revoked with its `keys`: each is deleted on its own.
    pub fn lease_revoke(keys: usize) -> Self {
        OpTally { deletes: keys as u64, ..Default::default() }
    }

    /// A txn whose compares chose `path` (each txn's result, nested ones in
    /// the order they are reached): every compare and every op of the
    /// branches taken. As etcd 3.6, a txn that writes runs its compares in a
    /// read transaction and its ops in a write transaction, each counted on
    /// its own; a read-only txn runs both in one.
    pub fn txn(r: &TxnRequest, path: &[bool], read_only: bool) -> [Self; 2] {
        fn walk(r: &TxnRequest, path: &mut impl Iterator<Item = bool>, compares: &mut OpTally, ops: &mut OpTally) {
            compares.ranges += r.compare.len() as u64;
            let branch = if path.next().unwrap_or(false) { &r.success } else { &r.failure };
            for op in branch {
                match &op.request {
                    Some(Request::RequestRange(_)) => ops.add(OpTally::range()),
                    Some(Request::RequestPut(p)) => ops.add(OpTally::put(p)),
                    Some(Request::RequestDeleteRange(d)) => ops.add(OpTally::delete_range(d)),
                    Some(Request::RequestTxn(n)) => walk(n, path, compares, ops),
                    None => {}
                }
            }
        }
        let (mut compares, mut ops) = (OpTally::default(), OpTally::default());
        walk(r, &mut path.iter().copied(), &mut compares, &mut ops);
        if read_only {
            ops.add(compares);
            return [ops, OpTally::default()];
        }
        [compares, ops]
    }

    fn add(&mut self, o: OpTally) {
        self.ranges += o.ranges;
        self.puts += o.puts;
        self.deletes += o.deletes;
        self.put_bytes += o.put_bytes;
    }
}

/// Clones share the same series.
#[derive(Clone)]
pub struct StoreMetrics {
    commit_duration: Histogram,
    commit_rebalance: Histogram,
    commit_spill: Histogram,
    commit_write: Histogram,
    defrag_duration: Histogram,
    /// Observed by whoever sends a snapshot, for the whole transfer, as etcd.
    pub snapshot_duration: Histogram,
    defrag_inflight: IntGauge,
    ranges: IntCounter,
    puts: IntCounter,
    deletes: IntCounter,
    txns: IntCounter,
    /// A gauge in etcd, though it only grows.
    put_bytes: IntGauge,
    index_compaction_pause: Histogram,
    db_compaction_pause: Histogram,
    db_compaction_total: Histogram,
    db_compaction_last: IntGauge,
    db_compaction_keys: IntCounter,
    hash: Histogram,
    hash_rev: Histogram,
    lease_granted: IntCounter,
    lease_revoked: IntCounter,
    lease_renewed: IntCounter,
    lease_ttl: Histogram,
    apply: ApplyDurations,
    range_duration: HistogramVec,
    range_rows: [Row<Histogram>; 2],
    snap_save_total: Histogram,
    snap_marshalling: Histogram,
    snap_fsync: Histogram,
    snap_db_save_total: Histogram,
    snap_db_fsync: Histogram,
    snapshot_apply_in_progress: IntGauge,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreMetrics")
    }
}
impl StoreMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let commit_phase = |phase: &str| {
            histogram(
                &format!("etcd_debugging_disk_backend_commit_{phase}_duration_seconds"),
                &format!("The latency distributions of commit.{phase} called by bboltdb backend."),
                0.001,
                14,
            )
        };
        let counter = IntCounter::new;
        let apply = HistogramVec::new(
            HistogramOpts::new("etcd_server_apply_duration_seconds", "The latency distributions of v2 apply called by backend.")
                .buckets(exponential_buckets(0.0001, 2.0, 20)?),
            &["version", "op", "success"],
        )?;
        Ok(StoreMetrics {
            commit_duration: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                0.001,
                14,
            )?,
            commit_rebalance: commit_phase("rebalance")?,
            commit_spill: commit_phase("spill")?,
            commit_write: commit_phase("write")?,
            defrag_duration: histogram(
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                0.1,
                13,
            )?,
            snapshot_duration: histogram(
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                0.01,
                17,
            )?,
            defrag_inflight: IntGauge::new(
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            )?,
            ranges: counter("etcd_mvcc_range_total", "Total number of ranges seen by this member.")?,
            puts: counter("etcd_mvcc_put_total", "Total number of puts seen by this member.")?,
            deletes: counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member.")?,
            txns: counter("etcd_mvcc_txn_total", "Total number of txns seen by this member.")?,
            put_bytes: IntGauge::new(
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            )?,
            index_compaction_pause: histogram(
                "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                "Bucketed histogram of index compaction pause duration.",
                0.5,
                14,
            )?,
            db_compaction_pause: histogram(
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                1.0,
                13,
            )?,
            db_compaction_total: histogram(
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                100.0,
                14,
            )?,
            db_compaction_last: IntGauge::new(
                "etcd_debugging_mvcc_db_compaction_last",
                "The unix time of the last db compaction. Resets to 0 on start.",
            )?,
            db_compaction_keys: counter("etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted.")?,
            hash: histogram("etcd_mvcc_hash_duration_seconds", "The latency distribution of storage hash operation.", 0.01, 15)?,
            hash_rev: histogram(
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                0.01,
                15,
            )?,
            lease_granted: counter("etcd_debugging_lease_granted_total", "The total number of granted leases.")?,
            lease_revoked: counter("etcd_debugging_lease_revoked_total", "The total number of revoked leases.")?,
            lease_renewed: counter("etcd_debugging_lease_renewed_total", "The number of renewed leases seen by the leader.")?,
            lease_ttl: histogram("etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs.", 1.0, 24)?,
            apply: ApplyDurations { vec: apply, rows: (0..APPLY_OPS.len()).map(|_| Default::default()).collect() },
            range_duration: HistogramVec::new(
                HistogramOpts::new("etcd_server_range_duration_seconds", "The latency distributions of txn.Range")
                    .buckets(exponential_buckets(0.0001, 2.0, 20)?),
                &["success"],
            )?,
            range_rows: Default::default(),
            snap_save_total: histogram(
                "etcd_debugging_snap_save_total_duration_seconds",
                "The total latency distributions of save called by snapshot.",
                0.001,
                14,
            )?,
            snap_marshalling: histogram(
                "etcd_debugging_snap_save_marshalling_duration_seconds",
                "The marshalling cost distributions of save called by snapshot.",
                0.001,
                14,
            )?,
            snap_fsync: histogram("etcd_snap_fsync_duration_seconds", "The latency distributions of fsync called by snap.", 0.001, 14)?,
            snap_db_save_total: histogram(
                "etcd_snap_db_save_total_duration_seconds",
                "The total latency distributions of v3 snapshot save",
                0.1,
                10,
            )?,
            snap_db_fsync: histogram(
                "etcd_snap_db_fsync_duration_seconds",
                "The latency distributions of fsyncing .snap.db file",
                0.001,
                14,
            )?,
            snapshot_apply_in_progress: IntGauge::new(
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            )?,
        })
    }

    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let f = self;
        let all: [Box<dyn Collector>; 31] = [
            Box::new(f.commit_duration.clone()),
            Box::new(f.commit_rebalance.clone()),
            Box::new(f.commit_spill.clone()),
            Box::new(f.commit_write.clone()),
            Box::new(f.defrag_duration.clone()),
            Box::new(f.snapshot_duration.clone()),
            Box::new(f.defrag_inflight.clone()),
            Box::new(f.ranges.clone()),
            Box::new(f.puts.clone()),
            Box::new(f.deletes.clone()),
            Box::new(f.txns.clone()),
            Box::new(f.put_bytes.clone()),
            Box::new(f.index_compaction_pause.clone()),
            Box::new(f.db_compaction_pause.clone()),
            Box::new(f.db_compaction_total.clone()),
            Box::new(f.db_compaction_last.clone()),
            Box::new(f.db_compaction_keys.clone()),
            Box::new(f.hash.clone()),
            Box::new(f.hash_rev.clone()),
            Box::new(f.lease_granted.clone()),
            Box::new(f.lease_revoked.clone()),
            Box::new(f.lease_renewed.clone()),
            Box::new(f.lease_ttl.clone()),
            Box::new(f.apply.vec.clone()),
            Box::new(f.range_duration.clone()),
            Box::new(f.snap_save_total.clone()),
            Box::new(f.snap_marshalling.clone()),
            Box::new(f.snap_fsync.clone()),
            Box::new(f.snap_db_save_total.clone()),
            Box::new(f.snap_db_fsync.clone()),
            Box::new(f.snapshot_apply_in_progress.clone()),
        ];
        for c in all {
            registry.register(c)?;
        }
        Ok(())
    }

    /// Runs a commit that reaches the disk, timing it.
    pub(crate) fn commit<T>(&self, commit: impl FnOnce() -> T) -> T {
        self.commit_duration.observe_closure_duration(commit)
    }

    /// Runs a defragmentation, timing it and showing it in flight meanwhile.
    pub(crate) fn defrag<T>(&self, defrag: impl FnOnce() -> T) -> T {
        self.defrag_inflight.set(1);
        let result = self.defrag_duration.observe_closure_duration(defrag);
        self.defrag_inflight.set(0);
        result
    }

    /// Counts what one MVCC transaction ranged, put and deleted, as etcd
    /// does when it ends: a transaction of more than one of those is also a txn.
    pub(crate) fn count(&self, t: OpTally) {
        if t == OpTally::default() {
            return;
        }
        if t.ranges + t.puts + t.deletes > 1 {
            self.txns.inc();
        }
        self.ranges.inc_by(t.ranges);
        self.puts.inc_by(t.puts);
        self.deletes.inc_by(t.deletes);
        self.put_bytes.add(t.put_bytes as i64);
    }

    /// Counts the MVCC transactions of a txn (see [`OpTally::txn`]).
    pub(crate) fn count_txn(&self, tallies: [OpTally; 2]) {
        for t in tallies {
            self.count(t);
        }
    }

    /// An entry `r` applied since `started`; a compacted read is a success, as in etcd.
    pub(crate) fn applied(&self, c: Command<'_>, success: bool, started: Instant) {
        self.apply.observe(apply_op(c), success, started.elapsed());
    }

    /// A Range served outside raft, timed from `started`.
    pub(crate) fn ranged(&self, success: bool, started: Instant) {
        let ok = if success { "true" } else { "false" };
        let row = self.range_rows[usize::from(success)].get(|| self.range_duration.with_label_values(&[ok]));
        row.observe(micros(started.elapsed()));
    }

    /// A compaction's pause of the in-memory index, `d` long.
    pub(crate) fn index_compacted(&self, d: Duration) {
        self.index_compaction_pause.observe(millis(d));
    }

    /// One batch of a compaction's deletes, read and committed in `d`.
    pub(crate) fn compaction_batch(&self, d: Duration) {
        self.db_compaction_pause.observe(millis(d));
    }

    /// A compaction's work in the backend ended (done or interrupted), `total`
    /// after its first batch, having deleted `keys` revisions.
    pub(crate) fn compaction_ended(&self, total: Duration, keys: usize) {
        self.db_compaction_total.observe(millis(total));
        self.db_compaction_keys.inc_by(keys as u64);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.db_compaction_last.set(now.as_secs() as i64);
    }

    /// Runs Maintenance.Hash (`by_revision`: HashKV), timing it.
    pub(crate) fn hash<T>(&self, by_revision: bool, hash: impl FnOnce() -> T) -> T {
        if by_revision { &self.hash_rev } else { &self.hash }.observe_closure_duration(hash)
    }

    pub(crate) fn lease_granted(&self, ttl: i64) {
        self.lease_granted.inc();
        self.lease_ttl.observe(ttl as f64);
    }

    pub(crate) fn lease_revoked(&self) {
        self.lease_revoked.inc();
    }

    pub(crate) fn lease_renewed(&self) {
        self.lease_renewed.inc();
    }

    /// Runs the encoding of a raft snapshot (etcd's snap save). hub keeps
    /// the snapshot in memory instead of a `.snap` file, so its save is its
    /// marshalling, and `etcd_snap_fsync_duration_seconds` is not observed.
    pub fn snapshot_saved<T>(&self, save: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = self.snap_marshalling.observe_closure_duration(save);
        self.snap_save_total.observe(started.elapsed().as_secs_f64());
        result
    }

    /// Runs the install of a snapshot from the leader (etcd's `.snap.db`
    /// save and apply), showing it in progress meanwhile.
    pub(crate) fn snapshot_installed<T>(&self, install: impl FnOnce() -> T) -> T {
        self.snapshot_apply_in_progress.set(1);
        let result = self.snap_db_save_total.observe_closure_duration(install);
        self.snapshot_apply_in_progress.set(0);
        result
    }

    /// The fsync that makes an installed snapshot's backend durable where it lies.
    pub(crate) fn snapshot_synced<T>(&self, sync: impl FnOnce() -> T) -> T {
        self.snap_db_fsync.observe_closure_duration(sync)
    }
}
