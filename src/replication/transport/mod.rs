//! The inter-broker transport: QUIC with mutual TLS on one tokio `current_thread` runtime per
//! broker, on its own OS thread (pinned when `cpu` is set), joined to the shards by bounded
//! `async_channel`s in both directions (`docs/REPLICATION.md`, "Transport").
//!
//! ```text
//! shard i ── ShardLink.tx (Outbound, bounded) ──> router i ─┬─> lane (peer, to_shard) ─> uni stream
//!                                                             └─> local lane (to == this node)
//! peer ── uni stream per lane ──> reader ── (await) ──> ShardLink.rx of to_shard (Inbound, bounded)
//! ```
//!
//! What it promises: a message reaches the shard it names, on the node it names, or is counted
//! as dropped ([`TransportStats`]). No ordering across lanes (destination shards), no delivery
//! while a peer is down, no retransmission above QUIC's: Raft tolerates loss and reordering.
//! Messages to one (peer, shard) lane travel in order on one stream while one connection lasts.
//!
//! The transport thread owns everything below [`start`]; the shards hold only their
//! [`ShardLink`]; [`Transport`] is the handle of whoever started it (stats, shutdown).

pub mod certs;
pub mod config;
pub mod error;
pub mod frame;
pub mod stats;
pub mod tls;

mod events;
mod inbound;
mod outbound;
mod runtime;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_channel::{Receiver, Sender};
use bytes::Bytes;

pub use certs::{init_certs, InitCertsError};
pub use config::TransportConfig;
pub use error::{TlsError, TransportError};
pub use stats::{PeerStats, TransportStats};
pub use tls::TlsFiles;

use crate::types::{NodeId, ShardId};
use stats::Counters;

/// One replication message a shard hands to the transport.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The destination node; this node's own id delivers locally, without the network.
    pub to: NodeId,
    /// The destination shard on that node.
    pub to_shard: ShardId,
    /// One encoded replication message, opaque here; at most `frame_bytes_max` bytes.
    pub body: Bytes,
}

/// What the transport hands to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A message a peer (or this node) sent to this shard. `from` comes from the peer's
    /// certificate, never from the message.
    Message { from: NodeId, body: Bytes },
    /// The connection this node dials to the peer is up (messages to it can go). Sent to every
    /// shard; while a shard's channel is full, events are coalesced to the latest per peer.
    PeerUp(NodeId),
    /// That connection is lost (closed, or silent for `idle_timeout_ms`): messages to the peer
    /// are dropped until the next `PeerUp`.
    PeerDown(NodeId),
}

/// A shard's two ends of the transport, moved to that shard's executor.
#[derive(Debug)]
pub struct ShardLink {
    /// Messages to send; a full channel (`channel_messages_max`) is backpressure.
    pub tx: Sender<Outbound>,
    /// Messages and peer events for this shard.
    pub rx: Receiver<Inbound>,
}

/// The handle of a running transport, held by whoever started it (the broker's main thread).
/// Dropping it shuts the transport down, as [`Transport::shutdown`] does.
#[derive(Debug)]
pub struct Transport {
    node: NodeId,
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Transport {
    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The UDP address the transport is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        self.counters.snapshot()
    }

    /// Closes every connection (peers see it at once, not after their idle timeout), waits up to
    /// `shutdown_timeout_ms` for the close to go out, and joins the thread. The shards' channels
    /// close with it: their `rx` ends once drained, their `tx` fails.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(node = %self.node, "the replication transport thread panicked");
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds this node's entry of `cfg.peers` and starts the transport (see [`start_on`]).
pub fn start(cfg: TransportConfig) -> Result<(Transport, Vec<ShardLink>), TransportError> {
    cfg.validate()?;
    let addr = cfg.peers[&cfg.node];
    let socket = UdpSocket::bind(addr).map_err(|source| TransportError::Bind { addr, source })?;
    start_on(cfg, socket)
}

/// Starts the transport on an already bound UDP socket (tests bind `127.0.0.1:0` first so the
/// peers map can name real ports): builds the TLS configurations, spawns the thread, and returns
/// once the QUIC endpoint is up, with one [`ShardLink`] per shard.
pub fn start_on(
    cfg: TransportConfig,
    socket: UdpSocket,
) -> Result<(Transport, Vec<ShardLink>), TransportError> {
    runtime::start(cfg, socket)
}
