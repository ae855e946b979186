//! Durable storage under the MVCC layer: named tables of byte keys and values,
//! read by point lookups and ordered scans, written by atomic batches.
//!
//! The trait is deliberately small so the engine stays cheap to replace (see
//! `docs/architecture.md` on why redb and not sled). Table names follow etcd's
//! bbolt buckets (`key`, `meta`, `lease`, `alarm`, `auth`, `authUsers`, `authRoles`) so a snapshot maps one to one.

use std::path::Path;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
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
    /// etcdserverpb.AlarmMember (the raised alarm) → nothing.
    Alarm,
}

impl Table {
    pub const ALL: [Table; 7] =
        [Table::Key, Table::Meta, Table::Lease, Table::Auth, Table::AuthUsers, Table::AuthRoles, Table::Alarm];

    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::AuthUsers => "authUsers",
            Table::AuthRoles => "authRoles",
            Table::Alarm => "alarm",
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
    /// Bytes of [`Backend::size`] that hold data (etcd's `SizeInUse`): the
    /// rest is free pages a [`Backend::defragment`] gives back. The count may
    /// be a moment old.
    fn size_in_use(&self) -> Result<u64, BackendError>;
    /// Rewrites the file without its free pages, making it durable first
    /// (etcd's defragmentation). The caller keeps every other use of the
    /// backend out meanwhile.
    fn defragment(&self) -> Result<(), BackendError>;
}

/// The redb engine: one file, one write transaction per batch, fsynced on commit.
pub struct RedbBackend {
    /// Shared by every read and write; taken exclusively only by
    /// [`Backend::defragment`], as redb's compaction needs the database alone.
    db: RwLock<Database>,
    path: std::path::PathBuf,
    deferred: std::sync::atomic::AtomicBool,
    /// The last count of bytes in use: when it was taken and how long it took.
    in_use: Mutex<Option<InUse>>,
}

#[derive(Clone, Copy)]
struct InUse {
    bytes: u64,
    at: Instant,
    took: Duration,
}

impl InUse {
    /// redb counts the pages in use by walking every tree, so a count is
    /// reused for a while: at least [`IN_USE_MIN_AGE`], and twenty times what
    /// it took, so counting never takes more than a twentieth of the time.
    fn is_fresh(&self) -> bool {
        self.at.elapsed() < IN_USE_MIN_AGE.max(self.took * 20)
    }
}

const IN_USE_MIN_AGE: Duration = Duration::from_millis(200);

impl RedbBackend {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(table.definition())?;
        }
        txn.commit()?;
        Ok(RedbBackend {
            db: RwLock::new(db),
            path: path.to_path_buf(),
            deferred: std::sync::atomic::AtomicBool::new(false),
            in_use: Mutex::new(None),
        })
    }
}

impl Backend for RedbBackend {
    fn defer_durability(&self, deferred: bool) {
        self.deferred.store(deferred, std::sync::atomic::Ordering::Relaxed);
    }

    fn sync(&self) -> Result<(), BackendError> {
        // An immediate commit makes every earlier non-durable commit durable too.
        self.db.read().begin_write()?.commit()?;
        Ok(())
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let db = self.db.read();
        let mut txn = db.begin_write()?;
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
        let db = self.db.read();
        let txn = db.begin_read()?;
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
        let db = self.db.read();
        let txn = db.begin_read()?;
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

    fn size_in_use(&self) -> Result<u64, BackendError> {
        let mut cached = self.in_use.lock();
        if let Some(c) = cached.filter(InUse::is_fresh) {
            return Ok(c.bytes);
        }
        let started = Instant::now();
        let db = self.db.read();
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        let bytes = (stats.allocated_pages() * stats.page_size() as u64).min(self.size());
        *cached = Some(InUse { bytes, at: Instant::now(), took: started.elapsed() });
        Ok(bytes)
    }

    fn defragment(&self) -> Result<(), BackendError> {
        let mut db = self.db.write();
        db.compact()?;
        *self.in_use.lock() = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defragment_gives_free_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let b = RedbBackend::open(&dir.path().join("db")).unwrap();
        let empty_in_use = b.size_in_use().unwrap();
        eprintln!("empty: size {} in use {}", b.size(), empty_in_use);
        for chunk in 0..20u32 {
            let mut batch = WriteBatch::default();
            for i in 0..100u32 {
                batch.put(Table::Key, (chunk * 100 + i).to_be_bytes().to_vec(), vec![b'x'; 1024]);
            }
            b.commit(batch).unwrap();
        }
        *b.in_use.lock() = None;
        let (full, full_in_use) = (b.size(), b.size_in_use().unwrap());
        eprintln!("full: size {full} in use {full_in_use}");
        let mut batch = WriteBatch::default();
        for k in 0..2000u32 {
            batch.delete(Table::Key, k.to_be_bytes().to_vec());
        }
        b.commit(batch).unwrap();
        *b.in_use.lock() = None;
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
