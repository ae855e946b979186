//! Durable storage under the MVCC layer: named tables of byte keys and values,
//! read by point lookups and ordered scans, written by atomic batches.
//!
//! The engine is a bbolt file in etcd's layout ([`crate::bolt::db`]; see
//! `docs/architecture.md` on why). The trait is deliberately small so the
//! engine stays cheap to replace. Table names are etcd's bbolt buckets (`key`,
//! `meta`, `lease`, `alarm`, `auth`, `authUsers`, `authRoles`, `members`,
//! `members_removed`, `cluster`), so the backend and a snapshot map one to one.

use std::path::Path;

use crate::bolt::db::{BoltDb, Op, ReadTx};
use crate::error::BackendError;

/// One of the backend's tables; names are etcd's bucket names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// Revision (etcd's encoding) → mvccpb.KeyValue.
    Key,
    /// Bookkeeping: consistent index, compaction revisions.
    Meta,
    /// Lease ID (big-endian) → leasepb.Lease.
    Lease,
    /// `authEnabled`, `authRevision`.
    Auth,
    /// User name → authpb.User.
    AuthUsers,
    /// Role name → authpb.Role.
    AuthRoles,
    /// etcdserverpb.AlarmMember (the raised alarm) → nothing.
    Alarm,
    /// Member ID (lower-case hex) → the member as etcd's JSON (`crate::members`).
    Members,
    /// Removed member ID (lower-case hex) → `removed`.
    MembersRemoved,
    /// `clusterVersion`.
    Cluster,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Key,
        Table::Meta,
        Table::Lease,
        Table::Auth,
        Table::AuthUsers,
        Table::AuthRoles,
        Table::Alarm,
        Table::Members,
        Table::MembersRemoved,
        Table::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::AuthUsers => "authUsers",
            Table::AuthRoles => "authRoles",
            Table::Alarm => "alarm",
            Table::Members => "members",
            Table::MembersRemoved => "members_removed",
            Table::Cluster => "cluster",
        }
    }

    /// The table that holds etcd's bucket `name`, if hub keeps that bucket.
    pub fn of_bucket(name: &[u8]) -> Option<Table> {
        Self::ALL.into_iter().find(|t| t.name().as_bytes() == name)
    }
}

/// Changes that commit together or not at all.
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((table, key, Some(value)));
    }

    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push((table, key, None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes, in the order they were made.
    pub fn into_ops(self) -> Vec<(Table, Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }
}

/// A consistent read-only view of everything committed when it was taken
/// (bbolt's read transaction): it stays the same while the backend moves on,
/// so a snapshot or a hash of the whole backend is read from it without
/// holding up writes. Every read of a whole table (start-up, hashes,
/// compaction, snapshots) goes through one.
pub trait View: Send {
    /// Visits `[from, to)` (or `[from, ..)`) in key order until `visit`
    /// returns false; the file pages this brought into the process's map are
    /// given back afterwards (they stay in the page cache), so a member's
    /// resident memory holds what it serves, not everything it once read.
    /// etcd's bulk reads go through the file, not its map, for the same reason.
    fn scan_bulk(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError>;
}

pub trait Backend: Send + Sync {
    /// Applies the batch atomically; when it returns Ok the batch is on disk,
    /// unless durability is deferred (then it is on disk after the next [`sync`]).
    ///
    /// [`sync`]: Backend::sync
    fn commit(&self, batch: WriteBatch) -> Result<(), BackendError>;
    /// Defers durability: commits become visible at once but reach the disk
    /// together at the next [`Backend::sync`]. Raft uses this, because its WAL
    /// already holds every committed entry durably; the backend is made durable
    /// every 100 ms at most instead of once per entry (and the write buffer,
    /// `crate::write_buffer`, hands the engine one commit per sync).
    fn defer_durability(&self, deferred: bool);
    /// Makes every commit so far durable.
    fn sync(&self) -> Result<(), BackendError>;
    /// Looks up several keys of one table in one consistent read.
    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError>;
    /// Visits `[from, to)` (or `[from, ..)`) in key order until `visit` returns false.
    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError>;
    /// A [`View`] of every commit so far.
    fn view(&self) -> Result<Box<dyn View>, BackendError>;
    /// Bytes the backend occupies on disk.
    fn size(&self) -> u64;
    /// Bytes of [`Backend::size`] that hold data (etcd's `SizeInUse`): the
    /// rest is free pages a [`Backend::defragment`] gives back. The count may
    /// be a moment old.
    fn size_in_use(&self) -> Result<u64, BackendError>;
    /// Rewrites the file without its free pages, making it durable first
    /// (etcd's defragmentation). The caller keeps every other use of the
    /// backend out meanwhile.
    fn defragment(&self) -> Result<(), BackendError>;
}

/// The bbolt engine: etcd's own backend format, updated in place.
impl Backend for BoltDb {
    fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let ops: Vec<Op<'_>> =
            batch.ops.iter().map(|(t, k, v)| (t.name().as_bytes(), k.as_slice(), v.as_deref())).collect();
        self.update(&ops)
    }

    fn defer_durability(&self, deferred: bool) {
        BoltDb::defer_durability(self, deferred);
    }

    fn sync(&self) -> Result<(), BackendError> {
        BoltDb::sync(self)
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        self.begin_read().get_many(table.name().as_bytes(), keys)
    }

    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        self.begin_read().scan(table.name().as_bytes(), from, to, visit)
    }

    fn view(&self) -> Result<Box<dyn View>, BackendError> {
        Ok(Box::new(self.begin_read()))
    }

    fn size(&self) -> u64 {
        BoltDb::size(self)
    }

    fn size_in_use(&self) -> Result<u64, BackendError> {
        Ok(BoltDb::size_in_use(self))
    }

    fn defragment(&self) -> Result<(), BackendError> {
        BoltDb::defragment(self)
    }
}

impl View for ReadTx {
    fn scan_bulk(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        let scanned = self.scan(table.name().as_bytes(), from, to, visit);
        self.release_mapped_pages();
        scanned
    }
}

/// Opens (or creates, with every table) the bbolt backend at `path`.
pub fn open_bolt(path: &Path) -> Result<BoltDb, BackendError> {
    let names: Vec<&[u8]> = Table::ALL.iter().map(|t| t.name().as_bytes()).collect();
    BoltDb::open(path, &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defragment_gives_free_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let b: Box<dyn Backend> = Box::new(open_bolt(&dir.path().join("db")).unwrap());
        let empty_in_use = b.size_in_use().unwrap();
        eprintln!("empty: size {} in use {}", b.size(), empty_in_use);
        for chunk in 0..20u32 {
            let mut batch = WriteBatch::default();
            for i in 0..100u32 {
                batch.put(Table::Key, (chunk * 100 + i).to_be_bytes().to_vec(), vec![b'x'; 1024]);
            }
            b.commit(batch).unwrap();
        }
        let (full, full_in_use) = (b.size(), b.size_in_use().unwrap());
        eprintln!("full: size {full} in use {full_in_use}");
        let mut batch = WriteBatch::default();
        for k in 0..2000u32 {
            batch.delete(Table::Key, k.to_be_bytes().to_vec());
        }
        b.commit(batch).unwrap();
        let emptied_in_use = b.size_in_use().unwrap();
        eprintln!("emptied: size {} in use {emptied_in_use}", b.size());
        assert!(emptied_in_use < full_in_use / 4, "{emptied_in_use} of {full_in_use}");
        b.defragment().unwrap();
        eprintln!("defragmented: size {} in use {}", b.size(), b.size_in_use().unwrap());
        assert!(b.size() < full / 4, "{} of {full}", b.size());
        assert!(b.size_in_use().unwrap() <= b.size());
        // Still a working database.
        let mut batch = WriteBatch::default();
        batch.put(Table::Key, b"k".to_vec(), b"v".to_vec());
        b.commit(batch).unwrap();
        assert_eq!(b.get_many(Table::Key, &[b"k".to_vec()]).unwrap(), vec![Some(b"v".to_vec())]);
    }
}
