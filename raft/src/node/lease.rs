//! Lease keep-alives and time-to-live, answered by the leader (which alone
//! counts leases down): a follower forwards them.

use super::*;

/// A lease as its time-to-live query reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseTtl {
    /// Seconds left (-1 once expired).
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Node {
    /// Renews a lease on the leader (leases are counted down there only).
    pub async fn lease_renew(&self, id: i64) -> Result<i64, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(self.renew_here(id)?);
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.lease_renew(encode(&id).map_err(corrupt)?).await.map_err(|s| unavailable(&s))?;
        decode::<Result<i64, String>>(reply.get_ref()).map_err(corrupt)?.map_err(refusal)
    }

    /// Renews a lease in this member's lessor (the leader's is the one that counts).
    pub(crate) fn renew_here(&self, id: i64) -> Result<i64, EtcdError> {
        self.state.lock().lease_renew(id, Instant::now())
    }

    /// A lease's remaining and granted TTL and keys, as the leader counts them
    /// (`None`: no such lease).
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseTtl>, StoreError> {
        let (leader, node) = self.leader()?;
        if leader == self.id {
            return Ok(self.local_lease_ttl(id));
        }
        let mut client = self.peer(leader, &node)?;
        let reply = client.lease_time_to_live(encode(&id).map_err(corrupt)?).await.map_err(|s| unavailable(&s))?;
        decode(reply.get_ref()).map_err(corrupt)
    }

    pub(crate) fn local_lease_ttl(&self, id: i64) -> Option<LeaseTtl> {
        let sm = self.state.lock();
        sm.lease(id).map(|l| LeaseTtl {
            remaining: l.remaining_secs(Instant::now()),
            granted: l.ttl,
            keys: l.keys.iter().cloned().collect(),
        })
    }
}
