//! etcd's backend metrics (mvcc/backend/metrics.go) under its names and
//! buckets: how long commits that reach the disk, defragmentations and
//! snapshots take.
//!
//! The [`StateMachine`](crate::StateMachine) keeps one set and times the
//! backend through the [`Backend`](crate::backend::Backend) trait, so every
//! engine is measured alike; whoever serves `/metrics` registers them with
//! [`BackendMetrics::register`].

use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntGauge, Registry};

/// Clones share the same series.
#[derive(Clone, Debug)]
pub struct BackendMetrics {
    commit_duration: Histogram,
    defrag_duration: Histogram,
    /// Observed by whoever sends a snapshot, for the whole transfer, as etcd.
    pub snapshot_duration: Histogram,
    defrag_inflight: IntGauge,
}

/// etcd's histogram buckets: `count` upper bounds from `start`, doubling.
fn histogram(name: &str, help: &str, start: f64, count: usize) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(exponential_buckets(start, 2.0, count)?))
}

impl BackendMetrics {
    pub fn new() -> prometheus::Result<Self> {
        Ok(BackendMetrics {
            commit_duration: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                0.001,
                14,
            )?,
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
        })
    }

    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.commit_duration.clone()))?;
        registry.register(Box::new(self.defrag_duration.clone()))?;
        registry.register(Box::new(self.snapshot_duration.clone()))?;
        registry.register(Box::new(self.defrag_inflight.clone()))?;
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
}
