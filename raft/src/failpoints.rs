//! Crash points and faults at named places, for the tests that kill a member
//! there: compiled only with the `failpoints` feature, and active only when hubd
//! runs with `HUB_FAILPOINTS` set (comma-separated `name` or `name=value`). Each
//! logs a `failpoint` line when it acts, which the tests wait for.
//!
//! - `snapshot-install-pause=MS`: installing a snapshot from the leader waits MS
//!   before the received snapshot replaces the backend (openraft has queued
//!   the purge of the log it covers by then).
//! - `backend-sync-skip`: the background backend syncs do nothing, so a kill
//!   leaves the backend as it was at start (a snapshot still syncs it).
//! - `backend-sync-error=N`: the N-th background backend sync, and every later
//!   one, fails as a failed fsync would.
//! - `apply-pause=MS`: once raft runs, each batch of committed entries waits MS
//!   before it is applied (a member the leader's commits reach late); the
//!   entries a member re-applies while it starts do not.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

fn all() -> &'static HashMap<String, String> {
    static POINTS: OnceLock<HashMap<String, String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let points: HashMap<String, String> = std::env::var("HUB_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.split_once('=') {
                Some((name, value)) => (name.trim().to_string(), value.trim().to_string()),
                None => (s.to_string(), String::new()),
            })
            .collect();
        if !points.is_empty() {
            tracing::warn!(?points, "failpoints are ON");
        }
        points
    })
}

/// Whether failpoint `name` is set.
pub fn enabled(name: &str) -> bool {
    all().contains_key(name)
}

/// The number failpoint `name` is set to, if it is set to one.
pub fn number(name: &str) -> Option<u64> {
    all().get(name).and_then(|v| v.parse().ok())
}

/// Sleeps as long as failpoint `name` says (in milliseconds), if it is set.
pub fn pause(name: &str) {
    if let Some(ms) = number(name) {
        tracing::warn!(failpoint = name, ms, "failpoint: pausing");
        std::thread::sleep(Duration::from_millis(ms));
    }
}
