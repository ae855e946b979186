//! The figures `etcdctl snapshot status` prints, computed as etcdctl does
//! (`clientv3/snapshot/v3_snapshot.go`, `Status`).
//!
//! etcdctl walks the top-level buckets in order and feeds a CRC-32C
//! (Castagnoli) with each bucket's name and then every key and value in it; it
//! counts every entry of every bucket as a "key", and takes the revision from
//! the last key of the `key` bucket. The writer and the reader both use this
//! one type, so hub's figures for a file always equal etcdctl's.

use super::layout;
use crate::hash::crc32c;

/// What `etcdctl snapshot status` reports for a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// CRC-32C over bucket names, keys and values (etcdctl's `hash`).
    pub hash: u32,
    /// Main revision of the last entry of the `key` bucket (0 when empty).
    pub revision: i64,
    /// Entries in all buckets (etcdctl's `totalKey`).
    pub total_keys: usize,
    /// Size of the bbolt database, without the sha256 trailer (`totalSize`).
    pub total_size: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatusHasher {
    crc: u32,
    revision: i64,
    total_keys: usize,
}

impl StatusHasher {
    pub(crate) fn bucket(&mut self, name: &[u8]) {
        self.crc = crc32c(self.crc, name);
    }

    pub(crate) fn entry(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) {
        self.crc = crc32c(crc32c(self.crc, key), value);
        self.total_keys += 1;
        if bucket == layout::KEY {
            // etcdctl's bytesToRev reads the main revision from the first 8 bytes.
            if let Some(main) = key.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes) {
                self.revision = main;
            }
        }
    }

    pub(crate) fn finish(self, total_size: u64) -> SnapshotInfo {
        SnapshotInfo { hash: self.crc, revision: self.revision, total_keys: self.total_keys, total_size }
    }
}
