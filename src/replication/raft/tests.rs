//! Unit tests of the replica core through its public surface, with a tiny instant driver
//! (`Cluster`): messages delivered at once, persistence completing at once, catch-ups copied
//! from another node's log. The seeded simulator (`replication::sim`) does the hostile version.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Entry, Message, MessageType};

use super::*;
use crate::record::{validate_batch, BatchBuilder, BatchHeader};
use crate::replication::message::GroupId;

fn batch(value: &[u8], records: usize) -> BytesMut {
    let mut b = BatchBuilder::new(7);
    for _ in 0..records {
        b.push(7, None, Some(value), &[]);
    }
    b.finish()
}

fn cfg() -> ReplicaConfig {
    ReplicaConfig::default()
}

/// One node of the instant cluster: its replica and its log (whole batches).
struct N {
    r: Option<Replica>,
    log: Vec<Bytes>,
    state: PersistedState,
    up: bool,
}

fn log_end(log: &[Bytes]) -> u64 {
    log.last().map_or(0, |b| {
        let h = BatchHeader::parse(b).unwrap();
        h.last_offset() as u64 + 1
    })
}

fn base(b: &[u8]) -> u64 {
    BatchHeader::parse(b).unwrap().base_offset as u64
}

fn truncate(log: &mut Vec<Bytes>, to: u64) {
    while log.last().is_some_and(|b| base(b) >= to) {
        log.pop();
    }
    assert_eq!(log_end(log), to.min(log_end(log)), "cut inside a batch");
}

struct Cluster {
    nodes: Vec<N>,
    net: VecDeque<Message>,
    /// Hold persistence of these nodes (their work waits).
    hold: Vec<bool>,
    queues: Vec<PersistQueue>,
    completed: Vec<(u64, u64, u64, Result<(), ProposeError>)>,
    /// Cut links: messages to or from these nodes are dropped.
    isolated: Vec<bool>,
    reads: Vec<(usize, ReadLog)>,
    reads_served: usize,
    cfg: ReplicaConfig,
}

impl Cluster {
    fn new(n: u64, cfg: ReplicaConfig) -> Cluster {
        let voters: Vec<u64> = (1..=n).collect();
        let mut c = Cluster {
            nodes: Vec::new(),
            net: VecDeque::new(),
            hold: vec![false; n as usize],
            queues: (0..n).map(|_| PersistQueue::new()).collect(),
            completed: Vec::new(),
            isolated: vec![false; n as usize],
            reads: Vec::new(),
            reads_served: 0,
            cfg,
        };
        for &id in &voters {
            let state = PersistedState::new(voters.clone());
            c.nodes.push(N {
                r: None,
                log: Vec::new(),
                state,
                up: false,
            });
            c.start(id as usize - 1);
        }
        c
    }

    fn start(&mut self, k: usize) {
        let n = &mut self.nodes[k];
        let metas = metas_from(&n.log, n.state.anchor.offset);
        n.r = Some(
            Replica::new(
                self.cfg.clone(),
                GroupId(1),
                k as u64 + 1,
                n.state.clone(),
                log_end(&n.log),
                &metas,
            )
            .unwrap(),
        );
        n.up = true;
        self.queues[k].clear();
    }

    fn r(&mut self, k: usize) -> &mut Replica {
        self.nodes[k].r.as_mut().unwrap()
    }

    /// Performs every action of node k that can complete now.
    fn drain(&mut self, k: usize) {
        loop {
            let Some(r) = self.nodes[k].r.as_mut() else {
                return;
            };
            let Some(a) = r.next_action() else { break };
            match a {
                Action::Send(m) => self.net.push_back(m),
                Action::Persist(p) => self.queues[k].push(p),
                Action::ReadLog(rl) => self.reads.push((k, rl)),
                Action::Completed {
                    index,
                    term,
                    result,
                } => self.completed.push((k as u64 + 1, index, term, result)),
                Action::Leader { .. } | Action::HighWatermark(_) => {}
            }
        }
        if self.hold[k] {
            return;
        }
        while let Some(p) = self.queues[k].start().cloned() {
            self.perform(k, &p);
            let id = self.queues[k].finish();
            self.r(k).persisted(id).unwrap();
            self.drain(k);
        }
    }

    fn perform(&mut self, k: usize, p: &Persist) {
        if let Some(t) = p.truncate_to {
            truncate(&mut self.nodes[k].log, t);
        }
        if let Some(c) = &p.catch_up {
            // Copy from the first source that has it, keeping matching batches.
            let src = c.sources[0] as usize - 1;
            let from = c.from_offset.min(log_end(&self.nodes[k].log));
            let hw = self.nodes[src].r.as_ref().unwrap().high_watermark();
            assert!(hw >= c.to_offset, "source below the catch-up target");
            let fetched: Vec<Bytes> = self.nodes[src]
                .log
                .iter()
                .filter(|b| base(b) >= from && base(b) < c.to_offset)
                .cloned()
                .collect();
            for b in fetched {
                let log = &mut self.nodes[k].log;
                if log.contains(&b) {
                    continue;
                }
                truncate(log, base(&b));
                log.push(b);
            }
            truncate(&mut self.nodes[k].log, c.to_offset);
        }
        if !p.batches.is_empty() {
            assert_eq!(p.first_offset, log_end(&self.nodes[k].log));
        }
        for b in &p.batches {
            assert_eq!(base(b), log_end(&self.nodes[k].log));
            validate_batch(b, 1 << 20).unwrap();
            self.nodes[k].log.push(b.clone());
        }
        if let Some(s) = &p.state {
            self.nodes[k].state = s.clone();
        }
    }

    fn serve_reads(&mut self) {
        for (k, rl) in std::mem::take(&mut self.reads) {
            self.reads_served += 1;
            let data: Vec<u8> = self.nodes[k]
                .log
                .iter()
                .filter(|b| base(b) >= rl.from_offset && base(b) < rl.to_offset)
                .flat_map(|b| b.iter().copied())
                .collect();
            self.r(k).log_read(rl.id, Some(data.into())).unwrap();
            self.drain(k);
        }
    }

    /// Delivers messages and completes work until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            for k in 0..self.nodes.len() {
                self.drain(k);
            }
            self.serve_reads();
            let Some(m) = self.net.pop_front() else {
                if self.reads.is_empty() {
                    return;
                }
                continue;
            };
            let (from, to) = (m.from as usize - 1, m.to as usize - 1);
            if self.isolated[from] || self.isolated[to] || !self.nodes[to].up {
                continue;
            }
            let _ = self.r(to).step(m);
            self.drain(to);
        }
        panic!("cluster does not settle");
    }

    fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            for k in 0..self.nodes.len() {
                if self.nodes[k].up {
                    self.r(k).tick().unwrap();
                }
            }
            self.settle();
        }
    }

    fn leader(&self) -> usize {
        let l: Vec<usize> = (0..self.nodes.len())
            .filter(|&k| self.nodes[k].up && self.nodes[k].r.as_ref().unwrap().is_leader())
            .collect();
        assert_eq!(l.len(), 1, "one leader");
        l[0]
    }

    fn elect(&mut self) -> usize {
        for _ in 0..100 {
            self.tick_all(1);
            if (0..self.nodes.len()).any(|k| self.nodes[k].r.as_ref().unwrap().is_leader()) {
                self.tick_all(4);
                return self.leader();
            }
        }
        panic!("no leader");
    }

    fn crash(&mut self, k: usize) {
        self.nodes[k].r = None;
        self.nodes[k].up = false;
    }
}

fn metas_from(log: &[Bytes], offset: u64) -> Vec<BatchMeta> {
    log.iter()
        .filter(|b| base(b) >= offset)
        .map(|b| {
            let h = BatchHeader::parse(b).unwrap();
            BatchMeta {
                base_offset: h.base_offset as u64,
                last_offset: h.last_offset() as u64,
                epoch: h.partition_leader_epoch,
                bytes: b.len() as u32,
            }
        })
        .collect()
}

#[test]
fn a_new_leader_writes_a_control_batch_and_proposals_follow_it() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    let term = c.r(l).term();
    // Entry 1 is the leader's empty entry: a control batch at offset 0 with the term as epoch.
    let first = c.nodes[l].log[0].clone();
    let h = validate_batch(&first, 1 << 20).unwrap();
    assert!(h.is_control());
    assert_eq!((h.base_offset, h.partition_leader_epoch), (0, term as i32));
    assert_eq!(first, control_batch(0, term));

    let p = c.r(l).propose(batch(b"hello", 3), Acks::All).unwrap();
    assert_eq!(
        p,
        Proposal {
            index: 2,
            term,
            base_offset: 1,
            last_offset: 3
        }
    );
    c.settle();
    assert_eq!(c.completed, vec![(l as u64 + 1, 2, term, Ok(()))]);
    // Every replica stores the same bytes, stamped.
    for k in 0..3 {
        assert_eq!(c.nodes[k].log, c.nodes[l].log, "node {k}");
        assert_eq!(c.r(k).high_watermark(), 4);
    }
    let h = BatchHeader::parse(&c.nodes[l].log[1]).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1, term as i32));
    let p2 = c.r(l).propose(batch(b"x", 1), Acks::All).unwrap();
    assert_eq!((p2.index, p2.base_offset, p2.last_offset), (3, 4, 4));
}

#[test]
fn proposals_on_a_follower_say_who_leads() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    let f = (l + 1) % 3;
    assert_eq!(
        c.r(f).propose(batch(b"x", 1), Acks::All),
        Err(ProposeError::NotLeader {
            leader: Some(l as u64 + 1)
        })
    );
    let mut bad = batch(b"x", 1);
    bad[30] ^= 1;
    assert!(matches!(
        c.r(l).propose(bad, Acks::All),
        Err(ProposeError::BadBatch(_))
    ));
}

#[test]
fn acks_all_waits_for_the_quorum_and_acks_leader_does_not() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    let term = c.r(l).term();
    // Both followers cut off: nothing commits.
    for k in 0..3 {
        c.isolated[k] = k != l;
    }
    c.r(l).propose(batch(b"a", 1), Acks::All).unwrap();
    c.r(l).propose(batch(b"b", 1), Acks::Leader).unwrap();
    c.settle();
    assert_eq!(c.completed, vec![(l as u64 + 1, 3, term, Ok(()))]);
    let hw = c.r(l).high_watermark();
    assert_eq!(hw, 1, "nothing new below the high watermark");
    for k in 0..3 {
        c.isolated[k] = false;
    }
    c.tick_all(3);
    assert_eq!(c.completed.len(), 2);
    assert_eq!(c.completed[1], (l as u64 + 1, 2, term, Ok(())));
}

#[test]
fn a_leader_that_steps_down_fails_its_waiters() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    c.isolated[l] = true;
    c.r(l).propose(batch(b"lost", 1), Acks::All).unwrap();
    // check_quorum: the isolated leader steps down after an election timeout.
    c.tick_all(25);
    assert!(!c.r(l).is_leader());
    assert!(matches!(
        c.completed.as_slice(),
        [(_, 2, _, Err(ProposeError::NotLeader { .. }))]
    ));
    // The others elected a leader; the old one rejoins and its tail is overwritten.
    c.isolated[l] = false;
    c.tick_all(10);
    let l2 = c.leader();
    assert_ne!(l2, l);
    c.r(l2).propose(batch(b"kept", 1), Acks::All).unwrap();
    c.tick_all(3);
    for k in 0..3 {
        assert_eq!(c.nodes[k].log, c.nodes[l2].log);
    }
}

#[test]
fn a_divergent_tail_is_truncated_at_its_offset() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    c.r(l).propose(batch(b"one", 2), Acks::All).unwrap();
    c.settle();
    let end_committed = log_end(&c.nodes[l].log);
    assert_eq!(end_committed, 3);
    // The leader appends alone (its followers cut off), then loses leadership.
    for k in 0..3 {
        c.isolated[k] = k != l;
    }
    c.r(l).propose(batch(b"two", 5), Acks::All).unwrap();
    c.r(l).propose(batch(b"three", 1), Acks::All).unwrap();
    c.settle();
    assert_eq!(log_end(&c.nodes[l].log), 9);
    c.isolated[l] = true;
    for k in 0..3 {
        if k != l {
            c.isolated[k] = false;
        }
    }
    c.tick_all(30);
    let l2 = c.leader();
    assert_ne!(l2, l);
    c.r(l2).propose(batch(b"other", 1), Acks::All).unwrap();
    c.settle();
    // Rejoining, the old leader cuts its log back to the committed end, then takes the new
    // leader's entries at the same offsets.
    c.isolated[l] = false;
    c.tick_all(5);
    assert_eq!(c.nodes[l].log, c.nodes[l2].log);
    assert_eq!(c.nodes[l].log.len(), 4);
    assert!(c.nodes[l].log[2] != c.nodes[l].log[3]);
    assert_eq!(base(&c.nodes[l].log[2]), 3);
}

#[test]
fn a_stamped_batch_at_the_wrong_offset_is_refused_and_changes_nothing() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    c.settle();
    let f = (l + 1) % 3;
    let term = c.r(l).term();
    let mut b = batch(b"x", 1);
    stamp(&mut b, 57, term);
    let e = Entry {
        index: 2,
        term,
        data: b.freeze(),
        ..Default::default()
    };
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.from = l as u64 + 1;
    m.to = f as u64 + 1;
    m.term = term;
    m.index = 1;
    m.log_term = term;
    m.entries = vec![e].into();
    let before = c.r(f).last_index();
    let err = c.r(f).step(m).unwrap_err();
    assert!(
        matches!(
            err,
            ReplicaError::OffsetMismatch {
                expected: 1,
                found: 57,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_fatal());
    assert_eq!(c.r(f).last_index(), before);
    assert!(c.r(f).failure().is_none());
    // Not for us: refused too.
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = 9;
    m.to = f as u64 + 1;
    assert!(matches!(
        c.r(f).step(m),
        Err(ReplicaError::Misrouted { .. })
    ));
}

#[test]
fn unstamped_data_is_stamped_by_the_follower() {
    // A raft-internal entry may arrive unstamped: it is stored stamped.
    let mut c = Cluster::new(2, cfg());
    let l = c.elect();
    c.settle();
    let f = 1 - l;
    let term = c.r(l).term();
    let e = Entry {
        index: 2,
        term,
        data: batch(b"u", 2).freeze(),
        ..Default::default()
    };
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.from = l as u64 + 1;
    m.to = f as u64 + 1;
    m.term = term;
    m.index = 1;
    m.log_term = term;
    m.commit = 1;
    m.entries = vec![e].into();
    c.r(f).step(m).unwrap();
    c.drain(f);
    let stored = c.nodes[f].log[1].clone();
    let h = validate_batch(&stored, 1 << 20).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1, term as i32));
}

#[test]
fn restart_rebuilds_the_window_and_clamps_commit() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    for i in 0..5 {
        c.r(l).propose(batch(&[i], 2), Acks::All).unwrap();
    }
    c.settle();
    c.tick_all(2);
    let f = (l + 1) % 3;
    let last = c.r(f).last_index();
    let end = log_end(&c.nodes[f].log);
    // Claim a commit past the log: it is clamped to the last entry.
    let mut st = c.nodes[f].state.clone();
    st.commit = last + 10;
    let metas = metas_from(&c.nodes[f].log, 0);
    let r = Replica::new(cfg(), GroupId(1), f as u64 + 1, st.clone(), end, &metas).unwrap();
    assert_eq!(r.commit_index(), last);
    assert_eq!(r.last_index(), last);
    assert_eq!(r.log_end(), end);
    assert_eq!(r.high_watermark(), end);
    // A lazily written commit behind: the high watermark restarts at the durable committed
    // prefix, lower but never inside a batch.
    st.commit = 2;
    let r = Replica::new(cfg(), GroupId(1), f as u64 + 1, st.clone(), end, &metas).unwrap();
    assert_eq!(r.high_watermark(), 3);
    // A batch of a later term than the state (its state write was lost): the term follows.
    st.term = 0;
    let r = Replica::new(cfg(), GroupId(1), f as u64 + 1, st.clone(), end, &metas).unwrap();
    assert_eq!(r.term(), c.r(l).term());
    // Headers that do not match the log end are refused.
    assert!(matches!(
        Replica::new(cfg(), GroupId(1), f as u64 + 1, st.clone(), end + 1, &metas),
        Err(ReplicaError::LogNotContiguous { .. })
    ));
    assert!(matches!(
        Replica::new(cfg(), GroupId(1), 9, st, end, &metas),
        Err(ReplicaError::BadState(_))
    ));
}

#[test]
fn a_restarted_cluster_keeps_its_log_and_goes_on() {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    for i in 0..4 {
        c.r(l).propose(batch(&[i], 1), Acks::All).unwrap();
    }
    c.tick_all(3);
    let before = c.nodes[l].log.clone();
    for k in 0..3 {
        c.crash(k);
        c.start(k);
    }
    let l = c.elect();
    c.r(l).propose(batch(b"after", 1), Acks::All).unwrap();
    c.tick_all(3);
    for k in 0..3 {
        assert_eq!(&c.nodes[k].log[..before.len()], &before[..]);
        assert_eq!(c.nodes[k].log, c.nodes[l].log);
    }
}

#[test]
fn the_anchor_moves_when_the_window_is_full_and_is_written_lazily() {
    let cfg = ReplicaConfig {
        window_entries_max: 8,
        ..cfg()
    };
    let mut c = Cluster::new(3, cfg);
    let l = c.elect();
    for i in 0..20 {
        c.r(l).propose(batch(&[i], 1), Acks::All).unwrap();
        c.settle();
    }
    c.tick_all(2);
    for k in 0..3 {
        let (n, _, _) = c.r(k).window_stats();
        assert!(n <= 8, "window of {n} entries on node {k}");
        let a = c.r(k).anchor();
        assert!(a.index > 0);
        // The anchor's offset is the end of its batch: entry i sits at offset i - 1 here.
        assert_eq!(a.offset, a.index);
        assert_eq!(c.nodes[k].state.anchor, a, "node {k}'s persisted anchor");
    }
}

#[test]
fn a_lagging_follower_is_served_from_the_log_when_the_cache_is_gone() {
    let cfg = ReplicaConfig {
        cache_bytes_max: 0,
        window_entries_max: 1000,
        ..cfg()
    };
    let mut c = Cluster::new(3, cfg);
    let l = c.elect();
    let f = (l + 1) % 3;
    c.isolated[f] = true;
    for i in 0..10 {
        c.r(l).propose(batch(&[i], 1), Acks::All).unwrap();
    }
    c.settle();
    assert_eq!(c.r(l).window_stats().2, 0, "nothing durable stays cached");
    c.isolated[f] = false;
    c.tick_all(10);
    assert!(
        c.reads_served > 0,
        "the leader read entries back from its log"
    );
    assert_eq!(c.nodes[f].log, c.nodes[l].log);
}

#[test]
fn a_follower_behind_the_anchor_catches_up_from_the_leader() {
    let cfg = ReplicaConfig {
        window_entries_max: 4,
        ..cfg()
    };
    let mut c = Cluster::new(3, cfg);
    let l = c.elect();
    let f = (l + 1) % 3;
    c.isolated[f] = true;
    for i in 0..30 {
        c.r(l).propose(batch(&[i], 2), Acks::All).unwrap();
        c.settle();
    }
    let anchor = c.r(l).anchor();
    assert!(anchor.index > 5);
    c.isolated[f] = false;
    // Hold the follower's persistence to look at its catch-up work.
    c.hold[f] = true;
    for _ in 0..10 {
        c.tick_all(1);
        if !c.queues[f].is_empty() {
            break;
        }
    }
    let p = c.queues[f].start().cloned().expect("catch-up work");
    let cu = p.catch_up.clone().expect("a catch-up");
    assert_eq!(cu.sources[0], l as u64 + 1);
    assert_eq!(cu.from_offset, log_end(&c.nodes[f].log).min(cu.from_offset));
    assert!(cu.to_offset >= anchor.offset);
    let hw_before = c.r(f).high_watermark();
    // Time stands still for it while it installs; it still answers.
    c.r(f).tick().unwrap();
    assert_eq!(c.r(f).high_watermark(), hw_before);
    c.perform(f, &p);
    let id = c.queues[f].finish();
    c.r(f).persisted(id).unwrap();
    assert_eq!(c.r(f).high_watermark(), cu.to_offset);
    c.hold[f] = false;
    c.tick_all(3);
    assert_eq!(c.nodes[f].log, c.nodes[l].log);
    let a = c.r(f).anchor().offset;
    assert_eq!(c.nodes[f].state.anchor.offset, a);
}

#[test]
fn a_log_that_ends_before_the_anchor_starts_with_a_catch_up() {
    let voters = vec![1, 2, 3];
    let mut st = PersistedState::new(voters);
    st.term = 3;
    st.commit = 10;
    st.anchor = Anchor {
        index: 10,
        term: 3,
        offset: 40,
    };
    let mut r = Replica::new(cfg(), GroupId(1), 2, st, 25, &[]).unwrap();
    assert_eq!(r.high_watermark(), 25);
    let mut saw = false;
    while let Some(a) = r.next_action() {
        if let Action::Persist(p) = a {
            let cu = p.catch_up.expect("a catch-up first");
            assert_eq!((cu.from_offset, cu.to_offset), (25, 40));
            assert_eq!(cu.sources, vec![1, 3]);
            r.persisted(p.id).unwrap();
            saw = true;
        }
    }
    assert!(saw);
    assert_eq!(r.high_watermark(), 40);
    assert_eq!(
        r.persisted(77),
        Err(ReplicaError::DriverOrder {
            expected: None,
            got: 77
        })
    );
    assert!(r.failure().is_some(), "a driver bug fails the replica");
    assert!(matches!(r.tick(), Err(ReplicaError::Failed(_))));
}

#[test]
fn fetched_batches_are_checked() {
    let mut a = batch(b"a", 2);
    stamp(&mut a, 10, 1);
    let mut b = batch(b"b", 1);
    stamp(&mut b, 12, 1);
    let mut both = a.to_vec();
    both.extend_from_slice(&b);
    let m = check_fetched(10, 100, &both, 1 << 20).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].base_offset, 12);
    // Only what is below the target is kept.
    assert_eq!(check_fetched(10, 12, &both, 1 << 20).unwrap().len(), 1);
    assert!(matches!(
        check_fetched(11, 100, &both, 1 << 20),
        Err(FetchedError::NotContiguous { .. })
    ));
    assert!(matches!(
        check_fetched(10, 11, &both, 1 << 20),
        Err(FetchedError::PastTarget { .. })
    ));
    both[40] ^= 1;
    assert!(matches!(
        check_fetched(10, 100, &both, 1 << 20),
        Err(FetchedError::BadBatch { .. })
    ));
}

/// Steps `m` into node `k` and returns what `k` sends in reaction (the network must be empty).
fn deliver(c: &mut Cluster, k: usize, m: Message) -> Vec<Message> {
    assert!(c.net.is_empty());
    c.r(k).step(m).unwrap();
    c.drain(k);
    c.net.drain(..).collect()
}

/// The reordering behind raft-rs #557, through the replica. Leader `l` sends follower `f`
/// three one-entry appends after `f`'s matched index `m`; `f` gets them last to first, so it
/// rejects index m + 2 (`live`) and m + 1 (`stale`), then accepts m + 1. The accept reaches
/// `l` first: its progress for `f` is Replicate, matched m + 1; the rejections are on their way.
struct Reordered {
    c: Cluster,
    l: usize,
    f: usize,
    m: u64,
    live: Message,
    stale: Message,
}

fn reordered_rejections() -> Reordered {
    let mut c = Cluster::new(3, cfg());
    let l = c.elect();
    c.settle();
    let f = (l + 1) % 3;
    let fid = f as u64 + 1;
    let m = c.r(l).raft_progress(fid).unwrap().matched;
    assert_eq!(m, c.r(l).last_index());
    // The network drops whatever concerns f; the test hands f's messages over itself.
    c.isolated[f] = true;
    for v in [b"a", b"b", b"c"] {
        c.r(l).propose(batch(v, 1), Acks::All).unwrap();
        c.drain(l);
    }
    let appends: Vec<Message> = c.net.iter().filter(|x| x.to == fid).cloned().collect();
    c.net.retain(|x| x.to != fid);
    c.settle();
    let shape: Vec<_> = appends
        .iter()
        .map(|a| (a.get_msg_type(), a.index, a.entries.len()))
        .collect();
    let append = MessageType::MsgAppend;
    assert_eq!(
        shape,
        [(append, m, 1), (append, m + 1, 1), (append, m + 2, 1)]
    );
    let mut answers = Vec::new();
    for a in appends.into_iter().rev() {
        let mut out = deliver(&mut c, f, a);
        assert_eq!(out.len(), 1);
        answers.push(out.pop().unwrap());
    }
    let flags: Vec<_> = answers.iter().map(|a| (a.reject, a.index)).collect();
    assert_eq!(flags, [(true, m + 2), (true, m + 1), (false, m + 1)]);
    let (live, stale, accept) = (answers[0].clone(), answers[1].clone(), answers[2].clone());
    deliver(&mut c, l, accept);
    let pr = c.r(l).raft_progress(fid).unwrap();
    assert_eq!(
        (pr.state, pr.matched),
        (raft::ProgressState::Replicate, m + 1)
    );
    Reordered {
        c,
        l,
        f,
        m,
        live,
        stale,
    }
}

#[test]
fn a_live_append_rejection_is_still_stepped() {
    let Reordered {
        mut c,
        l,
        f,
        m,
        live,
        ..
    } = reordered_rejections();
    let fid = f as u64 + 1;
    // index m + 2 is past matched m + 1: f really lacks it, raft-rs must see the rejection.
    let sent = deliver(&mut c, l, live);
    assert_eq!(c.r(l).stale_rejects_dropped(), 0);
    let pr = c.r(l).raft_progress(fid).unwrap();
    assert_eq!(
        (pr.state, pr.matched, pr.next_idx),
        (raft::ProgressState::Probe, m + 1, m + 2)
    );
    // The leader probes f from just after what f acknowledged.
    assert!(sent
        .iter()
        .any(|x| x.to == fid && x.get_msg_type() == MessageType::MsgAppend && x.index == m + 1));
}

#[test]
fn a_stale_append_rejection_is_dropped_and_next_stays_past_matched() {
    let Reordered {
        mut c,
        l,
        f,
        m,
        live,
        stale,
    } = reordered_rejections();
    let fid = f as u64 + 1;
    // The live rejection puts f's progress in Probe with next = matched + 1 = the stale
    // rejection's index + 1: the state in which raft-rs 0.7.0 would take it and rewind next to
    // at most matched, resending what f has (raft-rs #557).
    deliver(&mut c, l, live);
    let sent = deliver(&mut c, l, stale);
    let pr = c.r(l).raft_progress(fid).unwrap();
    assert!(pr.next_idx > pr.matched, "{pr:?}");
    assert_eq!(c.r(l).stale_rejects_dropped(), 1);
    assert_eq!(
        (pr.state, pr.matched, pr.next_idx),
        (raft::ProgressState::Probe, m + 1, m + 2)
    );
    assert!(sent.iter().all(|x| x.to != fid), "resent to f: {sent:?}");
    // f still catches up.
    c.isolated[f] = false;
    c.tick_all(3);
    assert_eq!(c.nodes[f].log, c.nodes[l].log);
    assert_eq!(c.r(l).raft_progress(fid).unwrap().matched, m + 3);
}
