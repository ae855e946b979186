//! `hubd gateway start`: etcd's gateway, a layer-4 TCP proxy in front of a
//! cluster's client URLs (etcd's `etcdmain/gateway.go`).
//!
//! Place in the request path: none of a member's. The gateway is its own
//! process, started as `hubd gateway start` (flags before or after `start`, as
//! cobra takes them); it parses etcd's gateway flags, finds the endpoints
//! (`--endpoints`, or DNS SRV records with `--discovery-srv`, [`srv`]), then
//! forwards every accepted connection byte for byte to one of them
//! ([`tcp_proxy`]). It never looks inside a connection: TLS, gRPC and HTTP go
//! through unchanged, end to end between the client and the member.

pub(crate) mod srv;
mod tcp_proxy;

use std::collections::HashSet;
use std::ffi::OsString;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};

use crate::config::{go_bool, go_duration};
use srv::Srv;

/// Whether argv asks for the gateway (`hubd gateway ...`), which etcd tells
/// apart by its first argument.
pub fn requested(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == "gateway")
}

#[derive(Parser, Debug)]
#[command(name = "hubd gateway", about = "gateway related command", subcommand_required = true, arg_required_else_help = true)]
struct Gateway {
    #[command(flatten)]
    flags: StartFlags,
    #[command(subcommand)]
    command: GatewayCommand,
}

#[derive(Subcommand, Debug)]
enum GatewayCommand {
    /// start the gateway
    Start,
}

/// The flags of etcd's `gateway start`, with etcd's defaults.
#[derive(Args, Debug, Clone)]
struct StartFlags {
    /// listen address
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    listen_addr: String,
    /// DNS domain used to bootstrap initial cluster
    #[arg(long = "discovery-srv", global = true, default_value = "")]
    discovery_srv: String,
    /// service name to query when using DNS discovery
    #[arg(long = "discovery-srv-name", global = true, default_value = "")]
    discovery_srv_name: String,
    /// accept insecure SRV records
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = go_bool)]
    insecure_discovery: bool,
    /// path to the client server TLS CA file for verifying the discovered endpoints when discovery-srv is provided.
    #[arg(long, global = true, default_value = "")]
    trusted_ca_file: String,
    /// comma separated etcd cluster endpoints
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// duration of delay before retrying failed endpoints
    #[arg(long, global = true, default_value = "1m", value_parser = go_duration)]
    retry_delay: Duration,
}

/// Runs `hubd gateway ...` to the end of the process: the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::subcommand::run(args, |_| "info", |gateway: Gateway| {
        let GatewayCommand::Start = gateway.command;
        start(gateway.flags)
    })
}

/// etcd's `startGateway`: endpoints from DNS or the flag, checks, then proxy.
async fn start(flags: StartFlags) -> anyhow::Result<()> {
    let mut found = if flags.discovery_srv.is_empty() {
        srv::Discovered::default()
    } else {
        let ca = Some(flags.trusted_ca_file.as_str()).filter(|c| !c.is_empty());
        srv::discover(&flags.discovery_srv, &flags.discovery_srv_name, ca, flags.insecure_discovery).await?
    };
    if found.endpoints.is_empty() {
        // Nothing discovered: the endpoints of the flag.
        // (`--endpoints=` is no endpoint at all, as pflag reads it.)
        found.endpoints = flags.endpoints.iter().filter(|e| !e.is_empty()).cloned().collect();
    }
    // Only a TCP proxy: the scheme does not matter.
    let endpoints: Vec<String> = found.endpoints.iter().map(|e| strip_scheme(e)).collect();
    if found.srvs.is_empty() {
        for ep in &endpoints {
            found.srvs.push(Srv::from_host_port(ep).ok_or_else(|| anyhow!("error parsing endpoint {ep:?}"))?);
        }
    }

    let (listen_host, listen_port) =
        split_host_port(&flags.listen_addr).ok_or_else(|| anyhow!("failed to validate listen address: {}", flags.listen_addr))?;
    let listen_addrs = lookup_host(listen_host)
        .await
        .map_err(|_| anyhow!("failed to resolve listen host: {listen_host}"))?;
    for srv in &found.srvs {
        let addrs = lookup_host(&srv.target).await.map_err(|_| anyhow!("failed to resolve endpoint host: {}", srv.target))?;
        if srv.port.to_string() != listen_port {
            continue;
        }
        if let Some(a) = addrs.iter().find(|a| listen_addrs.contains(*a)) {
            bail!(
                "SRV or endpoint ({}:{}->{a}:{}) should not resolve to the gateway listen addr ({})",
                srv.target,
                srv.port,
                srv.port,
                flags.listen_addr
            );
        }
    }
    if endpoints.is_empty() {
        bail!("no endpoints found");
    }

    let listener = tokio::net::TcpListener::bind(&flags.listen_addr)
        .await
        .with_context(|| format!("listen tcp {}", flags.listen_addr))?;
    let proxy = tcp_proxy::TcpProxy::new(found.srvs, flags.retry_delay);
    proxy.run(listener).await;
    Ok(())
}

/// etcd's `stripSchema`: `http://h:p` becomes `h:p`; anything else stays.
fn strip_scheme(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((_, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if host.is_empty() {
                endpoint.to_string()
            } else {
                host.to_string()
            }
        }
        None => endpoint.to_string(),
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// Go's `net.LookupHost`: the addresses of a name (an IP is itself).
async fn lookup_host(host: &str) -> std::io::Result<HashSet<std::net::IpAddr>> {
    let host = host.strip_suffix('.').unwrap_or(host);
    Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Gateway, clap::Error> {
        Gateway::try_parse_from(std::iter::once("hubd gateway").chain(args.iter().copied()))
    }

    #[test]
    fn flags_go_before_or_after_start_with_etcds_defaults() {
        let g = parse(&["--endpoints=a:1,b:2", "--endpoints", "c:3", "start", "--retry-delay=5s"]).unwrap();
        assert_eq!(g.flags.endpoints, ["a:1", "b:2", "c:3"]);
        assert_eq!(g.flags.retry_delay, Duration::from_secs(5));
        assert_eq!(parse(&["start", "--endpoints=d:4"]).unwrap().flags.endpoints, ["d:4"]);
        let g = parse(&["start"]).unwrap();
        assert_eq!(g.flags.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(g.flags.listen_addr, "127.0.0.1:23790");
        assert_eq!(g.flags.retry_delay, Duration::from_secs(60));
        assert!(!g.flags.insecure_discovery);
        assert!(parse(&["start", "--insecure-discovery"]).unwrap().flags.insecure_discovery);
        assert!(!parse(&["start", "--insecure-discovery=f"]).unwrap().flags.insecure_discovery);
        assert!(parse(&["--endpoints=a:1"]).is_err(), "start is required");
        assert!(parse(&["stop"]).is_err());
    }

    #[test]
    fn endpoints_lose_their_scheme() {
        assert_eq!(strip_scheme("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(strip_scheme("https://infra1.example.com.:2379/x"), "infra1.example.com.:2379");
        assert_eq!(strip_scheme("127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(split_host_port("[::1]:23790"), Some(("::1", "23790")));
        assert_eq!(split_host_port("localhost:1"), Some(("localhost", "1")));
        assert_eq!(split_host_port("nope"), None);
    }
}
