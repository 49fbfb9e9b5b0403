//! Shard-local synchronisation primitives: a notify-all [`Event`] and a one-shot [`Promise`].
//!
//! Everything here lives on one shard (one glommio executor thread) and is `!Send`: no atomics, no
//! locks. Cross-shard traffic uses glommio's channels instead. No `RefCell` borrow is held across
//! an `.await`: every borrow here ends before the future returns `Pending`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it. A waiter re-checks its own condition after waking (the event
/// carries no value), so a notification that races with the check is never lost as long as the
/// waiter registers before it checks again: see [`Event::listen`].
#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes all current listeners.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// A future that completes at the next [`Event::notify`] after this call.
    pub fn listen(&self) -> Listen<'_> {
        Listen {
            event: self,
            generation: self.generation.get(),
        }
    }
}

/// Future returned by [`Event::listen`].
pub struct Listen<'a> {
    event: &'a Event,
    generation: u64,
}

impl Future for Listen<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.event.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// Set when the [`Resolver`] is dropped without a value, so the waiter does not hang.
    abandoned: bool,
}

/// The waiting half of a one-shot value.
pub struct Promise<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

/// The completing half of a one-shot value.
pub struct Resolver<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

/// A one-shot value: the [`Resolver`] sets it once, the [`Promise`] awaits it.
pub fn promise<T>() -> (Promise<T>, Resolver<T>) {
    let slot = Rc::new(RefCell::new(Slot {
        value: None,
        waker: None,
        abandoned: false,
    }));
    (Promise { slot: slot.clone() }, Resolver { slot })
}

impl<T> Resolver<T> {
    pub fn resolve(self, value: T) {
        let waker = {
            let mut s = self.slot.borrow_mut();
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        // Drop runs next and sees the value already set.
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.slot.borrow_mut();
            if s.value.is_some() {
                return;
            }
            s.abandoned = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The resolver went away without setting a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

impl<T> Future for Promise<T> {
    type Output = Result<T, Abandoned>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.borrow_mut();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Ok(v));
        }
        if s.abandoned {
            return Poll::Ready(Err(Abandoned));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn promise_delivers_value_and_abandonment() {
        let (p, r) = promise::<u32>();
        r.resolve(7);
        assert_eq!(block_on(p), Ok(7));
        let (p, r) = promise::<u32>();
        drop(r);
        assert_eq!(block_on(p), Err(Abandoned));
    }

    #[test]
    fn event_wakes_listener_registered_before_notify() {
        let ev = Event::new();
        let l = ev.listen();
        ev.notify();
        block_on(l);
        // A listener created after the notify waits for the next one.
        let mut l2 = Box::pin(ev.listen());
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        assert!(l2.as_mut().poll(&mut cx).is_pending());
        ev.notify();
        assert!(l2.as_mut().poll(&mut cx).is_ready());
    }
}
