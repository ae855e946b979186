//! Nemeses: the faults, a schedule drawn from the seed (the same seed gives the
//! same faults on the same targets at the same times; only "the leader" is
//! resolved when the fault starts), and their execution, each logged in the
//! history with its start and end.
//!
//! `disk-full` fills one member's disk as far as hub can tell: the member is
//! restarted with a one-byte `--quota-backend-bytes`, so its next write raises
//! NOSPACE and the whole cluster refuses writes that grow the store (clients
//! see etcd's ResourceExhausted, a definite failure) while reads and deletes
//! go on. The nemesis checks that a write through that member is refused so,
//! then restarts it with its quota and disarms the alarm, as an operator would
//! after freeing space.

use std::collections::HashSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cluster::Cluster;
use crate::history::{Op, Recorder, Status};
use crate::proxy::Degrade;

/// Fault families, as `--nemesis` names them.
pub const FAMILIES: &[&str] = &["kill", "pause", "partition", "latency", "member", "disk", "disk-full"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One(usize),
    /// Members drawn for a minority (or majority, or all).
    Some(usize, u64),
    Leader,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Kill(Target),
    Pause(Target),
    /// Cut the leader off from everyone.
    IsolateLeader,
    /// A random majority and minority.
    Halves(u64),
    /// Two halves joined by one member that sees both.
    Bridge(u64),
    /// One member hears nobody, but is heard.
    OneWay(usize),
    Latency(Duration),
    Loss(f64),
    /// Remove a member, wipe it, add it back.
    Replace(usize),
    /// The next WAL fsync fails (failpoints build).
    FsyncError(Target),
    /// The next WAL record is torn (failpoints build).
    TornWrite(Target),
    /// The member's backend is full: NOSPACE, disarmed at the end.
    DiskFull(usize),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
    pub hold: Duration,
}

/// The faults of a run of `total` with `families` on `n` members.
pub fn schedule(seed: u64, total: Duration, families: &[String], n: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65);
    let mut steps = Vec::new();
    if families.is_empty() {
        return steps;
    }
    let mut at = Duration::from_secs(5);
    // Leave the end of the run quiet, for recovery and the final reads.
    while at + Duration::from_secs(20) < total {
        let family = families[rng.random_range(0..families.len())].as_str();
        let target = match rng.random_range(0..4) {
            0 | 1 => Target::One(rng.random_range(0..n)),
            2 => Target::Some((n - 1) / 2, rng.random()),
            _ => Target::Leader,
        };
        let fault = match family {
            "kill" => match rng.random_range(0..8) {
                0 => Fault::Kill(Target::Some(n / 2 + 1, rng.random())),
                1 => Fault::Kill(Target::Some(n, 0)),
                _ => Fault::Kill(target),
            },
            "pause" => Fault::Pause(target),
            "partition" => match rng.random_range(0..4) {
                0 => Fault::IsolateLeader,
                1 => Fault::Halves(rng.random()),
                2 => Fault::Bridge(rng.random()),
                _ => Fault::OneWay(rng.random_range(0..n)),
            },
            "latency" => {
                if rng.random_bool(0.5) {
                    Fault::Latency(Duration::from_millis(rng.random_range(20..150)))
                } else {
                    Fault::Loss(rng.random_range(0.05..0.3))
                }
            }
            "member" => Fault::Replace(rng.random_range(0..n)),
            "disk" => {
                if rng.random_bool(0.5) {
                    Fault::FsyncError(target)
                } else {
                    Fault::TornWrite(target)
                }
            }
            "disk-full" => Fault::DiskFull(rng.random_range(0..n)),
            _ => continue,
        };
        let hold = Duration::from_millis(rng.random_range(4000..12000));
        steps.push(Step { at, fault, hold });
        at += hold + Duration::from_millis(rng.random_range(3000..8000));
    }
    steps
}

fn members_of(target: Target, n: usize, leader: Option<usize>) -> Vec<usize> {
    match target {
        Target::One(i) => vec![i],
        Target::Leader => leader.into_iter().collect(),
        Target::Some(k, seed) => {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut StdRng::seed_from_u64(seed));
            all.truncate(k);
            all
        }
    }
}

/// Links cut between every member of `a` and every member of `b`, both ways.
fn cut(a: &[usize], b: &[usize]) -> HashSet<(usize, usize)> {
    let mut links = HashSet::new();
    for &x in a {
        for &y in b {
            if x != y {
                links.insert((x, y));
                links.insert((y, x));
            }
        }
    }
    links
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(&mut StdRng::seed_from_u64(seed));
    all
}

/// Starts `fault`; returns the members it hit.
async fn start(cluster: &mut Cluster, fault: &Fault) -> Vec<usize> {
    let n = cluster.members.len();
    let needs_leader = matches!(
        fault,
        Fault::IsolateLeader | Fault::Kill(Target::Leader) | Fault::Pause(Target::Leader) | Fault::FsyncError(Target::Leader) | Fault::TornWrite(Target::Leader)
    );
    let leader = if needs_leader { cluster.leader().await } else { None };
    match fault {
        Fault::Kill(t) => {
            let hit = members_of(*t, n, leader);
            for &i in &hit {
                cluster.kill(i);
            }
            hit
        }
        Fault::Pause(t) => {
            let hit = members_of(*t, n, leader);
            for &i in &hit {
                cluster.pause(i);
            }
            hit
        }
        Fault::IsolateLeader => {
            let hit: Vec<usize> = leader.into_iter().collect();
            let rest: Vec<usize> = (0..n).filter(|i| !hit.contains(i)).collect();
            cluster.net.block(cut(&hit, &rest));
            hit
        }
        Fault::Halves(seed) => {
            let all = shuffled(n, *seed);
            let (a, b) = all.split_at(n / 2);
            cluster.net.block(cut(a, b));
            a.to_vec()
        }
        Fault::Bridge(seed) => {
            let all = shuffled(n, *seed);
            let half = n / 2;
            let (a, b) = (&all[..half], &all[half + 1..]);
            cluster.net.block(cut(a, b));
            vec![all[half]]
        }
        Fault::OneWay(i) => {
            cluster.net.block((0..n).filter(|j| j != i).map(|j| (j, *i)).collect());
            vec![*i]
        }
        Fault::Latency(d) => {
            cluster.net.degrade(Degrade { delay: *d, loss: 0.0 });
            Vec::new()
        }
        Fault::Loss(p) => {
            cluster.net.degrade(Degrade { delay: Duration::ZERO, loss: *p });
            Vec::new()
        }
        Fault::Replace(i) => {
            // Never the leader: hub, as etcd, removes a leader only after a transfer.
            let i = if leader == Some(*i) || cluster.leader().await == Some(*i) { (*i + 1) % n } else { *i };
            match cluster.replace(i).await {
                Ok(()) => vec![i],
                Err(e) => {
                    tracing::warn!(member = i, error = %e, "member replace failed");
                    Vec::new()
                }
            }
        }
        Fault::DiskFull(i) => {
            cluster.kill(*i);
            cluster.members[*i].extra_args = vec!["--quota-backend-bytes".into(), "1".into()];
            if let Err(e) = cluster.restart(*i) {
                tracing::warn!(member = i, error = %e, "restart with a full disk failed");
            }
            vec![*i]
        }
        Fault::FsyncError(t) | Fault::TornWrite(t) => {
            let hit = members_of(*t, n, leader);
            let sig = if matches!(fault, Fault::FsyncError(_)) { "USR1" } else { "USR2" };
            for &i in &hit {
                cluster.signal(i, sig);
            }
            hit
        }
    }
}

/// Undoes every fault: heals the network, resumes and restarts members.
pub fn heal(cluster: &mut Cluster) {
    cluster.net.heal();
    for i in 0..cluster.members.len() {
        cluster.resume(i);
    }
}

/// Restarts every member that is not running; a disk-faulted member is
/// killed first (its WAL refuses writes until reopened).
fn recover(cluster: &mut Cluster, fault: &Fault, hit: &[usize]) {
    if matches!(fault, Fault::FsyncError(_) | Fault::TornWrite(_) | Fault::DiskFull(_)) {
        for &i in hit {
            cluster.kill(i);
            cluster.members[i].extra_args.clear();
        }
    }
    for i in 0..cluster.members.len() {
        if let Err(e) = cluster.restart(i) {
            tracing::warn!(member = i, error = %e, "restart failed");
        }
    }
}

/// Runs the schedule until it ends or `stop` fires, then heals everything.
pub async fn run(cluster: &mut Cluster, steps: &[Step], rec: &Recorder, mut stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut done = 0;
    for step in steps {
        let wait = step.at.saturating_sub(rec.epoch().elapsed());
        if tokio::time::timeout(wait, stop.wait_for(|s| *s)).await.is_ok() {
            break;
        }
        let began = rec.now();
        let hit = start(cluster, &step.fault).await;
        tracing::info!(fault = ?step.fault, members = ?hit, "nemesis: fault on");
        let mut output = json!({"members": hit});
        let on = std::time::Instant::now();
        if let Fault::DiskFull(i) = step.fault {
            let refused = disk_full::refused(cluster, i, step.hold).await;
            tracing::info!(member = i, refused, "nemesis: a write through the full member got NOSPACE");
            output["nospace"] = json!(refused);
        }
        let _ = tokio::time::timeout(step.hold.saturating_sub(on.elapsed()), stop.wait_for(|s| *s)).await;
        heal(cluster);
        recover(cluster, &step.fault, &hit);
        if matches!(step.fault, Fault::DiskFull(_)) {
            let disarmed = disk_full::disarm(cluster).await;
            tracing::info!(disarmed, "nemesis: NOSPACE disarmed");
            output["disarmed"] = json!(disarmed);
        }
        tracing::info!(fault = ?step.fault, "nemesis: healed");
        rec.record(Op {
            process: "nemesis".into(),
            op: format!("nemesis/{}", name(&step.fault)),
            key: String::new(),
            input: json!(format!("{:?}", step.fault)),
            output,
            status: Status::Ok,
            start: began,
            end: rec.now(),
            member: hit.first().copied().unwrap_or(0),
        });
        done += 1;
    }
    heal(cluster);
    done
}

pub fn name(f: &Fault) -> &'static str {
    match f {
        Fault::Kill(_) => "kill",
        Fault::Pause(_) => "pause",
        Fault::IsolateLeader => "partition-leader",
        Fault::Halves(_) => "partition-halves",
        Fault::Bridge(_) => "partition-bridge",
        Fault::OneWay(_) => "partition-one-way",
        Fault::Latency(_) => "latency",
        Fault::Loss(_) => "loss",
        Fault::Replace(_) => "member-replace",
        Fault::FsyncError(_) => "fsync-error",
        Fault::TornWrite(_) => "torn-write",
        Fault::DiskFull(_) => "disk-full",
    }
}

/// The client side of the `disk-full` nemesis.
mod disk_full {
    use std::time::{Duration, Instant};

    use hub_proto::etcdserverpb::{
        alarm_request::AlarmAction, kv_client::KvClient, maintenance_client::MaintenanceClient, AlarmRequest,
        AlarmType, PutRequest,
    };
    use tonic::Code;

    use crate::cluster::Cluster;

    /// A key no workload uses: the probe must never be written.
    const PROBE: &[u8] = b"hub-chaos/disk-full-probe";

    /// Whether a put through member `i` is refused with NOSPACE within
    /// `limit` (the member is starting meanwhile).
    pub async fn refused(cluster: &Cluster, i: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut kv = KvClient::new(cluster.channel(i));
        while Instant::now() < deadline {
            let put = PutRequest { key: PROBE.to_vec(), value: b"x".to_vec(), ..Default::default() };
            match tokio::time::timeout(Duration::from_secs(2), kv.put(put)).await {
                Ok(Err(s)) if s.code() == Code::ResourceExhausted => return true,
                Ok(Ok(_)) => {
                    tracing::error!(member = i, "a put through a member over its quota was accepted");
                    return false;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        false
    }

    /// Disarms every alarm through any member that answers (etcdctl's
    /// `alarm disarm`); false if none did within a while.
    pub async fn disarm(cluster: &Cluster) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            for ch in cluster.channels() {
                let mut m = MaintenanceClient::new(ch);
                let get = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: AlarmType::None as i32 };
                let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(2), m.alarm(get)).await else { continue };
                let mut all = true;
                for a in list.into_inner().alarms {
                    let off = AlarmRequest { action: AlarmAction::Deactivate as i32, member_id: a.member_id, alarm: a.alarm };
                    all &= matches!(tokio::time::timeout(Duration::from_secs(2), m.alarm(off)).await, Ok(Ok(_)));
                }
                if all {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let families: Vec<String> = FAMILIES.iter().map(|f| f.to_string()).collect();
        let a = schedule(42, Duration::from_secs(600), &families, 5);
        let b = schedule(42, Duration::from_secs(600), &families, 5);
        let c = schedule(43, Duration::from_secs(600), &families, 5);
        let show = |s: &[Step]| format!("{s:?}");
        assert_eq!(show(&a), show(&b));
        assert_ne!(show(&a), show(&c));
        assert!(a.len() > 20);
    }
}
