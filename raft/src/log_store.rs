//! openraft's log storage on hub's WAL.
//!
//! Each raft entry is stored as one WAL record holding the bincode-encoded
//! openraft `Entry` (so its full log ID comes back on replay). The vote is a
//! WAL record too, and so is the log ID of the last purged entry, which
//! openraft needs after the entries themselves are gone.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{StorageIOError, Vote};

use crate::types::{Entry, LogId, StorageError, TypeConfig};
use crate::wal::{self, LogEntry, Wal};

const META_PURGED: &str = "purged";

#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(&std::io::Error::other(e.to_string())).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

impl LogStore {
    pub fn new(wal: Arc<Wal>) -> Self {
        LogStore { wal }
    }

    fn decode(e: &LogEntry) -> Result<Entry, StorageError> {
        bincode::deserialize(&e.data).map_err(read_err)
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        match self.wal.meta(META_PURGED) {
            Some(b) => bincode::deserialize(&b).map_err(read_err),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.wal.entries(range).iter().map(Self::decode).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last = match self.wal.last_entry().and_then(|id| self.wal.entry(id.index)) {
            Some(e) => Some(Self::decode(&e)?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let bytes = bincode::serialize(vote).map_err(write_err)?;
        self.wal.save_vote(bytes).map_err(|e| StorageIOError::write_vote(&std::io::Error::other(e.to_string())).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        match self.wal.vote() {
            Some(b) => Ok(Some(bincode::deserialize(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let records = entries
            .into_iter()
            .map(|e| {
                Ok(LogEntry {
                    index: e.log_id.index,
                    term: e.log_id.leader_id.term,
                    data: bincode::serialize(&e).map_err(write_err)?.into(),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        // The WAL's writer thread acknowledges after the group's fsync.
        self.wal
            .append_with_callback(records, move |result| {
                callback.log_io_completed(result.map_err(|e| std::io::Error::other(e.to_string())))
            })
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.wal.truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purged ID first: a crash between the two leaves entries
        // that are merely purged again.
        let bytes = bincode::serialize(&Some(log_id)).map_err(write_err)?;
        self.wal.set_meta(META_PURGED, bytes).map_err(write_err)?;
        self.wal.purge(wal::LogId { index: log_id.index, term: log_id.leader_id.term }).map_err(write_err)
    }
}
