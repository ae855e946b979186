//! Prometheus metrics under etcd 3.6's names, types and labels, served at
//! `/metrics`: every family a member of etcd 3.6.16 exports but those of parts
//! hub does not have (the v2 store, the gRPC proxy, Go's runtime); the test
//! `server/tests/metrics.rs` lists them with the reasons and compares the
//! rest with etcd's.
//!
//! Gauges that mirror the node's state (leader, raft indexes, revisions,
//! database size, key count, members, alarms, file descriptors) are read
//! when scraped; counters are kept as things happen, where they happen:
//! leader changes by a watcher of the node, gRPC calls by the [`grpc_layer`]
//! middleware ([`grpc`]). The server layer's metrics (proposals, lease
//! expiry, watch streams and events), the consensus layer's (WAL, peers, read
//! indexes) and the store's (backend timings, MVCC, leases, applies,
//! snapshots) are kept where they happen and registered here; the process's
//! own in [`process`].
//!
//! Nothing on a request's path formats a label or allocates: every labelled
//! row a request touches is resolved once and kept.

mod grpc;
mod process;

use std::time::Duration;

use hub_etcdserver::EtcdServer;
use hub_proto::etcdserverpb::AlarmType;
use hub_store::key_index::RangeEnd;
use hub_store::StateMachine;
use prometheus::core::Collector;
use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub use grpc::grpc_layer;
pub(crate) use grpc::SERVED;

use crate::{Context, ServiceConfig};

/// Every metric hub exports.
pub struct Metrics {
    registry: Registry,
    grpc: grpc::GrpcMetrics,
    member_id: String,
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    leader_changes: IntCounter,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    db_total_size: IntGauge,
    db_size_in_use: IntGauge,
    keys_total: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    auth_revision: IntGauge,
    known_peers: IntGaugeVec,
    alarms: IntGaugeVec,
    health_success: IntCounter,
    health_failures: IntCounter,
    /// etcd 3.6's `/livez` and `/readyz` checks: the last result of each, and a count by result.
    health_check: IntGaugeVec,
    health_checks: IntCounterVec,
    scrapes_in_flight: IntGauge,
    /// `promhttp_metric_handler_requests_total{code="200"}`: the scrapes answered.
    scrapes: IntCounter,
    /// `etcd_cluster_version`: 1 for the cluster version now, 0 for one it had.
    cluster_version: GaugeVec,
}

/// Registers `c` and hands it back.
fn registered<C: Collector + Clone + 'static>(registry: &Registry, c: prometheus::Result<C>) -> prometheus::Result<C> {
    let c = c?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    registered(registry, IntGauge::new(name, help))
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    registered(registry, IntCounter::new(name, help))
}

/// The cluster version as etcd's metric names it (major.minor).
fn major_minor(server: &EtcdServer) -> String {
    let cluster = server.cluster_version().unwrap_or_default();
    hub_etcdserver::version::major_minor(&cluster).to_string()
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A gauge whose one row, set to 1, names a value (a version, an ID).
fn info_gauge(registry: &Registry, name: &str, help: &str, label: &str, value: &str) -> prometheus::Result<GaugeVec> {
    let g = registered(registry, GaugeVec::new(Opts::new(name, help), &[label]))?;
    g.with_label_values(&[value]).set(1.0);
    Ok(g)
}

impl Metrics {
    /// `config` gives the release hub reports (`--report-etcd-version`), the
    /// quota and `--metrics extensive`; `node`'s own metrics and the server
    /// layer's are served too.
    pub fn new(config: &ServiceConfig, server: &EtcdServer) -> prometheus::Result<Self> {
        let node = server.node();
        let r = Registry::new();
        r.register(Box::new(process::ProcessFamilies::new()?))?;
        node.metrics().register(&r)?;
        server.metrics().register(&r)?;
        server.read_state(|sm| sm.metrics().register(&r))?;
        let grpc = grpc::GrpcMetrics::new(config.metrics_extensive)?;
        grpc.register(&r)?;
        let member_id = hub_raft::metrics::peer_label(node.member_id());
        info_gauge(&r, "etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.", "server_version", &config.server.etcd_version)?;
        let cluster_version = info_gauge(&r, "etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version", "cluster_version", &major_minor(server))?;
        info_gauge(&r, "etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", "server_id", &member_id)?;
        let features = gauge_vec(&r, "etcd_server_feature_enabled", "Whether or not a feature is enabled. 1 is enabled, 0 is not.", &["name", "stage"])?;
        for &(name, stage, on) in &config.feature_gates {
            features.with_label_values(&[name, stage]).set(i64::from(on));
        }
        // etcd counts events pending from when a watcher is given them until
        // its stream has sent them; hub's stream task sends events as it takes
        // them from the commit feed, so none are ever pending.
        gauge(&r, "etcd_debugging_mvcc_pending_events_total", "Total number of pending events to be sent.")?;
        // Readers of hub's backend hold no transaction open beyond the call that reads.
        gauge(&r, "etcd_mvcc_db_open_read_transactions", "The number of currently open read transactions")?;
        let quota = gauge(&r, "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")?;
        quota.set(config.server.quota_backend_bytes.unwrap_or(0) as i64);
        let scrapes = registered(
            &r,
            IntCounterVec::new(
                Opts::new("promhttp_metric_handler_requests_total", "Total number of scrapes by HTTP status code."),
                &["code"],
            ),
        )?;
        // Only 200 is ever answered; the others stay at zero, as etcd shows them.
        for code in ["500", "503"] {
            scrapes.with_label_values(&[code]);
        }
        Ok(Metrics {
            grpc,
            member_id,
            has_leader: gauge(&r, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")?,
            is_leader: gauge(&r, "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")?,
            is_learner: gauge(&r, "etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")?,
            leader_changes: counter(&r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen.")?,
            proposals_committed: gauge(&r, "etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")?,
            proposals_applied: gauge(&r, "etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")?,
            db_total_size: gauge(&r, "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")?,
            db_size_in_use: gauge(&r, "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")?,
            keys_total: gauge(&r, "etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            current_revision: gauge(&r, "etcd_debugging_mvcc_current_revision", "The current revision of store.")?,
            compact_revision: gauge(&r, "etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.")?,
            auth_revision: gauge(&r, "etcd_debugging_auth_revision", "The current revision of auth store.")?,
            known_peers: gauge_vec(&r, "etcd_network_known_peers", "The current number of known peers.", &["Local", "Remote"])?,
            alarms: gauge_vec(
                &r,
                "etcd_debugging_server_alarms",
                "Alarms for every member in cluster. 1 for 'server_id' label with current ID. 2 for 'alarm_type' label with type of this alarm",
                &["server_id", "alarm_type"],
            )?,
            health_success: counter(&r, "etcd_server_health_success", "The total number of successful health checks")?,
            health_failures: counter(&r, "etcd_server_health_failures", "The total number of failed health checks")?,
            health_check: gauge_vec(&r, "etcd_server_healthcheck", "The result of each kind of healthcheck.", &["type", "name"])?,
            health_checks: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("etcd_server_healthchecks_total", "The total number of each kind of healthcheck."),
                    &["type", "name", "status"],
                ),
            )?,
            scrapes_in_flight: gauge(&r, "promhttp_metric_handler_requests_in_flight", "Current number of scrapes being served.")?,
            scrapes: scrapes.with_label_values(&["200"]),
            cluster_version,
            registry: r,
        })
    }

    /// The exposition text, with the node's state read now.
    pub fn render(&self, ctx: &Context) -> String {
        self.scrapes_in_flight.inc();
        self.read_state(ctx.server());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        self.scrapes_in_flight.dec();
        self.scrapes.inc();
        String::from_utf8(out).unwrap_or_default()
    }

    /// Sets the gauges that mirror the node's state.
    fn read_state(&self, server: &EtcdServer) {
        let node = server.node();
        self.has_leader.set(i64::from(node.leader_id() != 0));
        self.is_leader.set(i64::from(node.is_leader()));
        self.proposals_committed.set(node.raft_index() as i64);
        self.known_peers.reset();
        for (id, _, learner) in node.members() {
            let remote = hub_raft::metrics::peer_label(id);
            self.known_peers.with_label_values(&[&self.member_id, &remote]).set(1);
            if id == node.member_id() {
                self.is_learner.set(i64::from(learner));
            }
        }
        server.read_state(|sm| self.read_store(sm));
        // etcd sets the row of the new cluster version and zeroes the old one.
        let now = major_minor(server);
        if self.cluster_version.get_metric_with_label_values(&[&now]).map_or(0.0, |g| g.get()) != 1.0 {
            for family in self.cluster_version.collect() {
                for m in family.get_metric() {
                    if let Some(label) = m.get_label().first() {
                        self.cluster_version.with_label_values(&[label.value()]).set(0.0);
                    }
                }
            }
            self.cluster_version.with_label_values(&[&now]).set(1.0);
        }
    }

    /// Sets the gauges that mirror the state machine.
    fn read_store(&self, sm: &StateMachine) {
        self.proposals_applied.set(sm.applied_index() as i64);
        self.db_total_size.set(sm.db_size() as i64);
        if let Ok(in_use) = sm.db_size_in_use() {
            self.db_size_in_use.set(in_use as i64);
        }
        // Read from the index, not through StateMachine::range: a scrape is no client's range.
        if let Ok(r) = sm.mvcc().range(&[0], RangeEnd::from_request(&[0]), 0, 0, true) {
            self.keys_total.set(r.count as i64);
        }
        self.current_revision.set(sm.current_revision());
        self.compact_revision.set(sm.compact_revision());
        self.auth_revision.set(sm.auth().revision() as i64);
        self.alarms.reset();
        for a in sm.alarms() {
            let kind = AlarmType::try_from(a.alarm).map_or("NONE", |t| t.as_str_name());
            self.alarms.with_label_values(&[&hub_raft::metrics::peer_label(a.member_id), kind]).set(1);
        }
    }

    /// Counts one `/health` answer.
    pub(crate) fn health_checked(&self, healthy: bool) {
        if healthy { &self.health_success } else { &self.health_failures }.inc();
    }

    /// Records one check of `/livez` or `/readyz` (`kind`).
    pub(crate) fn health_check_ran(&self, kind: &str, name: &str, ok: bool) {
        self.health_check.with_label_values(&[kind, name]).set(i64::from(ok));
        let status = if ok { "success" } else { "error" };
        self.health_checks.with_label_values(&[kind, name, status]).inc();
    }
}

/// Counts the leader changes this member sees, for as long as it runs.
pub async fn run(ctx: Context) {
    let metrics = ctx.metrics().clone();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut leader = 0;
    loop {
        tick.tick().await;
        let now = ctx.server().node().leader_id();
        if now != leader && now != 0 {
            metrics.leader_changes.inc();
        }
        if now != 0 {
            leader = now;
        }
    }
}

