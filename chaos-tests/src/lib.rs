//! hub's Jepsen-style chaos suite: real hubd processes behind fault-injecting
//! proxies, recorded histories, and linearizability and watch checkers.
//!
//! Place: outside the request path, driving whole clusters as clients do.
//! - [`cluster`]: hubd processes on loopback, each behind a peer and a client
//!   proxy ([`proxy`]); kill -9, restart, pause, member replacement.
//! - [`workload`]: clients recording every operation in the [`history`].
//! - [`nemesis`]: the faults and their seeded schedule.
//! - [`checker`]: linearizability (WGL, per key), sets, watches, leases and the
//!   Kubernetes storage pattern.
//!
//! [`run`] ties them together: start, load and fault for a while, heal,
//! read the final state, check, and summarize.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use hub_proto::etcdserverpb::RangeRequest;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use checker::Anomaly;
use cluster::{Cluster, HubdOptions};
use history::{Recorder, Status};
use workload::watch::Watcher;
use workload::Ctx;

#[derive(Debug, Clone)]
pub struct Config {
    pub hubd: PathBuf,
    pub members: usize,
    pub time: Duration,
    /// Fault families (see [`nemesis::FAMILIES`]).
    pub nemesis: Vec<String>,
    pub seed: u64,
    /// Bugs to inject into hubd (a `failpoints` build).
    pub bugs: Vec<String>,
    /// Where the history, summary and member logs go.
    pub dir: PathBuf,
    pub op_timeout: Duration,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub ops: BTreeMap<String, Counts>,
    pub faults: BTreeMap<String, usize>,
    pub anomalies: Vec<Anomaly>,
    /// Register keys whose linearizability the search could not decide.
    pub undecided_keys: Vec<String>,
    pub history: PathBuf,
}

impl Summary {
    pub fn print(&self) {
        println!("hub-chaos summary (seed {})", self.seed);
        println!("  history: {}", self.history.display());
        let total = |f: fn(&Counts) -> usize| self.ops.values().map(f).sum::<usize>();
        println!("  ops: {} ok, {} failed, {} indeterminate", total(|c| c.ok), total(|c| c.fail), total(|c| c.info));
        for (op, c) in &self.ops {
            println!("    {op:<20} ok {:>7}  failed {:>6}  indeterminate {:>6}", c.ok, c.fail, c.info);
        }
        let faults: usize = self.faults.values().sum();
        println!("  faults: {faults}");
        for (f, n) in &self.faults {
            println!("    {f:<20} {n}");
        }
        if !self.undecided_keys.is_empty() {
            println!("  undecided register keys (search budget exhausted): {}", self.undecided_keys.len());
        }
        println!("  anomalies: {}", self.anomalies.len());
        for a in self.anomalies.iter().take(20) {
            println!("    {} on {}: {}", a.kind, a.key, a.detail);
            for op in &a.ops {
                println!("      {}", serde_json::to_string(op).unwrap_or_default());
            }
        }
    }
}

/// Runs the whole test and checks it.
pub async fn run(config: Config) -> anyhow::Result<Summary> {
    // Without the hooks the bugs and faults would not happen, and a run meant
    // to prove the checkers catch them would pass for the wrong reason.
    if (!config.bugs.is_empty() || config.nemesis.iter().any(|f| f == "disk")) && !cluster::has_failpoints(&config.hubd)? {
        anyhow::bail!(
            "{} was built without `--features failpoints`, which injected bugs and disk faults need \
             (cargo build --release -p hub-server --features failpoints)",
            config.hubd.display()
        );
    }
    std::fs::create_dir_all(&config.dir)?;
    let history = config.dir.join("history.jsonl");
    let rec = Recorder::new(Some(&history))?;
    let steps = nemesis::schedule(config.seed, config.time, &config.nemesis, config.members);
    tracing::info!(faults = steps.len(), seed = config.seed, "schedule drawn");
    let opts = HubdOptions { bin: config.hubd.clone(), bugs: config.bugs.clone() };
    // A fresh cluster: never the data of an earlier run in the same directory.
    let cluster_dir = config.dir.join("cluster");
    if cluster_dir.exists() {
        std::fs::remove_dir_all(&cluster_dir)?;
    }
    let mut cluster = Cluster::start(config.members, opts, &cluster_dir).await?;
    tracing::info!(dir = %config.dir.display(), "cluster up");

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let ctx = Ctx { rec: rec.clone(), channels: cluster.channels(), op_timeout: config.op_timeout, stop: stop.clone() };
    let mut seeds = StdRng::seed_from_u64(config.seed);
    let mut workers = Vec::new();
    let groups: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for id in 0..10 {
        workers.push(tokio::spawn(workload::register::worker(ctx.clone(), id, id % 2, groups[id % 2].clone(), seeds.random())));
    }
    for id in 0..2 {
        workers.push(tokio::spawn(workload::set::worker(ctx.clone(), id, seeds.random())));
        workers.push(tokio::spawn(workload::k8s::worker(ctx.clone(), id, seeds.random())));
    }
    let leases: workload::lease::Leases = Arc::default();
    let keepers = Arc::new(Mutex::new(Vec::new()));
    workers.push(tokio::spawn(workload::lease::worker(ctx.clone(), seeds.random(), leases.clone(), keepers.clone())));
    let (done_tx, done) = tokio::sync::watch::channel(None);
    let mut watchers = Vec::new();
    for (name, prefix) in [("watch-0", ""), ("watch-1", ""), ("watch-2", ""), ("k8s-watch", workload::k8s::PREFIX)] {
        let w = Watcher::new(name, prefix);
        let task = tokio::spawn(workload::watch::run(ctx.clone(), w.clone(), seeds.random(), done.clone()));
        watchers.push((w, task));
    }

    let timer = {
        let time = config.time;
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            let _ = stop_tx.send(true);
        })
    };
    let faults = nemesis::run(&mut cluster, &steps, &rec, stop.clone()).await;
    let _ = timer.await;
    tracing::info!(faults, "load over; recovering");
    nemesis::heal(&mut cluster);
    for i in 0..cluster.members.len() {
        cluster.restart(i)?;
    }
    let mut anomalies = Vec::new();
    if let Err(e) = cluster.wait_healthy(Duration::from_secs(90)).await {
        anomalies.push(checker_anomaly("unavailable", format!("the healed cluster did not recover: {e}")));
    }
    for w in workers {
        let _ = tokio::time::timeout(config.op_timeout + Duration::from_secs(5), w).await;
    }

    // The final revision, then every watcher must reach it.
    let final_rev = final_revision(&cluster).await?;
    let _ = done_tx.send(Some(final_rev));
    for (w, task) in &mut watchers {
        if tokio::time::timeout(Duration::from_secs(30), &mut *task).await.is_err() {
            task.abort();
            tracing::warn!(watcher = %w.name, "watcher did not catch up");
        }
    }
    let reference = Watcher::new("reference", "");
    let task = tokio::spawn(workload::watch::run(ctx.clone(), reference.clone(), seeds.random(), done.clone()));
    if tokio::time::timeout(Duration::from_secs(60), task).await.is_err() {
        anomalies.push(checker_anomaly("watch-reference", format!("could not read the history up to revision {final_rev}")));
    }
    // Watchers may have read past the final revision (a lease expiring since).
    let reference: Vec<_> = reference.events().into_iter().filter(|e| e.revision <= final_rev).collect();
    let state = checker::replay(&reference);
    match final_range(&cluster, final_rev).await {
        Ok(range) => {
            let replayed: Vec<(String, String, i64)> = state.values().map(|e| (e.key.clone(), e.value.clone(), e.mod_revision)).collect();
            if range != replayed {
                let first = range.iter().zip(&replayed).find(|(a, b)| a != b);
                anomalies.push(checker_anomaly("watch-vs-range", format!("the watch history and a range at revision {final_rev} disagree ({} vs {} keys; first difference {first:?})", replayed.len(), range.len())));
            }
        }
        Err(e) => anomalies.push(checker_anomaly("unavailable", format!("final range failed: {e}"))),
    }
    let now = rec.now();
    for k in keepers.lock().drain(..) {
        k.abort();
    }
    rec.flush();
    drop(cluster);

    let ops = rec.ops();
    let (lin, undecided_keys) = checker::registers(&ops);
    anomalies.extend(lin);
    anomalies.extend(checker::sets(&ops, &state));
    anomalies.extend(checker::durability(&ops, &reference));
    anomalies.extend(checker::reference(&reference));
    for (w, _) in &watchers {
        anomalies.extend(checker::watcher(w, &reference, final_rev));
    }
    anomalies.extend(checker::leases(&leases.lock(), &reference, &state, now));
    anomalies.extend(checker::k8s(&ops, &state));

    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut fault_counts: BTreeMap<String, usize> = BTreeMap::new();
    for op in &ops {
        if let Some(f) = op.op.strip_prefix("nemesis/") {
            *fault_counts.entry(f.to_string()).or_default() += 1;
            continue;
        }
        let c = counts.entry(op.op.clone()).or_default();
        match op.status {
            Status::Ok => c.ok += 1,
            Status::Fail => c.fail += 1,
            Status::Info => c.info += 1,
        }
    }
    let summary = Summary { seed: config.seed, ops: counts, faults: fault_counts, anomalies, undecided_keys, history };
    std::fs::write(config.dir.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    Ok(summary)
}

fn checker_anomaly(kind: &str, detail: String) -> Anomaly {
    Anomaly { kind: kind.into(), key: String::new(), detail, ops: Vec::new() }
}

/// The cluster's revision, read linearizably from any member that answers.
async fn final_revision(cluster: &Cluster) -> anyhow::Result<i64> {
    for attempt in 0..60 {
        let ch = cluster.channel(attempt % cluster.members.len());
        let req = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), cluster::kv(&ch).range(req)).await {
            return Ok(r.into_inner().header.map_or(0, |h| h.revision));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("no member answered a read")
}

/// Every key at `revision`, paginated: (key, value, mod_revision), from the
/// first member that answers.
async fn final_range(cluster: &Cluster, revision: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut last = None;
    for attempt in 0..20 {
        match range_all(cluster, attempt % cluster.members.len(), revision).await {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no member answered")))
}

async fn range_all(cluster: &Cluster, member: usize, revision: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut kv = cluster::kv(&cluster.channel(member));
    let mut from = vec![0];
    let mut out = Vec::new();
    loop {
        let req = RangeRequest { key: from.clone(), range_end: vec![0], revision, limit: 2000, ..Default::default() };
        let page = tokio::time::timeout(Duration::from_secs(10), kv.range(req)).await??.into_inner();
        out.extend(page.kvs.iter().map(|kv| {
            (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision)
        }));
        match page.kvs.last() {
            Some(last) if page.more => {
                from = last.key.clone();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}
