//! The watch fan-out workload: `--watchers` watch streams on one prefix, `--clients`
//! writers putting under it, and for every event each watcher receives, the time from
//! the put being sent to the event arriving.
//!
//! Owns the watchers' lifecycle (created before the first put, so none is missed;
//! drained after the last put, for at most `DRAIN_GRACE`). Throughput is events
//! delivered per second, summed over watchers, like etcd's `benchmark watch-latency`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, KvClient, WatchOptions, WatchStream};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch as signal;

use crate::keyspace::{sent_at, KeySpace};
use crate::report::{LatencyHistogram, RunReport};
use crate::workload::{Budget, LoadSpec};

/// How long watchers may keep receiving after the last put before the run gives up on
/// the missing events (they are then reported as `missed`).
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// How long a watcher may take to be created.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one watcher saw.
struct WatcherTally {
    latency: LatencyHistogram,
    events: u64,
    /// When (since the run's epoch) its last event arrived.
    last_event: Duration,
    failed: bool,
}

pub async fn run_watch(conns: &[Client], spec: &LoadSpec) -> Result<RunReport> {
    // Send times in values are measured from here; watchers and writers share it.
    let epoch = Instant::now();
    // Tells watchers how many puts were acknowledged once the writers are done.
    let (puts_done, puts_known) = signal::channel::<Option<u64>>(None);

    let mut watchers = Vec::new();
    for watcher in 0..spec.watchers {
        let stream = create_watcher(&conns[watcher % conns.len()], spec.keyspace.prefix())
            .await
            .with_context(|| format!("creating watcher {watcher}"))?;
        let hard_stop = tokio::time::Instant::now() + spec.duration + DRAIN_GRACE;
        watchers.push(tokio::spawn(receive_events(stream, epoch, puts_known.clone(), hard_stop)));
    }

    let started = epoch.elapsed();
    let budget = Arc::new(Budget::new(spec.requests, spec.duration));
    let puts = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for writer in 0..spec.clients {
        let kv = conns[writer % conns.len()].kv_client();
        let (budget, puts, keyspace) = (budget.clone(), puts.clone(), spec.keyspace.clone());
        // Each writer's share of --rate, started at an even offset from the others.
        let pace = spec.rate.map(|rate| {
            let period = Duration::from_secs_f64(spec.clients as f64 / rate);
            let start = tokio::time::Instant::now() + period.mul_f64(writer as f64 / spec.clients as f64);
            let mut ticks = tokio::time::interval_at(start, period);
            // A put answered late does not make the next ones burst to catch up.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        writers.push(tokio::spawn(write_loop(kv, keyspace, budget, puts, epoch, writer as u64, pace)));
    }
    let mut put_errors = 0;
    for handle in writers {
        put_errors += handle.await.context("writer panicked")?;
    }
    let puts = puts.load(Ordering::Relaxed);
    // Receivers outlive this send: `puts_done` is held until they are joined, so
    // their `changed()` never sees a closed channel.
    puts_done.send_replace(Some(puts));

    let mut latency = LatencyHistogram::new();
    let (mut events, mut last_event, mut failed_watchers) = (0u64, started, 0u64);
    for handle in watchers {
        let tally = handle.await.context("watcher panicked")?;
        latency.merge(&tally.latency);
        events += tally.events;
        last_event = last_event.max(tally.last_event);
        failed_watchers += u64::from(tally.failed);
    }
    drop(puts_done);

    let expected = puts * spec.watchers as u64;
    Ok(RunReport {
        workload: "watch".to_string(),
        endpoints: 0,
        clients: spec.clients,
        conns: conns.len(),
        ops: events,
        errors: put_errors + failed_watchers,
        elapsed: last_event.saturating_sub(started),
        latency,
        extra: vec![
            ("watchers".to_string(), spec.watchers.to_string()),
            ("puts".to_string(), puts.to_string()),
            ("missed".to_string(), expected.saturating_sub(events).to_string()),
        ],
    })
}

/// Opens a watch stream on `prefix` and waits for the server's "created" answer, so
/// every later put is seen.
async fn create_watcher(conn: &Client, prefix: &str) -> Result<WatchStream> {
    let mut client = conn.watch_client();
    let mut stream = client.watch(prefix, Some(WatchOptions::new().with_prefix())).await?;
    let first = tokio::time::timeout(CREATE_TIMEOUT, stream.message()).await.context("no answer to the watch create")??;
    match first {
        Some(response) if response.created() && !response.canceled() => Ok(stream),
        Some(response) => bail!("watch not created: {}", response.cancel_reason()),
        None => bail!("watch stream closed before it was created"),
    }
}

async fn receive_events(
    mut stream: WatchStream,
    epoch: Instant,
    mut puts_known: signal::Receiver<Option<u64>>,
    hard_stop: tokio::time::Instant,
) -> WatcherTally {
    let mut tally = WatcherTally { latency: LatencyHistogram::new(), events: 0, last_event: Duration::ZERO, failed: false };
    loop {
        let puts = *puts_known.borrow_and_update();
        if let Some(puts) = puts {
            if tally.events >= puts {
                break;
            }
        }
        // Once the writers are done, wait at most DRAIN_GRACE for the rest.
        let stop = match puts {
            Some(_) => hard_stop.min(tokio::time::Instant::now() + DRAIN_GRACE),
            None => hard_stop,
        };
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(response)) => {
                    let arrived = epoch.elapsed();
                    for event in response.events() {
                        if let Some(sent) = event.kv().and_then(|kv| sent_at(kv.value())) {
                            tally.latency.record(arrived.saturating_sub(sent));
                            tally.events += 1;
                            tally.last_event = arrived;
                        }
                    }
                    if response.canceled() {
                        tally.failed = true;
                        break;
                    }
                }
                Ok(None) | Err(_) => {
                    tally.failed = true;
                    break;
                }
            },
            _ = puts_known.changed() => {}
            _ = tokio::time::sleep_until(stop) => break,
        }
    }
    tally
}

/// Puts stamped values to random keys until the budget is spent, each on the next
/// tick of `pace` if given; returns its errors.
async fn write_loop(
    mut kv: KvClient,
    keyspace: KeySpace,
    budget: Arc<Budget>,
    puts: Arc<AtomicU64>,
    epoch: Instant,
    seed: u64,
    mut pace: Option<tokio::time::Interval>,
) -> u64 {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut errors = 0;
    loop {
        if let Some(ticks) = pace.as_mut() {
            ticks.tick().await;
        }
        if !budget.take() {
            break;
        }
        let key = keyspace.key(rng.random_range(0..keyspace.key_count()));
        match kv.put(key, keyspace.stamped_value(epoch), None).await {
            Ok(_) => {
                puts.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    errors
}
