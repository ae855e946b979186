//! Opening a snapshot file: the sha256 trailer check, then the bbolt
//! database's buckets, each read in key order.
//!
//! The trailer rule is etcdctl's (`v3_snapshot.go`, `hasChecksum`): a file
//! whose size is 32 more than a multiple of 512 carries a sha256 of the bytes
//! before it. A database copied from a data directory has none; like
//! `etcdctl snapshot restore --skip-hash-check`, reading it must be asked for.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::bolt::read::{BoltReader, Bucket};
use super::save::sha256_of;
use super::status::{SnapshotInfo, StatusHasher};
use super::SHA256_LEN;
use crate::error::StoreError;

/// Whether a file of `len` bytes ends in a sha256 trailer (etcd's test).
pub(super) fn has_sha256_trailer(len: u64) -> bool {
    len % 512 == SHA256_LEN as u64
}

/// A snapshot file, its integrity checked, open for reading its buckets.
pub struct SnapshotReader {
    bolt: BoltReader<File>,
    path: PathBuf,
    has_trailer: bool,
}

impl SnapshotReader {
    /// Opens the snapshot at `path` and checks its sha256 trailer, unless
    /// `skip_hash_check` (etcdctl's `--skip-hash-check`), which also admits a
    /// bare database without trailer.
    pub fn open(path: &Path, skip_hash_check: bool) -> Result<Self, StoreError> {
        let fail = |what: String| StoreError::Snapshot(format!("{}: {what}", path.display()));
        let mut file = File::open(path).map_err(|e| fail(format!("open: {e}")))?;
        let len = file.metadata().map_err(|e| fail(format!("stat: {e}")))?.len();
        let has_trailer = has_sha256_trailer(len);
        let db_len = if has_trailer { len - SHA256_LEN as u64 } else { len };
        if !skip_hash_check {
            if !has_trailer {
                return Err(fail(format!(
                    "no sha256 trailer (size {len} is not a multiple of 512 plus 32): the file is truncated, or \
                     is a database copied from a data directory (skip the hash check to read that)"
                )));
            }
            let computed = sha256_of(&mut file, db_len).map_err(|e| fail(e.to_string()))?;
            let mut stored = [0u8; SHA256_LEN];
            std::io::Read::read_exact(&mut file, &mut stored).map_err(|e| fail(format!("read the trailer: {e}")))?;
            if computed != stored {
                return Err(fail(format!(
                    "sha256 mismatch: the file is corrupted or truncated (trailer {}, content {})",
                    hex(&stored),
                    hex(&computed)
                )));
            }
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| fail(format!("seek: {e}")))?;
        let bolt = BoltReader::open(file, db_len).map_err(|e| fail(e.to_string()))?;
        Ok(SnapshotReader { bolt, path: path.to_path_buf(), has_trailer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file carried a sha256 trailer.
    pub fn has_sha256_trailer(&self) -> bool {
        self.has_trailer
    }

    /// Size of the bbolt database (etcdctl's `totalSize`).
    pub fn db_size(&self) -> u64 {
        self.bolt.size()
    }

    /// The figures of `etcdctl snapshot status`, computed the same way.
    pub fn status(&mut self) -> Result<SnapshotInfo, StoreError> {
        let mut status = StatusHasher::default();
        for bucket in self.bolt.buckets()? {
            status.bucket(&bucket.name);
            self.bolt.for_each(&bucket, &mut |e| {
                // etcdctl hashes a nested bucket's value as nil.
                status.entry(&bucket.name, e.key, if e.is_bucket { &[] } else { e.value });
                Ok(())
            })?;
        }
        Ok(status.finish(self.bolt.size()))
    }

    /// Names of the top-level buckets, in order.
    pub fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.bolt.buckets()?.into_iter().map(|b| b.name).collect())
    }

    /// Visits every entry of `bucket` in key order; returns false when the
    /// snapshot has no such bucket. etcd's buckets hold no nested buckets, so
    /// one is reported as corruption.
    pub fn for_each(
        &mut self,
        bucket: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let Some(found) = self.bolt.bucket(bucket)? else {
            return Ok(false);
        };
        let Bucket { name, .. } = &found;
        self.bolt.for_each(&found, &mut |e| {
            if e.is_bucket {
                return Err(StoreError::Snapshot(format!(
                    "bucket {:?} holds a nested bucket {:?}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(e.key)
                )));
            }
            visit(e.key, e.value)
        })?;
        Ok(true)
    }

    /// Every record of `bucket` (empty when it does not exist): for the small
    /// buckets (`members`, `cluster`, `auth`, ...).
    pub fn records(&mut self, bucket: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut records = Vec::new();
        self.for_each(bucket, |k, v| {
            records.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(records)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
