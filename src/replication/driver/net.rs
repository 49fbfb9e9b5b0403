//! A shard's side of the network: the outbox (bounded; a sender task moves it into the
//! replication thread's channel, waiting while that is full), catch-up requests waiting for
//! their replies, and which peers are up.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;

use super::link::Outbound;
use crate::local::{promise, Event, Resolver};
use crate::replication::message::{self, FetchLog, FetchLogReply, GroupId, WireMessage};
use crate::types::{NodeId, ShardId};

/// Counters of a shard's replication traffic.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    pub sent: u64,
    /// Messages dropped because the outbox was full (Raft sends them again).
    pub dropped: u64,
    pub received: u64,
    /// Received frames that did not decode or named no group here.
    pub refused: u64,
}

pub struct Net {
    pub node: NodeId,
    outbox: RefCell<VecDeque<Outbound>>,
    outbox_max: usize,
    wake: Event,
    closed: Cell<bool>,
    fetches: RefCell<AHashMap<u64, Resolver<FetchLogReply>>>,
    next_request: Cell<u64>,
    up: RefCell<AHashMap<NodeId, bool>>,
    pub(super) stats: Cell<NetStats>,
}

impl Net {
    pub fn new(node: NodeId, outbox_max: usize) -> Rc<Net> {
        Rc::new(Net {
            node,
            outbox: RefCell::new(VecDeque::new()),
            outbox_max: outbox_max.max(1),
            wake: Event::new(),
            closed: Cell::new(false),
            fetches: RefCell::new(AHashMap::new()),
            next_request: Cell::new(1),
            up: RefCell::new(AHashMap::new()),
            stats: Cell::new(NetStats::default()),
        })
    }

    fn count(&self, f: impl FnOnce(&mut NetStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    pub(super) fn count_received(&self, refused: bool) {
        self.count(|s| {
            s.received += 1;
            s.refused += u64::from(refused);
        });
    }

    /// Queues `msg` for `group`'s replica on (`to`, `to_shard`). Never waits: past
    /// `outbox_max` queued messages the message is dropped and counted (Raft resends).
    pub fn send(&self, to: NodeId, to_shard: ShardId, group: GroupId, msg: &WireMessage) {
        let body = match message::encode(group, msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%group, error = %e, "cannot encode a replication message");
                return;
            }
        };
        self.send_body(to, to_shard, body);
    }

    fn send_body(&self, to: NodeId, to_shard: ShardId, body: Bytes) {
        let mut q = self.outbox.borrow_mut();
        if q.len() >= self.outbox_max {
            drop(q);
            self.count(|s| s.dropped += 1);
            return;
        }
        q.push_back(Outbound { to, to_shard, body });
        drop(q);
        self.wake.notify();
    }

    /// Moves the outbox into the replication thread's channel, waiting while it is full
    /// (backpressure), until the shard closes.
    pub async fn sender(self: Rc<Self>, tx: async_channel::Sender<Outbound>) {
        loop {
            let listen = self.wake.listen();
            let next = self.outbox.borrow_mut().pop_front();
            match next {
                Some(o) => {
                    if tx.send(o).await.is_err() {
                        return;
                    }
                    self.count(|s| s.sent += 1);
                }
                None if self.closed.get() => return,
                None => listen.await,
            }
        }
    }

    /// Asks `to`'s replica of `group` for its log from `from_offset`; `None` when no answer
    /// comes within `timeout` (lost, or the peer is down).
    pub async fn fetch_log(
        &self,
        to: NodeId,
        to_shard: ShardId,
        group: GroupId,
        from_offset: u64,
        max_bytes: u32,
        timeout: Duration,
    ) -> Option<FetchLogReply> {
        let request_id = self.next_request.get();
        self.next_request.set(request_id + 1);
        let (p, r) = promise();
        self.fetches.borrow_mut().insert(request_id, r);
        self.send(
            to,
            to_shard,
            group,
            &WireMessage::FetchLog(FetchLog {
                request_id,
                from_offset,
                max_bytes,
            }),
        );
        let got = futures_lite::future::or(async { p.await.ok() }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        self.fetches.borrow_mut().remove(&request_id);
        got
    }

    /// A reply to one of our `FetchLog`s arrived.
    pub(super) fn fetch_replied(&self, reply: FetchLogReply) {
        if let Some(r) = self.fetches.borrow_mut().remove(&reply.request_id) {
            r.resolve(reply);
        }
    }

    pub(super) fn set_up(&self, node: NodeId, up: bool) {
        self.up.borrow_mut().insert(node, up);
    }

    /// Whether the transport has a connection to `node` (this node is always up).
    pub fn is_up(&self, node: NodeId) -> bool {
        node == self.node || self.up.borrow().get(&node).copied().unwrap_or(false)
    }

    pub fn stats(&self) -> NetStats {
        self.stats.get()
    }

    pub fn close(&self) {
        self.closed.set(true);
        self.wake.notify();
        self.fetches.borrow_mut().clear();
    }
}
