//! Proposers waiting for their own entry's apply, keyed by request ID, as
//! etcd's `pkg/wait`: the state machine answers a proposer the moment it
//! applied its entry on this member ([`Wait::trigger`], before the entry's
//! watch events go out), rather than through openraft's core, which answers
//! only after the whole batch's results reached its loop.
//!
//! A request ID is etcd's: the member's ID in the top 16 bits, then the
//! start time in milliseconds and a counter ([`RequestIds`]), carried in the
//! request's header, so every member applying the entry sees it and only the
//! member that proposed it has a waiter for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hub_store::{EtcdError, Response};
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// An applied entry's answer.
pub type Applied = Result<Response, EtcdError>;

#[derive(Default)]
pub struct Wait {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Applied>>>,
}

impl Wait {
    /// Waits for the entry with request ID `id`; the registration ends when
    /// the returned [`Waiter`] is dropped.
    pub fn register(&self, id: u64) -> Waiter<'_> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        Waiter { wait: self, id, rx }
    }

    /// Whether the proposer of request `id` waits on this member.
    pub fn waits_for(&self, id: u64) -> bool {
        self.waiting.lock().contains_key(&id)
    }

    /// Hands `applied` to the proposer of request `id` if it waits on this
    /// member; else gives it back (for openraft's answer).
    pub fn trigger(&self, id: u64, applied: Applied) -> Option<Applied> {
        let Some(tx) = self.waiting.lock().remove(&id) else { return Some(applied) };
        // A proposer that gave up takes nothing.
        let _ = tx.send(applied);
        None
    }
}

/// One proposer's registration.
pub struct Waiter<'a> {
    wait: &'a Wait,
    id: u64,
    pub rx: oneshot::Receiver<Applied>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.wait.waiting.lock().remove(&self.id);
    }
}

/// etcd's request ID generator (`pkg/idutil`): 16 bits of the member's ID,
/// then 40 bits of the time it started (ms) and 8 bits of count, the lower
/// 48 bits counting up from there.
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

impl RequestIds {
    pub fn new(member: u64) -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        RequestIds { prefix: (member & 0xffff) << SUFFIX_BITS, next: AtomicU64::new((ms << 8) & SUFFIX_MASK) }
    }

    /// A new ID, never 0.
    pub fn next(&self) -> u64 {
        loop {
            let id = self.prefix | (self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & SUFFIX_MASK);
            if id != 0 {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_answers_only_its_waiter_and_a_dropped_waiter_is_gone() {
        let wait = Wait::default();
        let mut a = wait.register(1);
        let b = wait.register(2);
        assert!(wait.trigger(1, Err(EtcdError::Timeout)).is_none());
        assert!(matches!(a.rx.try_recv(), Ok(Err(EtcdError::Timeout))));
        drop(b);
        assert!(wait.waiting.lock().is_empty());
        assert!(wait.trigger(2, Err(EtcdError::Timeout)).is_some());
    }

    #[test]
    fn ids_carry_the_member_and_never_repeat() {
        let ids = RequestIds::new(0x1234_abcd);
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a >> SUFFIX_BITS, 0xabcd);
    }
}
