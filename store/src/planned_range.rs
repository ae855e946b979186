//! A Range in two steps, so that a large one never holds up the writes: under
//! the state machine's lock the key index names the revisions it reads
//! ([`StateMachine::plan_range`]); their values are read and the answer built
//! after the lock is released ([`PlannedRange::run`]), as etcd ranges over a
//! concurrent read transaction while its applies go on. A 5 MB range held
//! the lock for as long as it took to read and decode every value, and every
//! apply (and the watch events it sends) waited behind it.
//!
//! [`StateMachine::plan_range`]: crate::StateMachine::plan_range

use std::time::Instant;

use hub_proto::etcdserverpb::{RangeRequest, RangeResponse};

use crate::error::StoreError;
use crate::metrics::{OpTally, StoreMetrics};
use crate::mvcc::Unloaded;
use crate::txn::range_response;

/// A Range whose revisions are known: see the module's doc.
pub struct PlannedRange {
    request: RangeRequest,
    /// The store's revision when it was planned: the answer's header.
    revision: i64,
    unloaded: Unloaded,
    metrics: StoreMetrics,
    started: Instant,
}

impl PlannedRange {
    pub(crate) fn new(request: RangeRequest, revision: i64, unloaded: Unloaded, metrics: StoreMetrics, started: Instant) -> Self {
        PlannedRange { request, revision, unloaded, metrics, started }
    }

    /// Reads the values and answers. None: a compaction applied since the
    /// range was planned removed some of them; run it again under the lock
    /// (`StateMachine::range`), which answers at the store as it is now.
    pub fn run(self) -> Result<Option<RangeResponse>, StoreError> {
        let PlannedRange { request, revision, unloaded, metrics, started } = self;
        let loaded = unloaded.load();
        if let Ok(None) = loaded {
            return Ok(None);
        }
        metrics.ranged(loaded.is_ok(), started);
        metrics.count(OpTally::range());
        Ok(loaded?.map(|rr| range_response(&request, rr, revision)))
    }
}
