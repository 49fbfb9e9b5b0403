//! [`TransportConfig`]: every setting of the inter-broker transport, each limit with its unit.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::error::TransportError;
use super::tls::TlsFiles;
use crate::types::NodeId;

/// The largest shard count a transport serves (shard ids are `u16`; the broker caps at 1024).
pub const SHARDS_MAX: usize = 1024;

/// The settings of one broker's transport. Built once by the broker (or a test) and moved into
/// [`super::start`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This node (>= 1).
    pub node: NodeId,
    /// Every node of the cluster, this one included: the transport binds its own entry and dials
    /// the others. A peer is accepted only if its certificate names a node of this map.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The CA and this node's certificate and key (`TlsFiles::load(dir, node)`).
    pub tls: TlsFiles,
    /// The CPU the transport thread is pinned to; `None` leaves it to the scheduler.
    pub cpu: Option<usize>,
    /// Shards on this node: one [`super::ShardLink`] each (1 to [`SHARDS_MAX`]).
    pub shards: usize,
    /// Capacity of each shard's channel, in each direction, in messages. A full outbound channel
    /// makes the shard wait (backpressure); a full inbound channel holds back only the streams
    /// bound for that shard.
    pub channel_messages_max: usize,
    /// The largest message body, in bytes; larger outbound messages are dropped and counted, a
    /// larger inbound frame closes the connection.
    pub frame_bytes_max: u32,
    /// The most frame bytes (headers included) written to a stream in one write, in bytes; a
    /// message larger than this still goes, alone.
    pub peer_batch_bytes_max: usize,
    /// Body bytes queued per (peer, destination shard) lane, in bytes, before further messages
    /// to that lane are dropped and counted. Raft's own flow control should keep far below it.
    pub lane_bytes_max: usize,
    /// Distinct destination shards (lanes, so uni streams) per peer.
    pub lanes_per_peer_max: u32,
    /// How long a dial may take before it counts as failed, in milliseconds.
    pub connect_timeout_ms: u64,
    /// A connection silent this long is dead (QUIC idle timeout), in milliseconds.
    pub idle_timeout_ms: u64,
    /// Interval of QUIC keep-alive packets, in milliseconds; well under `idle_timeout_ms`.
    pub keepalive_ms: u64,
    /// First wait before redialing a peer, in milliseconds; doubled after each failure.
    pub reconnect_backoff_ms_min: u64,
    /// Longest wait before redialing a peer, in milliseconds.
    pub reconnect_backoff_ms_max: u64,
    /// QUIC receive window of one stream (one lane), in bytes: what a stalled shard can leave
    /// unread. The connection's window is this times `shards + 1`, so every lane of this node
    /// can stall and one more still flows.
    pub stream_receive_window_bytes: u32,
    /// How long `shutdown` waits for connections to close cleanly, in milliseconds.
    pub shutdown_timeout_ms: u64,
}

impl TransportConfig {
    /// The defaults for everything but the cluster and the certificates.
    pub fn new(
        node: NodeId,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: TlsFiles,
        shards: usize,
    ) -> Self {
        TransportConfig {
            node,
            peers,
            tls,
            cpu: None,
            shards,
            channel_messages_max: 4096,
            frame_bytes_max: 16 << 20,
            peer_batch_bytes_max: 1 << 20,
            lane_bytes_max: 64 << 20,
            lanes_per_peer_max: SHARDS_MAX as u32,
            connect_timeout_ms: 2_000,
            idle_timeout_ms: 1_500,
            keepalive_ms: 300,
            reconnect_backoff_ms_min: 50,
            reconnect_backoff_ms_max: 1_000,
            stream_receive_window_bytes: 4 << 20,
            shutdown_timeout_ms: 1_000,
        }
    }

    /// Refuses impossible settings by name, TLS files of another node, and a CPU this process
    /// may not run on.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |m: String| Err(TransportError::Config(m));
        if self.node.0 == 0 {
            return bad("node id must be >= 1".into());
        }
        if !self.peers.contains_key(&self.node) {
            return bad(format!(
                "peers must name this node ({}) with its own address",
                self.node
            ));
        }
        if let Some(id) = self.peers.keys().find(|id| id.0 == 0) {
            return bad(format!("peer id {id} must be >= 1"));
        }
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return bad(format!("shards {} not in 1..={SHARDS_MAX}", self.shards));
        }
        if self.channel_messages_max == 0 {
            return bad("channel_messages_max must be >= 1".into());
        }
        if self.frame_bytes_max == 0 {
            return bad("frame_bytes_max must be >= 1".into());
        }
        if self.peer_batch_bytes_max == 0 {
            return bad("peer_batch_bytes_max must be >= 1".into());
        }
        if self.lane_bytes_max < self.frame_bytes_max as usize {
            return bad(format!(
                "lane_bytes_max {} must hold one frame_bytes_max ({})",
                self.lane_bytes_max, self.frame_bytes_max
            ));
        }
        if self.lanes_per_peer_max == 0 {
            return bad("lanes_per_peer_max must be >= 1".into());
        }
        if self.connect_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return bad("connect_timeout_ms and idle_timeout_ms must be >= 1".into());
        }
        if self.keepalive_ms == 0 || self.keepalive_ms >= self.idle_timeout_ms {
            return bad(format!(
                "keepalive_ms {} must be in 1..idle_timeout_ms ({})",
                self.keepalive_ms, self.idle_timeout_ms
            ));
        }
        if self.reconnect_backoff_ms_min == 0
            || self.reconnect_backoff_ms_min > self.reconnect_backoff_ms_max
        {
            return bad(format!(
                "reconnect_backoff_ms_min {} must be in 1..=reconnect_backoff_ms_max ({})",
                self.reconnect_backoff_ms_min, self.reconnect_backoff_ms_max
            ));
        }
        if self.stream_receive_window_bytes < 1024 {
            return bad("stream_receive_window_bytes must be >= 1024".into());
        }
        if self.tls.node() != self.node {
            return bad(format!(
                "the TLS files are node {}'s, this is node {}",
                self.tls.node(),
                self.node
            ));
        }
        if let Some(cpu) = self.cpu {
            let available: Vec<usize> = core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect();
            if !available.contains(&cpu) {
                return Err(TransportError::Cpu { cpu, available });
            }
        }
        Ok(())
    }

    /// The QUIC receive window of a whole connection, in bytes.
    pub fn connection_receive_window_bytes(&self) -> u64 {
        self.stream_receive_window_bytes as u64 * (self.shards as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::transport::certs::init_certs;

    #[test]
    fn impossible_settings_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        init_certs(dir.path(), 1, false).unwrap();
        let tls = TlsFiles::load(dir.path(), NodeId(1)).unwrap();
        let peers = [(NodeId(1), "127.0.0.1:1".parse().unwrap())].into();
        let good = TransportConfig::new(NodeId(1), peers, tls, 2);
        good.validate().unwrap();
        assert_eq!(good.connection_receive_window_bytes(), 3 * (4 << 20));
        let refused = |f: &dyn Fn(&mut TransportConfig), name: &str| {
            let mut c = good.clone();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{name}: {e}");
        };
        refused(&|c| c.shards = 0, "shards");
        refused(&|c| c.shards = SHARDS_MAX + 1, "shards");
        refused(&|c| c.channel_messages_max = 0, "channel_messages_max");
        refused(&|c| c.frame_bytes_max = 0, "frame_bytes_max");
        refused(&|c| c.lane_bytes_max = 10, "lane_bytes_max");
        refused(&|c| c.keepalive_ms = c.idle_timeout_ms, "keepalive_ms");
        refused(
            &|c| c.reconnect_backoff_ms_min = 0,
            "reconnect_backoff_ms_min",
        );
        refused(&|c| c.node = NodeId(2), "peers must name this node");
        refused(
            &|c| c.stream_receive_window_bytes = 10,
            "stream_receive_window_bytes",
        );
    }
}
