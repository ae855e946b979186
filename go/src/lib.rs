//! Go's text formats, where etcd's interfaces are written in them: flag values
//! (`time.ParseDuration`), error texts and etcdctl's output (`strconv.Quote`,
//! `time.Duration.String`, go-humanize's byte sizes), log lines (`time.Time.Format`
//! in etcd's layout). Beside every layer rather than in the request path: hubd's
//! flags and log (`server`), the auth token options and log fields (`grpc-api`,
//! `raft`), the store's logs and hubctl (`cli`) parse and print with these, so
//! each format has one implementation.

pub mod duration;
pub mod humanize;
pub mod quote;
pub mod time;

pub use quote::quote;
