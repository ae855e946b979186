//! openraft's log storage on hub's WAL.
//!
//! Each raft entry is stored as one WAL record holding the bincode-encoded
//! openraft `Entry` (so its full log ID comes back on replay). The vote is a
//! WAL record too, and so is the log ID of the last purged entry, which
//! openraft needs after the entries themselves are gone.
//!
//! Two rules keep a restarted member consistent with what it served:
//! - a purge waits until the backend holds the purged entries durably
//!   ([`Durable`]): openraft purges a follower's log as soon as it has queued a
//!   received snapshot's install, and a crash before the install is durable
//!   would otherwise leave a backend older than the log's first entry;
//! - the committed log ID is saved (without an fsync of its own, as etcd's
//!   raft saves its commit index), so that openraft re-applies everything up to
//!   it before the member serves anything, as etcd does: the backend's own
//!   sync lags behind what was applied.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{StorageIOError, Vote};
use tokio::sync::watch;

use crate::state_machine::Durable;
use crate::types::{Entry, LogId, StorageError, TypeConfig};
use crate::wal::{self, LogEntry, Wal};

const META_PURGED: &str = "purged";
const META_COMMITTED: &str = "committed";

#[derive(Clone)]
pub struct LogStore {
    /// This member's ID.
    id: u64,
    wal: Arc<Wal>,
    /// How far the state machine's backend is durable.
    durable: watch::Receiver<Durable>,
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(&std::io::Error::other(e.to_string())).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

impl LogStore {
    pub fn new(id: u64, wal: Arc<Wal>, durable: watch::Receiver<Durable>) -> Self {
        LogStore { id, wal, durable }
    }

    fn decode(e: &LogEntry) -> Result<Entry, StorageError> {
        bincode::deserialize(&e.data).map_err(read_err)
    }

    /// A log ID kept as WAL metadata.
    fn meta_log_id(&self, key: &str) -> Result<Option<LogId>, StorageError> {
        match self.wal.meta(key) {
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
        let last_purged_log_id = self.meta_log_id(META_PURGED)?;
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

    /// The vote as saved, except that this member's own committed vote (it
    /// led) comes back uncommitted, so that it starts as a follower, as etcd's
    /// members do, and a new election moves to a new term. openraft would
    /// resume leading in the same term; but a leader replicates before its
    /// own flush (`third_party/openraft/HUB-PATCH.md`, 2), so a kill can take
    /// the tail it sent but never wrote, and the entries it then appended
    /// would reuse (term, index) pairs its followers hold with other contents:
    /// the logs would diverge where raft takes them to match.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        let Some(b) = self.wal.vote() else { return Ok(None) };
        let vote: Vote<u64> = bincode::deserialize(&b).map_err(read_err)?;
        if vote.is_committed() && vote.leader_id().voted_for() == Some(self.id) {
            return Ok(Some(Vote::new(vote.leader_id().get_term(), self.id)));
        }
        Ok(Some(vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = bincode::serialize(&committed).map_err(write_err)?;
        self.wal.set_meta_unsynced(META_COMMITTED, bytes).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.meta_log_id(META_COMMITTED)
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
        // The state machine makes the backend durable on its own (an install
        // does before it returns): until then the log must keep these entries.
        let durable = match self.durable.wait_for(|d| d.as_ref().map_or(true, |&at| at >= log_id.index)).await {
            Ok(d) => d.clone(),
            Err(_) => Err("the state machine is gone".to_string()),
        };
        if let Err(e) = durable {
            return Err(write_err(format!("not purging the log up to {log_id}: {e}")));
        }
        // Record the purged ID first: a crash between the two leaves entries
        // that are merely purged again.
        let bytes = bincode::serialize(&Some(log_id)).map_err(write_err)?;
        self.wal.set_meta(META_PURGED, bytes).map_err(write_err)?;
        self.wal.purge(wal::LogId { index: log_id.index, term: log_id.leader_id.term }).map_err(write_err)
    }
}
