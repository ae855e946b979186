//! `snapshot restore <file>`: a fresh hub data directory from a snapshot,
//! hub's or etcd's (`etcdctl snapshot save` against etcd 3.4) — the way an
//! etcd cluster's data moves to hub.
//!
//! etcdctl's checks come first, in its order and with its texts: the
//! membership flags ([`bootstrap`](super::bootstrap)), a data directory that
//! must not exist, then the sha256 trailer unless `--skip-hash-check`. What it
//! builds differs: etcd's data directory has a bbolt backend, a WAL and a raft
//! snapshot holding the membership; hub's has only its backend,
//! `<data-dir>/member/snap/db` (bbolt, as etcd's), at consistent index 0. On its first start hubd
//! bootstraps the membership from its flags (the same `--name`,
//! `--initial-cluster`, `--initial-cluster-token` and
//! `--initial-advertise-peer-urls`) and begins a new raft log, every entry of
//! which must then apply. etcdctl leaves a half-built data directory behind
//! when it fails; hubctl builds the directory beside its final name and
//! renames it into place last, so the data directory is whole or absent.

use std::fs::{DirBuilder, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use hub_store::snapshot::{restore_into, RestoreOptions, SnapshotReader, SHA256_LEN};
use hub_store::durable_fs;
use hub_store::StateMachine;
use sha2::{Digest, Sha256};

use super::bootstrap::{self, Cluster};
use super::zap::{self, text};
use super::{has_sha256_trailer, store_error, RestoreArgs};
use crate::error::CtlError;
use crate::gofmt;
use crate::output::json::Json;

/// Where hubd keeps its raft log when not given `--wal-dir`.
const HUB_WAL_DIR: &str = "member/hub-wal";

pub fn run(a: RestoreArgs) -> Result<(), CtlError> {
    let [snapshot] = a.args.as_slice() else {
        return Err(CtlError::bad_args("snapshot restore requires exactly one argument"));
    };
    let cluster =
        bootstrap::verify(&a.name, &a.initial_cluster, &a.initial_advertise_peer_urls, &a.initial_cluster_token)
            .map_err(CtlError::error)?;
    let data_dir = if a.data_dir.is_empty() { format!("{}.hub", a.name) } else { a.data_dir.clone() };
    if Path::new(&data_dir).exists() {
        return Err(CtlError::error(format!("data-dir {} exists", gofmt::quote(data_dir.as_bytes()))));
    }
    let wal_dir = if a.wal_dir.is_empty() {
        Path::new(&data_dir).join(HUB_WAL_DIR).to_string_lossy().into_owned()
    } else if Path::new(&a.wal_dir).exists() {
        return Err(CtlError::error(format!("wal-dir {} exists", gofmt::quote(a.wal_dir.as_bytes()))));
    } else {
        // Nothing to write there: hubd starts its log in it when given the same --wal-dir.
        a.wal_dir.clone()
    };
    let where_fields = || vec![("path", text(snapshot)), ("wal-dir", text(&wal_dir)), ("data-dir", text(&data_dir))];
    zap::info("restoring snapshot", where_fields());

    check_sha256_trailer(snapshot, a.skip_hash_check)?;
    // The trailer is checked (or its check declined) above, with etcdctl's words.
    let mut reader = SnapshotReader::open(Path::new(snapshot), true).map_err(store_error)?;
    build_data_dir(&mut reader, Path::new(&data_dir))?;

    log_members(&cluster);
    zap::info("restored snapshot", where_fields());
    Ok(())
}

/// etcdctl's `saveDB` checks, before anything is created: the file opens,
/// has a sha256 trailer, and the trailer matches the database before it.
/// `skip` (`--skip-hash-check`) accepts a file without trailer, or a wrong one.
fn check_sha256_trailer(path: &str, skip: bool) -> Result<(), CtlError> {
    let fail = |op: &str, e: std::io::Error| CtlError::error(gofmt::path_error(op, path, &e));
    let mut file = File::open(path).map_err(|e| fail("open", e))?;
    let meta = file.metadata().map_err(|e| fail("stat", e))?;
    if meta.is_dir() {
        return Err(CtlError::error(format!("read {path}: is a directory")));
    }
    let len = meta.len();
    if len < SHA256_LEN as u64 {
        // Go's Seek(-32, io.SeekEnd) on a shorter file.
        return Err(CtlError::error(format!("seek {path}: invalid argument")));
    }
    if skip {
        return Ok(());
    }
    if !has_sha256_trailer(len) {
        return Err(CtlError::error("snapshot missing hash but --skip-hash-check=false"));
    }
    let db_len = len - SHA256_LEN as u64;
    let mut stored = [0u8; SHA256_LEN];
    file.seek(SeekFrom::Start(db_len)).map_err(|e| fail("seek", e))?;
    file.read_exact(&mut stored).map_err(|e| fail("read", e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| fail("seek", e))?;
    let mut hasher = Sha256::new();
    let copied = std::io::copy(&mut (&mut file).take(db_len), &mut hasher).map_err(|e| fail("read", e))?;
    let computed = hasher.finalize();
    if copied != db_len || computed.as_slice() != stored {
        return Err(CtlError::error(format!(
            "expected sha256 {}, got {}",
            gofmt::byte_list(&stored),
            gofmt::byte_list(&computed)
        )));
    }
    Ok(())
}

/// Builds `<staging>/member/snap/db` beside `data_dir` and renames the staging
/// directory to `data_dir` once the backend is complete.
fn build_data_dir(reader: &mut SnapshotReader, data_dir: &Path) -> Result<(), CtlError> {
    let Some(base) = data_dir.file_name() else {
        return Err(CtlError::error(format!(
            "invalid data-dir {}",
            gofmt::quote(data_dir.to_string_lossy().as_bytes())
        )));
    };
    let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let io = |what: &str, path: &Path, e: std::io::Error| {
        CtlError::error(gofmt::path_error(what, &path.to_string_lossy(), &e))
    };
    // etcd's data directories are private (0700), parents included.
    let mut private = DirBuilder::new();
    private.recursive(true).mode(0o700);
    durable_fs::create_dir_all_with(&private, parent).map_err(|e| io("mkdir", parent, e))?;
    let staging: PathBuf = parent.join(format!(".{}.restoring-{}", base.to_string_lossy(), std::process::id()));
    if staging.exists() {
        // Left by a restore that was killed (and had this process ID): never renamed, never used.
        std::fs::remove_dir_all(&staging).map_err(|e| io("remove", &staging, e))?;
    }
    let member = staging.join("member");
    durable_fs::create_dir_all_with(&private, &member).map_err(|e| io("mkdir", &member, e))?;

    let built = fill_member_dir(reader, &member).and_then(|()| {
        durable_fs::rename(&staging, data_dir).map_err(|e| {
            CtlError::error(format!("rename {} {}: {}", staging.display(), data_dir.display(), gofmt::errno_text(&e)))
        })
    });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(())
}

fn fill_member_dir(reader: &mut SnapshotReader, member: &Path) -> Result<(), CtlError> {
    // Index 0: every entry of the new raft log hubd starts, from the first, must apply.
    restore_into(reader, member, &RestoreOptions { consistent_index: Some(0) }).map_err(store_error)?;
    // A snapshot saved from hub also carries its old cluster's raft position
    // and membership in `meta`; the restored member starts a new log.
    let mut state = StateMachine::open(member, 0).map_err(store_error)?;
    state.retain_etcd_meta().map_err(store_error)?;
    Ok(())
}

/// etcdctl's "added member" lines: the IDs hubd takes when started with the
/// same membership flags.
fn log_members(cluster: &Cluster) {
    for m in &cluster.members {
        zap::info(
            "added member",
            vec![
                ("cluster-id", text(format!("{:x}", cluster.id))),
                ("local-member-id", text("0")),
                ("added-peer-id", text(format!("{:x}", m.id))),
                ("added-peer-peer-urls", Json::Array(m.peer_urls.iter().map(text).collect())),
            ],
        );
    }
}
