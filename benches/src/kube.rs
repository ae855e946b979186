//! The Kubernetes-shaped workload: what an API server asks of its store for
//! Pods and node Leases, as a closed loop per client, with the API server's
//! watch cache (one watch per resource prefix) open during the run.
//!
//! Each operation is one request, picked at random with the weights of
//! [`Op::pick`]:
//! - get a Pod (linearizable read of one key);
//! - update a Pod by compare-and-swap on its mod_revision (the API server's
//!   `GuaranteedUpdate`: `if mod_revision == seen then put else get`);
//! - renew a node Lease (the kubelet's heartbeat, the same CAS on a small object);
//! - create a Pod (`if create_revision == 0 then put`) or delete one this
//!   client created (`if mod_revision == seen then delete`): churn;
//! - list Pods, one page (`limit` 100, linearizable), as a paginated LIST.
//!
//! Pods are `--value-size` bytes (default 2 KiB here, about a Pod in protobuf),
//! Leases 300 bytes. Every Pod and Lease is written once before the run, not
//! measured.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, WatchOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::keyspace::ROOT_PREFIX;
use crate::report::{LatencyHistogram, RunReport};
use crate::workload::{compare_and_swap, Budget, LoadSpec, ERROR_BACKOFF};

/// Node Leases (one per node, renewed by CAS).
const NODES: u64 = 100;
const LEASE_BYTES: usize = 300;
/// A LIST page.
const LIST_LIMIT: i64 = 100;

#[derive(Clone, Copy, Debug)]
enum Op {
    GetPod,
    UpdatePod,
    RenewLease,
    Churn,
    ListPods,
}

impl Op {
    /// 35 % gets, 25 % Pod updates, 20 % Lease renewals, 10 % creates and
    /// deletes, 10 % LIST pages.
    fn pick(rng: &mut SmallRng) -> Op {
        match rng.random_range(0..100) {
            0..35 => Op::GetPod,
            35..60 => Op::UpdatePod,
            60..80 => Op::RenewLease,
            80..90 => Op::Churn,
            _ => Op::ListPods,
        }
    }
}

fn pods_prefix() -> String {
    format!("{ROOT_PREFIX}kube/registry/pods/default/")
}

fn leases_prefix() -> String {
    format!("{ROOT_PREFIX}kube/registry/leases/kube-node-lease/")
}

fn pod_key(i: u64) -> Vec<u8> {
    format!("{}pod-{i:06}", pods_prefix()).into_bytes()
}

fn lease_key(i: u64) -> Vec<u8> {
    format!("{}node-{i:04}", leases_prefix()).into_bytes()
}

/// Writes every Pod and Lease once (not measured).
async fn populate(conns: &[Client], spec: &LoadSpec) -> Result<()> {
    let pods = spec.keyspace.key_count();
    let next = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for client in 0..spec.clients.max(1) {
        let mut kv = conns[client % conns.len()].kv_client();
        let (next, pod) = (next.clone(), vec![b'p'; spec.keyspace.value_size()]);
        loops.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (key, value) = match i {
                    i if i < pods => (pod_key(i), pod.clone()),
                    i if i < pods + NODES => (lease_key(i - pods), vec![b'l'; LEASE_BYTES]),
                    _ => return anyhow::Ok(()),
                };
                kv.put(key, value, None).await.context("populating Pods and Leases")?;
            }
        }));
    }
    for handle in loops {
        handle.await??;
    }
    Ok(())
}

/// The watch cache: one watch per prefix, drained until `stop`; returns the events seen.
async fn watch_cache(conn: Client, prefix: String, stop: tokio::sync::watch::Receiver<bool>) -> Result<u64> {
    let mut stop = stop;
    let mut stream = conn.watch_client().watch(prefix, Some(WatchOptions::new().with_prefix())).await.context("watch")?;
    let mut events = 0;
    loop {
        tokio::select! {
            message = stream.message() => match message? {
                Some(response) => events += response.events().len() as u64,
                None => return Ok(events),
            },
            _ = stop.changed() => return Ok(events),
        }
    }
}

/// Runs the Kubernetes-shaped workload and reports it.
pub async fn run_kube(conns: &[Client], spec: &LoadSpec) -> Result<RunReport> {
    populate(conns, spec).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watches: Vec<_> = [pods_prefix(), leases_prefix()]
        .into_iter()
        .enumerate()
        .map(|(i, prefix)| tokio::spawn(watch_cache(conns[i % conns.len()].clone(), prefix, stopped.clone())))
        .collect();
    let budget = Arc::new(Budget::new(spec.requests, spec.duration));
    let started = Instant::now();
    let mut loops = Vec::new();
    for client in 0..spec.clients {
        let kv = conns[client % conns.len()].kv_client();
        let (budget, pods, pod_bytes) = (budget.clone(), spec.keyspace.key_count(), spec.keyspace.value_size());
        loops.push(tokio::spawn(client_loop(kv, budget, pods, pod_bytes, client as u64)));
    }
    let (mut latency, mut errors) = (LatencyHistogram::new(), 0);
    for handle in loops {
        let (l, e) = handle.await.context("client loop panicked")?;
        latency.merge(&l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let mut watched = 0;
    for handle in watches {
        watched += handle.await.context("watch panicked")??;
    }
    Ok(RunReport {
        workload: "kube".to_string(),
        endpoints: 0,
        clients: spec.clients,
        conns: conns.len(),
        ops: latency.count(),
        errors,
        elapsed,
        latency,
        extra: vec![("watch_events".to_string(), watched.to_string())],
    })
}

async fn client_loop(mut kv: KvClient, budget: Arc<Budget>, pods: u64, pod_bytes: usize, seed: u64) -> (LatencyHistogram, u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut latency, mut errors) = (LatencyHistogram::new(), 0);
    // The mod_revision this client last saw per key (0: not known, the CAS then reads it).
    let mut seen: HashMap<Vec<u8>, i64> = HashMap::new();
    // Pods this client created and has not deleted yet, oldest first.
    let mut created: VecDeque<Vec<u8>> = VecDeque::new();
    let mut serial = 0u64;
    let (pod, lease) = (vec![b'p'; pod_bytes], vec![b'l'; LEASE_BYTES]);
    while budget.take() {
        let sent = Instant::now();
        let outcome = match Op::pick(&mut rng) {
            Op::GetPod => kv.get(pod_key(rng.random_range(0..pods)), None).await.map(|_| ()),
            Op::UpdatePod => cas_put(&mut kv, &mut seen, pod_key(rng.random_range(0..pods)), pod.clone()).await,
            Op::RenewLease => cas_put(&mut kv, &mut seen, lease_key(rng.random_range(0..NODES)), lease.clone()).await,
            Op::Churn if created.len() < 8 => {
                serial += 1;
                let key = format!("{}churn-{seed}-{serial}", pods_prefix()).into_bytes();
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), pod.clone(), None)]);
                kv.txn(txn).await.map(|r| {
                    if r.succeeded() {
                        seen.insert(key.clone(), r.header().map_or(0, |h| h.revision()));
                        created.push_back(key);
                    }
                })
            }
            Op::Churn => {
                let key = created.pop_front().unwrap_or_default();
                let expected = seen.remove(&key).unwrap_or(0);
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, expected)])
                    .and_then([TxnOp::delete(key, None)]);
                kv.txn(txn).await.map(|_| ())
            }
            Op::ListPods => {
                let page = GetOptions::new().with_prefix().with_limit(LIST_LIMIT);
                kv.get(pods_prefix(), Some(page)).await.map(|_| ())
            }
        };
        match outcome {
            Ok(()) => latency.record(sent.elapsed()),
            Err(_) => {
                errors += 1;
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    (latency, errors)
}

/// The API server's `GuaranteedUpdate`: put if the key's mod_revision is still
/// the one last seen, else read the current one (and try again next time).
async fn cas_put(kv: &mut KvClient, seen: &mut HashMap<Vec<u8>, i64>, key: Vec<u8>, value: Vec<u8>) -> Result<(), etcd_client::Error> {
    let expected = seen.get(&key).copied().unwrap_or(0);
    let (_, revision) = compare_and_swap(kv, key.clone(), value, expected).await?;
    seen.insert(key, revision);
    Ok(())
}
