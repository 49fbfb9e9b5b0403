//! `PeerUp`/`PeerDown` to every shard without letting one full channel hold up the others: each
//! shard has its own pending map (latest state per peer) and a task that empties it into the
//! shard's channel, so a slow shard sees coalesced events and the rest see them at once.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use async_channel::Sender;
use tokio::sync::Notify;

use super::Inbound;
use crate::types::NodeId;

/// The peer events not yet handed to one shard. Lives on the transport thread.
#[derive(Debug, Default)]
pub(crate) struct ShardEvents {
    /// Peer -> up.
    pending: RefCell<BTreeMap<NodeId, bool>>,
    wake: Notify,
}

impl ShardEvents {
    /// Records the latest state of `peer`, replacing one not yet delivered.
    pub(crate) fn post(&self, peer: NodeId, up: bool) {
        self.pending.borrow_mut().insert(peer, up);
        self.wake.notify_one();
    }

    /// Hands pending events to the shard until its channel closes.
    pub(crate) async fn run(self: Rc<Self>, tx: Sender<Inbound>) {
        loop {
            self.wake.notified().await;
            loop {
                let next = self.pending.borrow_mut().pop_first();
                let Some((peer, up)) = next else { break };
                let event = if up {
                    Inbound::PeerUp(peer)
                } else {
                    Inbound::PeerDown(peer)
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_shard_gets_the_latest_state_and_others_are_not_held_up() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let (full_tx, full_rx) = async_channel::bounded(1);
            let (free_tx, free_rx) = async_channel::bounded(16);
            full_tx.send(Inbound::PeerUp(NodeId(9))).await.unwrap(); // fills it
            let full = Rc::new(ShardEvents::default());
            let free = Rc::new(ShardEvents::default());
            tokio::task::spawn_local(full.clone().run(full_tx));
            tokio::task::spawn_local(free.clone().run(free_tx));
            for up in [false, true, false] {
                full.post(NodeId(2), up);
                free.post(NodeId(2), up);
                tokio::task::yield_now().await;
            }
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let got: Vec<Inbound> = std::iter::from_fn(|| free_rx.try_recv().ok()).collect();
            assert_eq!(
                got,
                vec![
                    Inbound::PeerDown(NodeId(2)),
                    Inbound::PeerUp(NodeId(2)),
                    Inbound::PeerDown(NodeId(2))
                ]
            );
            assert_eq!(full_rx.recv().await.unwrap(), Inbound::PeerUp(NodeId(9)));
            // The first event was already waiting on the channel; the rest collapsed into the
            // latest state.
            let mut seen = vec![full_rx.recv().await.unwrap()];
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            seen.extend(std::iter::from_fn(|| full_rx.try_recv().ok()));
            assert_eq!(seen.last(), Some(&Inbound::PeerDown(NodeId(2))));
            assert!(seen.len() <= 2, "{seen:?}");
        });
    }
}
