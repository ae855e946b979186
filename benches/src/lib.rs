//! hub's benchmarks. Speed and memory targets live here, never in timed tests.
//!
//! - `benches/store.rs`: the state machine's apply and range paths (criterion),
//!   run with `cargo bench -p hub-benches`.
