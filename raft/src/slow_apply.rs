//! etcd's warning for a request slow to apply, "apply request took too long"
//! (`etcdserver/txn/util.go`), and its count, `etcd_server_slow_apply_total`:
//! for every entry the state machine applies, and for the reads the server
//! layer answers without the log (a range, a read-only txn), which etcd
//! reports the same way with a prefix (`read-only range `, `read-only txn `).
//! The threshold is `--warning-apply-duration`.
//!
//! Nothing is formatted unless the request was slow.

use std::fmt::Display;
use std::time::{Duration, Instant};

use hub_proto::etcdserverpb::InternalRaftRequest;
use hub_store::{Applied, Response, StoreError};
use prometheus::IntCounter;
use prost::Message;

/// The threshold and the counter; clones count into the same series.
#[derive(Clone, Debug)]
pub struct SlowApply {
    threshold: Duration,
    count: IntCounter,
}

impl SlowApply {
    pub(crate) fn new(threshold: Duration, count: IntCounter) -> Self {
        SlowApply { threshold, count }
    }

    /// Warns and counts if what started at `started` took longer than the
    /// threshold: `request` and `response` are etcd's texts of them (called
    /// only then), `error` what refused the request.
    pub fn check(
        &self,
        started: Instant,
        prefix: &str,
        request: impl FnOnce() -> String,
        response: impl FnOnce() -> String,
        error: Option<&dyn Display>,
    ) {
        let took = started.elapsed();
        if took <= self.threshold {
            return;
        }
        tracing::warn!(
            took = %hub_go::duration::format(took),
            expected_duration = %hub_go::duration::format(self.threshold),
            prefix,
            request = %request(),
            response = %response(),
            error = error.map(tracing::field::display),
            "apply request took too long"
        );
        self.count.inc();
    }

    /// An entry's apply: the request as etcd's `InternalRaftStringer`
    /// writes it, the response by its size.
    pub(crate) fn applied(&self, started: Instant, req: &InternalRaftRequest, result: &Result<Applied, StoreError>) {
        self.check(
            started,
            "",
            || hub_proto::loggable::internal_raft_request(req),
            || {
                let size = result.as_ref().ok().and_then(|applied| encoded_len(&applied.response));
                size.map(|n| format!("size:{n}")).unwrap_or_default()
            },
            result.as_ref().err().map(|e| e as &dyn Display),
        );
    }
}

/// The size of `response` on the wire (none for an entry applied before).
fn encoded_len(response: &Response) -> Option<usize> {
    Some(match response {
        Response::Put(r) => r.encoded_len(),
        Response::DeleteRange(r) => r.encoded_len(),
        Response::Txn(r) => r.encoded_len(),
        Response::Compaction(r) => r.encoded_len(),
        Response::LeaseGrant(r) => r.encoded_len(),
        Response::LeaseRevoke(r) => r.encoded_len(),
        Response::Range(r) => r.encoded_len(),
        Response::Auth(r) => r.encoded_len(),
        Response::Alarm(r) => r.encoded_len(),
        Response::AlreadyApplied => return None,
    })
}
