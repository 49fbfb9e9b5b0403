//! A shard's open connections: the registry shutdown stops, the per-connection state its reader
//! and writer share, and the shedding of a connection under memory pressure
//! (`pressure_stall_ms`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use glommio::Task;

use super::budget::Quota;
use crate::local::Event;

/// While a reader waits for the shard's memory, how often it looks for a connection to shed.
pub(super) const SHED_CHECK: Duration = Duration::from_millis(100);

/// The connections of one shard, so shutdown can stop their readers, and the shard's memory
/// quota for requests and responses. Lives on its shard.
pub struct Connections {
    pub(super) connections_max: u32,
    pub(super) readers: RefCell<AHashMap<u64, Task<()>>>,
    /// Every open connection, to pick one to close under memory pressure.
    pub(super) open: RefCell<AHashMap<u64, Rc<Conn>>>,
    pub(super) next_id: Cell<u64>,
    pub(super) memory: Rc<Quota>,
    /// `pressure_stall_ms`.
    pub(super) shed_stall: Duration,
    /// When the open connections were last scanned for one to shed, and the last one shed while
    /// it still holds memory: one victim at a time, one scan per [`SHED_CHECK`].
    pub(super) last_shed_scan: Cell<Option<Instant>>,
    pub(super) shedding: RefCell<Option<Rc<Conn>>>,
}

impl Connections {
    pub fn new(limits: &crate::config::Limits) -> Self {
        Connections {
            connections_max: limits.connections_per_shard_max,
            readers: RefCell::new(AHashMap::new()),
            open: RefCell::new(AHashMap::new()),
            next_id: Cell::new(0),
            memory: Quota::new(
                usize::try_from(limits.request_memory_bytes_max).unwrap_or(usize::MAX),
            ),
            shed_stall: Duration::from_millis(limits.pressure_stall_ms),
            last_shed_scan: Cell::new(None),
            shedding: RefCell::new(None),
        }
    }

    /// Bytes of request and response memory the shard's connections hold now.
    pub fn memory_in_use(&self) -> usize {
        self.memory.used()
    }

    /// Memory pressure: `waiter`'s reader has waited for the shard's memory. Among the
    /// connections stalled for at least `pressure_stall_ms` (a response their peer has left
    /// unread, or a frame whose bytes stopped coming; time the broker itself spent not reading
    /// does not count), closes the one holding the most memory. So peers
    /// that hold memory without making progress cannot keep everyone else waiting. One victim at
    /// a time (the next only once the last has given its memory back), one scan per
    /// [`SHED_CHECK`] however many readers wait. Returns whether one was closed.
    pub(super) fn shed(&self, waiter: &Conn) -> bool {
        let now = Instant::now();
        if self
            .last_shed_scan
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < SHED_CHECK)
        {
            return false;
        }
        self.last_shed_scan.set(Some(now));
        let pending = self.shedding.borrow().clone();
        if let Some(last) = pending {
            if last.memory.used() > 0 && self.open.borrow().values().any(|c| Rc::ptr_eq(c, &last)) {
                return false;
            }
            *self.shedding.borrow_mut() = None;
        }
        let victim = self
            .open
            .borrow()
            .values()
            .filter(|c| !c.closed.get() && c.memory.used() > 0)
            .filter(|c| !std::ptr::eq(Rc::as_ptr(c), waiter))
            .filter_map(|c| {
                // Stalled by its peer first; then waiting for memory itself.
                let (class, since) = match (c.stalled_since(), c.memory_wait_since.get()) {
                    (Some(t), _) => (1, t),
                    (None, Some(t)) => (0, t),
                    (None, None) => return None,
                };
                Some((class, since, c.clone()))
            })
            .filter(|(_, t, _)| now.saturating_duration_since(*t) >= self.shed_stall)
            // The one that frees the most, the longest stalled among equals.
            .max_by_key(|(class, t, c)| (*class, c.memory.used(), std::cmp::Reverse(*t)))
            .map(|(_, _, c)| c);
        let Some(victim) = victim else {
            return false;
        };
        tracing::info!(
            peer = ?victim.peer,
            held_bytes = victim.memory.used(),
            stalled_ms = victim
                .stalled_since()
                .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64),
            unread_response = victim.writing_since.get().is_some(),
            "memory pressure: closing a stalled connection"
        );
        victim.shut_down();
        *self.shedding.borrow_mut() = Some(victim);
        true
    }

    /// Gives freed heap memory back to the system once the connections' memory has fallen well
    /// below what it was (glibc keeps freed blocks in its arenas otherwise, so a burst would
    /// leave the broker's RSS high for good). Runs until dropped; checks every second.
    pub async fn trim_loop(self: Rc<Self>) {
        const TRIM_DROP_BYTES: usize = 16 << 20;
        let mut high = 0usize;
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let used = self.memory.used();
            high = high.max(used);
            if high - used >= TRIM_DROP_BYTES && used <= high / 4 {
                // SAFETY: malloc_trim only walks the allocator's own free lists.
                unsafe { libc::malloc_trim(0) };
                high = used;
            }
        }
    }

    /// Stops reading new requests on every connection; requests already read still get their
    /// responses, then the connections close.
    pub fn stop_reading(&self) {
        let readers: Vec<Task<()>> = self.readers.borrow_mut().drain().map(|(_, t)| t).collect();
        drop(readers);
    }

    pub fn close_all(&self) {
        self.stop_reading();
    }
}

/// One connection's state shared by its reader and writer (same shard, same executor).
pub(super) struct Conn {
    pub(super) peer: Option<SocketAddr>,
    pub(super) fd: RawFd,
    /// Memory this connection holds (`connection_memory_bytes_max`).
    pub(super) memory: Rc<Quota>,
    /// The shard's memory (`request_memory_bytes_max`).
    pub(super) shard_memory: Rc<Quota>,
    /// Requests read and not yet answered (`inflight_requests_max`).
    pub(super) inflight: Rc<Quota>,
    /// When a byte last arrived or a response last left, for the idle timeout.
    pub(super) last_active: Cell<Instant>,
    pub(super) opened: Instant,
    pub(super) requests: Cell<u64>,
    pub(super) bytes_in: Cell<u64>,
    pub(super) bytes_out: Cell<u64>,
    /// Why the reader stopped, for the close log line.
    pub(super) read_end: Cell<&'static str>,
    /// Since when a response has been waiting for the peer to take it (none while idle).
    pub(super) writing_since: Cell<Option<Instant>>,
    /// While a frame is partly read: when its last byte arrived (none between frames).
    pub(super) partial_since: Cell<Option<Instant>>,
    /// Set while the reader waits for the broker (a request slot, memory): the peer is not
    /// stalled then, the broker is.
    pub(super) reader_blocked: Cell<bool>,
    /// Since when the reader has waited for the shard's memory to grow its buffer. Readers
    /// that all wait for memory held by each other's partial frames would wait for ever, so
    /// under pressure such a waiter can be shed too, after those stalled by their peers.
    pub(super) memory_wait_since: Cell<Option<Instant>>,
    /// Set (and `closing` notified) when the writer gives up on the peer, so a reader waiting for
    /// memory or a request slot stops waiting.
    pub(super) closed: Cell<bool>,
    pub(super) closing: Event,
}

impl Conn {
    pub(super) fn touch(&self) {
        self.last_active.set(Instant::now());
    }

    /// Since when the connection has made no progress while holding work: the older of an
    /// unread response and a stalled partial frame.
    pub(super) fn stalled_since(&self) -> Option<Instant> {
        let partial = self
            .partial_since
            .get()
            .filter(|_| !self.reader_blocked.get());
        match (self.writing_since.get(), partial) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the connection from the writer's side: wakes a reader blocked on the socket or on a
    /// quota.
    pub(super) fn shut_down(&self) {
        self.closed.set(true);
        self.closing.notify();
        // SAFETY: shutdown(2) on a descriptor that the connection's halves keep open until
        // both are dropped; it only changes the socket's state.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    /// Runs `wait` unless the connection is shut down first (`None`).
    pub(super) async fn unless_closed<T>(
        &self,
        wait: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let closing = self.closing.listen();
        if self.closed.get() {
            return None;
        }
        futures_lite::future::or(async { Some(wait.await) }, async {
            closing.await;
            None
        })
        .await
    }
}
