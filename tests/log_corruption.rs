//! Corruption of a closed log's files: truncated tails, appended garbage, flipped bits, damaged
//! indexes, corrupt sealed segments. Each test writes a log with the engine, closes it, damages
//! copies of its files with `std::fs`, reopens each copy and checks what the log serves.
//!
//! The contract: past the recovery point (what was not yet checkpointed as durable when the
//! process died) recovery keeps exactly the longest valid batch prefix of the last segment; below
//! it, and wherever valid batches follow, a failed batch is a damaged range that is reported
//! (`LogError::CorruptSegment`, `OpenReport::corrupt`), never served and never cut. A damaged
//! index is rebuilt. Tests of torn tails write the recovery-point checkpoint a crash would have
//! left ([`set_recovery_point`]); a clean close checkpoints the whole log.
//!
//! Every random choice comes from a seeded `StdRng`; assertion messages name the seed and case.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use quill::disk::{LogConfig, LogError, OpenReport, PartitionLog};
use quill_proto::types::{Epoch, Offset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Byte ranges of the batch header fields that lie outside the CRC (docs/FORMAT.md).
const BASE_OFFSET_FIELD: std::ops::Range<usize> = 0..8;
const BATCH_LENGTH_FIELD: std::ops::Range<usize> = 8..12;
const EPOCH_FIELD: std::ops::Range<usize> = 12..16;
/// The CRC covers `attributes` (byte 21) to the end of the batch.
const CRC_COVERED_FROM: usize = 21;

// ---------------------------------------------------------------------------------------------
// A pristine log on disk and its model.

/// One batch as the log holds it, and where it is on disk.
#[derive(Clone, Debug)]
struct Stored {
    base: u64,
    next: u64,
    bytes: Vec<u8>,
    epoch: i32,
    ts: Vec<i64>,
    /// Base offset of the segment holding it.
    segment: u64,
    /// Byte position in that segment's `.log`.
    position: u64,
}

impl Stored {
    fn end(&self) -> u64 {
        self.position + self.bytes.len() as u64
    }
}

/// A closed log, never opened again: cases copy it and damage the copy.
struct Pristine {
    _dir: tempfile::TempDir,
    path: PathBuf,
    config: LogConfig,
    model: Vec<Stored>,
    /// Segment base offsets, oldest first.
    bases: Vec<u64>,
}

/// What to append: (records, value bytes, first timestamp) per batch.
type Plan = Vec<(usize, usize, i64)>;

fn config(segment_bytes: u64, index_interval_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        batch_bytes_max: segment_bytes as usize,
        retention_ms: None,
        ..small_config()
    }
}

/// Writes `plan` with the engine (batch `i` with epoch `1 + i / 4`), closes the log and checks
/// that each segment file is exactly its batches back to back.
fn write_log(config: LogConfig, plan: Plan, seed: u64) -> Pristine {
    let dir = tmpdir();
    let path = dir.path().join("pristine").join("p0");
    let (p, cfg) = (path.clone(), config.clone());
    let (mut model, bases) = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options_no_cache(cfg)).await.unwrap();
        let mut model = Vec::new();
        for (i, &(records, value_bytes, ts)) in plan.iter().enumerate() {
            let b = batch(
                seed.wrapping_mul(1000).wrapping_add(i as u64),
                records,
                value_bytes,
                ts,
            );
            let epoch = 1 + i as i32 / 4;
            let info = log.append(b.clone(), Epoch(epoch)).await.unwrap();
            let base = info.base_offset.0;
            model.push(Stored {
                base,
                next: info.last_offset.0 + 1,
                bytes: stamped(b, base, epoch),
                epoch,
                ts: (0..records as i64).map(|k| ts + k).collect(),
                segment: 0,
                position: 0,
            });
        }
        let bases: Vec<u64> = log.segment_bases().iter().map(|o| o.0).collect();
        log.close().await.unwrap();
        (model, bases)
    });
    for &base in &bases {
        let mut position = 0;
        let mut contents = Vec::new();
        for b in model
            .iter_mut()
            .filter(|b| segment_of(&bases, b.base) == base)
        {
            b.segment = base;
            b.position = position;
            position += b.bytes.len() as u64;
            contents.extend_from_slice(&b.bytes);
        }
        let on_disk = std::fs::read(segment_file(&path, base, "log")).unwrap();
        assert!(
            on_disk == contents,
            "seed {seed}: segment {base} is not its batches back to back"
        );
    }
    Pristine {
        _dir: dir,
        path,
        config,
        model,
        bases,
    }
}

fn segment_of(bases: &[u64], offset: u64) -> u64 {
    *bases
        .iter()
        .rev()
        .find(|&&b| b <= offset)
        .expect("a segment")
}

/// Copies the pristine log into a fresh directory `<root>/case-<n>/p0` and returns its path.
fn copy_log(src: &Path, root: &Path, n: usize) -> PathBuf {
    let dst = root.join(format!("case-{n}")).join("p0");
    copy_dir(src, &dst);
    dst
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Reading and checking.

async fn open(path: &Path, config: &LogConfig, ctx: &str) -> (PartitionLog, OpenReport) {
    bounded(
        &format!("{ctx}: open"),
        PartitionLog::open(path, options_no_cache(config.clone())),
    )
    .await
    .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"))
}

/// Checks that the log holds exactly `want`: its end, a sequential read, and every batch read
/// alone from its base offset.
async fn check_exactly(log: &PartitionLog, want: &[Stored], ctx: &str) {
    let end = want.last().map_or(0, |b| b.next);
    assert_eq!(log.log_end_offset(), Offset(end), "{ctx}: log end offset");
    assert_eq!(log.high_watermark(), Offset(end), "{ctx}: high watermark");
    let got = read_range(log, 0, end, || 50_000, ctx).await;
    assert_eq!(got.len(), want.len(), "{ctx}: number of batches read");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g[..] == w.bytes[..],
            "{ctx}: batch {i} (base {}) differs",
            w.base
        );
    }
    for w in want {
        let got = read_at(log, w.base, 1, ctx)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: read of batch {}: {e}", w.base));
        assert!(
            got.len() == 1 && got[0][..] == w.bytes[..],
            "{ctx}: read({}, 1)",
            w.base
        );
    }
    let past = read_at(log, end, 100, ctx).await;
    assert!(
        matches!(&past, Ok(b) if b.is_empty()),
        "{ctx}: read at the end: {past:?}"
    );
}

/// Appends one batch after recovery with `epoch`, closes, reopens and checks `want` plus it.
async fn append_and_reopen(
    path: &Path,
    config: &LogConfig,
    log: PartitionLog,
    want: &[Stored],
    epoch: i32,
    ctx: &str,
) {
    let end = want.last().map_or(0, |b| b.next);
    let b = batch(0xA11CE, 3, 120, 9_000_000);
    let info = bounded(ctx, log.append(b.clone(), Epoch(epoch)))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
    assert_eq!(
        info.base_offset,
        Offset(end),
        "{ctx}: append after recovery continues at the end"
    );
    log.close().await.unwrap();
    let mut want = want.to_vec();
    want.push(Stored {
        base: end,
        next: end + 3,
        bytes: stamped(b, end, epoch),
        epoch,
        ts: vec![9_000_000, 9_000_001, 9_000_002],
        segment: 0,
        position: 0,
    });
    let (log, report) = open(path, config, ctx).await;
    assert_eq!(
        report.active.as_ref().map(|r| r.truncated_bytes),
        Some(0),
        "{ctx}: the second reopen finds a clean log"
    );
    check_exactly(&log, &want, &format!("{ctx}, appended and reopened")).await;
    log.close().await.unwrap();
}

/// The newest epoch among `want` (the epoch an append after recovery may use).
fn newest_epoch(want: &[Stored]) -> i32 {
    want.last().map_or(0, |b| b.epoch)
}

/// The batches wholly before byte `cut` of the last segment (and all earlier segments).
fn prefix_before_cut(p: &Pristine, cut: u64) -> Vec<Stored> {
    let last = *p.bases.last().unwrap();
    p.model
        .iter()
        .filter(|b| b.segment != last || b.end() <= cut)
        .cloned()
        .collect()
}

/// A log of `n` batches of varied sizes over several 16 KiB segments, ending with `tail`.
fn varied_plan(seed: u64, n: usize, tail: &[(usize, usize)]) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan: Plan = (0..n)
        .map(|i| {
            (
                rng.gen_range(1..8),
                rng.gen_range(0..1500),
                1_000 + 100 * i as i64,
            )
        })
        .collect();
    for &(records, value_bytes) in tail {
        let ts = 1_000 + 100 * plan.len() as i64;
        plan.push((records, value_bytes, ts));
    }
    plan
}

// ---------------------------------------------------------------------------------------------
// Truncated tails.

/// Cuts the last segment at many random positions (batch boundaries included), as a crash before
/// any checkpoint since the roll would: the log keeps exactly the batches wholly before the cut,
/// the file is cut back to their end, and appends continue there and survive a reopen.
#[test]
fn truncated_tail_keeps_the_batches_before_the_cut() {
    for seed in 0..3u64 {
        let p = write_log(config(16 << 10, 1024), varied_plan(seed, 40, &[]), seed);
        let last = *p.bases.last().unwrap();
        let last_len = file_len(&segment_file(&p.path, last, "log"));
        assert!(p.bases.len() >= 3, "seed {seed}: the log must roll");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cuts: Vec<u64> = (0..16).map(|_| rng.gen_range(0..last_len)).collect();
        // Exact batch boundaries, and one byte either side of one.
        let boundaries: Vec<u64> = p
            .model
            .iter()
            .filter(|b| b.segment == last)
            .map(|b| b.position)
            .collect();
        let b = boundaries[rng.gen_range(0..boundaries.len())];
        cuts.extend([0, b, b + 1, b.saturating_sub(1), last_len - 1]);
        cuts.extend(boundaries.iter().skip(1).take(2));
        let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
        let (src, cfg, prefixes) = (
            p.path.clone(),
            p.config.clone(),
            cuts.iter()
                .map(|&c| prefix_before_cut(&p, c))
                .collect::<Vec<_>>(),
        );
        run(move || async move {
            for (n, (&cut, want)) in cuts.iter().zip(&prefixes).enumerate() {
                let ctx = format!(
                    "seed {seed}: last segment {last} ({last_len} bytes) cut at byte {cut}"
                );
                let dir = copy_log(&src, &root, n);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(segment_file(&dir, last, "log"))
                    .unwrap();
                f.set_len(cut).unwrap();
                drop(f);
                set_recovery_point(&dir, last);
                let (log, _) = open(&dir, &cfg, &ctx).await;
                check_exactly(&log, want, &ctx).await;
                let valid_end = want
                    .iter()
                    .rev()
                    .find(|b| b.segment == last)
                    .map_or(0, |b| b.end());
                assert_eq!(
                    file_len(&segment_file(&dir, last, "log")),
                    valid_end,
                    "{ctx}: file cut back to the valid end"
                );
                let epoch = newest_epoch(want);
                append_and_reopen(&dir, &cfg, log, want, epoch, &ctx).await;
                std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
            }
        });
    }
}

/// Cuts a small last batch at every byte position inside it.
#[test]
fn truncated_tail_at_every_byte_of_the_last_batch() {
    let seed = 100;
    let p = write_log(
        config(16 << 10, 1024),
        varied_plan(seed, 20, &[(2, 30)]),
        seed,
    );
    let last = p.model.last().unwrap().clone();
    assert!(p.bases.len() >= 2, "seed {seed}: the log must roll");
    let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let want: Vec<Stored> = p.model[..p.model.len() - 1].to_vec();
    let full = p.model.clone();
    let (src, cfg) = (p.path.clone(), p.config.clone());
    run(move || async move {
        for cut in last.position..=last.end() {
            let ctx = format!(
                "seed {seed}: last batch at bytes {}..{} cut at {cut}",
                last.position,
                last.end()
            );
            let dir = copy_log(&src, &root, cut as usize);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(segment_file(&dir, last.segment, "log"))
                .unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            set_recovery_point(&dir, last.base);
            let (log, _) = open(&dir, &cfg, &ctx).await;
            let want = if cut == last.end() {
                &full[..]
            } else {
                &want[..]
            };
            check_exactly(&log, want, &ctx).await;
            let valid_end = want.last().unwrap().end();
            assert_eq!(
                file_len(&segment_file(&dir, last.segment, "log")),
                valid_end,
                "{ctx}: file length"
            );
            if cut % 16 == 0 {
                append_and_reopen(&dir, &cfg, log, want, last.epoch, &ctx).await;
            } else {
                log.close().await.unwrap();
            }
            std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        }
    });
}

/// The same cuts below the recovery point (here: a clean close checkpointed the whole log)
/// remove bytes that were durable: that is media damage, not a torn tail. The log end stays,
/// the lost offsets become one damaged range, and appends continue after it, so no
/// acknowledged offset is ever given again.
#[test]
fn truncated_tail_below_the_recovery_point_keeps_the_log_end() {
    let seed = 110;
    let p = write_log(config(16 << 10, 1024), varied_plan(seed, 30, &[]), seed);
    let last = *p.bases.last().unwrap();
    let end = p.model.last().unwrap().next;
    let in_last: Vec<Stored> = p
        .model
        .iter()
        .filter(|b| b.segment == last)
        .cloned()
        .collect();
    assert!(
        in_last.len() >= 2,
        "seed {seed}: two batches in the last segment"
    );
    let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let (src, cfg, model) = (p.path.clone(), p.config.clone(), p.model.clone());
    run(move || async move {
        let b = &in_last[1];
        for (n, cut) in [b.position, b.position + 7, b.end() - 1]
            .into_iter()
            .enumerate()
        {
            let ctx =
                format!("seed {seed}: last segment cut at byte {cut}, below the recovery point");
            let dir = copy_log(&src, &root, n);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(segment_file(&dir, last, "log"))
                .unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let (log, report) = open(&dir, &cfg, &ctx).await;
            assert_eq!(report.recovery_point, Offset(end), "{ctx}");
            assert_eq!(
                log.log_end_offset(),
                Offset(end),
                "{ctx}: the log end stays"
            );
            let ranges = log.damaged_ranges();
            assert_eq!(ranges.len(), 1, "{ctx}: {ranges:?}");
            assert_eq!(
                (ranges[0].first, ranges[0].last),
                (Offset(b.base), Offset(end - 1)),
                "{ctx}"
            );
            assert_eq!(
                report.corrupt,
                vec![(
                    segment_file(&dir, last, "log"),
                    Offset(b.base),
                    Offset(end - 1)
                )],
                "{ctx}"
            );
            for w in model.iter().filter(|w| w.next <= b.base) {
                let got = read_at(&log, w.base, 1, &ctx).await;
                assert!(
                    matches!(&got, Ok(v) if v.len() == 1 && v[0][..] == w.bytes[..]),
                    "{ctx}: batch {}",
                    w.base
                );
            }
            let got = read_at(&log, b.base, 1, &ctx).await;
            assert!(
                matches!(&got, Err(LogError::CorruptSegment { first, next, .. }) if first.0 == b.base && next.0 == end),
                "{ctx}: {got:?}"
            );
            let info = log
                .append(batch(5, 2, 10, 9_000_000), Epoch(newest_epoch(&model)))
                .await
                .unwrap();
            assert_eq!(
                info.base_offset,
                Offset(end),
                "{ctx}: no offset is given twice"
            );
            log.close().await.unwrap();
            let (log, report) = open(&dir, &cfg, &ctx).await;
            assert!(
                report.corrupt.is_empty(),
                "{ctx}: known ranges are not news"
            );
            assert_eq!(
                log.damaged_ranges(),
                ranges,
                "{ctx}: the range survives a reopen"
            );
            assert_eq!(log.log_end_offset(), Offset(end + 2), "{ctx}");
            log.close().await.unwrap();
            std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Appended garbage.

/// Garbage after the last batch: random bytes, zeros, a batch with a valid-looking header and
/// a bad CRC, a whole valid batch whose base offset leaves a gap, a torn copy of a batch. The
/// log reopens exactly as it was, the garbage is cut from the file, and appends work.
#[test]
fn appended_garbage_is_cut_off() {
    let seed = 200;
    let p = write_log(config(16 << 10, 1024), varied_plan(seed, 30, &[]), seed);
    let last = *p.bases.last().unwrap();
    let end = p.model.last().unwrap().next;
    let valid_len = file_len(&segment_file(&p.path, last, "log"));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut garbage: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..8 {
        let n = rng.gen_range(1..6000);
        let mut g = vec![0u8; n];
        rng.fill(&mut g[..]);
        garbage.push((format!("random bytes #{i} ({n})"), g));
    }
    for n in [
        1usize,
        60,
        61,
        62,
        4096 - (valid_len as usize % 4096),
        4096,
        8192,
    ] {
        garbage.push((format!("{n} zero bytes"), vec![0u8; n]));
    }
    // A real next batch (right base offset, right epoch) whose bytes no longer match the CRC.
    let next = stamped(batch(4242, 3, 200, 77_000), end, 9);
    for (what, at) in [
        ("CRC field", 17usize),
        ("attributes", 21),
        ("a record", next.len() - 3),
    ] {
        let mut g = next.clone();
        g[at] ^= 0x10;
        garbage.push((format!("next batch with a bad CRC (flipped {what})"), g));
    }
    garbage.push((
        "valid batch with a gap in offsets".into(),
        stamped(batch(4243, 2, 100, 77_000), end + 5, 9),
    ));
    garbage.push((
        "valid batch with the previous base offset".into(),
        stamped(batch(4244, 1, 10, 77_000), end - 1, 9),
    ));
    garbage.push(("torn next batch".into(), next[..next.len() / 2].to_vec()));
    garbage.push(("next batch header only".into(), next[..61].to_vec()));
    let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let (src, cfg, want) = (p.path.clone(), p.config.clone(), p.model.clone());
    run(move || async move {
        for (n, (what, g)) in garbage.iter().enumerate() {
            let ctx = format!("seed {seed}: {what} appended to segment {last}");
            let dir = copy_log(&src, &root, n);
            let log_file = segment_file(&dir, last, "log");
            let mut bytes = std::fs::read(&log_file).unwrap();
            bytes.extend_from_slice(g);
            std::fs::write(&log_file, bytes).unwrap();
            let (log, report) = open(&dir, &cfg, &ctx).await;
            let active = report.active.clone().unwrap();
            assert_eq!(
                active.truncated_bytes,
                g.len() as u64,
                "{ctx}: bytes cut off ({active:?})"
            );
            assert_eq!(
                file_len(&log_file),
                valid_len,
                "{ctx}: the garbage is gone from the file"
            );
            check_exactly(&log, &want, &ctx).await;
            assert_eq!(
                log.last_epoch(),
                Epoch(newest_epoch(&want)),
                "{ctx}: last epoch"
            );
            append_and_reopen(&dir, &cfg, log, &want, newest_epoch(&want), &ctx).await;
            std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Flipped bits in the last batch.

/// One flipped bit anywhere in the last batch, written after the last recovery-point checkpoint
/// (a crash came before the next one): the CRC covers `attributes` to the end, the CRC field
/// itself, magic and batch length are checked, and the base offset must continue the previous
/// batch, so recovery cannot tell such damage from a torn write and cuts the batch, as it always
/// did. `partitionLeaderEpoch` (bytes 12..16) is outside the CRC but checked against the
/// leader-epoch checkpoint: a whole, CRC-valid batch with an impossible epoch is no torn write,
/// so it becomes a damaged range and the log end stays (issue 9, finding 1).
#[test]
fn flipped_bit_in_the_last_batch_past_the_recovery_point() {
    for (seed, tail) in [(300u64, (1usize, 20usize)), (301, (6, 1400))] {
        let p = write_log(config(16 << 10, 1024), varied_plan(seed, 24, &[tail]), seed);
        let last = p.model.last().unwrap().clone();
        let len = last.bytes.len();
        let mut rng = StdRng::seed_from_u64(seed);
        // Every byte of a small batch; header bytes plus random positions of a large one.
        let positions: Vec<usize> = if len <= 200 {
            (0..len).collect()
        } else {
            (0..61)
                .chain((0..40).map(|_| rng.gen_range(61..len)))
                .collect()
        };
        let flips: Vec<(usize, u32)> = positions
            .into_iter()
            .map(|at| (at, rng.gen_range(0..8)))
            .collect();
        let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
        let (src, cfg, model) = (p.path.clone(), p.config.clone(), p.model.clone());
        run(move || async move {
            let kept = &model[..model.len() - 1];
            for (n, &(at, bit)) in flips.iter().enumerate() {
                let ctx =
                    format!("seed {seed}: bit {bit} of byte {at} of the last batch ({len} bytes)");
                let dir = copy_log(&src, &root, n);
                flip_bit(
                    &segment_file(&dir, last.segment, "log"),
                    last.position + at as u64,
                    bit,
                );
                set_recovery_point(&dir, last.base);
                let (log, _) = open(&dir, &cfg, &ctx).await;
                if EPOCH_FIELD.contains(&at) {
                    assert_eq!(log.log_end_offset(), Offset(last.next), "{ctx}: log end");
                    assert_eq!(log.last_epoch(), Epoch(last.epoch), "{ctx}: last epoch");
                    let got = read_at(&log, last.base, 1, &ctx).await;
                    assert!(
                        matches!(&got, Err(LogError::CorruptSegment { first, last: l, .. })
                            if first.0 == last.base && l.0 == last.next - 1),
                        "{ctx}: {}",
                        describe(&got, &model)
                    );
                    for b in kept {
                        let got = read_at(&log, b.base, 1, &ctx).await;
                        assert!(
                            matches!(&got, Ok(v) if v.len() == 1 && v[0][..] == b.bytes[..]),
                            "{ctx}: batch {}",
                            b.base
                        );
                    }
                    let info = log
                        .append(batch(1, 1, 10, 5), Epoch(last.epoch))
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: append: {e}"));
                    assert_eq!(info.base_offset, Offset(last.next), "{ctx}");
                    log.close().await.unwrap();
                } else {
                    check_exactly(&log, kept, &ctx).await;
                    assert_eq!(
                        file_len(&segment_file(&dir, last.segment, "log")),
                        last.position,
                        "{ctx}: file length"
                    );
                    if n % 8 == 0 {
                        append_and_reopen(&dir, &cfg, log, kept, last.epoch, &ctx).await;
                    } else {
                        log.close().await.unwrap();
                    }
                }
                std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
            }
        });
    }
}

/// Recovery takes the leader epoch from the batches it scans; when the tail is cut inside the
/// batch that the newest index entry points at, no valid batch is scanned, yet the log still
/// holds batches and must report the newest one's epoch (appends with an older epoch are
/// stale).
#[test]
fn last_epoch_survives_recovery_of_a_torn_tail() {
    let seed = 350;
    // 1 KiB batches and a 256-byte index interval: every batch but the first has an entry.
    let plan: Plan = (0..12).map(|i| (1, 1000, 1_000 + i)).collect();
    let p = write_log(config(64 << 10, 256), plan, seed);
    let last = p.model.last().unwrap().clone();
    let prev = p.model[p.model.len() - 2].clone();
    assert!(last.epoch > 1, "seed {seed}: epochs grow along the log");
    let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let (src, cfg, model) = (p.path.clone(), p.config.clone(), p.model.clone());
    run(move || async move {
        // Cut after the last batch's header: the newest index entry still checks out.
        let cut = last.position + 100;
        let ctx = format!("seed {seed}: last batch cut at byte {cut}");
        let dir = copy_log(&src, &root, 0);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_file(&dir, last.segment, "log"))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        set_recovery_point(&dir, last.base);
        let (log, _) = open(&dir, &cfg, &ctx).await;
        check_exactly(&log, &model[..model.len() - 1], &ctx).await;
        assert_eq!(
            log.last_epoch(),
            Epoch(prev.epoch),
            "{ctx}: epoch of the newest kept batch"
        );
        let stale = log.append(batch(1, 1, 10, 5), Epoch(prev.epoch - 1)).await;
        assert!(
            matches!(stale, Err(LogError::StaleEpoch { .. })),
            "{ctx}: an append with an epoch older than the log's newest batch must be refused, got {stale:?}"
        );
        log.close().await.unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Flipped bits in a middle batch of the last segment, behind a valid index entry.

/// A last segment whose every batch after the first has an index entry, so recovery starts its
/// scan at the newest entry and never looks at the batches before it.
fn indexed_log(seed: u64) -> Pristine {
    let plan: Plan = (0..10).map(|i| (2, 500, 1_000 + 10 * i)).collect();
    let p = write_log(config(64 << 10, 256), plan, seed);
    assert_eq!(p.bases.len(), 1, "seed {seed}: one segment");
    p
}

/// Flips each (byte, bit) of batch `m` of [`indexed_log`] in its own copy, reopens and reads
/// batch `m`: it must be refused with `CorruptSegment` naming exactly its offsets, never
/// returned corrupt, and every other batch must read back as appended.
fn flip_middle_batch(seed: u64, flips: Vec<(usize, u32)>) {
    let p = indexed_log(seed);
    let m = 4;
    let mb = p.model[m].clone();
    let last = p.model.last().unwrap().clone();
    let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let (src, cfg, model) = (p.path.clone(), p.config.clone(), p.model.clone());
    run(move || async move {
        let seg_path = segment_file(&src, 0, "log");
        let index = std::fs::read(segment_file(&src, 0, "index")).unwrap();
        let newest_entry = u32::from_be_bytes(index[index.len() - 4..].try_into().unwrap());
        assert!(
            u64::from(newest_entry) > mb.position,
            "seed {seed}: an index entry after batch {m}"
        );
        for (n, &(at, bit)) in flips.iter().enumerate() {
            let ctx = format!(
                "seed {seed}: bit {bit} of byte {at} of middle batch {m} (base {})",
                mb.base
            );
            let dir = copy_log(&src, &root, n);
            flip_bit(&segment_file(&dir, 0, "log"), mb.position + at as u64, bit);
            let (log, report) = open(&dir, &cfg, &ctx).await;
            // Recovery scanned only from the newest index entry: the damage is not seen there.
            let active = report.active.clone().unwrap();
            assert!(
                active.scanned_bytes < last.end() - mb.end(),
                "{ctx}: recovery scanned {} bytes, so it started after batch {m}",
                active.scanned_bytes
            );
            assert_eq!(
                log.log_end_offset(),
                Offset(last.next),
                "{ctx}: the log end is unchanged"
            );
            // Batches before the damaged one read fine.
            for b in &model[..m] {
                let got = read_at(&log, b.base, 1, &ctx).await;
                assert!(
                    matches!(&got, Ok(v) if v.len() == 1 && v[0][..] == b.bytes[..]),
                    "{ctx}: batch {} before the damage: {got:?}",
                    b.base
                );
            }
            let got = read_at(&log, mb.base, 1, &ctx).await;
            match got {
                Err(LogError::CorruptSegment {
                    path,
                    first,
                    last,
                    next,
                    ..
                }) => {
                    assert_eq!(
                        path.file_name(),
                        seg_path.file_name(),
                        "{ctx}: path of the corrupt segment"
                    );
                    assert_eq!(
                        (first, last, next),
                        (Offset(mb.base), Offset(mb.next - 1), Offset(mb.next)),
                        "{ctx}: the damaged range is exactly the batch"
                    );
                }
                other => panic!(
                    "{ctx}: read({}, 1) must be refused with CorruptSegment, got {}",
                    mb.base,
                    describe(&other, &model)
                ),
            }
            // The batches after it are intact and served.
            for b in &model[m + 1..] {
                let got = read_at(&log, b.base, 1, &ctx).await;
                assert!(
                    matches!(&got, Ok(v) if v.len() == 1 && v[0][..] == b.bytes[..]),
                    "{ctx}: batch {} after the damage: {}",
                    b.base,
                    describe(&got, &model)
                );
            }
            log.close().await.unwrap();
            std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        }
    });
}

/// A short description of a read result for failure messages: which batches came back.
fn describe(got: &Result<Vec<Bytes>, LogError>, model: &[Stored]) -> String {
    match got {
        Err(e) => format!("error {e:?}"),
        Ok(v) if v.is_empty() => "no batches".to_string(),
        Ok(v) => {
            let names: Vec<String> = v
                .iter()
                .map(|b| match model.iter().find(|w| w.bytes[..] == b[..]) {
                    Some(w) => format!("intact batch {}", w.base),
                    None => {
                        let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
                        format!("a batch NOT as appended (header base offset {base})")
                    }
                })
                .collect();
            names.join(", ")
        }
    }
}

/// Bits flipped in the CRC-covered part of the batch, the CRC field or the magic byte: the read
/// path's CRC check refuses the batch with `CorruptSegment`.
///
/// Documented behaviour: recovery starts at the newest index entry that checks out, so this
/// damage stays in the log after the reopen (the log end is unchanged); only the read path finds
/// it.
#[test]
fn middle_batch_damage_behind_an_index_entry_is_refused_by_reads() {
    let seed = 400;
    let mut rng = StdRng::seed_from_u64(seed);
    let len = indexed_log_batch_len();
    let mut flips: Vec<(usize, u32)> = (16..CRC_COVERED_FROM)
        .map(|at| (at, rng.gen_range(0..8)))
        .collect();
    flips.extend((0..24).map(|_| (rng.gen_range(CRC_COVERED_FROM..len), rng.gen_range(0..8))));
    flip_middle_batch(seed, flips);
}

/// Length of the batches of [`indexed_log`].
fn indexed_log_batch_len() -> usize {
    stamped(batch(0, 2, 500, 1_000), 0, 1).len()
}

/// Bits flipped in the batch length of a middle batch: the read path must refuse the batch, not
/// serve it and not hang.
#[test]
fn middle_batch_length_damage_is_refused_by_reads() {
    let seed = 410;
    // High bits first: they declare lengths far past the end of the segment.
    let flips: Vec<(usize, u32)> = (0..32u32)
        .rev()
        .map(|b| (BATCH_LENGTH_FIELD.start + 3 - (b / 8) as usize, b % 8))
        .collect();
    flip_middle_batch(seed, flips);
}

/// Bits flipped in the base offset of a middle batch: the base offset is outside the CRC, and a
/// batch whose base offset does not continue the previous batch is not the batch that holds
/// those offsets. The read path must refuse it, not serve it and not skip it silently.
#[test]
fn middle_batch_base_offset_damage_is_refused_by_reads() {
    let seed = 420;
    let flips: Vec<(usize, u32)> = (0..64u32)
        .map(|b| (BASE_OFFSET_FIELD.start + 7 - (b / 8) as usize, b % 8))
        .collect();
    flip_middle_batch(seed, flips);
}

/// A flipped bit in the leader epoch of a middle batch (outside the CRC) is found by the read
/// path, which checks every batch's epoch against the leader-epoch checkpoint: the batch is
/// refused, never served with a wrong epoch.
#[test]
fn middle_batch_epoch_damage_is_refused_by_reads() {
    let seed = 430;
    let flips: Vec<(usize, u32)> = (0..32u32)
        .map(|b| (EPOCH_FIELD.start + 3 - (b / 8) as usize, b % 8))
        .collect();
    flip_middle_batch(seed, flips);
}

// ---------------------------------------------------------------------------------------------
// Damaged index files.

#[derive(Clone, Copy, Debug)]
enum IndexDamage {
    Delete,
    RandomBytes,
    /// Cut to an odd number of bytes, shorter than it was.
    TruncateOdd,
    Empty,
}

#[derive(Clone, Copy, Debug)]
enum IndexFile {
    Offset,
    Time,
    Both,
}

fn damage_index(path: &Path, damage: IndexDamage, rng: &mut StdRng) {
    match damage {
        IndexDamage::Delete => std::fs::remove_file(path).unwrap(),
        IndexDamage::RandomBytes => {
            let n = rng.gen_range(1..200);
            let mut g = vec![0u8; n];
            rng.fill(&mut g[..]);
            std::fs::write(path, g).unwrap();
        }
        IndexDamage::TruncateOdd => {
            let len = file_len(path);
            if len <= 1 {
                // Nothing to cut: leave a torn partial entry instead.
                std::fs::write(path, [0x7f, 0, 1]).unwrap();
                return;
            }
            let mut cut = rng.gen_range(0..len);
            if cut % 2 == 0 {
                cut += 1;
            }
            let cut = cut.min(len - 1);
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(cut).unwrap();
        }
        IndexDamage::Empty => std::fs::write(path, []).unwrap(),
    }
}

/// Checks `offset_for_timestamp` against the model at every record timestamp and around it.
async fn check_timestamps(log: &PartitionLog, want: &[Stored], ctx: &str) {
    let all: Vec<i64> = want.iter().flat_map(|b| b.ts.iter().copied()).collect();
    let (lo, hi) = (*all.iter().min().unwrap(), *all.iter().max().unwrap());
    let mut probes: Vec<i64> = all.iter().flat_map(|&t| [t - 1, t]).collect();
    probes.extend([i64::MIN, lo - 1, hi + 1]);
    for t in probes {
        let got = bounded(
            &format!("{ctx}: offset_for_timestamp({t})"),
            log.offset_for_timestamp(t),
        )
        .await
        .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp({t}): {e}"));
        let expected = want.iter().find_map(|b| {
            b.ts.iter()
                .position(|&x| x >= t)
                .map(|k| Offset(b.base + k as u64))
        });
        assert_eq!(got, expected, "{ctx}: offset_for_timestamp({t})");
    }
}

/// A log over many segments for the index tests, with timestamps rising along the log (batch
/// `i` starts at `1000 + 100 * i`), so every lookup has one right answer.
fn index_log(seed: u64) -> Pristine {
    let mut rng = StdRng::seed_from_u64(seed);
    let plan: Plan = (0..60)
        .map(|i| {
            (
                rng.gen_range(1..8),
                rng.gen_range(100..1200),
                1_000 + 100 * i,
            )
        })
        .collect();
    let p = write_log(config(16 << 10, 512), plan, seed);
    assert!(p.bases.len() >= 4, "seed {seed}: the log must roll");
    p
}

/// Damages the index files of the segments named by `targets` (one copy of the log per case),
/// reopens and checks that every batch and every timestamp lookup comes back as before, twice
/// (the second open reads the index files the first one wrote). Every case runs; the failing
/// ones are listed at the end (their messages are printed above it).
fn check_index_damage(seed: u64, targets: fn(&Pristine) -> Vec<u64>, damages: &[IndexDamage]) {
    let p = index_log(seed);
    let active = *p.bases.last().unwrap();
    let mut failed = Vec::new();
    for target in targets(&p) {
        for file in [IndexFile::Offset, IndexFile::Time, IndexFile::Both] {
            for &damage in damages {
                let kind = if target == active { "active" } else { "sealed" };
                let ctx =
                    format!("seed {seed}: {damage:?} {file:?} index of {kind} segment {target}");
                let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
                let (src, cfg, model, c) = (
                    p.path.clone(),
                    p.config.clone(),
                    p.model.clone(),
                    ctx.clone(),
                );
                let outcome = std::panic::catch_unwind(move || {
                    run(move || async move {
                        let dir = copy_log(&src, &root, 0);
                        let mut rng = StdRng::seed_from_u64(seed ^ target);
                        if matches!(file, IndexFile::Offset | IndexFile::Both) {
                            damage_index(&segment_file(&dir, target, "index"), damage, &mut rng);
                        }
                        if matches!(file, IndexFile::Time | IndexFile::Both) {
                            damage_index(
                                &segment_file(&dir, target, "timeindex"),
                                damage,
                                &mut rng,
                            );
                        }
                        let (log, report) = open(&dir, &cfg, &c).await;
                        assert!(
                            report.corrupt.is_empty(),
                            "{c}: OpenReport::corrupt {:?}",
                            report.corrupt
                        );
                        for f in [
                            segment_file(&dir, target, "index"),
                            segment_file(&dir, target, "timeindex"),
                        ] {
                            assert!(f.exists(), "{c}: {} is written again at open", f.display());
                        }
                        check_exactly(&log, &model, &c).await;
                        check_timestamps(&log, &model, &c).await;
                        log.close().await.unwrap();
                        let (log, _) = open(&dir, &cfg, &c).await;
                        let c = format!("{c}, reopened again");
                        check_exactly(&log, &model, &c).await;
                        check_timestamps(&log, &model, &c).await;
                        log.close().await.unwrap();
                        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
                    })
                });
                if outcome.is_err() {
                    failed.push(ctx);
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} damaged-index cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Deleting, emptying, cutting or overwriting the index files of the active segment: recovery
/// checks the entries against the log and rebuilds what it cannot trust.
#[test]
fn damaged_active_segment_indexes_are_rebuilt() {
    check_index_damage(
        500,
        |p| vec![*p.bases.last().unwrap()],
        &[
            IndexDamage::Delete,
            IndexDamage::Empty,
            IndexDamage::TruncateOdd,
            IndexDamage::RandomBytes,
        ],
    );
}

/// Deleting or overwriting the index files of sealed segments: the open rebuilds them by
/// scanning the segment.
#[test]
fn missing_or_garbage_sealed_segment_indexes_are_rebuilt() {
    check_index_damage(
        510,
        |p| vec![p.bases[0], p.bases[p.bases.len() / 2]],
        &[IndexDamage::Delete, IndexDamage::RandomBytes],
    );
}

/// Cutting the index files of sealed segments short (to an odd length, or to nothing): every
/// read and timestamp lookup must still be right.
#[test]
fn cut_sealed_segment_indexes_are_rebuilt() {
    check_index_damage(
        520,
        |p| vec![p.bases[0], p.bases[p.bases.len() / 2]],
        &[IndexDamage::TruncateOdd, IndexDamage::Empty],
    );
}

/// The time index of the active segment cut short (or emptied), with timestamps that are not
/// monotonic: batch 2 holds the largest timestamp of the log. Recovery keeps the surviving time
/// entries and rescans only from the newest offset-index entry, after batch 2, so it must not
/// lose batch 2's timestamp: `offset_for_timestamp` still finds batch 2's record.
#[test]
fn cut_active_time_index_keeps_the_segment_max_timestamp() {
    let seed = 530;
    let plan: Plan = (0..10)
        .map(|i| (2, 250, if i == 2 { 1_000_000 } else { 1_000 + 10 * i }))
        .collect();
    let p = write_log(config(64 << 10, 256), plan, seed);
    assert_eq!(p.bases.len(), 1, "seed {seed}: one segment");
    let root = p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let (src, cfg, model) = (p.path.clone(), p.config.clone(), p.model.clone());
    run(move || async move {
        let pristine = std::fs::read(segment_file(&src, 0, "timeindex")).unwrap();
        assert!(
            pristine.len() >= 24,
            "seed {seed}: the time index has an entry for batch 2"
        );
        // One whole entry and a torn one; and nothing at all.
        for (n, keep) in [13usize, 0].into_iter().enumerate() {
            let ctx = format!("seed {seed}: active time index cut to {keep} bytes");
            let dir = copy_log(&src, &root, n);
            std::fs::write(segment_file(&dir, 0, "timeindex"), &pristine[..keep]).unwrap();
            let (log, _) = open(&dir, &cfg, &ctx).await;
            check_exactly(&log, &model, &ctx).await;
            check_timestamps(&log, &model, &ctx).await;
            log.close().await.unwrap();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Corrupt sealed segments.

/// A log of at least four segments and a batch in the middle of the second one, with a byte in
/// its CRC-covered part changed.
struct SealedCase {
    p: Pristine,
    /// Index in the model of the damaged batch.
    m: usize,
    /// Base of the damaged segment and of the next one.
    seg: u64,
    next_seg: u64,
    /// File position of the damaged byte.
    at: u64,
    xor: u8,
}

fn sealed_case(seed: u64) -> SealedCase {
    let p = write_log(config(16 << 10, 1024), varied_plan(seed, 50, &[]), seed);
    assert!(p.bases.len() >= 4, "seed {seed}: the log must roll");
    // The first sealed segment after the oldest that holds at least three batches.
    let in_segment = |seg: u64| -> Vec<usize> {
        (0..p.model.len())
            .filter(|&i| p.model[i].segment == seg)
            .collect()
    };
    let k = (1..p.bases.len() - 1)
        .find(|&k| in_segment(p.bases[k]).len() >= 3)
        .unwrap_or_else(|| panic!("seed {seed}: a sealed segment with three batches"));
    let (seg, next_seg) = (p.bases[k], p.bases[k + 1]);
    let in_seg = in_segment(seg);
    let mut rng = StdRng::seed_from_u64(seed);
    let m = in_seg[rng.gen_range(1..in_seg.len() - 1)];
    let b = &p.model[m];
    let at = b.position + rng.gen_range(CRC_COVERED_FROM as u64..b.bytes.len() as u64);
    let xor = rng.gen_range(1..=255u8);
    SealedCase {
        p,
        m,
        seg,
        next_seg,
        at,
        xor,
    }
}

fn corrupt_byte(path: &Path, at: u64, xor: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= xor;
    std::fs::write(path, bytes).unwrap();
}

/// A changed byte in a sealed segment, indexes intact: reading the damaged batch returns
/// `CorruptSegment` with the segment's path and exactly its offsets; every other batch, in that
/// segment too, reads back as appended.
#[test]
fn corrupt_sealed_segment_is_refused_not_served() {
    for seed in 600..606u64 {
        let c = sealed_case(seed);
        let root = c.p.path.parent().unwrap().parent().unwrap().to_path_buf();
        let (src, cfg, model) = (c.p.path.clone(), c.p.config.clone(), c.p.model.clone());
        let (m, seg, at, xor) = (c.m, c.seg, c.at, c.xor);
        run(move || async move {
            let ctx = format!(
                "seed {seed}: byte {at} of sealed segment {seg} xor {xor:#x} (batch {})",
                model[m].base
            );
            let dir = copy_log(&src, &root, 0);
            corrupt_byte(&segment_file(&dir, seg, "log"), at, xor);
            let (log, report) = open(&dir, &cfg, &ctx).await;
            // Open checks the tail of each sealed segment (from its last index entry) against
            // its indexes: damage there is found at open and reported with the segment's path;
            // damage before it is found by the read path.
            assert!(
                report
                    .corrupt
                    .iter()
                    .all(|(path, _, _)| *path == segment_file(&dir, seg, "log")),
                "{ctx}: only the damaged segment may be reported: {:?}",
                report.corrupt
            );
            // The damaged batch first, then every batch: as appended, or refused if it is the
            // damaged one.
            let mut order: Vec<usize> = vec![m];
            order.extend(0..model.len());
            for i in order {
                let b = &model[i];
                let got = read_at(&log, b.base, 1, &ctx).await;
                match got {
                    Ok(v) => {
                        assert!(
                            i != m,
                            "{ctx}: the damaged batch was served: {}",
                            describe(&Ok(v), &model)
                        );
                        assert!(
                            v.len() == 1 && v[0][..] == b.bytes[..],
                            "{ctx}: batch {} differs",
                            b.base
                        );
                    }
                    Err(LogError::CorruptSegment {
                        path, first, last, ..
                    }) => {
                        assert!(i == m, "{ctx}: batch {} was refused", b.base);
                        assert_eq!(
                            path,
                            segment_file(&dir, seg, "log"),
                            "{ctx}: the error names the segment"
                        );
                        assert!(
                            first <= Offset(b.base) && Offset(b.base) <= last,
                            "{ctx}: {first}..{last}"
                        );
                    }
                    Err(e) => panic!("{ctx}: read of batch {}: {e}", b.base),
                }
            }
            log.close().await.unwrap();
        });
    }
}

/// With the damaged segment's index deleted, the open rebuilds it by scanning, finds the damage
/// and reports the segment and the damaged batch's offsets in `OpenReport::corrupt`; reads agree,
/// and the batches after it in the segment are served.
#[test]
fn corrupt_sealed_segment_found_by_index_rebuild() {
    for seed in 610..614u64 {
        let c = sealed_case(seed);
        let root = c.p.path.parent().unwrap().parent().unwrap().to_path_buf();
        let (src, cfg, model) = (c.p.path.clone(), c.p.config.clone(), c.p.model.clone());
        let (m, seg, next_seg, at, xor) = (c.m, c.seg, c.next_seg, c.at, c.xor);
        run(move || async move {
            let ctx = format!("seed {seed}: byte {at} of sealed segment {seg} xor {xor:#x} (batch {}), index deleted", model[m].base);
            let dir = copy_log(&src, &root, 0);
            corrupt_byte(&segment_file(&dir, seg, "log"), at, xor);
            std::fs::remove_file(segment_file(&dir, seg, "index")).unwrap();
            let (log, report) = open(&dir, &cfg, &ctx).await;
            let lost = (
                segment_file(&dir, seg, "log"),
                Offset(model[m].base),
                Offset(model[m].next - 1),
            );
            assert!(
                model[m].next < next_seg,
                "{ctx}: batches follow the damaged one"
            );
            assert_eq!(report.corrupt, vec![lost], "{ctx}: OpenReport::corrupt");
            assert!(
                report
                    .rebuilt
                    .iter()
                    .any(|r| r.path == segment_file(&dir, seg, "log")),
                "{ctx}: rebuilt {:?}",
                report.rebuilt
            );
            for (i, b) in model.iter().enumerate() {
                let got = read_at(&log, b.base, 1, &ctx).await;
                if i == m {
                    match got {
                        Err(LogError::CorruptSegment {
                            path, first, last, ..
                        }) => {
                            assert_eq!(path, segment_file(&dir, seg, "log"), "{ctx}");
                            assert_eq!(
                                (first, last),
                                (Offset(model[m].base), Offset(model[m].next - 1)),
                                "{ctx}"
                            );
                        }
                        other => panic!(
                            "{ctx}: batch {} must be refused, got {}",
                            b.base,
                            describe(&other, &model)
                        ),
                    }
                } else {
                    assert!(
                        matches!(&got, Ok(v) if v.len() == 1 && v[0][..] == b.bytes[..]),
                        "{ctx}: batch {}: {}",
                        b.base,
                        describe(&got, &model)
                    );
                }
            }
            log.close().await.unwrap();
        });
    }
}

/// A consumer reading a sealed segment with a large `max_bytes` from before the damage gets the
/// valid batches before it, then `CorruptSegment` at the damaged batch. The refusal must not
/// spread to the valid batches before the damage: they stay readable, one at a time too.
#[test]
fn corrupt_sealed_segment_keeps_the_valid_batches_before_it_readable() {
    let seed = 620;
    let c = sealed_case(seed);
    let root = c.p.path.parent().unwrap().parent().unwrap().to_path_buf();
    let (src, cfg, model) = (c.p.path.clone(), c.p.config.clone(), c.p.model.clone());
    let (m, seg, at, xor) = (c.m, c.seg, c.at, c.xor);
    run(move || async move {
        let ctx = format!(
            "seed {seed}: byte {at} of sealed segment {seg} xor {xor:#x} (batch {})",
            model[m].base
        );
        let dir = copy_log(&src, &root, 0);
        corrupt_byte(&segment_file(&dir, seg, "log"), at, xor);
        let (log, _) = open(&dir, &cfg, &ctx).await;
        // Sequential consumer from the segment's first batch, large reads.
        let mut from = seg;
        let mut got = Vec::new();
        let err = loop {
            match read_at(&log, from, 1 << 20, &ctx).await {
                Ok(v) => {
                    assert!(!v.is_empty(), "{ctx}: empty read at {from}");
                    for b in v {
                        let h = quill::record::BatchHeader::parse(&b).unwrap();
                        from = h.last_offset() as u64 + 1;
                        got.push(b);
                    }
                }
                Err(e) => break e,
            }
        };
        let valid: Vec<&Stored> = model
            .iter()
            .filter(|b| b.segment == seg && b.base < model[m].base)
            .collect();
        assert!(
            matches!(&err, LogError::CorruptSegment { first, .. } if *first == Offset(model[m].base)),
            "{ctx}: the error names the damaged batch as the first lost offset: {err:?}"
        );
        assert_eq!(
            got.len(),
            valid.len(),
            "{ctx}: the consumer got the valid batches before the damage"
        );
        for b in valid {
            let again = read_at(&log, b.base, 1, &ctx).await;
            assert!(
                matches!(&again, Ok(v) if v.len() == 1 && v[0][..] == b.bytes[..]),
                "{ctx}: valid batch {} before the damage after the consumer hit it: {}",
                b.base,
                describe(&again, &model)
            );
        }
        log.close().await.unwrap();
    });
}
