//! [`PersistQueue`]: the order in which a driver performs one group's [`Persist`] work. Shared
//! by the shard driver and the simulator so both do the same thing with the actions.

use std::collections::VecDeque;

use super::types::Persist;

/// One group's persistence work, performed one at a time in the order the replica handed it
/// out. Lives beside the group's [`Replica`](super::Replica), on its shard.
#[derive(Debug, Default)]
pub struct PersistQueue {
    queue: VecDeque<Persist>,
    in_flight: bool,
}

impl PersistQueue {
    pub fn new() -> PersistQueue {
        PersistQueue::default()
    }

    /// Queues work from `Action::Persist`.
    pub fn push(&mut self, p: Persist) {
        self.queue.push_back(p);
    }

    /// The work to start now, if nothing of the group is in flight: perform it, then call
    /// [`PersistQueue::finish`].
    pub fn start(&mut self) -> Option<&Persist> {
        if self.in_flight {
            return None;
        }
        let p = self.queue.front()?;
        self.in_flight = true;
        Some(p)
    }

    /// The work started last is done: returns its id for `Replica::persisted`.
    ///
    /// # Panics
    /// If nothing was started (a driver bug).
    pub fn finish(&mut self) -> u64 {
        assert!(self.in_flight, "PersistQueue::finish with nothing started");
        self.in_flight = false;
        self.queue
            .pop_front()
            .expect("started work is at the front")
            .id
    }

    /// The work started and not finished yet.
    pub fn current(&self) -> Option<&Persist> {
        self.queue.front().filter(|_| self.in_flight)
    }

    /// Whether work is running.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Forgets everything (the group restarts from disk).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.in_flight = false;
    }
}
