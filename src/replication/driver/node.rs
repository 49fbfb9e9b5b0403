//! [`Replication`]: one shard's replica groups, the loop that hands them what the replication
//! thread received, and their clock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;

use super::group::Group;
use super::link::{Inbound, ShardLink};
use super::net::Net;
use crate::replication::message::{self, GroupId, WireMessage};
use crate::replication::raft::ReplicaConfig;
use crate::types::NodeId;

/// Takes the metadata proposals other nodes send this one (`WireMessage::Propose`): who sent
/// it and the command batch.
pub type ForwardHandler = Rc<dyn Fn(NodeId, Bytes)>;

pub struct Replication {
    pub node: NodeId,
    pub cfg: ReplicaConfig,
    pub net: Rc<Net>,
    groups: RefCell<AHashMap<GroupId, Rc<Group>>>,
    forward: RefCell<Option<ForwardHandler>>,
    closed: Cell<bool>,
}

impl Replication {
    /// Starts the shard's replication: the sender, the inbound loop and the ticks.
    pub fn start(node: NodeId, cfg: ReplicaConfig, link: ShardLink, outbox_max: usize) -> Rc<Self> {
        let net = Net::new(node, outbox_max);
        let r = Rc::new(Replication {
            node,
            cfg,
            net: net.clone(),
            groups: RefCell::new(AHashMap::new()),
            forward: RefCell::new(None),
            closed: Cell::new(false),
        });
        glommio::spawn_local(net.sender(link.tx)).detach();
        glommio::spawn_local(r.clone().inbound(link.rx)).detach();
        glommio::spawn_local(r.clone().ticks()).detach();
        r
    }

    /// Where metadata proposals from other nodes go (the metadata group's shard sets it);
    /// without a handler they are dropped.
    pub fn set_forward_handler(&self, h: ForwardHandler) {
        *self.forward.borrow_mut() = Some(h);
    }

    pub fn add(&self, g: Rc<Group>) {
        if let Some(old) = self.groups.borrow_mut().insert(g.id, g) {
            old.close();
        }
    }

    pub fn remove(&self, id: GroupId) -> Option<Rc<Group>> {
        let g = self.groups.borrow_mut().remove(&id);
        if let Some(g) = &g {
            g.close();
        }
        g
    }

    pub fn group(&self, id: GroupId) -> Option<Rc<Group>> {
        self.groups.borrow().get(&id).cloned()
    }

    pub fn groups(&self) -> Vec<Rc<Group>> {
        self.groups.borrow().values().cloned().collect()
    }

    async fn inbound(self: Rc<Self>, rx: async_channel::Receiver<Inbound>) {
        while let Ok(m) = rx.recv().await {
            if self.closed.get() {
                return;
            }
            match m {
                Inbound::Message { from, body } => {
                    let Ok((id, msg)) = message::decode(&body) else {
                        self.net.count_received(true);
                        continue;
                    };
                    if let WireMessage::Propose(batch) = msg {
                        let h = self.forward.borrow().clone();
                        self.net.count_received(h.is_none());
                        if let Some(h) = h {
                            h(from, batch);
                        }
                        continue;
                    }
                    let g = self.group(id);
                    self.net.count_received(g.is_none());
                    if let Some(g) = g {
                        g.receive(from, msg);
                    }
                }
                Inbound::PeerUp(n) => self.net.set_up(n, true),
                Inbound::PeerDown(n) => self.net.set_up(n, false),
            }
        }
    }

    /// Every `tick_ms`, ticks every group that is not quiescent (`Group::quiescent`: idle
    /// groups whose nodes are connected skip Raft's ticks, so send no heartbeats).
    async fn ticks(self: Rc<Self>) {
        let period = Duration::from_millis(self.cfg.tick_ms.max(1));
        while !self.closed.get() {
            glommio::timer::sleep(period).await;
            for g in self.groups() {
                g.tick();
            }
        }
    }

    /// Stops every group and the loops.
    pub fn close(&self) {
        self.closed.set(true);
        for (_, g) in self.groups.borrow_mut().drain() {
            g.close();
        }
        self.net.close();
    }
}
