//! etcd's metrics of the consensus layer, under etcd 3.6's names, types,
//! labels and buckets: the WAL's writes and fsyncs (`etcd_disk_wal_*`), the
//! peer transport (`etcd_network_*`), and slow applies, failed heartbeats,
//! read indexes and learner promotions (`etcd_server_*`).
//!
//! A [`Node`](crate::Node) keeps one set, updated where things happen (the WAL
//! writer, [`network`](crate::network), [`peer_service`](crate::peer_service),
//! the [`prober`](crate::prober), the state machine); whoever serves
//! `/metrics` registers them with [`RaftMetrics::register`]. Peers are
//! labelled by member ID in hex, as etcd's `types.ID` prints them; a peer's
//! rows are made on first use and kept by ID, so a message to a peer formats
//! no label.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use prometheus::{
    core::Collector, exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// What the WAL writer updates (wal/metrics.go).
#[derive(Clone, Debug)]
pub struct WalMetrics {
    pub fsync_duration: Histogram,
    pub write_duration: Histogram,
    /// A gauge in etcd, though it only grows.
    pub write_bytes: IntGauge,
    /// hub's own: log entries one fsync made durable (the append batches).
    pub fsync_entries: Histogram,
}

/// Every metric the consensus layer keeps; clones share the same series.
#[derive(Clone, Debug)]
pub struct RaftMetrics {
    pub wal: WalMetrics,
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    peer_sent_failures: IntCounterVec,
    peer_round_trip: HistogramVec,
    active_peers: IntGaugeVec,
    disconnected_peers: IntCounterVec,
    /// Each peer's rows, by member ID.
    peers: Arc<RwLock<HashMap<u64, Arc<PeerRows>>>>,
    heartbeat_send_failures: IntCounter,
    slow_applies: IntCounter,
    /// hub's own: writes per forward request, reads per read-index round.
    forwarded_writes: Histogram,
    read_index_reads: Histogram,
    read_indexes_failed: IntCounter,
    slow_read_indexes: IntCounter,
    learner_promotes: IntCounter,
    learner_promote_failures: IntCounterVec,
    snapshot_send: SnapshotFamilies,
    snapshot_receive: SnapshotFamilies,
}

/// etcd's `etcd_network_snapshot_{send,receive}_*` families of one direction.
#[derive(Clone, Debug)]
struct SnapshotFamilies {
    successes: IntCounterVec,
    failures: IntCounterVec,
    inflights: IntGaugeVec,
    duration: HistogramVec,
}

impl SnapshotFamilies {
    /// `way` is `send` or `receive`, `label` the peer's (`To` or `From`).
    fn new(way: &str, label: &str) -> prometheus::Result<Self> {
        let name = |what: &str| format!("etcd_network_snapshot_{way}_{what}");
        let (done, doing) = if way == "send" { ("sends", "send") } else { ("receives", "receive") };
        Ok(SnapshotFamilies {
            successes: IntCounterVec::new(Opts::new(name("success"), format!("Total number of successful snapshot {done}")), &[label])?,
            failures: IntCounterVec::new(Opts::new(name("failures"), format!("Total number of snapshot {doing} failures")), &[label])?,
            inflights: IntGaugeVec::new(Opts::new(name("inflights_total"), format!("Total number of inflight snapshot {done}")), &[label])?,
            duration: HistogramVec::new(
                HistogramOpts::new(name("total_duration_seconds"), format!("Total latency distributions of v3 snapshot {done}"))
                    .buckets(exponential_buckets(0.1, 2.0, 10)?),
                &[label],
            )?,
        })
    }

    fn collectors(&self) -> [Box<dyn Collector>; 4] {
        [
            Box::new(self.successes.clone()),
            Box::new(self.failures.clone()),
            Box::new(self.inflights.clone()),
            Box::new(self.duration.clone()),
        ]
    }

    /// One chunk of a snapshot moved with a peer whose label is `peer`
    /// (`first` and `last` of the transfer; `ok`: it got through).
    fn chunk(&self, rows: &SnapshotRows, peer: &str, first: bool, last: bool, ok: bool) {
        let inflight = rows.inflight.get_or_init(|| self.inflights.with_label_values(&[peer]));
        let mut started = rows.started.lock();
        if first {
            *started = Some(Instant::now());
            inflight.set(1);
        }
        if !ok {
            rows.failures.get_or_init(|| self.failures.with_label_values(&[peer])).inc();
        } else if last {
            rows.successes.get_or_init(|| self.successes.with_label_values(&[peer])).inc();
            if let Some(started) = *started {
                let duration = rows.duration.get_or_init(|| self.duration.with_label_values(&[peer]));
                duration.observe(started.elapsed().as_secs_f64());
            }
        }
        if !ok || last {
            *started = None;
            inflight.set(0);
        }
    }
}

/// One peer's rows of one direction of snapshot transfers.
#[derive(Debug, Default)]
struct SnapshotRows {
    started: parking_lot::Mutex<Option<Instant>>,
    successes: OnceLock<IntCounter>,
    failures: OnceLock<IntCounter>,
    inflight: OnceLock<IntGauge>,
    duration: OnceLock<Histogram>,
}

/// One peer's rows of the labelled families, each made when first used
/// (when etcd's row appears).
#[derive(Debug, Default)]
struct PeerRows {
    label: String,
    sent: OnceLock<IntCounter>,
    received: OnceLock<IntCounter>,
    sent_failures: OnceLock<IntCounter>,
    round_trip: OnceLock<Histogram>,
    active: OnceLock<IntGauge>,
    disconnected: OnceLock<IntCounter>,
    /// Whether the last probe was answered.
    reachable: parking_lot::Mutex<bool>,
    snapshot_send: SnapshotRows,
    snapshot_receive: SnapshotRows,
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
                write_duration: histogram(
                    "etcd_disk_wal_write_duration_seconds",
                    "The latency distributions of write called by WAL.",
                    0.001,
                    14,
                )?,
                write_bytes: IntGauge::new("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.")?,
                fsync_entries: histogram("hub_wal_fsync_entries", "Log entries made durable by one WAL fsync.", 1.0, 14)?,
            },
            forwarded_writes: histogram(
                "hub_raft_forwarded_writes",
                "Writes a follower forwarded to the leader in one request.",
                1.0,
                14,
            )?,
            read_index_reads: histogram(
                "hub_raft_read_index_reads",
                "Linearizable reads served by one read-index round.",
                1.0,
                14,
            )?,
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
            active_peers: IntGaugeVec::new(
                Opts::new("etcd_network_active_peers", "The current number of active peer connections."),
                &["Local", "Remote"],
            )?,
            disconnected_peers: IntCounterVec::new(
                Opts::new("etcd_network_disconnected_peers_total", "The total number of disconnected peers."),
                &["Local", "Remote"],
            )?,
            peers: Arc::default(),
            read_indexes_failed: IntCounter::new(
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            )?,
            slow_read_indexes: IntCounter::new(
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            )?,
            learner_promotes: IntCounter::new(
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            )?,
            learner_promote_failures: IntCounterVec::new(
                Opts::new(
                    "etcd_server_learner_promote_failures",
                    "The total number of failed learner promotions (likely learner not ready) while this member is leader.",
                ),
                &["Reason"],
            )?,
            snapshot_send: SnapshotFamilies::new("send", "To")?,
            snapshot_receive: SnapshotFamilies::new("receive", "From")?,
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
        let snapshots = self.snapshot_send.collectors().into_iter().chain(self.snapshot_receive.collectors());
        let all: [Box<dyn Collector>; 18] = [
            Box::new(self.wal.fsync_duration.clone()),
            Box::new(self.wal.write_duration.clone()),
            Box::new(self.wal.write_bytes.clone()),
            Box::new(self.wal.fsync_entries.clone()),
            Box::new(self.forwarded_writes.clone()),
            Box::new(self.read_index_reads.clone()),
            Box::new(self.peer_sent_bytes.clone()),
            Box::new(self.peer_received_bytes.clone()),
            Box::new(self.peer_sent_failures.clone()),
            Box::new(self.peer_round_trip.clone()),
            Box::new(self.active_peers.clone()),
            Box::new(self.disconnected_peers.clone()),
            Box::new(self.heartbeat_send_failures.clone()),
            Box::new(self.slow_applies.clone()),
            Box::new(self.read_indexes_failed.clone()),
            Box::new(self.slow_read_indexes.clone()),
            Box::new(self.learner_promotes.clone()),
            Box::new(self.learner_promote_failures.clone()),
        ];
        for c in all.into_iter().chain(snapshots) {
            registry.register(c)?;
        }
        Ok(())
    }

    /// A follower forwarded `writes` writes in one request.
    pub fn forwarded(&self, writes: usize) {
        self.forwarded_writes.observe(writes as f64);
    }

    /// One read-index round served `reads` reads.
    pub fn read_round(&self, reads: usize) {
        self.read_index_reads.observe(reads as f64);
    }

    /// `peer`'s rows, made on its first message.
    fn peer(&self, peer: u64) -> Arc<PeerRows> {
        if let Some(rows) = self.peers.read().get(&peer) {
            return rows.clone();
        }
        let rows = Arc::new(PeerRows { label: peer_label(peer), ..Default::default() });
        self.peers.write().entry(peer).or_insert(rows).clone()
    }

    pub(crate) fn sent(&self, to: u64, bytes: usize) {
        let p = self.peer(to);
        p.sent.get_or_init(|| self.peer_sent_bytes.with_label_values(&[&p.label])).inc_by(bytes as u64);
    }

    pub(crate) fn received(&self, from: u64, bytes: usize) {
        let p = self.peer(from);
        p.received.get_or_init(|| self.peer_received_bytes.with_label_values(&[&p.label])).inc_by(bytes as u64);
    }

    /// A message to `to` that did not get through.
    pub(crate) fn send_failed(&self, to: u64) {
        let p = self.peer(to);
        p.sent_failures.get_or_init(|| self.peer_sent_failures.with_label_values(&[&p.label])).inc();
    }

    /// A chunk of a snapshot sent to `to`: the `first` (offset 0) starts the
    /// transfer, the `last` (done) ends it; `ok`: the peer took it.
    pub(crate) fn snapshot_sent(&self, to: u64, first: bool, last: bool, ok: bool) {
        let p = self.peer(to);
        self.snapshot_send.chunk(&p.snapshot_send, &p.label, first, last, ok);
    }

    /// A chunk of a snapshot received from `from` (see [`Self::snapshot_sent`]).
    pub(crate) fn snapshot_received(&self, from: u64, first: bool, last: bool, ok: bool) {
        let p = self.peer(from);
        self.snapshot_receive.chunk(&p.snapshot_receive, &p.label, first, last, ok);
    }

    /// The leader sent a heartbeat later than twice the heartbeat interval
    /// after the last (etcd: "leader failed to send out heartbeat on time",
    /// likely an overloaded leader or slow disk).
    pub(crate) fn heartbeat_late(&self) {
        self.heartbeat_send_failures.inc();
    }

    /// A probe of `to` from member `local`: answered after `took`, or not.
    /// etcd counts a peer active while its stream is connected, and a
    /// disconnection each time it drops; hub's probes tell the same.
    pub(crate) fn probed(&self, local: u64, to: u64, took: Option<Duration>) {
        let p = self.peer(to);
        let pair = || [peer_label(local), p.label.clone()];
        let active = p.active.get_or_init(|| {
            let [l, r] = pair();
            self.active_peers.with_label_values(&[&l, &r])
        });
        let mut reachable = p.reachable.lock();
        match took {
            Some(took) => {
                p.round_trip.get_or_init(|| self.peer_round_trip.with_label_values(&[&p.label])).observe(took.as_secs_f64());
                active.set(1);
            }
            None if *reachable => {
                active.set(0);
                let [l, r] = pair();
                p.disconnected.get_or_init(|| self.disconnected_peers.with_label_values(&[&l, &r])).inc();
            }
            None => {}
        }
        *reachable = took.is_some();
    }

    /// The warning and count of requests slower to apply than `threshold`
    /// (`--warning-apply-duration`), counted in `etcd_server_slow_apply_total`.
    pub(crate) fn slow_apply(&self, threshold: Duration) -> crate::SlowApply {
        crate::SlowApply::new(threshold, self.slow_applies.clone())
    }

    /// A linearizable read's ReadIndex ended: a failure counts as failed,
    /// one that timed out as slow too.
    pub(crate) fn read_index<T>(&self, result: &Result<T, hub_store::StoreError>) {
        if let Err(e) = result {
            self.read_indexes_failed.inc();
            if matches!(e, hub_store::StoreError::Etcd(hub_store::EtcdError::Timeout)) {
                self.slow_read_indexes.inc();
            }
        }
    }

    /// A learner promotion this member (the leader) did, or refused with
    /// `reason` (etcd's reasons: "not found", "not ready").
    pub(crate) fn learner_promoted(&self, refused: Option<&str>) {
        match refused {
            None => self.learner_promotes.inc(),
            Some(reason) => self.learner_promote_failures.with_label_values(&[reason]).inc(),
        }
    }
}

/// A member ID as etcd's `types.ID` prints it: lower-case hex, no padding.
pub fn peer_label(id: u64) -> String {
    format!("{id:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(m: &RaftMetrics) -> String {
        let r = Registry::new();
        m.register(&r).expect("register");
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &r.gather(), &mut out).expect("encode");
        String::from_utf8(out).expect("text")
    }

    #[test]
    fn snapshot_transfers_are_counted_per_peer() {
        let m = RaftMetrics::new().expect("metrics");
        assert!(!samples(&m).contains("etcd_network_snapshot_send"), "no rows before a transfer");
        m.snapshot_sent(0xab, true, false, true);
        assert!(samples(&m).contains(r#"etcd_network_snapshot_send_inflights_total{To="ab"} 1"#));
        m.snapshot_sent(0xab, false, true, true);
        m.snapshot_received(0xcd, true, true, false);
        let text = samples(&m);
        for row in [
            r#"etcd_network_snapshot_send_inflights_total{To="ab"} 0"#,
            r#"etcd_network_snapshot_send_success{To="ab"} 1"#,
            r#"etcd_network_snapshot_send_total_duration_seconds_count{To="ab"} 1"#,
            r#"etcd_network_snapshot_receive_failures{From="cd"} 1"#,
            r#"etcd_network_snapshot_receive_inflights_total{From="cd"} 0"#,
        ] {
            assert!(text.contains(row), "no {row} in\n{text}");
        }
        assert!(!text.contains("etcd_network_snapshot_send_failures"), "{text}");
    }
}
