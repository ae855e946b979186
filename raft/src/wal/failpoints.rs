//! Failures on demand, for the chaos suite and this module's tests: compiled only
//! with the `failpoints` feature (and in unit tests). Each hook arms a one-shot
//! failure in the writer thread; after it fires the writer stops, as after any real
//! I/O error.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Failpoints {
    fail_next_sync: AtomicBool,
    tear_next_record: AtomicBool,
}

impl Failpoints {
    /// The next segment fsync returns an I/O error (the data stays written).
    pub fn fail_next_sync(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// The next record is written only halfway (with the records queued before it),
    /// then the write fails: the file ends the way a crash mid-write leaves it.
    pub fn tear_next_record(&self) {
        self.tear_next_record.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_sync_failure(&self) -> bool {
        self.fail_next_sync.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn take_tear(&self) -> bool {
        self.tear_next_record.swap(false, Ordering::SeqCst)
    }
}
