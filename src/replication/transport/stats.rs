//! What the transport counts. The counters are written on the transport thread and read by
//! whoever calls [`super::Transport::stats`] (relaxed atomics: figures, not synchronisation).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::types::NodeId;

/// A snapshot of the transport's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Every node of the peers map; this node's entry counts local deliveries.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Outbound messages to a node not in the peers map, dropped.
    pub dropped_unknown_node: u64,
    /// Messages for a shard this node does not have (sent here or received), dropped.
    pub dropped_unknown_shard: u64,
    /// Outbound messages over `frame_bytes_max`, dropped.
    pub dropped_oversize: u64,
    /// Inbound connections refused: failed handshakes (no certificate, another CA, a node not in
    /// the peers map, wrong ALPN) and connections whose node could not be told.
    pub refused_connections: u64,
    /// Accepted connections closed for breaking the framing rules.
    pub protocol_errors: u64,
}

/// One peer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Whether the connection this node dials to it is up.
    pub connected: bool,
    /// Connections established to it (so reconnects are `connects - 1`).
    pub connects: u64,
    /// Messages written to it (to a stream, not yet known to be read) and their body bytes.
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// Writes those messages took (each a batch of frames on one stream).
    pub batches_sent: u64,
    /// Messages received from it and handed to a shard's channel, and their body bytes.
    pub messages_received: u64,
    pub bytes_received: u64,
    /// Messages to it dropped, for any of the reasons below.
    pub dropped: u64,
    /// ... because it was not connected (queued when the connection went down included).
    pub dropped_peer_down: u64,
    /// ... because its lane held `lane_bytes_max`.
    pub dropped_lane_full: u64,
    /// ... because the write failed (the connection broke under it).
    pub dropped_write_failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) connected: AtomicBool,
    pub(crate) connects: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) batches_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) dropped_peer_down: AtomicU64,
    pub(crate) dropped_lane_full: AtomicU64,
    pub(crate) dropped_write_failed: AtomicU64,
}

/// The counters of a whole transport, shared by its thread and its handle.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) peers: BTreeMap<NodeId, PeerCounters>,
    pub(crate) dropped_unknown_node: AtomicU64,
    pub(crate) dropped_unknown_shard: AtomicU64,
    pub(crate) dropped_oversize: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

impl Counters {
    pub(crate) fn new(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        Counters {
            peers: nodes
                .into_iter()
                .map(|n| (n, PeerCounters::default()))
                .collect(),
            dropped_unknown_node: AtomicU64::new(0),
            dropped_unknown_shard: AtomicU64::new(0),
            dropped_oversize: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
        }
    }

    /// The counters of `node`, which must be in the peers map.
    pub(crate) fn peer(&self, node: NodeId) -> &PeerCounters {
        &self.peers[&node]
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        let peers = self
            .peers
            .iter()
            .map(|(n, c)| {
                let down = c.dropped_peer_down.load(Relaxed);
                let full = c.dropped_lane_full.load(Relaxed);
                let failed = c.dropped_write_failed.load(Relaxed);
                let s = PeerStats {
                    connected: c.connected.load(Relaxed),
                    connects: c.connects.load(Relaxed),
                    messages_sent: c.messages_sent.load(Relaxed),
                    bytes_sent: c.bytes_sent.load(Relaxed),
                    batches_sent: c.batches_sent.load(Relaxed),
                    messages_received: c.messages_received.load(Relaxed),
                    bytes_received: c.bytes_received.load(Relaxed),
                    dropped: down + full + failed,
                    dropped_peer_down: down,
                    dropped_lane_full: full,
                    dropped_write_failed: failed,
                };
                (*n, s)
            })
            .collect();
        TransportStats {
            peers,
            dropped_unknown_node: self.dropped_unknown_node.load(Relaxed),
            dropped_unknown_shard: self.dropped_unknown_shard.load(Relaxed),
            dropped_oversize: self.dropped_oversize.load(Relaxed),
            refused_connections: self.refused_connections.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
        }
    }
}
