//! etcd's metrics of the consensus layer, under etcd 3.4's names, types,
//! labels and buckets: the WAL's fsyncs (`etcd_disk_wal_*`), the peer
//! transport (`etcd_network_peer_*`) and slow applies and failed heartbeats
//! (`etcd_server_*`).
//!
//! A [`Node`](crate::Node) keeps one set, updated where things happen (the WAL
//! writer, [`network`](crate::network), [`peer_service`](crate::peer_service),
//! the state machine); whoever serves `/metrics` registers them with
//! [`RaftMetrics::register`]. Peers are labelled by member ID in hex, as etcd's
//! `types.ID` prints them.

use std::time::{Duration, Instant};

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// etcd counts an apply slower than this as slow (`warnApplyDuration`).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// What the WAL writer updates (wal/metrics.go).
#[derive(Clone, Debug)]
pub struct WalMetrics {
    pub fsync_duration: Histogram,
    /// A gauge in etcd, though it only grows.
    pub write_bytes: IntGauge,
}

/// Every metric the consensus layer keeps; clones share the same series.
#[derive(Clone, Debug)]
pub struct RaftMetrics {
    pub wal: WalMetrics,
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    peer_sent_failures: IntCounterVec,
    peer_round_trip: HistogramVec,
    heartbeat_send_failures: IntCounter,
    slow_applies: IntCounter,
}

/// etcd's histogram buckets: `count` upper bounds from `start`, doubling.
fn histogram(name: &str, help: &str, start: f64, count: usize) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(exponential_buckets(start, 2.0, count)?))
}

impl RaftMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let peer = |name: &str, help: &str, label: &str| IntCounterVec::new(Opts::new(name, help), &[label]);
        Ok(RaftMetrics {
            wal: WalMetrics {
                fsync_duration: histogram(
                    "etcd_disk_wal_fsync_duration_seconds",
                    "The latency distributions of fsync called by WAL.",
                    0.001,
                    14,
                )?,
                write_bytes: IntGauge::new("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.")?,
            },
            peer_sent_bytes: peer("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", "To")?,
            peer_received_bytes: peer(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            )?,
            peer_sent_failures: peer(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
            )?,
            peer_round_trip: HistogramVec::new(
                HistogramOpts::new("etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers")
                    .buckets(exponential_buckets(0.0001, 2.0, 16)?),
                &["To"],
            )?,
            heartbeat_send_failures: IntCounter::new(
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            )?,
            slow_applies: IntCounter::new(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            )?,
        })
    }

    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.wal.fsync_duration.clone()))?;
        registry.register(Box::new(self.wal.write_bytes.clone()))?;
        registry.register(Box::new(self.peer_sent_bytes.clone()))?;
        registry.register(Box::new(self.peer_received_bytes.clone()))?;
        registry.register(Box::new(self.peer_sent_failures.clone()))?;
        registry.register(Box::new(self.peer_round_trip.clone()))?;
        registry.register(Box::new(self.heartbeat_send_failures.clone()))?;
        registry.register(Box::new(self.slow_applies.clone()))?;
        Ok(())
    }

    pub(crate) fn sent(&self, to: u64, bytes: usize) {
        self.peer_sent_bytes.with_label_values(&[&peer_label(to)]).inc_by(bytes as u64);
    }

    pub(crate) fn received(&self, from: u64, bytes: usize) {
        self.peer_received_bytes.with_label_values(&[&peer_label(from)]).inc_by(bytes as u64);
    }

    /// A message to `to` that did not get through.
    pub(crate) fn send_failed(&self, to: u64) {
        self.peer_sent_failures.with_label_values(&[&peer_label(to)]).inc();
    }

    /// The leader sent a heartbeat later than twice the heartbeat interval
    /// after the last (etcd: "leader failed to send out heartbeat on time",
    /// likely an overloaded leader or slow disk).
    pub(crate) fn heartbeat_late(&self) {
        self.heartbeat_send_failures.inc();
    }

    pub(crate) fn round_trip(&self, to: u64, took: Duration) {
        self.peer_round_trip.with_label_values(&[&peer_label(to)]).observe(took.as_secs_f64());
    }

    /// Counts an apply that started at `started` if it was slow.
    pub(crate) fn applied(&self, started: Instant) {
        if started.elapsed() > SLOW_APPLY {
            self.slow_applies.inc();
        }
    }
}

/// A member ID as etcd's `types.ID` prints it: lower-case hex, no padding.
fn peer_label(id: u64) -> String {
    format!("{id:x}")
}
