//! Reads a bbolt file page by page: the meta, the top-level buckets, and each
//! bucket's entries in key order.
//!
//! Only the pages on the current path are in memory (one per tree level), so
//! large files are read without loading them. Every offset and size read from
//! the file is bounds-checked: a damaged file is an error naming the page,
//! never a panic or an endless walk.

use std::io::{Read, Seek, SeekFrom};

use super::{
    bolt_error, le_u64, Meta, PageHeader, PageRef, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, NO_FREELIST,
    PAGE_HEADER_SIZE,
};
use crate::error::StoreError;

/// bbolt trees are a handful of levels deep; more means a cycle.
const MAX_DEPTH: usize = 64;

/// One entry of a bucket, as visited in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    /// The stored value; for a nested bucket, its bucket header.
    pub value: &'a [u8],
    pub is_bucket: bool,
}

/// Where a bucket's tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketRoot {
    Page(u64),
    /// The bucket's single leaf page, stored inside its parent's entry.
    Inline(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: Vec<u8>,
    pub root: BucketRoot,
}

pub struct BoltReader<R: Read + Seek> {
    src: R,
    /// Bytes of `src` that belong to the database (a snapshot's trailer excluded).
    db_len: u64,
    page_size: u64,
    meta: Meta,
}

impl<R: Read + Seek> BoltReader<R> {
    /// Reads the meta pages of the bbolt file in the first `db_len` bytes of `src`.
    pub fn open(mut src: R, db_len: u64) -> Result<Self, StoreError> {
        let meta = super::select_meta(&mut |offset, len| read_at(&mut src, db_len, offset, len)).map_err(bolt_error)?;
        let page_size = u64::from(meta.page_size);
        let needed = meta.high_water.saturating_mul(page_size);
        if needed > db_len {
            return Err(bolt_error(format!(
                "file is truncated: the meta needs {} pages ({needed} bytes), the file holds {db_len} bytes",
                meta.high_water
            )));
        }
        if meta.root < 2 || meta.root >= meta.high_water {
            return Err(bolt_error(format!("root page {} is outside the file", meta.root)));
        }
        if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.high_water) {
            return Err(bolt_error(format!("freelist page {} is outside the file", meta.freelist)));
        }
        Ok(BoltReader { src, db_len, page_size, meta })
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The database size as bbolt's `Tx.Size` reports it: high-water pages.
    pub fn size(&self) -> u64 {
        self.meta.high_water * self.page_size
    }

    /// The top-level buckets in name order.
    pub fn buckets(&mut self) -> Result<Vec<Bucket>, StoreError> {
        let mut buckets = Vec::new();
        let root = BucketRoot::Page(self.meta.root);
        self.for_each_in(&root, &mut |e| {
            if !e.is_bucket {
                return Err(bolt_error(format!(
                    "root holds a plain key {:?}, not a bucket",
                    String::from_utf8_lossy(e.key)
                )));
            }
            buckets.push(Bucket { name: e.key.to_vec(), root: bucket_root(e.value)? });
            Ok(())
        })?;
        Ok(buckets)
    }

    pub fn bucket(&mut self, name: &[u8]) -> Result<Option<Bucket>, StoreError> {
        Ok(self.buckets()?.into_iter().find(|b| b.name == name))
    }

    /// Visits every entry of `bucket` in key order.
    pub fn for_each(
        &mut self,
        bucket: &Bucket,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_in(&bucket.root, visit).map_err(|e| match e {
            StoreError::Snapshot(m) => {
                StoreError::Snapshot(format!("{m} (in bucket {:?})", String::from_utf8_lossy(&bucket.name)))
            }
            other => other,
        })
    }

    fn for_each_in(
        &mut self,
        root: &BucketRoot,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Keys must ascend across the whole bucket: a cheap check that catches
        // pages swapped or misplaced by corruption.
        let mut last: Option<Vec<u8>> = None;
        let mut checked = |e: Entry<'_>| -> Result<(), StoreError> {
            if last.as_deref().is_some_and(|l| l >= e.key) {
                return Err(bolt_error("keys out of order"));
            }
            match &mut last {
                Some(l) => {
                    l.clear();
                    l.extend_from_slice(e.key);
                }
                None => last = Some(e.key.to_vec()),
            }
            visit(e)
        };
        match root {
            BucketRoot::Inline(page) => {
                let page = PageRef::parse(page, || "inline bucket".into()).map_err(bolt_error)?;
                if !page.is_leaf() {
                    return Err(bolt_error("inline bucket page is not a leaf"));
                }
                visit_leaf(&page, "inline bucket", &mut checked)
            }
            BucketRoot::Page(pgid) => self.walk(*pgid, 0, &mut checked),
        }
    }

    fn walk(
        &mut self,
        pgid: u64,
        depth: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if depth > MAX_DEPTH {
            return Err(bolt_error(format!("page {pgid}: tree deeper than {MAX_DEPTH} levels (a cycle?)")));
        }
        let bytes = self.read_page(pgid)?;
        let page = PageRef::parse(&bytes, || format!("page {pgid}")).map_err(bolt_error)?;
        if page.is_leaf() {
            return visit_leaf(&page, &format!("page {pgid}"), visit);
        }
        if page.count == 0 {
            return Err(bolt_error(format!("page {pgid}: empty branch page")));
        }
        for i in 0..page.count {
            let (_, child) = page.branch(i).map_err(|m| bolt_error(format!("page {pgid}: {m}")))?;
            self.walk(child, depth + 1, visit)?;
        }
        Ok(())
    }

    /// Reads page `pgid` with its overflow pages.
    fn read_page(&mut self, pgid: u64) -> Result<Vec<u8>, StoreError> {
        if pgid < 2 || pgid >= self.meta.high_water {
            return Err(bolt_error(format!("page {pgid} is outside the file (high water {})", self.meta.high_water)));
        }
        let ps = self.page_size as usize;
        let offset = pgid * self.page_size;
        let mut page =
            read_at(&mut self.src, self.db_len, offset, ps).map_err(|e| bolt_error(format!("page {pgid}: {e}")))?;
        let header = PageHeader::decode(&page);
        if header.id != pgid {
            return Err(bolt_error(format!("page {pgid}: header names page {} (corrupt file)", header.id)));
        }
        if header.overflow > 0 {
            let pages = u64::from(header.overflow) + 1;
            if pgid + pages > self.meta.high_water {
                return Err(bolt_error(format!("page {pgid}: {} overflow pages run past the file", header.overflow)));
            }
            let rest = read_at(&mut self.src, self.db_len, offset + self.page_size, (pages as usize - 1) * ps)
                .map_err(|e| bolt_error(format!("page {pgid}: {e}")))?;
            page.extend_from_slice(&rest);
        }
        Ok(page)
    }
}

/// Reads `len` bytes at `offset`, refusing to read past `db_len`.
fn read_at<R: Read + Seek>(src: &mut R, db_len: u64, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    if offset.saturating_add(len as u64) > db_len {
        return Err(format!("{len} bytes at offset {offset} are past the end of the file ({db_len} bytes): truncated"));
    }
    let mut buf = vec![0u8; len];
    src.seek(SeekFrom::Start(offset)).map_err(|e| format!("seek: {e}"))?;
    src.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
    Ok(buf)
}

/// Decodes a bucket's header from its entry value in the parent.
fn bucket_root(value: &[u8]) -> Result<BucketRoot, StoreError> {
    if value.len() < BUCKET_HEADER_SIZE {
        return Err(bolt_error("bucket header is short"));
    }
    match le_u64(value, 0) {
        0 => {
            let page = value[BUCKET_HEADER_SIZE..].to_vec();
            if page.len() < PAGE_HEADER_SIZE {
                return Err(bolt_error("inline bucket page is short"));
            }
            Ok(BucketRoot::Inline(page))
        }
        pgid => Ok(BucketRoot::Page(pgid)),
    }
}

fn visit_leaf(
    page: &PageRef<'_>,
    context: &str,
    visit: &mut dyn FnMut(Entry<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for i in 0..page.count {
        let (flags, key, value) = page.leaf(i).map_err(|m| bolt_error(format!("{context}: element {i}: {m}")))?;
        visit(Entry { key, value, is_bucket: flags & BUCKET_LEAF_FLAG != 0 })?;
    }
    Ok(())
}
