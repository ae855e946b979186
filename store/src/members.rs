//! The cluster's members in etcd 3.6's backend buckets
//! (`storage/schema/membership.go`): `members` maps each member's ID, in
//! lower-case hex, to the member as etcd marshals it to JSON; `members_removed`
//! maps each removed member's ID to `removed`; `cluster` holds the cluster
//! version. So etcd's tools, and etcd itself taking over the data directory,
//! read the membership where etcd keeps it.
//!
//! The store knows nothing of raft: the layer above hands it the whole
//! membership each time an entry changes it ([`StateMachine::stage_members`]),
//! and the buckets follow in the same backend commit as that entry.

use serde::{Deserialize, Serialize};

use crate::apply::StateMachine;
use crate::backend::Table;
use crate::error::StoreError;
use crate::snapshot::layout;

/// etcd's `membership.Member`, as `json.Marshal` writes it: the fields in
/// this order, `isLearner`, `name` and `clientURLs` left out when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    pub id: u64,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default, skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

/// etcd's `schema.BackendMemberKey`: the ID as `types.ID.String()` writes it.
pub fn member_key(id: u64) -> Vec<u8> {
    format!("{id:x}").into_bytes()
}

/// The value of a removed member's record.
const REMOVED: &[u8] = b"removed";

impl StateMachine {
    /// Stages the buckets for `members`, the whole membership after an entry
    /// changed it, to be committed with that entry: a member's record is
    /// written when it is new or changed, a member no longer listed is moved
    /// to `members_removed` (etcd's `MustDeleteMemberFromBackend`), and the
    /// cluster version is set. Returns whether anything was staged (nothing
    /// when the buckets hold `members` already).
    pub fn stage_members(&mut self, members: &[EtcdMember]) -> Result<bool, StoreError> {
        let mut stored = Vec::new();
        self.mvcc().backend().scan(Table::Members, &[], None, &mut |k, v| {
            stored.push((k.to_vec(), v.to_vec()));
            true
        })?;
        let mut wanted = Vec::with_capacity(members.len());
        for m in members {
            let json = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(format!("member {:x}: {e}", m.id)))?;
            wanted.push((member_key(m.id), json));
        }
        let mut changes = Vec::new();
        for (key, _) in stored.iter().filter(|(k, _)| !wanted.iter().any(|(w, _)| w == k)) {
            changes.push((Table::Members, key.clone(), None));
            changes.push((Table::MembersRemoved, key.clone(), Some(REMOVED.to_vec())));
        }
        for (key, json) in wanted.into_iter().filter(|w| !stored.contains(w)) {
            changes.push((Table::Members, key, Some(json)));
        }
        let version = self.mvcc().backend().get_many(Table::Cluster, &[layout::CLUSTER_VERSION_KEY.to_vec()])?;
        if version.first().and_then(Option::as_deref) != Some(layout::CLUSTER_VERSION) {
            changes.push((Table::Cluster, layout::CLUSTER_VERSION_KEY.to_vec(), Some(layout::CLUSTER_VERSION.to_vec())));
        }
        let staged = !changes.is_empty();
        for (table, key, value) in changes {
            self.stage(table, key, value);
        }
        Ok(staged)
    }

    /// Whether `id` was removed from the cluster: etcd refuses any change
    /// naming it again.
    pub fn member_removed(&self, id: u64) -> Result<bool, StoreError> {
        let found = self.mvcc().backend().get_many(Table::MembersRemoved, &[member_key(id)])?;
        Ok(found.into_iter().any(|v| v.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_etcds() {
        let voter = EtcdMember { id: 0x8e9e05c52164694d, peer_urls: vec!["http://a:2380".into()], ..Default::default() };
        // What etcd 3.6.16 writes for a member added and not started yet.
        assert_eq!(serde_json::to_string(&voter).unwrap(), r#"{"id":10276657743932975437,"peerURLs":["http://a:2380"]}"#);
        let started = EtcdMember {
            is_learner: true,
            name: "m1".into(),
            client_urls: vec!["http://a:2379".into()],
            ..voter
        };
        assert_eq!(
            serde_json::to_string(&started).unwrap(),
            r#"{"id":10276657743932975437,"peerURLs":["http://a:2380"],"isLearner":true,"name":"m1","clientURLs":["http://a:2379"]}"#
        );
        assert_eq!(member_key(0x8e9e05c52164694d), b"8e9e05c52164694d");
    }

    fn member(id: u64, name: &str) -> EtcdMember {
        EtcdMember { id, peer_urls: vec![format!("http://{name}:2380")], name: name.into(), ..Default::default() }
    }

    fn records(sm: &StateMachine, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        sm.mvcc().backend().scan(table, &[], None, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn a_member_left_out_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path(), 5).unwrap();
        assert!(sm.stage_members(&[member(1, "a"), member(2, "b")]).unwrap());
        sm.commit_meta(1).unwrap();
        assert!(!sm.stage_members(&[member(1, "a"), member(2, "b")]).unwrap(), "in step already");
        assert_eq!(records(&sm, Table::Members).len(), 2);
        assert!(!sm.member_removed(2).unwrap());
        sm.stage_members(&[member(1, "a")]).unwrap();
        sm.commit_meta(2).unwrap();
        let members = records(&sm, Table::Members);
        assert_eq!(members.len(), 1);
        assert_eq!(serde_json::from_slice::<EtcdMember>(&members[0].1).unwrap(), member(1, "a"));
        assert_eq!(records(&sm, Table::MembersRemoved), vec![(b"2".to_vec(), b"removed".to_vec())]);
        assert!(sm.member_removed(2).unwrap());
        assert_eq!(records(&sm, Table::Cluster), vec![(b"clusterVersion".to_vec(), b"3.6.0".to_vec())]);
    }
}
