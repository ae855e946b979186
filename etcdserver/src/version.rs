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
//! A downgrade (`etcdctl downgrade validate|enable|cancel`) is etcd's: the
//! only target is the minor release before the cluster version (3.5);
//! enabling or cancelling one goes through raft (`DowngradeInfoSetRequest`,
//! applied by `hub_store::schema`). While one is enabled the cluster version
//! is its target, and so is the storage version, as etcd 3.6's version
//! monitor makes them a moment later; Status shows the downgrade. No hub
//! release speaks 3.5, so the downgrade never completes; cancelling it brings
//! the versions back.

use hub_proto::etcdserverpb::downgrade_request::DowngradeAction;
use hub_proto::etcdserverpb::{
    DowngradeInfo, DowngradeInfoSetRequest, DowngradeRequest, DowngradeResponse, InternalRaftRequest,
};
use hub_store::AuthInfo;

use crate::{EtcdServer, Result};

/// The etcd release hub implements and reports by default: its API, its
/// answers and its behaviour.
pub const ETCD_VERSION: &str = "3.6.16";

/// The releases `--report-etcd-version` may name: the patch releases of
/// etcd 3.6 up to [`ETCD_VERSION`] (the cluster and storage versions are the
/// same for all of them), or of 3.4 from 3.4.23 to 3.4.31, for clients that
/// must still see 3.4 (hub has 3.4.31's watch-progress ordering).
const REPORTABLE: [(u64, u64, std::ops::RangeInclusive<u64>); 2] = [(3, 4, 23..=31), (3, 6, 0..=16)];

/// Why `--report-etcd-version` cannot be `version`.
pub fn check_reportable(version: &str) -> std::result::Result<(), String> {
    let numbers: Option<Vec<u64>> = version.split('.').map(|p| p.parse().ok()).collect();
    match numbers.as_deref() {
        Some(&[major, minor, patch])
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
    match hub_store::schema::parse_version(server_version) {
        Some((major, minor)) => format!("{major}.{minor}.0"),
        None => server_version.to_string(),
    }
}

/// A version as etcd's `version.Cluster` shows it (major.minor), in
/// Downgrade's answer and the `etcd_cluster_version` metric.
pub fn major_minor(version: &str) -> &str {
    version.rsplit_once('.').map_or(version, |(major_minor, _)| major_minor)
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
    /// FailedPrecondition.
    #[error("etcdserver: cluster has a downgrade job in progress")]
    InProgress,
    /// FailedPrecondition (etcd logs it and answers success).
    #[error("etcdserver: no inflight downgrade job")]
    NoInflight,
    /// An action etcd does not know (code Unknown).
    #[error("etcdserver: unknown method")]
    UnknownMethod,
}

impl EtcdServer {
    /// The cluster version this member reports (see the module doc).
    pub fn cluster_version(&self) -> Result<String> {
        Ok(self.downgrade_target()?.unwrap_or_else(|| cluster_version(&self.config.etcd_version)))
    }

    /// The storage version as etcd prints it ("3.6.0"): the backend's, the
    /// downgrade's target while one is enabled; empty while there is none.
    pub fn storage_version(&self) -> Result<String> {
        use hub_store::schema;
        let (stored, target) = {
            let sm = self.node.state().lock();
            let backend = sm.mvcc().backend().as_ref();
            (schema::storage_version(backend)?, schema::downgrade_target(backend)?)
        };
        Ok(stored.map(|(major, minor)| format!("{major}.{minor}.0")).or(target).unwrap_or_default())
    }

    /// Status' downgrade info.
    pub fn downgrade_info(&self) -> Result<DowngradeInfo> {
        let target = self.downgrade_target()?;
        Ok(DowngradeInfo { enabled: target.is_some(), target_version: target.unwrap_or_default() })
    }

    fn downgrade_target(&self) -> Result<Option<String>> {
        let sm = self.node.state().lock();
        Ok(hub_store::schema::downgrade_target(sm.mvcc().backend().as_ref())?)
    }

    /// Maintenance.Downgrade, as etcd 3.6.16 answers it (`who` passed the
    /// root role's gate): VALIDATE checks the target against the cluster
    /// version after a linearizable read, and that no downgrade is in
    /// progress; ENABLE validates, then proposes the downgrade; CANCEL
    /// proposes its end, or logs that there is none and succeeds all the
    /// same. Each answers the cluster version (major.minor) as it was before
    /// the change (etcd's monitor changes it a moment later).
    pub async fn downgrade(&self, who: &AuthInfo, r: DowngradeRequest) -> Result<DowngradeResponse> {
        let action = DowngradeAction::try_from(r.action).map_err(|_| DowngradeError::UnknownMethod)?;
        let cluster = match action {
            DowngradeAction::Validate => self.validate_downgrade(&r.version).await?.0,
            DowngradeAction::Enable => {
                let (cluster, (major, minor)) = self
                    .validate_downgrade(&r.version)
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "reject downgrade request"))?;
                let set = DowngradeInfoSetRequest { enabled: true, ver: format!("{major}.{minor}.0") };
                self.propose(who, InternalRaftRequest { downgrade_info_set: Some(set), ..Default::default() }).await?;
                cluster
            }
            DowngradeAction::Cancel => {
                let cluster = self.cluster_version()?;
                // etcd logs why it could not cancel and answers success.
                if let Err(e) = self.cancel_downgrade(who).await {
                    tracing::warn!(error = %e, "failed to cancel downgrade");
                }
                cluster
            }
        };
        Ok(DowngradeResponse { header: self.header(0), version: major_minor(&cluster).to_string() })
    }

    /// etcd's `DowngradeCancel`: after a linearizable read, the downgrade
    /// in progress ends.
    async fn cancel_downgrade(&self, who: &AuthInfo) -> Result<()> {
        self.read_index().await?;
        if self.downgrade_target()?.is_none() {
            return Err(DowngradeError::NoInflight.into());
        }
        let set = DowngradeInfoSetRequest { enabled: false, ver: String::new() };
        self.propose(who, InternalRaftRequest { downgrade_info_set: Some(set), ..Default::default() }).await?;
        Ok(())
    }

    /// etcd's `downgradeValidate`: the target is the minor release before the
    /// cluster version, and no downgrade is in progress. Returns the cluster
    /// version and the target (major, minor).
    async fn validate_downgrade(&self, version: &str) -> Result<(String, (u64, u64))> {
        let target = downgrade_target(version)?;
        self.read_index().await?;
        let cluster = self.cluster_version()?;
        let (major, minor) = hub_store::schema::parse_version(&cluster).unwrap_or((3, 6));
        if target != (major, minor.saturating_sub(1)) {
            return Err(DowngradeError::InvalidTarget.into());
        }
        if self.downgrade_target()?.is_some() {
            return Err(DowngradeError::InProgress.into());
        }
        Ok((cluster, target))
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
