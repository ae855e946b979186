//! Snapshots in etcd 3.4's format: a bbolt database in etcd's backend layout
//! followed by the 32-byte sha256 of that database, exactly what
//! `etcdctl snapshot save` receives from etcd. One format serves
//! Maintenance.Snapshot, `hubctl snapshot save|restore`, raft InstallSnapshot,
//! and migration from and to etcd.
//!
//! - [`SnapshotFile::create`] / [`write_snapshot`]: the state machine's
//!   tables become the buckets of the same names unchanged (hub stores etcd's
//!   encodings, `members` included), over the records a fresh etcd member has
//!   where the backend has none yet (the cluster version, auth's defaults, see
//!   [`layout`]).
//! - [`SnapshotReader`]: checks the trailer, reads any bucket in key order and
//!   computes `etcdctl snapshot status`'s figures ([`SnapshotInfo`]).
//! - [`restore_into`]: builds the backend `StateMachine::open` opens.
//!
//! This module reads and writes files; it never touches a running state
//! machine's backend, and knows nothing of raft or gRPC.
//!
//! ## Why hub has its own bbolt code
//! The Rust port `bbolt-rs` 1.3.10 was evaluated: it is MIT-licensed (its
//! LICENSE file; crates.io shows "unknown" because it uses `license-file`) and
//! it builds, but by default it writes magic `0x5CAFF01D`, which etcd rejects
//! as an invalid database; with its `compat` feature etcdctl reads its files,
//! yet it cannot open any snapshot etcd 3.4 sends ("PGID_NO_FREE_LIST not
//! currently supported": etcd runs bbolt without a stored freelist). It would
//! also bring ~13k lines with unsafe code, an mmap, and a dozen dependencies
//! (clap, fake, rand 0.8 among them). Tried later as the live backend, it
//! panicked on a page freed twice under etcd's alarm test and does not roll
//! back a failed commit. [`crate::bolt`] writes a fresh file from sorted data
//! and reads one sequentially for snapshots, and updates the live backend in
//! place; it is checked against etcd 3.4.23 (`tests/snapshot_etcd.rs`) and
//! Go's bbolt (etcd's TestEtcdCorruptHash).

pub mod layout;
mod reader;
mod restore;
mod save;
mod status;

pub use reader::SnapshotReader;
pub use restore::{restore_into, RestoreOptions, RestoreSummary};
pub use save::{write_snapshot, Frozen, SnapshotFile};
pub use status::SnapshotInfo;

/// Length of the sha256 trailer.
pub const SHA256_LEN: usize = 32;

/// Visits the records of etcd's `bucket` as a snapshot of this backend holds
/// them, in key order: a table hub keeps is read from the backend (the `auth`
/// table over etcd's fresh-member defaults, which it overrides), any other
/// bucket gets [`layout::fixed_records`]. `meta` is the caller's business.
pub(crate) fn for_each_record(
    backend: &dyn crate::backend::View,
    bucket: &[u8],
    visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), crate::StoreError>,
) -> Result<(), crate::StoreError> {
    let mut records: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        layout::fixed_records(bucket).into_iter().map(|(k, v)| (k.to_vec(), v)).collect();
    if let Some(table) = crate::backend::Table::of_bucket(bucket) {
        if records.is_empty() {
            // Stream big tables (key, lease) without holding them.
            let mut failure = None;
            backend.scan_bulk(table, &[], None, &mut |k, v| match visit(k, v) {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            })?;
            return failure.map_or(Ok(()), Err);
        }
        backend.scan_bulk(table, &[], None, &mut |k, v| {
            records.insert(k.to_vec(), v.to_vec());
            true
        })?;
    }
    records.iter().try_for_each(|(k, v)| visit(k, v))
}
