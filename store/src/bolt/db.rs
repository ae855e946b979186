//! A bbolt database that hub updates in place: the live backend, kept where
//! etcd keeps its own (`member/snap/db`) and readable and writable by etcd's
//! tools (`bbolt`, `etcd-dump-db`, Go programs opening it with bbolt) while
//! hub is stopped.
//!
//! It works the way bbolt does, on bbolt's pages ([`super`]):
//! - **copy on write**: a commit loads the pages on the paths it changes into
//!   nodes, applies its writes, merges nodes left small by deletes, splits the
//!   ones that outgrew a page, and writes them to free pages; the pages it
//!   replaced are freed. Nothing reachable from the last durable meta page is
//!   ever overwritten, so a crash at any instant leaves the previous commit;
//! - **two meta pages**, written alternately, each checksummed: a torn meta
//!   write leaves the other one;
//! - **durability**: data pages are fsynced before the meta page that makes
//!   them reachable, and the meta page is fsynced before the commit counts as
//!   durable. With deferred durability (raft's WAL already holds every entry)
//!   commits are visible at once and reach the meta page together at
//!   [`BoltDb::sync`], which fsyncs without the writer's lock: commits (and so
//!   the readers waiting on them) never wait out a backend fsync;
//! - **no stored freelist** (etcd 3.4 runs bbolt with `NoFreelistSync`): the
//!   free pages are what the tree does not reach, found by a walk at open;
//! - **readers never wait for the writer**: a read pins the commit it started
//!   at; pages freed after that commit are reused only once no reader pins an
//!   earlier one and the freeing commit is durable.
//!
//! Reads go through a shared map of the file; every page id, offset and size
//! taken from the file is checked, so a damaged file is an error, not a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};

use super::write::{BoltWriter, NodeBuf};
use super::{
    le_u64, Meta, PageError, PageHeader, PageRef, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEMENT_SIZE, META_LEN,
    META_PAGE, NO_FREELIST, PAGE_HEADER_SIZE,
};
use crate::error::BackendError;

/// Deeper than any real tree: a deeper walk is following a cycle.
const MAX_DEPTH: usize = 64;

/// A node holding less than this fraction of a page after deletes is merged
/// into a sibling (bbolt's threshold).
const MERGE_BELOW: usize = 4;

/// Split nodes fill pages to 90% (what etcd asks of bbolt for its key bucket,
/// where writes append): room for a few updates before the next split.
const FILL_PERCENT: usize = 90;

fn corrupt(msg: impl std::fmt::Display) -> BackendError {
    BackendError::new(format!("bbolt backend: {msg}"))
}

impl From<PageError> for BackendError {
    fn from(e: PageError) -> Self {
        corrupt(e)
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError::new(format!("bbolt backend: {what} {}: {e}", path.display()))
}

/// A bbolt file open for reading and writing.
pub struct BoltDb {
    path: PathBuf,
    /// One make-durable at a time (its meta page write must not race
    /// another's). Taken before `writer`; held across fsyncs `writer` is not.
    syncing: Mutex<()>,
    /// Commits are durable only at the next [`BoltDb::sync`].
    deferred: AtomicBool,
    /// Free pages, the file, and the commit in progress; one writer at a time.
    writer: Mutex<Writer>,
    /// The latest commit, as new readers see it.
    current: RwLock<Published>,
    /// `Tx.Size` of the latest commit: high-water pages times the page size.
    size: AtomicU64,
    /// [`BoltDb::size`] less the free pages (etcd's `SizeInUse`).
    in_use: AtomicU64,
    /// Runs in [`BoltDb::sync`] just before its fsyncs (a test holds a sync there).
    #[cfg(test)]
    sync_hook: Mutex<Box<dyn Fn() + Send>>,
}

/// What a reader needs to read one commit: its meta and a map of the file.
#[derive(Clone)]
struct Published {
    meta: Meta,
    map: Arc<Mmap>,
    /// The commits readers pin; one set per file (a defragmentation starts a
    /// new file with its own transaction ids).
    readers: Arc<Readers>,
}

/// How many readers pin each commit (by transaction id).
#[derive(Default)]
struct Readers(Mutex<BTreeMap<u64, usize>>);

impl Readers {
    fn enter(&self, txid: u64) {
        *self.0.lock().entry(txid).or_default() += 1;
    }

    fn leave(&self, txid: u64) {
        let mut pinned = self.0.lock();
        if let Some(n) = pinned.get_mut(&txid) {
            *n -= 1;
            if *n == 0 {
                pinned.remove(&txid);
            }
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.0.lock().keys().next().copied()
    }
}

/// A consistent view of one commit; the pages it reaches stay as they are
/// while it lives.
pub struct ReadTx {
    meta: Meta,
    map: Arc<Mmap>,
    page_size: usize,
    /// Where this view is registered (none for the writer's own view).
    pinned: Option<Arc<Readers>>,
}

impl Drop for ReadTx {
    fn drop(&mut self) {
        if let Some(readers) = &self.pinned {
            readers.leave(self.meta.txid);
        }
    }
}

/// Where a bucket's tree starts.
#[derive(Clone, Copy)]
enum Root<'a> {
    Page(u64),
    /// An inline bucket's only leaf, stored in its parent's entry.
    Inline(&'a [u8]),
}

impl ReadTx {
    /// Drops this process's resident pages of the file this view reads:
    /// they are read again from the page cache when next touched.
    pub fn release_mapped_pages(&self) {
        // SAFETY: the map is shared and read-only, so MADV_DONTNEED discards no
        // data: a later read faults the page in again from the file, which holds
        // what every live view reaches (see `map_file`).
        if let Err(e) = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
            tracing::debug!(error = %e, "cannot release the backend's mapped pages");
        }
    }

    /// Page `pgid` with its overflow pages.
    fn page(&self, pgid: u64) -> Result<&[u8], BackendError> {
        let high_water = self.meta.high_water;
        if pgid < 2 || pgid >= high_water {
            return Err(corrupt(format!("page {pgid} is outside the database (high water {high_water})")));
        }
        let ps = self.page_size;
        let start = usize::try_from(pgid).map_err(corrupt)? * ps;
        let head = self.map.get(start..start + PAGE_HEADER_SIZE).ok_or_else(|| corrupt("file shorter than its meta"))?;
        let header = PageHeader::decode(head);
        if header.id != pgid {
            return Err(corrupt(format!("page {pgid}: header names page {}", header.id)));
        }
        let pages = u64::from(header.overflow) + 1;
        if pgid + pages > high_water {
            return Err(corrupt(format!("page {pgid}: {} overflow pages run past the database", header.overflow)));
        }
        self.map.get(start..start + pages as usize * ps).ok_or_else(|| corrupt("file shorter than its meta"))
    }

    fn page_ref<'s>(&'s self, root: Root<'s>) -> Result<PageRef<'s>, BackendError> {
        match root {
            Root::Page(pgid) => PageRef::parse(self.page(pgid)?, || format!("page {pgid}")),
            Root::Inline(bytes) => PageRef::parse(bytes, || "inline bucket".to_string()),
        }
        .map_err(BackendError::from)
    }

    /// The tree of bucket `name`, if the database has that bucket.
    fn bucket(&self, name: &[u8]) -> Result<Option<(Root<'_>, u64)>, BackendError> {
        match self.get_in(Root::Page(self.meta.root), name)? {
            Some((flags, value)) if flags & BUCKET_LEAF_FLAG != 0 => bucket_root(value).map(Some),
            Some(_) => Err(corrupt(format!("{:?} is a key of the root, not a bucket", String::from_utf8_lossy(name)))),
            None => Ok(None),
        }
    }

    /// The flags and value of `key` in the tree at `root`.
    fn get_in<'s>(&'s self, root: Root<'s>, key: &[u8]) -> Result<Option<(u32, &'s [u8])>, BackendError> {
        let mut page = self.page_ref(root)?;
        for _ in 0..MAX_DEPTH {
            let i = page.search(key)?;
            if page.is_leaf() {
                if i < page.count {
                    let (flags, k, v) = page.leaf(i)?;
                    if k == key {
                        return Ok(Some((flags, v)));
                    }
                }
                return Ok(None);
            }
            if page.count == 0 {
                return Err(corrupt("empty branch page"));
            }
            let (_, child) = page.branch(i)?;
            page = self.page_ref(Root::Page(child))?;
        }
        Err(corrupt(format!("tree deeper than {MAX_DEPTH} levels (a cycle?)")))
    }

    /// Looks up `keys` in bucket `name` (a missing bucket holds nothing).
    pub fn get_many(&self, name: &[u8], keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let Some((root, _)) = self.bucket(name)? else {
            return Ok(vec![None; keys.len()]);
        };
        keys.iter().map(|k| Ok(self.get_in(root, k)?.map(|(_, v)| v.to_vec()))).collect()
    }

    /// Visits the entries of bucket `name` in `[from, to)` in key order until
    /// `visit` returns false.
    pub fn scan(
        &self,
        name: &[u8],
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        if let Some((root, _)) = self.bucket(name)? {
            self.scan_in(self.page_ref(root)?, from, to, 0, visit)?;
        }
        Ok(())
    }

    /// Returns whether the scan goes on after this subtree.
    fn scan_in(
        &self,
        page: PageRef<'_>,
        from: &[u8],
        to: Option<&[u8]>,
        depth: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<bool, BackendError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(format!("tree deeper than {MAX_DEPTH} levels (a cycle?)")));
        }
        let start = page.search(from)?;
        for i in start..page.count {
            if page.is_leaf() {
                let (_, k, v) = page.leaf(i)?;
                if to.is_some_and(|to| k >= to) || !visit(k, v) {
                    return Ok(false);
                }
            } else {
                let (k, child) = page.branch(i)?;
                if i > start && to.is_some_and(|to| k >= to) {
                    return Ok(false);
                }
                if !self.scan_in(self.page_ref(Root::Page(child))?, from, to, depth + 1, visit)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The top-level buckets, in name order.
    fn bucket_names(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        let mut names = Vec::new();
        self.scan_in(self.page_ref(Root::Page(self.meta.root))?, &[], None, 0, &mut |k, _| {
            names.push(k.to_vec());
            true
        })?;
        Ok(names)
    }

    /// Marks every page the tree at `root` reaches (and the trees of the
    /// buckets it holds); a page reached twice is corruption.
    fn mark_reachable(&self, root: Root<'_>, seen: &mut [bool], depth: usize) -> Result<(), BackendError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(format!("tree deeper than {MAX_DEPTH} levels (a cycle?)")));
        }
        if let Root::Page(pgid) = root {
            let pages = (self.page(pgid)?.len() / self.page_size) as u64;
            for p in pgid..pgid + pages {
                let slot = seen.get_mut(p as usize).ok_or_else(|| corrupt(format!("page {p} is out of range")))?;
                if std::mem::replace(slot, true) {
                    return Err(corrupt(format!("page {p} is reachable twice")));
                }
            }
        }
        let page = self.page_ref(root)?;
        for i in 0..page.count {
            if page.is_leaf() {
                let (flags, _, value) = page.leaf(i)?;
                if flags & BUCKET_LEAF_FLAG != 0 {
                    let (sub, _) = bucket_root(value)?;
                    self.mark_reachable(sub, seen, depth + 1)?;
                }
            } else {
                let (_, child) = page.branch(i)?;
                self.mark_reachable(Root::Page(child), seen, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// A bucket's tree and sequence from its entry in the parent.
fn bucket_root(value: &[u8]) -> Result<(Root<'_>, u64), BackendError> {
    if value.len() < BUCKET_HEADER_SIZE {
        return Err(corrupt("bucket header is short"));
    }
    let sequence = le_u64(value, 8);
    match le_u64(value, 0) {
        0 => Ok((Root::Inline(&value[BUCKET_HEADER_SIZE..]), sequence)),
        pgid => Ok((Root::Page(pgid), sequence)),
    }
}

/// The meta of the mapped file (see [`super::select_meta`]), checked against its length.
fn read_meta(map: &[u8]) -> Result<Meta, String> {
    let meta = super::select_meta(&mut |offset, len| {
        let start = usize::try_from(offset).map_err(|e| e.to_string())?;
        map.get(start..start + len).map(<[u8]>::to_vec).ok_or_else(|| "file too short for a meta page".to_string())
    })?;
    let needed = meta.high_water.saturating_mul(u64::from(meta.page_size));
    if needed > map.len() as u64 {
        return Err(format!("truncated: the meta needs {needed} bytes, the file has {}", map.len()));
    }
    Ok(meta)
}

/// The writer's side: the file, the free pages and what is not yet durable.
struct Writer {
    /// Shared with a [`BoltDb::sync`] running without the writer's lock.
    file: Arc<File>,
    file_len: u64,
    /// The latest commit (also published to readers).
    meta: Meta,
    /// The newest commit whose meta page is on disk.
    durable_txid: u64,
    map: Arc<Mmap>,
    readers: Arc<Readers>,
    /// Pages no commit reaches, ready for reuse.
    free: BTreeSet<u64>,
    /// Pages freed by each commit: the commits before it still reach them.
    pending: BTreeMap<u64, Vec<u64>>,
    /// A failure that left the file in a state only a restart can judge.
    failed: Option<String>,
}

impl Writer {
    fn open(path: &Path) -> Result<Writer, BackendError> {
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_error("open", path, e))?;
        // Two processes updating one bbolt file destroy it; bbolt locks the
        // same way, so hub and a Go tool exclude each other too.
        file.try_lock().map_err(|e| io_error("lock (is another process using it?)", path, e.into()))?;
        let file_len = file.metadata().map_err(|e| io_error("stat", path, e))?.len();
        let map = Arc::new(map_file(&file, path)?);
        let meta = read_meta(&map).map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        let mut writer = Writer {
            file: Arc::new(file),
            file_len,
            meta,
            durable_txid: meta.txid,
            map,
            readers: Arc::default(),
            free: BTreeSet::new(),
            pending: BTreeMap::new(),
            failed: None,
        };
        let view = writer.view();
        let mut seen = vec![false; usize::try_from(meta.high_water).map_err(corrupt)?];
        view.mark_reachable(Root::Page(meta.root), &mut seen, 0)
            .map_err(|e| BackendError::new(format!("{e} (in {})", path.display())))?;
        writer.free = (2..meta.high_water).filter(|&p| !seen[p as usize]).collect();
        Ok(writer)
    }

    fn page_size(&self) -> usize {
        self.meta.page_size as usize
    }

    /// A view of the latest commit for the writer itself (not pinned: the
    /// writer never frees what it is reading).
    fn view(&self) -> ReadTx {
        ReadTx { meta: self.meta, map: self.map.clone(), page_size: self.page_size(), pinned: None }
    }

    fn published(&self) -> Published {
        Published { meta: self.meta, map: self.map.clone(), readers: self.readers.clone() }
    }

    /// Moves pages to `free` once no reader pins a commit that reaches them
    /// and the commit that freed them is durable.
    fn release_pending(&mut self) {
        let limit = self.readers.oldest().unwrap_or(u64::MAX).min(self.durable_txid);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > limit {
                break;
            }
            self.free.extend(entry.remove());
        }
    }

    fn pages_in_use(&self) -> u64 {
        let pending: usize = self.pending.values().map(Vec::len).sum();
        self.meta.high_water.saturating_sub((self.free.len() + pending) as u64)
    }

    /// Writes the latest commit's meta page and makes everything before it
    /// durable, holding the writer's lock throughout (the caller holds
    /// [`BoltDb::syncing`] too).
    fn make_durable(&mut self, path: &Path) -> Result<(), BackendError> {
        let Some(meta) = self.meta_to_persist()? else { return Ok(()) };
        let persisted = persist_meta(&self.file, path, &meta);
        self.persisted(meta, persisted)
    }

    /// The meta that makes the latest commit durable, or none if it is.
    fn meta_to_persist(&mut self) -> Result<Option<Meta>, BackendError> {
        if self.durable_txid == self.meta.txid {
            return Ok(None);
        }
        if let Some(f) = &self.failed {
            return Err(BackendError::new(f.clone()));
        }
        // Metas alternate between pages 0 and 1 by txid; after deferred commits
        // the next txid may fall on the durable meta's page, which must survive
        // a torn write of this one. The tree is the same either way.
        if self.meta.txid % 2 == self.durable_txid % 2 {
            self.meta.txid += 1;
        }
        Ok(Some(self.meta))
    }

    /// Records how persisting `meta` went.
    fn persisted(&mut self, meta: Meta, result: Result<(), BackendError>) -> Result<(), BackendError> {
        if let Err(e) = &result {
            // After a failed fsync nothing about the file is certain.
            self.failed = Some(e.to_string());
        }
        result?;
        self.durable_txid = self.durable_txid.max(meta.txid);
        Ok(())
    }
}

/// Makes the commit `meta` describes durable: its data pages first, then the
/// meta page that makes them reachable. Commits made meanwhile write only
/// pages no durable or persisting commit reaches (pages are reused once the
/// commit that freed them is durable), and no meta page.
fn persist_meta(file: &File, path: &Path, meta: &Meta) -> Result<(), BackendError> {
    file.sync_data().map_err(|e| io_error("sync", path, e))?;
    let ps = meta.page_size as usize;
    let slot = meta.txid % 2;
    let mut page = vec![0u8; ps];
    PageHeader { id: slot, flags: META_PAGE, count: 0, overflow: 0 }.encode_into(&mut page);
    page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_LEN].copy_from_slice(&meta.encode());
    file.write_all_at(&page, slot * ps as u64).map_err(|e| io_error("write the meta page of", path, e))?;
    file.sync_data().map_err(|e| io_error("sync", path, e))
}

fn map_file(file: &File, path: &Path) -> Result<Mmap, BackendError> {
    // SAFETY: the map is only read. This process writes the file with pwrite,
    // only to pages no live view reaches (see the module doc); other processes
    // are kept out by the exclusive lock taken at open.
    unsafe { Mmap::map(file) }.map_err(|e| io_error("map", path, e))
}

/// A write transaction over the writer's latest commit.
struct WriteTx<'w> {
    view: ReadTx,
    free: &'w mut BTreeSet<u64>,
    /// Pages taken from `free` (put back if the commit fails).
    taken: Vec<u64>,
    high_water: u64,
    /// Pages of the latest commit this one replaces.
    freed: Vec<u64>,
    writes: Vec<(u64, Vec<u8>)>,
}

enum Node {
    Leaf(Vec<LeafItem>),
    Branch(Vec<BranchItem>),
}

struct LeafItem {
    key: Vec<u8>,
    value: Vec<u8>,
    flags: u32,
}

struct BranchItem {
    key: Vec<u8>,
    child: Child,
}

enum Child {
    Page(u64),
    Node(Box<Loaded>),
}

struct Loaded {
    node: Node,
    /// Deletes shrank it: a candidate for merging into a sibling.
    unbalanced: bool,
}

impl Loaded {
    fn empty_leaf() -> Box<Loaded> {
        Box::new(Loaded { node: Node::Leaf(Vec::new()), unbalanced: false })
    }

    fn size(&self) -> usize {
        PAGE_HEADER_SIZE
            + match &self.node {
                Node::Leaf(items) => items.iter().map(|i| ELEMENT_SIZE + i.key.len() + i.value.len()).sum::<usize>(),
                Node::Branch(items) => items.iter().map(|i| ELEMENT_SIZE + i.key.len()).sum::<usize>(),
            }
    }

    fn is_empty(&self) -> bool {
        match &self.node {
            Node::Leaf(items) => items.is_empty(),
            Node::Branch(items) => items.is_empty(),
        }
    }

    fn decode(page: &PageRef<'_>) -> Result<Box<Loaded>, BackendError> {
        let node = if page.is_leaf() {
            let items = (0..page.count)
                .map(|i| {
                    let (flags, k, v) = page.leaf(i)?;
                    Ok(LeafItem { key: k.to_vec(), value: v.to_vec(), flags })
                })
                .collect::<Result<_, BackendError>>()?;
            Node::Leaf(items)
        } else {
            let items = (0..page.count)
                .map(|i| {
                    let (k, child) = page.branch(i)?;
                    Ok(BranchItem { key: k.to_vec(), child: Child::Page(child) })
                })
                .collect::<Result<_, BackendError>>()?;
            Node::Branch(items)
        };
        Ok(Box::new(Loaded { node, unbalanced: false }))
    }
}

/// Where a search for `key` goes among a branch's children.
fn child_index(items: &[BranchItem], key: &[u8]) -> usize {
    items.partition_point(|i| i.key.as_slice() <= key).saturating_sub(1)
}

impl WriteTx<'_> {
    fn page_size(&self) -> usize {
        self.view.page_size
    }

    /// Turns a page child into its node, freeing the page.
    fn load<'c>(&mut self, child: &'c mut Child) -> Result<&'c mut Loaded, BackendError> {
        if let Child::Page(pgid) = *child {
            let bytes = self.view.page(pgid)?;
            let pages = (bytes.len() / self.page_size()) as u64;
            let node = Loaded::decode(&PageRef::parse(bytes, || format!("page {pgid}"))?)?;
            self.freed.extend(pgid..pgid + pages);
            *child = Child::Node(node);
        }
        match child {
            Child::Node(node) => Ok(node),
            Child::Page(pgid) => Err(corrupt(format!("page {pgid} did not load"))),
        }
    }

    /// The tree of bucket `name` as a child to write into (a new empty one
    /// when the bucket does not exist yet), and the bucket's sequence.
    fn bucket(&self, name: &[u8]) -> Result<(Child, u64), BackendError> {
        Ok(match self.view.bucket(name)? {
            Some((Root::Page(pgid), sequence)) => (Child::Page(pgid), sequence),
            Some((root @ Root::Inline(_), sequence)) => (Child::Node(Loaded::decode(&self.view.page_ref(root)?)?), sequence),
            None => (Child::Node(Loaded::empty_leaf()), 0),
        })
    }

    fn put(&mut self, root: &mut Child, key: &[u8], value: Vec<u8>, flags: u32) -> Result<(), BackendError> {
        let mut child = root;
        for _ in 0..MAX_DEPTH {
            match &mut self.load(child)?.node {
                Node::Leaf(items) => {
                    match items.binary_search_by(|i| i.key.as_slice().cmp(key)) {
                        Ok(i) => {
                            items[i].value = value;
                            items[i].flags = flags;
                        }
                        Err(i) => items.insert(i, LeafItem { key: key.to_vec(), value, flags }),
                    }
                    return Ok(());
                }
                Node::Branch(items) => {
                    let i = child_index(items, key);
                    child = &mut items.get_mut(i).ok_or_else(|| corrupt("empty branch page"))?.child;
                }
            }
        }
        Err(corrupt(format!("tree deeper than {MAX_DEPTH} levels (a cycle?)")))
    }

    fn delete(&mut self, root: &mut Child, key: &[u8]) -> Result<(), BackendError> {
        let mut child = root;
        for _ in 0..MAX_DEPTH {
            let loaded = self.load(child)?;
            match &mut loaded.node {
                Node::Leaf(items) => {
                    if let Ok(i) = items.binary_search_by(|i| i.key.as_slice().cmp(key)) {
                        items.remove(i);
                        loaded.unbalanced = true;
                    }
                    return Ok(());
                }
                Node::Branch(items) => {
                    let i = child_index(items, key);
                    child = &mut items.get_mut(i).ok_or_else(|| corrupt("empty branch page"))?.child;
                }
            }
        }
        Err(corrupt(format!("tree deeper than {MAX_DEPTH} levels (a cycle?)")))
    }

    /// Removes emptied nodes and merges nodes that deletes left small into a
    /// sibling, bottom up, as bbolt's `rebalance` does.
    fn rebalance(&mut self, loaded: &mut Loaded, depth: usize) -> Result<(), BackendError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(format!("tree deeper than {MAX_DEPTH} levels (a cycle?)")));
        }
        let threshold = self.page_size() / MERGE_BELOW;
        let Node::Branch(items) = &mut loaded.node else {
            return Ok(());
        };
        for item in items.iter_mut() {
            if let Child::Node(child) = &mut item.child {
                self.rebalance(child, depth + 1)?;
            }
        }
        let mut i = 0;
        while i < items.len() {
            let (empty, small) = match &items[i].child {
                Child::Node(n) => (n.is_empty(), n.unbalanced && n.size() < threshold),
                Child::Page(_) => (false, false),
            };
            if empty {
                items.remove(i);
                loaded.unbalanced = true;
                continue;
            }
            if !small || items.len() < 2 {
                i += 1;
                continue;
            }
            let (left, right) = if i + 1 < items.len() { (i, i + 1) } else { (i - 1, i) };
            let right_is_leaf = matches!(self.load(&mut items[right].child)?.node, Node::Leaf(_));
            let left_node = self.load(&mut items[left].child)?;
            if matches!(left_node.node, Node::Leaf(_)) != right_is_leaf {
                return Err(corrupt("sibling pages of different kinds"));
            }
            let Child::Node(right_node) = items.remove(right).child else {
                return Err(corrupt("a merged page did not load"));
            };
            let Child::Node(left_node) = &mut items[left].child else {
                return Err(corrupt("a merged page did not load"));
            };
            match (&mut left_node.node, right_node.node) {
                (Node::Leaf(a), Node::Leaf(b)) => a.extend(b),
                (Node::Branch(a), Node::Branch(b)) => a.extend(b),
                _ => return Err(corrupt("sibling pages of different kinds")),
            }
            left_node.unbalanced = true;
            loaded.unbalanced = true;
            i = left;
        }
        Ok(())
    }

    /// Writes a node (split as needed) to free pages, children first; returns
    /// the (first key, page) of each page written, none if the node emptied.
    fn spill(&mut self, loaded: Loaded) -> Result<Vec<(Vec<u8>, u64)>, BackendError> {
        match loaded.node {
            Node::Leaf(items) => {
                let mut out = Vec::new();
                if items.is_empty() {
                    return Ok(out);
                }
                for group in split(items, |i| i.key.len() + i.value.len(), self.page_size()) {
                    let mut buf = NodeBuf::default();
                    for item in &group {
                        buf.push_leaf(&item.key, &item.value, item.flags);
                    }
                    let pgid = self.write(&buf, false)?;
                    out.push((group.into_iter().next().map(|i| i.key).unwrap_or_default(), pgid));
                }
                Ok(out)
            }
            Node::Branch(items) => {
                let mut entries = Vec::with_capacity(items.len());
                for item in items {
                    match item.child {
                        Child::Page(pgid) => entries.push((item.key, pgid)),
                        Child::Node(child) => entries.extend(self.spill(*child)?),
                    }
                }
                self.write_branches(entries)
            }
        }
    }

    fn write_branches(&mut self, entries: Vec<(Vec<u8>, u64)>) -> Result<Vec<(Vec<u8>, u64)>, BackendError> {
        let mut out = Vec::new();
        if entries.is_empty() {
            return Ok(out);
        }
        for group in split(entries, |(k, _)| k.len(), self.page_size()) {
            let mut buf = NodeBuf::default();
            for (key, pgid) in &group {
                buf.push_branch(key, *pgid);
            }
            let pgid = self.write(&buf, true)?;
            out.push((group.into_iter().next().map(|(k, _)| k).unwrap_or_default(), pgid));
        }
        Ok(out)
    }

    /// Writes the tree under `root` and returns its root page.
    fn commit_tree(&mut self, root: Child) -> Result<u64, BackendError> {
        let mut root = match root {
            Child::Page(pgid) => return Ok(pgid),
            Child::Node(node) => node,
        };
        self.rebalance(&mut root, 0)?;
        // A root branch left with one child gives way to it.
        loop {
            let Node::Branch(items) = &mut root.node else { break };
            if items.len() != 1 {
                break;
            }
            let mut only = items.remove(0).child;
            self.load(&mut only)?;
            let Child::Node(node) = only else {
                return Err(corrupt("a root's child did not load"));
            };
            root = node;
        }
        let mut level = self.spill(*root)?;
        if level.is_empty() {
            return self.write(&NodeBuf::default(), false);
        }
        while level.len() > 1 {
            level = self.write_branches(level)?;
        }
        Ok(level[0].1)
    }

    fn write(&mut self, node: &NodeBuf, branch: bool) -> Result<u64, BackendError> {
        let mut buf = node.encode(branch).map_err(|e| BackendError::new(e.to_string()))?;
        let ps = self.page_size();
        let pages = buf.len().div_ceil(ps).max(1);
        let pgid = self.allocate(pages);
        let overflow = u32::try_from(pages - 1).map_err(|_| corrupt("node too large"))?;
        buf[0..8].copy_from_slice(&pgid.to_le_bytes());
        buf[12..16].copy_from_slice(&overflow.to_le_bytes());
        buf.resize(pages * ps, 0);
        self.writes.push((pgid, buf));
        Ok(pgid)
    }

    /// `n` contiguous free pages, or new pages at the end of the file.
    fn allocate(&mut self, n: usize) -> u64 {
        let n = n as u64;
        let mut run: Option<(u64, u64)> = None;
        for &p in self.free.iter() {
            run = match run {
                Some((start, len)) if start + len == p => Some((start, len + 1)),
                _ => Some((p, 1)),
            };
            if let Some((start, len)) = run.filter(|&(_, len)| len == n) {
                for q in start..start + len {
                    self.free.remove(&q);
                    self.taken.push(q);
                }
                return start;
            }
        }
        let pgid = self.high_water;
        self.high_water += n;
        pgid
    }
}

/// Splits a node's items into pages filled to [`FILL_PERCENT`], at least two
/// items per page; a node of a few huge items stays one node over overflow pages.
fn split<T>(items: Vec<T>, payload: impl Fn(&T) -> usize, page_size: usize) -> Vec<Vec<T>> {
    let total: usize = PAGE_HEADER_SIZE + items.iter().map(|i| ELEMENT_SIZE + payload(i)).sum::<usize>();
    if total <= page_size || items.len() < 4 {
        return vec![items];
    }
    let threshold = page_size * FILL_PERCENT / 100;
    let n = items.len();
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut size = PAGE_HEADER_SIZE;
    for (i, item) in items.into_iter().enumerate() {
        let s = ELEMENT_SIZE + payload(&item);
        if group.len() >= 2 && size + s > threshold && n - i >= 2 {
            groups.push(std::mem::take(&mut group));
            size = PAGE_HEADER_SIZE;
        }
        size += s;
        group.push(item);
    }
    groups.push(group);
    groups
}

/// One write of a commit: bucket, key, and the value (none deletes).
pub type Op<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

impl BoltDb {
    /// Opens the bbolt file at `path`, creating it with `buckets` (empty) if
    /// there is none.
    pub fn open(path: &Path, buckets: &[&[u8]]) -> Result<BoltDb, BackendError> {
        let exists = std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
        if !exists {
            create(path, buckets)?;
        }
        let writer = Writer::open(path)?;
        let db = BoltDb {
            path: path.to_path_buf(),
            syncing: Mutex::new(()),
            deferred: AtomicBool::new(false),
            current: RwLock::new(writer.published()),
            size: AtomicU64::new(0),
            in_use: AtomicU64::new(0),
            #[cfg(test)]
            sync_hook: Mutex::new(Box::new(|| {})),
            writer: Mutex::new(writer),
        };
        db.update_sizes(&db.writer.lock());
        Ok(db)
    }

    fn update_sizes(&self, w: &Writer) {
        let ps = w.page_size() as u64;
        self.size.store(w.meta.high_water * ps, Ordering::Relaxed);
        self.in_use.store(w.pages_in_use() * ps, Ordering::Relaxed);
    }

    /// A view of the latest commit (durable or not).
    pub fn begin_read(&self) -> ReadTx {
        let current = self.current.read();
        // Pinned before the lock is released: the writer cannot have moved on
        // and freed this commit's pages in between.
        current.readers.enter(current.meta.txid);
        ReadTx {
            meta: current.meta,
            map: current.map.clone(),
            page_size: current.meta.page_size as usize,
            pinned: Some(current.readers.clone()),
        }
    }

    /// Applies `ops` as one commit: all of them or, on error, none.
    pub fn update(&self, ops: &[Op<'_>]) -> Result<(), BackendError> {
        let durable = !self.deferred.load(Ordering::SeqCst);
        let _syncing = durable.then(|| self.syncing.lock());
        let mut w = self.writer.lock();
        if let Some(f) = &w.failed {
            return Err(BackendError::new(f.clone()));
        }
        if ops.is_empty() {
            // Nothing to write, but a durable commit still makes the deferred ones before it durable.
            if durable {
                w.make_durable(&self.path)?;
                *self.current.write() = w.published();
            }
            return Ok(());
        }
        w.release_pending();
        let mut by_bucket: BTreeMap<&[u8], Vec<&Op<'_>>> = BTreeMap::new();
        for op in ops {
            by_bucket.entry(op.0).or_default().push(op);
        }
        let w = &mut *w;
        let mut tx = WriteTx {
            view: w.view(),
            free: &mut w.free,
            taken: Vec::new(),
            high_water: w.meta.high_water,
            freed: Vec::new(),
            writes: Vec::new(),
        };
        let built = (|| {
            let mut root = Child::Page(tx.view.meta.root);
            for (name, ops) in by_bucket {
                let (mut tree, sequence) = tx.bucket(name)?;
                for (_, key, value) in ops {
                    match value {
                        Some(v) => tx.put(&mut tree, key, v.to_vec(), 0)?,
                        None => tx.delete(&mut tree, key)?,
                    }
                }
                let pgid = tx.commit_tree(tree)?;
                let mut header = Vec::with_capacity(BUCKET_HEADER_SIZE);
                header.extend_from_slice(&pgid.to_le_bytes());
                header.extend_from_slice(&sequence.to_le_bytes());
                tx.put(&mut root, name, header, BUCKET_LEAF_FLAG)?;
            }
            tx.commit_tree(root)
        })();
        let written = built.and_then(|root| {
            write_pages(&w.file, &mut w.file_len, &self.path, tx.page_size() as u64, tx.high_water, &tx.writes)
                .map(|()| root)
        });
        let root = match written {
            Ok(done) => done,
            Err(e) => {
                // Nothing reachable was touched: the pages go back to the free set.
                tx.free.extend(tx.taken.drain(..));
                return Err(e);
            }
        };
        let WriteTx { high_water, freed, .. } = tx;
        w.meta = Meta { root, freelist: NO_FREELIST, high_water, txid: w.meta.txid + 1, ..w.meta };
        w.pending.insert(w.meta.txid, freed);
        // Also after a failed commit that grew the file: the map covers all of it.
        if (w.map.len() as u64) < w.file_len {
            match map_file(&w.file, &self.path) {
                Ok(map) => w.map = Arc::new(map),
                Err(e) => {
                    w.failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        if durable {
            w.make_durable(&self.path)?;
        }
        *self.current.write() = w.published();
        self.update_sizes(w);
        Ok(())
    }

    /// Commits from now on are durable only at the next [`BoltDb::sync`].
    pub fn defer_durability(&self, deferred: bool) {
        self.deferred.store(deferred, Ordering::SeqCst);
    }

    /// Makes every commit so far durable. The fsyncs run without the writer's
    /// lock: commits go on meanwhile (they become durable at the next sync).
    pub fn sync(&self) -> Result<(), BackendError> {
        let _syncing = self.syncing.lock();
        let (meta, file) = {
            let mut w = self.writer.lock();
            let Some(meta) = w.meta_to_persist()? else { return Ok(()) };
            // The txid may have changed; readers from now on pin the new one.
            *self.current.write() = w.published();
            (meta, w.file.clone())
        };
        #[cfg(test)]
        (self.sync_hook.lock())();
        let persisted = persist_meta(&file, &self.path, &meta);
        self.writer.lock().persisted(meta, persisted)
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub fn size_in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Rewrites the database into a new file without free pages (etcd's
    /// defragmentation) and switches to it. Readers of the old file finish
    /// on it undisturbed.
    pub fn defragment(&self) -> Result<(), BackendError> {
        let _syncing = self.syncing.lock();
        let mut w = self.writer.lock();
        w.make_durable(&self.path)?;
        let view = w.view();
        let tmp = self.path.with_extension("defrag");
        let copy = (|| {
            let file = File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
            let bolt = |e: crate::error::StoreError| BackendError::new(format!("defragment: {e}"));
            let mut out = BoltWriter::new(BufWriter::new(file)).map_err(bolt)?;
            for name in view.bucket_names()? {
                out.begin_bucket(&name).map_err(bolt)?;
                let mut failed = None;
                view.scan(&name, &[], None, &mut |k, v| match out.put(k, v) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(bolt(e));
                        false
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                out.end_bucket().map_err(bolt)?;
            }
            let (out, _) = out.finish().map_err(bolt)?;
            let file = out.into_inner().map_err(|e| io_error("write", &tmp, e.into_error()))?;
            file.sync_all().map_err(|e| io_error("sync", &tmp, e))
        })();
        if let Err(e) = copy {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        crate::durable_fs::rename(&tmp, &self.path).map_err(|e| io_error("replace", &self.path, e))?;
        match Writer::open(&self.path) {
            Ok(reopened) => *w = reopened,
            Err(e) => {
                w.failed = Some(format!("reopen after defragmentation: {e}"));
                return Err(e);
            }
        }
        *self.current.write() = w.published();
        self.update_sizes(&w);
        Ok(())
    }
}

/// Writes `pages` after growing the file to hold `high_water` pages.
fn write_pages(
    file: &File,
    file_len: &mut u64,
    path: &Path,
    page_size: u64,
    high_water: u64,
    pages: &[(u64, Vec<u8>)],
) -> Result<(), BackendError> {
    let needed = high_water * page_size;
    if needed > *file_len {
        // Grow ahead, as bbolt does, so the map is not renewed on every commit:
        // double up to 1 GiB, then 1 GiB at a time.
        const GIB: u64 = 1 << 30;
        let ahead = if *file_len < GIB { *file_len * 2 } else { *file_len + GIB };
        let len = needed.max(ahead).max(32 * 1024);
        file.set_len(len).map_err(|e| io_error("grow", path, e))?;
        *file_len = len;
    }
    let mut order: Vec<&(u64, Vec<u8>)> = pages.iter().collect();
    order.sort_by_key(|(pgid, _)| *pgid);
    for (pgid, bytes) in order {
        file.write_all_at(bytes, pgid * page_size).map_err(|e| io_error("write", path, e))?;
    }
    Ok(())
}

/// Creates an empty database with `buckets`, atomically.
fn create(path: &Path, buckets: &[&[u8]]) -> Result<(), BackendError> {
    if let Some(dir) = path.parent() {
        crate::durable_fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    }
    let tmp = path.with_extension("creating");
    let file = File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
    let bolt = |e: crate::error::StoreError| BackendError::new(format!("create {}: {e}", path.display()));
    let mut out = BoltWriter::new(BufWriter::new(file)).map_err(bolt)?;
    let mut names = buckets.to_vec();
    names.sort();
    names.dedup();
    for name in names {
        out.begin_bucket(name).map_err(bolt)?;
        out.end_bucket().map_err(bolt)?;
    }
    let (out, _) = out.finish().map_err(bolt)?;
    let file = out.into_inner().map_err(|e| io_error("write", &tmp, e.into_error()))?;
    file.sync_all().map_err(|e| io_error("sync", &tmp, e))?;
    crate::durable_fs::rename(&tmp, path).map_err(|e| io_error("create", path, e))
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
