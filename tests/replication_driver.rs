//! Three replicas of one partition, each driven by the shard driver (`replication::driver`)
//! against a real `PartitionLog` on disk, on one executor, with an in-process network between
//! them that a test can cut: elections, `acks=all` produces, identical logs, a failover, and a
//! replica that comes back and catches up. (The QUIC transport is tested on its own; the real
//! processes in `cluster_*.rs`.)

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use quill::disk::{Durability, LogConfig, PartitionLog};
use quill::replication::driver::{Group, Inbound, Outbound, Replication, ShardLink};
use quill::replication::message::GroupId;
use quill::replication::raft::{Acks, ReplicaConfig};
use quill::shard::placement::Placement;
use quill::types::{NodeId, Offset, ShardId, TopicPartition};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        batch_bytes_max: 64 << 10,
        durability: Durability::Sync,
        ..small_config()
    }
}

/// Which nodes can currently reach each other.
struct Wires {
    cut: RefCell<Vec<u32>>,
}

/// Starts one node's `Replication` and routes what it sends to the others' inbound channels,
/// dropping what crosses a cut.
fn node_link(
    wires: &Rc<Wires>,
    inbound: &Rc<RefCell<Vec<async_channel::Sender<Inbound>>>>,
    id: u32,
) -> ShardLink {
    let (out_tx, out_rx) = async_channel::bounded::<Outbound>(1024);
    let (in_tx, in_rx) = async_channel::bounded::<Inbound>(1024);
    inbound.borrow_mut()[id as usize - 1] = in_tx;
    let wires = wires.clone();
    let inbound = inbound.clone();
    glommio::spawn_local(async move {
        while let Ok(o) = out_rx.recv().await {
            let cut = wires.cut.borrow();
            if cut.contains(&id) || cut.contains(&o.to.0) {
                continue;
            }
            drop(cut);
            let tx = inbound.borrow()[o.to.0 as usize - 1].clone();
            let _ = tx.try_send(Inbound::Message {
                from: NodeId(id),
                body: o.body,
            });
        }
    })
    .detach();
    ShardLink {
        tx: out_tx,
        rx: in_rx,
    }
}

struct Node {
    repl: Rc<Replication>,
    group: Rc<Group>,
}

async fn start_node(
    dir: &std::path::Path,
    id: u32,
    wires: &Rc<Wires>,
    inbound: &Rc<RefCell<Vec<async_channel::Sender<Inbound>>>>,
) -> Node {
    let tp = TopicPartition::new("t", 0);
    let placement = Placement::replicated(&[
        (NodeId(1), ShardId(0)),
        (NodeId(2), ShardId(0)),
        (NodeId(3), ShardId(0)),
    ]);
    let cfg = ReplicaConfig {
        tick_ms: 20,
        ..ReplicaConfig::default()
    };
    let link = node_link(wires, inbound, id);
    let repl = Replication::start(NodeId(id), cfg.clone(), link, 4096);
    let (log, _) = PartitionLog::open(dir.join(format!("node-{id}")), options(config()))
        .await
        .unwrap();
    let group = Group::start(
        tp,
        GroupId::new(0, 0),
        NodeId(id),
        placement,
        cfg,
        Rc::new(log),
        repl.net.clone(),
        None,
    )
    .await
    .unwrap();
    repl.add(group.clone());
    Node { repl, group }
}

/// The node that leads, once one does (within 10 s).
async fn leader_of(nodes: &[Option<Node>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if n.as_ref().is_some_and(|n| n.group.is_leader()) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Every batch of `log` below `upto`.
async fn batches_below(log: &PartitionLog, upto: Offset) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < upto {
        let r = log.read_upto(at, 1 << 20, upto).await.unwrap();
        let Some(last) = r.batches.last() else { break };
        let h = quill::record::BatchHeader::parse(last).unwrap();
        at = Offset(h.last_offset() as u64 + 1);
        out.extend(r.batches);
    }
    out
}

/// Produces `n` batches with acks=all on the leader; returns (base offset, seed) of each.
async fn produce(leader: &Node, seeds: std::ops::Range<u64>) -> Vec<(u64, u64)> {
    let mut acked = Vec::new();
    for s in seeds {
        let p = leader
            .group
            .propose(batch(s, 3, 200, 1000), Acks::All)
            .await
            .unwrap_or_else(|e| panic!("batch {s}: {e}"));
        acked.push((p.base_offset, s));
    }
    acked
}

#[test]
fn three_replicas_elect_commit_fail_over_and_catch_up() {
    let dir = tmpdir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wires = Rc::new(Wires {
            cut: RefCell::new(Vec::new()),
        });
        let (dummy, _) = async_channel::bounded(1);
        let inbound = Rc::new(RefCell::new(vec![dummy; 3]));
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(Some(start_node(&path, id, &wires, &inbound).await));
        }
        let first = leader_of(&nodes).await;
        let mut acked = produce(nodes[first].as_ref().unwrap(), 0..40).await;
        // The offsets acknowledged are contiguous batches.
        for w in acked.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 3);
        }
        // Cut the leader off: another leads within the election timeout, and takes writes.
        let cut_at = Instant::now();
        wires.cut.borrow_mut().push(first as u32 + 1);
        let second = loop {
            let l = leader_of(&nodes).await;
            if l != first {
                break l;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        };
        let failover = cut_at.elapsed();
        acked.extend(produce(nodes[second].as_ref().unwrap(), 40..80).await);
        println!("failover took {failover:?}");
        // The old leader steps down (check quorum) and, healed, catches up.
        let old = nodes[first].take().unwrap();
        old.repl.close();
        let log = old.group.log().clone();
        drop(old);
        // The group's tasks end once they see it closed; then the log is ours to close.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Rc::strong_count(&log) > 1 {
            assert!(
                Instant::now() < deadline,
                "the closed group still holds its log"
            );
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
        wires.cut.borrow_mut().clear();
        nodes[first] = Some(start_node(&path, first as u32 + 1, &wires, &inbound).await);
        acked.extend(produce(nodes[second].as_ref().unwrap(), 80..90).await);
        // Every replica ends with the same bytes, and every acknowledged batch is at its
        // offset.
        let end = Offset(acked.last().unwrap().0 + 3);
        let done = Cell::new(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.get() {
            done.set(
                nodes
                    .iter()
                    .all(|n| n.as_ref().unwrap().group.high_watermark() >= end.0),
            );
            assert!(Instant::now() < deadline, "replicas did not catch up");
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let reference = batches_below(nodes[second].as_ref().unwrap().group.log(), end).await;
        for n in &nodes {
            let got = batches_below(n.as_ref().unwrap().group.log(), end).await;
            assert_eq!(got, reference, "replicas differ");
        }
        for (base, seed) in &acked {
            let want = stamped(batch(*seed, 3, 200, 1000), *base, 0);
            let found = reference.iter().any(|b| {
                let h = quill::record::BatchHeader::parse(b).unwrap();
                h.base_offset as u64 == *base && b[16..] == want[16..]
            });
            assert!(found, "acknowledged batch {seed} at {base} is missing");
        }
        for n in nodes.into_iter().flatten() {
            n.repl.close();
        }
    });
}

/// Tells every node that every other is connected (the transport's `PeerUp`), or that `down`
/// is gone (`PeerDown`), as the real transport does.
fn announce(inbound: &Rc<RefCell<Vec<async_channel::Sender<Inbound>>>>, down: Option<u32>) {
    for (i, tx) in inbound.borrow().iter().enumerate() {
        let me = i as u32 + 1;
        for peer in 1..=3u32 {
            if peer == me {
                continue;
            }
            let m = if Some(peer) == down {
                Inbound::PeerDown(NodeId(peer))
            } else {
                Inbound::PeerUp(NodeId(peer))
            };
            let _ = tx.try_send(m);
        }
    }
}

/// An idle group whose nodes are connected stops ticking and sending (quiescence); a write
/// wakes it; a follower whose leader's node goes down ticks again and elects.
#[test]
fn idle_groups_quiesce_and_wake_on_writes_and_on_a_dead_leader() {
    let dir = tmpdir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wires = Rc::new(Wires {
            cut: RefCell::new(Vec::new()),
        });
        let (dummy, _) = async_channel::bounded(1);
        let inbound = Rc::new(RefCell::new(vec![dummy; 3]));
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(Some(start_node(&path, id, &wires, &inbound).await));
        }
        announce(&inbound, None);
        let first = leader_of(&nodes).await;
        produce(nodes[first].as_ref().unwrap(), 0..5).await;
        // Idle: within a few heartbeat intervals every replica is quiescent and nothing is
        // sent any more.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !nodes.iter().flatten().all(|n| n.group.quiescent()) {
            assert!(Instant::now() < deadline, "the idle group never quiesced");
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let sent = |nodes: &[Option<Node>]| -> u64 {
            nodes
                .iter()
                .flatten()
                .map(|n| n.repl.net.stats().sent)
                .sum()
        };
        let before = sent(&nodes);
        glommio::timer::sleep(Duration::from_millis(500)).await;
        assert_eq!(sent(&nodes), before, "a quiescent group sent messages");
        assert!(nodes.iter().flatten().all(|n| n.group.quiet_ticks() >= 20));
        // A write wakes it and commits as usual.
        produce(nodes[first].as_ref().unwrap(), 5..6).await;
        assert!(sent(&nodes) > before);
        // The leader's node dies: its followers hear PeerDown, tick again and elect.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !nodes.iter().flatten().all(|n| n.group.quiescent()) {
            assert!(Instant::now() < deadline, "the group never quiesced again");
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let dead = first as u32 + 1;
        wires.cut.borrow_mut().push(dead);
        announce(&inbound, Some(dead));
        let second = loop {
            let l = leader_of(&nodes).await;
            if l != first {
                break l;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        };
        produce(nodes[second].as_ref().unwrap(), 6..7).await;
        for n in nodes.into_iter().flatten() {
            n.repl.close();
        }
    });
}
