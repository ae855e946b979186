//! Lease keep-alives and time-to-live go to the leader, which alone counts
//! leases down: on the leader they are answered by its [`LeaderLeases`]
//! (the server layer), on a follower forwarded there. Only the routing lives
//! here; what a renewal or a time-to-live query does is the server layer's.

use super::*;

/// A lease as its time-to-live query reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseTtl {
    /// Seconds left (-1 once expired).
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

/// The leader's answers to the lease calls every member routes to it
/// (implemented by the server layer, `hub_etcdserver::lease`; the peer
/// service calls it for what followers forward).
pub trait LeaderLeases: Send + Sync + 'static {
    /// Renews lease `id`; its TTL in seconds.
    fn renew(&self, id: i64) -> Result<i64, EtcdError>;
    /// Lease `id`'s remaining and granted TTL and keys (`None`: no such lease).
    fn time_to_live(&self, id: i64) -> Option<LeaseTtl>;
}

impl Node {
    /// Renews a lease on the leader: `leases` here, or the leader's through the peer transport.
    pub async fn lease_renew(&self, leases: &dyn LeaderLeases, id: i64) -> Result<i64, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(leases.renew(id)?);
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.lease_renew(encode(&id).map_err(corrupt)?).await.map_err(|s| unavailable(&s))?;
        decode::<Result<i64, String>>(reply.get_ref()).map_err(corrupt)?.map_err(refusal)
    }

    /// A lease's time to live as the leader counts it: `leases` here, or the leader's.
    pub async fn lease_time_to_live(&self, leases: &dyn LeaderLeases, id: i64) -> Result<Option<LeaseTtl>, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(leases.time_to_live(id));
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.lease_time_to_live(encode(&id).map_err(corrupt)?).await.map_err(|s| unavailable(&s))?;
        decode(reply.get_ref()).map_err(corrupt)
    }
}
