//! Leases: IDs with a time to live, and the keys attached to them.
//!
//! Like etcd's `lease/lessor.go`, the lease set and each lease's granted TTL are
//! durable (table `lease`), while expiry deadlines live only in memory: a member
//! that starts (or, later, becomes leader) gives every lease its full TTL again.
//! The lessor never deletes keys itself; expired leases are reported to the
//! server, which proposes their revocation through the apply path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use hub_proto::leasepb;
use prost::Message;

use crate::backend::{Table, WriteBatch};
use crate::error::{EtcdError, StoreError};

/// etcd's `MaxLeaseTTL`: about 285 years.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    /// TTL in seconds as granted (after raising to the minimum).
    pub ttl: i64,
    expiry: Instant,
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// Seconds left, rounded down like etcd's `Remaining().Seconds()` cast; -1 once expired.
    pub fn remaining_secs(&self, now: Instant) -> i64 {
        match self.expiry.checked_duration_since(now) {
            Some(d) => d.as_secs() as i64,
            None => -1,
        }
    }
}

pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
    key_lease: HashMap<Vec<u8>, i64>,
    /// Grants below this TTL are raised to it (etcd: 1.5 election timeouts, rounded up).
    min_ttl: i64,
}

/// The instant `ttl` seconds after `now`. TTLs are clamped to etcd's maximum,
/// which the monotonic clock of any 64-bit platform can represent.
fn deadline(now: Instant, ttl: i64) -> Instant {
    let ttl = Duration::from_secs(ttl.clamp(0, MAX_LEASE_TTL) as u64);
    now.checked_add(ttl).unwrap_or(now)
}

fn lease_key(id: i64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

impl Lessor {
    pub fn new(min_ttl: i64) -> Self {
        Lessor { leases: BTreeMap::new(), key_lease: HashMap::new(), min_ttl }
    }

    /// Loads the durable lease records; every lease restarts with its full TTL.
    pub fn restore(
        &mut self,
        records: &[(Vec<u8>, Vec<u8>)],
        leased_keys: Vec<(Vec<u8>, i64)>,
        now: Instant,
    ) -> Result<(), StoreError> {
        for (_, v) in records {
            let rec = leasepb::Lease::decode(v.as_slice())
                .map_err(|e| StoreError::Corrupt(format!("lease record: {e}")))?;
            let expiry = deadline(now, rec.ttl);
            self.leases.insert(rec.id, Lease { id: rec.id, ttl: rec.ttl, expiry, keys: BTreeSet::new() });
        }
        for (key, id) in leased_keys {
            self.attach(id, &key);
        }
        Ok(())
    }

    pub fn lookup(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The lease a key is attached to, if any.
    pub fn lease_of(&self, key: &[u8]) -> Option<i64> {
        self.key_lease.get(key).copied()
    }

    /// Checks a grant without changing anything.
    pub fn check_grant(&self, id: i64, ttl: i64) -> Result<(), EtcdError> {
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        if id == 0 {
            return Err(EtcdError::LeaseNotFound);
        }
        if self.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        Ok(())
    }

    /// Creates the lease; its record is added to `batch`. Returns the granted TTL.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant, batch: &mut WriteBatch) -> Result<i64, EtcdError> {
        self.check_grant(id, ttl)?;
        let ttl = ttl.max(self.min_ttl);
        let record = leasepb::Lease { id, ttl, remaining_ttl: 0 };
        batch.put(Table::Lease, lease_key(id), record.encode_to_vec());
        let expiry = deadline(now, ttl);
        self.leases.insert(id, Lease { id, ttl, expiry, keys: BTreeSet::new() });
        Ok(ttl)
    }

    /// Forgets the lease (its record removal goes into `batch`); returns its keys,
    /// which the caller deletes in the same transaction.
    pub fn revoke(&mut self, id: i64, batch: &mut WriteBatch) -> Result<BTreeSet<Vec<u8>>, EtcdError> {
        let lease = self.leases.remove(&id).ok_or(EtcdError::LeaseNotFound)?;
        for key in &lease.keys {
            self.key_lease.remove(key);
        }
        batch.delete(Table::Lease, lease_key(id));
        Ok(lease.keys)
    }

    /// Restarts the lease's TTL; returns it. An expired lease is not renewed.
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, EtcdError> {
        let lease = self.leases.get_mut(&id).ok_or(EtcdError::LeaseNotFound)?;
        if lease.expiry <= now {
            return Err(EtcdError::LeaseNotFound);
        }
        lease.expiry = deadline(now, lease.ttl);
        Ok(lease.ttl)
    }

    /// Restarts every lease's TTL (a new leader takes over the countdown).
    pub fn refresh_all(&mut self, now: Instant) {
        for lease in self.leases.values_mut() {
            lease.expiry = deadline(now, lease.ttl);
        }
    }

    /// Leases whose deadline has passed, for the server to revoke.
    pub fn expired(&self, now: Instant) -> Vec<i64> {
        self.leases.values().filter(|l| l.expiry <= now).map(|l| l.id).collect()
    }

    /// Attaches `key` to lease `id`, detaching it from any previous lease.
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        self.detach(key);
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
            self.key_lease.insert(key.to_vec(), id);
        }
    }

    pub fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.key_lease.remove(key) {
            if let Some(lease) = self.leases.get_mut(&old) {
                lease.keys.remove(key);
            }
        }
    }
}
