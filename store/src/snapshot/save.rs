//! Writing the state machine out as an etcd snapshot.
//!
//! The bbolt file is built in a temporary file (its meta pages, at the front,
//! are known only at the end), then hashed and given its sha256 trailer. The
//! caller streams it from there: only one page and the branch keys of one
//! bucket are ever in memory, whatever the snapshot's size.
//!
//! The state is read from a [`Frozen`] view of the state machine, taken under
//! its lock in a moment: commands go on being applied while the file is built
//! (for a big backend, seconds), and the tables read one after the other still
//! form the one consistent state the view was taken at.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::bolt::write::BoltWriter;
use super::status::{SnapshotInfo, StatusHasher};
use super::{for_each_record, layout, SHA256_LEN};
use crate::apply::StateMachine;
use crate::backend::View;
use crate::error::StoreError;
use crate::mvcc::META_CONSISTENT_INDEX;

/// A finished snapshot in a temporary file, deleted when dropped unless
/// [`persist`](SnapshotFile::persist)ed.
pub struct SnapshotFile {
    file: tempfile::NamedTempFile,
    info: SnapshotInfo,
}

/// The state machine as of one applied entry, readable without its lock.
pub struct Frozen {
    view: Box<dyn View>,
    applied_index: u64,
}

impl Frozen {
    /// Takes `sm`'s state as it is now (its write buffer goes to the engine first).
    pub fn of(sm: &StateMachine) -> Result<Self, StoreError> {
        Ok(Frozen { view: sm.mvcc().backend().view()?, applied_index: sm.applied_index() })
    }
}

impl SnapshotFile {
    /// Writes `sm`'s state as an etcd snapshot into a new temporary file in
    /// `dir` (put it on the same file system as where it will be persisted).
    pub fn create(sm: &StateMachine, dir: &Path) -> Result<Self, StoreError> {
        Self::create_from(&Frozen::of(sm)?, dir)
    }

    /// Writes a [`Frozen`] state as an etcd snapshot, as [`SnapshotFile::create`].
    pub fn create_from(state: &Frozen, dir: &Path) -> Result<Self, StoreError> {
        let file = tempfile::Builder::new()
            .prefix(".hub-snapshot-")
            .tempfile_in(dir)
            .map_err(|e| io_error("create a temporary file", e))?;
        let handle = file.as_file().try_clone().map_err(|e| io_error("open the temporary file", e))?;
        let mut writer = BoltWriter::new(BufWriter::with_capacity(1 << 20, handle))?;
        let mut status = StatusHasher::default();
        write_buckets(state, &mut writer, &mut status)?;
        let (out, summary) = writer.finish()?;
        let mut handle = out.into_inner().map_err(|e| io_error("flush the snapshot", e.into_error()))?;
        append_sha256(&mut handle, summary.size)?;
        handle.sync_all().map_err(|e| io_error("sync the snapshot", e))?;
        let info = status.finish(summary.size);
        tracing::info!(revision = info.revision, keys = info.total_keys, size = info.total_size, "snapshot written");
        Ok(SnapshotFile { file, info })
    }

    pub fn info(&self) -> SnapshotInfo {
        self.info
    }

    /// Bytes of the file: the bbolt database and the 32-byte sha256 trailer.
    pub fn len(&self) -> u64 {
        self.info.total_size + SHA256_LEN as u64
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// A new handle on the file, positioned at its start, to stream it.
    pub fn open(&self) -> Result<File, StoreError> {
        self.file.reopen().map_err(|e| io_error("reopen the snapshot", e))
    }

    /// Moves the file to `path` (on the same file system) and keeps it.
    pub fn persist(self, path: &Path) -> Result<SnapshotInfo, StoreError> {
        self.file.persist(path).map_err(|e| io_error(&format!("persist to {}", path.display()), e.error))?;
        Ok(self.info)
    }
}

/// Writes `sm`'s state as an etcd snapshot to `out`, by way of a temporary
/// file in the system's temporary directory. Use [`SnapshotFile`] to choose
/// the directory or to release the state machine before streaming.
pub fn write_snapshot(sm: &StateMachine, out: &mut impl Write) -> Result<SnapshotInfo, StoreError> {
    let snapshot = SnapshotFile::create(sm, &std::env::temp_dir())?;
    let mut file = snapshot.open()?;
    std::io::copy(&mut file, out).map_err(|e| io_error("copy the snapshot out", e))?;
    out.flush().map_err(|e| io_error("flush the snapshot out", e))?;
    Ok(snapshot.info())
}

fn io_error(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Snapshot(format!("{what}: {e}"))
}

/// Puts every bucket of etcd's layout, in name order, feeding etcdctl's status hash.
fn write_buckets<W: Write + Seek>(
    state: &Frozen,
    writer: &mut BoltWriter<W>,
    status: &mut StatusHasher,
) -> Result<(), StoreError> {
    let backend = &state.view;
    for bucket in layout::BUCKETS {
        writer.begin_bucket(bucket)?;
        status.bucket(bucket);
        let mut put = |k: &[u8], v: &[u8]| -> Result<(), StoreError> {
            status.entry(bucket, k, v);
            writer.put(k, v)
        };
        match bucket {
            layout::META => {
                let mut meta = BTreeMap::new();
                for_each_record(backend.as_ref(), bucket, &mut |k, v| {
                    meta.insert(k.to_vec(), v.to_vec());
                    Ok(())
                })?;
                // A command refused with an etcd error may advance the applied
                // index without a backend commit; the state is the same, and
                // the snapshot stands for everything applied.
                let stored =
                    meta.get(META_CONSISTENT_INDEX).and_then(|v| v.get(..8)?.try_into().ok()).map(u64::from_be_bytes);
                let index = stored.unwrap_or(0).max(state.applied_index);
                meta.insert(META_CONSISTENT_INDEX.to_vec(), index.to_be_bytes().to_vec());
                for (k, v) in &meta {
                    put(k, v)?;
                }
            }
            other => for_each_record(backend.as_ref(), other, &mut put)?,
        }
        writer.end_bucket()?;
    }
    Ok(())
}

/// Appends the sha256 of the first `db_len` bytes, as etcd's snapshot sender does.
fn append_sha256(file: &mut File, db_len: u64) -> Result<(), StoreError> {
    file.seek(SeekFrom::Start(0)).map_err(|e| io_error("rewind the snapshot", e))?;
    let digest = sha256_of(&mut (&*file).take(db_len), db_len)?;
    file.seek(SeekFrom::Start(db_len)).map_err(|e| io_error("seek to the trailer", e))?;
    file.write_all(&digest).map_err(|e| io_error("write the sha256 trailer", e))?;
    Ok(())
}

/// The sha256 of exactly `len` bytes of `src`.
pub(super) fn sha256_of(src: &mut impl Read, len: u64) -> Result<[u8; SHA256_LEN], StoreError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = src.read(&mut buf[..want]).map_err(|e| io_error("read the snapshot", e))?;
        if n == 0 {
            return Err(StoreError::Snapshot(format!("file ended {left} bytes early while hashing")));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}
