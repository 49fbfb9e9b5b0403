//! Property tests of one partition log: random batches appended across segment rolls read back
//! byte for byte (from the cache, from disk, after a reopen), timestamp lookups agree with a
//! model of every record pushed, retention keeps exactly the newest segments, and truncation
//! keeps exactly the prefix it names.
//!
//! The proptest runner is seeded with [`PROPTEST_SEED`] so a run is reproducible; every assertion
//! message names the case's own content seed and what was being checked.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use quill::disk::{LogConfig, LogError, LogOptions, PartitionLog};
use quill_proto::record::BatchBuilder;
use quill_proto::types::{Epoch, Offset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seed of the proptest runner for every property in this file.
const PROPTEST_SEED: u64 = 0x5155_494C_4C50;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(PROPTEST_SEED),
        // Regressions are reproduced from the fixed seed, not from files next to the tests.
        failure_persistence: None,
        max_shrink_iters: 64,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// What a case appends.

#[derive(Clone, Debug)]
struct RecordSpec {
    /// Timestamp relative to the batch's first record (random timestamps).
    delta_ms: i64,
    /// Step from the previous record (monotonic timestamps).
    step_ms: i64,
    key_bytes: Option<usize>,
    value_bytes: Option<usize>,
    headers: usize,
}

#[derive(Clone, Debug)]
struct BatchSpec {
    /// Seeds the keys, values and headers.
    seed: u64,
    /// First record's timestamp (random timestamps) or jitter (rising timestamps).
    base_ms: i64,
    /// Step from the previous batch (monotonic timestamps).
    gap_ms: i64,
    records: Vec<RecordSpec>,
}

/// How a case's record timestamps relate to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timestamps {
    /// Any order, within and across batches.
    Random,
    /// Never decreasing, in offset order.
    Monotonic,
    /// Batch `i` starts near `1000 * i` with some jitter; records may go back a little.
    Rising,
}

fn record_spec() -> impl Strategy<Value = RecordSpec> {
    (
        -50i64..1000,
        0i64..50,
        prop::option::weighted(0.7, 0usize..16),
        prop::option::weighted(0.95, 0usize..3000),
        0usize..3,
    )
        .prop_map(
            |(delta_ms, step_ms, key_bytes, value_bytes, headers)| RecordSpec {
                delta_ms,
                step_ms,
                key_bytes,
                value_bytes,
                headers,
            },
        )
}

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    (
        any::<u64>(),
        0i64..100_000,
        0i64..2000,
        prop::collection::vec(record_spec(), 1..20),
    )
        .prop_map(|(seed, base_ms, gap_ms, records)| BatchSpec {
            seed,
            base_ms,
            gap_ms,
            records,
        })
}

/// One batch as built, before the log stamps it, with its records' timestamps.
#[derive(Clone, Debug)]
struct Built {
    bytes: BytesMut,
    ts: Vec<i64>,
}

/// One batch as the log holds it.
#[derive(Clone, Debug)]
struct Stored {
    base: u64,
    next: u64,
    bytes: Vec<u8>,
    ts: Vec<i64>,
}

/// Builds the batches of `specs`, each at most `bytes_max` bytes: records that would not fit
/// are dropped (a batch keeps at least its first record).
fn build_batches(specs: &[BatchSpec], mode: Timestamps, bytes_max: usize) -> Vec<Built> {
    let mut out = Vec::with_capacity(specs.len());
    let mut clock = 1_000i64;
    for (i, spec) in specs.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let first_ms = match mode {
            Timestamps::Random => spec.base_ms,
            Timestamps::Monotonic => {
                clock += spec.gap_ms;
                clock
            }
            Timestamps::Rising => 1_000 * i as i64 + spec.base_ms % 3_000,
        };
        let mut b = BatchBuilder::new(first_ms);
        let mut ts = Vec::new();
        // Header plus a conservative per-record overhead (varints, attributes).
        let mut estimate = 61usize;
        for (k, r) in spec.records.iter().enumerate() {
            let record_ms = match mode {
                Timestamps::Monotonic => {
                    if k > 0 {
                        clock += r.step_ms;
                    }
                    clock
                }
                Timestamps::Random | Timestamps::Rising => {
                    if k == 0 {
                        first_ms
                    } else {
                        first_ms + r.delta_ms
                    }
                }
            };
            let key: Option<Vec<u8>> = r.key_bytes.map(|n| (0..n).map(|_| rng.gen()).collect());
            let value: Option<Vec<u8>> = r.value_bytes.map(|n| {
                let mut v = vec![0u8; n];
                rng.fill(&mut v[..]);
                v
            });
            let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..r.headers)
                .map(|j| {
                    let v =
                        (j % 2 == 0).then(|| (0..rng.gen_range(0..8)).map(|_| rng.gen()).collect());
                    (format!("h{j}").into_bytes(), v)
                })
                .collect();
            let cost = 40
                + key.as_ref().map_or(0, Vec::len)
                + value.as_ref().map_or(0, Vec::len)
                + headers
                    .iter()
                    .map(|(k, v)| 16 + k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum::<usize>();
            if k > 0 && estimate + cost > bytes_max {
                break;
            }
            estimate += cost;
            let hs: Vec<(&[u8], Option<&[u8]>)> = headers
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                .collect();
            b.push(record_ms, key.as_deref(), value.as_deref(), &hs);
            ts.push(record_ms);
        }
        let bytes = b.finish();
        assert!(
            bytes.len() <= bytes_max,
            "batch {i} (seed {}) is {} bytes, over {bytes_max}",
            spec.seed,
            bytes.len()
        );
        out.push(Built { bytes, ts });
    }
    out
}

fn log_config(segment_bytes: u64, index_interval_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        batch_bytes_max: segment_bytes as usize,
        write_buffer_bytes: 64 << 10,
        pending_bytes_max: 4 << 20,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

fn open_options(config: LogConfig, cached: bool) -> LogOptions {
    if cached {
        options(config)
    } else {
        options_no_cache(config)
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the log.

/// Appends `batches` with `epoch`, checking the offsets each gets, and adds them to `model`.
async fn append_all(
    log: &PartitionLog,
    batches: &[Built],
    epoch: i32,
    model: &mut Vec<Stored>,
    ctx: &str,
) {
    for (i, b) in batches.iter().enumerate() {
        let base = model.last().map_or(log.log_end_offset().0, |s| s.next);
        let n = b.ts.len() as u64;
        let info = log
            .append(b.bytes.clone(), Epoch(epoch))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: append of batch {i} failed: {e}"));
        assert_eq!(
            info.base_offset,
            Offset(base),
            "{ctx}: base offset of batch {i}"
        );
        assert_eq!(
            info.last_offset,
            Offset(base + n - 1),
            "{ctx}: last offset of batch {i}"
        );
        model.push(Stored {
            base,
            next: base + n,
            bytes: stamped(b.bytes.clone(), base, epoch),
            ts: b.ts.clone(),
        });
    }
}

/// Checks that the log holds exactly `want` from `start` on: every batch read from its base
/// offset and from an offset inside it comes first and byte-identical, the batches after it are
/// the next ones, a sequential read returns all of them in order, and the log's bounds agree.
async fn check_reads(log: &PartitionLog, start: u64, want: &[Stored], rng: &mut StdRng, ctx: &str) {
    let end = want.last().map_or(start, |s| s.next);
    assert_eq!(
        log.log_start_offset(),
        Offset(start),
        "{ctx}: log start offset"
    );
    assert_eq!(log.log_end_offset(), Offset(end), "{ctx}: log end offset");
    assert_eq!(log.high_watermark(), Offset(end), "{ctx}: high watermark");
    for (i, b) in want.iter().enumerate() {
        let got = read_at(log, b.base, 1, ctx)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: read of batch {i} at {}: {e}", b.base));
        assert_eq!(got.len(), 1, "{ctx}: read({}, 1) returns one batch", b.base);
        assert!(
            got[0][..] == b.bytes[..],
            "{ctx}: batch {i} at {} differs",
            b.base
        );
        let inside = rng.gen_range(b.base..b.next);
        let max_bytes = rng.gen_range(1..=40_000);
        let got = read_at(log, inside, max_bytes, ctx)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: read({inside}, {max_bytes}) in batch {i}: {e}"));
        assert!(
            !got.is_empty(),
            "{ctx}: read({inside}, {max_bytes}) in batch {i} is empty"
        );
        for (k, g) in got.iter().enumerate() {
            let w = want.get(i + k).unwrap_or_else(|| {
                panic!("{ctx}: read({inside}) returned more batches than exist")
            });
            assert!(
                g[..] == w.bytes[..],
                "{ctx}: read({inside}, {max_bytes}) returned a wrong batch at position {k} (want base {})",
                w.base
            );
        }
    }
    let all = read_everything(log, start, end, rng, ctx).await;
    assert_eq!(all.len(), want.len(), "{ctx}: sequential read batch count");
    for (i, (g, w)) in all.iter().zip(want).enumerate() {
        assert!(
            g[..] == w.bytes[..],
            "{ctx}: sequential read differs at batch {i} (base {})",
            w.base
        );
    }
    let past = read_at(log, end, 1000, ctx)
        .await
        .expect("reading at the log end is allowed");
    assert!(
        past.is_empty(),
        "{ctx}: read at the log end returns nothing"
    );
    match read_at(log, end + 1, 1000, ctx).await {
        Err(LogError::OffsetOutOfRange {
            requested,
            earliest,
            latest,
        }) => {
            assert_eq!(requested, Offset(end + 1), "{ctx}");
            assert_eq!(earliest, Offset(start), "{ctx}");
            assert_eq!(latest, Offset(end), "{ctx}");
        }
        other => panic!("{ctx}: read past the end: expected OffsetOutOfRange, got {other:?}"),
    }
}

/// Reads from `start` to `end` in steps of random size.
async fn read_everything(
    log: &PartitionLog,
    start: u64,
    end: u64,
    rng: &mut StdRng,
    ctx: &str,
) -> Vec<Bytes> {
    read_range(log, start, end, || rng.gen_range(1..=100_000), ctx).await
}

/// The offset of the first record, in offset order, whose timestamp is at least `t`.
fn first_at_or_after(want: &[Stored], t: i64) -> Option<u64> {
    want.iter().find_map(|b| {
        b.ts.iter()
            .position(|&ts| ts >= t)
            .map(|k| b.base + k as u64)
    })
}

/// Timestamps worth asking about: every edge of the model plus random ones.
fn probe_timestamps(want: &[Stored], rng: &mut StdRng, n: usize) -> Vec<i64> {
    let all: Vec<i64> = want.iter().flat_map(|b| b.ts.iter().copied()).collect();
    let mut out = Vec::new();
    if let (Some(&lo), Some(&hi)) = (all.iter().min(), all.iter().max()) {
        out.extend([i64::MIN, lo - 1, lo, hi, hi + 1, i64::MAX]);
        for _ in 0..n {
            let t = all[rng.gen_range(0..all.len())];
            out.push(t + rng.gen_range(-1..=1));
            out.push(rng.gen_range(lo - 10..=hi + 10));
        }
    }
    out
}

async fn check_timestamps(log: &PartitionLog, want: &[Stored], rng: &mut StdRng, ctx: &str) {
    for t in probe_timestamps(want, rng, 12) {
        let got = bounded(
            &format!("{ctx}: offset_for_timestamp({t})"),
            log.offset_for_timestamp(t),
        )
        .await
        .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp({t}): {e}"));
        let expected = first_at_or_after(want, t).map(Offset);
        assert_eq!(got, expected, "{ctx}: offset_for_timestamp({t})");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn read_back_case(
    specs: Vec<BatchSpec>,
    more: Vec<BatchSpec>,
    segment_bytes: u64,
    index_interval_bytes: u64,
    cached: bool,
    seed: u64,
) {
    let config = log_config(segment_bytes, index_interval_bytes);
    let batches = build_batches(&specs, Timestamps::Random, segment_bytes as usize);
    let extra = build_batches(&more, Timestamps::Random, segment_bytes as usize);
    let ctx = format!(
        "seed {seed}: {} batches, segment_bytes {segment_bytes}, index_interval_bytes {index_interval_bytes}, cache {cached}",
        batches.len()
    );
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let (p, c, cfg) = (path.clone(), ctx.clone(), config.clone());
    let model = run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let (log, report) = PartitionLog::open(&p, open_options(cfg, cached))
            .await
            .unwrap();
        assert!(report.corrupt.is_empty(), "{c}");
        let mut model = Vec::new();
        append_all(&log, &batches, 1, &mut model, &c).await;
        let total: u64 = model.iter().map(|b| b.bytes.len() as u64).sum();
        let segments = log.segment_bases().len() as u64;
        assert!(
            segments > total / segment_bytes,
            "{c}: {total} bytes must roll into more than {segments} segments"
        );
        check_reads(&log, 0, &model, &mut rng, &format!("{c}, first session")).await;
        log.close().await.unwrap();
        model
    });
    run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 1);
        let (log, report) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        let c = format!("{ctx}, after reopen");
        assert!(report.corrupt.is_empty(), "{c}: {:?}", report.corrupt);
        assert_eq!(
            report.active.as_ref().map(|r| r.truncated_bytes),
            Some(0),
            "{c}"
        );
        check_reads(&log, 0, &model, &mut rng, &c).await;
        // Appends continue after the recovered end, and the new batches read back too.
        let mut model = model;
        append_all(&log, &extra, 2, &mut model, &c).await;
        check_reads(&log, 0, &model, &mut rng, &format!("{c}, appended more")).await;
        log.close().await.unwrap();
    });
}

fn timestamp_case(
    specs: Vec<BatchSpec>,
    mode: Timestamps,
    segment_bytes: u64,
    index_interval_bytes: u64,
    seed: u64,
) {
    let config = log_config(segment_bytes, index_interval_bytes);
    let batches = build_batches(&specs, mode, segment_bytes as usize);
    let ctx = format!(
        "seed {seed}: {mode:?} timestamps, {} batches, segment_bytes {segment_bytes}, index_interval_bytes {index_interval_bytes}",
        batches.len()
    );
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let (p, c, cfg) = (path.clone(), ctx.clone(), config.clone());
    let model = run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let (log, _) = PartitionLog::open(&p, options(cfg)).await.unwrap();
        let mut model = Vec::new();
        append_all(&log, &batches, 0, &mut model, &c).await;
        check_timestamps(&log, &model, &mut rng, &format!("{c}, first session")).await;
        log.close().await.unwrap();
        model
    });
    run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 1);
        let (log, _) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        check_timestamps(&log, &model, &mut rng, &format!("{ctx}, after reopen")).await;
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Random batches across several rolls read back byte-identical: from the cache or the disk
    /// in the session that wrote them, from disk after a reopen, and with more appended after it.
    #[test]
    fn batches_read_back_identical_across_rolls_and_reopen(
        specs in prop::collection::vec(batch_spec(), 1..48),
        more in prop::collection::vec(batch_spec(), 0..6),
        segment_kib in 16u64..=64,
        index_interval_bytes in 256u64..4096,
        cached in any::<bool>(),
        seed in any::<u64>(),
    ) {
        read_back_case(specs, more, segment_kib << 10, index_interval_bytes, cached, seed);
    }

    /// `offset_for_timestamp(T)` is the first record in offset order whose timestamp is at least
    /// `T`, with timestamps in any order (the doc comment promises exactly that).
    #[test]
    fn timestamp_lookup_matches_model_with_random_timestamps(
        specs in prop::collection::vec(batch_spec(), 1..40),
        segment_kib in 16u64..=64,
        index_interval_bytes in 256u64..4096,
        seed in any::<u64>(),
    ) {
        timestamp_case(specs, Timestamps::Random, segment_kib << 10, index_interval_bytes, seed);
    }

    /// The same with timestamps that never decrease.
    #[test]
    fn timestamp_lookup_matches_model_with_monotonic_timestamps(
        specs in prop::collection::vec(batch_spec(), 1..40),
        segment_kib in 16u64..=64,
        index_interval_bytes in 256u64..4096,
        seed in any::<u64>(),
    ) {
        timestamp_case(specs, Timestamps::Monotonic, segment_kib << 10, index_interval_bytes, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// Retention.

/// Segments of `want` by the bases the log reports: (base, bytes, max timestamp).
fn segments_of(want: &[Stored], bases: &[Offset]) -> Vec<(u64, u64, i64)> {
    bases
        .iter()
        .enumerate()
        .map(|(i, base)| {
            let end = bases.get(i + 1).map_or(u64::MAX, |o| o.0);
            let batches = want.iter().filter(|b| b.base >= base.0 && b.base < end);
            let (bytes, max_ts) = batches.fold((0u64, -1i64), |(n, m), b| {
                (
                    n + b.bytes.len() as u64,
                    m.max(*b.ts.iter().max().expect("a record")),
                )
            });
            (base.0, bytes, max_ts)
        })
        .collect()
}

/// The log start offset retention must leave: drop sealed segments from the oldest while one is
/// past `retention_ms` or the rest still holds `retention_bytes`.
fn retention_model(
    segs: &[(u64, u64, i64)],
    now: i64,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
) -> (u64, usize) {
    let mut total: u64 = segs.iter().map(|s| s.1).sum();
    let mut deleted = 0;
    for &(_, bytes, max_ts) in &segs[..segs.len() - 1] {
        let expired = retention_ms.is_some_and(|r| max_ts != -1 && now.saturating_sub(max_ts) > r);
        let oversize = retention_bytes.is_some_and(|r| total.saturating_sub(bytes) >= r);
        if !(expired || oversize) {
            break;
        }
        total -= bytes;
        deleted += 1;
    }
    (segs[deleted].0, deleted)
}

#[allow(clippy::too_many_arguments)]
fn retention_case(
    specs: Vec<BatchSpec>,
    segment_bytes: u64,
    index_interval_bytes: u64,
    now: i64,
    retention_ms: Option<i64>,
    retention_kib: Option<u64>,
    cached: bool,
    seed: u64,
) {
    let retention_bytes = retention_kib.map(|k| k << 10);
    let config = LogConfig {
        retention_ms,
        retention_bytes,
        ..log_config(segment_bytes, index_interval_bytes)
    };
    let batches = build_batches(&specs, Timestamps::Rising, segment_bytes as usize);
    let ctx = format!(
        "seed {seed}: {} batches, segment_bytes {segment_bytes}, now {now}, retention_ms {retention_ms:?}, retention_bytes {retention_bytes:?}",
        batches.len()
    );
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let (p, c, cfg) = (path.clone(), ctx.clone(), config.clone());
    let (model, start) = run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed);
        // The clock stands still while appending (no time-based roll), then jumps to `now`.
        let clock = Rc::new(Cell::new(0i64));
        let mut opts = open_options(cfg, cached);
        let c2 = clock.clone();
        opts.clock = Rc::new(move || c2.get());
        let (log, _) = PartitionLog::open(&p, opts).await.unwrap();
        let mut model = Vec::new();
        append_all(&log, &batches, 0, &mut model, &c).await;
        let bases = log.segment_bases();
        let segs = segments_of(&model, &bases);
        let (start, deleted) = retention_model(&segs, now, retention_ms, retention_bytes);
        clock.set(now);
        let got = bounded(&c, log.enforce_retention()).await.unwrap();
        let c = format!("{c}, segments {segs:?}");
        assert_eq!(got, deleted, "{c}: segments deleted");
        assert_eq!(
            log.log_start_offset(),
            Offset(start),
            "{c}: new log start offset"
        );
        assert_eq!(
            log.segment_bases(),
            bases[deleted..].to_vec(),
            "{c}: segments kept"
        );
        // Below the new start: out of range, naming the new earliest offset.
        let mut probes: Vec<u64> = (0..8)
            .filter(|_| start > 0)
            .map(|_| rng.gen_range(0..start))
            .collect();
        if start > 0 {
            probes.extend([0, start - 1]);
        }
        for from in probes {
            match read_at(&log, from, 1000, &c).await {
                Err(LogError::OffsetOutOfRange { requested, earliest, .. }) => {
                    assert_eq!(requested, Offset(from), "{c}");
                    assert_eq!(earliest, Offset(start), "{c}: earliest offset named by the error");
                }
                other => panic!("{c}: read({from}) below the log start: expected OffsetOutOfRange, got {other:?}"),
            }
        }
        let kept: Vec<Stored> = model.into_iter().filter(|b| b.base >= start).collect();
        check_reads(
            &log,
            start,
            &kept,
            &mut rng,
            &format!("{c}, after retention"),
        )
        .await;
        // Nothing more to delete at the same time.
        assert_eq!(
            bounded(&c, log.enforce_retention()).await.unwrap(),
            0,
            "{c}: retention is idempotent"
        );
        log.close().await.unwrap();
        (kept, start)
    });
    run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 1);
        let (log, _) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        check_reads(
            &log,
            start,
            &model,
            &mut rng,
            &format!("{ctx}, after reopen"),
        )
        .await;
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// After `enforce_retention`, reads below the new log start offset are out of range and name
    /// it; everything at or above it reads back identical, before and after a reopen.
    #[test]
    fn retention_keeps_exactly_the_newest_segments(
        specs in prop::collection::vec(batch_spec(), 2..48),
        segment_kib in 16u64..=64,
        index_interval_bytes in 256u64..4096,
        now in 0i64..60_000,
        retention_ms in prop::option::of(0i64..20_000),
        retention_kib in prop::option::weighted(0.3, 0u64..400),
        cached in any::<bool>(),
        seed in any::<u64>(),
    ) {
        retention_case(specs, segment_kib << 10, index_interval_bytes, now, retention_ms, retention_kib, cached, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation.

#[allow(clippy::too_many_arguments)]
fn truncation_case(
    specs: Vec<BatchSpec>,
    more: Vec<BatchSpec>,
    segment_bytes: u64,
    index_interval_bytes: u64,
    bound_at: Index,
    cut_at: Index,
    cached: bool,
    seed: u64,
) {
    let config = log_config(segment_bytes, index_interval_bytes);
    let batches = build_batches(&specs, Timestamps::Random, segment_bytes as usize);
    let extra = build_batches(&more, Timestamps::Random, segment_bytes as usize);
    // Batch boundaries are indexes 0..=n (n is the log end); bound <= cut.
    let n = batches.len();
    let cut = cut_at.index(n + 1);
    let bound = bound_at.index(cut + 1);
    let ctx = format!(
        "seed {seed}: {n} batches, bound at batch {bound}, truncate at batch {cut}, {} more, segment_bytes {segment_bytes}, cache {cached}",
        extra.len()
    );
    let last_epoch = if extra.is_empty() { 1 } else { 2 };
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let (p, c, cfg) = (path.clone(), ctx.clone(), config.clone());
    let model = run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let (log, _) = PartitionLog::open(&p, open_options(cfg, cached))
            .await
            .unwrap();
        let mut model = Vec::new();
        append_all(&log, &batches, 1, &mut model, &c).await;
        let boundary = |k: usize| {
            model
                .get(k)
                .map_or(model.last().map_or(0, |b| b.next), |b| b.base)
        };
        let (bound_off, cut_off) = (boundary(bound), boundary(cut));
        let segments_before = log.segment_bases().len();
        log.set_replication_bound(Some(Offset(bound_off)));
        assert_eq!(
            log.high_watermark(),
            Offset(bound_off),
            "{c}: high watermark follows the bound"
        );
        if bound > 0 {
            let below = boundary(bound - 1);
            match bounded(&c, log.truncate_to(Offset(below))).await {
                Err(LogError::TruncateBelowHighWatermark { requested, high_watermark }) => {
                    assert_eq!((requested, high_watermark), (Offset(below), Offset(bound_off)), "{c}");
                }
                other => panic!("{c}: truncate below the bound: expected TruncateBelowHighWatermark, got {other:?}"),
            }
        }
        bounded(&c, log.truncate_to(Offset(cut_off)))
            .await
            .unwrap_or_else(|e| panic!("{c}: truncate_to({cut_off}): {e}"));
        assert_eq!(
            log.log_end_offset(),
            Offset(cut_off),
            "{c}: log end after truncation"
        );
        assert!(log.segment_bases().len() <= segments_before, "{c}");
        model.truncate(cut);
        append_all(&log, &extra, 2, &mut model, &c).await;
        log.set_replication_bound(None);
        check_reads(&log, 0, &model, &mut rng, &format!("{c}, after truncation")).await;
        log.close().await.unwrap();
        model
    });
    run(move || async move {
        let mut rng = StdRng::seed_from_u64(seed ^ 1);
        let (log, report) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        let c = format!("{ctx}, after reopen");
        assert!(report.corrupt.is_empty(), "{c}: {:?}", report.corrupt);
        check_reads(&log, 0, &model, &mut rng, &c).await;
        if !model.is_empty() {
            assert_eq!(
                log.last_epoch(),
                Epoch(last_epoch),
                "{c}: epoch of the newest batch"
            );
        }
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Truncating to a batch boundary at or above the high watermark, then appending, leaves
    /// exactly the kept prefix plus the new batches, also after a reopen.
    #[test]
    fn truncation_keeps_the_prefix_and_new_appends(
        specs in prop::collection::vec(batch_spec(), 1..40),
        more in prop::collection::vec(batch_spec(), 0..8),
        segment_kib in 16u64..=64,
        index_interval_bytes in 256u64..4096,
        bound_at in any::<Index>(),
        cut_at in any::<Index>(),
        cached in any::<bool>(),
        seed in any::<u64>(),
    ) {
        truncation_case(specs, more, segment_kib << 10, index_interval_bytes, bound_at, cut_at, cached, seed);
    }
}

/// Truncation into a segment that was sealed before a restart: the reopened log must cut that
/// segment and keep appending to it, as it does within one session.
#[test]
fn truncation_into_a_sealed_segment_after_reopen() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let config = log_config(16 << 10, 1024);
    let (p, cfg) = (path.clone(), config.clone());
    let model = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options_no_cache(cfg)).await.unwrap();
        let mut model = Vec::new();
        let batches: Vec<Built> = (0..40u64)
            .map(|i| Built {
                bytes: batch(i, 2, 900, 1_000 + i as i64),
                ts: vec![1_000 + i as i64, 1_001 + i as i64],
            })
            .collect();
        append_all(&log, &batches, 1, &mut model, "first session").await;
        assert!(log.segment_bases().len() >= 3, "the log must roll");
        log.close().await.unwrap();
        model
    });
    let (p, cfg) = (path.clone(), config.clone());
    let model = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options_no_cache(cfg)).await.unwrap();
        let bases = log.segment_bases();
        // A batch boundary inside the first segment, which the reopen loaded as sealed.
        let mut model = model;
        let cut = model
            .iter()
            .position(|b| b.base > bases[0].0)
            .expect("a second batch");
        assert!(
            model[cut].next <= bases[1].0,
            "batch {cut} is in the first segment"
        );
        let cut_off = model[cut].base;
        let ctx = format!(
            "truncate_to({cut_off}) in sealed segment {} after reopen",
            bases[0]
        );
        // As a follower of a new leader: replication committed only up to the cut.
        log.set_replication_bound(Some(Offset(cut_off)));
        bounded(&ctx, log.truncate_to(Offset(cut_off)))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(log.log_end_offset(), Offset(cut_off), "{ctx}");
        model.truncate(cut);
        let more = vec![Built {
            bytes: batch(999, 3, 500, 5_000),
            ts: vec![5_000, 5_001, 5_002],
        }];
        append_all(&log, &more, 2, &mut model, &ctx).await;
        log.set_replication_bound(None);
        let mut rng = StdRng::seed_from_u64(7);
        check_reads(&log, 0, &model, &mut rng, &ctx).await;
        log.close().await.unwrap();
        model
    });
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        check_reads(&log, 0, &model, &mut rng, "after truncation and reopen").await;
        assert_eq!(log.last_epoch(), Epoch(2));
        log.close().await.unwrap();
    });
}
