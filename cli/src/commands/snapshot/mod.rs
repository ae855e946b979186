//! `snapshot save|status|restore`: etcdctl's `snapshot` commands, for hub's
//! and etcd's snapshots alike (one format, see `hub_store::snapshot`).
//!
//! - [`save`]: streams Maintenance.Snapshot from one member into a file
//! - `status` (here): etcdctl's hash, revision, key count and size of a file
//! - [`restore`]: builds a fresh hub data directory from a snapshot, which is
//!   also how an etcd cluster's data moves to hub
//! - [`bootstrap`]: etcd's checks of the membership flags restore is given
//! - [`zap`]: the JSON log lines etcdctl writes on stderr meanwhile
//!
//! Reading and writing snapshot files is `hub_store::snapshot`'s business;
//! these modules add etcdctl's arguments, checks, texts and exit codes.

mod bootstrap;
mod restore;
mod save;
mod zap;

use std::io::Write;
use std::path::Path;

use clap::{ArgAction, Args, Subcommand};
use hub_store::snapshot::{SnapshotReader, SHA256_LEN};
use hub_store::StoreError;

use super::Ctx;
use crate::error::CtlError;
use crate::flags::go_bool;
use crate::gofmt;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save(SaveArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
    /// Gets backend snapshot status of a given file
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[arg(value_name = "FILENAME")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(value_name = "FILENAME")]
    pub args: Vec<String>,
}

/// etcdctl's restore flags and defaults; `--data-dir` defaults to
/// `<name>.hub` (hubd's default) rather than etcd's `<name>.etcd`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[arg(value_name = "FILENAME")]
    pub args: Vec<String>,
    /// Path to the data directory (<name>.hub when not given)
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long = "wal-dir", default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long = "initial-cluster", default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long = "initial-advertise-peer-urls", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub skip_hash_check: bool,
}

pub async fn run(cmd: SnapshotCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    match cmd {
        SnapshotCommand::Save(a) => save::run(a, ctx, out).await,
        SnapshotCommand::Status(a) => status(a, ctx, out),
        // Restore is plain file work; it needs no cluster and prints only its log.
        SnapshotCommand::Restore(a) => restore::run(a),
    }
}

/// etcdctl's `snapshot status`: opening and walking the bbolt file is its
/// integrity check. Like etcdctl it does not verify the sha256 trailer (a
/// database copied from a data directory has none): damaged structure (meta
/// pages, page headers, a file cut short) fails the walk, a changed key or
/// value only changes the hash printed; `restore` checks the trailer. hubctl
/// refuses a truncated file that etcdctl's mmap happens to read.
fn status(a: StatusArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let [path] = a.args.as_slice() else {
        return Err(CtlError::bad_args("snapshot status requires exactly one argument"));
    };
    let meta = std::fs::metadata(path).map_err(|e| CtlError::error(gofmt::path_error("stat", path, &e)))?;
    if meta.is_dir() {
        return Err(CtlError::error(format!("open {path}: is a directory")));
    }
    let info =
        SnapshotReader::open(Path::new(path), true).and_then(|mut reader| reader.status()).map_err(store_error)?;
    ctx.printer.snapshot_status(out, &info)
}

/// etcdctl's `hasChecksum`: a file of `len` bytes carries a sha256 trailer
/// when it is 32 bytes longer than a whole number of 512-byte sectors (a bbolt
/// database is whole pages).
fn has_sha256_trailer(len: u64) -> bool {
    len % 512 == SHA256_LEN as u64
}

/// A snapshot error already says it is one (`<file>: bbolt: ...`); other
/// store errors keep their own words.
fn store_error(e: StoreError) -> CtlError {
    match e {
        StoreError::Snapshot(message) => CtlError::error(message),
        other => CtlError::error(other.to_string()),
    }
}
