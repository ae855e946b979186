//! hubd's configuration: every command-line flag of etcd 3.4.23, under the
//! same name and with the same default, and the `ETCD_*` environment
//! variable that etcd reads for each of them (`--foo-bar` ↔ `ETCD_FOO_BAR`),
//! plus etcd's `--config-file` YAML.
//!
//! Parsing the configuration is the first thing hubd does: [`parse`] turns
//! argv and the environment into a [`Config`], and nothing else in the server
//! looks at flags or `ETCD_*` variables.
//!
//! What this module reproduces from etcd (read from its Go source, and checked
//! against `etcd` itself):
//! - Go `flag` syntax: `--flag value`, `--flag=value`, single-dash `-flag`;
//!   boolean flags are `--flag` or `--flag=true|false` (never `--flag false`,
//!   where `false` would be a stray argument); the last repetition wins.
//! - Go number (`0x10`, `1_000` after a base prefix) and duration (`1h30m`,
//!   `200ms`) syntax, and etcd's messages, e.g.
//!   `invalid value "x" for flag -initial-cluster-state: invalid value`.
//! - Environment: a variable is used only when its flag is not on the command
//!   line and its value is not empty; a variable shadowed by its flag is an
//!   error, and unknown `ETCD_*` variables are reported in [`Config::warnings`].
//! - `--config-file`: the YAML file replaces every other flag and variable.
//! - etcd's checks on the result (bind URLs must be IPs or `localhost`,
//!   `--advertise-client-urls` is required with `--listen-client-urls`, the
//!   election timeout must be at least five heartbeats, ...) and its derived
//!   defaults (`--name n1` alone gives the initial cluster `n1=<peer URLs>`).
//!
//! Differences from etcd: the default data directory is `${name}.hub`; the
//! help text is clap's; `--version` prints hub's version.
//!
//! Every flag is accepted, but hub implements only some of them: the others
//! that the user set are listed in [`Config::unhonoured`] for hubd to warn
//! about.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};

/// The etcd API version hubd serves.
pub const API_VERSION: &str = "3.4";

/// Prefix of the environment variable of each flag.
const ENV_PREFIX: &str = "ETCD_";

/// Flags that hub implements; every other flag the user sets is reported in
/// [`Config::unhonoured`].
const HONOURED: &[&str] = &[
    "experimental-peer-skip-client-san-verification",
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
    "heartbeat-interval",
    "election-timeout",
    "log-level",
    "logger",
    "log-outputs",
    "log-output", // deprecated spelling of log-outputs
    "debug",
    "experimental-watch-progress-notify-interval",
    "experimental-initial-corrupt-check",
    "experimental-corrupt-check-time",
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
const IGNORED: &[&str] = &[
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

const DEFAULT_NAME: &str = "default";
const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";
/// etcd's limit on `--election-timeout`, in milliseconds.
const MAX_ELECTION_MS: u64 = 50_000;
/// What etcd does with a watch progress interval of 0, and its floor.
const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
const MIN_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);
const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];

const AFTER_HELP: &str = "\
Every flag --foo-bar can also be set through the environment variable ETCD_FOO_BAR
(empty values are ignored; setting both a flag and its variable is an error).
Flags take '--flag value', '--flag=value' or '-flag value'; boolean flags take
'--flag' or '--flag=true|false'. With --config-file, all other flags and ETCD_*
variables are ignored.";

/// The configuration of one hub member, as hubd uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub name: String,
    /// `--data-dir`, or `<name>.hub` when unset or empty.
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    /// URLs as given (trimmed, scheme lower-cased), sorted and deduplicated as
    /// etcd does. Listen URLs have an IP or `localhost` host (or a unix scheme).
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `(name, peer URL)` pairs in the given order; a member with several peer
    /// URLs appears once per URL. Empty when bootstrapping by discovery.
    pub initial_cluster: Vec<(String, String)>,
    /// `"new"` or `"existing"`.
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    pub quota_backend_bytes: i64,
    /// `--experimental-initial-corrupt-check`, `--experimental-corrupt-check-time` (zero: off).
    pub experimental_initial_corrupt_check: bool,
    pub experimental_corrupt_check_time: Duration,
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// `"periodic"`, `"revision"` or `""`.
    pub auto_compaction_mode: String,
    /// As given; checked to parse the way etcd parses it for the mode
    /// (hours or a Go duration for periodic, a count for revision).
    pub auto_compaction_retention: String,
    /// One of debug, info, warn, error, dpanic, panic, fatal; `--debug` makes it debug.
    pub log_level: String,
    /// `--logger`: `"capnslog"` (etcd 3.4's default) or `"zap"`.
    pub logger: String,
    /// `--log-outputs` (or the deprecated `--log-output`), deduplicated and sorted.
    pub log_outputs: Vec<String>,
    pub enable_pprof: bool,
    /// `--auth-token`: `simple`, or `jwt,` and its options.
    pub auth_token: String,
    /// `--bcrypt-cost`; outside bcrypt's 4 to 31, etcd's default 10.
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`: how long a simple token lives unused.
    pub auth_token_ttl: Duration,
    /// `--max-concurrent-streams`: per client connection (and the JSON gateway's calls).
    pub max_concurrent_streams: u32,
    /// `--report-etcd-version` (hub's own flag): the etcd release hub reports.
    pub report_etcd_version: String,
    /// `--listen-metrics-urls`: extra listeners serving `/metrics` and `/health`.
    pub listen_metrics_urls: Vec<String>,
    /// `--metrics extensive` (anything else is basic, as in etcd).
    pub metrics_extensive: bool,
    /// The interval etcd would use: 0 means its default of 10 minutes, and
    /// anything shorter than 100ms is raised to 100ms.
    pub experimental_watch_progress_notify_interval: Duration,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    pub peer_trusted_ca_file: Option<PathBuf>,
    pub peer_client_cert_auth: bool,
    pub peer_auto_tls: bool,
    pub client_crl_file: Option<PathBuf>,
    pub client_cert_allowed_hostname: Option<String>,
    pub peer_crl_file: Option<PathBuf>,
    pub peer_cert_allowed_cn: Option<String>,
    pub peer_cert_allowed_hostname: Option<String>,
    /// `--experimental-peer-skip-client-san-verification`.
    pub peer_skip_client_san_verification: bool,
    /// `--cipher-suites`, Go's names in the order given.
    pub cipher_suites: Vec<String>,
    /// The YAML file the configuration came from, if any.
    pub config_file: Option<PathBuf>,
    /// Names (without dashes) of flags the user set, on the command line, in
    /// the environment or in the config file, that hub does not implement.
    pub unhonoured: Vec<String>,
    /// Notices etcd would log while parsing: unrecognised `ETCD_*` variables,
    /// obsolete flags, unknown config-file keys. hubd should log each one.
    pub warnings: Vec<String>,
}

/// Why no [`Config`] could be made. [`ConfigError::exit`] reports it the way
/// etcd does and ends the process.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap's own outcome: `--help` (exit code 0), an unknown flag, a missing
    /// value, ... `e.exit()` prints it and exits.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// `--version` was given: the text to print on stdout before exiting 0.
    #[error("{0}")]
    Version(String),
    /// A value its flag cannot take; `origin` is `flag -name`, the variable
    /// `ETCD_NAME` or a config-file key.
    #[error("invalid value \"{value}\" for {origin}: {reason}")]
    InvalidValue {
        value: String,
        origin: String,
        reason: String,
    },
    /// A boolean flag given something other than Go's true/false spellings.
    #[error("invalid boolean value \"{value}\" for -{flag}: {reason}")]
    InvalidBool {
        value: String,
        flag: String,
        reason: String,
    },
    /// A flag etcd does not have.
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    /// A non-boolean flag at the end of the command line.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// A command-line argument that is not a flag (etcd takes no operands).
    #[error("'{0}' is not a valid flag")]
    NotAFlag(String),
    #[error(
        "conflicting environment variable \"{0}\" is shadowed by corresponding command-line flag \
         (either unset environment variable or disable flag)"
    )]
    ShadowedEnv(String),
    #[error("cannot load configuration file {path}: {reason}")]
    ConfigFile { path: PathBuf, reason: String },
    /// The flags parse but do not make a valid configuration.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// The exit status etcd uses: 0 for help and version, 2 for a command
    /// line it cannot parse, 1 for a configuration it rejects.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Clap(e) => e.exit_code(),
            ConfigError::Version(_) => 0,
            ConfigError::InvalidValue { .. }
            | ConfigError::InvalidBool { .. }
            | ConfigError::UnknownFlag(_)
            | ConfigError::MissingValue(_) => 2,
            _ => 1,
        }
    }

    /// Prints the error (or the help or version) where etcd would, and exits
    /// with [`ConfigError::exit_code`].
    pub fn exit(&self) -> ! {
        match self {
            ConfigError::Clap(e) => e.exit(),
            ConfigError::Version(text) => {
                print!("{text}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            }
            e if e.exit_code() == 2 => eprintln!("{e}\nSee 'hubd --help'."),
            e => eprintln!("hubd: error verifying flags, {e}. See 'hubd --help'."),
        }
        std::process::exit(self.exit_code())
    }
}

/// Parses the process's arguments and environment.
pub fn parse() -> Result<Config, ConfigError> {
    parse_from(std::env::args_os())
}

/// Parses `args` (the first one is the program name) with the process's
/// environment. Never prints or exits: `--help`, `--version` and errors come
/// back as [`ConfigError`]s (see [`ConfigError::exit`]).
pub fn parse_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_from_env(args, std::env::vars_os())
}

/// [`parse_from`] with the environment given as `(name, value)` pairs instead
/// of read from the process.
pub fn parse_from_env<I, T, E, K, V>(args: I, env: E) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
    E: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let cmd = command();
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let env: Vec<(OsString, OsString)> =
        env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let argv = normalize_args(&cmd, &args)?;

    // Like etcd: the command line alone decides about --help, --version,
    // stray arguments and --config-file; the environment comes after.
    let (flags, matches) = run_clap(&cmd, argv.clone(), &Origin::CommandLine)?;
    if let Some(arg) = flags.extra.first() {
        return Err(ConfigError::NotAFlag(arg.clone()));
    }
    if flags.version {
        return Err(ConfigError::Version(format!(
            "hubd Version: {}\nAPI Version: {API_VERSION}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let mut warnings = Vec::new();
    let config_file = Some(flags.config_file.clone())
        .filter(|f| !f.is_empty())
        .or_else(|| env_value(&env, &env_name("config-file")).filter(|v| !v.is_empty()));
    if let Some(path) = config_file {
        let path = PathBuf::from(path);
        let file_args = config_file_args(&cmd, &path, &mut warnings)?;
        let mut argv = vec![OsString::from("hubd")];
        argv.extend(file_args);
        let (flags, matches) = run_clap(&cmd, argv, &Origin::File(&path))?;
        return finish(&cmd, flags, &matches, Some(path), warnings);
    }

    let (env_args, from_env) = env_args(&cmd, &matches, &env, &mut warnings)?;
    if env_args.is_empty() {
        return finish(&cmd, flags, &matches, None, warnings);
    }
    let mut full = vec![argv[0].clone()];
    full.extend(env_args);
    full.extend(argv.into_iter().skip(1));
    let (flags, matches) = run_clap(&cmd, full, &Origin::Env(&from_env))?;
    finish(&cmd, flags, &matches, None, warnings)
}

/// Every flag of etcd 3.4.23, with etcd's default. Booleans become Go-style
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
struct Flags {
    /// Path to the server configuration file (YAML with etcd's keys); other command line flags and environment variables are then ignored.
    #[arg(long, default_value = "")]
    config_file: String,
    /// Print the version and exit.
    #[arg(long)]
    version: bool,

    // Member
    /// Human-readable name for this member.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// Path to the data directory [default: ${name}.hub].
    #[arg(long, default_value = "", hide_default_value = true)]
    data_dir: String,
    /// Path to the dedicated wal directory.
    #[arg(long, default_value = "")]
    wal_dir: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value = "100000", value_parser = go_u64)]
    snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value = "100", value_parser = go_u64)]
    heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value = "1000", value_parser = go_u64)]
    election_timeout: u64,
    /// Whether to fast-forward initial election ticks on boot for faster election.
    #[arg(long, default_value = "true")]
    initial_election_tick_advance: bool,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380", value_parser = urls)]
    listen_peer_urls: Urls,
    /// List of URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379", value_parser = urls)]
    listen_client_urls: Urls,
    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, default_value = "5", value_parser = go_u64)]
    max_snapshots: u64,
    /// Maximum number of wal files to retain (0 is unlimited).
    #[arg(long, default_value = "5", value_parser = go_u64)]
    max_wals: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, default_value = "0", value_parser = go_i64)]
    quota_backend_bytes: i64,
    /// Maximum time before committing the backend transaction.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    backend_batch_interval: Duration,
    /// Maximum operations before committing the backend transaction.
    #[arg(long, default_value = "0", value_parser = go_i64)]
    backend_batch_limit: i64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value = "128", value_parser = go_u64)]
    max_txn_ops: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value = "1572864", value_parser = go_u64)]
    max_request_bytes: u64,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, default_value = "4294967295", value_parser = go_u32)]
    max_concurrent_streams: u32,
    /// Minimum duration interval that a client should wait before pinging server.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    grpc_keepalive_min_time: Duration,
    /// Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).
    #[arg(long, default_value = "2h", value_parser = go_duration)]
    grpc_keepalive_interval: Duration,
    /// Additional duration of wait before closing a non-responsive connection (0 to disable).
    #[arg(long, default_value = "20s", value_parser = go_duration)]
    grpc_keepalive_timeout: Duration,

    // Clustering
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_parser = urls)]
    initial_advertise_peer_urls: Urls,
    /// Initial cluster configuration for bootstrapping.
    #[arg(long, default_value = DEFAULT_INITIAL_CLUSTER)]
    initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, default_value = "http://localhost:2379", value_parser = urls)]
    advertise_client_urls: Urls,
    /// Discovery URL used to bootstrap the cluster.
    #[arg(long, default_value = "")]
    discovery: String,
    /// Expected behavior ('exit' or 'proxy') when discovery services fails.
    #[arg(long, default_value = "proxy", value_parser = ["exit", "proxy"])]
    discovery_fallback: String,
    /// HTTP proxy to use for traffic to discovery service.
    #[arg(long, default_value = "")]
    discovery_proxy: String,
    /// DNS srv domain used to bootstrap the cluster.
    #[arg(long, default_value = "")]
    discovery_srv: String,
    /// Suffix to the dns srv name queried when bootstrapping.
    #[arg(long, default_value = "")]
    discovery_srv_name: String,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, default_value = "true")]
    strict_reconfig_check: bool,
    /// Enable to run an additional Raft election phase.
    #[arg(long)]
    pre_vote: bool,
    /// Auto compaction retention length. 0 means disable auto compaction.
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// Accept etcd V2 client requests.
    #[arg(long)]
    enable_v2: bool,

    // Security
    /// Path to the client server TLS cert file.
    #[arg(long, default_value = "")]
    cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, default_value = "")]
    key_file: String,
    /// Enable client cert authentication.
    #[arg(long)]
    client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, default_value = "")]
    client_crl_file: String,
    /// Allowed TLS hostname for client cert authentication.
    #[arg(long, default_value = "")]
    client_cert_allowed_hostname: String,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, default_value = "")]
    trusted_ca_file: String,
    /// Client TLS using generated certificates.
    #[arg(long)]
    auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, default_value = "")]
    peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, default_value = "")]
    peer_key_file: String,
    /// Enable peer client cert authentication.
    #[arg(long)]
    peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, default_value = "")]
    peer_trusted_ca_file: String,
    /// Required CN for client certs connecting to the peer endpoint.
    #[arg(long, default_value = "")]
    peer_cert_allowed_cn: String,
    /// Allowed TLS hostname for inter peer authentication.
    #[arg(long, default_value = "")]
    peer_cert_allowed_hostname: String,
    /// Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.
    #[arg(long)]
    peer_auto_tls: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long, default_value = "")]
    peer_crl_file: String,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers.
    #[arg(long, default_value = "")]
    cipher_suites: String,
    /// Skip verification of SAN field in client certificate for peer connections.
    #[arg(long)]
    experimental_peer_skip_client_san_verification: bool,
    /// Comma-separated whitelist of origins for CORS (empty or * means allow all).
    #[arg(long, default_value = "*", value_parser = cors_urls)]
    cors: Urls,
    /// Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).
    #[arg(long, default_value = "*")]
    host_whitelist: String,

    // Auth
    /// Specify a v3 authentication token type and its options ('simple' or 'jwt').
    #[arg(long, default_value = "simple")]
    auth_token: String,
    /// Specify the cost / strength of the bcrypt algorithm for hashing auth passwords (4 to 31).
    #[arg(long, default_value = "10", value_parser = go_u64)]
    bcrypt_cost: u64,
    /// Time (in seconds) of the auth-token-ttl.
    #[arg(long, default_value = "300", value_parser = go_u64)]
    auth_token_ttl: u64,

    // Profiling and monitoring
    /// Enable runtime profiling data via HTTP server at client URL + "/debug/pprof/".
    #[arg(long)]
    enable_pprof: bool,
    /// Set level of detail for exported metrics, specify 'extensive' to include histogram metrics.
    #[arg(long, default_value = "basic")]
    metrics: String,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, default_value = "", value_parser = urls)]
    listen_metrics_urls: Urls,
    /// Enable GRPC gateway.
    #[arg(long, default_value = "true")]
    enable_grpc_gateway: bool,

    // Logging
    /// Specify 'zap' for structured logging or 'capnslog'.
    #[arg(long, default_value = "capnslog")]
    logger: String,
    /// Deprecated: use --log-outputs.
    #[arg(long, default_value = "default", hide = true)]
    log_output: String,
    /// Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.
    #[arg(long, default_value = "default")]
    log_outputs: String,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Enable debug-level logging (deprecated: use --log-level=debug).
    #[arg(long)]
    debug: bool,
    /// Specify a particular log level for each etcd package (deprecated).
    #[arg(long, default_value = "")]
    log_package_levels: String,

    // v2 proxy
    /// Proxy mode setting ('off', 'readonly' or 'on').
    #[arg(long, default_value = "off", value_parser = ["off", "readonly", "on"])]
    proxy: String,
    /// Time (in milliseconds) an endpoint will be held in a failed state.
    #[arg(long, default_value = "5000", value_parser = go_u64)]
    proxy_failure_wait: u64,
    /// Time (in milliseconds) of the endpoints refresh interval.
    #[arg(long, default_value = "30000", value_parser = go_u64)]
    proxy_refresh_interval: u64,
    /// Time (in milliseconds) for a dial to timeout.
    #[arg(long, default_value = "1000", value_parser = go_u64)]
    proxy_dial_timeout: u64,
    /// Time (in milliseconds) for a write to timeout.
    #[arg(long, default_value = "5000", value_parser = go_u64)]
    proxy_write_timeout: u64,
    /// Time (in milliseconds) for a read to timeout.
    #[arg(long, default_value = "0", value_parser = go_u64)]
    proxy_read_timeout: u64,

    // Experimental
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long)]
    experimental_initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    experimental_corrupt_check_time: Duration,
    /// Serve v2 requests through the v3 backend under a given prefix.
    #[arg(long, default_value = "")]
    experimental_enable_v2v3: String,
    /// The type of freelist that the backend uses (array and map are supported types).
    #[arg(long, default_value = "array")]
    experimental_backend_bbolt_freelist_type: String,
    /// Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change.
    #[arg(long)]
    experimental_enable_lease_checkpoint: bool,
    /// Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases.
    #[arg(long)]
    experimental_enable_lease_checkpoint_persist: bool,
    /// Sets the maximum revisions deleted in each compaction batch.
    #[arg(long, default_value = "1000", value_parser = go_i64)]
    experimental_compaction_batch_limit: i64,
    /// Duration of periodical watch progress notification.
    #[arg(long, default_value = "10m", value_parser = go_duration)]
    experimental_watch_progress_notify_interval: Duration,
    /// Warning is generated if requests take more than this duration.
    #[arg(long, default_value = "100ms", value_parser = go_duration)]
    experimental_warning_apply_duration: Duration,

    // hub's own
    /// The etcd version hub reports (Status, /version, etcd_server_version): 3.4.23, or a later 3.4 patch release up to 3.4.31 whose behaviour hub has.
    #[arg(long, default_value = hub_grpc_api::maintenance::ETCD_VERSION)]
    report_etcd_version: String,

    // Unsafe
    /// Disables fsync, unsafe, will cause data loss.
    #[arg(long)]
    unsafe_no_fsync: bool,
    /// Force to create a new one-member cluster.
    #[arg(long)]
    force_new_cluster: bool,

    /// Operands, which etcd rejects.
    #[arg(hide = true)]
    extra: Vec<String>,
}

/// `--report-etcd-version` names a 3.4 patch release from the reference
/// (3.4.23) to the newest whose behaviour hub has.
fn check_report_etcd_version(version: &str) -> Result<(), String> {
    use hub_grpc_api::maintenance::{ETCD_VERSION, NEWEST_ETCD_VERSION};
    let patch = |v: &str| v.strip_prefix("3.4.").and_then(|p| p.parse::<u32>().ok());
    match (patch(version), patch(ETCD_VERSION), patch(NEWEST_ETCD_VERSION)) {
        (Some(p), Some(oldest), Some(newest)) if (oldest..=newest).contains(&p) && version == format!("3.4.{p}") => Ok(()),
        _ => Err(format!(
            "--report-etcd-version {version:?} must be a release from {ETCD_VERSION} to {NEWEST_ETCD_VERSION}"
        )),
    }
}

/// A comma-separated URL list, checked as etcd checks it.
#[derive(Debug, Clone, Default)]
struct Urls(Vec<String>);

/// The clap command: [`Flags`], with Go-style booleans and etcd's obsolete
/// flags added.
fn command() -> Command {
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
fn go_bool_flag(arg: Arg) -> Arg {
    arg.action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
}

/// True for flags that take their value as the next argument.
fn takes_separate_value(arg: &Arg) -> bool {
    arg.get_long().is_some() && !arg.is_require_equals_set()
}

fn long_names(cmd: &Command) -> impl Iterator<Item = (&Arg, &str)> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(|l| (a, l)))
}

/// The environment variable etcd reads for `flag`.
fn env_name(flag: &str) -> String {
    format!("{ENV_PREFIX}{}", flag.to_uppercase().replace('-', "_"))
}

fn env_value(env: &[(OsString, OsString)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string_lossy().into_owned())
}

/// Rewrites Go `flag` syntax into what clap parses: `-flag` becomes `--flag`
/// (so `-x` is the unknown flag `x`, not clap's short `x`), `-h`/`-help`
/// become `--help`, and a non-boolean flag and its separate value become
/// `--flag=value` (so values may start with `-`, as in Go). Like Go,
/// rewriting stops at the first operand or at `--`.
fn normalize_args(cmd: &Command, args: &[OsString]) -> Result<Vec<OsString>, ConfigError> {
    let known: HashMap<&str, bool> = long_names(cmd)
        .map(|(a, l)| (l, takes_separate_value(a)))
        .collect();
    let mut out = Vec::with_capacity(args.len());
    out.push(
        args.first()
            .cloned()
            .unwrap_or_else(|| OsString::from("hubd")),
    );
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        let body = match text.strip_prefix("--").or_else(|| text.strip_prefix('-')) {
            Some(body) if !body.is_empty() && !body.starts_with('-') => body,
            _ => {
                // An operand, "-", "--" or "---x": Go stops parsing flags here.
                out.push(arg.clone());
                out.extend(rest.cloned());
                break;
            }
        };
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            out.push(OsString::from("--help"));
            continue;
        }
        match known.get(name) {
            Some(true) if value.is_none() => {
                let next = rest
                    .next()
                    .ok_or_else(|| ConfigError::MissingValue(name.to_string()))?;
                let mut joined = OsString::from(format!("--{name}="));
                joined.push(next);
                out.push(joined);
            }
            _ => out.push(OsString::from(format!("--{body}"))),
        }
    }
    Ok(out)
}

/// Where the values of one clap run came from, to word errors as etcd does.
enum Origin<'a> {
    CommandLine,
    /// The command line plus variables; the set holds the flags set from the environment.
    Env(&'a HashSet<String>),
    File(&'a Path),
}

fn run_clap(
    cmd: &Command,
    argv: Vec<OsString>,
    origin: &Origin,
) -> Result<(Flags, ArgMatches), ConfigError> {
    let matches = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| clap_error(e, origin))?;
    let flags = Flags::from_arg_matches(&matches)?;
    Ok((flags, matches))
}

/// Turns clap's complaint about a value into etcd's wording.
fn clap_error(e: clap::Error, origin: &Origin) -> ConfigError {
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            let suggestion = match e.get(ContextKind::SuggestedArg) {
                Some(ContextValue::String(s)) => format!(" (did you mean {s}?)"),
                _ => String::new(),
            };
            return ConfigError::UnknownFlag(format!("{}{suggestion}", flag_of_arg_display(arg)));
        }
    }
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return ConfigError::Clap(e);
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return ConfigError::Clap(e);
    };
    let flag = flag_of_arg_display(arg);
    let value = value.clone();
    let mut reason = std::error::Error::source(&e)
        .map_or_else(|| "invalid value".to_string(), |s| s.to_string());
    let boolean = reason == GO_BOOL_ERROR_MARK;
    if boolean {
        reason = PARSE_ERROR.to_string();
    }
    match origin {
        Origin::Env(from_env) if from_env.contains(&flag) => ConfigError::InvalidValue {
            value,
            origin: env_name(&flag),
            reason,
        },
        Origin::File(path) => ConfigError::InvalidValue {
            value,
            origin: format!("\"{flag}\" in {}", path.display()),
            reason,
        },
        _ if boolean => ConfigError::InvalidBool {
            value,
            flag,
            reason,
        },
        _ => ConfigError::InvalidValue {
            value,
            origin: format!("flag -{flag}"),
            reason,
        },
    }
}

/// `--name <NAME>` or `--debug[=<DEBUG>]` → `name` / `debug`.
fn flag_of_arg_display(display: &str) -> String {
    display
        .trim_start_matches('-')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

/// The `--flag=value` arguments that the environment adds to the command
/// line, the flags they set, and etcd's checks: a variable may not shadow a
/// flag given on the command line, and unknown `ETCD_*` variables are noted.
fn env_args(
    cmd: &Command,
    cmdline: &ArgMatches,
    env: &[(OsString, OsString)],
    warnings: &mut Vec<String>,
) -> Result<(Vec<OsString>, HashSet<String>), ConfigError> {
    let by_env: HashMap<String, (&Arg, &str)> = long_names(cmd)
        .map(|(a, l)| (env_name(l), (a, l)))
        .collect();
    let mut args = Vec::new();
    let mut from_env = HashSet::new();
    for (key, value) in env {
        let key_text = key.to_string_lossy();
        let Some(&(arg, long)) = by_env.get(key_text.as_ref()) else {
            if key_text.starts_with(ENV_PREFIX) {
                warnings.push(format!(
                    "unrecognized environment variable {key_text}={}",
                    value.to_string_lossy()
                ));
            }
            continue;
        };
        if matches!(long, "config-file" | "version") {
            continue; // read before the environment, as etcd does
        }
        if cmdline.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            return Err(ConfigError::ShadowedEnv(key_text.into_owned()));
        }
        if value.is_empty() || !from_env.insert(long.to_string()) {
            continue;
        }
        let mut flag = OsString::from(format!("--{long}="));
        flag.push(value);
        args.push(flag);
    }
    Ok((args, from_env))
}

/// Reads etcd's YAML configuration file into `--key=value` arguments. Keys are
/// flag names, except that TLS settings sit under `client-transport-security`
/// and `peer-transport-security`; lists may be YAML sequences; durations are
/// integers of nanoseconds (Go's encoding) or Go duration strings.
fn config_file_args(
    cmd: &Command,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<OsString>, ConfigError> {
    let file_error = |reason: String| ConfigError::ConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let entries = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(file_error(
                "not a mapping of flag names to values".to_string(),
            ))
        }
    };
    let args: HashMap<&str, &Arg> = long_names(cmd).map(|(a, l)| (l, a)).collect();
    let mut out = Vec::new();
    let mut add = |key: String,
                   value: &serde_yaml::Value,
                   warnings: &mut Vec<String>|
     -> Result<(), ConfigError> {
        let Some(arg) = args
            .get(key.as_str())
            .filter(|_| !matches!(key.as_str(), "config-file" | "version"))
        else {
            warnings.push(format!(
                "unknown key \"{key}\" in {} ignored",
                path.display()
            ));
            return Ok(());
        };
        let is_duration = arg.get_value_parser().type_id() == std::any::TypeId::of::<Duration>();
        if let Some(value) = yaml_flag_value(value, is_duration)
            .map_err(|r| file_error(format!("\"{key}\": {r}")))?
        {
            out.push(OsString::from(format!("--{key}={value}")));
        }
        Ok(())
    };
    for (key, value) in &entries {
        let key = yaml_scalar(key).ok_or_else(|| file_error("keys must be strings".to_string()))?;
        let prefix = match key.as_str() {
            "client-transport-security" => "",
            "peer-transport-security" => "peer-",
            _ => {
                add(key, value, warnings)?;
                continue;
            }
        };
        let serde_yaml::Value::Mapping(tls) = value else {
            if !value.is_null() {
                return Err(file_error(format!("\"{key}\" must be a mapping")));
            }
            continue;
        };
        for (tls_key, tls_value) in tls {
            let tls_key = yaml_scalar(tls_key).unwrap_or_default();
            if TLS_KEYS.contains(&tls_key.as_str()) {
                add(format!("{prefix}{tls_key}"), tls_value, warnings)?;
            } else {
                warnings.push(format!(
                    "unknown key \"{key}.{tls_key}\" in {} ignored",
                    path.display()
                ));
            }
        }
    }
    Ok(out)
}

/// The keys of etcd's `*-transport-security` YAML sections.
const TLS_KEYS: &[&str] = &[
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "auto-tls",
];

/// A YAML value as the text of a flag value; `None` for null.
fn yaml_flag_value(value: &serde_yaml::Value, is_duration: bool) -> Result<Option<String>, String> {
    use serde_yaml::Value;
    Ok(match value {
        Value::Null => None,
        Value::Number(n) if is_duration && (n.is_i64() || n.is_u64()) => Some(format!("{n}ns")),
        Value::Sequence(items) => {
            let items: Option<Vec<String>> = items.iter().map(yaml_scalar).collect();
            Some(items.ok_or("list items must be scalars")?.join(","))
        }
        other => Some(yaml_scalar(other).ok_or("must be a scalar or a list")?),
    })
}

fn yaml_scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Builds the [`Config`] from parsed flags, with etcd's checks and derived
/// defaults.
fn finish(
    cmd: &Command,
    f: Flags,
    m: &ArgMatches,
    config_file: Option<PathBuf>,
    mut warnings: Vec<String>,
) -> Result<Config, ConfigError> {
    // Flags the user gave (on the command line, in the environment or in
    // the config file: all of them reach clap as command-line arguments).
    let explicit: Vec<&str> = long_names(cmd)
        .filter(|(arg, _)| m.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|(_, long)| long)
        .collect();
    let is_set = |flag: &str| explicit.contains(&flag);
    let mut unhonoured = Vec::new();
    for &long in &explicit {
        if IGNORED.contains(&long) {
            warnings.push(format!(
                "flag \"-{long}\" is no longer supported - ignoring."
            ));
        } else if !HONOURED.contains(&long) {
            unhonoured.push(long.to_string());
        }
    }
    let invalid = ConfigError::Invalid;

    // Logging (etcd checks it first).
    if !matches!(f.logger.as_str(), "capnslog" | "zap") {
        return Err(invalid(format!("unknown logger option {:?}", f.logger)));
    }
    if !LOG_LEVELS.contains(&f.log_level.as_str()) {
        return Err(invalid(format!("unknown level {:?}", f.log_level)));
    }
    let outputs = if is_set("log-output") && !is_set("log-outputs") {
        &f.log_output
    } else {
        &f.log_outputs
    };
    let log_outputs = sorted_unique(
        outputs
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    );
    if f.logger == "capnslog" && log_outputs.len() != 1 {
        return Err(invalid(format!(
            "--logger=capnslog supports only 1 value in '--log-outputs', got {log_outputs:?}"
        )));
    }

    // URLs: an empty value keeps etcd's default.
    let listen_peer_urls = or_default(f.listen_peer_urls, "http://localhost:2380");
    let listen_client_urls = or_default(f.listen_client_urls, "http://localhost:2379");
    let initial_advertise_peer_urls =
        or_default(f.initial_advertise_peer_urls, "http://localhost:2380");
    let advertise_client_urls = or_default(f.advertise_client_urls, "http://localhost:2379");
    for list in [
        &listen_peer_urls,
        &listen_client_urls,
        &f.listen_metrics_urls.0,
    ] {
        for url in list {
            check_bind_url(url).map_err(invalid)?;
        }
    }
    for (flag, list) in [
        ("initial-advertise-peer-urls", &initial_advertise_peer_urls),
        ("advertise-client-urls", &advertise_client_urls),
    ] {
        if let Some(err) = list.iter().find_map(|u| check_host_url(u).err()) {
            return Err(invalid(format!(
                "--{flag} {:?} must be \"host:port\" ({err})",
                list.join(",")
            )));
        }
    }

    // Bootstrapping: discovery replaces the default initial cluster.
    let discovery =
        !f.discovery.is_empty() || !f.discovery_srv.is_empty() || !f.discovery_srv_name.is_empty();
    let mut initial_cluster = f.initial_cluster.clone();
    if discovery && !is_set("initial-cluster") {
        initial_cluster.clear();
    }
    let bootstrap_flags = [&f.discovery, &initial_cluster, &f.discovery_srv];
    if bootstrap_flags.iter().filter(|s| !s.is_empty()).count() > 1 {
        return Err(invalid(
            "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\""
                .to_string(),
        ));
    }

    // Raft timing.
    let (tick, election) = (f.heartbeat_interval, f.election_timeout);
    if tick == 0 {
        return Err(invalid(format!(
            "--heartbeat-interval must be >0 (set to {tick}ms)"
        )));
    }
    if election == 0 {
        return Err(invalid(format!(
            "--election-timeout must be >0 (set to {election}ms)"
        )));
    }
    if tick.saturating_mul(5) > election {
        return Err(invalid(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{tick}ms]"
        )));
    }
    if election > MAX_ELECTION_MS {
        return Err(invalid(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        )));
    }

    // On the command line, listening on chosen client URLs requires saying
    // which to advertise (unless this member may act as a v2 proxy).
    let may_be_proxy =
        f.proxy != "off" || (!f.discovery.is_empty() && f.discovery_fallback == "proxy");
    if config_file.is_none()
        && is_set("listen-client-urls")
        && !is_set("advertise-client-urls")
        && !may_be_proxy
    {
        return Err(invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .to_string(),
        ));
    }

    // Compaction.
    match f.auto_compaction_mode.as_str() {
        "" | "periodic" | "revision" => {}
        mode => return Err(invalid(format!("unknown auto-compaction-mode {mode:?}"))),
    }
    let retention = &f.auto_compaction_retention;
    if !retention.parse::<i64>().is_ok_and(|hours| hours >= 0) {
        go_duration(retention)
            .map_err(|e| invalid(format!("error parsing CompactionRetention: {e}")))?;
    }

    if f.experimental_enable_lease_checkpoint_persist && !f.experimental_enable_lease_checkpoint {
        return Err(invalid(
            "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint".to_string(),
        ));
    }

    // What etcd's main derives: `--name n1` alone means a cluster of n1.
    if f.name != DEFAULT_NAME && initial_cluster == DEFAULT_INITIAL_CLUSTER {
        let name = if f.name.is_empty() {
            DEFAULT_NAME
        } else {
            f.name.as_str()
        };
        initial_cluster = initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{name}={u}"))
            .collect::<Vec<_>>()
            .join(",");
    }
    let initial_cluster = parse_initial_cluster(&initial_cluster)
        .map_err(|e| invalid(format!("error setting up initial cluster: {e}")))?;
    let data_dir = if f.data_dir.is_empty() {
        PathBuf::from(format!("{}.hub", f.name))
    } else {
        PathBuf::from(f.data_dir)
    };
    check_report_etcd_version(&f.report_etcd_version).map_err(invalid)?;
    let watch_interval = match f.experimental_watch_progress_notify_interval {
        Duration::ZERO => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
        d => d.max(MIN_WATCH_PROGRESS_NOTIFY_INTERVAL),
    };
    let path = |s: String| Some(PathBuf::from(s)).filter(|p| !p.as_os_str().is_empty());

    Ok(Config {
        name: f.name,
        data_dir,
        wal_dir: path(f.wal_dir),
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_state: f.initial_cluster_state,
        initial_cluster_token: f.initial_cluster_token,
        max_request_bytes: f.max_request_bytes,
        max_txn_ops: f.max_txn_ops,
        quota_backend_bytes: f.quota_backend_bytes,
        experimental_initial_corrupt_check: f.experimental_initial_corrupt_check,
        experimental_corrupt_check_time: f.experimental_corrupt_check_time,
        snapshot_count: f.snapshot_count,
        heartbeat_interval_ms: tick,
        election_timeout_ms: election,
        auto_compaction_mode: f.auto_compaction_mode,
        auto_compaction_retention: f.auto_compaction_retention,
        log_level: if f.debug {
            "debug".to_string()
        } else {
            f.log_level
        },
        logger: f.logger,
        log_outputs,
        enable_pprof: f.enable_pprof,
        auth_token: f.auth_token,
        bcrypt_cost: match u32::try_from(f.bcrypt_cost) {
            Ok(c @ 4..=31) => c,
            _ => {
                warnings.push(format!("use default bcrypt cost 10 instead of the invalid given cost {}", f.bcrypt_cost));
                10
            }
        },
        auth_token_ttl: Duration::from_secs(f.auth_token_ttl),
        listen_metrics_urls: f.listen_metrics_urls.0.clone(),
        metrics_extensive: f.metrics == "extensive",
        max_concurrent_streams: f.max_concurrent_streams,
        report_etcd_version: f.report_etcd_version,
        experimental_watch_progress_notify_interval: watch_interval,
        cert_file: path(f.cert_file),
        key_file: path(f.key_file),
        trusted_ca_file: path(f.trusted_ca_file),
        client_cert_auth: f.client_cert_auth,
        auto_tls: f.auto_tls,
        peer_cert_file: path(f.peer_cert_file),
        peer_key_file: path(f.peer_key_file),
        peer_trusted_ca_file: path(f.peer_trusted_ca_file),
        peer_client_cert_auth: f.peer_client_cert_auth,
        peer_auto_tls: f.peer_auto_tls,
        client_crl_file: path(f.client_crl_file),
        client_cert_allowed_hostname: Some(f.client_cert_allowed_hostname).filter(|s| !s.is_empty()),
        peer_crl_file: path(f.peer_crl_file),
        peer_cert_allowed_cn: Some(f.peer_cert_allowed_cn).filter(|s| !s.is_empty()),
        peer_cert_allowed_hostname: Some(f.peer_cert_allowed_hostname).filter(|s| !s.is_empty()),
        peer_skip_client_san_verification: f.experimental_peer_skip_client_san_verification,
        cipher_suites: f.cipher_suites.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        config_file,
        unhonoured,
        warnings,
    })
}

fn or_default(urls: Urls, default: &str) -> Vec<String> {
    if urls.0.is_empty() {
        vec![default.to_string()]
    } else {
        urls.0
    }
}

fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// `a=http://h:1,b=http://h:2` → pairs, each URL checked.
fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, url) = item.split_once('=').unwrap_or((item, ""));
            Ok((name.to_string(), check_url(url)?))
        })
        .collect()
}

// ---- value parsers: Go's syntax, etcd's messages ----

/// Go's `flag` package reports every malformed number, boolean and duration so.
const PARSE_ERROR: &str = "parse error";
/// [`go_bool`]'s error, so that [`clap_error`] can word it as Go does for booleans.
const GO_BOOL_ERROR_MARK: &str = "parse error (boolean)";

pub(crate) fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(GO_BOOL_ERROR_MARK.to_string()),
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: decimal, `0x`/`0o`/`0b`/leading-0
/// octal, underscores only after a base prefix.
fn go_u64(s: &str) -> Result<u64, String> {
    let (digits, radix) = if let Some(d) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (d, 16)
    } else if let Some(d) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (d, 8)
    } else if let Some(d) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (d, 2)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let digits = if radix == 10 {
        digits.to_string()
    } else {
        digits.replace('_', "")
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(PARSE_ERROR.to_string());
    }
    u64::from_str_radix(&digits, radix).map_err(|_| "value out of range".to_string())
}

fn go_u32(s: &str) -> Result<u32, String> {
    u32::try_from(go_u64(s)?).map_err(|_| "value out of range".to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn go_i64(s: &str) -> Result<i64, String> {
    let (negative, magnitude) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = i128::from(go_u64(magnitude)?);
    i64::try_from(if negative { -n } else { n }).map_err(|_| "value out of range".to_string())
}

/// A duration flag: Go's `time.ParseDuration` (`hub_go::duration`), with Go's
/// flag package's "parse error" for any refusal. Negative durations become
/// zero, which etcd treats alike.
pub(crate) fn go_duration(s: &str) -> Result<Duration, String> {
    let nanos = hub_go::duration::parse(s).map_err(|_| PARSE_ERROR.to_string())?;
    Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

fn urls(s: &str) -> Result<Urls, String> {
    if s.is_empty() {
        return Ok(Urls::default());
    }
    let list: Result<Vec<String>, String> = s.split(',').map(check_url).collect();
    Ok(Urls(sorted_unique(list?)))
}

fn cors_urls(s: &str) -> Result<Urls, String> {
    if s == "*" {
        Ok(Urls(vec!["*".to_string()]))
    } else {
        urls(s)
    }
}

/// Checks one URL as etcd's `types.NewURLs` does: scheme http, https, unix or
/// unixs, a `host:port` address, no path. Returns it trimmed, scheme lower-cased.
/// A unix URL may also name a socket by its path (`unix:///run/etcd.sock`), as
/// from etcd 3.5 on: Kubernetes' integration tests start etcd that way.
fn check_url(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let scheme_error = || format!("URL scheme must be http, https, unix, or unixs: {s}");
    let (scheme, rest) = s.split_once("://").ok_or_else(scheme_error)?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        return Err(scheme_error());
    }
    if scheme.starts_with("unix") && rest.starts_with('/') && rest.len() > 1 {
        return Ok(format!("{scheme}://{rest}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (_, port) = split_host_port(host_port)
        .ok_or_else(|| format!("URL address does not have the form \"host:port\": {s}"))?;
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("parse {s:?}: invalid port \":{port}\" after host"));
    }
    let path = tail.split(['?', '#']).next().unwrap_or("");
    if !path.is_empty() {
        return Err(format!("URL must not contain a path: {s}"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; the port may be empty.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = match s.strip_prefix('[') {
        Some(inner) => {
            let (host, after) = inner.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => {
            let (host, port) = s.rsplit_once(':')?;
            if host.contains([':', '[', ']']) {
                return None;
            }
            (host, port)
        }
    };
    if port.contains([':', '[', ']']) {
        return None;
    }
    Some((host, port))
}

/// etcd binds only to IP addresses and `localhost` (unix sockets aside).
fn check_bind_url(url: &str) -> Result<(), String> {
    if url.starts_with("unix://") || url.starts_with("unixs://") {
        return Ok(());
    }
    let host = url_host(url).unwrap_or_default();
    if host == "localhost" || host.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("expected IP in URL for binding ({url})"))
    }
}

/// Advertised URLs need a host.
fn check_host_url(url: &str) -> Result<(), String> {
    match url_host(url) {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(format!("unexpected empty host ({url})")),
    }
}

/// The host of a URL that passed [`check_url`].
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    split_host_port(host_port).map(|(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_flag(cmd: &Command, name: &str) -> bool {
        long_names(cmd).any(|(_, l)| l == name)
    }

    const NO_ENV: [(&str, &str); 0] = [];

    fn parse_args(args: &[&str]) -> Result<Config, ConfigError> {
        parse_env(args, &NO_ENV)
    }

    fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("hubd").chain(args.iter().copied());
        parse_from_env(argv, env.iter().copied())
    }

    #[test]
    fn tls_flags_come_from_flags_and_etcd_variables() {
        let c = parse_env(
            &["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256", "--client-crl-file", "r.crl"],
            &[("ETCD_PEER_CERT_ALLOWED_CN", "example.com"), ("ETCD_PEER_CRL_FILE", "p.crl")],
        )
        .unwrap();
        assert_eq!(c.cipher_suites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"]);
        assert_eq!(c.client_crl_file, Some(PathBuf::from("r.crl")));
        assert_eq!(c.peer_crl_file, Some(PathBuf::from("p.crl")));
        assert_eq!(c.peer_cert_allowed_cn.as_deref(), Some("example.com"));
        assert_eq!((c.peer_cert_allowed_hostname, c.client_cert_allowed_hostname), (None, None));
        assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
    }

    fn ok(args: &[&str]) -> Config {
        match parse_args(args) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse_args(args) {
            Ok(c) => panic!("{args:?} parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_match_etcd() {
        let c = ok(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.hub"));
        assert_eq!(c.wal_dir, None);
        assert_eq!(c.listen_client_urls, ["http://localhost:2379"]);
        assert_eq!(c.advertise_client_urls, ["http://localhost:2379"]);
        assert_eq!(c.listen_peer_urls, ["http://localhost:2380"]);
        assert_eq!(c.initial_advertise_peer_urls, ["http://localhost:2380"]);
        assert_eq!(
            c.initial_cluster,
            [("default".to_string(), "http://localhost:2380".to_string())]
        );
        assert_eq!(c.initial_cluster_state, "new");
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.quota_backend_bytes, 0);
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.heartbeat_interval_ms, 100);
        assert_eq!(c.election_timeout_ms, 1000);
        assert_eq!(c.auto_compaction_mode, "periodic");
        assert_eq!(c.auto_compaction_retention, "0");
        assert_eq!(c.log_level, "info");
        assert_eq!(c.logger, "capnslog");
        assert_eq!(c.log_outputs, ["default"]);
        assert!(!c.enable_pprof);
        assert_eq!(
            c.experimental_watch_progress_notify_interval,
            Duration::from_secs(600)
        );
        assert_eq!(
            (c.cert_file, c.key_file, c.trusted_ca_file),
            (None, None, None)
        );
        assert!(!c.client_cert_auth && !c.auto_tls && !c.peer_client_cert_auth && !c.peer_auto_tls);
        assert_eq!(c.peer_cert_file, None);
        assert!(c.unhonoured.is_empty() && c.warnings.is_empty());
        assert_eq!(c.config_file, None);
    }

    #[test]
    fn name_sets_data_dir_and_initial_cluster() {
        let c = ok(&["--name", "n1"]);
        assert_eq!(c.data_dir, PathBuf::from("n1.hub"));
        assert_eq!(
            c.initial_cluster,
            [("n1".to_string(), "http://localhost:2380".to_string())]
        );
        let c = ok(&[
            "--name=n2",
            "--initial-advertise-peer-urls=http://127.0.0.1:12380",
            "--data-dir",
            "/tmp/d",
        ]);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(
            c.initial_cluster,
            [("n2".to_string(), "http://127.0.0.1:12380".to_string())]
        );
        assert_eq!(ok(&["--data-dir="]).data_dir, PathBuf::from("default.hub"));
    }

    #[test]
    fn value_forms() {
        for args in [
            &["--max-txn-ops", "7"][..],
            &["--max-txn-ops=7"],
            &["-max-txn-ops", "7"],
            &["-max-txn-ops=7"],
            &["--max-txn-ops=0x7"],
            &["--max-txn-ops", "1", "--max-txn-ops", "7"],
        ] {
            assert_eq!(ok(args).max_txn_ops, 7, "{args:?}");
        }
        assert_eq!(ok(&["--quota-backend-bytes", "-1"]).quota_backend_bytes, -1);
        assert_eq!(ok(&["--name", "-odd"]).name, "-odd");
        assert_eq!(
            ok(&["--initial-cluster-token", ""]).initial_cluster_token,
            ""
        );
        assert_eq!(
            ok(&["--experimental-watch-progress-notify-interval", "1h30m"])
                .experimental_watch_progress_notify_interval,
            Duration::from_secs(5400)
        );
        assert_eq!(
            ok(&["--experimental-watch-progress-notify-interval=1ms"])
                .experimental_watch_progress_notify_interval,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn bool_forms() {
        assert_eq!(ok(&[]).report_etcd_version, "3.4.23");
        assert_eq!(ok(&["--report-etcd-version=3.4.31"]).report_etcd_version, "3.4.31");
        for bad in ["3.4.32", "3.4.22", "3.5.0", "3.4.031", "x"] {
            assert!(err(&["--report-etcd-version", bad]).contains("must be a release from 3.4.23 to 3.4.31"), "{bad}");
        }
        assert!(ok(&["--enable-pprof"]).enable_pprof);
        assert!(ok(&["--enable-pprof=true"]).enable_pprof);
        assert!(ok(&["-enable-pprof=1"]).enable_pprof);
        assert!(!ok(&["--enable-pprof=false"]).enable_pprof);
        assert!(!ok(&["--enable-pprof", "--enable-pprof=F"]).enable_pprof);
        assert!(ok(&["--client-cert-auth", "--name", "x"]).client_cert_auth);
        assert_eq!(ok(&["--debug"]).log_level, "debug");
        assert_eq!(
            ok(&["--debug=false", "--log-level", "warn"]).log_level,
            "warn"
        );
        // As in Go, a boolean never takes the next argument.
        assert_eq!(err(&["--auto-tls", "false"]), "'false' is not a valid flag");
        assert_eq!(
            err(&["--enable-pprof=maybe"]),
            "invalid boolean value \"maybe\" for -enable-pprof: parse error"
        );
        assert!(ok(&["--initial-election-tick-advance=false"])
            .unhonoured
            .contains(&"initial-election-tick-advance".into()));
    }

    #[test]
    fn environment() {
        let c = parse_env(
            &["--name", "n1"],
            &[
                ("ETCD_MAX_TXN_OPS", "9"),
                ("ETCD_ENABLE_PPROF", "true"),
                ("ETCD_DATA_DIR", ""),
                ("ETCD_BOGUS", "1"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.max_txn_ops, 9);
        assert!(c.enable_pprof);
        assert_eq!(c.data_dir, PathBuf::from("n1.hub"));
        assert_eq!(c.unhonoured, ["enable-pprof"]);
        assert_eq!(
            c.warnings,
            ["unrecognized environment variable ETCD_BOGUS=1"]
        );

        let e = parse_env(&["--name", "x"], &[("ETCD_NAME", "y")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("conflicting environment variable \"ETCD_NAME\""),
            "{e}"
        );
        let e = parse_env(&[], &[("ETCD_INITIAL_CLUSTER_STATE", "bad")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"bad\" for ETCD_INITIAL_CLUSTER_STATE: invalid value"
        );
        let e = parse_env(&[], &[("ETCD_ENABLE_PPROF", "maybe")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"maybe\" for ETCD_ENABLE_PPROF: parse error"
        );
    }

    #[test]
    fn initial_cluster_parsing() {
        let c = ok(&[
            "--name=a",
            "--initial-cluster",
            "a=http://10.0.0.1:2380,b=https://h:2380, c=http://[::1]:2380",
        ]);
        let pairs: Vec<(&str, &str)> = c
            .initial_cluster
            .iter()
            .map(|(n, u)| (n.as_str(), u.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "http://10.0.0.1:2380"),
                ("b", "https://h:2380"),
                (" c", "http://[::1]:2380")
            ]
        );
        assert_eq!(
            err(&["--initial-cluster=default=foo"]),
            "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo"
        );
        assert!(ok(&["--discovery=https://d.example/x"])
            .initial_cluster
            .is_empty());
        assert!(
            err(&["--discovery=https://d:1", "--initial-cluster=a=http://h:1"])
                .starts_with("multiple discovery")
        );
    }

    #[test]
    fn unhonoured_flags() {
        let c = parse_env(
            &[
                "--max-wals=3",
                "--name",
                "n",
                "--pre-vote",
                "--cert-file=c.pem",
                "-v",
                "--metrics",
                "extensive",
            ],
            &[("ETCD_CORS", "*"), ("ETCD_SNAPSHOT_COUNT", "5")],
        )
        .unwrap();
        let mut names = c.unhonoured.clone();
        names.sort();
        assert_eq!(names, ["cors", "max-wals", "metrics", "pre-vote"]);
        assert_eq!(c.cert_file, Some(PathBuf::from("c.pem")));
        assert_eq!(c.snapshot_count, 5);
        assert_eq!(
            c.warnings,
            ["flag \"-v\" is no longer supported - ignoring."]
        );
    }

    #[test]
    fn etcd_validation() {
        assert_eq!(
            err(&["--initial-cluster-state=x"]),
            "invalid value \"x\" for flag -initial-cluster-state: invalid value"
        );
        assert_eq!(
            err(&["--listen-client-urls=foo"]),
            "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"
        );
        assert_eq!(
            err(&["--listen-peer-urls", "http://127.0.0.1:2380/x"]),
            "invalid value \"http://127.0.0.1:2380/x\" for flag -listen-peer-urls: URL must not contain a path: http://127.0.0.1:2380/x"
        );
        assert_eq!(
            err(&["--experimental-watch-progress-notify-interval=abc"]),
            "invalid value \"abc\" for flag -experimental-watch-progress-notify-interval: parse error"
        );
        assert_eq!(
            err(&["--heartbeat-interval=abc"]),
            "invalid value \"abc\" for flag -heartbeat-interval: parse error"
        );
        assert_eq!(err(&["--name"]), "flag needs an argument: -name");
        assert_eq!(err(&["extra"]), "'extra' is not a valid flag");
        assert_eq!(
            err(&["--listen-client-urls=http://127.0.0.1:2379"]),
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        );
        assert_eq!(
            err(&[
                "--listen-client-urls=http://example.com:2379",
                "--advertise-client-urls=http://x:1"
            ]),
            "expected IP in URL for binding (http://example.com:2379)"
        );
        assert_eq!(
            err(&["--election-timeout=100"]),
            "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"
        );
        assert_eq!(
            err(&["--auto-compaction-mode=foo"]),
            "unknown auto-compaction-mode \"foo\""
        );
        assert!(err(&["--auto-compaction-retention=5x"])
            .starts_with("error parsing CompactionRetention"));
        assert_eq!(
            ok(&["--auto-compaction-retention=5m"]).auto_compaction_retention,
            "5m"
        );
        assert_eq!(
            err(&["--nosuch=1"]),
            "flag provided but not defined: -nosuch"
        );
        assert_eq!(
            err(&["-nme", "x"]),
            "flag provided but not defined: -nme (did you mean --name?)"
        );
        let c = ok(&[
            "--listen-client-urls=http://127.0.0.1:2379,unix://localhost:1",
            "--advertise-client-urls=HTTP://127.0.0.1:2379,http://127.0.0.1:2379",
        ]);
        assert_eq!(
            c.listen_client_urls,
            ["http://127.0.0.1:2379", "unix://localhost:1"]
        );
        assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:2379"]);
        // A socket by path, as Kubernetes' integration tests start etcd.
        let c = ok(&["--listen-client-urls=unix:///tmp/hub.sock", "--advertise-client-urls=http://127.0.0.111:0"]);
        assert_eq!(c.listen_client_urls, ["unix:///tmp/hub.sock"]);
        assert!(err(&["--listen-client-urls=http:///tmp/hub.sock"]).contains("host:port"));
    }

    #[test]
    fn help_and_version() {
        match parse_args(&["--help"]) {
            Err(ConfigError::Clap(e)) => assert_eq!(e.kind(), ErrorKind::DisplayHelp),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_args(&["-help"]), Err(ConfigError::Clap(_))));
        match parse_args(&["--version"]) {
            Err(e @ ConfigError::Version(_)) => {
                assert_eq!(e.exit_code(), 0);
                assert!(e.to_string().contains("API Version: 3.4"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ok(&["--version=false"]).name, "default");
    }

    #[test]
    fn config_file() {
        let path =
            std::env::temp_dir().join(format!("hub-config-test-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "name: f1\n\
             listen-client-urls: http://127.0.0.1:3379\n\
             max-txn-ops: 64\n\
             enable-pprof: true\n\
             experimental-watch-progress-notify-interval: 2000000000\n\
             log-outputs: [stderr]\n\
             peer-transport-security:\n  cert-file: p.pem\n  client-cert-auth: true\n\
             no-such-key: 1\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        // Other flags and the environment are ignored.
        let c = parse_env(
            &["--config-file", file, "--name=ignored"],
            &[("ETCD_MAX_TXN_OPS", "1")],
        );
        let from_env = parse_env(&[], &[("ETCD_CONFIG_FILE", file)]);
        std::fs::remove_file(&path).unwrap();
        let c = c.unwrap();
        assert_eq!(c, from_env.unwrap());
        assert_eq!(c.name, "f1");
        assert_eq!(c.data_dir, PathBuf::from("f1.hub"));
        assert_eq!(c.listen_client_urls, ["http://127.0.0.1:3379"]);
        assert_eq!(c.advertise_client_urls, ["http://localhost:2379"]);
        assert_eq!(c.max_txn_ops, 64);
        assert_eq!(
            c.experimental_watch_progress_notify_interval,
            Duration::from_secs(2)
        );
        assert_eq!(c.log_outputs, ["stderr"]);
        assert_eq!(c.peer_cert_file, Some(PathBuf::from("p.pem")));
        assert!(c.peer_client_cert_auth);
        assert_eq!(c.unhonoured, ["enable-pprof"]);
        assert_eq!(c.config_file, Some(path.clone()));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(matches!(
            parse_args(&["--config-file=/nonexistent/x.yaml"]),
            Err(ConfigError::ConfigFile { .. })
        ));
    }

    #[test]
    fn go_syntax() {
        assert_eq!(go_u64("0x10"), Ok(16));
        assert_eq!(go_u64("010"), Ok(8));
        assert_eq!(go_u64("0b1_0"), Ok(2));
        assert_eq!(go_u64("1_0"), Err(PARSE_ERROR.into()));
        assert_eq!(go_u64("+1"), Err(PARSE_ERROR.into()));
        assert_eq!(
            go_u64("99999999999999999999"),
            Err("value out of range".into())
        );
        assert_eq!(go_i64("-0x10"), Ok(-16));
        assert_eq!(go_u32("4294967296"), Err("value out of range".into()));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(go_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(go_duration(".5us"), Ok(Duration::from_nanos(500)));
        assert_eq!(go_duration("5µs"), Ok(Duration::from_micros(5)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(go_duration("-1s"), Ok(Duration::ZERO));
        for bad in ["", "5", "1x", ".s", "1.2.3s", "s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(check_url(" http://h:1 "), Ok("http://h:1".into()));
        assert_eq!(check_url("http://h:1?x#y"), Ok("http://h:1?x#y".into()));
        assert!(check_url("http://h").unwrap_err().contains("host:port"));
        assert!(check_url("http://a:b:1").is_err());
        assert!(check_url("http://h:x")
            .unwrap_err()
            .contains("invalid port"));
        assert_eq!(flag_of_arg_display("--debug[=<DEBUG>]"), "debug");
    }

    #[test]
    fn flag_tables_name_real_flags() {
        let cmd = command();
        for name in HONOURED.iter().chain(IGNORED) {
            assert!(is_flag(&cmd, name), "{name}");
        }
        // Every flag in etcd's --help exists.
        let help = "name data-dir wal-dir snapshot-count heartbeat-interval election-timeout \
            initial-election-tick-advance listen-peer-urls listen-client-urls max-snapshots max-wals \
            quota-backend-bytes backend-batch-interval backend-batch-limit max-txn-ops max-request-bytes \
            max-concurrent-streams grpc-keepalive-min-time grpc-keepalive-interval grpc-keepalive-timeout \
            initial-advertise-peer-urls initial-cluster initial-cluster-state initial-cluster-token \
            advertise-client-urls discovery discovery-fallback discovery-proxy discovery-srv discovery-srv-name \
            strict-reconfig-check pre-vote auto-compaction-retention auto-compaction-mode enable-v2 cert-file \
            key-file client-cert-auth client-crl-file client-cert-allowed-hostname trusted-ca-file auto-tls \
            peer-cert-file peer-key-file peer-client-cert-auth peer-trusted-ca-file peer-cert-allowed-cn \
            peer-cert-allowed-hostname peer-auto-tls peer-crl-file cipher-suites cors host-whitelist auth-token \
            bcrypt-cost auth-token-ttl enable-pprof metrics listen-metrics-urls logger log-outputs log-level \
            proxy proxy-failure-wait proxy-refresh-interval proxy-dial-timeout proxy-write-timeout \
            proxy-read-timeout experimental-initial-corrupt-check experimental-corrupt-check-time \
            experimental-enable-v2v3 experimental-backend-bbolt-freelist-type experimental-enable-lease-checkpoint \
            experimental-compaction-batch-limit experimental-peer-skip-client-san-verification \
            experimental-watch-progress-notify-interval experimental-warning-apply-duration force-new-cluster \
            debug log-package-levels config-file version unsafe-no-fsync enable-grpc-gateway log-output \
            experimental-enable-lease-checkpoint-persist";
        for name in help.split_whitespace() {
            assert!(is_flag(&cmd, name), "{name}");
        }
        cmd.debug_assert();
    }
}
