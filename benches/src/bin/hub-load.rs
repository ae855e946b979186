//! `hub-load`: drives one workload against an etcd-API cluster (etcd or hubd) over
//! loopback and prints one result line: ops/s, p50, p99, max.
//!
//! Owns the command line, the loopback-only check and the connections (connection
//! `i` goes to endpoint `i % endpoints`, so load spreads over members the same way
//! for every server). What each workload sends is in the library (`hub_benches`).
//!
//!     hub-load --endpoints 127.0.0.1:2379,127.0.0.1:22379 --workload put \
//!         --clients 16 --conns 4 --duration 10s

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, ConnectOptions};

use hub_benches::keyspace::KeySpace;
use hub_benches::workload::{self, LoadSpec, Workload};
use hub_benches::watch;

/// Drive one etcd v3 API workload and print ops/s and latency percentiles.
#[derive(Parser, Debug)]
#[command(name = "hub-load", version)]
struct Flags {
    /// Comma-separated client URLs (loopback only), e.g. http://127.0.0.1:2379,...
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Concurrent request loops (for `watch`: concurrent writers), spread over --conns.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// gRPC connections (one HTTP/2 connection each), spread over the endpoints.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Stop after this many operations (for `watch`: puts), or at --duration if sooner.
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this long (e.g. 500ms, 10s, 2m); always applies.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Bytes per key (keys are padded up to this).
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys the workload picks from at random (range workloads write them all first).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// `watch` only: watch streams on the workload's prefix, spread over --conns.
    #[arg(long, default_value_t = 10)]
    watchers: usize,
    /// `watch` only: the writers' puts per second in all, each writer paced at its share
    /// (open loop, as etcd's `benchmark watch-latency --put-rate`); unset: as fast as
    /// each put is answered (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Per-request deadline; a request past it counts as an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
}

/// Bounds that keep one run from turning into a soak test or a fork bomb by typo.
const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_CONCURRENCY: usize = 10_000;

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    check(&flags)?;
    let conns = connect(&flags).await?;
    let spec = LoadSpec {
        workload: flags.workload,
        clients: flags.clients,
        requests: flags.requests,
        duration: flags.duration,
        keyspace: KeySpace::new(flags.workload.name(), flags.keys, flags.key_size, flags.value_size),
        watchers: flags.watchers,
        rate: flags.rate,
    };
    let mut report = match flags.workload {
        Workload::Watch => watch::run_watch(&conns, &spec).await?,
        Workload::RangeLinearizable | Workload::RangeSerializable => {
            workload::populate(&conns, &spec).await?;
            workload::run_closed_loop(&conns, &spec).await?
        }
        Workload::Put | Workload::TxnCas | Workload::Lease => workload::run_closed_loop(&conns, &spec).await?,
        Workload::Kube => hub_benches::kube::run_kube(&conns, &spec).await?,
    };
    report.endpoints = flags.endpoints.len();
    println!("{report}");
    Ok(())
}

fn check(flags: &Flags) -> Result<()> {
    for endpoint in &flags.endpoints {
        if !is_loopback(endpoint) {
            bail!("endpoint {endpoint:?} is not a loopback address; hub-load only loads this machine");
        }
    }
    if flags.endpoints.is_empty() {
        bail!("--endpoints is empty");
    }
    if flags.clients == 0 || flags.conns == 0 {
        bail!("--clients and --conns must be at least 1");
    }
    if flags.clients > MAX_CONCURRENCY || flags.conns > MAX_CONCURRENCY || flags.watchers > MAX_CONCURRENCY {
        bail!("--clients, --conns and --watchers are capped at {MAX_CONCURRENCY}");
    }
    if flags.duration > MAX_DURATION {
        bail!("--duration is capped at {MAX_DURATION:?}");
    }
    if flags.rate.is_some_and(|rate| !(rate > 0.0 && rate <= 1e6)) {
        bail!("--rate must be above 0 and at most 1000000 puts per second");
    }
    if flags.rate.is_some() && flags.workload != Workload::Watch {
        bail!("--rate applies to --workload watch only");
    }
    if flags.workload == Workload::Watch && flags.watchers == 0 {
        bail!("--workload watch needs --watchers of at least 1");
    }
    Ok(())
}

/// Opens `--conns` connections, connection `i` to endpoint `i % endpoints`.
async fn connect(flags: &Flags) -> Result<Vec<Client>> {
    let options = ConnectOptions::new().with_timeout(flags.request_timeout).with_connect_timeout(Duration::from_secs(5));
    let mut conns = Vec::with_capacity(flags.conns);
    for conn in 0..flags.conns {
        let endpoint = &flags.endpoints[conn % flags.endpoints.len()];
        let url = if endpoint.contains("://") { endpoint.clone() } else { format!("http://{endpoint}") };
        let client = Client::connect([url.as_str()], Some(options.clone())).await.with_context(|| format!("connecting to {url}"))?;
        conns.push(client);
    }
    Ok(conns)
}

/// `http://127.0.0.1:2379`, `localhost:2379`, `[::1]:2379` and the like.
fn is_loopback(endpoint: &str) -> bool {
    let authority = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `250ms`, `10s`, `2m`: Go's `time.ParseDuration`, as etcd's benchmark tool takes it.
fn parse_duration(text: &str) -> Result<Duration> {
    hub_go::duration::parse_unsigned(text.trim()).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_pass() {
        for ok in ["http://127.0.0.1:2379", "127.0.0.1:2379", "localhost:2379", "http://[::1]:2379", "127.5.0.1"] {
            assert!(is_loopback(ok), "{ok}");
        }
        for refused in ["http://10.0.0.1:2379", "example.com:2379", "http://[2001:db8::1]:2379", ""] {
            assert!(!is_loopback(refused), "{refused}");
        }
    }

    #[test]
    fn durations_parse_in_ms_s_and_m() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
