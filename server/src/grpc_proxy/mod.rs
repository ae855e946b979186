//! `hubd grpc-proxy start`: etcd's gRPC proxy, a stateless layer-7 proxy in
//! front of a cluster's client URLs (etcd's `etcdmain/grpc_proxy.go`).
//!
//! Place in the request path: none of a member's. The proxy is its own
//! process. It takes every etcd gRPC call (KV, Watch, Lease, Cluster,
//! Maintenance, Auth, v3election, v3lock, streams included) and passes it
//! through, message for message and metadata included, to one member of the
//! cluster ([`backends`]: one endpoint at a time, the next after a failure,
//! the list kept in step with the cluster's members), and serves the proxy's
//! HTTP endpoints beside it on the same port ([`routes`]: `/health`,
//! `/proxy/health`, `/metrics`, `/proxy/metrics`).
//!
//! What etcd's proxy adds on top of passing calls through, hub's does not:
//! it caches no range, coalesces no watch, and has no `--namespace`,
//! `--experimental-leasing-prefix`, `--experimental-serializable-ordering` or
//! `--resolver-prefix` registration. A client sees the cluster's answers
//! unchanged, as through etcd's proxy without those options. `--namespace`
//! is refused (ignoring it would write outside the namespace); the others
//! are named in a start-up warning and ignored.

mod backends;
mod routes;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};
use hub_tls::net::{Address, ListenSpec, Listener};
use hub_tls::{Tls, TlsFlags};

use crate::config::{go_bool, go_duration};
use backends::{Backends, Dial};

/// Whether argv asks for the proxy (`hubd grpc-proxy ...`).
pub fn requested(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == "grpc-proxy")
}

#[derive(Parser, Debug)]
#[command(name = "hubd grpc-proxy", about = "grpc-proxy related command", subcommand_required = true, arg_required_else_help = true)]
struct GrpcProxy {
    #[command(flatten)]
    flags: StartFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// start the grpc proxy
    Start,
}

/// The flags of etcd 3.6's `grpc-proxy start`, with etcd's defaults.
#[derive(Args, Debug, Clone)]
struct StartFlags {
    /// listen address
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    listen_addr: String,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(long = "discovery-srv", global = true, default_value = "")]
    discovery_srv: String,
    /// service name to query when using DNS discovery
    #[arg(long = "discovery-srv-name", global = true, default_value = "")]
    discovery_srv_name: String,
    /// listen for endpoint /metrics requests on an additional interface
    #[arg(long, global = true, default_value = "")]
    metrics_addr: String,
    /// accept insecure SRV records
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    insecure_discovery: bool,
    /// comma separated etcd cluster endpoints
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// etcd endpoints auto sync interval (disabled by default)
    #[arg(long, global = true, default_value = "0s", value_parser = go_duration)]
    endpoints_auto_sync_interval: Duration,
    /// keepalive time for client(grpc-proxy) connections (default 0, disable).
    #[arg(long, global = true, default_value = "0s", value_parser = go_duration)]
    dial_keepalive_time: Duration,
    /// keepalive timeout for client(grpc-proxy) connections (default 20s).
    #[arg(long, global = true, default_value = "20s", value_parser = go_duration)]
    dial_keepalive_timeout: Duration,
    /// Enable client(grpc-proxy) to send keepalive pings even with no active RPCs.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    permit_without_stream: bool,
    /// advertise address to register (must be reachable by client)
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    advertise_client_url: String,
    /// prefix to use for registering proxy (must be shared with other grpc-proxy members)
    #[arg(long, global = true, default_value = "")]
    resolver_prefix: String,
    /// specify TTL, in seconds, when registering proxy endpoints
    #[arg(long, global = true, default_value = "0", allow_negative_numbers = true)]
    resolver_ttl: i64,
    /// string to prefix to all keys for namespacing requests
    #[arg(long, global = true, default_value = "")]
    namespace: String,
    /// Enable runtime profiling data via HTTP server.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    enable_pprof: bool,
    /// Data directory for persistent data
    #[arg(long, global = true, default_value = "default.proxy")]
    data_dir: PathBuf,
    /// message send limits in bytes (default value is 1.5 MiB)
    #[arg(long, global = true, default_value = "1572864")]
    max_send_bytes: u64,
    /// message receive limits in bytes (default value is math.MaxInt32)
    #[arg(long, global = true, default_value = "2147483647")]
    max_recv_bytes: u64,
    /// Minimum interval duration that a client should wait before pinging proxy.
    #[arg(long, global = true, default_value = "5s", value_parser = go_duration)]
    grpc_keepalive_min_time: Duration,
    /// Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).
    #[arg(long, global = true, default_value = "2h", value_parser = go_duration)]
    grpc_keepalive_interval: Duration,
    /// Additional duration of wait before closing a non-responsive connection (0 to disable).
    #[arg(long, global = true, default_value = "20s", value_parser = go_duration)]
    grpc_keepalive_timeout: Duration,
    /// identify secure connections with etcd servers using this TLS certificate file
    #[arg(long, global = true, default_value = "")]
    cert: String,
    /// identify secure connections with etcd servers using this TLS key file
    #[arg(long, global = true, default_value = "")]
    key: String,
    /// verify certificates of TLS-enabled secure etcd servers using this CA bundle
    #[arg(long, global = true, default_value = "")]
    cacert: String,
    /// skip authentication of etcd server TLS certificates
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    insecure_skip_tls_verify: bool,
    /// identify secure connections to the proxy using this TLS certificate file
    #[arg(long, global = true, default_value = "")]
    cert_file: String,
    /// identify secure connections to the proxy using this TLS key file
    #[arg(long, global = true, default_value = "")]
    key_file: String,
    /// verify certificates of TLS-enabled secure proxy using this CA bundle
    #[arg(long, global = true, default_value = "")]
    trusted_ca_file: String,
    /// Comma-separated list of supported TLS cipher suites between client/proxy
    #[arg(long, global = true, value_delimiter = ',', default_value = "")]
    listen_cipher_suites: Vec<String>,
    /// proxy TLS using generated certificates
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    auto_tls: bool,
    /// proxy client certificate revocation list file.
    #[arg(long, global = true, default_value = "")]
    client_crl_file: String,
    /// The validity period of the proxy certificates, unit is year
    #[arg(long, global = true, default_value = "1")]
    self_signed_cert_validity: u32,
    /// Minimum TLS version supported by grpc proxy. Possible values: TLS1.2, TLS1.3.
    #[arg(long, global = true, default_value = "TLS1.2")]
    tls_min_version: String,
    /// Maximum TLS version supported by grpc proxy. Possible values: TLS1.2, TLS1.3 (empty defers to Go).
    #[arg(long, global = true, default_value = "")]
    tls_max_version: String,
    /// Ensure serializable reads have monotonically increasing store revisions across endpoints.
    #[arg(long = "experimental-serializable-ordering", global = true, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    serializable_ordering: bool,
    /// leasing metadata prefix for disconnected linearized reads.
    #[arg(long = "experimental-leasing-prefix", global = true, default_value = "")]
    leasing_prefix: String,
    /// logging all grpc requests and responses
    #[arg(long = "experimental-enable-grpc-logging", global = true, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    grpc_logging: bool,
    /// Enable debug-level logging for grpc-proxy.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    debug: bool,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, global = true, default_value = "4294967295")]
    max_concurrent_streams: u32,
}

/// Runs `hubd grpc-proxy ...` to the end of the process: the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let level = |proxy: &GrpcProxy| if proxy.flags.debug { "debug" } else { "info" };
    crate::subcommand::run(args, level, |proxy: GrpcProxy| {
        let Command::Start = proxy.command;
        start(proxy.flags)
    })
}

/// etcd's `checkArgs` and the options hub's proxy does not have.
fn check(flags: &StartFlags) -> anyhow::Result<()> {
    if !flags.resolver_prefix.is_empty() && flags.resolver_ttl < 1 {
        bail!("invalid resolver-ttl {}", flags.resolver_ttl);
    }
    if flags.resolver_prefix.is_empty() && flags.resolver_ttl > 0 {
        bail!("invalid resolver-prefix {:?}", flags.resolver_prefix);
    }
    if !flags.namespace.is_empty() {
        bail!("--namespace is not supported by hubd grpc-proxy: its calls pass through unchanged");
    }
    let ignored = [
        (!flags.resolver_prefix.is_empty(), "--resolver-prefix"),
        (!flags.leasing_prefix.is_empty(), "--experimental-leasing-prefix"),
        (flags.serializable_ordering, "--experimental-serializable-ordering"),
        (flags.enable_pprof, "--enable-pprof"),
    ];
    for (set, flag) in ignored {
        if set {
            tracing::warn!(flag, "hubd grpc-proxy does not have this option; ignored (calls pass through unchanged)");
        }
    }
    Ok(())
}

/// etcd's `startGRPCProxy`.
async fn start(flags: StartFlags) -> anyhow::Result<()> {
    check(&flags)?;
    if !flags.cert.is_empty() {
        hub_tls::require_empty_cn(std::path::Path::new(&flags.cert))?;
    }
    let listen_tls = listen_tls(&flags)?;
    let backends = Arc::new(Backends::new(&endpoints(&flags).await?, &backend_dial(&flags))?);

    let address = Address::Tcp(flags.listen_addr.clone());
    let listener = Listener::bind(&address).await.with_context(|| format!("listen tcp {}", flags.listen_addr))?;
    tracing::info!(address = %flags.listen_addr, "listening for gRPC proxy client requests");
    let spec = ListenSpec { address, plain: listen_tls.is_none(), secure: listen_tls.is_some() };

    // The proxy checks itself (`/proxy/health`) over its own port, as a client.
    let scheme = if listen_tls.is_some() { "https" } else { "http" };
    let own_tls = own_client_tls(&flags);
    let myself = Arc::new(Backends::new(&[format!("{scheme}://{}", flags.listen_addr)], &own_tls)?);
    let routes = routes::Routes::new(backends.clone(), myself, flags.grpc_logging);

    let mut servers = tokio::task::JoinSet::new();
    let mut server = server_builder(&flags);
    let incoming = hub_tls::net::incoming(listener, &spec, listen_tls.as_deref());
    let router = routes.all();
    servers.spawn(async move { server.add_routes(router).serve_with_incoming(incoming).await });
    if !flags.metrics_addr.is_empty() {
        let url = hub_tls::net::Url::parse(&flags.metrics_addr).map_err(|e| anyhow!("--metrics-addr: {e}"))?;
        let listener = Listener::bind(&url.address).await.with_context(|| format!("listen {}", flags.metrics_addr))?;
        let spec = ListenSpec { address: url.address, plain: !url.secure, secure: url.secure };
        let incoming = hub_tls::net::incoming(listener, &spec, listen_tls.as_deref());
        let router = routes.http_only();
        servers.spawn(async move {
            tonic::transport::Server::builder().accept_http1(true).add_routes(router).serve_with_incoming(incoming).await
        });
        tracing::info!(address = %flags.metrics_addr, "gRPC proxy listening for metrics");
    }
    if !flags.endpoints_auto_sync_interval.is_zero() {
        tokio::spawn(backends.clone().auto_sync(flags.endpoints_auto_sync_interval));
    }
    tracing::info!(address = %flags.listen_addr, "started gRPC proxy");

    let stopped = servers.join_next().await;
    tracing::info!(address = %flags.listen_addr, "stop listening gRPC proxy client requests");
    match stopped {
        Some(Ok(Err(e))) => Err(anyhow!("serve: {e}")),
        Some(Err(e)) => Err(anyhow!("serve: {e}")),
        _ => Ok(()),
    }
}

/// The cluster's endpoints: from DNS SRV records with `--discovery-srv`,
/// else `--endpoints`.
async fn endpoints(flags: &StartFlags) -> anyhow::Result<Vec<String>> {
    if flags.discovery_srv.is_empty() {
        return Ok(flags.endpoints.iter().filter(|e| !e.is_empty()).cloned().collect());
    }
    let ca = Some(flags.cacert.as_str()).filter(|c| !c.is_empty());
    let found =
        crate::gateway::srv::discover(&flags.discovery_srv, &flags.discovery_srv_name, ca, flags.insecure_discovery)
            .await?;
    if found.endpoints.is_empty() {
        bail!("no endpoints found");
    }
    tracing::info!(endpoints = ?found.endpoints, "discovered cluster from SRV");
    Ok(found.endpoints)
}

/// How the proxy dials the cluster: `--cert`, `--key`, `--cacert`,
/// `--insecure-skip-tls-verify` and the `--dial-keepalive-*` flags, as
/// etcd's `newClientCfg` sets up its client.
fn backend_dial(flags: &StartFlags) -> Dial {
    let files = [&flags.cert, &flags.key, &flags.cacert];
    let tls = files.iter().any(|f| !f.is_empty()) || flags.insecure_skip_tls_verify;
    if tls {
        tracing::info!(
            cert = %flags.cert, key = %flags.key, cacert = %flags.cacert,
            insecure_skip_tls_verify = flags.insecure_skip_tls_verify,
            "gRPC proxy client TLS"
        );
    }
    Dial {
        cert: path(&flags.cert),
        key: path(&flags.key),
        ca: path(&flags.cacert),
        skip_verify: flags.insecure_skip_tls_verify,
        tls_for_bare: tls,
        keepalive_time: flags.dial_keepalive_time,
        keepalive_timeout: flags.dial_keepalive_timeout,
        keepalive_while_idle: flags.permit_without_stream,
    }
}

/// How `/proxy/health` dials the proxy itself: with the proxy's own
/// certificate and CA (etcd's `newProxyHealthClient`).
fn own_client_tls(flags: &StartFlags) -> Dial {
    let auto = flags.auto_tls && flags.cert_file.is_empty();
    Dial {
        cert: if auto { Some(auto_tls_dir(flags).join("cert.pem")) } else { path(&flags.cert_file) },
        key: if auto { Some(auto_tls_dir(flags).join("key.pem")) } else { path(&flags.key_file) },
        ca: path(&flags.trusted_ca_file),
        skip_verify: auto,
        tls_for_bare: false,
        keepalive_time: Duration::ZERO,
        keepalive_timeout: Duration::from_secs(20),
        keepalive_while_idle: false,
    }
}

fn path(p: &str) -> Option<PathBuf> {
    Some(PathBuf::from(p)).filter(|_| !p.is_empty())
}

fn auto_tls_dir(flags: &StartFlags) -> PathBuf {
    flags.data_dir.join("fixtures").join("proxy")
}

/// The listener's TLS: `--cert-file`, `--key-file`, `--trusted-ca-file`
/// (which, as etcd's, makes clients present a certificate), `--auto-tls`,
/// `--client-crl-file`, `--listen-cipher-suites` and the TLS versions.
fn listen_tls(flags: &StartFlags) -> anyhow::Result<Option<Arc<Tls>>> {
    let files = [&flags.cert_file, &flags.key_file, &flags.trusted_ca_file];
    if files.iter().all(|f| f.is_empty()) && !flags.auto_tls {
        return Ok(None);
    }
    let (min_version, max_version) =
        crate::config::tls_versions(&flags.tls_min_version, &flags.tls_max_version, !flags.listen_cipher_suites.is_empty())
            .map_err(|e| anyhow!(e))?;
    let host = crate::gateway::split_host_port(&flags.listen_addr).map_or(flags.listen_addr.as_str(), |(h, _)| h);
    let tls = TlsFlags {
        side: "client",
        cert_file: path(&flags.cert_file),
        key_file: path(&flags.key_file),
        trusted_ca_file: path(&flags.trusted_ca_file),
        client_cert_auth: !flags.trusted_ca_file.is_empty(),
        auto_tls: flags.auto_tls,
        auto_tls_dir: auto_tls_dir(flags),
        hosts: vec![host.to_string()],
        crl_file: path(&flags.client_crl_file),
        allowed_cn: Vec::new(),
        allowed_hostname: Vec::new(),
        client_cert_file: None,
        client_key_file: None,
        cipher_suites: flags.listen_cipher_suites.iter().filter(|c| !c.is_empty()).cloned().collect(),
        check_san: false,
        min_version: Some(min_version),
        max_version,
    };
    let tls = Tls::from_flags(&tls).context("gRPC proxy server TLS")?.map(Arc::new);
    if tls.is_some() {
        tracing::info!(
            cert_file = %flags.cert_file, key_file = %flags.key_file, trusted_ca_file = %flags.trusted_ca_file,
            client_cert_auth = !flags.trusted_ca_file.is_empty(), crl_file = %flags.client_crl_file,
            "gRPC proxy server TLS"
        );
    }
    Ok(tls)
}

/// The proxy's server: gRPC and HTTP/1.1 on one port, etcd's keepalive and
/// stream limits.
fn server_builder(flags: &StartFlags) -> tonic::transport::Server {
    let nonzero = |d: Duration| Some(d).filter(|d| !d.is_zero());
    tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(Some(flags.max_concurrent_streams))
        .http2_keepalive_interval(nonzero(flags.grpc_keepalive_interval))
        .http2_keepalive_timeout(nonzero(flags.grpc_keepalive_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GrpcProxy, clap::Error> {
        GrpcProxy::try_parse_from(std::iter::once("hubd grpc-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn flags_take_etcds_defaults_before_or_after_start() {
        let p = parse(&["start"]).unwrap();
        assert_eq!(p.flags.listen_addr, "127.0.0.1:23790");
        assert_eq!(p.flags.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(p.flags.endpoints_auto_sync_interval, Duration::ZERO);
        assert_eq!(p.flags.tls_min_version, "TLS1.2");
        assert_eq!(p.flags.max_send_bytes, 1_572_864);
        let p = parse(&["--endpoints=a:1,b:2", "start", "--endpoints-auto-sync-interval", "1s", "--debug"]).unwrap();
        assert_eq!(p.flags.endpoints, ["a:1", "b:2"]);
        assert_eq!(p.flags.endpoints_auto_sync_interval, Duration::from_secs(1));
        assert!(p.flags.debug);
        assert!(parse(&["--endpoints=a:1"]).is_err(), "start is required");
    }

    #[test]
    fn resolver_flags_are_checked_and_namespace_refused() {
        let check_of = |args: &[&str]| check(&parse(args).unwrap().flags).map_err(|e| e.to_string());
        assert_eq!(check_of(&["start", "--resolver-prefix=p"]).unwrap_err(), "invalid resolver-ttl 0");
        assert_eq!(check_of(&["start", "--resolver-ttl=5"]).unwrap_err(), "invalid resolver-prefix \"\"");
        assert!(check_of(&["start", "--namespace=n/"]).is_err());
        assert!(check_of(&["start", "--enable-pprof"]).is_ok());
    }
}
