//! Receiving: the accept loop, the admission of each connection (the node comes from its
//! certificate), and one reader task per incoming stream, which awaits only its own shard's
//! channel, so a full shard holds back only the streams bound for it.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;

use super::frame::{
    parse_frame_header, parse_stream_header, FrameError, FRAME_HEADER_BYTES, STREAM_HEADER_BYTES,
    STREAM_VERSION,
};
use super::runtime::{close, Shared};
use super::stats::add;
use super::tls::peer_node;
use super::Inbound;
use crate::types::NodeId;

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(shared: Rc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        tokio::task::spawn_local(admit(shared.clone(), incoming));
    }
}

fn refuse(shared: &Shared, remote: std::net::SocketAddr, reason: &str) {
    add(&shared.counters.refused_connections, 1);
    tracing::warn!(%remote, "refused a replication connection: {reason}");
}

/// The handshake (the verifier refuses a certificate that is missing, from another CA, or names
/// no node of the peers map), the welcome, then the streams.
async fn admit(shared: Rc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return refuse(&shared, remote, &e.to_string()),
    };
    let timeout = Duration::from_millis(shared.cfg.connect_timeout_ms);
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return refuse(&shared, remote, &format!("handshake failed: {e}")),
        Err(_) => return refuse(&shared, remote, "handshake timed out"),
    };
    let node = match peer_node(&conn, shared.other_nodes()) {
        Ok(n) => n,
        Err(reason) => {
            conn.close(close::REFUSED.into(), reason.as_bytes());
            return refuse(&shared, remote, &reason);
        }
    };
    if let Some(old) = shared.accepted.borrow_mut().insert(node, conn.clone()) {
        old.close(close::REPLACED.into(), b"replaced by a newer connection");
    }
    tracing::info!(peer = %node, %remote, "accepted a replication connection");
    let welcomed = async {
        let mut s = conn.open_uni().await?;
        s.write_all(&[STREAM_VERSION]).await?;
        s.finish()?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    if let Err(e) = welcomed.await {
        tracing::debug!(peer = %node, "welcome not sent: {e}");
    }
    let reason = loop {
        match conn.accept_uni().await {
            Ok(stream) => {
                tokio::task::spawn_local(read_stream(shared.clone(), conn.clone(), node, stream));
            }
            Err(e) => break e,
        }
    };
    tracing::debug!(peer = %node, %remote, "replication connection ended: {reason}");
    let mut accepted = shared.accepted.borrow_mut();
    if accepted.get(&node).map(|c| c.stable_id()) == Some(conn.stable_id()) {
        accepted.remove(&node);
    }
}

fn protocol_error(shared: &Shared, conn: &quinn::Connection, from: NodeId, e: FrameError) {
    add(&shared.counters.protocol_errors, 1);
    tracing::warn!(peer = %from, "closing a replication connection: {e}");
    conn.close(close::PROTOCOL.into(), e.to_string().as_bytes());
}

/// Reads one stream's frames and hands each message to the shard the stream names, waiting for
/// room in that shard's channel (backpressure to the peer through this stream's flow control).
async fn read_stream(
    shared: Rc<Shared>,
    conn: quinn::Connection,
    from: NodeId,
    mut s: quinn::RecvStream,
) {
    let mut header = [0u8; STREAM_HEADER_BYTES];
    if s.read_exact(&mut header).await.is_err() {
        return;
    }
    let shard = match parse_stream_header(header) {
        Ok(shard) => shard,
        Err(e) => return protocol_error(&shared, &conn, from, e),
    };
    let tx = shared.inbound.get(shard.0 as usize).cloned();
    let pc = shared.counters.peer(from);
    loop {
        let mut fh = [0u8; FRAME_HEADER_BYTES];
        if s.read_exact(&mut fh).await.is_err() {
            return; // finished, reset, or the connection went
        }
        let len = match parse_frame_header(fh, shared.cfg.frame_bytes_max) {
            Ok(len) => len as usize,
            Err(e) => return protocol_error(&shared, &conn, from, e),
        };
        let mut body = BytesMut::zeroed(len);
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        let Some(tx) = &tx else {
            add(&shared.counters.dropped_unknown_shard, 1);
            continue;
        };
        let body = body.freeze();
        let len = body.len() as u64;
        if tx.send(Inbound::Message { from, body }).await.is_err() {
            return; // the shard is gone: the node is stopping
        }
        add(&pc.messages_received, 1);
        add(&pc.bytes_received, len);
    }
}
