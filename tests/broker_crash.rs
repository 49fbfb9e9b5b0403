//! The real broker binary killed and restarted under load: SIGKILL mid-produce, SIGTERM under
//! load, and a disk that fills up (RLIMIT_FSIZE). Whatever the broker acknowledged must be there
//! after a restart, byte for byte, at its offset; everything served must be a batch some producer
//! sent.
//!
//! The batches are `quill_testkit::synthetic::synthetic_batch(seed, seq)`, so a batch read back
//! tells which one it is (`seq_of`) and can be compared with a fresh copy. Seeds are printed;
//! `QUILL_TEST_SEED` replays one.

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::broker::*;
use common::{batch, seed, stamped, tmpdir};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::*;
use quill_testkit::synthetic::{seq_of, synthetic_batch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 4;
/// Produce requests each producer keeps in flight on its connection.
const IN_FLIGHT: usize = 4;
/// Stop a producer after this many requests, so a test is bounded even if no kill comes.
const REQUESTS_PER_PRODUCER_MAX: usize = 20_000;

/// What the producers did: every `(partition, seq)` sent, and every batch acknowledged.
#[derive(Default)]
struct Ledger {
    sent: HashMap<u32, HashSet<u64>>,
    /// `(partition, base offset) -> seq`.
    acked: HashMap<(u32, i64), u64>,
}

impl Ledger {
    fn merge(&mut self, other: Ledger) {
        for (p, seqs) in other.sent {
            self.sent.entry(p).or_default().extend(seqs);
        }
        for (k, seq) in other.acked {
            assert!(
                self.acked.insert(k, seq).is_none(),
                "offset {k:?} acknowledged twice"
            );
        }
    }
}

/// How a producer stops.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    /// The broker is SIGKILLed: every request must succeed until the connection dies.
    Killed,
    /// The broker is shut down cleanly: `BROKER_SHUTTING_DOWN` answers are expected.
    Shutdown,
}

/// Produces synthetic batches over one pipelined connection until the broker goes away (or
/// `stop_flag`, or the request bound). Seqs come from the shared counter so they are unique
/// across producers and rounds.
fn producer(
    mut conn: Conn,
    seed: u64,
    rng_seed: u64,
    next_seq: Arc<AtomicU64>,
    stop: Stop,
    stop_flag: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> Ledger {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let mut ledger = Ledger::default();
    let mut in_flight: std::collections::VecDeque<(u32, Vec<u64>)> = Default::default();
    let mut requests = 0;
    let mut sending = true;
    loop {
        while sending && in_flight.len() < IN_FLIGHT {
            if requests == REQUESTS_PER_PRODUCER_MAX || stop_flag.load(Ordering::SeqCst) {
                sending = false;
                break;
            }
            requests += 1;
            let partition = rng.gen_range(0..PARTITIONS);
            let n = rng.gen_range(1..=3u64);
            let first = next_seq.fetch_add(n, Ordering::SeqCst);
            let seqs: Vec<u64> = (first..first + n).collect();
            let mut records = BytesMut::new();
            for &s in &seqs {
                records.extend_from_slice(&synthetic_batch(seed, s));
            }
            // Recorded before sending: a batch may land even if its answer never comes.
            ledger.sent.entry(partition).or_default().extend(&seqs);
            if conn
                .try_send(&produce_request(TOPIC, partition, records))
                .is_err()
            {
                return ledger;
            }
            in_flight.push_back((partition, seqs));
        }
        let Some((partition, seqs)) = in_flight.front().cloned() else {
            return ledger;
        };
        let resp = match conn.try_recv() {
            Ok((_, resp)) => resp,
            Err(RecvError::Closed) => return ledger,
            Err(RecvError::TimedOut) => {
                panic!("a request got neither a response nor a closed connection")
            }
        };
        in_flight.pop_front();
        match resp {
            Response::Produce(_) => {
                let p = produce_partition(resp);
                assert_eq!(p.partition, partition);
                match p.error_code {
                    ErrorCode::None => {
                        assert_eq!(p.base_offsets.len(), seqs.len());
                        for (base, seq) in p.base_offsets.iter().zip(&seqs) {
                            assert!(
                                ledger.acked.insert((partition, *base), *seq).is_none(),
                                "offset {base} of partition {partition} acknowledged twice"
                            );
                        }
                        acks.fetch_add(seqs.len() as u64, Ordering::SeqCst);
                    }
                    ErrorCode::BrokerShuttingDown if stop == Stop::Shutdown => sending = false,
                    code => panic!("produce failed: {code} {:?}", p.error_message),
                }
            }
            Response::Error {
                code: ErrorCode::BrokerShuttingDown,
                ..
            } if stop == Stop::Shutdown => sending = false,
            other => panic!("unexpected response {other:?}"),
        }
    }
}

/// How long producers may take to get `acks_before` batches acknowledged (a hang guard).
const ACKS_LIMIT: Duration = Duration::from_secs(120);

/// Runs `PRODUCERS` producer threads against `broker`, calls `interrupt` once `acks_before`
/// batches were acknowledged (not after a guessed time: a loaded machine may have acknowledged
/// nothing by then), and returns what they did once all have stopped.
fn produce_until(
    broker: Broker,
    seed: u64,
    rng: &mut StdRng,
    next_seq: &Arc<AtomicU64>,
    stop: Stop,
    acks_before: u64,
    interrupt: impl FnOnce(Broker),
) -> Ledger {
    let stop_flag = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let addrs = broker.all_addrs();
    for i in 0..PRODUCERS {
        // Connected here, so every producer is connected before the interruption. The common
        // port and every shard port get producers, so requests are forwarded between shards.
        let conn = Conn::connect(addrs[i % addrs.len()]);
        conn.set_read_timeout(Duration::from_secs(30));
        let (rng_seed, next_seq, flag, acks) =
            (rng.gen(), next_seq.clone(), stop_flag.clone(), acks.clone());
        threads.push(std::thread::spawn(move || {
            producer(conn, seed, rng_seed, next_seq, stop, flag, acks)
        }));
    }
    let deadline = std::time::Instant::now() + ACKS_LIMIT;
    while acks.load(Ordering::SeqCst) < acks_before {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {acks_before} acknowledged within {ACKS_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    interrupt(broker);
    stop_flag.store(true, Ordering::SeqCst);
    let mut ledger = Ledger::default();
    for t in threads {
        ledger.merge(t.join().expect("producer thread"));
    }
    ledger
}

/// Reads every partition from 0 to its high watermark and checks it against the ledger: every
/// acknowledged batch at its offset, byte-identical; offsets contiguous; every batch a synthetic
/// batch that was sent to that partition, served once.
fn verify(broker: &Broker, seed: u64, ledger: &Ledger) -> usize {
    let mut conn = broker.connect();
    let mut seen = HashSet::new();
    let mut served = 0;
    for p in 0..PARTITIONS {
        let mut at: HashMap<i64, u64> = HashMap::new();
        for (base, bytes) in fetch_all_batches(&mut conn, TOPIC, p) {
            let seq = seq_of(&bytes)
                .unwrap_or_else(|| panic!("partition {p} offset {base}: not a synthetic batch"));
            assert!(
                ledger.sent.get(&p).is_some_and(|s| s.contains(&seq)),
                "partition {p} offset {base}: seq {seq} was never sent to this partition"
            );
            assert!(seen.insert(seq), "seq {seq} is served twice");
            let expected = stamped(synthetic_batch(seed, seq), base as u64, 0);
            assert!(
                bytes[..] == expected[..],
                "partition {p} offset {base}: seq {seq} differs from what was sent"
            );
            at.insert(base, seq);
            served += 1;
        }
        for (&(partition, base), &seq) in &ledger.acked {
            if partition == p {
                assert_eq!(
                    at.get(&base),
                    Some(&seq),
                    "acknowledged seq {seq} at partition {p} offset {base} is missing"
                );
            }
        }
    }
    served
}

/// SIGKILL mid-produce, four times on the same data directory with 2 shards: every batch
/// acknowledged in any round survives, byte for byte, at its offset.
#[test]
fn sigkill_mid_produce_loses_nothing_acknowledged() {
    let seed = seed("sigkill_mid_produce_loses_nothing_acknowledged");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tmpdir();
    let next_seq = Arc::new(AtomicU64::new(0));
    let mut ledger = Ledger::default();
    for round in 0..4 {
        let broker = Broker::start(dir.path(), 2);
        if round == 0 {
            assert_eq!(
                broker.connect().call(&create_topic(TOPIC, PARTITIONS)),
                Response::CreateTopic
            );
        } else {
            let served = verify(&broker, seed, &ledger);
            eprintln!(
                "round {round}: {served} batches served, {} acknowledged so far",
                ledger.acked.len()
            );
        }
        let acks_before = rng.gen_range(50..2000);
        let got = produce_until(
            broker,
            seed,
            &mut rng,
            &next_seq,
            Stop::Killed,
            acks_before,
            |b| b.kill(),
        );
        assert!(
            got.acked.len() as u64 >= acks_before,
            "round {round}: killed after {acks_before} acknowledgements"
        );
        ledger.merge(got);
    }
    let broker = Broker::start(dir.path(), 2);
    let served = verify(&broker, seed, &ledger);
    eprintln!(
        "final: {served} batches served, {} acknowledged",
        ledger.acked.len()
    );
    assert!(served >= ledger.acked.len());
    broker.stop();
}

/// The shutdown wait for in-flight requests, shortened from the default 10 s so that a shutdown
/// that waits it out in full costs the test less. Not asserted on.
const SHUTDOWN_CONFIG: &str = "[limits]\nshutdown_wait_ms = 3000\n";

/// SIGTERM while producers are active, five times on the same data directory: the broker exits
/// 0, every in-flight request either got an answer (success or `BROKER_SHUTTING_DOWN`) or saw
/// the connection close, and every acknowledged batch is there after each restart.
fn sigterm_under_load(shards: usize) {
    let seed = seed(&format!("sigterm_under_load({shards})"));
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tmpdir();
    let next_seq = Arc::new(AtomicU64::new(0));
    let mut ledger = Ledger::default();
    for round in 0..5 {
        let broker = Broker::start_with_config(dir.path(), shards, SHUTDOWN_CONFIG);
        if round == 0 {
            assert_eq!(
                broker.connect().call(&create_topic(TOPIC, PARTITIONS)),
                Response::CreateTopic
            );
        } else {
            verify(&broker, seed, &ledger);
        }
        let acks_before = rng.gen_range(50..1000);
        let got = produce_until(
            broker,
            seed,
            &mut rng,
            &next_seq,
            Stop::Shutdown,
            acks_before,
            |b| b.stop(),
        );
        assert!(
            got.acked.len() as u64 >= acks_before,
            "round {round}: stopped after {acks_before} acknowledgements"
        );
        ledger.merge(got);
    }
    let broker = Broker::start(dir.path(), shards);
    let served = verify(&broker, seed, &ledger);
    eprintln!(
        "{served} batches served, {} acknowledged",
        ledger.acked.len()
    );
    broker.stop();
}

one_and_two_shards!(
    sigterm_under_load_one_shard,
    sigterm_under_load_two_shards,
    sigterm_under_load
);

/// Caps the broker's file size (RLIMIT_FSIZE) and ignores SIGXFSZ, so a write past the cap fails
/// with EFBIG the way a full disk fails with ENOSPC. Segment files are the only ones that grow
/// this large; the limit applies per file.
fn start_with_file_size_limit(dir: &std::path::Path, shards: usize, bytes: u64) -> Broker {
    Broker::start_with(dir, shards, move |cmd| {
        // SAFETY: only async-signal-safe calls (signal, getrlimit, setrlimit) between fork and
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = bytes.min(lim.rlim_max);
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// A disk that fills up under one partition: its produce fails with `STORAGE_ERROR`, the broker
/// lives on, every acknowledged batch is still served, the other partitions keep working, later
/// produces to the full partition fail with a typed error (not a hang), and once space is back
/// (a restart without the limit) appends resume right after the acknowledged prefix.
#[test]
fn disk_full_fails_produce_with_storage_error() {
    let dir = tmpdir();
    let mut broker = start_with_file_size_limit(dir.path(), 2, 2 << 20);
    let mut c = broker.connect();
    c.set_read_timeout(Duration::from_secs(30));
    assert_eq!(c.call(&create_topic("full", 4)), Response::CreateTopic);
    // One small batch in each other partition (on both shards: partitions spread).
    let mut others = Vec::new();
    for p in 1..4u32 {
        let b = batch(u64::from(p), 2, 100, 5);
        assert_eq!(
            produce_ok(c.call(&produce_request("full", p, b.clone()))),
            vec![0]
        );
        others.push((p, stamped(b, 0, 0)));
    }
    // ~100 KiB batches into partition 0 until the 2 MiB segment cap is hit.
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..100u64 {
        let b = batch(100 + i, 4, 25_000, 10);
        let p = produce_partition(c.call(&produce_request("full", 0, b.clone())));
        if p.error_code == ErrorCode::None {
            let base = p.base_offsets[0];
            acked.push((base, stamped(b, base as u64, 0)));
        } else {
            failure = Some(p);
            break;
        }
    }
    let failure = failure.expect("the file size limit stops produces");
    assert_eq!(
        failure.error_code,
        ErrorCode::StorageError,
        "{:?}",
        failure.error_message
    );
    assert!(failure.base_offsets.is_empty());
    assert!(!acked.is_empty());
    assert!(broker.is_alive(), "a full disk does not kill the broker");
    let end = acked.len() as i64 * 4;

    let check_reads = |c: &mut Conn| {
        let got = fetch_all_batches(c, "full", 0);
        assert_eq!(
            got.len(),
            acked.len(),
            "exactly the acknowledged batches are served"
        );
        for ((base, bytes), (ack_base, ack_bytes)) in got.iter().zip(&acked) {
            assert_eq!(base, ack_base);
            assert!(bytes[..] == ack_bytes[..], "batch at {base} differs");
        }
        for (p, bytes) in &others {
            let f = fetch_partition(c.call(&fetch_request("full", *p, 0, 0)));
            assert_eq!(f.error_code, ErrorCode::None);
            assert_eq!(&f.records[0][..], &bytes[..]);
        }
    };
    for addr in broker.all_addrs() {
        let mut s = Conn::connect(addr);
        s.set_read_timeout(Duration::from_secs(30));
        check_reads(&mut s);
        assert_eq!(latest_offset(&mut s, "full", 0), end);
        // Still full: produces to partition 0 keep failing, typed, and append nothing.
        for i in 0..3u64 {
            let p = produce_partition(s.call(&produce_request(
                "full",
                0,
                batch(900 + i, 4, 25_000, 10),
            )));
            assert_eq!(
                p.error_code,
                ErrorCode::StorageError,
                "{:?}",
                p.error_message
            );
        }
        // The other partitions (own segment files, on both shards) still take produces.
        for p in 1..4u32 {
            let offs = produce_ok(s.call(&produce_request("full", p, batch(7, 1, 10, 5))));
            assert_eq!(offs.len(), 1);
        }
        assert!(matches!(
            s.call(&metadata_request(Some(&["full"]))),
            Response::Metadata(_)
        ));
    }
    assert_eq!(latest_offset(&mut c, "full", 0), end);
    assert!(broker.is_alive());
    broker.kill();

    // Space is back: everything acknowledged is there and appends continue after it.
    let broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    check_reads(&mut c);
    let b = batch(999, 4, 25_000, 10);
    assert_eq!(
        produce_ok(c.call(&produce_request("full", 0, b))),
        vec![end]
    );
    broker.stop();
}
