//! Go's text formats, where etcd's interfaces are written in them: flag values
//! (`time.ParseDuration`), error texts and etcdctl's output (`strconv.Quote`,
//! `time.Duration.String`, go-humanize's byte sizes). Beside every layer rather
//! than in the request path: hubd's flags (`server`), the auth token options
//! (`grpc-api`), the store's logs and hubctl (`cli`) parse and print with
//! these, so each format has one implementation.

pub mod duration;
pub mod humanize;
pub mod quote;

pub use quote::quote;
