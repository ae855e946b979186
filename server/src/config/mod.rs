//! hubd's configuration: every command-line flag of etcd 3.4.23 and of etcd
//! 3.6.16, under the same name and with the same default (3.4's where both
//! have a flag), and the `ETCD_*` environment variable that etcd reads for
//! each of them (`--foo-bar` ↔ `ETCD_FOO_BAR`), plus etcd's `--config-file`
//! YAML.
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
//! - etcd 3.6's additions: `--feature-gates` ([`FeatureGates`]), the
//!   un-prefixed names of `--experimental-*` flags (either spelling, not
//!   both), its warnings for deprecated flags, its checks of the new flags.
//!   Where 3.4 accepts what 3.6 refuses (`--logger=capnslog`,
//!   `--discovery-fallback=proxy`, an empty `--auto-compaction-mode`, the v2
//!   proxy flags), hubd accepts it, as the 3.4 drop-in it still is.
//!
//! Differences from etcd: the default data directory is `${name}.hub`; the
//! help text is clap's; `--version` names the etcd release whose flags and
//! API hub follows ([`ETCD_VERSION`]) and hub's own version.
//!
//! Every flag is accepted, but hub implements only some of them: the others
//! that the user set are listed in [`Config::unhonoured`] for hubd to warn
//! about.

mod features;
mod finish;
mod flags;
mod flags36;
mod goflag;
mod log_flags;
mod sources;
mod values;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests36;

pub use features::FeatureGates;
pub(crate) use finish::{parse_initial_cluster, tls_versions};
use features::*;
use finish::*;
use flags::*;
use flags36::*;
use goflag::*;
use log_flags::*;
use sources::*;
pub(crate) use values::{go_bool, go_duration};
use values::*;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};
use hub_tls::TlsVersion;

/// The etcd release whose command line and API hubd follows, as
/// `hubd --version` names it (tools such as etcd's e2e framework pick flag
/// spellings from it). What hub reports as its server version is
/// `--report-etcd-version` (by default this same release).
pub const ETCD_VERSION: &str = hub_etcdserver::version::ETCD_VERSION;

/// What `hubd --version` prints: etcd's lines (tools parse `etcd Version:`),
/// with hub's own version after them.
fn version_text() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!(
        "etcd Version: {ETCD_VERSION}\nGit SHA: Not provided\nGo Version: none (hub is written in Rust)\n\
         Go OS/Arch: {}/{arch}\nhub Version: {}\n",
        std::env::consts::OS,
        env!("CARGO_PKG_VERSION")
    )
}

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
    /// `--listen-client-http-urls`: listeners for the HTTP endpoints only
    /// (the JSON gateway, health, version, metrics). When there are any, the
    /// `--listen-client-urls` listeners serve gRPC only (etcd's split).
    pub listen_client_http_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `(name, peer URL)` pairs in the given order; a member with several peer
    /// URLs appears once per URL. Empty when bootstrapping by discovery.
    pub initial_cluster: Vec<(String, String)>,
    /// The flag that asks a new member to find its cluster by discovery
    /// (`discovery`, `discovery-endpoints` or `discovery-srv`); none with
    /// `--initial-cluster`. hub implements v3 discovery only ([`Config::discovery_v3`]).
    pub discovery: Option<&'static str>,
    /// `--discovery-endpoints` and the other `--discovery-*` flags of etcd's v3
    /// discovery; with it, `initial_cluster_token` is the discovery token (as etcd).
    pub discovery_v3: Option<crate::discovery::Settings>,
    /// `"new"` or `"existing"`.
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    pub quota_backend_bytes: i64,
    /// `--feature-gates`, with the `--experimental-*` booleans that set gates.
    pub feature_gates: FeatureGates,
    /// The `InitialCorruptCheck` gate (`--experimental-initial-corrupt-check`).
    pub initial_corrupt_check: bool,
    /// `--corrupt-check-time` (or `--experimental-corrupt-check-time`; zero: off).
    pub corrupt_check_time: Duration,
    /// With the `CompactHashCheck` gate: `--compact-hash-check-time` (or
    /// `--experimental-compact-hash-check-time`), how often the leader
    /// compares the hashes taken at compactions with its followers'.
    pub compact_hash_check_time: Option<Duration>,
    pub snapshot_count: u64,
    /// `--strict-reconfig-check`: refuse membership changes that risk quorum.
    pub strict_reconfig_check: bool,
    /// `--max-learners` (a negative value allows none).
    pub max_learners: usize,
    /// `--force-new-cluster`: restart as a one-member cluster, keeping the data.
    pub force_new_cluster: bool,
    /// `--bootstrap-defrag-threshold-megabytes` (or its `--experimental-`
    /// name), in bytes: defragment at start when that much would be freed
    /// (zero: never).
    pub bootstrap_defrag_threshold_bytes: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// `"periodic"`, `"revision"` or `""`.
    pub auto_compaction_mode: String,
    /// As given; checked to parse the way etcd parses it for the mode
    /// (hours or a Go duration for periodic, a count for revision).
    pub auto_compaction_retention: String,
    /// `--compaction-batch-limit` (or `--experimental-compaction-batch-limit`):
    /// revisions deleted per backend commit of a compaction (0: etcd's 1000).
    pub compaction_batch_limit: i64,
    /// `--compaction-sleep-interval` (or its `--experimental-` name): the
    /// pause between two of those commits (zero: etcd's 10ms).
    pub compaction_sleep_interval: Duration,
    /// One of debug, info, warn, error, dpanic, panic, fatal; `--debug` makes it debug.
    pub log_level: String,
    /// `--logger`: `"capnslog"` (etcd 3.4's default) or `"zap"`.
    pub logger: String,
    /// `--log-outputs` (or the deprecated `--log-output`), deduplicated and sorted.
    pub log_outputs: Vec<String>,
    /// `--log-format`: `"json"` or `"console"` (checked as etcd 3.6 checks it).
    pub log_format: String,
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
    /// `--watch-progress-notify-interval` (or its `--experimental-` name), as
    /// etcd uses it: 0 means its default of 10 minutes, and anything shorter
    /// than 100ms is raised to 100ms.
    pub watch_progress_notify_interval: Duration,
    /// `--warning-unary-request-duration` (or its `--experimental-` name):
    /// a unary call slower than this is logged ("request stats"); 300ms when
    /// neither is set.
    pub warning_unary_request_duration: Duration,
    /// `--warning-apply-duration` (or its `--experimental-` name): an apply
    /// slower than this is logged ("apply request took too long") and counted.
    pub warning_apply_duration: Duration,
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
    /// `--client-cert-allowed-hostname`, `--peer-cert-allowed-cn`,
    /// `--peer-cert-allowed-hostname`: comma-separated lists since etcd 3.6.
    pub client_cert_allowed_hostname: Vec<String>,
    pub peer_crl_file: Option<PathBuf>,
    pub peer_cert_allowed_cn: Vec<String>,
    pub peer_cert_allowed_hostname: Vec<String>,
    /// `--client-cert-file`/`--client-key-file` and their `--peer-` pair:
    /// the certificate each side presents when it dials.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub peer_client_cert_file: Option<PathBuf>,
    pub peer_client_key_file: Option<PathBuf>,
    /// `--peer-skip-client-san-verification` (or its `--experimental-` name).
    pub peer_skip_client_san_verification: bool,
    /// `--cipher-suites`, Go's names in the order given.
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` (TLS 1.2 unless set) and `--tls-max-version`
    /// (none: the highest), for both sides.
    pub tls_min_version: TlsVersion,
    pub tls_max_version: Option<TlsVersion>,
    /// The YAML file the configuration came from, if any.
    pub config_file: Option<PathBuf>,
    /// Names (without dashes) of flags the user set, on the command line, in
    /// the environment or in the config file, that hub does not implement.
    pub unhonoured: Vec<String>,
    /// Notices etcd would log while parsing: unrecognised `ETCD_*` variables,
    /// obsolete and deprecated flags, unknown config-file keys. hubd should
    /// log each one.
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
        return Err(ConfigError::Version(version_text()));
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
