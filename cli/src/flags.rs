//! The command line: etcdctl's global flags, their `ETCDCTL_*`/`HUBCTL_*`
//! environment variables, and the subcommand tree.
//!
//! Flags follow Go's pflag conventions so etcdctl invocations parse unchanged:
//! booleans take an optional `=value` (`--insecure-transport=false`), durations
//! are Go durations (`--dial-timeout=500ms`), global flags may stand anywhere.
//! Global flags are parsed without defaults so [`resolve`] can tell a flag from
//! an environment variable, as etcd's `flags.SetPflagsFromEnv` does.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands::{auth, concurrency, endpoint, kv, lease, maintenance, member, snapshot, txn, watch};
use crate::error::CtlError;
use crate::gofmt;
use crate::output::Format;

#[derive(Parser, Debug)]
#[command(
    name = "hubctl",
    about = "A simple command line client for etcd3 and hub (etcdctl v3 work-alike).",
    infer_subcommands = true,
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Puts the given key into the store
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(txn::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(maintenance::CompactionArgs),
    /// Alarm related commands
    #[command(subcommand, arg_required_else_help = true)]
    Alarm(maintenance::AlarmCommand),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(maintenance::DefragArgs),
    /// Endpoint related commands
    Endpoint(endpoint::EndpointArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(maintenance::MoveLeaderArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Prints the version of hubctl
    Version,
    /// Lease related commands
    #[command(subcommand, arg_required_else_help = true)]
    Lease(lease::LeaseCommand),
    /// Membership related commands
    #[command(subcommand, arg_required_else_help = true)]
    Member(member::MemberCommand),
    /// Manages etcd node snapshots
    #[command(subcommand, arg_required_else_help = true)]
    Snapshot(snapshot::SnapshotCommand),
    /// Enable or disable authentication
    #[command(subcommand, arg_required_else_help = true)]
    Auth(auth::AuthCommand),
    /// User related commands
    #[command(subcommand, arg_required_else_help = true)]
    User(auth::UserCommand),
    /// Role related commands
    #[command(subcommand, arg_required_else_help = true)]
    Role(auth::RoleCommand),
    /// Observes and participates in leader election
    Elect(concurrency::ElectArgs),
    /// Acquires a named lock
    Lock(concurrency::LockArgs),
}

/// etcdctl's global flags as typed; `None` means "not on the command line".
#[derive(Args, Debug, Default)]
pub struct GlobalFlags {
    /// gRPC endpoints [default: 127.0.0.1:2379]
    #[arg(long, global = true, value_delimiter = ',')]
    pub endpoints: Option<Vec<String>>,
    /// enable client-side debug logging
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub debug: Option<bool>,
    /// set the output format (fields, json, protobuf, simple, table) [default: simple]
    #[arg(short = 'w', long = "write-out", global = true)]
    pub write_out: Option<String>,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub hex: Option<bool>,
    /// dial timeout for client connections [default: 2s]
    #[arg(long, global = true, value_parser = go_duration)]
    pub dial_timeout: Option<Duration>,
    /// timeout for short running command (excluding dial timeout) [default: 5s]
    #[arg(long, global = true, value_parser = go_duration)]
    pub command_timeout: Option<Duration>,
    /// keepalive time for client connections [default: 2s]
    #[arg(long, global = true, value_parser = go_duration)]
    pub keepalive_time: Option<Duration>,
    /// keepalive timeout for client connections [default: 6s]
    #[arg(long, global = true, value_parser = go_duration)]
    pub keepalive_timeout: Option<Duration>,
    /// disable transport security for client connections [default: true]
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub insecure_transport: Option<bool>,
    /// accept insecure SRV records describing cluster endpoints [default: true]
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub insecure_discovery: Option<bool>,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub insecure_skip_tls_verify: Option<bool>,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true)]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints (not supported yet)
    #[arg(short = 'd', long, global = true)]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery (not supported yet)
    #[arg(long, global = true)]
    pub discovery_srv_name: Option<String>,
}

/// clap value parser for Go booleans (`--flag=false`, `--flag=0`, `--flag=T`).
pub fn go_bool(s: &str) -> Result<bool, String> {
    gofmt::parse_bool(s)
}

/// clap value parser for Go durations.
pub fn go_duration(s: &str) -> Result<Duration, String> {
    gofmt::parse_duration(s)
}

/// clap value parser for Go's `Int64Var` flags.
pub fn go_int64(s: &str) -> Result<i64, String> {
    gofmt::parse_int(s, 10)
}

/// etcdctl's `IsSerializable`: `--consistency` is `l` (linearizable) or `s`
/// (serializable).
pub fn serializable(consistency: &str) -> Result<bool, CtlError> {
    match consistency {
        "s" => Ok(true),
        "l" => Ok(false),
        other => Err(CtlError::bad_feature(format!("unknown consistency flag {}", gofmt::quote(other.as_bytes())))),
    }
}

/// Global settings after flags, environment and defaults are merged.
#[derive(Debug, Clone)]
pub struct GlobalOptions {
    pub endpoints: Vec<String>,
    pub debug: bool,
    pub format: Format,
    pub hex: bool,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    /// Whether `--command-timeout` (or its variable) was given: `snapshot save`
    /// has no timeout otherwise, as in etcdctl.
    pub command_timeout_set: bool,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub insecure_transport: bool,
    pub insecure_skip_tls_verify: bool,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cacert: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub discovery_srv: Option<String>,
}

/// Names of the flags that may come from the environment (`ETCDCTL_<NAME>`).
const ENV_FLAGS: &[&str] = &[
    "endpoints",
    "debug",
    "write-out",
    "hex",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "insecure-transport",
    "insecure-discovery",
    "insecure-skip-tls-verify",
    "cert",
    "key",
    "cacert",
    "user",
    "password",
    "discovery-srv",
    "discovery-srv-name",
];

/// Variables that are read elsewhere, so they are neither flags nor unknown.
const OTHER_KNOWN_VARS: &[&str] = &["API", "WATCH_KEY", "WATCH_RANGE_END"];

/// The process environment as seen by [`resolve`], so tests can supply their own.
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    pub fn from_process() -> Self {
        Environment { vars: std::env::vars().collect() }
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Environment { vars: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// `HUBCTL_<NAME>`, else `ETCDCTL_<NAME>`, for a flag name: the variable and its value.
    pub fn for_flag(&self, flag: &str) -> Option<(String, &str)> {
        let suffix = flag.to_uppercase().replace('-', "_");
        ["HUBCTL", "ETCDCTL"].iter().find_map(|prefix| {
            let name = format!("{prefix}_{suffix}");
            self.get(&name).map(|v| (name, v))
        })
    }
}

/// Merges flags, `HUBCTL_*`/`ETCDCTL_*` variables and etcdctl's defaults.
/// Returns the options and warnings for stderr (unknown or unparsable variables).
pub fn resolve(flags: GlobalFlags, env: &Environment) -> Result<(GlobalOptions, Vec<String>), CtlError> {
    let mut warnings = Vec::new();
    let mut r = Resolver { env, warnings: &mut warnings };
    let endpoints = r.pick("endpoints", flags.endpoints, |s| Ok(s.split(',').map(str::to_string).collect()))?;
    let write_out = r.pick("write-out", flags.write_out, |s| Ok(s.to_string()))?;
    let command_timeout = r.pick("command-timeout", flags.command_timeout, gofmt::parse_duration)?;
    let options = GlobalOptions {
        endpoints: endpoints
            .unwrap_or_else(|| vec!["127.0.0.1:2379".to_string()])
            .into_iter()
            .map(|e| e.trim().to_string())
            .collect(),
        debug: r.pick("debug", flags.debug, gofmt::parse_bool)?.unwrap_or(false),
        format: Format::parse(write_out.as_deref().unwrap_or("simple"))?,
        hex: r.pick("hex", flags.hex, gofmt::parse_bool)?.unwrap_or(false),
        dial_timeout: r
            .pick("dial-timeout", flags.dial_timeout, gofmt::parse_duration)?
            .unwrap_or(Duration::from_secs(2)),
        command_timeout: command_timeout.unwrap_or(Duration::from_secs(5)),
        command_timeout_set: command_timeout.is_some(),
        keepalive_time: r
            .pick("keepalive-time", flags.keepalive_time, gofmt::parse_duration)?
            .unwrap_or(Duration::from_secs(2)),
        keepalive_timeout: r
            .pick("keepalive-timeout", flags.keepalive_timeout, gofmt::parse_duration)?
            .unwrap_or(Duration::from_secs(6)),
        insecure_transport: r.pick("insecure-transport", flags.insecure_transport, gofmt::parse_bool)?.unwrap_or(true),
        insecure_skip_tls_verify: r
            .pick("insecure-skip-tls-verify", flags.insecure_skip_tls_verify, gofmt::parse_bool)?
            .unwrap_or(false),
        cert: r.pick("cert", flags.cert, |s| Ok(s.to_string()))?,
        key: r.pick("key", flags.key, |s| Ok(s.to_string()))?,
        cacert: r.pick("cacert", flags.cacert, |s| Ok(s.to_string()))?,
        user: r.pick("user", flags.user, |s| Ok(s.to_string()))?,
        password: r.pick("password", flags.password, |s| Ok(s.to_string()))?,
        discovery_srv: r.pick("discovery-srv", flags.discovery_srv, |s| Ok(s.to_string()))?,
    };
    r.pick("insecure-discovery", flags.insecure_discovery, gofmt::parse_bool)?;
    r.pick("discovery-srv-name", flags.discovery_srv_name, |s| Ok(s.to_string()))?;
    for (name, value) in &env.vars {
        let suffix = name.strip_prefix("ETCDCTL_").or_else(|| name.strip_prefix("HUBCTL_"));
        let Some(suffix) = suffix else { continue };
        let as_flag = suffix.to_lowercase().replace('_', "-");
        if !ENV_FLAGS.contains(&as_flag.as_str()) && !OTHER_KNOWN_VARS.contains(&suffix) {
            warnings.push(format!("unrecognized environment variable {name}={value}"));
        }
    }
    Ok((options, warnings))
}

struct Resolver<'a> {
    env: &'a Environment,
    warnings: &'a mut Vec<String>,
}

impl Resolver<'_> {
    /// The flag's value if given (an environment variable for the same flag is
    /// then an error, as in etcdctl), else the variable's, else `None`.
    fn pick<T>(
        &mut self,
        flag: &str,
        from_cli: Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CtlError> {
        let from_env = self.env.for_flag(flag);
        match (from_cli, from_env) {
            (Some(_), Some((var, _))) => Err(CtlError::error(format!(
                "conflicting environment variable {} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                gofmt::quote(var.as_bytes())
            ))),
            (Some(v), None) => Ok(Some(v)),
            (None, Some((var, raw))) => match parse(raw) {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    // etcdctl drops such a value silently; say so at least.
                    self.warnings.push(format!("ignoring invalid value {} for {var}: {e}", gofmt::quote(raw.as_bytes())));
                    Ok(None)
                }
            },
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["hubctl"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn global_flags_parse_anywhere_in_pflag_style() {
        let cli = parse(&["get", "foo", "--endpoints=a:1,b:2", "-w", "json", "--insecure-transport=false", "--hex"]);
        assert_eq!(cli.global.endpoints, Some(vec!["a:1".to_string(), "b:2".to_string()]));
        assert_eq!(cli.global.write_out.as_deref(), Some("json"));
        assert_eq!(cli.global.insecure_transport, Some(false));
        assert_eq!(cli.global.hex, Some(true));
        let cli = parse(&["--dial-timeout", "500ms", "put", "k", "v"]);
        assert_eq!(cli.global.dial_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn subcommands_may_be_abbreviated_like_cobra_prefix_matching() {
        assert!(matches!(parse(&["memb", "list"]).command, Command::Member(_)));
    }

    #[test]
    fn environment_fills_what_flags_leave_unset() {
        let env = Environment::from_pairs(&[
            ("ETCDCTL_ENDPOINTS", "x:1"),
            ("HUBCTL_WRITE_OUT", "json"),
            ("ETCDCTL_API", "3"),
        ]);
        let (opts, warnings) = resolve(GlobalFlags::default(), &env).expect("resolve");
        assert_eq!(opts.endpoints, vec!["x:1"]);
        assert_eq!(opts.format, Format::Json);
        assert_eq!(opts.command_timeout, Duration::from_secs(5));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn hubctl_variables_win_over_etcdctl_ones() {
        let env = Environment::from_pairs(&[("ETCDCTL_ENDPOINTS", "x:1"), ("HUBCTL_ENDPOINTS", "y:2")]);
        let (opts, _) = resolve(GlobalFlags::default(), &env).expect("resolve");
        assert_eq!(opts.endpoints, vec!["y:2"]);
    }

    #[test]
    fn a_flag_shadowing_a_variable_is_an_error_as_in_etcdctl() {
        let env = Environment::from_pairs(&[("ETCDCTL_ENDPOINTS", "x:1")]);
        let flags = GlobalFlags { endpoints: Some(vec!["y:2".into()]), ..Default::default() };
        let err = resolve(flags, &env).expect_err("conflict");
        assert_eq!(
            err.message.as_deref(),
            Some("conflicting environment variable \"ETCDCTL_ENDPOINTS\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)")
        );
    }

    #[test]
    fn unknown_and_unparsable_variables_warn() {
        let env = Environment::from_pairs(&[("ETCDCTL_PREFIX", "1"), ("ETCDCTL_DIAL_TIMEOUT", "bad")]);
        let (opts, warnings) = resolve(GlobalFlags::default(), &env).expect("resolve");
        assert_eq!(opts.dial_timeout, Duration::from_secs(2));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
