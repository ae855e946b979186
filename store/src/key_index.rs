//! The in-memory index from a key to the revisions that changed it.
//!
//! Same model as etcd's `mvcc/key_index.go`: a key's life is a list of
//! generations; a generation starts with the put that (re)creates the key and ends
//! with the tombstone that deletes it. The version of a key is its number of puts
//! in the current generation. The index owns only revisions; values live in the
//! backend under their revision. It is rebuilt from the backend at start.
//!
//! Memory: most keys have one generation of one or a few revisions, so both
//! lists keep their first element inline ([`SmallVec`]): a key costs its bytes,
//! its place in the tree and nothing else until it is written again or deleted.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use smallvec::SmallVec;

use crate::revision::Revision;

#[derive(Debug, Clone, Default, PartialEq)]
struct Generation {
    /// Number of changes (puts and the closing tombstone) made in this generation,
    /// counted even for revisions since compacted away.
    ver: i64,
    created: Revision,
    revs: SmallVec<[Revision; 1]>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the newest revision for which `keep_walking` is false.
    fn walk(&self, keep_walking: impl Fn(Revision) -> bool) -> Option<usize> {
        (0..self.revs.len()).rev().find(|&i| !keep_walking(self.revs[i]))
    }
}

/// What a key looked like at some revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyIndex {
    generations: SmallVec<[Generation; 1]>,
}

impl KeyIndex {
    pub fn put(&mut self, rev: Revision) {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        if let Some(g) = self.generations.last_mut() {
            if g.revs.is_empty() {
                g.created = rev;
            }
            g.revs.push(rev);
            g.ver += 1;
        }
    }

    /// Rebuilds a generation found in the backend whose earlier revisions may have
    /// been compacted: `created` and `version` come from the stored KeyValue.
    pub fn restore(&mut self, rev: Revision, created: Revision, version: i64) {
        if self.is_live() {
            self.put(rev);
            return;
        }
        if self.generations.last().is_some_and(Generation::is_empty) {
            self.generations.pop();
        }
        self.generations.push(Generation { ver: version, created, revs: smallvec::smallvec![rev] });
    }

    /// Closes the current generation. Returns false when the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if !self.is_live() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// True when the newest generation holds a put (the key exists now).
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.generations.iter().all(Generation::is_empty)
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(newest)) = (g.revs.first(), g.revs.last()) else { continue };
            // A closed generation whose tombstone is at or before `at` means the key
            // did not exist at `at`.
            if i != last && newest.main <= at {
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key as of main revision `at`, or `None` when it did not exist then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let n = g.walk(|r| r.main > at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// Drops revisions older than `at` that are no longer needed, recording in
    /// `keep` the revisions at or below `at` that must stay in the backend:
    /// the newest one of each key at `at`, a tombstone at exactly `at`
    /// included. Mirrors etcd 3.6's `keyIndex.compact`: etcd up to 3.5.14
    /// dropped that tombstone, so a watch from the compacted revision missed
    /// the delete (etcd-io/etcd#18089); a later compaction drops it.
    pub fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) {
        // The first generation that holds `at` or starts after it: one whose
        // tombstone is at `at` or later (the last one has none).
        let last = self.generations.len().saturating_sub(1);
        let gen_idx = (0..last)
            .find(|&i| self.generations[i].revs.last().is_none_or(|tomb| tomb.main >= at))
            .unwrap_or(last);
        if let Some(g) = self.generations.get_mut(gen_idx) {
            if let Some(n) = g.walk(|r| r.main > at) {
                keep.insert(g.revs[n]);
                g.revs.drain(..n);
                g.revs.shrink_to_fit();
            }
        }
        self.generations.drain(..gen_idx);
        self.generations.shrink_to_fit();
    }
}

/// Every key's index, ordered by key so ranges are walks.
#[derive(Debug, Default)]
pub struct KeyIndexTree {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// The end of a key range as etcd's API gives it.
#[derive(Debug, Clone, Copy)]
pub enum RangeEnd<'a> {
    /// Only the key itself (empty `range_end`).
    Single,
    /// Every key `>=` the start (`range_end` of `"\0"`).
    Unbounded,
    /// Keys in `[key, end)`.
    Before(&'a [u8]),
}

impl<'a> RangeEnd<'a> {
    pub fn from_request(range_end: &'a [u8]) -> Self {
        match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end => RangeEnd::Before(end),
        }
    }
}

impl KeyIndexTree {
    /// Changes `key`'s index by `f`, adding the key if it is new: a key
    /// written again (most writes) is found without copying it.
    pub fn update<R>(&mut self, key: &[u8], f: impl FnOnce(&mut KeyIndex) -> R) -> R {
        if let Some(ki) = self.keys.get_mut(key) {
            return f(ki);
        }
        let mut ki = KeyIndex::default();
        let answer = f(&mut ki);
        self.keys.insert(key.to_vec(), ki);
        answer
    }

    pub fn get(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    /// Keys in the range with their state at main revision `at`, in key order.
    pub fn range_at<'s>(
        &'s self,
        key: &'s [u8],
        end: RangeEnd<'s>,
        at: i64,
    ) -> impl Iterator<Item = (&'s [u8], KeyAt)> + 's {
        let upper = match end {
            RangeEnd::Single => Bound::Included(key),
            RangeEnd::Unbounded => Bound::Unbounded,
            RangeEnd::Before(end) => Bound::Excluded(end),
        };
        let empty = matches!(end, RangeEnd::Before(e) if e <= key);
        let iter = if empty {
            None
        } else {
            Some(self.keys.range::<[u8], _>((Bound::Included(key), upper)))
        };
        iter.into_iter()
            .flatten()
            .filter_map(move |(k, ki)| ki.get(at).map(|state| (k.as_slice(), state)))
    }

    /// Compacts every key at `at`; returns the revisions at or below `at` to keep.
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    // The example of etcd's key_index.go doc comment: put 1,2,3, tombstone 4,
    // put 5,6, tombstone 7, put 8.
    fn example() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        ki.put(r(2));
        ki.put(r(3));
        assert!(ki.tombstone(r(4)));
        ki.put(r(5));
        ki.put(r(6));
        assert!(ki.tombstone(r(7)));
        ki.put(r(8));
        ki
    }

    #[test]
    fn a_key_with_one_revision_needs_no_allocation_of_its_own() {
        // One generation and its first revision live inside the tree's node.
        assert_eq!(std::mem::size_of::<KeyIndex>(), 56);
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        assert!(!ki.generations.spilled() && !ki.generations[0].revs.spilled());
    }

    #[test]
    fn get_sees_generations() {
        let ki = example();
        assert_eq!(ki.get(0), None);
        assert_eq!(ki.get(2), Some(KeyAt { modified: r(2), created: r(1), version: 2 }));
        assert_eq!(ki.get(3), Some(KeyAt { modified: r(3), created: r(1), version: 3 }));
        assert_eq!(ki.get(4), None, "deleted at 4");
        assert_eq!(ki.get(6), Some(KeyAt { modified: r(6), created: r(5), version: 2 }));
        assert_eq!(ki.get(7), None);
        assert_eq!(ki.get(100), Some(KeyAt { modified: r(8), created: r(8), version: 1 }));
    }

    #[test]
    fn compact_keeps_newest_visible_revision() {
        let mut ki = example();
        let mut keep = HashSet::new();
        ki.compact(2, &mut keep);
        assert_eq!(keep, HashSet::from([r(2)]));
        assert_eq!(ki.get(2).map(|k| k.version), Some(2), "version survives compaction");

        let mut keep = HashSet::new();
        ki.compact(4, &mut keep);
        assert_eq!(keep, HashSet::from([r(4)]), "a tombstone at the compacted revision is kept (etcd 3.6)");
        assert_eq!(ki.get(4), None);
        assert_eq!(ki.get(5).map(|k| k.created), Some(r(5)));

        let mut keep = HashSet::new();
        ki.compact(5, &mut keep);
        assert_eq!(keep, HashSet::from([r(5)]), "and dropped by the next compaction");

        let mut keep = HashSet::new();
        ki.compact(8, &mut keep);
        assert_eq!(keep, HashSet::from([r(8)]));
        assert_eq!(ki.get(8).map(|k| k.version), Some(1));
    }

    #[test]
    fn compact_of_deleted_key_empties_it() {
        let mut tree = KeyIndexTree::default();
        tree.update(b"a", |ki| ki.put(r(1)));
        assert!(tree.update(b"a", |ki| ki.tombstone(r(2))));
        assert_eq!(tree.compact(2), HashSet::from([r(2)]), "the tombstone at the compacted revision stays");
        assert!(tree.get(b"a").is_some_and(|ki| ki.get(2).is_none()));
        assert!(tree.compact(3).is_empty());
        assert!(tree.get(b"a").is_none());
    }

    #[test]
    fn range_ends() {
        let mut tree = KeyIndexTree::default();
        for (i, k) in [&b"a"[..], b"b", b"c"].iter().enumerate() {
            tree.update(k, |ki| ki.put(r(i as i64 + 1)));
        }
        let keys = |end| tree.range_at(b"b", end, 10).map(|(k, _)| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(keys(RangeEnd::Single), vec![b"b".to_vec()]);
        assert_eq!(keys(RangeEnd::Unbounded), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(RangeEnd::Before(b"c")), vec![b"b".to_vec()]);
        assert!(keys(RangeEnd::Before(b"a")).is_empty());
    }
}
