//! Sending: the router of each shard's outbound channel, the lanes (one queue and one writer
//! task per destination shard of each peer), and the dialer that keeps one connection per peer.
//!
//! Why a lane per (peer, destination shard), each on its own long-lived uni stream: QUIC flow
//! control is per stream, so a destination shard that stops reading stalls only its own stream
//! and its own lane, while the router never waits on a lane (a full lane drops and counts). A
//! long-lived stream costs one stream open per lane per connection, against one per flush for
//! short-lived streams, and keeps a lane's messages in order.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use bytes::Bytes;
use tokio::sync::Notify;

use super::frame::{stream_header, LaneFull, LaneQueue, STREAM_VERSION};
use super::runtime::Shared;
use super::stats::add;
use super::tls::node_name;
use super::{Inbound, Outbound};
use crate::types::{NodeId, ShardId};

/// How many messages a router moves before it lets the other tasks run.
const ROUTE_TURN_MESSAGES_MAX: usize = 1024;
/// A connection that lived less than this did not prove the peer healthy: the redial backoff
/// keeps growing instead of starting over (a peer that accepts and then refuses us).
const HEALTHY_CONNECTION_MS: u64 = 1_000;

/// The queue and wake-up of one lane. Lives on the transport thread.
#[derive(Debug)]
pub(crate) struct Lane {
    queue: RefCell<LaneQueue>,
    wake: Notify,
}

/// Lanes by destination shard.
#[derive(Debug, Default)]
pub(crate) struct Lanes(RefCell<HashMap<ShardId, Rc<Lane>>>);

/// Another node as this node's sender sees it. Lives on the transport thread.
#[derive(Debug)]
pub(crate) struct Peer {
    node: NodeId,
    addr: SocketAddr,
    /// The connection this node dialed, while it is up.
    conn: RefCell<Option<quinn::Connection>>,
    lanes: Lanes,
}

impl Peer {
    pub(crate) fn new(node: NodeId, addr: SocketAddr) -> Self {
        Peer {
            node,
            addr,
            conn: RefCell::new(None),
            lanes: Lanes::default(),
        }
    }
}

/// Moves one shard's outbound messages to their lanes until the shard drops its sender.
pub(crate) async fn route(shared: Rc<Shared>, rx: Receiver<Outbound>) {
    while let Ok(first) = rx.recv().await {
        route_one(&shared, first);
        // Drain what is already queued in one go: one wake-up per lane, not per message.
        for _ in 1..ROUTE_TURN_MESSAGES_MAX {
            match rx.try_recv() {
                Ok(m) => route_one(&shared, m),
                Err(_) => break,
            }
        }
    }
}

fn route_one(shared: &Rc<Shared>, m: Outbound) {
    let c = &shared.counters;
    if m.body.len() > shared.cfg.frame_bytes_max as usize {
        add(&c.dropped_oversize, 1);
        tracing::debug!(to = %m.to, len = m.body.len(), "replication message over frame_bytes_max dropped");
        return;
    }
    if m.to == shared.cfg.node {
        if m.to_shard.0 as usize >= shared.cfg.shards {
            add(&c.dropped_unknown_shard, 1);
            return;
        }
        let (lane, new) = lane_of(&shared.local, m.to_shard, shared.cfg.lane_bytes_max);
        if new {
            tokio::task::spawn_local(deliver_local(shared.clone(), m.to_shard, lane.clone()));
        }
        push(&lane, m.body, &c.peer(m.to).dropped_lane_full);
        return;
    }
    let Some(peer) = shared.peers.get(&m.to) else {
        add(&c.dropped_unknown_node, 1);
        return;
    };
    let pc = c.peer(m.to);
    if peer.conn.borrow().is_none() {
        add(&pc.dropped_peer_down, 1);
        return;
    }
    let lanes = peer.lanes.0.borrow().len();
    if lanes >= shared.cfg.lanes_per_peer_max as usize
        && !peer.lanes.0.borrow().contains_key(&m.to_shard)
    {
        add(&pc.dropped_lane_full, 1);
        return;
    }
    let (lane, new) = lane_of(&peer.lanes, m.to_shard, shared.cfg.lane_bytes_max);
    if new {
        tokio::task::spawn_local(write_lane(
            shared.clone(),
            peer.clone(),
            m.to_shard,
            lane.clone(),
        ));
    }
    push(&lane, m.body, &pc.dropped_lane_full);
}

fn lane_of(lanes: &Lanes, shard: ShardId, bytes_max: usize) -> (Rc<Lane>, bool) {
    let mut map = lanes.0.borrow_mut();
    if let Some(l) = map.get(&shard) {
        return (l.clone(), false);
    }
    let lane = Rc::new(Lane {
        queue: RefCell::new(LaneQueue::new(bytes_max)),
        wake: Notify::new(),
    });
    map.insert(shard, lane.clone());
    (lane, true)
}

fn push(lane: &Lane, body: Bytes, full: &std::sync::atomic::AtomicU64) {
    match lane.queue.borrow_mut().push(body) {
        Ok(()) => lane.wake.notify_one(),
        Err(LaneFull) => add(full, 1),
    }
}

/// Hands this node's own messages to its shards, one lane per shard so a full shard holds up
/// only its own lane.
async fn deliver_local(shared: Rc<Shared>, shard: ShardId, lane: Rc<Lane>) {
    let node = shared.cfg.node;
    let tx = shared.inbound[shard.0 as usize].clone();
    let pc = shared.counters.peer(node);
    loop {
        lane.wake.notified().await;
        loop {
            let next = lane.queue.borrow_mut().take_batch(1);
            if next.messages == 0 {
                break;
            }
            let body = next.chunks.into_iter().nth(1).expect("a header and a body");
            let len = body.len() as u64;
            if tx
                .send(Inbound::Message { from: node, body })
                .await
                .is_err()
            {
                return;
            }
            add(&pc.messages_sent, 1);
            add(&pc.bytes_sent, len);
            add(&pc.messages_received, 1);
            add(&pc.bytes_received, len);
        }
    }
}

/// Writes one lane to its peer: drains the queue in batches of up to `peer_batch_bytes_max`,
/// one write each, on a uni stream opened on the current connection.
async fn write_lane(shared: Rc<Shared>, peer: Rc<Peer>, shard: ShardId, lane: Rc<Lane>) {
    let pc = shared.counters.peer(peer.node);
    // The stream and the id of the connection it belongs to.
    let mut stream: Option<(usize, quinn::SendStream)> = None;
    loop {
        lane.wake.notified().await;
        loop {
            if lane.queue.borrow().is_empty() {
                break;
            }
            let conn = peer.conn.borrow().clone();
            let Some(conn) = conn else {
                let n = lane.queue.borrow_mut().clear();
                add(&pc.dropped_peer_down, n);
                stream = None;
                break;
            };
            let mut chunks = Vec::new();
            if stream.as_ref().map(|(id, _)| *id) != Some(conn.stable_id()) {
                match conn.open_uni().await {
                    Ok(s) => {
                        stream = Some((conn.stable_id(), s));
                        chunks.push(Bytes::copy_from_slice(&stream_header(shard)));
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.node, %shard, "cannot open a stream: {e}");
                        let n = lane.queue.borrow_mut().clear();
                        add(&pc.dropped_write_failed, n);
                        stream = None;
                        break;
                    }
                }
            }
            let batch = lane
                .queue
                .borrow_mut()
                .take_batch(shared.cfg.peer_batch_bytes_max);
            chunks.extend(batch.chunks);
            let (_, s) = stream.as_mut().expect("opened above");
            match s.write_all_chunks(&mut chunks).await {
                Ok(()) => {
                    add(&pc.messages_sent, batch.messages);
                    add(&pc.bytes_sent, batch.body_bytes);
                    add(&pc.batches_sent, 1);
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.node, %shard, "write failed: {e}");
                    add(&pc.dropped_write_failed, batch.messages);
                    stream = None;
                }
            }
        }
    }
}

/// Keeps one connection to `peer`: dial, wait for the peer's welcome, post `PeerUp`, wait for
/// the end, post `PeerDown`, back off, again, until the transport stops.
pub(crate) async fn dial(shared: Rc<Shared>, peer: Rc<Peer>) {
    let min = shared.cfg.reconnect_backoff_ms_min;
    let max = shared.cfg.reconnect_backoff_ms_max;
    let pc = shared.counters.peer(peer.node);
    let mut backoff_ms = min;
    let mut failures = 0u64;
    loop {
        match connect(&shared, &peer).await {
            Ok(conn) => {
                let since = Instant::now();
                failures = 0;
                *peer.conn.borrow_mut() = Some(conn.clone());
                pc.connected
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                add(&pc.connects, 1);
                tracing::info!(peer = %peer.node, addr = %peer.addr, "replication peer up");
                shared.post_peer_event(peer.node, true);
                let reason = conn.closed().await;
                *peer.conn.borrow_mut() = None;
                pc.connected
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(peer = %peer.node, addr = %peer.addr, "replication peer down: {reason}");
                shared.post_peer_event(peer.node, false);
                // Writers find no connection and drop what they hold.
                for lane in peer.lanes.0.borrow().values() {
                    lane.wake.notify_one();
                }
                if since.elapsed() >= Duration::from_millis(HEALTHY_CONNECTION_MS) {
                    backoff_ms = min;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(peer = %peer.node, addr = %peer.addr, "cannot connect to replication peer (retrying): {e}");
                } else {
                    tracing::debug!(peer = %peer.node, addr = %peer.addr, failures, "cannot connect to replication peer: {e}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(max);
    }
}

/// One dial: the QUIC and TLS handshake, then the welcome stream the acceptor opens once it has
/// admitted this node (a TLS 1.3 client finishes its handshake before the server has checked
/// the client's certificate, so the handshake alone does not mean the peer took us).
async fn connect(shared: &Shared, peer: &Peer) -> Result<quinn::Connection, String> {
    let timeout = Duration::from_millis(shared.cfg.connect_timeout_ms);
    let connecting = shared
        .endpoint
        .connect_with(
            shared.client_config.clone(),
            peer.addr,
            &node_name(peer.node),
        )
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let conn = connecting.await.map_err(|e| e.to_string())?;
        let mut welcome = conn.accept_uni().await.map_err(|e| e.to_string())?;
        let mut version = [0u8; 1];
        welcome
            .read_exact(&mut version)
            .await
            .map_err(|e| format!("no welcome: {e}"))?;
        if version[0] != STREAM_VERSION {
            conn.close(super::runtime::close::PROTOCOL.into(), b"welcome version");
            return Err(format!("peer speaks stream version {}", version[0]));
        }
        Ok(conn)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no connection within connect_timeout_ms {}",
            shared.cfg.connect_timeout_ms
        )),
    }
}
