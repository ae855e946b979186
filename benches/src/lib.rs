//! hub's benchmarks. Speed and memory targets live here, never in timed tests.
//!
//! - `benches/store.rs`: the state machine's apply and range paths (criterion),
//!   run with `cargo bench -p hub-benches`.
//! - `src/bin/hub-load.rs`: `hub-load`, a load generator that speaks the etcd v3 API
//!   (through `etcd-client`), so one run shape measures etcd and hubd alike.
//!   `compare.sh` runs it against 3-member etcd 3.4, etcd 3.6 and hubd clusters and prints
//!   the side-by-side table kept in `README.md`.
//!
//! The library holds what `hub-load` is made of, one concept a module:
//! - [`workload`]: the closed-loop workloads (put, ranges, txn CAS, lease + put) and run bounds;
//! - [`kube`]: the Kubernetes-shaped mix (Pods and node Leases, with the watch cache's watches);
//! - [`watch`]: the watch fan-out workload;
//! - [`keyspace`]: the keys and values written, and the watch send-time stamp;
//! - [`report`]: the latency histogram and the result line.
//!
//! This crate is a tool, not a layer of the server: like a binary, it reports
//! errors with `anyhow` and never talks to anything but loopback endpoints.

pub mod keyspace;
pub mod kube;
pub mod report;
pub mod watch;
pub mod workload;
