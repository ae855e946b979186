//! hub's Jepsen-style chaos suite: real hubd processes behind fault-injecting
//! proxies, recorded histories, and linearizability and watch checkers.
//!
//! Place: outside the request path, driving whole clusters as clients do. The
//! suite needs replication (several members) and is built in its own issue;
//! until then this crate only reserves its place in the workspace.
