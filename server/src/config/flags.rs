//! The flag table: every flag of etcd 3.4.23 with etcd's default ([`Flags`],
//! with 3.6's additions flattened in from [`Flags36`]), as a clap command
//! with Go-style booleans and etcd's obsolete flags.

use super::*;

/// Flags that hub implements; every other flag the user sets is reported in
/// [`Config::unhonoured`].
pub(super) const HONOURED: &[&str] = &[
    "experimental-peer-skip-client-san-verification",
    "peer-skip-client-san-verification",
    "client-cert-file",
    "client-key-file",
    "peer-client-cert-file",
    "peer-client-key-file",
    "listen-client-http-urls",
    "bootstrap-defrag-threshold-megabytes",
    "experimental-bootstrap-defrag-threshold-megabytes",
    "tls-min-version",
    "tls-max-version",
    // Gates are honoured one by one (`features::HONOURED_GATES`).
    "feature-gates",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-compact-hash-check-enabled",
    "experimental-compaction-batch-limit",
    "compaction-batch-limit",
    "experimental-compaction-sleep-interval",
    "compaction-sleep-interval",
    "experimental-compact-hash-check-time",
    "compact-hash-check-time",
    // etcd 3.6 enforces its default whatever is given; hub has no v2 store.
    "v2-deprecation",
    "listen-metrics-urls",
    "max-concurrent-streams",
    "report-etcd-version",
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "max-request-bytes",
    "max-txn-ops",
    "quota-backend-bytes",
    "snapshot-count",
    "strict-reconfig-check",
    "max-learners",
    "force-new-cluster",
    "heartbeat-interval",
    "election-timeout",
    "log-level",
    "logger",
    "log-outputs",
    "log-output", // deprecated spelling of log-outputs
    "log-format",
    "debug",
    "experimental-watch-progress-notify-interval",
    "watch-progress-notify-interval",
    "experimental-warning-apply-duration",
    "warning-apply-duration",
    "experimental-warning-unary-request-duration",
    "warning-unary-request-duration",
    "experimental-initial-corrupt-check",
    "experimental-corrupt-check-time",
    "corrupt-check-time",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "client-cert-auth",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "peer-client-cert-auth",
    "peer-auto-tls",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "peer-crl-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "cipher-suites",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
    // Handled by this module itself.
    "config-file",
    "version",
];

/// Flags etcd 3.4 still accepts (as booleans, value optional) only to warn
/// that they are no longer supported.
pub(super) const IGNORED: &[&str] = &[
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
    "test.coverprofile",
    "test.outputdir",
];

pub(super) const AFTER_HELP: &str = "\
Every flag --foo-bar can also be set through the environment variable ETCD_FOO_BAR
(empty values are ignored; setting both a flag and its variable is an error).
Flags take '--flag value', '--flag=value' or '-flag value'; boolean flags take
'--flag' or '--flag=true|false'. With --config-file, all other flags and ETCD_*
variables are ignored.";

/// Every flag of etcd 3.4.23, with etcd's default (and 3.6.16's in [`Flags36`]). Booleans become Go-style
/// flags in [`command`]; numbers and durations use Go's syntax. Flags hub does
/// not use are still parsed, so that their values are checked as etcd checks
/// them.
#[derive(Parser, Debug)]
#[command(
    name = "hubd",
    about = "hubd: one member of a hub cluster, an etcd-compatible key-value store",
    disable_version_flag = true,
    args_override_self = true,
    next_line_help = true,
    after_help = AFTER_HELP
)]
#[allow(dead_code)] // flags hub does not implement are parsed but not read
pub(super) struct Flags {
    /// Path to the server configuration file (YAML with etcd's keys); other command line flags and environment variables are then ignored.
    #[arg(long, default_value = "")]
    pub(super) config_file: String,
    /// Print the version and exit.
    #[arg(long)]
    pub(super) version: bool,

    // Member
    /// Human-readable name for this member.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub(super) name: String,
    /// Path to the data directory [default: ${name}.hub].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub(super) data_dir: String,
    /// Path to the dedicated wal directory.
    #[arg(long, default_value = "")]
    pub(super) wal_dir: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value = "100000", value_parser = go_u64)]
    pub(super) snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value = "100", value_parser = go_u64)]
    pub(super) heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value = "1000", value_parser = go_u64)]
    pub(super) election_timeout: u64,
    /// Whether to fast-forward initial election ticks on boot for faster election.
    #[arg(long, default_value = "true")]
    pub(super) initial_election_tick_advance: bool,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380", value_parser = urls)]
    pub(super) listen_peer_urls: Urls,
    /// List of URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379", value_parser = urls)]
    pub(super) listen_client_urls: Urls,
    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, default_value = "5", value_parser = go_u64)]
    pub(super) max_snapshots: u64,
    /// Maximum number of wal files to retain (0 is unlimited).
    #[arg(long, default_value = "5", value_parser = go_u64)]
    pub(super) max_wals: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub(super) quota_backend_bytes: i64,
    /// Maximum time before committing the backend transaction.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    pub(super) backend_batch_interval: Duration,
    /// Maximum operations before committing the backend transaction.
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub(super) backend_batch_limit: i64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value = "128", value_parser = go_u64)]
    pub(super) max_txn_ops: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value = "1572864", value_parser = go_u64)]
    pub(super) max_request_bytes: u64,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, default_value = "4294967295", value_parser = go_u32)]
    pub(super) max_concurrent_streams: u32,
    /// Minimum duration interval that a client should wait before pinging server.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub(super) grpc_keepalive_min_time: Duration,
    /// Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).
    #[arg(long, default_value = "2h", value_parser = go_duration)]
    pub(super) grpc_keepalive_interval: Duration,
    /// Additional duration of wait before closing a non-responsive connection (0 to disable).
    #[arg(long, default_value = "20s", value_parser = go_duration)]
    pub(super) grpc_keepalive_timeout: Duration,

    // Clustering
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_parser = urls)]
    pub(super) initial_advertise_peer_urls: Urls,
    /// Initial cluster configuration for bootstrapping.
    #[arg(long, default_value = DEFAULT_INITIAL_CLUSTER)]
    pub(super) initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    pub(super) initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub(super) initial_cluster_token: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, default_value = "http://localhost:2379", value_parser = urls)]
    pub(super) advertise_client_urls: Urls,
    /// Discovery URL used to bootstrap the cluster.
    #[arg(long, default_value = "")]
    pub(super) discovery: String,
    /// Expected behavior ('exit' or 'proxy') when discovery services fails.
    #[arg(long, default_value = "proxy", value_parser = ["exit", "proxy"])]
    pub(super) discovery_fallback: String,
    /// HTTP proxy to use for traffic to discovery service.
    #[arg(long, default_value = "")]
    pub(super) discovery_proxy: String,
    /// DNS srv domain used to bootstrap the cluster.
    #[arg(long, default_value = "")]
    pub(super) discovery_srv: String,
    /// Suffix to the dns srv name queried when bootstrapping.
    #[arg(long, default_value = "")]
    pub(super) discovery_srv_name: String,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, default_value = "true")]
    pub(super) strict_reconfig_check: bool,
    /// Enable to run an additional Raft election phase.
    #[arg(long)]
    pub(super) pre_vote: bool,
    /// Auto compaction retention length. 0 means disable auto compaction.
    #[arg(long, default_value = "0")]
    pub(super) auto_compaction_retention: String,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(long, default_value = "periodic")]
    pub(super) auto_compaction_mode: String,
    /// Accept etcd V2 client requests.
    #[arg(long)]
    pub(super) enable_v2: bool,

    // Security
    /// Path to the client server TLS cert file.
    #[arg(long, default_value = "")]
    pub(super) cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, default_value = "")]
    pub(super) key_file: String,
    /// Enable client cert authentication.
    #[arg(long)]
    pub(super) client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, default_value = "")]
    pub(super) client_crl_file: String,
    /// Allowed TLS hostname for client cert authentication.
    #[arg(long, default_value = "")]
    pub(super) client_cert_allowed_hostname: String,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, default_value = "")]
    pub(super) trusted_ca_file: String,
    /// Client TLS using generated certificates.
    #[arg(long)]
    pub(super) auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, default_value = "")]
    pub(super) peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, default_value = "")]
    pub(super) peer_key_file: String,
    /// Enable peer client cert authentication.
    #[arg(long)]
    pub(super) peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, default_value = "")]
    pub(super) peer_trusted_ca_file: String,
    /// Required CN for client certs connecting to the peer endpoint.
    #[arg(long, default_value = "")]
    pub(super) peer_cert_allowed_cn: String,
    /// Allowed TLS hostname for inter peer authentication.
    #[arg(long, default_value = "")]
    pub(super) peer_cert_allowed_hostname: String,
    /// Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.
    #[arg(long)]
    pub(super) peer_auto_tls: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long, default_value = "")]
    pub(super) peer_crl_file: String,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers.
    #[arg(long, default_value = "")]
    pub(super) cipher_suites: String,
    /// Skip verification of SAN field in client certificate for peer connections.
    #[arg(long)]
    pub(super) experimental_peer_skip_client_san_verification: bool,
    /// Comma-separated whitelist of origins for CORS (empty or * means allow all).
    #[arg(long, default_value = "*", value_parser = cors_urls)]
    pub(super) cors: Urls,
    /// Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).
    #[arg(long, default_value = "*")]
    pub(super) host_whitelist: String,

    // Auth
    /// Specify a v3 authentication token type and its options ('simple' or 'jwt').
    #[arg(long, default_value = "simple")]
    pub(super) auth_token: String,
    /// Specify the cost / strength of the bcrypt algorithm for hashing auth passwords (4 to 31).
    #[arg(long, default_value = "10", value_parser = go_u64)]
    pub(super) bcrypt_cost: u64,
    /// Time (in seconds) of the auth-token-ttl.
    #[arg(long, default_value = "300", value_parser = go_u64)]
    pub(super) auth_token_ttl: u64,

    // Profiling and monitoring
    /// Enable runtime profiling data via HTTP server at client URL + "/debug/pprof/".
    #[arg(long)]
    pub(super) enable_pprof: bool,
    /// Set level of detail for exported metrics, specify 'extensive' to include histogram metrics.
    #[arg(long, default_value = "basic")]
    pub(super) metrics: String,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, default_value = "", value_parser = urls)]
    pub(super) listen_metrics_urls: Urls,
    /// Enable GRPC gateway.
    #[arg(long, default_value = "true")]
    pub(super) enable_grpc_gateway: bool,

    // Logging
    /// Specify 'zap' for structured logging or 'capnslog'.
    #[arg(long, default_value = "capnslog")]
    pub(super) logger: String,
    /// Deprecated: use --log-outputs.
    #[arg(long, default_value = "default", hide = true)]
    pub(super) log_output: String,
    /// Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.
    #[arg(long, default_value = "default")]
    pub(super) log_outputs: String,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, default_value = "info")]
    pub(super) log_level: String,
    /// Enable debug-level logging (deprecated: use --log-level=debug).
    #[arg(long)]
    pub(super) debug: bool,
    /// Specify a particular log level for each etcd package (deprecated).
    #[arg(long, default_value = "")]
    pub(super) log_package_levels: String,

    // v2 proxy
    /// Proxy mode setting ('off', 'readonly' or 'on').
    #[arg(long, default_value = "off", value_parser = ["off", "readonly", "on"])]
    pub(super) proxy: String,
    /// Time (in milliseconds) an endpoint will be held in a failed state.
    #[arg(long, default_value = "5000", value_parser = go_u64)]
    pub(super) proxy_failure_wait: u64,
    /// Time (in milliseconds) of the endpoints refresh interval.
    #[arg(long, default_value = "30000", value_parser = go_u64)]
    pub(super) proxy_refresh_interval: u64,
    /// Time (in milliseconds) for a dial to timeout.
    #[arg(long, default_value = "1000", value_parser = go_u64)]
    pub(super) proxy_dial_timeout: u64,
    /// Time (in milliseconds) for a write to timeout.
    #[arg(long, default_value = "5000", value_parser = go_u64)]
    pub(super) proxy_write_timeout: u64,
    /// Time (in milliseconds) for a read to timeout.
    #[arg(long, default_value = "0", value_parser = go_u64)]
    pub(super) proxy_read_timeout: u64,

    // Experimental
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long)]
    pub(super) experimental_initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    pub(super) experimental_corrupt_check_time: Duration,
    /// Serve v2 requests through the v3 backend under a given prefix.
    #[arg(long, default_value = "")]
    pub(super) experimental_enable_v2v3: String,
    /// The type of freelist that the backend uses (array and map are supported types).
    #[arg(long, default_value = "array")]
    pub(super) experimental_backend_bbolt_freelist_type: String,
    /// Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change.
    #[arg(long)]
    pub(super) experimental_enable_lease_checkpoint: bool,
    /// Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases.
    #[arg(long)]
    pub(super) experimental_enable_lease_checkpoint_persist: bool,
    /// Sets the maximum revisions deleted in each compaction batch.
    #[arg(long, default_value = "1000", value_parser = go_i64)]
    pub(super) experimental_compaction_batch_limit: i64,
    /// Duration of periodical watch progress notification.
    #[arg(long, default_value = "10m", value_parser = go_duration)]
    pub(super) experimental_watch_progress_notify_interval: Duration,
    /// Warning is generated if requests take more than this duration.
    #[arg(long, default_value = "100ms", value_parser = go_duration)]
    pub(super) experimental_warning_apply_duration: Duration,

    // hub's own
    /// The etcd release hub reports (Status, /version, etcd_server_version; the cluster version is its major.minor): 3.6.16, an earlier 3.6 patch release, or 3.4.23 to 3.4.31 for clients that must see etcd 3.4.
    #[arg(long, default_value = hub_etcdserver::version::ETCD_VERSION)]
    pub(super) report_etcd_version: String,

    // Unsafe
    /// Disables fsync, unsafe, will cause data loss.
    #[arg(long)]
    pub(super) unsafe_no_fsync: bool,
    /// Force to create a new one-member cluster.
    #[arg(long)]
    pub(super) force_new_cluster: bool,

    /// Operands, which etcd rejects.
    #[arg(hide = true)]
    pub(super) extra: Vec<String>,

    #[command(flatten)]
    pub(super) v36: Flags36,
}

/// The clap command: [`Flags`], with Go-style booleans and etcd's obsolete
/// flags added.
pub(super) fn command() -> Command {
    let cmd = Flags::command().mut_args(|arg| {
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            let arg = if arg.get_default_values().is_empty() {
                arg.default_value("false")
            } else {
                arg
            };
            go_bool_flag(arg.value_parser(go_bool))
        } else {
            arg
        }
    });
    cmd.args(
        IGNORED.iter().map(|&name| {
            go_bool_flag(Arg::new(name).long(name).hide(true)).default_missing_value("")
        }),
    )
}

/// A flag that is given alone (meaning true) or as `--flag=value`.
pub(super) fn go_bool_flag(arg: Arg) -> Arg {
    arg.action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
}

pub(super) fn long_names(cmd: &Command) -> impl Iterator<Item = (&Arg, &str)> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(|l| (a, l)))
}
