//! Durable storage under the MVCC layer: named tables of byte keys and values,
//! read by point lookups and ordered scans, written by atomic batches.
//!
//! The trait is deliberately small so the engine stays cheap to replace (see
//! `docs/architecture.md` on why redb and not sled). Table names follow etcd's
//! bbolt buckets (`key`, `meta`, `lease`, `auth`, `authUsers`, `authRoles`) so a snapshot maps one to one.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::BackendError;

/// One of the backend's tables; names are etcd's bucket names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl Table {
    pub const ALL: [Table; 6] = [Table::Key, Table::Meta, Table::Lease, Table::Auth, Table::AuthUsers, Table::AuthRoles];

    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::AuthUsers => "authUsers",
            Table::AuthRoles => "authRoles",
        }
    }

    /// The table that holds etcd's bucket `name`, if hub keeps that bucket.
    pub fn of_bucket(name: &[u8]) -> Option<Table> {
        Self::ALL.into_iter().find(|t| t.name().as_bytes() == name)
    }

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
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
    /// once per applied batch instead of once per entry.
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
    /// Bytes the backend occupies on disk.
    fn size(&self) -> u64;
}

/// The redb engine: one file, one write transaction per batch, fsynced on commit.
pub struct RedbBackend {
    db: Database,
    path: std::path::PathBuf,
    deferred: std::sync::atomic::AtomicBool,
}

impl RedbBackend {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(table.definition())?;
        }
        txn.commit()?;
        Ok(RedbBackend { db, path: path.to_path_buf(), deferred: std::sync::atomic::AtomicBool::new(false) })
    }
}

impl Backend for RedbBackend {
    fn defer_durability(&self, deferred: bool) {
        self.deferred.store(deferred, std::sync::atomic::Ordering::Relaxed);
    }

    fn sync(&self) -> Result<(), BackendError> {
        // An immediate commit makes every earlier non-durable commit durable too.
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let mut txn = self.db.begin_write()?;
        if self.deferred.load(std::sync::atomic::Ordering::Relaxed) {
            txn.set_durability(redb::Durability::None)?;
        }
        for table in Table::ALL {
            let mut t = txn.open_table(table.definition())?;
            for (_, key, value) in batch.ops.iter().filter(|(t, _, _)| *t == table) {
                match value {
                    Some(v) => {
                        t.insert(key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        t.remove(key.as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.definition())?;
        keys.iter()
            .map(|k| Ok(t.get(k.as_slice())?.map(|v| v.value().to_vec())))
            .collect()
    }

    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.definition())?;
        let iter = match to {
            Some(to) => t.range::<&[u8]>(from..to)?,
            None => t.range::<&[u8]>(from..)?,
        };
        for entry in iter {
            let (k, v) = entry?;
            if !visit(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}
