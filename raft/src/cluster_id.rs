//! etcd's `X-Etcd-Cluster-ID` on the peer wire: every peer request names the
//! sender's cluster, and a member of another cluster refuses it with etcd's
//! "cluster ID mismatch", as etcd's rafthttp does. Members of two clusters on
//! the same peer URLs (a cluster recreated in place) never take each other's
//! messages: neither tells the other it was removed, nor counts its votes.
//!
//! A request without the header (a member joining, which does not know the
//! cluster's ID yet) is taken, as etcd takes one.

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The header, as etcd names it (HTTP/2 lowercases it).
const HEADER: &str = "x-etcd-cluster-id";

/// etcd's error text for a request from another cluster.
pub const MISMATCH: &str = "cluster ID mismatch";

fn value(cluster_id: u64) -> AsciiMetadataValue {
    // Hex digits are always valid ASCII metadata.
    AsciiMetadataValue::try_from(format!("{cluster_id:x}")).unwrap_or_else(|_| AsciiMetadataValue::from_static("0"))
}

/// Names this member's cluster on its outgoing peer requests.
#[derive(Clone)]
pub struct NameCluster(AsciiMetadataValue);

impl NameCluster {
    pub fn new(cluster_id: u64) -> Self {
        NameCluster(value(cluster_id))
    }
}

impl Interceptor for NameCluster {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(HEADER, self.0.clone());
        Ok(req)
    }
}

/// Refuses the peer requests of another cluster.
#[derive(Clone)]
pub struct CheckCluster(AsciiMetadataValue);

impl CheckCluster {
    pub fn new(cluster_id: u64) -> Self {
        CheckCluster(value(cluster_id))
    }
}

impl Interceptor for CheckCluster {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get(HEADER) {
            Some(theirs) if *theirs != self.0 => {
                tracing::warn!(local_member_cluster_id = ?self.0, remote_peer_cluster_id = ?theirs, "request cluster ID mismatch");
                Err(Status::failed_precondition(MISMATCH))
            }
            _ => Ok(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_clusters_request_is_refused_and_one_without_a_cluster_taken() {
        let mut named = NameCluster::new(0xabc).call(Request::new(())).unwrap();
        assert!(CheckCluster::new(0xabc).call(named).is_ok());
        named = NameCluster::new(0xdef).call(Request::new(())).unwrap();
        let refused = CheckCluster::new(0xabc).call(named).unwrap_err();
        assert_eq!((refused.code(), refused.message()), (tonic::Code::FailedPrecondition, MISMATCH));
        assert!(CheckCluster::new(0xabc).call(Request::new(())).is_ok());
    }
}
