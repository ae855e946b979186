//! Raised alarms (etcd's `v3alarm.AlarmStore`): which member raised which
//! alarm, kept in the `alarm` table as etcd keeps its bucket (the encoded
//! `AlarmMember` as the key, no value), so snapshots carry them both ways.
//!
//! While NOSPACE is raised the state machine refuses what grows the store
//! (etcd's `applierV3Capped`); while CORRUPT is raised it refuses every write
//! (`applierV3Corrupt`). See `apply.rs`.

use std::collections::BTreeSet;

use hub_proto::etcdserverpb::{AlarmMember, AlarmType};
use prost::Message;

use crate::backend::{Backend, Table, WriteBatch};
use crate::error::StoreError;

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

    pub fn is_empty(&self) -> bool {
        self.raised.is_empty()
    }

    /// Raises `alarm` for `member_id` (once: raising it again changes nothing).
    /// Returns the alarm, and whether it is the first of its type.
    pub fn activate(&mut self, member_id: u64, alarm: i32, batch: &mut WriteBatch) -> (AlarmMember, bool) {
        let first = !self.raised.iter().any(|(t, _)| *t == alarm);
        let m = member(alarm, member_id);
        if self.raised.insert((alarm, member_id)) {
            batch.put(Table::Alarm, m.encode_to_vec(), Vec::new());
        }
        (m, first)
    }

    /// Clears `alarm` of `member_id`, if raised; returns it, and whether no
    /// alarm of its type is left.
    pub fn deactivate(&mut self, member_id: u64, alarm: i32, batch: &mut WriteBatch) -> Option<(AlarmMember, bool)> {
        if !self.raised.remove(&(alarm, member_id)) {
            return None;
        }
        let m = member(alarm, member_id);
        batch.delete(Table::Alarm, m.encode_to_vec());
        Some((m, !self.raised.iter().any(|(t, _)| *t == alarm)))
    }
}
