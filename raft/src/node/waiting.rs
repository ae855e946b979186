//! Requests that wait to be served together: a follower's forwarded writes
//! (`propose.rs`) and linearizable reads waiting for a read-index round
//! (`read_index.rs`). Callers [`push`](Waiting::push); one loop per queue takes
//! everything that arrived since it last looked ([`Waiting::next`]).

use std::sync::Weak;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Node;

pub(crate) struct Waiting<T> {
    items: Mutex<Vec<T>>,
    wake: Notify,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting { items: Mutex::new(Vec::new()), wake: Notify::new() }
    }
}

impl<T> Waiting<T> {
    pub(crate) fn push(&self, item: T) {
        self.items.lock().push(item);
        self.wake.notify_one();
    }

    /// Everything pushed since the last call, once there is something;
    /// `None` once `node` is gone.
    pub(crate) async fn next(&self, node: &Weak<Node>) -> Option<Vec<T>> {
        loop {
            // Registered before the look: an item pushed after it wakes this.
            let woken = self.wake.notified();
            let items = std::mem::take(&mut *self.items.lock());
            if !items.is_empty() {
                return Some(items);
            }
            // The timeout only lets the loop notice a node that is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
            if node.strong_count() == 0 {
                return None;
            }
        }
    }
}
