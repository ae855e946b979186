//! etcd's peer prober: every member times a small request to every other
//! member now and then, for `etcd_network_peer_round_trip_time_seconds` and
//! `etcd_network_{active_peers,disconnected_peers_total}`.
//!
//! etcd probes each peer's `/raft/probing` on the peer listener and records
//! the round trip every few seconds, on leader and followers alike; hub asks
//! each peer for its member list (the cheapest read of the peer service).
//! Probes are not raft traffic, so they count in no byte counter.
//!
//! The answers also keep [`PeerActivity`](crate::network::PeerActivity) on
//! every member (etcd's streams connect every member to every other, so any
//! member that becomes leader knows since when its peers have been up), and
//! each probe names its sender, so a member the cluster removed is told so.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::network::encode;
use crate::node::Node;

/// etcd records a round trip every 5 s while a peer is unreachable, every 30 s
/// once it answers; hub probes every 5 s throughout, so a new member's
/// histogram fills soon and a slow link shows within one scrape interval.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// A peer that did not answer is tried again this often: etcd redials a
/// broken stream at once, and a peer back up counts as active from then on.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// A probe slower than this counts as no answer (etcd's dial timeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes every peer each interval until the node is gone.
pub(crate) async fn run(node: Weak<Node>) {
    let mut tick = tokio::time::interval(RETRY_INTERVAL);
    let mut last_probe: HashMap<u64, Instant> = HashMap::new();
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let Ok(me) = encode(&node.member_id()) else { return };
        for (id, member, _) in node.members() {
            if id == node.member_id() {
                continue;
            }
            let due = node.activity().active_since(id).is_none()
                || last_probe.get(&id).is_none_or(|at| at.elapsed() >= PROBE_INTERVAL);
            if !due {
                continue;
            }
            let Ok(mut client) = node.peer(id, &member) else { continue };
            let started = Instant::now();
            last_probe.insert(id, started);
            let took = match tokio::time::timeout(PROBE_TIMEOUT, client.members(me.clone())).await {
                Ok(Ok(_)) => Some(started.elapsed()),
                Ok(Err(e)) => {
                    tracing::debug!(peer = format_args!("{id:x}"), error = %e, "peer probe failed");
                    node.removal().check_answer(&e);
                    None
                }
                Err(_) => {
                    tracing::debug!(peer = format_args!("{id:x}"), "peer probe timed out");
                    None
                }
            };
            match took {
                Some(_) => node.activity().answered(id),
                None => node.activity().failed(id),
            }
            node.metrics().probed(node.member_id(), id, took);
        }
    }
}
