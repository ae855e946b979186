//! Raised alarms (etcd's `v3alarm.AlarmStore`): which member raised which
//! alarm, kept in the `alarm` table as etcd keeps its bucket (the encoded
//! `AlarmMember` as the key, no value), so snapshots carry them both ways.
//!
//! While NOSPACE is raised the state machine refuses what grows the store
//! (etcd's `applierV3Capped`); while CORRUPT is raised it refuses every write
//! (`applierV3Corrupt`): [`AlarmStore::check`], which `apply.rs` calls after
//! authorizing a request, never instead.

use std::collections::BTreeSet;

use hub_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op::Request, AlarmMember, AlarmRequest, AlarmType, TxnRequest,
};
use prost::Message;

use crate::backend::{Backend, Table, WriteBatch};
use crate::command::Command;
use crate::error::{EtcdError, StoreError};

#[derive(Debug, Default)]
pub struct AlarmStore {
    /// (alarm type, member ID): listed by type, then member.
    raised: BTreeSet<(i32, u64)>,
}

fn member(alarm: i32, member_id: u64) -> AlarmMember {
    AlarmMember { member_id, alarm }
}

impl AlarmStore {
    pub fn load(backend: &dyn Backend) -> Result<Self, StoreError> {
        let mut raised = BTreeSet::new();
        let mut failure = None;
        backend.scan(Table::Alarm, &[], None, &mut |k, _| match AlarmMember::decode(k) {
            Ok(m) => raised.insert((m.alarm, m.member_id)),
            Err(e) => {
                failure = Some(StoreError::Corrupt(format!("alarm {k:?}: {e}")));
                false
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(AlarmStore { raised }),
        }
    }

    /// The raised alarms of type `alarm` (every type for NONE).
    pub fn get(&self, alarm: i32) -> Vec<AlarmMember> {
        self.raised
            .iter()
            .filter(|(t, _)| alarm == AlarmType::None as i32 || *t == alarm)
            .map(|&(t, id)| member(t, id))
            .collect()
    }

    pub fn is_raised(&self, alarm: AlarmType) -> bool {
        self.raised.iter().any(|(t, _)| *t == alarm as i32)
    }

    /// What the raised alarms refuse (the caller has authorized `req`):
    /// under CORRUPT every write and applied range (etcd's
    /// `applierV3Corrupt`), under NOSPACE a Put, a Txn with a put in either
    /// top-level branch, a lease grant (`applierV3Capped`).
    pub fn check(&self, c: Command<'_>) -> Result<(), EtcdError> {
        if self.raised.is_empty() {
            return Ok(());
        }
        let (corrupt, nospace) = match c {
            Command::Put(_) | Command::LeaseGrant(_) => (true, true),
            Command::Txn(t) => (true, txn_has_put(t)),
            Command::Range(_) | Command::DeleteRange(_) | Command::Compaction(_) | Command::LeaseRevoke(_) => (true, false),
            Command::Alarm(_) | Command::Auth(_) | Command::DowngradeInfoSet(_) | Command::Unknown => (false, false),
        };
        if corrupt && self.is_raised(AlarmType::Corrupt) {
            return Err(EtcdError::Corrupt);
        }
        if nospace && self.is_raised(AlarmType::Nospace) {
            return Err(EtcdError::NoSpace);
        }
        Ok(())
    }

    /// Applies an Alarm request (etcd's `applierV3backend.Alarm`): returns
    /// what GET lists, the alarm raised, or the alarm cleared (none if it
    /// was not raised; an unknown action answers nothing, as in etcd).
    pub fn apply(&mut self, r: &AlarmRequest, batch: &mut WriteBatch) -> Vec<AlarmMember> {
        let name = |alarm: i32| AlarmType::try_from(alarm).map_or("UNKNOWN", |t| t.as_str_name());
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => self.get(r.alarm),
            Ok(AlarmAction::Activate) => {
                let (m, first) = self.activate(r.member_id, r.alarm, batch);
                if first {
                    tracing::warn!(alarm = name(m.alarm), from = %format_args!("{:x}", m.member_id), "alarm raised");
                }
                vec![m]
            }
            Ok(AlarmAction::Deactivate) => match self.deactivate(r.member_id, r.alarm, batch) {
                Some((m, last)) => {
                    if last {
                        tracing::warn!(alarm = name(m.alarm), from = %format_args!("{:x}", m.member_id), "alarm disarmed");
                    }
                    vec![m]
                }
                None => Vec::new(),
            },
            Err(_) => Vec::new(),
        }
    }

    /// Raises `alarm` for `member_id` (once: raising it again changes nothing).
    /// Returns the alarm, and whether it is the first of its type.
    fn activate(&mut self, member_id: u64, alarm: i32, batch: &mut WriteBatch) -> (AlarmMember, bool) {
        let first = !self.raised.iter().any(|(t, _)| *t == alarm);
        let m = member(alarm, member_id);
        if self.raised.insert((alarm, member_id)) {
            batch.put(Table::Alarm, m.encode_to_vec(), Vec::new());
        }
        (m, first)
    }

    /// Clears `alarm` of `member_id`, if raised; returns it, and whether no
    /// alarm of its type is left.
    fn deactivate(&mut self, member_id: u64, alarm: i32, batch: &mut WriteBatch) -> Option<(AlarmMember, bool)> {
        if !self.raised.remove(&(alarm, member_id)) {
            return None;
        }
        let m = member(alarm, member_id);
        batch.delete(Table::Alarm, m.encode_to_vec());
        Some((m, !self.raised.iter().any(|(t, _)| *t == alarm)))
    }
}

/// etcd's quota cost of a Txn is non-zero: a put among the ops of either
/// top-level branch (nested txns are not looked into, as in etcd).
fn txn_has_put(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| matches!(op.request, Some(Request::RequestPut(_))))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hub_proto::etcdserverpb::{
        alarm_request::AlarmAction, request_op::Request, AlarmRequest, AlarmType, DeleteRangeRequest, InternalRaftRequest,
        LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    };

    use crate::{EtcdError, StateMachine, StoreError};

    fn alarm(action: AlarmAction, member_id: u64, alarm: AlarmType) -> InternalRaftRequest {
        let a = AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 };
        InternalRaftRequest { alarm: Some(a), ..Default::default() }
    }

    fn put(key: &str) -> PutRequest {
        PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() }
    }

    fn op(r: Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    struct Sm {
        sm: StateMachine,
        index: u64,
        _dir: tempfile::TempDir,
    }

    impl Sm {
        fn apply(&mut self, req: InternalRaftRequest) -> Result<crate::Response, EtcdError> {
            self.index += 1;
            match self.sm.apply(self.index, &req, Instant::now()) {
                Ok(a) => Ok(a.response),
                Err(StoreError::Etcd(e)) => Err(e),
                Err(e) => panic!("fatal: {e}"),
            }
        }
    }

    fn sm() -> Sm {
        let dir = tempfile::tempdir().unwrap();
        Sm { sm: StateMachine::open(dir.path(), 2).unwrap(), index: 0, _dir: dir }
    }

    #[test]
    fn nospace_refuses_exactly_what_etcds_capped_applier_refuses() {
        let mut s = sm();
        s.apply(InternalRaftRequest { put: Some(put("a")), ..Default::default() }).unwrap();
        s.apply(alarm(AlarmAction::Activate, 7, AlarmType::Nospace)).unwrap();
        let refused = |s: &mut Sm, req: InternalRaftRequest| assert_eq!(s.apply(req), Err(EtcdError::NoSpace));
        refused(&mut s, InternalRaftRequest { put: Some(put("b")), ..Default::default() });
        refused(&mut s, InternalRaftRequest { lease_grant: Some(LeaseGrantRequest { id: 1, ttl: 10 }), ..Default::default() });
        let txn_put = TxnRequest { failure: vec![op(Request::RequestPut(put("c")))], ..Default::default() };
        refused(&mut s, InternalRaftRequest { txn: Some(txn_put), ..Default::default() });
        // A put only inside a nested txn costs nothing to etcd's quota: allowed.
        let inner = TxnRequest { success: vec![op(Request::RequestPut(put("n")))], ..Default::default() };
        let nested = TxnRequest { success: vec![op(Request::RequestTxn(inner))], ..Default::default() };
        s.apply(InternalRaftRequest { txn: Some(nested), ..Default::default() }).unwrap();
        let txn_del = TxnRequest {
            success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() }))],
            ..Default::default()
        };
        s.apply(InternalRaftRequest { txn: Some(txn_del), ..Default::default() }).unwrap();
        let del = DeleteRangeRequest { key: b"n".to_vec(), ..Default::default() };
        s.apply(InternalRaftRequest { delete_range: Some(del), ..Default::default() }).unwrap();

        // Raising it again is one alarm; disarming an unknown one is nothing.
        s.apply(alarm(AlarmAction::Activate, 7, AlarmType::Nospace)).unwrap();
        assert_eq!(s.sm.alarms().len(), 1);
        match s.apply(alarm(AlarmAction::Deactivate, 8, AlarmType::Nospace)).unwrap() {
            crate::Response::Alarm(r) => assert!(r.alarms.is_empty()),
            other => panic!("{other:?}"),
        }
        s.apply(alarm(AlarmAction::Deactivate, 7, AlarmType::Nospace)).unwrap();
        assert!(s.sm.alarms().is_empty());
        s.apply(InternalRaftRequest { put: Some(put("b")), ..Default::default() }).unwrap();
    }

    #[test]
    fn corrupt_refuses_every_write_and_applied_range() {
        let mut s = sm();
        s.apply(alarm(AlarmAction::Activate, 9, AlarmType::Corrupt)).unwrap();
        let refused = |s: &mut Sm, req: InternalRaftRequest| assert_eq!(s.apply(req), Err(EtcdError::Corrupt));
        refused(&mut s, InternalRaftRequest { put: Some(put("b")), ..Default::default() });
        let del = DeleteRangeRequest { key: b"b".to_vec(), ..Default::default() };
        refused(&mut s, InternalRaftRequest { delete_range: Some(del), ..Default::default() });
        let range = RangeRequest { key: b"b".to_vec(), ..Default::default() };
        refused(&mut s, InternalRaftRequest { range: Some(range), ..Default::default() });
        // Reads outside raft still work.
        s.sm.range(&RangeRequest { key: b"b".to_vec(), ..Default::default() }).unwrap();
    }

    #[test]
    fn alarms_survive_a_restart_and_a_snapshot() {
        let mut s = sm();
        s.apply(alarm(AlarmAction::Activate, 7, AlarmType::Nospace)).unwrap();
        s.apply(alarm(AlarmAction::Activate, 9, AlarmType::Corrupt)).unwrap();
        let raised = s.sm.alarms();
        assert_eq!(raised.len(), 2);

        let mut bytes = Vec::new();
        crate::snapshot::write_snapshot(&s.sm, &mut bytes).unwrap();
        let dir = s._dir.path().to_path_buf();
        drop(s.sm);
        assert_eq!(StateMachine::open(&dir, 2).unwrap().alarms(), raised);

        let other = tempfile::tempdir().unwrap();
        let mut restored = StateMachine::open(other.path(), 2).unwrap();
        restored.replace_from_snapshot(&bytes).unwrap();
        assert_eq!(restored.alarms(), raised);
    }
}
