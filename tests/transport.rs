//! The replication transport (`src/replication/transport`, `docs/REPLICATION.md`): real QUIC
//! with mutual TLS between transports in this process on 127.0.0.1, each one's shard channels
//! driven from the test thread; the UDP relay of `quill-testkit` for loss and partitions; and
//! `quill cluster init-certs` through the real binary.
//!
//! Every wait is bounded (`WAIT`); ports are bound at run time.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quill::replication::transport::{
    self, init_certs, Inbound, Outbound, ShardLink, TlsFiles, Transport, TransportConfig,
    TransportError,
};
use quill::types::{NodeId, ShardId};
use quill_testkit::relay::Relay;

const WAIT: Duration = Duration::from_secs(20);

fn certs(nodes: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    init_certs(dir.path(), nodes, false).unwrap();
    dir
}

fn sockets(n: usize) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect()
}

fn config(
    node: u32,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &Path,
    shards: usize,
) -> TransportConfig {
    let mut c = TransportConfig::new(
        NodeId(node),
        peers.clone(),
        TlsFiles::load(dir, NodeId(node)).unwrap(),
        shards,
    );
    // Generous for a loaded machine running debug builds: a connection that idles out under a
    // starved thread loses what was in flight, which these tests would read as a bug.
    c.idle_timeout_ms = 3_000;
    c.keepalive_ms = 300;
    c.connect_timeout_ms = 1_000;
    c.reconnect_backoff_ms_min = 20;
    c.reconnect_backoff_ms_max = 200;
    c
}

/// A running transport and what its shards have been handed so far.
struct Node {
    id: NodeId,
    transport: Option<Transport>,
    links: Vec<ShardLink>,
    seen: Vec<Vec<Inbound>>,
    /// Shards the test leaves unread (to fill their channels).
    unread: Vec<usize>,
}

impl Node {
    fn new(id: u32, (transport, links): (Transport, Vec<ShardLink>)) -> Node {
        let shards = links.len();
        Node {
            id: NodeId(id),
            transport: Some(transport),
            links,
            seen: vec![Vec::new(); shards],
            unread: Vec::new(),
        }
    }

    fn t(&self) -> &Transport {
        self.transport.as_ref().unwrap()
    }

    fn poll(&mut self) {
        for (i, link) in self.links.iter().enumerate() {
            if self.unread.contains(&i) {
                continue;
            }
            while let Ok(m) = link.rx.try_recv() {
                self.seen[i].push(m);
            }
        }
    }

    fn send(&self, from_shard: usize, to: u32, to_shard: u16, body: Bytes) {
        self.links[from_shard]
            .tx
            .send_blocking(Outbound {
                to: NodeId(to),
                to_shard: ShardId(to_shard),
                body,
            })
            .unwrap();
    }

    /// Message bodies shard `shard` received from `from`.
    fn messages(&self, shard: usize, from: u32) -> Vec<&Bytes> {
        self.seen[shard]
            .iter()
            .filter_map(|m| match m {
                Inbound::Message { from: f, body } if *f == NodeId(from) => Some(body),
                _ => None,
            })
            .collect()
    }

    fn message_count(&self) -> usize {
        self.seen
            .iter()
            .flatten()
            .filter(|m| matches!(m, Inbound::Message { .. }))
            .count()
    }

    /// The last event about `peer` on every shard, if all shards agree.
    fn peer_state(&self, peer: u32) -> Option<bool> {
        let states: Vec<Option<bool>> = self
            .seen
            .iter()
            .map(|s| {
                s.iter().rev().find_map(|m| match m {
                    Inbound::PeerUp(p) if *p == NodeId(peer) => Some(true),
                    Inbound::PeerDown(p) if *p == NodeId(peer) => Some(false),
                    _ => None,
                })
            })
            .collect();
        if states.iter().all(|s| *s == states[0]) {
            states[0]
        } else {
            None
        }
    }
}

/// Polls every node until `done` holds; false after `WAIT`.
fn wait_until(nodes: &mut [Node], mut done: impl FnMut(&[Node]) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        for n in nodes.iter_mut() {
            n.poll();
        }
        if done(nodes) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn all_up(nodes: &[Node]) -> bool {
    nodes.iter().all(|n| {
        nodes
            .iter()
            .filter(|m| m.id != n.id)
            .all(|m| n.peer_state(m.id.0) == Some(true))
    })
}

/// A body naming its sender, destination shard and sequence number, padded to `len`.
fn body(from: u32, to_shard: u16, seq: u32, len: usize) -> Bytes {
    let mut b = Vec::with_capacity(len.max(10));
    b.extend_from_slice(&from.to_be_bytes());
    b.extend_from_slice(&to_shard.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.resize(len.max(10), (seq % 251) as u8);
    Bytes::from(b)
}

fn decode(b: &Bytes) -> (u32, u16, u32) {
    (
        u32::from_be_bytes(b[0..4].try_into().unwrap()),
        u16::from_be_bytes(b[4..6].try_into().unwrap()),
        u32::from_be_bytes(b[6..10].try_into().unwrap()),
    )
}

/// Starts `n` nodes of `shards` shards from one certificate directory.
fn cluster(n: u32, shards: usize, dir: &Path, tune: impl Fn(&mut TransportConfig)) -> Vec<Node> {
    let socks = sockets(n as usize);
    let peers: BTreeMap<NodeId, SocketAddr> = socks
        .iter()
        .enumerate()
        .map(|(i, s)| (NodeId(i as u32 + 1), s.local_addr().unwrap()))
        .collect();
    socks
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let id = i as u32 + 1;
            let mut c = config(id, &peers, dir, shards);
            tune(&mut c);
            Node::new(id, transport::start_on(c, s).unwrap())
        })
        .collect()
}

#[test]
fn all_pairs_deliver_small_and_large_messages_to_the_shard_named_in_batches() {
    let dir = certs(3);
    let mut nodes = cluster(3, 2, dir.path(), |_| {});
    assert!(wait_until(&mut nodes, all_up), "peers never all up");
    const SMALL: u32 = 2_000;
    const LARGE: u32 = 3;
    for n in &nodes {
        for to in 1..=3u32 {
            for seq in 0..SMALL + LARGE {
                let shard = (seq % 2) as u16;
                let len = if seq >= SMALL { 1 << 20 } else { 100 };
                n.send(seq as usize % 2, to, shard, body(n.id.0, shard, seq, len));
            }
        }
    }
    let expected = 3 * (SMALL + LARGE) as usize;
    let ok = wait_until(&mut nodes, |ns| {
        ns.iter().all(|n| n.message_count() == expected)
    });
    let counts: Vec<usize> = nodes.iter().map(|n| n.message_count()).collect();
    assert!(ok, "received {counts:?}, expected {expected} each");
    for n in &nodes {
        for shard in 0..2usize {
            for from in 1..=3u32 {
                let msgs = n.messages(shard, from);
                let want = (0..SMALL + LARGE)
                    .filter(|s| *s as usize % 2 == shard)
                    .count();
                assert_eq!(msgs.len(), want);
                for m in msgs {
                    let (f, s, seq) = decode(m);
                    assert_eq!(
                        (f, s as usize),
                        (from, shard),
                        "routed to the shard it names"
                    );
                    let len = if seq >= SMALL { 1 << 20 } else { 100 };
                    assert_eq!(m.len(), len);
                    assert!(m[10..].iter().all(|b| *b == (seq % 251) as u8));
                }
            }
        }
        let stats = n.t().stats();
        for (peer, p) in &stats.peers {
            assert_eq!(p.messages_sent, (SMALL + LARGE) as u64, "to {peer}: {p:?}");
            assert_eq!(
                p.messages_received,
                (SMALL + LARGE) as u64,
                "from {peer}: {p:?}"
            );
            assert_eq!(p.dropped, 0, "{p:?}");
            if *peer != n.id {
                assert!(
                    p.batches_sent < p.messages_sent / 4,
                    "many messages per write: {p:?}"
                );
            }
        }
        println!("node {} stats: {stats:?}", n.id);
    }
}

#[test]
fn a_full_shard_channel_does_not_hold_up_another_shard() {
    let dir = certs(2);
    let mut nodes = cluster(2, 2, dir.path(), |c| c.channel_messages_max = 8);
    assert!(wait_until(&mut nodes, all_up));
    nodes[1].unread = vec![0];
    const N: u32 = 500;
    // From the peer and from the node itself: shard 0 fills up, shard 1 must still get all.
    for sender in [0usize, 1] {
        for seq in 0..N {
            for shard in [0u16, 1] {
                nodes[sender].send(0, 2, shard, body(sender as u32 + 1, shard, seq, 64));
            }
        }
    }
    assert!(
        wait_until(&mut nodes, |ns| ns[1].messages(1, 1).len() == N as usize
            && ns[1].messages(1, 2).len() == N as usize),
        "shard 1 got {} + {}",
        nodes[1].messages(1, 1).len(),
        nodes[1].messages(1, 2).len()
    );
    assert!(nodes[1].links[0].rx.is_full(), "shard 0 was held up");
    // Held back, not lost: shard 0 reads everything once it reads again.
    nodes[1].unread.clear();
    assert!(wait_until(&mut nodes, |ns| ns[1].messages(0, 1).len()
        == N as usize
        && ns[1].messages(0, 2).len() == N as usize));
    assert_eq!(nodes[0].t().stats().peers[&NodeId(2)].dropped, 0);
}

#[test]
fn peer_down_and_up_follow_a_shutdown_and_a_restart() {
    let dir = certs(2);
    let mut nodes = cluster(2, 2, dir.path(), |_| {});
    assert!(wait_until(&mut nodes, all_up));
    let addr2 = nodes[1].t().local_addr();
    let peers: BTreeMap<NodeId, SocketAddr> =
        [(NodeId(1), nodes[0].t().local_addr()), (NodeId(2), addr2)].into();
    let started = Instant::now();
    nodes[1].transport.take().unwrap().shutdown();
    assert!(wait_until(&mut nodes[..1], |ns| ns[0].peer_state(2) == Some(false)));
    println!("PeerDown seen {:?} after shutdown", started.elapsed());
    assert!(!nodes[0].t().stats().peers[&NodeId(2)].connected);
    // The stopped node's shards see their channels close.
    assert!(nodes[1].links[0]
        .tx
        .send_blocking(Outbound {
            to: NodeId(1),
            to_shard: ShardId(0),
            body: Bytes::from_static(b"x")
        })
        .is_err());
    // While down, messages to it are dropped and counted.
    nodes[0].send(0, 2, 0, body(1, 0, 0, 10));
    let dropped = || nodes[0].t().stats().peers[&NodeId(2)].dropped_peer_down;
    let deadline = Instant::now() + WAIT;
    while dropped() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dropped(), 1);

    nodes[1] = Node::new(
        2,
        transport::start(config(2, &peers, dir.path(), 2)).unwrap(),
    );
    assert!(wait_until(&mut nodes, all_up), "up again after the restart");
    assert_eq!(nodes[0].t().stats().peers[&NodeId(2)].connects, 2);
    nodes[0].send(0, 2, 1, body(1, 1, 7, 10));
    assert!(wait_until(&mut nodes, |ns| ns[1].messages(1, 1).len() == 1));
}

#[test]
fn a_node_with_another_ca_is_refused_and_delivers_nothing() {
    let dir = certs(3);
    let other = certs(3);
    let socks = sockets(3);
    let peers: BTreeMap<NodeId, SocketAddr> = socks
        .iter()
        .enumerate()
        .map(|(i, s)| (NodeId(i as u32 + 1), s.local_addr().unwrap()))
        .collect();
    let mut nodes: Vec<Node> = socks
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let id = i as u32 + 1;
            let d = if id == 3 { other.path() } else { dir.path() };
            Node::new(
                id,
                transport::start_on(config(id, &peers, d, 1), s).unwrap(),
            )
        })
        .collect();
    assert!(wait_until(&mut nodes, |ns| ns[0].peer_state(2)
        == Some(true)
        && ns[1].peer_state(1) == Some(true)
        && ns[0].t().stats().refused_connections > 0
        && ns[1].t().stats().refused_connections > 0));
    // Node 3 keeps trying to send; it never connects, so it only counts drops.
    for seq in 0..50 {
        nodes[2].send(0, 1, 0, body(3, 0, seq, 10));
        nodes[2].send(0, 2, 0, body(3, 0, seq, 10));
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes[0].send(0, 2, 0, body(1, 0, 0, 10));
    assert!(wait_until(&mut nodes, |ns| ns[1].messages(0, 1).len() == 1));
    for n in &nodes[..2] {
        assert!(n.messages(0, 3).is_empty());
        assert_eq!(n.peer_state(3), None, "never up");
        let s = n.t().stats();
        assert_eq!(s.peers[&NodeId(3)].messages_received, 0);
        assert!(
            !s.peers[&NodeId(3)].connected,
            "it refused node 3's certificate"
        );
    }
    let s3 = nodes[2].t().stats();
    assert_eq!(s3.peers[&NodeId(1)].connects, 0, "{s3:?}");
    assert_eq!(s3.peers[&NodeId(1)].dropped_peer_down, 50);
    assert!(s3.refused_connections > 0, "and it refused theirs");
}

#[test]
fn a_node_whose_certificate_names_an_id_not_in_the_peers_map_is_refused() {
    let dir = certs(4);
    let socks = sockets(2);
    let a1 = socks[0].local_addr().unwrap();
    let a4 = socks[1].local_addr().unwrap();
    let mut it = socks.into_iter();
    let peers1: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), a1)].into();
    let peers4: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), a1), (NodeId(4), a4)].into();
    let mut nodes = vec![
        Node::new(
            1,
            transport::start_on(config(1, &peers1, dir.path(), 1), it.next().unwrap()).unwrap(),
        ),
        Node::new(
            4,
            transport::start_on(config(4, &peers4, dir.path(), 1), it.next().unwrap()).unwrap(),
        ),
    ];
    assert!(wait_until(&mut nodes, |ns| ns[0]
        .t()
        .stats()
        .refused_connections
        >= 2));
    for seq in 0..20 {
        nodes[1].send(0, 1, 0, body(4, 0, seq, 10));
    }
    std::thread::sleep(Duration::from_millis(300));
    nodes[0].poll();
    assert_eq!(nodes[0].message_count(), 0);
    let s4 = nodes[1].t().stats();
    assert_eq!(
        s4.peers[&NodeId(1)].connects,
        0,
        "no welcome, so never up: {s4:?}"
    );
    assert_eq!(s4.peers[&NodeId(1)].dropped_peer_down, 20);
    assert_eq!(nodes[1].peer_state(1), None);
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    use rustls::pki_types::pem::PemObject;
    let dir = certs(2);
    let mut nodes = cluster(1, 1, dir.path(), |_| {});
    let target = nodes[0].t().local_addr();

    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap())
        .unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![transport::frame::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let client_config = quinn::ClientConfig::new(std::sync::Arc::new(quic));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connecting = ep
            .connect_with(client_config, target, "node-1.quill")
            .unwrap();
        let conn = match tokio::time::timeout(WAIT, connecting).await.unwrap() {
            Err(e) => return format!("handshake refused: {e}"),
            Ok(c) => c,
        };
        // The client finished its side; try to slip a frame in before the server's verdict.
        if let Ok(mut s) = conn.open_uni().await {
            let mut bytes = transport::frame::stream_header(ShardId(0)).to_vec();
            bytes.extend_from_slice(&transport::frame::frame_header(5));
            bytes.extend_from_slice(b"sneak");
            let _ = s.write_all(&bytes).await;
            let _ = s.finish();
        }
        let closed = tokio::time::timeout(WAIT, conn.closed()).await;
        format!("closed: {:?}", closed.expect("the server closes it"))
    });
    println!("no-certificate client: {outcome}");
    assert!(
        outcome.contains("certificate") || outcome.contains("Certificate"),
        "{outcome}"
    );
    std::thread::sleep(Duration::from_millis(200));
    nodes[0].poll();
    assert_eq!(nodes[0].message_count(), 0);
    assert!(nodes[0].t().stats().refused_connections >= 1);
}

#[test]
fn unknown_destinations_and_oversize_messages_are_counted_and_dropped() {
    let dir = certs(1);
    let mut nodes = cluster(1, 2, dir.path(), |c| c.frame_bytes_max = 1_000);
    nodes[0].send(0, 9, 0, body(1, 0, 0, 10));
    nodes[0].send(0, 1, 5, body(1, 5, 0, 10));
    nodes[0].send(0, 1, 0, body(1, 0, 0, 1_001));
    nodes[0].send(1, 1, 0, body(1, 0, 1, 1_000));
    assert!(wait_until(&mut nodes, |ns| ns[0].messages(0, 1).len() == 1));
    let s = nodes[0].t().stats();
    assert_eq!(
        (
            s.dropped_unknown_node,
            s.dropped_unknown_shard,
            s.dropped_oversize
        ),
        (1, 1, 1)
    );
    assert_eq!(decode(nodes[0].messages(0, 1)[0]).2, 1);
}

#[test]
fn start_refuses_with_typed_errors() {
    let dir = certs(2);
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peers: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), taken.local_addr().unwrap())].into();
    let e = transport::start(config(1, &peers, dir.path(), 1)).unwrap_err();
    assert!(matches!(e, TransportError::Bind { .. }), "{e}");
    let e = transport::start(config(2, &peers, dir.path(), 1)).unwrap_err();
    assert!(matches!(e, TransportError::Config(_)), "not in peers: {e}");
    let mut c = config(1, &peers, dir.path(), 1);
    c.tls = TlsFiles::load(dir.path(), NodeId(2)).unwrap();
    let e = transport::start(c).unwrap_err();
    assert!(e.to_string().contains("TLS files are node 2's"), "{e}");
    let mut c = config(1, &peers, dir.path(), 1);
    c.cpu = Some(100_000);
    let e = transport::start(c).unwrap_err();
    assert!(matches!(e, TransportError::Cpu { .. }), "{e}");
}

/// Three nodes, each behind a relay: node i names its own real address and the others' fronts.
fn relayed_cluster(dir: &Path, seed: u64) -> (Vec<Node>, Vec<Relay>, Vec<SocketAddr>) {
    let socks = sockets(3);
    let real: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let relays: Vec<Relay> = real
        .iter()
        .enumerate()
        .map(|(i, a)| Relay::start(*a, seed + i as u64).unwrap())
        .collect();
    let nodes = socks
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let peers: BTreeMap<NodeId, SocketAddr> = (0..3)
                .map(|j| {
                    let a = if j == i {
                        real[j]
                    } else {
                        relays[j].front_addr()
                    };
                    (NodeId(j as u32 + 1), a)
                })
                .collect();
            let id = i as u32 + 1;
            Node::new(
                id,
                transport::start_on(config(id, &peers, dir, 1), s).unwrap(),
            )
        })
        .collect();
    (nodes, relays, real)
}

fn send_all_pairs(nodes: &[Node], seq0: u32, n: u32) {
    for s in nodes {
        for to in nodes.iter().filter(|t| t.id != s.id) {
            for seq in seq0..seq0 + n {
                s.send(0, to.id.0, 0, body(s.id.0, 0, seq, 200));
            }
        }
    }
}

#[test]
fn through_relays_a_cut_node_goes_down_and_comes_back_when_healed() {
    let dir = certs(3);
    let (mut nodes, relays, real) = relayed_cluster(dir.path(), 11);
    assert!(wait_until(&mut nodes, all_up), "up through the relays");
    send_all_pairs(&nodes, 0, 100);
    assert!(wait_until(&mut nodes, |ns| ns
        .iter()
        .all(|n| n.message_count() == 200)));

    for r in &relays {
        r.cut(real[2]);
    }
    let cut_at = Instant::now();
    assert!(wait_until(&mut nodes, |ns| ns[0].peer_state(3)
        == Some(false)
        && ns[1].peer_state(3) == Some(false)
        && ns[2].peer_state(1) == Some(false)
        && ns[2].peer_state(2) == Some(false)));
    println!("isolated node seen down after {:?}", cut_at.elapsed());
    assert_eq!(
        nodes[0].peer_state(2),
        Some(true),
        "1 and 2 still see each other"
    );
    send_all_pairs(&nodes, 100, 10);
    assert!(wait_until(&mut nodes, |ns| ns[0].messages(0, 2).len()
        == 110
        && ns[1].messages(0, 1).len() == 110));
    std::thread::sleep(Duration::from_millis(200));
    nodes[2].poll();
    assert_eq!(
        nodes[2].message_count(),
        200,
        "nothing reaches the cut node"
    );
    assert!(nodes[0].t().stats().peers[&NodeId(3)].dropped >= 10);
    assert!(relays[2].stats().cut > 0);

    for r in &relays {
        r.heal(real[2]);
    }
    assert!(wait_until(&mut nodes, all_up), "up again once healed");
    send_all_pairs(&nodes, 200, 10);
    assert!(wait_until(&mut nodes, |ns| ns[2].messages(0, 1).len()
        == 110
        && ns[2].messages(0, 2).len() == 110));
}

#[test]
fn through_lossy_duplicating_slow_relays_everything_still_arrives() {
    let dir = certs(3);
    let (mut nodes, relays, _) = relayed_cluster(dir.path(), 42);
    assert!(wait_until(&mut nodes, all_up));
    for r in &relays {
        r.set_drop_probability(0.1);
        r.set_duplicate_probability(0.1);
        r.set_delay_ms(5);
    }
    send_all_pairs(&nodes, 0, 300);
    let ok = wait_until(&mut nodes, |ns| ns.iter().all(|n| n.message_count() == 600));
    let counts: Vec<usize> = nodes.iter().map(|n| n.message_count()).collect();
    let stats: Vec<_> = relays.iter().map(|r| r.stats()).collect();
    println!("relay stats: {stats:?}");
    assert!(ok, "QUIC recovers the losses: {counts:?}");
    assert!(
        stats.iter().all(|s| s.dropped > 0 && s.duplicated > 0),
        "{stats:?}"
    );
    let dropped: u64 = stats.iter().map(|s| s.dropped).sum();
    let total: u64 = stats
        .iter()
        .map(|s| s.dropped + s.forwarded - s.duplicated)
        .sum();
    let rate = dropped as f64 / total as f64;
    assert!((0.03..0.25).contains(&rate), "drop rate {rate} for p = 0.1");
}

#[test]
fn init_certs_through_the_binary_writes_private_keys_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let quill = env!("CARGO_BIN_EXE_quill");
    let run = |args: &[&str]| {
        std::process::Command::new(quill)
            .args(["cluster", "init-certs"])
            .arg(&dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--nodes", "2"]);
    assert!(out.status.success(), "{out:?}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca-key.pem",
            "ca.pem",
            "node-1-key.pem",
            "node-1.pem",
            "node-2-key.pem",
            "node-2.pem"
        ]
    );
    for n in &names {
        let mode = std::fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
        let want = if n.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode, want, "{n}");
    }
    TlsFiles::load(&dir, NodeId(2)).unwrap();
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    assert!(!dir.join("node-3.pem").exists());

    let out = run(&["--force", "--nodes", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    TlsFiles::load(&dir, NodeId(3)).unwrap();

    let out = run(&["--nodes", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Not a timed assertion: prints the one-way hop latency (half a round trip, median and p99)
/// and the one-way message rate between two transports in this process.
#[test]
fn hop_latency_and_message_rate() {
    let dir = certs(2);
    let mut nodes = cluster(2, 1, dir.path(), |_| {});
    assert!(wait_until(&mut nodes, all_up));
    for n in nodes.iter_mut() {
        n.seen[0].clear();
    }
    let recv = |n: &Node| loop {
        match n.links[0].rx.recv_blocking().unwrap() {
            Inbound::Message { body, .. } => return body,
            _ => continue,
        }
    };
    let rounds = if cfg!(debug_assertions) { 300 } else { 3_000 };
    let mut rtts = Vec::with_capacity(rounds);
    for seq in 0..rounds as u32 {
        let t = Instant::now();
        nodes[0].send(0, 2, 0, body(1, 0, seq, 100));
        let b = recv(&nodes[1]);
        nodes[1].send(0, 1, 0, b);
        let back = recv(&nodes[0]);
        rtts.push(t.elapsed());
        assert_eq!(decode(&back).2, seq);
    }
    rtts.sort();
    let half = |d: Duration| d / 2;
    println!(
        "one-way hop: median {:?}, p99 {:?} ({rounds} round trips of 100-byte messages)",
        half(rtts[rounds / 2]),
        half(rtts[rounds * 99 / 100])
    );

    // A sender faster than the connection overruns its lane (lane_bytes_max) and loses
    // messages, by design: the figures count what arrived, and the drops are printed.
    let count: u32 = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    for size in [100usize, 4096] {
        let dropped_before = nodes[0].t().stats().peers[&NodeId(2)].dropped;
        let t = Instant::now();
        let sender = {
            let tx = nodes[0].links[0].tx.clone();
            std::thread::spawn(move || {
                for seq in 0..count {
                    tx.send_blocking(Outbound {
                        to: NodeId(2),
                        to_shard: ShardId(0),
                        body: body(1, 0, seq, size),
                    })
                    .unwrap();
                }
            })
        };
        let deadline = Instant::now() + WAIT;
        let mut received = 0u64;
        let mut last = t.elapsed();
        loop {
            match nodes[1].links[0].rx.try_recv() {
                Ok(Inbound::Message { .. }) => {
                    received += 1;
                    last = t.elapsed();
                }
                Ok(_) => {}
                Err(_) => {
                    let dropped = nodes[0].t().stats().peers[&NodeId(2)].dropped - dropped_before;
                    if received + dropped >= count as u64 || Instant::now() > deadline {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        }
        sender.join().unwrap();
        let dropped = nodes[0].t().stats().peers[&NodeId(2)].dropped - dropped_before;
        assert_eq!(
            received + dropped,
            count as u64,
            "every message arrived or was counted"
        );
        println!(
            "one-way rate: {received} of {count} messages of {size} bytes in {last:?} ({dropped} dropped): {:.0} messages/s, {:.1} MiB/s",
            received as f64 / last.as_secs_f64(),
            (received as usize * size) as f64 / last.as_secs_f64() / (1 << 20) as f64
        );
    }
    let s = nodes[0].t().stats().peers[&NodeId(2)].clone();
    println!(
        "sender: {} messages in {} writes ({:.1} per write), dropped {}",
        s.messages_sent,
        s.batches_sent,
        s.messages_sent as f64 / s.batches_sent.max(1) as f64,
        s.dropped
    );
}
