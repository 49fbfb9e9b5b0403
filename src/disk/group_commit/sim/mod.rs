//! The group-commit core against a seeded simulated disk, with no executor and no files.
//!
//! The harness plays the commit pipeline (`commit.rs`) and the log (`log/`): it stages appends
//! into real [`Appender`]s (plain memory buffers), runs every [`Action`] the core hands out as
//! simulated I/O that completes in any order, fails, or is short (part of a write lands, then it
//! fails), rolls segments, drains and truncates. The simulated disk keeps, per segment, the bytes
//! of completed writes (`volatile`) and the bytes a completed `fdatasync` covers (`durable`: the
//! volatile bytes as they were when that sync was *issued*).
//!
//! Checked at every acknowledgement and after every step:
//! - a sync-mode append is acknowledged only once its bytes are in the durable image, i.e. an
//!   `fdatasync` issued after its write completed has completed; an interval-mode one once its
//!   bytes are written;
//! - acknowledgements of each mode come in offset order, each append at most once, and none after
//!   a failed sync (poisoning fails every waiting append);
//! - a rollback ends at the written prefix, keeps every acknowledged append and fails exactly the
//!   appends after it, whose bytes are gone from the file;
//! - a drain settles, and at the end (faults off) every append is acknowledged or failed and the
//!   durable image holds exactly the appends that survived.
//!
//! `QUILL_SIM_SEED=N` runs one seed; `QUILL_SIM_SEEDS=N` sets how many (default 5000). A failure
//! names its seed.

mod checks;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Ack, Action, Active, GroupCommit, Policy};
use crate::disk::appender::{align_down, Appender, Boundary, BufferPool, WriteJob};
use crate::disk::config::{Durability, DIO_ALIGN_BYTES};
use crate::types::Offset;

/// SplitMix64: small, seedable, good enough to pick events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The error a failed write reports (the core only clones and hands it back).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SimError(u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Waiting,
    Acked,
    /// Failed by a rollback or a truncation: its bytes left the log.
    Cut,
    /// Failed because the log was poisoned: its bytes may or may not be there.
    Poisoned,
}

/// One append (one batch): `bytes` at `pos` of segment `seg`, offsets `base..next`.
struct Append {
    seg: Offset,
    pos: u64,
    base: Offset,
    next: Offset,
    durability: Durability,
    bytes: Vec<u8>,
    fate: Fate,
}

struct Seg {
    base: Offset,
    app: Option<Appender<Vec<u8>>>,
    sealed: bool,
    /// Logical bytes staged, and the offset after them.
    size: u64,
    next: Offset,
    volatile: Vec<u8>,
    durable: Vec<u8>,
}

impl Seg {
    fn new(base: Offset, pool: &std::rc::Rc<BufferPool<Vec<u8>>>) -> Seg {
        Seg {
            base,
            app: Some(Appender::resume(pool.clone(), 0, base, &[])),
            sealed: false,
            size: 0,
            next: base,
            volatile: Vec::new(),
            durable: Vec::new(),
        }
    }
}

/// Simulated I/O in flight, on segment `seg`.
enum Io {
    Write {
        seg: Offset,
        job: WriteJob<Vec<u8>>,
    },
    /// `snapshot`: the segment's written bytes when the sync was issued.
    Sync {
        seg: Offset,
        target: Offset,
        snapshot: Vec<u8>,
    },
    /// The index writes after a completed sync: the sync counts as in flight until they end.
    SyncEnd,
    Preallocate {
        seg: Offset,
        from: u64,
        target: u64,
    },
    Finalize {
        seg: Offset,
    },
    Rollback {
        seg: Offset,
        at: Boundary,
    },
}

/// Fault rates of one run, per mille.
struct Faults {
    write_fail: u64,
    short_write: u64,
    sync_fail: u64,
    finalize_fail: u64,
    rollback_fail: u64,
}

struct Sim {
    rng: Rng,
    core: GroupCommit<usize, SimError>,
    pool: std::rc::Rc<BufferPool<Vec<u8>>>,
    segs: VecDeque<Seg>,
    next_offset: Offset,
    appends: Vec<Append>,
    io: Vec<Io>,
    start: Instant,
    micros: u64,
    buffer_bytes: usize,
    segment_bytes: u64,
    pending_bytes_max: u64,
    /// Which durability appends ask for: `None` mixes both.
    mode: Option<Durability>,
    faults: Faults,
    faults_on: bool,
    /// A sync, finalize or rollback failed: nothing may be acknowledged from now on.
    poisoned: bool,
    /// The `next` of the last acknowledged append of each mode.
    last_ack: [Offset; 2],
    errors: u64,
    /// Counters, to see that runs reach the interesting states.
    stats: SimStats,
}

#[derive(Default, Debug, Clone, Copy)]
struct SimStats {
    acks: u64,
    rollbacks: u64,
    truncations: u64,
    poisonings: u64,
    rolls: u64,
}

fn mode_index(d: Durability) -> usize {
    match d {
        Durability::Sync => 0,
        Durability::Interval => 1,
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let buffer_bytes = [4096usize, 8192, 16_384][rng.below(3) as usize];
        let durability = if rng.chance(500) {
            Durability::Sync
        } else {
            Durability::Interval
        };
        let mode = match rng.below(3) {
            0 => None,
            1 => Some(Durability::Sync),
            _ => Some(Durability::Interval),
        };
        let segment_bytes = rng.range(16, 96) << 10;
        let policy = Policy {
            durability,
            flush: Duration::from_micros(rng.range(500, 10_000)),
            preallocate_bytes: if rng.chance(700) { 1 << 20 } else { 0 },
            segment_bytes,
            ack_pass_bytes: buffer_bytes as u64,
        };
        let faulty = rng.chance(700);
        let rate = |rng: &mut Rng, max: u64| if faulty { rng.below(max + 1) } else { 0 };
        let faults = Faults {
            write_fail: rate(&mut rng, 60),
            short_write: rate(&mut rng, 40),
            // Rare: a poisoned log stops doing anything interesting.
            sync_fail: rate(&mut rng, 8),
            finalize_fail: rate(&mut rng, 20),
            rollback_fail: rate(&mut rng, 80),
        };
        let start = Instant::now();
        let pool = BufferPool::new(buffer_bytes, 4);
        let mut segs = VecDeque::new();
        segs.push_back(Seg::new(Offset::ZERO, &pool));
        Sim {
            rng,
            core: GroupCommit::new(policy, Offset::ZERO, start),
            pool,
            segs,
            next_offset: Offset::ZERO,
            appends: Vec::new(),
            io: Vec::new(),
            start,
            micros: 0,
            buffer_bytes,
            segment_bytes,
            pending_bytes_max: (buffer_bytes * 4) as u64,
            mode,
            faults,
            faults_on: true,
            poisoned: false,
            last_ack: [Offset::ZERO; 2],
            errors: 0,
            stats: SimStats::default(),
        }
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_micros(self.micros)
    }

    fn seg_mut(&mut self, base: Offset) -> &mut Seg {
        self.segs
            .iter_mut()
            .find(|s| s.base == base)
            .expect("the segment of an I/O in flight stays")
    }

    fn fault(&mut self, per_mille: u64) -> bool {
        self.faults_on && self.rng.chance(per_mille)
    }

    /// Fails `id` as the core says: cut (rollback, truncation) or poisoned.
    fn fail(&mut self, id: usize, fate: Fate) {
        let a = &mut self.appends[id];
        assert_eq!(
            a.fate,
            Fate::Waiting,
            "append {id} failed twice or after its ack"
        );
        a.fate = fate;
    }

    /// Runs the core's decisions until it has nothing more to start, as `commit::pump` does.
    fn pump(&mut self, allow_tail: bool) {
        let now = self.now();
        loop {
            let Sim { segs, core, .. } = self;
            let mut seg = segs.iter_mut().find(|s| s.app.is_some());
            let active = seg.as_mut().map(|s| Active {
                appender: s.app.as_mut().expect("checked"),
                sealed: s.sealed,
            });
            let Some(action) = core.next_action(active, allow_tail, now) else {
                return;
            };
            let seg = seg.expect("an action is about a segment");
            let base = seg.base;
            let io = match action {
                Action::Write(job) => Io::Write { seg: base, job },
                Action::Sync { target } => Io::Sync {
                    seg: base,
                    target,
                    snapshot: seg.volatile.clone(),
                },
                Action::Preallocate { from, target } => Io::Preallocate {
                    seg: base,
                    from,
                    target,
                },
                Action::Finalize => Io::Finalize { seg: base },
                Action::Rollback { at } => Io::Rollback { seg: base, at },
            };
            self.io.push(io);
        }
    }

    /// Stages one append, rolling first when the active segment is full (as the log does).
    fn append(&mut self) {
        if self.poisoned || !self.core.accepts_appends() {
            return;
        }
        let small = self.rng.chance(800);
        let len = if small {
            self.rng.range(40, 600)
        } else {
            self.rng.range(600, 3 * self.buffer_bytes as u64)
        } as usize;
        let staged = self.core.staged_bytes();
        if staged + len as u64 > self.pending_bytes_max && staged > 0 {
            return;
        }
        let active = self.segs.back().expect("a segment");
        if active.size > 0 && active.size + len as u64 > self.segment_bytes {
            self.segs.back_mut().expect("a segment").sealed = true;
            let seg = Seg::new(self.next_offset, &self.pool);
            self.segs.push_back(seg);
            self.stats.rolls += 1;
        }
        let durability = self.mode.unwrap_or(if self.rng.chance(500) {
            Durability::Sync
        } else {
            Durability::Interval
        });
        let bytes: Vec<u8> = (0..len).map(|_| self.rng.next() as u8 | 1).collect();
        let base = self.next_offset;
        let next = base.plus(self.rng.range(1, 4));
        let seg = self.segs.back_mut().expect("a segment");
        let pos = seg.size;
        seg.app
            .as_mut()
            .expect("the active segment has an appender")
            .stage(&bytes, next);
        seg.size += len as u64;
        seg.next = next;
        self.next_offset = next;
        self.core.staged(len as u64);
        let id = self.appends.len();
        self.appends.push(Append {
            seg: seg.base,
            pos,
            base,
            next,
            durability,
            bytes,
            fate: Fate::Waiting,
        });
        self.core.wait(durability, next, len as u64, id);
        self.pump(false);
    }

    /// Completes the I/O at index `i` of those in flight, maybe failing it.
    fn complete(&mut self, i: usize) {
        let io = self.io.swap_remove(i);
        let now = self.now();
        match io {
            Io::Write { seg, job } => {
                let (fail, short) = (
                    self.fault(self.faults.write_fail),
                    self.fault(self.faults.short_write),
                );
                let WriteJob {
                    id,
                    pos,
                    buf,
                    pooled,
                } = job;
                // A short write lands a whole number of blocks, then the retry fails.
                let landed = if fail {
                    0
                } else if short {
                    let blocks = buf.len() as u64 / DIO_ALIGN_BYTES;
                    (self.rng.below(blocks) * DIO_ALIGN_BYTES) as usize
                } else {
                    buf.len()
                };
                let s = self.seg_mut(seg);
                let end = pos as usize + landed;
                if s.volatile.len() < end {
                    s.volatile.resize(end, 0);
                }
                s.volatile[pos as usize..end].copy_from_slice(&buf[..landed]);
                let back = pooled.then_some(buf);
                let Sim { segs, core, .. } = self;
                let app = segs
                    .iter_mut()
                    .find(|s| s.base == seg)
                    .and_then(|s| s.app.as_mut())
                    .expect("a segment keeps its appender while it has writes in flight");
                if fail || short {
                    self.errors += 1;
                    let e = SimError(self.errors);
                    core.write_failed(app, id, back, || e);
                } else {
                    core.write_completed(app, id, back);
                }
            }
            Io::Sync {
                seg,
                target,
                snapshot,
            } => {
                if self.fault(self.faults.sync_fail) {
                    self.poison(|core, f| core.sync_failed("fdatasync".into(), f));
                } else {
                    self.seg_mut(seg).durable = snapshot;
                    self.core.sync_completed(target, now);
                    self.io.push(Io::SyncEnd);
                }
            }
            Io::SyncEnd => self.core.io_ended(),
            Io::Preallocate { seg, from, target } => {
                let (short, unsupported) = (self.rng.chance(200), self.rng.chance(50));
                let reached = if short {
                    from + align_down(self.rng.below(target - from + 1))
                } else {
                    target
                };
                if let Some(app) = self.seg_mut(seg).app.as_mut() {
                    app.preallocate_done(reached, short, unsupported);
                }
                self.core.io_ended();
            }
            Io::Finalize { seg } => {
                if self.fault(self.faults.finalize_fail) {
                    self.poison(|core, f| core.finalize_failed("finalize".into(), f));
                } else {
                    let s = self.seg_mut(seg);
                    let app = s.app.take().expect("a finalized segment had an appender");
                    assert!(app.fully_written());
                    s.volatile.truncate(s.size as usize);
                    s.durable = s.volatile.clone();
                    let end = s.next;
                    self.core.finalized(end, now);
                }
            }
            Io::Rollback { seg, at } => self.rollback(seg, at),
        }
        self.pump(true);
    }

    /// A sync, finalize or rollback failed: the core poisons the log.
    fn poison(&mut self, f: impl FnOnce(&mut GroupCommit<usize, SimError>, &mut dyn FnMut(usize))) {
        let mut failed = Vec::new();
        f(&mut self.core, &mut |id| failed.push(id));
        for id in failed {
            self.fail(id, Fate::Poisoned);
        }
        self.poisoned = true;
        self.stats.poisonings += 1;
        assert!(self.core.poisoned().is_some());
        assert!(
            self.appends.iter().all(|a| a.fate != Fate::Waiting),
            "an append still waits on a poisoned log"
        );
    }

    /// The rollback of segment `seg` to `at`, as `commit::rollback` does it.
    fn rollback(&mut self, seg: Offset, at: Boundary) {
        if self.fault(self.faults.rollback_fail) {
            self.poison(|core, f| core.rollback_failed("rollback".into(), f));
            return;
        }
        let s = self.seg_mut(seg);
        // The partial block before `at` as on disk, then the file is cut there.
        let tail = s.volatile[align_down(at.pos) as usize..at.pos as usize].to_vec();
        s.volatile.truncate(at.pos as usize);
        s.durable.truncate(at.pos as usize);
        let target = self.core.written();
        assert_eq!(at.next, target, "rollback to the written offset");
        while self.segs.back().expect("a segment").base > target {
            self.segs.pop_back();
        }
        let Sim { segs, core, .. } = self;
        let s = segs.back_mut().expect("a segment");
        assert_eq!(s.base, seg, "the failed segment holds the written end");
        let app = s
            .app
            .as_mut()
            .expect("the written end's segment has an appender");
        let mut failed = Vec::new();
        let (end, _err) = core.rolled_back(app, &tail, |id, _e| failed.push(id));
        s.size = at.pos;
        s.next = end;
        s.sealed = false;
        self.next_offset = end;
        for id in failed {
            self.fail(id, Fate::Cut);
        }
        self.stats.rollbacks += 1;
        assert_eq!(self.core.staged_bytes(), 0);
        for a in &self.appends {
            match a.fate {
                Fate::Acked => assert!(a.next <= end, "rollback past an acknowledged append"),
                Fate::Waiting => assert!(a.next <= end, "an append past the rollback still waits"),
                _ => {}
            }
        }
        self.check_written_prefix();
    }

    /// One pass of acknowledgements, as `commit::resolve_after` does, checking each.
    fn ack_pass(&mut self) {
        let mut spent = 0;
        loop {
            match self.core.next_ack(&mut spent) {
                Ack::Resolve(id) => self.acked(id),
                Ack::NextPass | Ack::Idle => return,
            }
        }
    }

    /// Waits, as close or truncation does (`commit::quiesce`), until everything staged is
    /// written and synced with nothing in flight; then, when `truncate`, cuts the log at an
    /// offset no acknowledged append reaches. Faults may end the drain early, as in the log.
    fn drain(&mut self, truncate: bool) {
        let rollbacks = self.core.drain_begin(truncate);
        let mut steps = 0;
        let ok = loop {
            self.pump(true);
            if self.core.poisoned().is_some() || self.core.rollbacks() != rollbacks {
                break false;
            }
            let quiet = self.core.settled()
                && self.core.written() == self.next_offset
                && self.segs.iter().all(|s| {
                    s.app
                        .as_ref()
                        .is_none_or(|a| a.fully_written() && !s.sealed)
                });
            if quiet {
                break true;
            }
            assert!(!self.io.is_empty(), "a drain waits with no I/O in flight");
            steps += 1;
            assert!(steps < 100_000, "a drain does not settle");
            let i = self.rng.below(self.io.len() as u64) as usize;
            self.complete(i);
            if self.rng.chance(300) {
                self.ack_pass();
            }
        };
        self.core.drain_end(ok, truncate);
        if !ok {
            return;
        }
        assert!(self.io.is_empty(), "I/O in flight after a drain");
        assert_eq!(
            self.core.durable(),
            self.next_offset,
            "a drain leaves undurable bytes"
        );
        if truncate {
            self.truncate();
        }
        self.core.resume(truncate);
        self.pump(true);
    }

    /// Everything staged is durable and nothing is in flight.
    fn drained(&self) -> bool {
        self.io.is_empty() && self.core.settled() && self.core.durable() == self.next_offset
    }

    /// Cuts the log (drained and paused) at a batch boundary above every acknowledged append, as
    /// `PartitionLog::truncate_to` does.
    fn truncate(&mut self) {
        let floor = self
            .appends
            .iter()
            .filter(|a| a.fate == Fate::Acked)
            .map(|a| a.next)
            .max()
            .unwrap_or(Offset::ZERO);
        let candidates: Vec<(Offset, Offset, u64)> = self
            .appends
            .iter()
            .filter(|a| a.fate == Fate::Waiting && a.base >= floor)
            .map(|a| (a.base, a.seg, a.pos))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (offset, seg, pos) = candidates[self.rng.below(candidates.len() as u64) as usize];
        while self.segs.back().expect("a segment").base > seg {
            self.segs.pop_back();
        }
        let s = self.segs.back_mut().expect("a segment");
        assert_eq!(s.base, seg);
        s.volatile.truncate(pos as usize);
        s.durable.truncate(pos as usize);
        let tail = s.volatile[align_down(pos) as usize..].to_vec();
        s.app = Some(Appender::resume(self.pool.clone(), pos, offset, &tail));
        s.size = pos;
        s.next = offset;
        s.sealed = false;
        self.next_offset = offset;
        let mut failed = Vec::new();
        self.core.truncated(offset, |id| failed.push(id));
        for id in failed {
            self.fail(id, Fate::Cut);
        }
        assert!(
            self.appends
                .iter()
                .all(|a| a.fate != Fate::Waiting || a.next <= offset),
            "an append past the truncation still waits"
        );
        self.stats.truncations += 1;
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=34 => self.append(),
            35..=69 => {
                if !self.io.is_empty() {
                    let i = self.rng.below(self.io.len() as u64) as usize;
                    self.complete(i);
                }
            }
            70..=79 => self.pump(true),
            80..=91 => self.ack_pass(),
            92..=97 => self.micros += self.rng.below(3000),
            98 => self.drain(false),
            _ => self.drain(true),
        }
        self.check();
    }
}

fn run(seed: u64) -> SimStats {
    let mut sim = Sim::new(seed);
    let steps = sim.rng.range(100, 600);
    for _ in 0..steps {
        sim.step();
    }
    sim.finish();
    sim.stats
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Runs `QUILL_SIM_SEEDS` seeds (5000 by default), or the one `QUILL_SIM_SEED` names.
#[test]
fn group_commit_keeps_its_promises_on_a_simulated_disk() {
    let seeds: Vec<u64> = match env_u64("QUILL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("QUILL_SIM_SEEDS").unwrap_or(5000)).collect(),
    };
    let mut total = SimStats::default();
    for seed in seeds.iter().copied() {
        let outcome = std::panic::catch_unwind(|| run(seed));
        match outcome {
            Ok(s) => {
                total.acks += s.acks;
                total.rollbacks += s.rollbacks;
                total.truncations += s.truncations;
                total.poisonings += s.poisonings;
                total.rolls += s.rolls;
            }
            Err(_) => panic!(
                "group-commit simulation failed with seed {seed} (the panic above says why); \
                 rerun it alone with QUILL_SIM_SEED={seed} cargo test --release --lib \
                 group_commit"
            ),
        }
    }
    eprintln!("{} seeds: {total:?}", seeds.len());
    // The runs must reach the states the checks are about.
    if seeds.len() >= 1000 {
        assert!(
            total.acks > 0
                && total.rollbacks > 100
                && total.truncations > 100
                && total.poisonings > 50
                && total.rolls > 100,
            "the simulation no longer reaches its interesting states: {total:?}"
        );
    }
}

/// The core and the appender are sans-I/O: they must not reach the runtime.
#[test]
fn the_core_does_not_use_glommio() {
    for (name, text) in [
        ("group_commit.rs", include_str!("../../group_commit.rs")),
        ("appender.rs", include_str!("../../appender.rs")),
    ] {
        assert!(
            !text.contains("glommio::") && !text.contains("use glommio"),
            "{name} uses glommio"
        );
    }
}
