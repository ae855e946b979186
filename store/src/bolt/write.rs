//! Writes a bbolt file in one pass from sorted input, the way a bulk load
//! would: leaf pages are written as they fill, branch levels are built over
//! them when a bucket ends, and the meta pages go in last.
//!
//! Memory stays at one page plus the first key of every page of the open
//! bucket, so a snapshot of hundreds of MB streams through. Pages are packed
//! full (bbolt's fill percent 100%): the file is written once and whatever
//! opens it next (etcd) splits pages as it writes. The file has a synced, empty
//! freelist at page 2, like a freshly created bbolt file, and every page below
//! the high-water mark is reachable, which bbolt's `Tx.Check` (run by
//! `etcdctl snapshot status`) requires.

use std::io::{Seek, SeekFrom, Write};

use super::{
    bolt_error, Meta, PageHeader, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEMENT_SIZE, FREELIST_PAGE,
    LEAF_PAGE, MAX_INLINE_BUCKET_SIZE, MAX_KEY_SIZE, MAX_VALUE_SIZE, META_PAGE, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use crate::error::StoreError;

/// Meta pages 0 and 1, the freelist at 2; data pages start after them.
const FREELIST_PGID: u64 = 2;
const FIRST_DATA_PGID: u64 = 3;

/// What [`BoltWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoltSummary {
    /// Pages in the file (the meta's high-water mark).
    pub pages: u64,
    /// Bytes of the file: what bbolt's `Tx.Size` reports.
    pub size: u64,
}

/// Builds a bbolt file of top-level buckets, each filled with ascending keys.
///
/// Buckets must be begun in ascending name order and keys put in ascending
/// order within a bucket, as bbolt keeps them; anything else is an error.
pub struct BoltWriter<W: Write + Seek> {
    pages: PageSink<W>,
    /// Finished top-level buckets: name → bucket value (header, inline page).
    buckets: Vec<(Vec<u8>, Vec<u8>)>,
    open: Option<(Vec<u8>, TreeBuilder)>,
}

impl<W: Write + Seek> BoltWriter<W> {
    /// Starts a file at the current position of `out` (normally its start).
    pub fn new(mut out: W) -> Result<Self, StoreError> {
        let base = out.stream_position().map_err(io_error)?;
        // Reserve the meta and freelist pages; they are written by `finish`.
        out.write_all(&[0u8; PAGE_SIZE * FIRST_DATA_PGID as usize]).map_err(io_error)?;
        Ok(BoltWriter { pages: PageSink { out, base, next_pgid: FIRST_DATA_PGID }, buckets: Vec::new(), open: None })
    }

    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<(), StoreError> {
        if self.open.is_some() {
            return Err(bolt_error("a bucket is already open"));
        }
        check_key(name)?;
        if self.buckets.last().is_some_and(|(last, _)| last.as_slice() >= name) {
            return Err(bolt_error(format!(
                "bucket {:?} is not after the previous one",
                String::from_utf8_lossy(name)
            )));
        }
        self.open = Some((name.to_vec(), TreeBuilder::default()));
        Ok(())
    }

    /// Adds an entry to the open bucket.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (_, tree) = self.open.as_mut().ok_or_else(|| bolt_error("put outside a bucket"))?;
        tree.put(&mut self.pages, key, value, 0)
    }

    pub fn end_bucket(&mut self) -> Result<(), StoreError> {
        let (name, tree) = self.open.take().ok_or_else(|| bolt_error("no bucket is open"))?;
        let value = tree.finish(&mut self.pages, true)?;
        self.buckets.push((name, value));
        Ok(())
    }

    /// Writes the root bucket, the freelist and the meta pages; returns the
    /// output (positioned at the end of the file) and what was written.
    pub fn finish(mut self) -> Result<(W, BoltSummary), StoreError> {
        if self.open.is_some() {
            return Err(bolt_error("finish with a bucket still open"));
        }
        let mut root = TreeBuilder::default();
        for (name, value) in std::mem::take(&mut self.buckets) {
            root.put(&mut self.pages, &name, &value, BUCKET_LEAF_FLAG)?;
        }
        let root_value = root.finish(&mut self.pages, false)?;
        let root_pgid = super::le_u64(&root_value, 0);

        let PageSink { mut out, base, next_pgid } = self.pages;
        let mut head = vec![0u8; PAGE_SIZE * FIRST_DATA_PGID as usize];
        // Both metas name the same tree; like bbolt's `init`, meta N has txid N,
        // so meta 1 is read and meta 0 is the fallback if it is damaged.
        for pgid in 0..2u64 {
            let page = &mut head[pgid as usize * PAGE_SIZE..];
            PageHeader { id: pgid, flags: META_PAGE, count: 0, overflow: 0 }.encode_into(page);
            let meta = Meta {
                page_size: PAGE_SIZE as u32,
                flags: 0,
                root: root_pgid,
                root_sequence: 0,
                freelist: FREELIST_PGID,
                high_water: next_pgid,
                txid: pgid,
            };
            page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + super::META_LEN].copy_from_slice(&meta.encode());
        }
        let freelist = &mut head[FREELIST_PGID as usize * PAGE_SIZE..];
        PageHeader { id: FREELIST_PGID, flags: FREELIST_PAGE, count: 0, overflow: 0 }.encode_into(freelist);

        let size = next_pgid * PAGE_SIZE as u64;
        out.seek(SeekFrom::Start(base)).map_err(io_error)?;
        out.write_all(&head).map_err(io_error)?;
        out.seek(SeekFrom::Start(base + size)).map_err(io_error)?;
        out.flush().map_err(io_error)?;
        Ok((out, BoltSummary { pages: next_pgid, size }))
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    bolt_error(format!("write: {e}"))
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(bolt_error("empty key"));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(bolt_error(format!("key of {} bytes exceeds {MAX_KEY_SIZE}", key.len())));
    }
    Ok(())
}

/// Appends pages to the file and hands out their ids.
struct PageSink<W> {
    out: W,
    /// Offset of page 0 in `out`.
    base: u64,
    next_pgid: u64,
}

impl<W: Write> PageSink<W> {
    /// Writes an encoded node as the next page(s); returns its page id.
    fn append(&mut self, mut node: Vec<u8>) -> Result<u64, StoreError> {
        let pages = node.len().div_ceil(PAGE_SIZE).max(1);
        let id = self.next_pgid;
        let overflow = u32::try_from(pages - 1).map_err(|_| bolt_error("page run too long"))?;
        node[0..8].copy_from_slice(&id.to_le_bytes());
        node[12..16].copy_from_slice(&overflow.to_le_bytes());
        node.resize(pages * PAGE_SIZE, 0);
        self.out.write_all(&node).map_err(io_error)?;
        self.next_pgid += pages as u64;
        Ok(id)
    }
}

/// One element of a node being filled.
struct Elem {
    /// Leaf element flags (`BUCKET_LEAF_FLAG` for a nested bucket).
    flags: u32,
    ksize: u32,
    /// Leaf: value size. Branch: 0.
    vsize: u32,
    /// Branch: the child page. Leaf: 0.
    child: u64,
}

/// Elements of one node being filled; keys and values back to back in `data`.
#[derive(Default)]
pub(super) struct NodeBuf {
    elems: Vec<Elem>,
    data: Vec<u8>,
}

impl NodeBuf {
    pub(super) fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.elems.len() * ELEMENT_SIZE + self.data.len()
    }

    pub(super) fn len(&self) -> usize {
        self.elems.len()
    }

    pub(super) fn push_leaf(&mut self, key: &[u8], value: &[u8], flags: u32) {
        self.elems.push(Elem { flags, ksize: key.len() as u32, vsize: value.len() as u32, child: 0 });
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
    }

    pub(super) fn push_branch(&mut self, key: &[u8], child: u64) {
        self.elems.push(Elem { flags: 0, ksize: key.len() as u32, vsize: 0, child });
        self.data.extend_from_slice(key);
    }

    /// The node as bbolt lays out a page (id and overflow left zero).
    pub(super) fn encode(&self, branch: bool) -> Result<Vec<u8>, StoreError> {
        let n = self.elems.len();
        let count = u16::try_from(n).ok().filter(|&c| c < u16::MAX).ok_or_else(|| bolt_error("too many elements"))?;
        let flags = if branch { BRANCH_PAGE } else { LEAF_PAGE };
        let data_start = PAGE_HEADER_SIZE + n * ELEMENT_SIZE;
        let mut b = vec![0u8; data_start + self.data.len()];
        PageHeader { id: 0, flags, count, overflow: 0 }.encode_into(&mut b);
        let mut off = 0usize;
        for (i, elem) in self.elems.iter().enumerate() {
            let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
            let pos = u32::try_from(data_start + off - at).map_err(|_| bolt_error("page too large"))?;
            let e = &mut b[at..at + ELEMENT_SIZE];
            if branch {
                e[0..4].copy_from_slice(&pos.to_le_bytes());
                e[4..8].copy_from_slice(&elem.ksize.to_le_bytes());
                e[8..16].copy_from_slice(&elem.child.to_le_bytes());
            } else {
                e[0..4].copy_from_slice(&elem.flags.to_le_bytes());
                e[4..8].copy_from_slice(&pos.to_le_bytes());
                e[8..12].copy_from_slice(&elem.ksize.to_le_bytes());
                e[12..16].copy_from_slice(&elem.vsize.to_le_bytes());
            }
            off += elem.ksize as usize + elem.vsize as usize;
        }
        b[data_start..].copy_from_slice(&self.data);
        Ok(b)
    }

    fn first_key(&self) -> &[u8] {
        let ksize = self.elems.first().map_or(0, |e| e.ksize as usize);
        &self.data[..ksize]
    }
}

/// One bucket's B+tree, built bottom-up from ascending keys.
#[derive(Default)]
struct TreeBuilder {
    leaf: NodeBuf,
    /// (first key, page id) of every leaf page written so far.
    leaves: Vec<(Vec<u8>, u64)>,
    last_key: Option<Vec<u8>>,
}

impl TreeBuilder {
    fn put<W: Write>(
        &mut self,
        pages: &mut PageSink<W>,
        key: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), StoreError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(bolt_error(format!("value of {} bytes exceeds {MAX_VALUE_SIZE}", value.len())));
        }
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(bolt_error("keys must be put in ascending order, without duplicates"));
        }
        let elem_size = ELEMENT_SIZE + key.len() + value.len();
        if self.leaf.len() > 0 && self.leaf.size() + elem_size > PAGE_SIZE {
            self.flush_leaf(pages)?;
        }
        self.leaf.push_leaf(key, value, flags);
        match &mut self.last_key {
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => self.last_key = Some(key.to_vec()),
        }
        Ok(())
    }

    fn flush_leaf<W: Write>(&mut self, pages: &mut PageSink<W>) -> Result<(), StoreError> {
        let leaf = std::mem::take(&mut self.leaf);
        let pgid = pages.append(leaf.encode(false)?)?;
        self.leaves.push((leaf.first_key().to_vec(), pgid));
        Ok(())
    }

    /// Writes what is left and returns the bucket's value for its parent: the
    /// bucket header, followed by the leaf page when the bucket is inline.
    fn finish<W: Write>(mut self, pages: &mut PageSink<W>, may_inline: bool) -> Result<Vec<u8>, StoreError> {
        let mut value = vec![0u8; BUCKET_HEADER_SIZE];
        let has_sub_buckets = self.leaf.elems.iter().any(|e| e.flags & BUCKET_LEAF_FLAG != 0);
        if may_inline && self.leaves.is_empty() && !has_sub_buckets && self.leaf.size() <= MAX_INLINE_BUCKET_SIZE {
            value.extend_from_slice(&self.leaf.encode(false)?);
            return Ok(value);
        }
        if self.leaf.len() > 0 || self.leaves.is_empty() {
            self.flush_leaf(pages)?;
        }
        let mut level = self.leaves;
        while level.len() > 1 {
            level = write_branch_level(pages, level)?;
        }
        let root = level.first().map(|(_, pgid)| *pgid).ok_or_else(|| bolt_error("bucket without a root page"))?;
        value[0..8].copy_from_slice(&root.to_le_bytes());
        Ok(value)
    }
}

/// Writes branch pages over `children` (first key, page id); returns the new
/// level. Every branch page gets at least two children, as bbolt keeps them.
fn write_branch_level<W: Write>(
    pages: &mut PageSink<W>,
    children: Vec<(Vec<u8>, u64)>,
) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
    let mut groups: Vec<Vec<(Vec<u8>, u64)>> = vec![Vec::new()];
    let mut size = PAGE_HEADER_SIZE;
    for child in children {
        let elem_size = ELEMENT_SIZE + child.0.len();
        let full = groups.last().is_some_and(|g| !g.is_empty()) && size + elem_size > PAGE_SIZE;
        if full {
            groups.push(Vec::new());
            size = PAGE_HEADER_SIZE;
        }
        size += elem_size;
        if let Some(g) = groups.last_mut() {
            g.push(child);
        }
    }
    // A lone child in the last group: borrow one from the previous group, or
    // merge the two when that one has none to spare (only with huge keys).
    if groups.len() > 1 && groups.last().is_some_and(|g| g.len() == 1) {
        let last = groups.pop().unwrap_or_default();
        if let Some(prev) = groups.last_mut() {
            if prev.len() >= 3 {
                let moved = prev.pop();
                groups.push(moved.into_iter().chain(last).collect());
            } else {
                prev.extend(last);
            }
        }
    }
    let mut level = Vec::with_capacity(groups.len());
    for group in groups {
        let mut node = NodeBuf::default();
        for (key, pgid) in &group {
            node.push_branch(key, *pgid);
        }
        let pgid = pages.append(node.encode(true)?)?;
        level.push((node.first_key().to_vec(), pgid));
    }
    Ok(level)
}
