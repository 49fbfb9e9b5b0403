//! Cross-shard calls over glommio shared channels: a full mesh of bounded SPSC channels, one per
//! ordered pair of shards, built on the main thread before the shards start so that indexes are
//! shard ids.
//!
//! A call is a request with an id sent to the owning shard; the owner runs it as a task and sends
//! the reply back on its own channel to the caller, who resolves the waiting promise. Each shard
//! holds its `Mesh` in an `Rc`; nothing here is shared between shards except the channels.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use ahash::AHashMap;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};

use super::call::{Call, Reply};
use crate::local::{promise, Resolver};
use crate::types::ShardId;

/// Messages in flight between shards.
pub(crate) enum Envelope {
    Call { from: ShardId, id: u64, call: Call },
    Reply { id: u64, reply: Reply },
}

/// One shard's ends of the mesh, before its executor connects them.
pub struct MeshEnds {
    senders: Vec<Option<SharedSender<Envelope>>>,
    receivers: Vec<Option<SharedReceiver<Envelope>>>,
}

/// Builds the mesh for `shards` shards; element `i` goes to shard `i`.
pub fn build_mesh(shards: usize, channel_calls_max: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..shards)
        .map(|_| MeshEnds {
            senders: (0..shards).map(|_| None).collect(),
            receivers: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(channel_calls_max);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
    }
    ends
}

/// Runs calls that arrive from other shards.
pub(crate) trait CallHandler {
    fn handle(self: Rc<Self>, call: Call) -> Pin<Box<dyn Future<Output = Reply>>>;
}

/// The shard is gone (shutting down); the call was not delivered or not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardGone(pub ShardId);

/// A shard's view of the mesh. Lives on that shard.
pub(crate) struct Mesh {
    me: ShardId,
    senders: Vec<Option<ConnectedSender<Envelope>>>,
    /// Calls waiting for a reply: id -> (shard called, resolver).
    pending: RefCell<AHashMap<u64, (usize, Resolver<Reply>)>>,
    next_id: Cell<u64>,
}

impl Mesh {
    /// Connects this shard's ends and starts one receive loop per peer. Must run on the shard's
    /// executor.
    pub(crate) async fn connect<H: CallHandler + 'static>(
        me: ShardId,
        ends: MeshEnds,
        handler: std::rc::Weak<H>,
    ) -> Rc<Mesh> {
        // Connecting an end waits for the peer to connect the other end, so connect all of them
        // at once: one shard waiting on its senders while its peer waits on its own would
        // deadlock.
        let sender_tasks: Vec<_> = ends
            .senders
            .into_iter()
            .map(|s| {
                glommio::spawn_local(async move {
                    match s {
                        Some(s) => Some(s.connect().await),
                        None => None,
                    }
                })
            })
            .collect();
        let receiver_tasks: Vec<_> = ends
            .receivers
            .into_iter()
            .map(|r| {
                glommio::spawn_local(async move {
                    match r {
                        Some(r) => Some(r.connect().await),
                        None => None,
                    }
                })
            })
            .collect();
        let mut senders = Vec::with_capacity(sender_tasks.len());
        for t in sender_tasks {
            senders.push(t.await);
        }
        let mut receivers = Vec::with_capacity(receiver_tasks.len());
        for t in receiver_tasks {
            receivers.push(t.await);
        }
        let mesh = Rc::new(Mesh {
            me,
            senders,
            pending: RefCell::new(AHashMap::new()),
            next_id: Cell::new(0),
        });
        for (peer, rx) in receivers.into_iter().enumerate() {
            let Some(rx) = rx else { continue };
            let mesh = Rc::downgrade(&mesh);
            let handler = handler.clone();
            glommio::spawn_local(async move {
                while let Some(env) = rx.recv().await {
                    let Some(m) = mesh.upgrade() else { return };
                    match env {
                        Envelope::Reply { id, reply } => {
                            let resolver = m.pending.borrow_mut().remove(&id);
                            if let Some((_, r)) = resolver {
                                r.resolve(reply);
                            }
                        }
                        Envelope::Call { from, id, call } => {
                            let Some(h) = handler.upgrade() else { return };
                            glommio::spawn_local(async move {
                                let reply = h.handle(call).await;
                                m.send(from, Envelope::Reply { id, reply }).await;
                            })
                            .detach();
                        }
                    }
                }
                tracing::debug!(peer, "mesh channel closed");
                // The peer is gone: its unanswered calls never will be. Dropping the resolvers
                // makes their callers see `ShardGone`.
                if let Some(m) = mesh.upgrade() {
                    m.pending.borrow_mut().retain(|_, (to, _)| *to != peer);
                }
            })
            .detach();
        }
        mesh
    }

    async fn send(&self, to: ShardId, env: Envelope) -> bool {
        match self.senders.get(usize::from(to.0)).and_then(|s| s.as_ref()) {
            Some(s) => s.send(env).await.is_ok(),
            None => false,
        }
    }

    /// Runs `call` on shard `to` and returns its reply.
    pub(crate) async fn call(&self, to: ShardId, call: Call) -> Result<Reply, ShardGone> {
        assert_ne!(to, self.me, "local calls do not go through the mesh");
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (p, r) = promise();
        self.pending.borrow_mut().insert(id, (usize::from(to.0), r));
        let guard = PendingGuard { mesh: self, id };
        if !self
            .send(
                to,
                Envelope::Call {
                    from: self.me,
                    id,
                    call,
                },
            )
            .await
        {
            return Err(ShardGone(to));
        }
        let out = p.await.map_err(|_| ShardGone(to));
        std::mem::forget(guard);
        out
    }

    /// Closes this shard's senders, so peers' receive loops end.
    pub(crate) fn close(&self) {
        for s in self.senders.iter().flatten() {
            s.close();
        }
        // Waiters of calls that will never be answered see `ShardGone`.
        self.pending.borrow_mut().clear();
    }
}

/// Removes a pending call's entry if the caller stops waiting (its future was dropped).
struct PendingGuard<'a> {
    mesh: &'a Mesh,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.mesh.pending.borrow_mut().remove(&self.id);
    }
}
