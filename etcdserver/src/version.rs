//! The versions hub reports, as etcd 3.6.16 does (`api/version`,
//! `etcdserver/version`): the server's release (Status, `/version`,
//! `etcd_server_version`), the cluster version (`/version`,
//! `etcd_cluster_version`, the `cluster` bucket of snapshots) and the
//! storage version (`hub_store::schema`); and Maintenance.Downgrade.
//!
//! etcd 3.6 decides the cluster version from the versions its members
//! publish: the lowest one's major.minor, patch 0. Every member of a hub
//! cluster is hub, reporting the same release, so the cluster version is that
//! release's major.minor (3.6.0).
//!
//! A downgrade (`etcdctl downgrade validate|enable|cancel`) is answered as
//! etcd answers it: the only target is the minor release before the cluster
//! version (3.5), and no downgrade is ever in progress. Enabling one is
//! refused: a hub member cannot be replaced by one of a 3.5 release.

use hub_proto::etcdserverpb::downgrade_request::DowngradeAction;
use hub_proto::etcdserverpb::{DowngradeRequest, DowngradeResponse};

use crate::{EtcdServer, Result};

/// The etcd release hub implements and reports by default: its API, its
/// answers and its behaviour.
pub const ETCD_VERSION: &str = "3.6.16";

/// The releases `--report-etcd-version` may name: the patch releases of
/// etcd 3.6 up to [`ETCD_VERSION`] (the cluster and storage versions are the
/// same for all of them), or of 3.4 from 3.4.23 to 3.4.31, for clients that
/// must still see 3.4 (hub has 3.4.31's watch-progress ordering).
pub const REPORTABLE: [(u64, u64, std::ops::RangeInclusive<u64>); 2] = [(3, 4, 23..=31), (3, 6, 0..=16)];

/// Why `--report-etcd-version` cannot be `version`.
pub fn check_reportable(version: &str) -> std::result::Result<(), String> {
    let parsed = parse_release(version);
    match parsed {
        Some((major, minor, patch))
            if REPORTABLE.iter().any(|(ma, mi, patches)| (major, minor) == (*ma, *mi) && patches.contains(&patch))
                && version == format!("{major}.{minor}.{patch}") =>
        {
            Ok(())
        }
        _ => Err(format!(
            "--report-etcd-version {version:?} must be a release from 3.6.0 to {ETCD_VERSION} (or from 3.4.23 to 3.4.31)"
        )),
    }
}

/// The cluster version of a cluster whose members all report
/// `server_version` (major.minor.0; `server_version` itself if it does not
/// read as a release).
pub fn cluster_version(server_version: &str) -> String {
    match parse_release(server_version) {
        Some((major, minor, _)) => format!("{major}.{minor}.0"),
        None => server_version.to_string(),
    }
}

/// `major.minor.patch` of a release name.
fn parse_release(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

/// Maintenance.Downgrade's refusals, with etcd's words (`rpctypes`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DowngradeError {
    /// InvalidArgument.
    #[error("etcdserver: wrong downgrade target version format")]
    WrongFormat,
    /// InvalidArgument.
    #[error("etcdserver: invalid downgrade target version")]
    InvalidTarget,
    /// An action etcd does not know (code Unknown).
    #[error("etcdserver: unknown method")]
    UnknownMethod,
    /// hub's own (Unimplemented): a valid ENABLE.
    #[error("hub: a downgrade to etcd {0} is not supported")]
    NotSupported(String),
}

impl EtcdServer {
    /// The cluster version this member reports (see the module doc).
    pub fn cluster_version(&self) -> String {
        cluster_version(&self.config.etcd_version)
    }

    /// The backend's storage version as etcd prints it ("3.6.0"), empty while
    /// it has none.
    pub fn storage_version(&self) -> Result<String> {
        let sm = self.node.state().lock();
        let version = hub_store::schema::storage_version(sm.mvcc().backend().as_ref())?;
        Ok(version.map(|(major, minor)| format!("{major}.{minor}.0")).unwrap_or_default())
    }

    /// Maintenance.Downgrade, as etcd 3.6.16 answers it: VALIDATE checks the
    /// target against the cluster version after a linearizable read; CANCEL
    /// succeeds with nothing to cancel; each answers the cluster version
    /// (major.minor).
    pub async fn downgrade(&self, r: DowngradeRequest) -> Result<DowngradeResponse> {
        let action = DowngradeAction::try_from(r.action).map_err(|_| DowngradeError::UnknownMethod)?;
        match action {
            DowngradeAction::Validate | DowngradeAction::Enable => {
                let target = downgrade_target(&r.version).inspect_err(|e| {
                    if action == DowngradeAction::Enable {
                        tracing::warn!(error = %e, "reject downgrade request");
                    }
                })?;
                self.read_index().await?;
                let allowed = self.allowed_downgrade();
                if target != allowed {
                    if action == DowngradeAction::Enable {
                        tracing::warn!(error = %DowngradeError::InvalidTarget, "reject downgrade request");
                    }
                    return Err(DowngradeError::InvalidTarget.into());
                }
                if action == DowngradeAction::Enable {
                    let e = DowngradeError::NotSupported(format!("{}.{}", target.0, target.1));
                    tracing::warn!(error = %e, "reject downgrade request");
                    return Err(e.into());
                }
            }
            DowngradeAction::Cancel => {
                // etcd logs why it could not cancel (no downgrade, or its
                // linearizable read failed) and answers success.
                let error = match self.read_index().await {
                    Ok(()) => "etcdserver: no inflight downgrade job".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(error, "failed to cancel downgrade");
            }
        }
        let cluster = self.cluster_version();
        let major_minor = cluster.rsplit_once('.').map_or(cluster.as_str(), |(mm, _)| mm);
        Ok(DowngradeResponse { header: self.header(0), version: major_minor.to_string() })
    }

    /// The one downgrade target etcd allows: the minor release before the
    /// cluster version.
    fn allowed_downgrade(&self) -> (u64, u64) {
        let (major, minor, _) = parse_release(&self.cluster_version()).unwrap_or((3, 6, 0));
        (major, minor.saturating_sub(1))
    }
}

/// etcd's `convertToClusterVersion`: a semantic version, or major.minor;
/// only its major.minor counts.
fn downgrade_target(v: &str) -> std::result::Result<(u64, u64), DowngradeError> {
    hub_store::schema::parse_version(v)
        .or_else(|| hub_store::schema::parse_version(&format!("{v}.0")))
        .ok_or(DowngradeError::WrongFormat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reportable_releases() {
        for ok in ["3.6.16", "3.6.0", "3.4.23", "3.4.31"] {
            assert_eq!(check_reportable(ok), Ok(()), "{ok}");
        }
        for bad in ["3.6.17", "3.5.0", "3.4.22", "3.4.32", "3.6.016", "3.6", "x", ""] {
            assert!(check_reportable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_version_is_the_major_minor() {
        assert_eq!(cluster_version("3.6.16"), "3.6.0");
        assert_eq!(cluster_version("3.4.31"), "3.4.0");
    }

    #[test]
    fn downgrade_targets_read_as_etcd_reads_them() {
        assert_eq!(downgrade_target("3.5"), Ok((3, 5)));
        assert_eq!(downgrade_target("3.5.7-rc.1"), Ok((3, 5)));
        assert_eq!(downgrade_target("3.0"), Ok((3, 0)));
        for bad in ["", "3", "x.5", "3.5.0.0", "v3.5"] {
            assert_eq!(downgrade_target(bad), Err(DowngradeError::WrongFormat), "{bad}");
        }
    }
}
