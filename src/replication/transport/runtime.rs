//! The transport thread: its tokio `current_thread` runtime, the QUIC endpoint, and the tasks
//! that move messages between the shards' channels and the connections.
//!
//! Everything here lives on the transport thread (a `LocalSet`: `Rc`/`RefCell`, no locks); the
//! only things shared with other threads are the channels and the counters.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};

use super::config::TransportConfig;
use super::error::TransportError;
use super::events::ShardEvents;
use super::outbound::{Lanes, Peer};
use super::stats::Counters;
use super::{inbound, outbound, Inbound, Outbound, ShardLink, Transport};
use crate::types::NodeId;

/// QUIC application close codes (`docs/REPLICATION.md`, "Connections").
pub(crate) mod close {
    /// The transport is shutting down.
    pub(crate) const SHUTDOWN: u32 = 0;
    /// The peer's node could not be told from its certificate.
    pub(crate) const REFUSED: u32 = 1;
    /// The peer broke the framing rules.
    pub(crate) const PROTOCOL: u32 = 2;
    /// A newer connection from the same node replaced this one.
    pub(crate) const REPLACED: u32 = 3;
}

/// What the transport's tasks share; one per transport, on its thread.
pub(crate) struct Shared {
    pub(crate) cfg: TransportConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    /// Per shard: the inbound channel and its peer-event queue.
    pub(crate) inbound: Vec<Sender<Inbound>>,
    pub(crate) events: Vec<Rc<ShardEvents>>,
    /// Every other node, dialed by this one.
    pub(crate) peers: BTreeMap<NodeId, Rc<Peer>>,
    /// Lanes to this node's own shards.
    pub(crate) local: Lanes,
    /// The latest accepted connection of each node (an older one is closed).
    pub(crate) accepted: RefCell<BTreeMap<NodeId, quinn::Connection>>,
}

impl Shared {
    /// Tells every shard that `peer` is up or down.
    pub(crate) fn post_peer_event(&self, peer: NodeId, up: bool) {
        for e in &self.events {
            e.post(peer, up);
        }
    }

    /// The nodes an accepted certificate may name: every peer but this node.
    pub(crate) fn other_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }
}

fn quic_transport_config(cfg: &TransportConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(cfg.idle_timeout_ms))
        .expect("idle_timeout_ms is validated");
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(Duration::from_millis(cfg.keepalive_ms)));
    t.max_concurrent_bidi_streams(0u32.into());
    // Lanes of the peer plus the welcome stream and an old stream or two closing.
    t.max_concurrent_uni_streams((cfg.lanes_per_peer_max + 4).into());
    t.stream_receive_window(cfg.stream_receive_window_bytes.into());
    let conn_window = cfg.connection_receive_window_bytes();
    t.receive_window(quinn::VarInt::from_u64(conn_window).unwrap_or(quinn::VarInt::MAX));
    t.send_window(conn_window);
    t
}

pub(crate) fn start(
    cfg: TransportConfig,
    socket: UdpSocket,
) -> Result<(Transport, Vec<ShardLink>), TransportError> {
    cfg.validate()?;
    let transport_config = Arc::new(quic_transport_config(&cfg));
    let server_crypto = cfg.tls.server_config(cfg.peers.keys().copied())?;
    let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_crypto)
        .expect("aws-lc-rs offers TLS13_AES_128_GCM_SHA256, the QUIC initial suite");
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server_config.transport_config(transport_config.clone());
    let client_crypto = cfg.tls.client_config()?;
    let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_crypto)
        .expect("aws-lc-rs offers TLS13_AES_128_GCM_SHA256, the QUIC initial suite");
    let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
    client_config.transport_config(transport_config);

    let local_addr = socket.local_addr().map_err(TransportError::Thread)?;
    let counters = Arc::new(Counters::new(cfg.peers.keys().copied()));
    counters
        .peer(cfg.node)
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut links = Vec::with_capacity(cfg.shards);
    let mut outbound_rx = Vec::with_capacity(cfg.shards);
    let mut inbound_tx = Vec::with_capacity(cfg.shards);
    for _ in 0..cfg.shards {
        let (otx, orx) = async_channel::bounded(cfg.channel_messages_max);
        let (itx, irx) = async_channel::bounded(cfg.channel_messages_max);
        links.push(ShardLink { tx: otx, rx: irx });
        outbound_rx.push(orx);
        inbound_tx.push(itx);
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let node = cfg.node;
    let thread_counters = counters.clone();
    let thread = std::thread::Builder::new()
        .name(format!("quill-repl-{}", node.0))
        .spawn(move || {
            run(
                cfg,
                socket,
                server_config,
                client_config,
                thread_counters,
                outbound_rx,
                inbound_tx,
                stop_rx,
                ready_tx,
            )
        })
        .map_err(TransportError::Thread)?;
    let started = ready_rx.recv().unwrap_or_else(|_| {
        Err(TransportError::Thread(std::io::Error::other(
            "the transport thread ended before starting",
        )))
    });
    if let Err(e) = started {
        let _ = thread.join();
        return Err(e);
    }
    let transport = Transport {
        node,
        local_addr,
        counters,
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    Ok((transport, links))
}

#[allow(clippy::too_many_arguments)]
fn run(
    cfg: TransportConfig,
    socket: UdpSocket,
    server_config: quinn::ServerConfig,
    client_config: quinn::ClientConfig,
    counters: Arc<Counters>,
    outbound_rx: Vec<Receiver<Outbound>>,
    inbound_tx: Vec<Sender<Inbound>>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
    ready_tx: std::sync::mpsc::Sender<Result<(), TransportError>>,
) {
    if let Some(cpu) = cfg.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            tracing::warn!(cpu, "could not pin the replication transport thread");
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready_tx.send(Err(TransportError::Thread(e)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let endpoint = match quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        ) {
            Ok(e) => e,
            Err(e) => {
                let _ = ready_tx.send(Err(TransportError::Thread(e)));
                return;
            }
        };
        let node = cfg.node;
        let peers = cfg
            .peers
            .iter()
            .filter(|(n, _)| **n != node)
            .map(|(n, a)| (*n, Rc::new(Peer::new(*n, *a))))
            .collect();
        let events: Vec<Rc<ShardEvents>> = (0..cfg.shards)
            .map(|_| Rc::new(ShardEvents::default()))
            .collect();
        let shutdown_timeout = Duration::from_millis(cfg.shutdown_timeout_ms);
        let shared = Rc::new(Shared {
            cfg,
            counters: counters.clone(),
            endpoint: endpoint.clone(),
            client_config,
            inbound: inbound_tx,
            events,
            peers,
            local: Lanes::default(),
            accepted: RefCell::new(BTreeMap::new()),
        });
        for (shard, e) in shared.events.iter().enumerate() {
            tokio::task::spawn_local(e.clone().run(shared.inbound[shard].clone()));
        }
        for peer in shared.peers.values() {
            tokio::task::spawn_local(outbound::dial(shared.clone(), peer.clone()));
        }
        for rx in outbound_rx {
            tokio::task::spawn_local(outbound::route(shared.clone(), rx));
        }
        tokio::task::spawn_local(inbound::accept(shared.clone()));
        let _ = ready_tx.send(Ok(()));
        tracing::info!(node = %node, addr = ?endpoint.local_addr().ok(), "replication transport up");

        let _ = stop_rx.await;
        endpoint.close(close::SHUTDOWN.into(), b"shutdown");
        for c in counters.peers.values() {
            c.connected.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = tokio::time::timeout(shutdown_timeout, endpoint.wait_idle()).await;
        tracing::info!(node = %node, "replication transport stopped");
    });
}
