//! hub-chaos: runs hub's Jepsen-style chaos test and exits 1 on any anomaly.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hub_chaos_tests::{nemesis, run, Config};

/// Starts a hub cluster behind fault-injecting proxies, runs the workloads
/// under the nemeses, checks the history and prints a summary.
#[derive(Parser, Debug)]
#[command(name = "hub-chaos")]
struct Args {
    /// The hubd binary (a `--features failpoints` build for disk faults and injected bugs).
    #[arg(long, default_value = "target/release/hubd")]
    hubd: PathBuf,
    /// How long to run the workloads, e.g. 30s, 3m, 1h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    time: Duration,
    /// Fault families, comma-separated: kill, pause, partition, latency, member,
    /// disk (needs a failpoints build), disk-full (NOSPACE), all (everything
    /// but disk unless --failpoints), none.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seed of the fault schedule and the workloads' choices.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// A bug to inject into hubd (stale-read, ack-before-fsync); needs --failpoints.
    #[arg(long = "inject-bug")]
    bugs: Vec<String>,
    /// hubd was built with `--features failpoints`: "all" includes disk faults.
    #[arg(long)]
    failpoints: bool,
    /// Output directory (history.jsonl, summary.json, member logs).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the fault schedule the seed draws, and exit.
    #[arg(long)]
    print_schedule: bool,
    /// Client timeout per operation; a timed-out write is indeterminate.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    op_timeout: Duration,
}

/// `30s`, `2m`, `1h30m`: Go's `time.ParseDuration`, as etcd's flags take it.
fn parse_duration(s: &str) -> Result<Duration, String> {
    hub_go::duration::parse_unsigned(s)
}

fn families(spec: &str, failpoints: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for f in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match f {
            "all" => out.extend(nemesis::FAMILIES.iter().filter(|f| failpoints || **f != "disk").map(|f| f.to_string())),
            "none" => {}
            f if nemesis::FAMILIES.contains(&f) => out.push(f.to_string()),
            f => return Err(format!("unknown nemesis {f:?} (one of {:?}, all, none)", nemesis::FAMILIES)),
        }
    }
    out.dedup();
    Ok(out)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let nemesis = match families(&args.nemesis, args.failpoints) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hub-chaos: {e}");
            std::process::exit(2);
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    if args.print_schedule {
        for step in nemesis::schedule(seed, args.time, &nemesis, args.members) {
            println!("{:>8.1}s  {:?} for {:.1}s", step.at.as_secs_f64(), step.fault, step.hold.as_secs_f64());
        }
        return;
    }
    let dir = args.dir.unwrap_or_else(|| std::env::temp_dir().join(format!("hub-chaos-{seed}")));
    let config = Config { hubd: args.hubd, members: args.members, time: args.time, nemesis, seed, bugs: args.bugs, dir, op_timeout: args.op_timeout };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub-chaos: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(summary) => {
            summary.print();
            std::process::exit(if summary.anomalies.is_empty() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("hub-chaos: {e:#}");
            std::process::exit(2);
        }
    }
}
