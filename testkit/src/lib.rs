//! What hub's test harnesses share (the integration tests of server, cli and
//! store, and the chaos suite). Not in any request path: only tests and test
//! tools depend on it.

mod ports;

pub use ports::free_port;
