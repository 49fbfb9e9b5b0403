//! A channel from ordinary threads into a glommio executor: `send` from any thread, `recv`
//! as a future on the executor.
//!
//! glommio wakers may be woken from any thread (the wake-up crosses over the executor's
//! eventfd), so the receiving task parks with its waker and a sender wakes it. The queue is a
//! mutex-protected `VecDeque`: this is the blocking API's bridge, where each call already
//! costs a thread hand-off, not the async hot path. It is unbounded, but every blocking caller
//! waits for a reply before sending again, so it holds at most one command per caller thread.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

struct Chan<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    senders: usize,
    receiver_alive: bool,
}

/// The sending half; cloneable and `Send`.
pub(crate) struct RemoteSender<T> {
    chan: Arc<Mutex<Chan<T>>>,
}

/// The receiving half, used inside the executor.
pub(crate) struct LocalReceiver<T> {
    chan: Arc<Mutex<Chan<T>>>,
}

pub(crate) fn channel<T>() -> (RemoteSender<T>, LocalReceiver<T>) {
    let chan = Arc::new(Mutex::new(Chan {
        queue: VecDeque::new(),
        waker: None,
        senders: 1,
        receiver_alive: true,
    }));
    (RemoteSender { chan: chan.clone() }, LocalReceiver { chan })
}

fn lock<T>(chan: &Mutex<Chan<T>>) -> std::sync::MutexGuard<'_, Chan<T>> {
    // A panic while holding this lock leaves the queue consistent (push/pop are atomic).
    chan.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> RemoteSender<T> {
    /// Queues `value`; gives it back if the receiver is gone.
    pub(crate) fn send(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut c = lock(&self.chan);
            if !c.receiver_alive {
                return Err(value);
            }
            c.queue.push_back(value);
            c.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for RemoteSender<T> {
    fn clone(&self) -> Self {
        lock(&self.chan).senders += 1;
        RemoteSender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for RemoteSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut c = lock(&self.chan);
            c.senders -= 1;
            if c.senders > 0 {
                return;
            }
            c.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> LocalReceiver<T> {
    /// The next value, or `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            let mut c = lock(&self.chan);
            if let Some(v) = c.queue.pop_front() {
                return Poll::Ready(Some(v));
            }
            if c.senders == 0 {
                return Poll::Ready(None);
            }
            c.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for LocalReceiver<T> {
    fn drop(&mut self) {
        let mut c = lock(&self.chan);
        c.receiver_alive = false;
        c.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn values_cross_threads_in_order_and_the_end_is_seen() {
        let (tx, rx) = channel::<u32>();
        let tx2 = tx.clone();
        let t = std::thread::spawn(move || {
            for i in 0..100 {
                tx2.send(i).unwrap();
            }
        });
        t.join().unwrap();
        drop(tx);
        let got: Vec<u32> = block_on(async {
            let mut v = Vec::new();
            while let Some(x) = rx.recv().await {
                v.push(x);
            }
            v
        });
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn sending_to_a_dropped_receiver_gives_the_value_back() {
        let (tx, rx) = channel::<u32>();
        drop(rx);
        assert_eq!(tx.send(5), Err(5));
    }
}
