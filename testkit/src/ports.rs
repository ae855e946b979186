//! Loopback ports for the members a test starts.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// A free loopback port for a member to take: one this process has not handed
/// out, bindable now, and below the kernel's ephemeral range (32768 and up).
/// A port from `bind(0)` comes from that range, where any outgoing connection
/// (a client's, a peer's) may take it as its local end before the member
/// binds it: the member then fails to start.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = rand::random_range(10_000..30_000);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: BTreeSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports.iter().all(|p| (10_000..30_000).contains(p)));
    }
}
