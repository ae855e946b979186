//! etcd's KV operations: Range, Put, DeleteRange, Txn and Compact.
//!
//! A range or a read-only txn slower than `--warning-apply-duration` is
//! reported as etcd reports it, "apply request took too long" with the prefix
//! `read-only range ` or `read-only txn ` (`hub_raft::SlowApply`); writes are
//! reported where they are applied.

use std::fmt::Display;
use std::time::Instant;

use hub_proto::etcdserverpb::{
    request_op::Request, response_op, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use hub_proto::{loggable, text::compact_text};
use hub_store::{validate, AuthInfo, Command, Response};
use prost::Message;

use crate::{quota, unexpected, EtcdServer, Result};

/// etcd answers a txn whose ops are all ranges without the log.
fn is_read_only(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

fn is_serializable(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| matches!(&op.request, Some(Request::RequestRange(q)) if q.serializable))
}

/// A read-only txn's answer as etcd's slow-apply warning gives it: each
/// range's count of keys, and the size.
fn read_only_txn_response(resp: &TxnResponse) -> String {
    let counts: Vec<String> = resp
        .responses
        .iter()
        .filter_map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(r)) => Some(format!("range_response_count:{}", r.kvs.len())),
            _ => None,
        })
        .collect();
    format!("responses:<{}> size:{}", counts.join(" "), resp.encoded_len())
}

impl EtcdServer {
    pub async fn range(&self, who: &AuthInfo, r: RangeRequest) -> Result<RangeResponse> {
        validate::check_range(&r)?;
        // etcd times a range from its ReadIndex on.
        let started = Instant::now();
        let result = self.read_range(who, &r).await;
        self.node.slow_apply().check(
            started,
            "read-only range ",
            || compact_text(&r),
            || match &result {
                Ok(resp) => format!("range_response_count:{} size:{}", resp.kvs.len(), resp.encoded_len()),
                Err(_) => String::new(),
            },
            result.as_ref().err().map(|e| e as &dyn Display),
        );
        let mut resp = result?;
        resp.header = self.fill(resp.header);
        Ok(resp)
    }

    async fn read_range(&self, who: &AuthInfo, r: &RangeRequest) -> Result<RangeResponse> {
        if !r.serializable {
            self.read_index().await?;
        }
        // The values are read after the state machine's lock is released
        // (`PlannedRange`): a large range does not hold up the applies.
        let planned = {
            let sm = self.node.state().lock();
            sm.authorize(who, Command::Range(r))?;
            sm.plan_range(r.clone())?
        };
        match planned.run()? {
            Some(resp) => Ok(resp),
            None => Ok(self.node.state().lock().range(r)?),
        }
    }

    pub async fn put(&self, who: &AuthInfo, r: PutRequest) -> Result<PutResponse> {
        self.check_quota(quota::put_cost(&r)).await?;
        validate::check_put(&r)?;
        match self.propose(who, InternalRaftRequest { put: Some(r), ..Default::default() }).await? {
            Response::Put(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, who: &AuthInfo, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        validate::check_delete(&r)?;
        match self.propose(who, InternalRaftRequest { delete_range: Some(r), ..Default::default() }).await? {
            Response::DeleteRange(mut resp) => {
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, who: &AuthInfo, r: TxnRequest) -> Result<TxnResponse> {
        self.check_quota(quota::txn_cost(&r)).await?;
        validate::check_txn(&r, self.config.max_txn_ops)?;
        let mut resp = if is_read_only(&r) {
            if !is_serializable(&r) {
                self.read_index().await?;
            }
            // etcd times a read-only txn from after its ReadIndex.
            let started = Instant::now();
            let result = self.read_txn(who, &r);
            self.node.slow_apply().check(
                started,
                "read-only txn ",
                || loggable::txn_request(&r),
                || result.as_ref().map(read_only_txn_response).unwrap_or_default(),
                result.as_ref().err().map(|e| e as &dyn Display),
            );
            result?
        } else {
            match self.propose(who, InternalRaftRequest { txn: Some(r), ..Default::default() }).await? {
                Response::Txn(resp) => resp,
                other => return Err(unexpected(other)),
            }
        };
        // etcd fills only the outer header: a nested txn has an empty one, its
        // ops just a revision.
        resp.header = self.fill(resp.header);
        Ok(resp)
    }

    fn read_txn(&self, who: &AuthInfo, r: &TxnRequest) -> Result<TxnResponse> {
        let sm = self.node.state().lock();
        sm.authorize(who, Command::Txn(r))?;
        Ok(sm.read_only_txn(r)?)
    }

    /// A physical compaction is answered once this member's backend no
    /// longer holds what it dropped (the deletions go on in the background).
    pub async fn compact(&self, who: &AuthInfo, r: CompactionRequest) -> Result<CompactionResponse> {
        let (revision, physical) = (r.revision, r.physical);
        match self.propose(who, InternalRaftRequest { compaction: Some(r), ..Default::default() }).await? {
            Response::Compaction(mut resp) => {
                if physical {
                    let progress = self.node.state().lock().compaction_progress();
                    if !progress.done(revision) {
                        // Ends with the compaction, or when the backend stops.
                        let _ = tokio::task::spawn_blocking(move || progress.wait(revision)).await;
                    }
                }
                resp.header = self.fill(resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }
}
