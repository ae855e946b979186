//! bbolt's file format: the live backend updates a bbolt file in place
//! ([`db::BoltDb`]); snapshots are written in one pass ([`write::BoltWriter`])
//! and any bbolt file etcd wrote is read sequentially ([`read::BoltReader`]).
//!
//! The layout is bbolt v1.3's (`page.go`, `db.go`, `node.go`, `bucket.go`), all
//! integers little-endian as bbolt writes them on amd64 and arm64:
//! - the file is an array of pages of `page_size` bytes (4096 here); a page
//!   starts with a 16-byte header `{id u64, flags u16, count u16, overflow u32}`
//!   and may run on over `overflow` further pages;
//! - pages 0 and 1 are meta pages (the valid one with the higher txid wins),
//!   checksummed with FNV-1a 64 over the meta fields before the checksum;
//! - the meta names the root bucket's page, the freelist page (or none, as etcd
//!   3.4 runs bbolt with `NoFreelistSync`) and the high-water page id;
//! - a bucket is a B+tree: leaf pages hold `{flags, pos, ksize, vsize}`
//!   elements, branch pages `{pos, ksize, pgid}` elements whose key is the first
//!   key of the child; `pos` counts from the element itself;
//! - a bucket is an entry of its parent with flag `0x01` and a 16-byte header
//!   `{root pgid u64, sequence u64}`; root 0 means the bucket is *inline*: its
//!   single leaf page follows the header inside the value.

pub mod db;
pub mod read;
pub mod write;

use crate::error::StoreError;

/// The page size hub writes (bbolt's default on Linux); files from etcd with
/// another page size are still read.
pub const PAGE_SIZE: usize = 4096;
/// bbolt's limits on what a bucket can hold.
pub const MAX_KEY_SIZE: usize = 32768;
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

const PAGE_HEADER_SIZE: usize = 16;
/// Leaf and branch elements are both 16 bytes.
const ELEMENT_SIZE: usize = 16;
const BUCKET_HEADER_SIZE: usize = 16;
/// bbolt inlines a bucket whose only leaf fits in a quarter page.
const MAX_INLINE_BUCKET_SIZE: usize = PAGE_SIZE / 4;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;

/// Leaf element flag of an entry that is a nested bucket.
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// Meta `freelist` value when the freelist is not stored (etcd 3.4's choice).
const NO_FREELIST: u64 = u64::MAX;

/// The meta page body: where the tree starts and how far the file reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    /// Page of the root bucket, whose entries are the top-level buckets.
    pub root: u64,
    pub root_sequence: u64,
    /// Page of the freelist, or `u64::MAX` when none was stored.
    pub freelist: u64,
    /// High-water mark: pages `[0, high_water)` are the database.
    pub high_water: u64,
    pub txid: u64,
}

/// Encoded size of [`Meta`] with magic, version and checksum.
const META_LEN: usize = 64;
/// The checksum covers the fields before it.
const META_CHECKSUMMED_LEN: usize = 56;

impl Meta {
    fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.root_sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.high_water.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv64a(&b[..META_CHECKSUMMED_LEN]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and validates a meta body (`b` starts after the page header).
    fn decode(b: &[u8]) -> Result<Meta, String> {
        if b.len() < META_LEN {
            return Err("meta page is short".into());
        }
        if le_u32(b, 0) != MAGIC {
            return Err(format!("bad magic {:#010x} (not a bbolt file)", le_u32(b, 0)));
        }
        if le_u32(b, 4) != VERSION {
            return Err(format!("unsupported bbolt version {}", le_u32(b, 4)));
        }
        let stored = le_u64(b, 56);
        if stored != 0 && stored != fnv64a(&b[..META_CHECKSUMMED_LEN]) {
            return Err("meta checksum mismatch".into());
        }
        Ok(Meta {
            page_size: le_u32(b, 8),
            flags: le_u32(b, 12),
            root: le_u64(b, 16),
            root_sequence: le_u64(b, 24),
            freelist: le_u64(b, 32),
            high_water: le_u64(b, 40),
            txid: le_u64(b, 48),
        })
    }
}

/// The meta bbolt opens a file with: the page size comes from meta page 0 (or
/// is bbolt's default when that page is damaged), and of the two meta pages
/// the valid one with the higher txid wins. `read(offset, len)` reads the file.
fn select_meta(read: &mut dyn FnMut(u64, usize) -> Result<Vec<u8>, String>) -> Result<Meta, String> {
    const LEN: usize = PAGE_HEADER_SIZE + META_LEN;
    let meta_of = |page: &[u8], pgid: u64| -> Result<Meta, String> {
        let header = PageHeader::decode(page);
        if header.flags & META_PAGE == 0 {
            return Err(format!("page {pgid} is not a meta page (flags {:#x})", header.flags));
        }
        Meta::decode(page.get(PAGE_HEADER_SIZE..).unwrap_or_default())
    };
    let first = read(0, LEN).map_err(|e| format!("meta page 0: {e}"))?;
    let meta0 = meta_of(&first, 0);
    let page_size = meta0.as_ref().map_or(PAGE_SIZE as u64, |m| u64::from(m.page_size));
    if !(512..=1 << 16).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("implausible page size {page_size}"));
    }
    let meta1 = read(page_size, LEN).and_then(|page| meta_of(&page, 1));
    let meta = match (meta0, meta1) {
        (Ok(a), Ok(b)) => {
            if a.txid >= b.txid {
                a
            } else {
                b
            }
        }
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
        (Err(a), Err(b)) => return Err(format!("no valid meta page (page 0: {a}; page 1: {b})")),
    };
    if u64::from(meta.page_size) != page_size {
        return Err("the meta pages disagree on the page size".into());
    }
    Ok(meta)
}

/// FNV-1a, 64 bit: bbolt's meta checksum.
fn fnv64a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A page header; `id` and `overflow` are filled in when the page is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageHeader {
    id: u64,
    flags: u16,
    count: u16,
    overflow: u32,
}

impl PageHeader {
    fn encode_into(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..10].copy_from_slice(&self.flags.to_le_bytes());
        b[10..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }

    fn decode(b: &[u8]) -> PageHeader {
        PageHeader { id: le_u64(b, 0), flags: le_u16(b, 8), count: le_u16(b, 10), overflow: le_u32(b, 12) }
    }
}

/// What is wrong with a page [`PageRef`] read; the live engine and the snapshot
/// reader each turn it into their own error.
#[derive(Debug)]
pub(super) struct PageError(String);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A leaf or branch page (or an inline bucket's leaf) with its header checked;
/// every element read from it is bounds-checked.
pub(super) struct PageRef<'a> {
    bytes: &'a [u8],
    flags: u16,
    pub(super) count: usize,
}

impl<'a> PageRef<'a> {
    pub(super) fn parse(bytes: &'a [u8], what: impl Fn() -> String) -> Result<Self, PageError> {
        if bytes.len() < PAGE_HEADER_SIZE {
            return Err(PageError(format!("{} is short", what())));
        }
        let header = PageHeader::decode(bytes);
        let count = usize::from(header.count);
        if PAGE_HEADER_SIZE + count * ELEMENT_SIZE > bytes.len() {
            return Err(PageError(format!("{}: {count} elements do not fit", what())));
        }
        if header.flags & (LEAF_PAGE | BRANCH_PAGE) == 0 {
            return Err(PageError(format!("{}: not a leaf or branch page (flags {:#x})", what(), header.flags)));
        }
        Ok(PageRef { bytes, flags: header.flags, count })
    }

    pub(super) fn is_leaf(&self) -> bool {
        self.flags & LEAF_PAGE != 0
    }

    fn slice(&self, start: usize, len: usize) -> Result<&'a [u8], PageError> {
        start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| PageError("an element points past its page".to_string()))
    }

    /// Leaf element `i`: flags, key, value.
    pub(super) fn leaf(&self, i: usize) -> Result<(u32, &'a [u8], &'a [u8]), PageError> {
        let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        let start = at + le_u32(self.bytes, at + 4) as usize;
        let ksize = le_u32(self.bytes, at + 8) as usize;
        let vsize = le_u32(self.bytes, at + 12) as usize;
        Ok((le_u32(self.bytes, at), self.slice(start, ksize)?, self.slice(start + ksize, vsize)?))
    }

    /// Branch element `i`: the child's first key and page.
    pub(super) fn branch(&self, i: usize) -> Result<(&'a [u8], u64), PageError> {
        let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        let start = at + le_u32(self.bytes, at) as usize;
        let ksize = le_u32(self.bytes, at + 4) as usize;
        Ok((self.slice(start, ksize)?, le_u64(self.bytes, at + 8)))
    }

    pub(super) fn key(&self, i: usize) -> Result<&'a [u8], PageError> {
        if self.is_leaf() {
            Ok(self.leaf(i)?.1)
        } else {
            Ok(self.branch(i)?.0)
        }
    }

    /// The first element whose key is `>= key` (leaf) or the last whose key
    /// is `<= key`, else the first (branch): where a search for `key` goes.
    pub(super) fn search(&self, key: &[u8]) -> Result<usize, PageError> {
        // First index whose key is > key (branch) or >= key (leaf).
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let k = self.key(mid)?;
            let before = if self.is_leaf() { k < key } else { k <= key };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(if self.is_leaf() { lo } else { lo.saturating_sub(1) })
    }
}

// Callers check `b.len()` first; a short slice reads as zeros rather than panicking.
fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

fn bolt_error(msg: impl std::fmt::Display) -> StoreError {
    StoreError::Snapshot(format!("bbolt: {msg}"))
}

#[cfg(test)]
mod tests;
