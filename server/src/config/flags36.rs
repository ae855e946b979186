//! The flags etcd 3.5 and 3.6 added to 3.4's ([`Flags36`], flattened into
//! [`Flags`]), with etcd 3.6.16's defaults; the `--experimental-*` flags 3.6
//! renamed ([`RENAMED`]) and the warnings it gives for deprecated flags
//! ([`DEPRECATED`]).

use super::*;

/// etcd 3.6's `experimentalFlagMigrationMap`: an `--experimental-*` flag and
/// the name it has from 3.6 on. Either spelling sets the same thing; both at
/// once is an error.
pub(super) const RENAMED: &[(&str, &str)] = &[
    ("experimental-bootstrap-defrag-threshold-megabytes", "bootstrap-defrag-threshold-megabytes"),
    ("experimental-compact-hash-check-time", "compact-hash-check-time"),
    ("experimental-compaction-batch-limit", "compaction-batch-limit"),
    ("experimental-compaction-sleep-interval", "compaction-sleep-interval"),
    ("experimental-corrupt-check-time", "corrupt-check-time"),
    ("experimental-distributed-tracing-address", "distributed-tracing-address"),
    ("experimental-distributed-tracing-instance-id", "distributed-tracing-instance-id"),
    ("experimental-distributed-tracing-sampling-rate", "distributed-tracing-sampling-rate"),
    ("experimental-distributed-tracing-service-name", "distributed-tracing-service-name"),
    ("experimental-downgrade-check-time", "downgrade-check-time"),
    ("experimental-enable-distributed-tracing", "enable-distributed-tracing"),
    ("experimental-memory-mlock", "memory-mlock"),
    ("experimental-peer-skip-client-san-verification", "peer-skip-client-san-verification"),
    ("experimental-snapshot-catchup-entries", "snapshot-catchup-entries"),
    ("experimental-warning-apply-duration", "warning-apply-duration"),
    ("experimental-watch-progress-notify-interval", "watch-progress-notify-interval"),
];

/// etcd 3.6's `deprecatedFlags`: the warning it logs for each of these flags
/// when set (in its words, its inconsistencies included).
pub(super) const DEPRECATED: &[(&str, &str)] = &[
    ("max-snapshots", "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8."),
    ("v2-deprecation", "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input."),
    ("experimental-compact-hash-check-enabled", "--experimental-compact-hash-check-enabled is deprecated in 3.6 and will be decommissioned in 3.7. Use '--feature-gates=CompactHashCheck=true' instead."),
    ("experimental-compact-hash-check-time", "--experimental-compact-hash-check-time is deprecated in 3.6 and will be decommissioned in 3.7. Use '--compact-hash-check-time' instead."),
    ("experimental-txn-mode-write-with-shared-buffer", "--experimental-txn-mode-write-with-shared-buffer is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=TxnModeWriteWithSharedBuffer=true' instead."),
    ("experimental-corrupt-check-time", "--experimental-corrupt-check-time is deprecated in v3.6 and will be decommissioned in v3.7. Use '--corrupt-check-time' instead."),
    ("experimental-compaction-batch-limit", "--experimental-compaction-batch-limit is deprecated in v3.6 and will be decommissioned in v3.7. Use '--compaction-batch-limit' instead."),
    ("experimental-watch-progress-notify-interval", "--experimental-watch-progress-notify-interval is deprecated in v3.6 and will be decommissioned in v3.7. Use '--watch-progress-notify-interval' instead."),
    ("experimental-warning-apply-duration", "--experimental-warning-apply-duration is deprecated in v3.6 and will be decommissioned in v3.7. Use '--warning-apply-duration' instead."),
    ("experimental-bootstrap-defrag-threshold-megabytes", "--experimental-bootstrap-defrag-threshold-megabytes is deprecated in v3.6 and will be decommissioned in v3.7. Use '--bootstrap-defrag-threshold-megabytes' instead."),
    ("experimental-memory-mlock", "--experimental-memory-mlock is deprecated in v3.6 and will be decommissioned in v3.7. Use '--memory-mlock' instead."),
    ("experimental-snapshot-catchup-entries", "--experimental-snapshot-catchup-entries is deprecated in v3.6 and will be decommissioned in v3.7. Use '--snapshot-catchup-entries' instead."),
    ("experimental-compaction-sleep-interval", "--experimental-compaction-sleep-interval is deprecated in v3.6 and will be decommissioned in v3.7. Use 'compaction-sleep-interval' instead."),
    ("experimental-downgrade-check-time", "--experimental-downgrade-check-time is deprecated in v3.6 and will be decommissioned in v3.7. Use '--downgrade-check-time' instead."),
    ("experimental-enable-distributed-tracing", "--experimental-enable-distributed-tracing is deprecated in 3.6 and will be decommissioned in 3.7. Use --enable-distributed-tracing instead."),
    ("experimental-distributed-tracing-address", "--experimental-distributed-tracing-address is deprecated in 3.6 and will be decommissioned in 3.7. Use --distributed-tracing-address instead."),
    ("experimental-distributed-tracing-service-name", "--experimental-distributed-tracing-service-name is deprecated in 3.6 and will be decommissioned in 3.7. Use --distributed-tracing-service-name instead."),
    ("experimental-distributed-tracing-instance-id", "--experimental-distributed-tracing-instance-id is deprecated in 3.6 and will be decommissioned in 3.7. Use --distributed-tracing-instance-id instead."),
    ("experimental-distributed-tracing-sampling-rate", "--experimental-distributed-tracing-sampling-rate is deprecated in 3.6 and will be decommissioned in 3.7. Use --distributed-tracing-sampling-rate instead."),
];

/// `--v2-deprecation`'s values (etcd 3.6 enforces its default whatever is given).
const V2_DEPRECATION: &[&str] = &["write-only", "write-only-skip-check", "write-only-drop-data", "gone"];

/// etcd's `SelectiveStringsValue`: each comma-separated item must be valid.
fn v2_deprecation(s: &str) -> Result<String, String> {
    match s.split(',').find(|v| !V2_DEPRECATION.contains(v)) {
        Some(bad) => Err(format!("invalid value {}", hub_go::quote(bad.as_bytes()))),
        None => Ok(s.to_string()),
    }
}

/// etcd's `UniqueStringsValue`: comma-separated, deduplicated and sorted.
#[derive(Debug, Clone, Default)]
pub(super) struct UniqueStrings(pub(super) Vec<String>);

fn unique_strings(s: &str) -> Result<UniqueStrings, String> {
    Ok(UniqueStrings(sorted_unique(s.split(',').map(str::to_string).collect())))
}

/// Every flag etcd 3.6.16 has that 3.4.23 has not, with 3.6.16's default.
#[derive(clap::Args, Debug)]
#[allow(dead_code)] // flags hub does not implement are parsed but not read
pub(super) struct Flags36 {
    // Member
    /// List of URLs to listen on for http only client traffic. Enabling this flag removes http services from --listen-client-urls.
    #[arg(long, default_value = "", value_parser = urls)]
    pub(super) listen_client_http_urls: Urls,
    /// Enable to enforce etcd pages (in particular bbolt) to stay in RAM.
    #[arg(long)]
    pub(super) memory_mlock: bool,
    /// BackendFreelistType specifies the type of freelist that boltdb backend uses (array and map are supported types).
    #[arg(long, default_value = "map")]
    pub(super) backend_bbolt_freelist_type: String,
    /// Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use.
    #[arg(long)]
    pub(super) socket_reuse_port: bool,
    /// Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in TIME_WAIT state.
    #[arg(long)]
    pub(super) socket_reuse_address: bool,
    /// Read timeout set on each rafthttp connection.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub(super) raft_read_timeout: Duration,
    /// Write timeout set on each rafthttp connection.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub(super) raft_write_timeout: Duration,
    /// A set of key=value pairs that describe server level feature gates for alpha/experimental features: AllAlpha, AllBeta, CompactHashCheck, InitialCorruptCheck, LeaseCheckpoint, LeaseCheckpointPersist, SetMemberLocalAddr, StopGRPCServiceOnDefrag (all false by default), TxnModeWriteWithSharedBuffer (true).
    #[arg(long, value_parser = feature_gates, action = ArgAction::Append)]
    pub(super) feature_gates: Vec<String>,

    // Clustering
    /// V3 discovery: discovery token for the etcd cluster to be bootstrapped.
    #[arg(long, default_value = "")]
    pub(super) discovery_token: String,
    /// V3 discovery: List of gRPC endpoints of the discovery service.
    #[arg(long, value_parser = unique_strings)]
    pub(super) discovery_endpoints: Option<UniqueStrings>,
    /// V3 discovery: dial timeout for client connections.
    #[arg(long, default_value = "2s", value_parser = go_duration)]
    pub(super) discovery_dial_timeout: Duration,
    /// V3 discovery: timeout for discovery requests (excluding dial timeout).
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub(super) discovery_request_timeout: Duration,
    /// V3 discovery: keepalive time for client connections.
    #[arg(long, default_value = "2s", value_parser = go_duration)]
    pub(super) discovery_keepalive_time: Duration,
    /// V3 discovery: keepalive timeout for client connections.
    #[arg(long, default_value = "6s", value_parser = go_duration)]
    pub(super) discovery_keepalive_timeout: Duration,
    /// V3 discovery: disable transport security for client connections.
    #[arg(long, default_value = "true")]
    pub(super) discovery_insecure_transport: bool,
    /// V3 discovery: skip server certificate verification (CAUTION: this option should be enabled only for testing purposes).
    #[arg(long)]
    pub(super) discovery_insecure_skip_tls_verify: bool,
    /// V3 discovery: identify secure client using this TLS certificate file.
    #[arg(long, default_value = "")]
    pub(super) discovery_cert: String,
    /// V3 discovery: identify secure client using this TLS key file.
    #[arg(long, default_value = "")]
    pub(super) discovery_key: String,
    /// V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle.
    #[arg(long, default_value = "")]
    pub(super) discovery_cacert: String,
    /// V3 discovery: username[:password] for authentication (prompt if password is not supplied).
    #[arg(long, default_value = "")]
    pub(super) discovery_user: String,
    /// V3 discovery: password for authentication (if this option is used, --user option shouldn't include password).
    #[arg(long, default_value = "")]
    pub(super) discovery_password: String,
    /// Phase of v2store deprecation (deprecated; etcd 3.6 enforces its default 'write-only' whatever is given).
    #[arg(long, value_parser = v2_deprecation)]
    pub(super) v2_deprecation: Option<String>,

    // Security
    /// Path to an explicit client TLS cert file otherwise cert file will be used when client auth is required.
    #[arg(long, default_value = "")]
    pub(super) client_cert_file: String,
    /// Path to an explicit client TLS key file otherwise key file will be used when client auth is required.
    #[arg(long, default_value = "")]
    pub(super) client_key_file: String,
    /// Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.
    #[arg(long, default_value = "")]
    pub(super) peer_client_cert_file: String,
    /// Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.
    #[arg(long, default_value = "")]
    pub(super) peer_client_key_file: String,
    /// The validity period, in years, of the client and peer certificates that auto TLS generates.
    #[arg(long, default_value = "1", value_parser = go_u64)]
    pub(super) self_signed_cert_validity: u64,
    /// Skip verification of SAN field in client certificate for peer connections.
    #[arg(long)]
    pub(super) peer_skip_client_san_verification: bool,
    /// Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.
    #[arg(long, default_value = "TLS1.2")]
    pub(super) tls_min_version: String,
    /// Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty: the highest available).
    #[arg(long, default_value = "")]
    pub(super) tls_max_version: String,

    // Logging
    /// Configures log format. Only supports json, console.
    #[arg(long, default_value = "json")]
    pub(super) log_format: String,
    /// Enable log rotation of a single log-outputs file target.
    #[arg(long)]
    pub(super) enable_log_rotation: bool,
    /// Configures log rotation if enabled with a JSON logger config.
    #[arg(long, default_value = r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#)]
    pub(super) log_rotation_config_json: String,
    /// Set time duration after which a warning is logged if a unary request takes more than this duration [default: 300ms].
    #[arg(long, default_value = "0s", hide_default_value = true, value_parser = go_duration)]
    pub(super) warning_unary_request_duration: Duration,
    /// Deprecated: use --warning-unary-request-duration.
    #[arg(long, default_value = "0s", hide_default_value = true, value_parser = go_duration)]
    pub(super) experimental_warning_unary_request_duration: Duration,

    // Distributed tracing
    /// Deprecated: use --enable-distributed-tracing.
    #[arg(long)]
    pub(super) experimental_enable_distributed_tracing: bool,
    /// Enable distributed tracing.
    #[arg(long)]
    pub(super) enable_distributed_tracing: bool,
    /// Deprecated: use --distributed-tracing-address.
    #[arg(long, default_value = "localhost:4317")]
    pub(super) experimental_distributed_tracing_address: String,
    /// Distributed tracing collector address.
    #[arg(long, default_value = "localhost:4317")]
    pub(super) distributed_tracing_address: String,
    /// Deprecated: use --distributed-tracing-service-name.
    #[arg(long, default_value = "etcd")]
    pub(super) experimental_distributed_tracing_service_name: String,
    /// Distributed tracing service name, must be same across all etcd instances.
    #[arg(long, default_value = "etcd")]
    pub(super) distributed_tracing_service_name: String,
    /// Deprecated: use --distributed-tracing-instance-id.
    #[arg(long, default_value = "")]
    pub(super) experimental_distributed_tracing_instance_id: String,
    /// Distributed tracing instance ID, must be unique per each etcd instance.
    #[arg(long, default_value = "")]
    pub(super) distributed_tracing_instance_id: String,
    /// Deprecated: use --distributed-tracing-sampling-rate.
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub(super) experimental_distributed_tracing_sampling_rate: i64,
    /// Number of samples to collect per million spans for distributed tracing.
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub(super) distributed_tracing_sampling_rate: i64,

    // Experimental features, and their 3.6 names
    /// Duration of time between cluster corruption check passes.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    pub(super) corrupt_check_time: Duration,
    /// Deprecated: use --feature-gates=CompactHashCheck=true.
    #[arg(long)]
    pub(super) experimental_compact_hash_check_enabled: bool,
    /// Deprecated: use --compact-hash-check-time.
    #[arg(long, default_value = "1m", value_parser = go_duration)]
    pub(super) experimental_compact_hash_check_time: Duration,
    /// Duration of time between leader checks followers compaction hashes.
    #[arg(long, default_value = "1m", value_parser = go_duration)]
    pub(super) compact_hash_check_time: Duration,
    /// CompactionBatchLimit sets the maximum revisions deleted in each compaction batch.
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub(super) compaction_batch_limit: i64,
    /// Deprecated: use --compaction-sleep-interval.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    pub(super) experimental_compaction_sleep_interval: Duration,
    /// Sets the sleep interval between each compaction batch.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    pub(super) compaction_sleep_interval: Duration,
    /// Duration of periodical watch progress notification [default: 10m].
    #[arg(long, default_value = "0s", hide_default_value = true, value_parser = go_duration)]
    pub(super) watch_progress_notify_interval: Duration,
    /// Warning is generated if requests take more than this duration.
    #[arg(long, default_value = "100ms", value_parser = go_duration)]
    pub(super) warning_apply_duration: Duration,
    /// Deprecated: use --feature-gates=TxnModeWriteWithSharedBuffer=true.
    #[arg(long, default_value = "true")]
    pub(super) experimental_txn_mode_write_with_shared_buffer: bool,
    /// Deprecated: use --bootstrap-defrag-threshold-megabytes.
    #[arg(long, default_value = "0", value_parser = go_u64)]
    pub(super) experimental_bootstrap_defrag_threshold_megabytes: u64,
    /// Enable the defrag during etcd server bootstrap on condition that it will free at least the provided threshold of disk space.
    #[arg(long, default_value = "0", value_parser = go_u64)]
    pub(super) bootstrap_defrag_threshold_megabytes: u64,
    /// Set the max number of learner members allowed in the cluster membership.
    #[arg(long, default_value = "1", value_parser = go_i64)]
    pub(super) max_learners: i64,
    /// Deprecated: use --downgrade-check-time.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub(super) experimental_downgrade_check_time: Duration,
    /// Duration of time between two downgrade status checks.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub(super) downgrade_check_time: Duration,
    /// Deprecated: use --memory-mlock.
    #[arg(long)]
    pub(super) experimental_memory_mlock: bool,
    /// Deprecated: use --snapshot-catchup-entries.
    #[arg(long, default_value = "5000", value_parser = go_u64)]
    pub(super) experimental_snapshot_catchup_entries: u64,
    /// Number of entries for a slow follower to catch up after compacting the raft storage entries.
    #[arg(long, default_value = "5000", value_parser = go_u64)]
    pub(super) snapshot_catchup_entries: u64,
    /// Deprecated: use --feature-gates=StopGRPCServiceOnDefrag=true.
    #[arg(long)]
    pub(super) experimental_stop_grpc_service_on_defrag: bool,
}
