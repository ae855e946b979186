//! etcd's v3 API wire types, generated from the `.proto` files in `proto/`.
//!
//! Bottom of the request path: every other crate speaks these messages. The files
//! keep etcd 3.4's packages, message names and field numbers (gogoproto and
//! grpc-gateway annotations removed), so any etcd client talks to hub unchanged.
//! This crate only defines types and the conventions on them every side
//! computes (a prefix's range end, `range`; the text form etcd logs requests
//! in, `text` and `loggable`); it owns no behaviour.

#![allow(clippy::all)]

pub mod loggable;
pub mod range;
pub mod text;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod leasepb {
    tonic::include_proto!("leasepb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
/// The encoded `FileDescriptorSet` of every file above, for reflection (the
/// JSON gateway transcodes with it).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// hub's member-to-member protocol (not part of etcd's API).
pub mod hubpeer {
    tonic::include_proto!("hubpeer");
}
