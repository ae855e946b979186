//! The store's side of a watch (etcd's watchable store): which events a
//! watcher selects ([`WatchFilter`]), how a watcher behind the current
//! revision catches up from the backend ([`StateMachine::catch_up`]), and the
//! `prev_kv` each event carries. The stream protocol around it (created and
//! canceled responses, progress, fragments) is the wire's (`hub-grpc-api`).

use hub_proto::mvccpb::{event::EventType, Event};

use crate::apply::StateMachine;
use crate::error::StoreError;
use crate::key_range::KeyRange;

/// What one watcher selects: a key range and etcd's NOPUT/NODELETE filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFilter {
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
    /// Whether its events carry the previous value.
    pub prev_kv: bool,
}

/// Where a watcher stands after [`StateMachine::catch_up`].
#[derive(Debug, PartialEq)]
pub enum CatchUp {
    /// Nothing to catch up: it starts after the current revision.
    Synced,
    /// Its start revision was compacted away (etcd cancels it).
    Compacted { current: i64, compact_revision: i64 },
    /// The events it wants from its start to `current`, in revision order.
    Events { current: i64, events: Vec<Event> },
}

impl WatchFilter {
    /// A watch of `key` to `range_end` as a create request gives them: an
    /// empty key is the smallest key, `range_end` `"\0"` every key from `key` on.
    pub fn new(key: &[u8], range_end: &[u8], no_put: bool, no_delete: bool, prev_kv: bool) -> Self {
        let key = if key.is_empty() { &[0][..] } else { key };
        WatchFilter { range: KeyRange::new(key, range_end), no_put, no_delete, prev_kv }
    }

    /// The first key watched.
    pub fn key(&self) -> &[u8] {
        &self.range.start
    }

    /// A range that holds no key (`range_end` at or before the key), which
    /// etcd refuses.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    pub fn wants(&self, e: &Event) -> bool {
        let Some(kv) = &e.kv else { return false };
        let filtered = if e.r#type == EventType::Delete as i32 { self.no_delete } else { self.no_put };
        self.range.contains(&kv.key) && !filtered
    }
}

impl StateMachine {
    /// What a watcher of `filter` that has seen everything before `from` gets
    /// to reach the current revision, read under one lock with it.
    pub fn catch_up(&self, filter: &WatchFilter, from: i64) -> Result<CatchUp, StoreError> {
        let current = self.current_revision();
        let compact_revision = self.compact_revision();
        if from > current {
            return Ok(CatchUp::Synced);
        }
        if from < compact_revision {
            return Ok(CatchUp::Compacted { current, compact_revision });
        }
        let mut events: Vec<Event> = self.events(from, current)?.into_iter().filter(|e| filter.wants(e)).collect();
        if filter.prev_kv {
            self.attach_prev_kvs(&mut events)?;
        }
        Ok(CatchUp::Events { current, events })
    }

    /// Sets each event's `prev_kv` as etcd does ([`StateMachine::watch_prev_kv`]).
    pub fn attach_prev_kvs(&self, events: &mut [Event]) -> Result<(), StoreError> {
        for e in events {
            e.prev_kv = self.watch_prev_kv(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_proto::mvccpb::KeyValue;

    fn event(key: &[u8], delete: bool) -> Event {
        Event {
            r#type: if delete { EventType::Delete as i32 } else { EventType::Put as i32 },
            kv: Some(KeyValue { key: key.to_vec(), ..Default::default() }),
            prev_kv: None,
        }
    }

    #[test]
    fn selects_by_range_and_filter_as_etcd() {
        let single = WatchFilter::new(b"a", b"", false, false, false);
        assert!(single.wants(&event(b"a", false)) && !single.wants(&event(b"ab", false)));
        let from = WatchFilter::new(b"b", b"\0", false, false, false);
        assert!(from.wants(&event(b"zz", true)) && !from.wants(&event(b"a", false)));
        let range = WatchFilter::new(b"b", b"d", true, false, false);
        assert!(!range.wants(&event(b"c", false)), "NOPUT");
        assert!(range.wants(&event(b"c", true)) && !range.wants(&event(b"d", true)));
        let all = WatchFilter::new(b"", b"\0", false, true, false);
        assert!(all.wants(&event(b"\0", false)) && !all.wants(&event(b"x", true)), "NODELETE");
        assert!(WatchFilter::new(b"b", b"a", false, false, false).is_empty());
        assert!(!WatchFilter::new(b"b", b"\0", false, false, false).is_empty());
    }
}
