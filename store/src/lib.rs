//! hub's state machine: etcd's multi-version key space and leases, in a bbolt
//! file laid out as etcd's backend.
//!
//! Place in the request path: below raft. Raft hands committed commands to
//! [`StateMachine::apply`] in log order; services read through
//! [`StateMachine::range`] (after a ReadIndex for linearizable reads). This crate
//! is synchronous and deterministic given its inputs (the clock is passed in),
//! but for one thread of its own, hubd's compactor deleting compacted
//! revisions in the background; it knows nothing of gRPC, networking or
//! consensus.
//!
//! - [`revision`]: revision numbers and their on-disk bytes.
//! - [`key_index`]: the in-memory index of each key's generations.
//! - [`backend`]: the small storage trait over the engine.
//! - [`write_buffer`]: applied writes held in memory (seen by every reader)
//!   and handed to the engine as one commit per sync.
//! - [`bolt`]: bbolt's file format: the live engine, and the one-pass writer
//!   and reader of snapshots.
//! - [`mvcc`]: ranges, write transactions and compaction over index + backend.
//! - [`compaction`]: a compaction's deletions in the backend, in batches, resumable.
//! - [`lease`]: leases and their attached keys.
//! - [`validate`]: etcd's request checks before proposing.
//! - [`apply`]: the one apply path (Put, DeleteRange, Txn, Compaction, leases, auth, alarms).
//! - [`members`]: the cluster's members in etcd's `members`, `members_removed` and `cluster` buckets.
//! - [`alarm`]: raised alarms (NOSPACE, CORRUPT) and what they refuse.
//! - [`auth`]: users, roles, key-range permissions and the one authorization walk.
//! - [`schema`]: the backend's storage version (etcd 3.6's `meta/storageVersion`) and a downgrade in progress.
//! - [`hash`]: etcd's consistency hashes (HashKV, Hash) and their CRC-32C.
//! - [`snapshot`]: etcd snapshots (bbolt file + sha256) written from and
//!   restored into the state machine.
//! - [`metrics`]: etcd's metrics of the store: backend timings, MVCC, lease and apply counters.
//! - [`error`]: etcd's error strings.
//! - [`durable_fs`]: renames and new directories made durable (their parent fsynced).

pub mod alarm;
pub mod apply;
pub mod auth;
pub mod backend;
pub mod bolt;
pub mod command;
pub mod compaction;
pub mod durable_fs;
pub mod error;
pub mod hash;
pub mod key_index;
pub mod key_range;
pub mod lease;
pub mod members;
pub mod metrics;
pub mod mvcc;
pub mod planned_range;
pub mod revision;
pub mod schema;
pub mod snapshot;
mod txn;
pub mod validate;
pub mod watch;
pub mod write_buffer;

pub use apply::{Applied, Response, StateMachine, Syncer};
pub use auth::AuthInfo;
pub use command::Command;
pub use compaction::{CompactionConfig, CompactionProgress};
pub use error::{EtcdError, StoreError};
pub use members::EtcdMember;
pub use mvcc::KvHash;
pub use planned_range::PlannedRange;
