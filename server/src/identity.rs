//! Who this member is: its member ID and its cluster's ID, derived the way etcd
//! derives them and kept in the data directory so that a restart (with any
//! flags) is the same member of the same cluster.

use std::path::Path;


#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// etcd's ID of a member of `--initial-cluster`.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    hub_raft::membership::etcd_member_id(peer_urls, token, None)
}

pub use hub_raft::membership::etcd_cluster_id as cluster_id;

const FILE: &str = "identity";

/// Whether `dir` already holds a member's identity (it is not a new member).
pub fn exists(dir: &Path) -> bool {
    dir.join(FILE).exists()
}

/// Loads the identity kept in `dir`, or creates and saves it from the
/// bootstrap flags. Returns it and whether it was just created.
pub fn load_or_create(dir: &Path, fresh: impl FnOnce() -> (u64, u64)) -> std::io::Result<(Identity, bool)> {
    let path = dir.join(FILE);
    let saved = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(id) = saved {
        return Ok((id, false));
    }
    let (member_id, cluster_id) = fresh();
    let identity = Identity { member_id, cluster_id };
    let text = format!("member_id={:x}\ncluster_id={:x}\n", identity.member_id, identity.cluster_id);
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok((identity, true))
}

fn parse(text: &str) -> Option<Identity> {
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).map(str::trim)
    };
    Some(Identity {
        member_id: u64::from_str_radix(field("member_id")?, 16).ok()?,
        cluster_id: u64::from_str_radix(field("cluster_id")?, 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd() {
        // `etcd` with no flags: member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }

    #[test]
    fn identity_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create(dir.path(), || (1, 2)).unwrap();
        assert!(created);
        let (second, created) = load_or_create(dir.path(), || (3, 4)).unwrap();
        assert!(!created);
        assert_eq!(first, second);
    }
}
