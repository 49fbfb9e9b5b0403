//! Faults a test can inject into one open log (`PartitionLog::fail_next_syncs`,
//! `PartitionLog::hold_acks`), to reach states a healthy disk reaches only by chance: a failed
//! `fdatasync`, appends written and synced but not yet acknowledged.
//!
//! Always compiled (integration tests use them), and costs a flag read where it applies: one per
//! `fdatasync` and one per pass of acknowledgements. Lives in the log's `Inner`, on its shard.

use std::cell::Cell;

#[derive(Default)]
pub(crate) struct Faults {
    /// The next this many group-commit `fdatasync`s report failure (EIO) after running.
    fail_syncs: Cell<u32>,
    /// Appends covered by the written or durable offset are not acknowledged while set.
    hold_acks: Cell<bool>,
}

impl Faults {
    pub(crate) fn fail_next_syncs(&self, n: u32) {
        self.fail_syncs.set(n);
    }

    /// Whether this `fdatasync` is to fail, counting it.
    pub(crate) fn take_sync_failure(&self) -> bool {
        let n = self.fail_syncs.get();
        if n == 0 {
            return false;
        }
        self.fail_syncs.set(n - 1);
        true
    }

    pub(crate) fn set_hold_acks(&self, hold: bool) {
        self.hold_acks.set(hold);
    }

    pub(crate) fn acks_held(&self) -> bool {
        self.hold_acks.get()
    }
}
