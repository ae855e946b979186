//! Bugs injected on purpose, for the chaos suite to prove it can catch them:
//! compiled only with the `failpoints` feature, and active only when hubd runs
//! with `HUB_CHAOS_BUG` set (a comma-separated list).
//!
//! - `stale-read`: linearizable reads skip ReadIndex and answer from whatever
//!   this member has applied.
//! - `ack-before-fsync`: the WAL acknowledges appends at once and writes them
//!   only about half a second later, as a disk that acknowledges from a volatile
//!   cache; a `kill -9` then loses acknowledged entries as a power cut would.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    StaleRead,
    AckBeforeFsync,
}

impl Bug {
    fn name(self) -> &'static str {
        match self {
            Bug::StaleRead => "stale-read",
            Bug::AckBeforeFsync => "ack-before-fsync",
        }
    }
}

/// Whether `bug` is switched on for this process.
pub fn enabled(bug: Bug) -> bool {
    static BUGS: OnceLock<Vec<String>> = OnceLock::new();
    let bugs = BUGS.get_or_init(|| {
        let bugs: Vec<String> = std::env::var("HUB_CHAOS_BUG")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if !bugs.is_empty() {
            tracing::warn!(?bugs, "chaos: injected bugs are ON; this member is deliberately unsafe");
        }
        bugs
    });
    bugs.iter().any(|b| b == bug.name())
}
