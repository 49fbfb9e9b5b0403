//! Bounded quotas of one shard: the memory its connections may hold for requests and responses
//! (per shard and per connection), and the requests in flight on one connection.
//!
//! A [`Quota`] hands out [`Grant`]s of units (bytes or requests) and takes them back when a grant
//! is dropped. A waiter takes its units as soon as they fit, whoever waited longer: under memory
//! pressure a small request of one client is not held behind a large one of another. A large one
//! may therefore wait longer, with no bound of its own: the shard sheds stalled connections to
//! make room (`connections::Connections::shed`). Everything lives on one shard: `Rc` and `Cell`, no
//! atomics.

use std::cell::Cell;
use std::rc::Rc;

use crate::local::Event;

/// A bounded count of units on one shard. It lives on the shard that made it, in an `Rc` shared
/// by the grants it handed out.
pub struct Quota {
    max: usize,
    used: Cell<usize>,
    freed: Event,
}

impl Quota {
    pub fn new(max: usize) -> Rc<Quota> {
        Rc::new(Quota {
            max,
            used: Cell::new(0),
            freed: Event::new(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Units held by grants now (may exceed `max` after [`Quota::charge`]).
    pub fn used(&self) -> usize {
        self.used.get()
    }

    fn fits(&self, units: usize) -> bool {
        self.used.get() + units <= self.max
    }

    /// Takes `units` (at most `max`) if they are free now.
    pub fn try_take(self: &Rc<Self>, units: usize) -> Option<Grant> {
        let units = units.min(self.max);
        self.fits(units).then(|| self.grant(units))
    }

    /// Takes `units` (at most `max`, so a request larger than the whole quota still runs, alone),
    /// waiting until they are free.
    pub async fn take(self: &Rc<Self>, units: usize) -> Grant {
        loop {
            let freed = self.freed.listen();
            if let Some(g) = self.try_take(units) {
                return g;
            }
            freed.await;
        }
    }

    /// Whether less than `max` is held: room for at least one more unit.
    pub fn has_room(&self) -> bool {
        self.used.get() < self.max
    }

    /// Waits until [`Quota::has_room`].
    pub async fn until_room(&self) {
        loop {
            let freed = self.freed.listen();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    /// Takes `units` at once even past `max`: for memory already in hand whose size was known only
    /// afterwards (a response larger than its reservation by at most one batch).
    pub fn charge(self: &Rc<Self>, units: usize) -> Grant {
        self.grant(units)
    }

    /// An empty grant, to grow later.
    pub fn nothing(self: &Rc<Self>) -> Grant {
        self.grant(0)
    }

    fn grant(self: &Rc<Self>, units: usize) -> Grant {
        self.used.set(self.used.get() + units);
        Grant {
            quota: self.clone(),
            units,
        }
    }

    fn release(&self, units: usize) {
        if units == 0 {
            return;
        }
        self.used.set(self.used.get() - units);
        self.freed.notify();
    }
}

/// Units taken from a [`Quota`], given back when dropped.
pub struct Grant {
    quota: Rc<Quota>,
    units: usize,
}

impl Grant {
    pub fn units(&self) -> usize {
        self.units
    }

    /// Moves `units` (at most all) of this grant into a new one.
    pub fn split(&mut self, units: usize) -> Grant {
        let units = units.min(self.units);
        self.units -= units;
        Grant {
            quota: self.quota.clone(),
            units,
        }
    }

    /// Adds another grant of the same quota to this one.
    pub fn merge(&mut self, mut other: Grant) {
        assert!(
            Rc::ptr_eq(&self.quota, &other.quota),
            "grants of different quotas merged"
        );
        self.units += other.units;
        other.units = 0;
    }

    /// Makes the grant exactly `units`: gives back the excess, or charges the rest without
    /// waiting (see [`Quota::charge`]).
    pub fn resize(&mut self, units: usize) {
        if units < self.units {
            self.quota.release(self.units - units);
        } else {
            self.quota
                .used
                .set(self.quota.used.get() + (units - self.units));
        }
        self.units = units;
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.quota.release(self.units);
    }
}

/// Memory held for one connection, counted against both the connection's quota and its shard's.
pub struct Memory {
    connection: Grant,
    shard: Grant,
}

impl Memory {
    pub fn nothing(connection: &Rc<Quota>, shard: &Rc<Quota>) -> Memory {
        Memory {
            connection: connection.nothing(),
            shard: shard.nothing(),
        }
    }

    /// Both halves, already taken.
    pub fn from_grants(connection: Grant, shard: Grant) -> Memory {
        Memory { connection, shard }
    }

    /// Takes `bytes` of both quotas, the connection's first, waiting in line for each.
    pub async fn take(connection: &Rc<Quota>, shard: &Rc<Quota>, bytes: usize) -> Memory {
        let connection = connection.take(bytes).await;
        let shard = shard.take(bytes).await;
        Memory { connection, shard }
    }

    pub fn bytes(&self) -> usize {
        self.shard.units()
    }

    pub fn split(&mut self, bytes: usize) -> Memory {
        Memory {
            connection: self.connection.split(bytes),
            shard: self.shard.split(bytes),
        }
    }

    pub fn merge(&mut self, other: Memory) {
        self.connection.merge(other.connection);
        self.shard.merge(other.shard);
    }

    /// See [`Grant::resize`].
    pub fn resize(&mut self, bytes: usize) {
        self.connection.resize(bytes);
        self.shard.resize(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn grants_return_their_units() {
        run(|| async {
            let q = Quota::new(100);
            let mut a = q.try_take(60).unwrap();
            assert!(q.try_take(50).is_none());
            let b = a.split(20);
            assert_eq!((a.units(), b.units(), q.used()), (40, 20, 60));
            drop(b);
            assert_eq!(q.used(), 40);
            a.resize(10);
            assert_eq!(q.used(), 10);
            a.resize(150);
            assert_eq!(q.used(), 150, "resize past max charges");
            drop(a);
            assert_eq!(q.used(), 0);
            // More than the whole quota is clamped to it.
            assert_eq!(q.try_take(1000).unwrap().units(), 100);
        });
    }

    #[test]
    fn waiters_take_what_fits_when_it_is_freed() {
        run(|| async {
            let q = Quota::new(10);
            let held = q.try_take(10).unwrap();
            let q2 = q.clone();
            let big = glommio::spawn_local(async move { q2.take(8).await.units() });
            glommio::executor().yield_now().await;
            let q3 = q.clone();
            let small = glommio::spawn_local(async move { q3.take(2).await.units() });
            glommio::executor().yield_now().await;
            let mut held = held;
            // Two units free: the small waiter goes, the big one keeps waiting.
            held.resize(8);
            assert_eq!(small.await, 2);
            assert_eq!(q.used(), 8);
            drop(held);
            assert_eq!(big.await, 8);
            assert_eq!(q.used(), 0);
        });
    }

    #[test]
    fn a_waiter_that_gives_up_takes_nothing() {
        run(|| async {
            let q = Quota::new(10);
            let held = q.try_take(10).unwrap();
            let q2 = q.clone();
            let quitter = glommio::spawn_local(async move { q2.take(5).await.units() });
            glommio::executor().yield_now().await;
            drop(quitter);
            drop(held);
            assert_eq!(q.used(), 0);
            assert_eq!(q.try_take(10).map(|g| g.units()), Some(10));
        });
    }

    #[test]
    fn memory_counts_against_both_quotas() {
        run(|| async {
            let conn = Quota::new(100);
            let shard = Quota::new(1000);
            let mut m = Memory::take(&conn, &shard, 70).await;
            let part = m.split(30);
            assert_eq!((conn.used(), shard.used()), (70, 70));
            drop(m);
            assert_eq!((conn.used(), shard.used()), (30, 30));
            let mut all = Memory::nothing(&conn, &shard);
            all.merge(part);
            all.resize(5);
            assert_eq!((conn.used(), shard.used(), all.bytes()), (5, 5, 5));
        });
    }
}
