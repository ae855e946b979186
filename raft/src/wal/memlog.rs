//! The unpurged log held in memory, so reads never touch the disk.
//!
//! The WAL changes it when an operation is *submitted* (openraft reads its own
//! appends before they are flushed), and replays it from the records at open. It
//! knows nothing of files.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::record::{LogHeader, Record};
use super::{LogEntry, LogId, WalError};

#[derive(Debug, Default)]
pub(crate) struct MemLog {
    /// Contiguous by index.
    entries: VecDeque<LogEntry>,
    pub(crate) header: LogHeader,
}

impl MemLog {
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    pub(crate) fn last_entry(&self) -> Option<LogId> {
        self.entries.back().map(|e| LogId { index: e.index, term: e.term })
    }

    /// The index the next appended entry must have; `None` while the log has never
    /// held anything, when the first entry may start anywhere (openraft starts at 0).
    fn next_index(&self) -> Option<u64> {
        self.last_entry().or(self.header.purged).map(|id| id.index.saturating_add(1))
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&LogEntry> {
        let first = self.first_index()?;
        self.entries.get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    pub(crate) fn entries(&self, range: impl RangeBounds<u64>) -> Vec<LogEntry> {
        let Some(first) = self.first_index() else { return Vec::new() };
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        }
        .min(first + self.entries.len() as u64);
        if start >= end {
            return Vec::new();
        }
        self.entries.range((start - first) as usize..(end - first) as usize).cloned().collect()
    }

    /// Refuses entries that would not continue the log without a gap or overlap:
    /// a conflicting suffix has to be truncated first.
    pub(crate) fn check_append(&self, entries: &[LogEntry]) -> Result<(), WalError> {
        let mut expected = self.next_index();
        for entry in entries {
            if let Some(expected) = expected {
                if entry.index != expected {
                    return Err(WalError::OutOfOrder { expected, got: entry.index });
                }
            }
            expected = Some(entry.index.saturating_add(1));
        }
        Ok(())
    }

    /// Appends entries that passed `check_append`.
    pub(crate) fn append(&mut self, entries: &[LogEntry]) {
        self.entries.extend(entries.iter().cloned());
    }

    /// Whether `truncate(from_index)` would remove anything; refuses to reach into
    /// the purged prefix, which a snapshot already covers.
    pub(crate) fn check_truncate(&self, from_index: u64) -> Result<bool, WalError> {
        if let Some(purged) = self.header.purged {
            if from_index <= purged.index {
                return Err(WalError::TruncatePurged { from_index, purged: purged.index });
            }
        }
        Ok(self.last_entry().is_some_and(|last| last.index >= from_index))
    }

    /// Drops the entries from `from_index` on.
    pub(crate) fn truncate(&mut self, from_index: u64) {
        let Some(first) = self.first_index() else { return };
        let keep = from_index.saturating_sub(first);
        self.entries.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Drops the entries up to and including `upto` and remembers it as purged.
    /// `upto` may lie past the last entry (a snapshot installed from the leader);
    /// the next append then continues after it. Returns false if nothing changes.
    pub(crate) fn purge(&mut self, upto: LogId) -> bool {
        if self.header.purged.is_some_and(|p| p.index >= upto.index) {
            return false;
        }
        // Before the first entry of a log that started past 0 there is nothing to
        // purge, and a purge point there would leave a gap before `first`.
        if self.first_index().is_some_and(|first| upto.index.saturating_add(1) < first) {
            return false;
        }
        while self.entries.front().is_some_and(|e| e.index <= upto.index) {
            self.entries.pop_front();
        }
        self.header.purged = Some(upto);
        true
    }

    /// Applies one record read back at open. The stream was written by this module,
    /// so a record that cannot follow the ones before it means the files are damaged
    /// in a way the crcs cannot see (a lost segment, say): report it, never guess.
    pub(crate) fn replay(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Entry(entry) => {
                if self.header.purged.is_some_and(|p| entry.index <= p.index) {
                    // Purged after it was written; its segment just was not deleted yet.
                    return Ok(());
                }
                // With an empty log the first entry may start past the purge point: its
                // predecessors sat in deleted segments, and a later Purge record covers them.
                if let Some(last) = self.last_entry() {
                    if last.index.checked_add(1) != Some(entry.index) {
                        return Err(format!("entry {} follows entry {}", entry.index, last.index));
                    }
                }
                self.entries.push_back(entry);
            }
            Record::Vote(vote) => self.header.vote = Some(vote),
            Record::Truncate { from_index } => self.truncate(from_index),
            Record::Purge { upto } => {
                self.purge(upto);
            }
            Record::Meta { key, value } => {
                self.header.meta.insert(key, value);
            }
            Record::Header(header) => {
                if let Some(purged) = header.purged {
                    self.purge(purged);
                }
                self.header.vote = header.vote;
                self.header.meta = header.meta;
            }
        }
        Ok(())
    }

    /// After replay, the entries must start right after the purge point.
    pub(crate) fn check_replayed(&self) -> Result<(), String> {
        match (self.header.purged, self.first_index()) {
            (Some(purged), Some(first)) if purged.index.checked_add(1) != Some(first) => {
                Err(format!("entries start at {first} but the log is purged only up to {}", purged.index))
            }
            _ => Ok(()),
        }
    }
}
