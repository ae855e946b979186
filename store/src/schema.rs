//! The backend's storage version, as etcd 3.6 keeps it (`storage/schema`):
//! `meta/storageVersion`, "3.6.0" for the layout hub writes (etcd 3.5's
//! buckets plus that record). etcd 3.5 has no such record; `etcdutl migrate
//! --target-version 3.5` deletes it, and etcd 3.6 writes it back when it
//! starts on that directory, as hub does here at start-up ([`migrate`]). A
//! backend of a newer release (3.7 and later) is refused, with etcd's error.
//!
//! etcd 3.6's backend hash leaves the record out ([`crate::hash`]), and every
//! snapshot carries it (it is a meta record like the others), so that
//! `etcdutl snapshot status` shows the version.
//!
//! A downgrade (`etcdctl downgrade enable 3.5`, applied through raft as
//! etcd's `DowngradeInfoSetRequest`) is kept beside it, `meta/downgrade`
//! holding the target version while one is enabled (etcd keeps it in its
//! `cluster` bucket, which hub does not have). As in etcd, whose cluster
//! version then becomes the target and its storage version follows, the
//! storage version goes while a downgrade to 3.5 is enabled (3.5 has none)
//! and comes back when it is cancelled.

use hub_proto::etcdserverpb::DowngradeInfoSetRequest;

use crate::backend::{Backend, Table, WriteBatch};
use crate::error::StoreError;

/// The meta key of the storage version.
pub const STORAGE_VERSION_KEY: &[u8] = b"storageVersion";
/// The storage version of hub's backend: etcd 3.6's (major.minor, patch 0).
pub const STORAGE_VERSION: &str = "3.6.0";

/// The meta key of an enabled downgrade's target version.
pub const DOWNGRADE_KEY: &[u8] = b"downgrade";

/// The target version of the downgrade enabled, if one is.
pub fn downgrade_target(backend: &dyn Backend) -> Result<Option<String>, StoreError> {
    let record = backend.get_many(Table::Meta, &[DOWNGRADE_KEY.to_vec()])?.pop().flatten();
    Ok(record.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Applies a downgrade enabled or cancelled: the target and the storage
/// version, in `batch`.
pub fn set_downgrade(r: &DowngradeInfoSetRequest, batch: &mut WriteBatch) {
    if r.enabled {
        batch.put(Table::Meta, DOWNGRADE_KEY.to_vec(), r.ver.as_bytes().to_vec());
        batch.delete(Table::Meta, STORAGE_VERSION_KEY.to_vec());
        tracing::info!(target_version = %r.ver, "The server is ready to downgrade");
        tracing::info!(new_storage_version = %r.ver, "updated storage version");
    } else {
        batch.delete(Table::Meta, DOWNGRADE_KEY.to_vec());
        batch.put(Table::Meta, STORAGE_VERSION_KEY.to_vec(), STORAGE_VERSION.as_bytes().to_vec());
        tracing::info!(new_storage_version = STORAGE_VERSION, "updated storage version");
    }
}

/// The backend's storage version: the record, if it reads as a version
/// (major.minor.patch, as etcd's `semver.NewVersion` takes it; anything else
/// counts as no version, as in etcd).
pub fn storage_version(backend: &dyn Backend) -> Result<Option<(u64, u64)>, StoreError> {
    let record = backend.get_many(Table::Meta, &[STORAGE_VERSION_KEY.to_vec()])?.pop().flatten();
    Ok(record.and_then(|v| parse_version(std::str::from_utf8(&v).ok()?)))
}

/// etcd 3.6's start-up schema step: a backend without a storage version (a
/// new one, one from etcd 3.5 or `etcdutl migrate --target-version 3.5`, or
/// hub's before it wrote one) is brought to 3.6, unless a downgrade is
/// enabled; a newer one is refused (`schema.Validate`: no migration plan
/// goes down from it).
pub fn migrate(backend: &dyn Backend) -> Result<(), StoreError> {
    match storage_version(backend)? {
        Some((3, 6)) => Ok(()),
        Some((major, minor)) if (major, minor) > (3, 6) => {
            let error = format!("version \"{major}.{minor}\" is not supported");
            tracing::error!(error, "Failed to validate schema");
            Err(StoreError::Corrupt(error))
        }
        _ if downgrade_target(backend)?.is_some() => Ok(()),
        _ => {
            let mut batch = WriteBatch::default();
            batch.put(Table::Meta, STORAGE_VERSION_KEY.to_vec(), STORAGE_VERSION.as_bytes().to_vec());
            backend.commit(batch)?;
            tracing::info!(new_storage_version = STORAGE_VERSION, "updated storage version");
            Ok(())
        }
    }
}

/// `major.minor` of a semantic version `major.minor.patch[-pre][+build]`.
pub fn parse_version(v: &str) -> Option<(u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut number = || parts.next().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?.parse().ok();
    let (major, minor, _patch): (u64, u64, u64) = (number()?, number()?, number()?);
    parts.next().is_none().then_some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateMachine;

    /// Sets (or, with `None`, deletes) the stored version of a stopped
    /// member, as `etcdutl migrate` does.
    fn set_stored(dir: &std::path::Path, version: Option<&str>) {
        let sm = StateMachine::open(dir, 5).unwrap();
        let mut batch = WriteBatch::default();
        match version {
            Some(v) => batch.put(Table::Meta, STORAGE_VERSION_KEY.to_vec(), v.as_bytes().to_vec()),
            None => batch.delete(Table::Meta, STORAGE_VERSION_KEY.to_vec()),
        }
        sm.mvcc().backend().commit(batch).unwrap();
        sm.sync().unwrap();
    }

    fn stored(dir: &std::path::Path) -> Result<Option<(u64, u64)>, StoreError> {
        let sm = StateMachine::open(dir, 5)?;
        storage_version(sm.mvcc().backend().as_ref())
    }

    #[test]
    fn a_downgrade_keeps_the_storage_version_away_until_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let set = |enabled: bool| {
            let sm = StateMachine::open(dir.path(), 5).unwrap();
            let mut batch = WriteBatch::default();
            set_downgrade(&DowngradeInfoSetRequest { enabled, ver: "3.5.0".into() }, &mut batch);
            sm.mvcc().backend().commit(batch).unwrap();
            sm.sync().unwrap();
        };
        let state = || {
            let sm = StateMachine::open(dir.path(), 5).unwrap();
            let backend = sm.mvcc().backend();
            (storage_version(backend.as_ref()).unwrap(), downgrade_target(backend.as_ref()).unwrap())
        };
        set(true);
        assert_eq!(state(), (None, Some("3.5.0".to_string())), "a restart keeps the 3.5 layout");
        set(false);
        assert_eq!(state(), (Some((3, 6)), None));
    }

    #[test]
    fn start_up_brings_the_backend_to_3_6_and_refuses_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stored(dir.path()).unwrap(), Some((3, 6)), "a new backend");
        // etcdutl migrate --target-version 3.5, then a start: back to 3.6.
        set_stored(dir.path(), None);
        assert_eq!(stored(dir.path()).unwrap(), Some((3, 6)));
        set_stored(dir.path(), Some("garbage"));
        assert_eq!(stored(dir.path()).unwrap(), Some((3, 6)));
        // etcdutl migrate --target-version 3.7 --force: etcd 3.6 refuses it.
        set_stored(dir.path(), Some("3.7.0"));
        let refused = StateMachine::open(dir.path(), 5).err().map(|e| e.to_string());
        assert_eq!(refused.as_deref(), Some(r#"corrupt backend record: version "3.7" is not supported"#));
    }

    #[test]
    fn versions_read_as_etcd_reads_them() {
        assert_eq!(parse_version("3.6.0"), Some((3, 6)));
        assert_eq!(parse_version("3.7.0-alpha+x"), Some((3, 7)));
        for bad in ["", "3.6", "3.6.0.1", "x.6.0", "3..0"] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }
}
