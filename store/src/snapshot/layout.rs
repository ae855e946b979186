//! etcd's backend layout (3.4's buckets, which 3.6 keeps): the bucket names and the records a fresh etcd
//! member writes that hub has no state for yet.
//!
//! Sources: `mvcc/kvstore.go` (`key`, `meta`), `lease/lessor.go` (`lease`),
//! `etcdserver/api/membership/store.go` (`members`, `members_removed`,
//! `cluster`), `etcdserver/api/v3alarm/alarms.go` (`alarm`), `auth/store.go`
//! (`auth`, `authUsers`, `authRoles`).

/// Revision (`revision.rs` bytes) → mvccpb.KeyValue.
pub const KEY: &[u8] = b"key";
/// `consistent_index`, `scheduledCompactRev`, `finishedCompactRev`, `storageVersion`.
pub const META: &[u8] = b"meta";
/// Lease ID (8 bytes big-endian) → leasepb.Lease.
pub const LEASE: &[u8] = b"lease";
/// Member ID (hex) → member JSON.
pub const MEMBERS: &[u8] = b"members";
pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
/// `clusterVersion` → "3.6.0".
pub const CLUSTER: &[u8] = b"cluster";
pub const ALARM: &[u8] = b"alarm";
/// `authEnabled` ([1] once enabled), `authRevision` (8 bytes big-endian).
pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";

/// Every bucket etcd 3.4 creates, in bbolt's (bytewise) order.
pub const BUCKETS: [&[u8]; 10] =
    [ALARM, AUTH, AUTH_ROLES, AUTH_USERS, CLUSTER, KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META];

pub const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";
/// The cluster version of a hub cluster, as etcd 3.6 decides it from its
/// members' versions (all hub's): 3.6.0.
pub const CLUSTER_VERSION: &[u8] = b"3.6.0";
pub const AUTH_REVISION_KEY: &[u8] = b"authRevision";

/// Records a fresh etcd member has that a backend may lack, which its own
/// records override: the cluster version (written with the first membership
/// entry, `crate::members`, absent from a backend older than that); and the
/// `auth` bucket's defaults: auth
/// disabled (no `authEnabled` key, which etcd reads as disabled) at auth
/// revision 1 (`NewAuthStore` commits 1 over an empty store).
pub fn fixed_records(bucket: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
    match bucket {
        CLUSTER => vec![(CLUSTER_VERSION_KEY, CLUSTER_VERSION.to_vec())],
        AUTH => vec![(AUTH_REVISION_KEY, 1u64.to_be_bytes().to_vec())],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_in_bbolt_order() {
        assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
