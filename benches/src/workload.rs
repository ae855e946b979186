//! The request-response workloads: put, linearizable and serializable range,
//! txn compare-and-swap and lease grant + put, each driven as a closed loop (a client sends its next request
//! when the previous one answers), like etcd's `tools/benchmark`.
//!
//! Owns how a run is bounded (`--requests`, `--duration`), how clients share
//! connections, and what one operation of each workload sends. It talks to the
//! servers only through `etcd-client`, so the same run works against etcd and hubd.
//! The watch fan-out is in `watch.rs`, the Kubernetes-shaped mix in `kube.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::keyspace::KeySpace;
use crate::report::{LatencyHistogram, RunReport};

/// What each client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Put a `--value-size` value to a random key.
    Put,
    /// Get one random key through the leader's read index (etcd's default read).
    RangeLinearizable,
    /// Get one random key from the member's own state (`--consistency=s`).
    RangeSerializable,
    /// Txn: if the key's mod_revision is what this client last saw, put; else get it.
    TxnCas,
    /// Grant a lease (60 s), then put a value with it: two requests an operation.
    Lease,
    /// Kubernetes-shaped: Pods and node Leases (`kube.rs`).
    Kube,
    /// Watchers on a prefix; writers put under it; latency is put-sent → event-received.
    Watch,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::RangeLinearizable => "range-linearizable",
            Workload::RangeSerializable => "range-serializable",
            Workload::TxnCas => "txn-cas",
            Workload::Lease => "lease",
            Workload::Kube => "kube",
            Workload::Watch => "watch",
        }
    }
}

/// One run's shape, from the command line.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub workload: Workload,
    /// Concurrent request loops (for `watch`: concurrent writers).
    pub clients: usize,
    /// Stop after this many operations in total (for `watch`: puts), if set.
    pub requests: Option<u64>,
    /// Stop after this long, whatever `requests` says.
    pub duration: Duration,
    pub keyspace: KeySpace,
    /// `watch` only: watch streams on the key space's prefix.
    pub watchers: usize,
    /// `watch` only: puts per second over all writers (open loop), or as fast as
    /// answered if unset.
    pub rate: Option<f64>,
}

/// Shared stop rule: a loop takes a ticket before each request and stops when the
/// budget or the deadline is spent, so `--requests` is exact across clients.
pub(crate) struct Budget {
    issued: AtomicU64,
    limit: Option<u64>,
    deadline: Instant,
}

impl Budget {
    pub(crate) fn new(limit: Option<u64>, duration: Duration) -> Self {
        Self { issued: AtomicU64::new(0), limit, deadline: Instant::now() + duration }
    }

    pub(crate) fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match self.limit {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// What one client loop counted.
#[derive(Default)]
struct LoopTally {
    latency: LatencyHistogram,
    errors: u64,
    cas_ok: u64,
    cas_conflict: u64,
}

/// After a failed request, wait this long so a dead endpoint is not hammered in a spin.
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Writes every key of the space once, so range workloads read existing keys.
/// Not measured.
pub async fn populate(conns: &[Client], spec: &LoadSpec) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for client in 0..spec.clients.max(1) {
        let mut kv = conns[client % conns.len()].kv_client();
        let (next, keyspace) = (next.clone(), spec.keyspace.clone());
        loops.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= keyspace.key_count() {
                    return anyhow::Ok(());
                }
                kv.put(keyspace.key(index), keyspace.value(), None).await.context("populating the key space")?;
            }
        }));
    }
    for handle in loops {
        handle.await??;
    }
    Ok(())
}

/// Runs a request-response workload (anything but `watch`) and reports it.
pub async fn run_closed_loop(conns: &[Client], spec: &LoadSpec) -> Result<RunReport> {
    let request = match spec.workload {
        Workload::Put => Request::Put,
        Workload::RangeLinearizable => Request::Get { serializable: false },
        Workload::RangeSerializable => Request::Get { serializable: true },
        Workload::TxnCas => Request::CompareAndSwap,
        Workload::Lease => Request::LeasePut,
        Workload::Watch | Workload::Kube => anyhow::bail!("{} is not a simple closed-loop workload", spec.workload.name()),
    };
    let budget = Arc::new(Budget::new(spec.requests, spec.duration));
    let started = Instant::now();
    let mut loops = Vec::new();
    for client in 0..spec.clients {
        let conn = &conns[client % conns.len()];
        let (budget, keyspace) = (budget.clone(), spec.keyspace.clone());
        loops.push(tokio::spawn(client_loop(conn.clone(), request, keyspace, budget, client as u64)));
    }
    let mut total = LoopTally::default();
    for handle in loops {
        let tally = handle.await.context("client loop panicked")?;
        total.latency.merge(&tally.latency);
        total.errors += tally.errors;
        total.cas_ok += tally.cas_ok;
        total.cas_conflict += tally.cas_conflict;
    }
    let mut extra = Vec::new();
    if spec.workload == Workload::TxnCas {
        // A conflict is a completed txn that took the else branch (another client
        // won the race); it counts as an operation, and this says how many there were.
        extra.push(("cas_ok".to_string(), total.cas_ok.to_string()));
        extra.push(("cas_conflict".to_string(), total.cas_conflict.to_string()));
    }
    Ok(RunReport {
        workload: spec.workload.name().to_string(),
        endpoints: 0,
        clients: spec.clients,
        conns: conns.len(),
        ops: total.latency.count(),
        errors: total.errors,
        elapsed: started.elapsed(),
        latency: total.latency,
        extra,
    })
}

/// The one request a closed-loop client repeats.
#[derive(Clone, Copy)]
enum Request {
    Put,
    Get { serializable: bool },
    CompareAndSwap,
    LeasePut,
}

/// The TTL of the `lease` workload's leases: none expires during a run.
const LEASE_TTL: i64 = 60;

async fn client_loop(conn: Client, request: Request, keyspace: KeySpace, budget: Arc<Budget>, seed: u64) -> LoopTally {
    let (mut kv, mut leases) = (conn.kv_client(), conn.lease_client());
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut tally = LoopTally::default();
    // txn-cas: the mod_revision this client last saw per key (0: "does not exist").
    let mut seen_revision: HashMap<u64, i64> = HashMap::new();
    while budget.take() {
        let index = rng.random_range(0..keyspace.key_count());
        let sent = Instant::now();
        let outcome = match request {
            Request::Put => kv.put(keyspace.key(index), keyspace.value(), None).await.map(|_| ()),
            Request::Get { serializable: false } => kv.get(keyspace.key(index), None).await.map(|_| ()),
            Request::Get { serializable: true } => {
                kv.get(keyspace.key(index), Some(GetOptions::new().with_serializable())).await.map(|_| ())
            }
            Request::LeasePut => match leases.grant(LEASE_TTL, None).await {
                Ok(lease) => {
                    let put = PutOptions::new().with_lease(lease.id());
                    kv.put(keyspace.key(index), keyspace.value(), Some(put)).await.map(|_| ())
                }
                Err(e) => Err(e),
            },
            Request::CompareAndSwap => {
                let expected = seen_revision.get(&index).copied().unwrap_or(0);
                compare_and_swap(&mut kv, keyspace.key(index), keyspace.value(), expected).await.map(|(swapped, revision)| {
                    if swapped {
                        tally.cas_ok += 1;
                    } else {
                        tally.cas_conflict += 1;
                    }
                    seen_revision.insert(index, revision);
                })
            }
        };
        match outcome {
            Ok(()) => tally.latency.record(sent.elapsed()),
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    tally
}

/// One CAS round trip: put `value` if the key's mod_revision is still `expected`,
/// else read it. Returns whether the put happened and the key's mod_revision
/// afterwards.
pub(crate) async fn compare_and_swap(
    kv: &mut KvClient,
    key: Vec<u8>,
    value: Vec<u8>,
    expected: i64,
) -> Result<(bool, i64), etcd_client::Error> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, expected)])
        .and_then([TxnOp::put(key.clone(), value, None)])
        .or_else([TxnOp::get(key, None)]);
    let response = kv.txn(txn).await?;
    if response.succeeded() {
        // The put's mod_revision is the txn's revision.
        return Ok((true, response.header().map_or(0, |h| h.revision())));
    }
    let current = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
        _ => None,
    });
    Ok((false, current.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_hands_out_exactly_the_requested_count() {
        let budget = Budget::new(Some(3), Duration::from_secs(60));
        assert_eq!((0..10).filter(|_| budget.take()).count(), 3);
    }

    #[test]
    fn budget_stops_at_the_deadline() {
        let budget = Budget::new(None, Duration::ZERO);
        assert!(!budget.take());
    }
}
