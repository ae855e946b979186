//! The types openraft is instantiated with: what a log entry carries, what
//! applying it returns, and what a member is.

use std::fmt;
use std::io::Cursor;

use hub_store::{EtcdError, Response};
use serde::{Deserialize, Serialize};

/// A command in the log: an etcd `InternalRaftRequest`, protobuf-encoded (the
/// same bytes etcd puts in its own log entries). Encoded as bytes: bincode
/// writes them as it writes a sequence of `u8` (length, then the bytes), so
/// WALs and peers of either form read each other, but copies them as one
/// slice where serde's `Vec<u8>` visits every byte.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying an entry gave, for the member that proposed it: openraft
/// hands it to whoever proposed at that log index. It never crosses the
/// network (a forwarded proposal's answer is re-encoded by the peer service),
/// so it is not serialized.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApplyOutput {
    /// The request ID in the applied entry's header (0: none, or not a
    /// command). A proposer takes the answer only if this is its own request's
    /// ID: the entry at the index it was given may be another (etcd, too,
    /// answers a proposer by request ID alone).
    #[serde(skip)]
    pub request_id: u64,
    /// The answer; none when it went to the proposer's waiter on this member
    /// (`crate::wait`) or the entry was not a command.
    #[serde(skip)]
    pub result: Option<Result<Response, EtcdError>>,
}

/// A member as the cluster knows it; the raft node ID is etcd's member ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

openraft::declare_raft_types!(
    /// hub's raft: u64 member IDs, etcd commands, snapshots in etcd's format.
    pub TypeConfig:
        D = Command,
        R = ApplyOutput,
        NodeId = u64,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type StorageError = openraft::StorageError<u64>;

#[cfg(test)]
mod tests {
    use super::Command;

    /// The byte form reads and writes what the sequence form wrote before it.
    #[test]
    fn a_command_encodes_as_the_sequence_of_bytes_did() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct AsSequence(Vec<u8>);
        let bytes: Vec<u8> = (0..=255).collect();
        let old = bincode::serialize(&AsSequence(bytes.clone())).expect("encode");
        assert_eq!(bincode::serialize(&Command(bytes.clone())).expect("encode"), old);
        assert_eq!(bincode::deserialize::<Command>(&old).expect("decode"), Command(bytes));
    }
}
