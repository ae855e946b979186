//! The backend's write buffer (etcd's batch transaction and its read buffer):
//! while durability is deferred, commits land in memory, every reader sees
//! them at once, and they reach the engine together, as one engine commit, at
//! the next [`Backend::sync`] (or once [`FLUSH_OPS`] changes are waiting).
//!
//! Applying an entry then costs a few map inserts instead of an engine commit
//! that rewrites the touched pages of every tree. Raft defers durability
//! because its WAL holds every committed entry: a crash loses at most what was
//! buffered, and restart re-applies it from the WAL (the consistent index is
//! buffered with the changes it belongs to, so the engine always holds a
//! whole prefix of the applied entries).
//!
//! A flush runs without blocking commits or readers: the buffer is frozen
//! (readers still see it) while a new one takes commits, and the frozen one is
//! dropped only once the engine has published its commit.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::{Backend, Table, WriteBatch};
use crate::error::BackendError;

/// A buffer this large is flushed by the commit that filled it (etcd's
/// `batchLimit`): the buffer's memory and a flush's duration stay bounded
/// between syncs.
pub const FLUSH_OPS: usize = 10_000;

/// The latest value of each key written since the last flush; `None` is a delete.
type Changes = BTreeMap<Table, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

#[derive(Default)]
struct Buffer {
    /// Takes commits.
    active: Changes,
    /// How many writes went into `active`.
    active_ops: usize,
    /// Being flushed into the engine; still what readers see until that
    /// commit is published.
    frozen: Option<Arc<Changes>>,
    deferred: bool,
}

impl Buffer {
    /// What a reader sees of `key` in `table`: `Some(None)` for a buffered delete,
    /// `None` when the buffer does not have it.
    fn get(&self, table: Table, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        let newest_first = [Some(&self.active), self.frozen.as_deref()];
        newest_first.into_iter().flatten().find_map(|c| c.get(&table)?.get(key)).map(Option::as_ref)
    }
}

/// An engine behind a write buffer.
pub struct WriteBuffer<B: Backend> {
    engine: B,
    buffer: Mutex<Buffer>,
    /// One flush at a time, in order.
    flushing: Mutex<()>,
}

impl<B: Backend> WriteBuffer<B> {
    pub fn new(engine: B) -> Self {
        WriteBuffer { engine, buffer: Mutex::default(), flushing: Mutex::new(()) }
    }

    /// Hands what is buffered to the engine as one commit.
    fn flush(&self) -> Result<(), BackendError> {
        let _one = self.flushing.lock();
        let frozen = {
            let mut b = self.buffer.lock();
            if b.active_ops == 0 {
                return Ok(());
            }
            b.active_ops = 0;
            let frozen = Arc::new(std::mem::take(&mut b.active));
            b.frozen = Some(frozen.clone());
            frozen
        };
        let mut batch = WriteBatch::default();
        for (&table, changes) in frozen.iter() {
            for (key, value) in changes {
                match value {
                    Some(v) => batch.put(table, key.clone(), v.clone()),
                    None => batch.delete(table, key.clone()),
                }
            }
        }
        // On failure the frozen changes stay visible: the engine refuses
        // everything from now on, and the member stops.
        self.engine.commit(batch)?;
        self.buffer.lock().frozen = None;
        Ok(())
    }
}

impl<B: Backend> Backend for WriteBuffer<B> {
    fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let full = {
            let mut b = self.buffer.lock();
            if b.deferred {
                b.active_ops += batch.len();
                for (table, key, value) in batch.into_ops() {
                    b.active.entry(table).or_default().insert(key, value);
                }
                b.active_ops >= FLUSH_OPS
            } else {
                drop(b);
                self.flush()?;
                return self.engine.commit(batch);
            }
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    fn defer_durability(&self, deferred: bool) {
        self.buffer.lock().deferred = deferred;
        self.engine.defer_durability(deferred);
    }

    fn sync(&self) -> Result<(), BackendError> {
        self.flush()?;
        self.engine.sync()
    }

    /// The engine's view once everything buffered reached it.
    fn view(&self) -> Result<Box<dyn crate::backend::View>, BackendError> {
        self.flush()?;
        self.engine.view()
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        // Under the buffer's lock: a flush cannot drop the frozen changes
        // between the look here and the engine's read.
        let b = self.buffer.lock();
        let buffered: Vec<Option<Option<&Vec<u8>>>> = keys.iter().map(|k| b.get(table, k)).collect();
        let missing: Vec<Vec<u8>> =
            keys.iter().zip(&buffered).filter(|(_, found)| found.is_none()).map(|(k, _)| k.clone()).collect();
        let mut stored = if missing.is_empty() { Vec::new() } else { self.engine.get_many(table, &missing)? }.into_iter();
        Ok(buffered
            .into_iter()
            .map(|found| match found {
                Some(value) => value.cloned(),
                None => stored.next().flatten(),
            })
            .collect())
    }

    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        // The buffered part of the range, newest value per key; then one pass
        // over the engine's keys, the buffered ones merged in by key order.
        let b = self.buffer.lock();
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        let mut overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        // (`BTreeMap::range` panics on a range that ends before it starts.)
        let empty = to.is_some_and(|to| to < from);
        for changes in [b.frozen.as_deref(), Some(&b.active)].into_iter().flatten().filter(|_| !empty) {
            if let Some(t) = changes.get(&table) {
                for (k, v) in t.range::<[u8], _>((Bound::Included(from), upper)) {
                    overlay.insert(k.clone(), v.clone());
                }
            }
        }
        // A flush that ends from here on only moves into the engine what the
        // overlay holds already: the merge below reads the same values.
        drop(b);
        if overlay.is_empty() {
            return self.engine.scan(table, from, to, visit);
        }
        let mut pending = overlay.into_iter().peekable();
        let mut going = true;
        self.engine.scan(table, from, to, &mut |k, v| {
            while let Some((bk, bv)) = pending.next_if(|(bk, _)| bk.as_slice() <= k) {
                let same = bk.as_slice() == k;
                if let Some(bv) = bv {
                    if !visit(&bk, &bv) {
                        going = false;
                        return false;
                    }
                }
                if same {
                    return true;
                }
            }
            going = visit(k, v);
            going
        })?;
        if going {
            for (k, v) in pending {
                if let Some(v) = v {
                    if !visit(&k, &v) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.engine.size()
    }

    fn size_in_use(&self) -> Result<u64, BackendError> {
        self.engine.size_in_use()
    }

    fn defragment(&self) -> Result<(), BackendError> {
        self.flush()?;
        self.engine.defragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::open_bolt;

    fn put(b: &dyn Backend, k: &str, v: &str) {
        let mut batch = WriteBatch::default();
        batch.put(Table::Key, k.as_bytes().to_vec(), v.as_bytes().to_vec());
        b.commit(batch).unwrap();
    }

    fn delete(b: &dyn Backend, k: &str) {
        let mut batch = WriteBatch::default();
        batch.delete(Table::Key, k.as_bytes().to_vec());
        b.commit(batch).unwrap();
    }

    fn scan(b: &dyn Backend, from: &str, to: Option<&str>, max: usize) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        b.scan(Table::Key, from.as_bytes(), to.map(str::as_bytes), &mut |k, v| {
            seen.push((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()));
            seen.len() < max
        })
        .unwrap();
        seen
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Readers see buffered commits merged with the engine's, before and
    /// after a flush, and the engine gets them only at the sync.
    #[test]
    fn readers_see_buffered_writes_over_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_bolt(&dir.path().join("db")).unwrap();
        let b = WriteBuffer::new(engine);
        for k in ["a", "c", "e", "g"] {
            put(&b, k, "old");
        }
        b.defer_durability(true);
        put(&b, "b", "new");
        put(&b, "c", "new");
        delete(&b, "e");
        put(&b, "h", "new");
        delete(&b, "x");
        assert_eq!(b.engine.begin_read().get_many(b"key", &[b"b".to_vec()]).unwrap(), vec![None], "buffered");
        let want = pairs(&[("a", "old"), ("b", "new"), ("c", "new"), ("g", "old"), ("h", "new")]);
        assert_eq!(scan(&b, "", None, usize::MAX), want);
        assert_eq!(scan(&b, "b", Some("h"), usize::MAX), want[1..4].to_vec(), "bounded");
        assert_eq!(scan(&b, "", None, 2), want[..2].to_vec(), "stopped by the visitor");
        assert_eq!(scan(&b, "c", None, 1), want[2..3].to_vec(), "stopped on a key both have");
        let got = b.get_many(Table::Key, &[b"a".to_vec(), b"b".to_vec(), b"e".to_vec(), b"z".to_vec()]).unwrap();
        assert_eq!(got, vec![Some(b"old".to_vec()), Some(b"new".to_vec()), None, None]);
        b.sync().unwrap();
        assert_eq!(b.engine.begin_read().get_many(b"key", &[b"b".to_vec()]).unwrap(), vec![Some(b"new".to_vec())]);
        assert_eq!(scan(&b, "", None, usize::MAX), want, "the same after the flush");
    }

    /// Undeferred, a commit is the engine's at once (after what was buffered).
    #[test]
    fn undeferred_commits_reach_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let b = WriteBuffer::new(open_bolt(&dir.path().join("db")).unwrap());
        b.defer_durability(true);
        put(&b, "a", "1");
        b.defer_durability(false);
        put(&b, "b", "2");
        let read = b.engine.begin_read().get_many(b"key", &[b"a".to_vec(), b"b".to_vec()]).unwrap();
        assert_eq!(read, vec![Some(b"1".to_vec()), Some(b"2".to_vec())]);
    }

    /// A full buffer is flushed by the commit that filled it.
    #[test]
    fn a_full_buffer_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let b = WriteBuffer::new(open_bolt(&dir.path().join("db")).unwrap());
        b.defer_durability(true);
        let mut batch = WriteBatch::default();
        for i in 0..FLUSH_OPS {
            batch.put(Table::Key, i.to_be_bytes().to_vec(), vec![1]);
        }
        b.commit(batch).unwrap();
        assert_eq!(b.buffer.lock().active_ops, 0);
        assert_eq!(b.engine.begin_read().get_many(b"key", &[0usize.to_be_bytes().to_vec()]).unwrap(), vec![Some(vec![1])]);
    }

    /// Random puts, deletes, syncs and reads against a plain map: scans and
    /// lookups agree with it whatever is buffered, frozen or flushed.
    #[test]
    fn matches_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let b = WriteBuffer::new(open_bolt(&dir.path().join("db")).unwrap());
        b.defer_durability(true);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..3000u32 {
            let key = format!("k{:02}", next(40)).into_bytes();
            let mut batch = WriteBatch::default();
            match next(10) {
                0..=5 => {
                    let value = step.to_be_bytes().to_vec();
                    model.insert(key.clone(), value.clone());
                    batch.put(Table::Key, key, value);
                }
                6..=7 => {
                    model.remove(&key);
                    batch.delete(Table::Key, key);
                }
                8 => b.sync().unwrap(),
                _ => {
                    let (from, to) = (format!("k{:02}", next(40)), format!("k{:02}", next(45)));
                    let max = 1 + next(50) as usize;
                    let want: Vec<(String, String)> = model
                        .range(from.as_bytes().to_vec()..)
                        .filter(|(k, _)| k.as_slice() < to.as_bytes())
                        .take(max)
                        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
                        .collect();
                    assert_eq!(scan(&b, &from, Some(&to), max), want, "step {step}");
                    let keys: Vec<Vec<u8>> = (0..5).map(|_| format!("k{:02}", next(40)).into_bytes()).collect();
                    let want: Vec<Option<Vec<u8>>> = keys.iter().map(|k| model.get(k).cloned()).collect();
                    assert_eq!(b.get_many(Table::Key, &keys).unwrap(), want, "step {step}");
                }
            }
            if !batch.is_empty() {
                b.commit(batch).unwrap();
            }
        }
    }
}
