//! Damage *inside* a log (issue 9, findings 1 and 2): one flipped bit in a batch that was
//! acknowledged and durable must never make the log reuse an offset, drop intact batches, or
//! stop appends for good. The damaged batch is not served; every intact batch before and after
//! it is; appends continue after the true log end.
//!
//! Each test writes a log with the engine, closes it cleanly (so everything is below the
//! recovery point), flips one bit in a copy of its files and reopens the copy.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use quill::disk::{LogConfig, LogError, PartitionLog};
use quill_proto::types::{Epoch, Offset};

/// One batch as the log holds it, and where it is on disk.
#[derive(Clone, Debug)]
struct Stored {
    base: u64,
    next: u64,
    bytes: Vec<u8>,
    segment: u64,
    position: u64,
}

struct Written {
    _dir: tempfile::TempDir,
    path: PathBuf,
    config: LogConfig,
    model: Vec<Stored>,
    bases: Vec<u64>,
}

fn config(segment_bytes: u64, index_interval_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        batch_bytes_max: (segment_bytes as usize).min(32 << 10),
        retention_ms: None,
        ..small_config()
    }
}

/// Appends `n` batches of 1 to 10 records (epoch `epoch` for all), closes the log.
fn write_log(config: LogConfig, n: usize, epoch: i32, seed: u64) -> Written {
    let plan = (0..n)
        .map(|i| (1 + (seed as usize + i * 7) % 10, 200))
        .collect();
    write_plan(config, plan, epoch, seed)
}

/// Appends one batch per `(records, value bytes)` of `plan`, closes the log.
fn write_plan(config: LogConfig, plan: Vec<(usize, usize)>, epoch: i32, seed: u64) -> Written {
    let dir = tmpdir();
    let path = dir.path().join("pristine");
    let (p, cfg) = (path.clone(), config.clone());
    let (mut model, bases) = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options_no_cache(cfg)).await.unwrap();
        let mut model = Vec::new();
        for (i, (records, value_bytes)) in plan.into_iter().enumerate() {
            let b = batch(
                seed * 10_000 + i as u64,
                records,
                value_bytes,
                1_000 + i as i64,
            );
            let info = log.append(b.clone(), Epoch(epoch)).await.unwrap();
            model.push(Stored {
                base: info.base_offset.0,
                next: info.last_offset.0 + 1,
                bytes: stamped(b, info.base_offset.0, epoch),
                segment: 0,
                position: 0,
            });
        }
        let bases: Vec<u64> = log.segment_bases().iter().map(|o| o.0).collect();
        log.close().await.unwrap();
        (model, bases)
    });
    let mut pos = 0;
    let mut seg = bases[0];
    for b in model.iter_mut() {
        let s = *bases.iter().rev().find(|&&s| s <= b.base).unwrap();
        if s != seg {
            seg = s;
            pos = 0;
        }
        b.segment = s;
        b.position = pos;
        pos += b.bytes.len() as u64;
    }
    Written {
        _dir: dir,
        path,
        config,
        model,
        bases,
    }
}

/// Reads every batch from offset 0 as a consumer that skips a damaged range would: on
/// `CorruptSegment` it continues at the offset after the range. Returns the batches read and
/// the ranges skipped.
async fn read_skipping(log: &PartitionLog, ctx: &str) -> (Vec<Bytes>, Vec<(u64, u64)>) {
    let end = log.high_watermark().0;
    let mut from = 0;
    let mut got = Vec::new();
    let mut skipped = Vec::new();
    for _ in 0..100_000 {
        if from >= end {
            return (got, skipped);
        }
        match log.read(Offset(from), 8_000).await {
            Ok(r) => {
                assert!(
                    !r.batches.is_empty(),
                    "{ctx}: empty read at {from} below {end}: {:?}",
                    log.damaged_ranges()
                );
                for b in r.batches {
                    let h = quill::record::BatchHeader::parse(&b).unwrap();
                    from = h.last_offset() as u64 + 1;
                    got.push(b);
                }
            }
            Err(LogError::CorruptSegment { first, last, .. }) => {
                assert!(
                    first.0 <= from && from <= last.0,
                    "the error names a range holding {from}: {first}..{last}"
                );
                skipped.push((first.0, last.0));
                from = last.0 + 1;
            }
            Err(e) => panic!("read at {from}: {e}"),
        }
    }
    panic!("no progress");
}

/// Asserts that every intact batch reads back (alone and in sequence) and that the damaged one
/// (index `m`) is refused with an error naming exactly its offsets.
async fn check_served_around(log: &PartitionLog, model: &[Stored], m: usize, ctx: &str) {
    let (got, skipped) = read_skipping(log, ctx).await;
    let intact: Vec<&Stored> = model
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != m)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        skipped,
        vec![(model[m].base, model[m].next - 1)],
        "{ctx}: exactly the damaged batch is skipped"
    );
    assert_eq!(got.len(), intact.len(), "{ctx}: every intact batch is read");
    for (g, w) in got.iter().zip(&intact) {
        assert!(g[..] == w.bytes[..], "{ctx}: batch {} differs", w.base);
    }
    for w in &intact {
        let r = log.read(Offset(w.base), 1).await;
        assert!(
            matches!(&r, Ok(r) if r.batches.len() == 1 && r.batches[0][..] == w.bytes[..]),
            "{ctx}: read of intact batch {}: {:?}",
            w.base,
            r.map(|r| r.batches.len())
        );
    }
    let r = log.read(Offset(model[m].base), 1).await;
    assert!(
        matches!(&r, Err(LogError::CorruptSegment { first, last, .. })
            if first.0 == model[m].base && last.0 == model[m].next - 1),
        "{ctx}: the damaged batch is refused naming its range: {r:?}"
    );
}

/// Appends one batch and checks it lands at the old log end (no offset is reused), then
/// reopens and checks again.
async fn append_continues(path: &Path, cfg: &LogConfig, log: PartitionLog, end: u64, ctx: &str) {
    let info = log
        .append(batch(77, 2, 50, 5_000), Epoch(0))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
    assert_eq!(
        info.base_offset,
        Offset(end),
        "{ctx}: the append lands at the old log end"
    );
    log.close().await.unwrap();
    let (log, _) = PartitionLog::open(path, options_no_cache(cfg.clone()))
        .await
        .unwrap();
    assert_eq!(log.log_end_offset(), Offset(end + 2), "{ctx}: after reopen");
    let info = log
        .append(batch(78, 1, 50, 5_001), Epoch(0))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: append after the second reopen: {e}"));
    assert_eq!(info.base_offset, Offset(end + 2), "{ctx}");
    log.close().await.unwrap();
}

/// Finding 1: a flipped bit in `partitionLeaderEpoch` of the last batch (outside the CRC) made
/// its epoch 16777216 the log's current epoch, so every later append failed with
/// `STALE_LEADER_EPOCH`, also after restarts. Now the epoch is checked against the leader-epoch
/// checkpoint: the batch is damage, not the new epoch.
#[test]
fn flipped_epoch_bit_in_the_last_batch_does_not_block_appends() {
    let w = write_log(config(1 << 20, 1024), 12, 0, 1);
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    run(move || async move {
        // Every bit of the epoch field in turn; byte 12 bit 0 gives 16777216.
        for bit in [24u32, 0, 7, 31, 15] {
            let ctx = format!("epoch bit {bit} of the last batch");
            let dir = root.join(format!("case-{bit}"));
            copy_dir(&src, &dir);
            let last = model.last().unwrap();
            let byte = last.position + 12 + (3 - u64::from(bit / 8));
            flip_bit(&segment_file(&dir, last.segment, "log"), byte, bit % 8);
            let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                .await
                .unwrap();
            assert_eq!(log.last_epoch(), Epoch(0), "{ctx}: current epoch");
            assert_eq!(log.log_end_offset(), Offset(last.next), "{ctx}: log end");
            check_served_around(&log, &model, model.len() - 1, &ctx).await;
            append_continues(&dir, &cfg, log, last.next, &ctx).await;
        }
    });
}

/// Finding 2, 9/12 trials: a flipped bit in an earlier batch of the active segment, before the
/// last index entry. Reads stopped at it, and every later intact batch was unreadable.
#[test]
fn flipped_bit_before_the_last_index_entry_is_skipped_not_fatal() {
    // 1 KiB index interval, ~1-2 KiB batches: most batches have an entry.
    let w = write_log(config(1 << 20, 1024), 30, 0, 2);
    assert_eq!(w.bases.len(), 1);
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    run(move || async move {
        for (m, at) in [(5usize, 40u64), (9, 21), (12, 200), (3, 17)] {
            let ctx = format!("batch {m}, byte {at}");
            let dir = root.join(format!("case-{m}"));
            copy_dir(&src, &dir);
            flip_bit(&segment_file(&dir, 0, "log"), model[m].position + at, 3);
            let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                .await
                .unwrap();
            let end = model.last().unwrap().next;
            assert_eq!(log.log_end_offset(), Offset(end), "{ctx}: log end");
            check_served_around(&log, &model, m, &ctx).await;
            // Once found, the range is reported again after a reopen.
            log.close().await.unwrap();
            let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                .await
                .unwrap();
            check_served_around(&log, &model, m, &format!("{ctx}, reopened")).await;
            append_continues(&dir, &cfg, log, end, &ctx).await;
        }
    });
}

/// Finding 2, 3/12 trials: a flipped bit after the last index entry. Recovery truncated the
/// segment at the damaged batch, silently dropping the intact batches after it, and the next
/// append reused their offsets.
#[test]
fn flipped_bit_after_the_last_index_entry_never_truncates() {
    // No index entries at all: recovery scans the whole segment.
    let w = write_log(config(1 << 20, 1 << 20), 20, 0, 3);
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    run(move || async move {
        let n = model.len();
        // A middle batch, the one before the last, and the last one; the CRC field, the body,
        // the magic byte and the batch length.
        for (m, at) in [
            (10usize, 30u64),
            (n - 2, 18),
            (n - 1, 100),
            (n - 1, 16),
            (7, 10),
        ] {
            let ctx = format!("batch {m}, byte {at}");
            let dir = root.join(format!("case-{m}-{at}"));
            copy_dir(&src, &dir);
            flip_bit(&segment_file(&dir, 0, "log"), model[m].position + at, 5);
            let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                .await
                .unwrap();
            let end = model.last().unwrap().next;
            assert_eq!(
                log.log_end_offset(),
                Offset(end),
                "{ctx}: the log end is unchanged (nothing truncated)"
            );
            check_served_around(&log, &model, m, &ctx).await;
            append_continues(&dir, &cfg, log, end, &ctx).await;
        }
    });
}

/// Finding 2, sealed segment: one flipped bit made every later offset of the segment
/// unreadable. Only the damaged batch is refused now.
#[test]
fn flipped_bit_in_a_sealed_segment_loses_only_its_batch() {
    let w = write_log(config(16 << 10, 1024), 60, 0, 4);
    assert!(w.bases.len() >= 3, "the log rolls");
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    let seg = w.bases[1];
    let in_seg: Vec<usize> = (0..model.len())
        .filter(|&i| model[i].segment == seg)
        .collect();
    assert!(in_seg.len() >= 4);
    run(move || async move {
        for (case, (m, at)) in [
            (in_seg[1], 50u64),
            (in_seg[in_seg.len() - 1], 25),
            (in_seg[2], 9),
        ]
        .into_iter()
        .enumerate()
        {
            for drop_index in [false, true] {
                let ctx = format!("sealed batch {m}, byte {at}, index deleted: {drop_index}");
                let dir = root.join(format!("case-{case}-{drop_index}"));
                copy_dir(&src, &dir);
                flip_bit(&segment_file(&dir, seg, "log"), model[m].position + at, 1);
                if drop_index {
                    std::fs::remove_file(dir.join(format!("{seg:020}.index"))).unwrap();
                }
                let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                    .await
                    .unwrap();
                let end = model.last().unwrap().next;
                assert_eq!(log.log_end_offset(), Offset(end), "{ctx}: log end");
                check_served_around(&log, &model, m, &ctx).await;
                log.close().await.unwrap();
            }
        }
    });
}

/// A bit flipped at every byte of a small batch with batches after it, in the active segment
/// (found by recovery when no index entry follows it, by reads when one does) and in a sealed
/// segment, below and past the recovery point: exactly that batch becomes a damaged range,
/// every other batch is served, and the log end never moves.
#[test]
fn bit_flips_at_every_byte_of_a_batch_damage_exactly_that_batch() {
    // 4 KiB segments of ~1 KiB batches, with a one-record batch (~90 bytes) as the third of
    // each segment: the batch every byte of which is flipped.
    let plan: Vec<(usize, usize)> = (0..16)
        .map(|i| if i % 4 == 2 { (1, 10) } else { (3, 300) })
        .collect();
    // Index every batch (the damage is behind an entry) or none (recovery scans it).
    for (interval, label) in [(64u64, "indexed"), (1 << 20, "unindexed")] {
        let w = write_plan(config(4096, interval), plan.clone(), 0, 5);
        assert!(w.bases.len() >= 3, "the log rolls: {:?}", w.bases);
        let small = |seg: u64| {
            (0..w.model.len())
                .find(|&i| w.model[i].segment == seg && w.model[i].bytes.len() < 200)
                .filter(|&i| w.model.get(i + 1).is_some_and(|n| n.segment == seg))
                .unwrap_or_else(|| panic!("{label}: a small batch inside segment {seg}"))
        };
        let active = *w.bases.last().unwrap();
        let cases = [
            (small(active), "active", vec![false, true]),
            (small(w.bases[1]), "sealed", vec![false]),
        ];
        let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
        let root = w._dir.path().to_path_buf();
        run(move || async move {
            let end = model.last().unwrap().next;
            let mut n = 0;
            for (m, kind, sides) in cases {
                let b = &model[m];
                for at in 0..b.bytes.len() as u64 {
                    for &past in &sides {
                        n += 1;
                        let ctx = format!(
                            "{label} {kind} batch {m} ({} bytes), byte {at}, {} the recovery point",
                            b.bytes.len(),
                            if past { "past" } else { "below" }
                        );
                        let dir = root.join(format!("every-{n}"));
                        copy_dir(&src, &dir);
                        flip_bit(
                            &segment_file(&dir, b.segment, "log"),
                            b.position + at,
                            (at % 8) as u32,
                        );
                        if past {
                            set_recovery_point(&dir, b.base);
                        }
                        let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                            .await
                            .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
                        assert_eq!(log.log_end_offset(), Offset(end), "{ctx}: log end");
                        check_served_around(&log, &model, m, &ctx).await;
                        let ranges = log.damaged_ranges();
                        assert_eq!(ranges.len(), 1, "{ctx}: {ranges:?}");
                        assert_eq!(
                            (ranges[0].first.0, ranges[0].last.0),
                            (b.base, b.next - 1),
                            "{ctx}"
                        );
                        // Dropped, not closed: nothing to sync.
                        drop(log);
                        std::fs::remove_dir_all(&dir).unwrap();
                    }
                }
            }
        });
    }
}

/// The replication hook: `repair_range` refuses bytes whose offsets do not match the damaged
/// range (or that are invalid, or carry another epoch) and writes nothing; given the batches as
/// a replica holds them, it repairs the range in place, in a sealed and in the active segment,
/// and the repair survives a reopen.
#[test]
fn repair_range_rejects_mismatched_bytes_and_repairs_in_place() {
    let w = write_log(config(32 << 10, 1024), 75, 0, 6);
    assert!(w.bases.len() >= 3);
    let sealed_m = (0..w.model.len())
        .find(|&i| w.model[i].segment == w.bases[1] && w.model[i].position > 0)
        .unwrap();
    // In the active segment, in blocks the appender no longer writes.
    let active = *w.bases.last().unwrap();
    let active_end = w.model.last().unwrap().position + w.model.last().unwrap().bytes.len() as u64;
    let active_m = (0..w.model.len())
        .find(|&i| {
            let b = &w.model[i];
            b.segment == active && b.position > 0 && b.position + 10_000 < active_end
        })
        .expect("a batch early in the active segment");
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    run(move || async move {
        for (n, m) in [sealed_m, active_m].into_iter().enumerate() {
            let b = &model[m];
            let ctx = format!("batch {m} in segment {}", b.segment);
            let dir = root.join(format!("repair-{n}"));
            copy_dir(&src, &dir);
            flip_bit(&segment_file(&dir, b.segment, "log"), b.position + 40, 2);
            let (log, _) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                .await
                .unwrap();
            // Found by the read.
            assert!(log.read(Offset(b.base), 1).await.is_err(), "{ctx}");
            let range = log.damaged_ranges()[0].clone();
            assert_eq!((range.first.0, range.last.0), (b.base, b.next - 1), "{ctx}");
            let good = Bytes::from(b.bytes.clone());
            // Offsets that do not match the range.
            let shifted = Bytes::from(stamped(bytes::BytesMut::from(&b.bytes[..]), b.base + 1, 0));
            let neighbour = Bytes::from(model[m - 1].bytes.clone());
            let mut bad_crc = b.bytes.clone();
            bad_crc[70] ^= 1;
            let other_epoch = Bytes::from(stamped(bytes::BytesMut::from(&b.bytes[..]), b.base, 3));
            for (what, bytes) in [
                ("shifted offsets", vec![shifted]),
                ("another batch first", vec![neighbour, good.clone()]),
                ("nothing", vec![]),
                ("a bad CRC", vec![Bytes::from(bad_crc)]),
                ("another epoch", vec![other_epoch]),
            ] {
                let r = log.repair_range(range.first, &bytes).await;
                assert!(
                    matches!(r, Err(LogError::Repair { .. })),
                    "{ctx}: {what} must be refused: {r:?}"
                );
            }
            let r = log
                .repair_range(Offset(b.base + 1), std::slice::from_ref(&good))
                .await;
            assert!(
                matches!(r, Err(LogError::Repair { .. })),
                "{ctx}: not a range start"
            );
            assert_eq!(log.damaged_ranges().len(), 1, "{ctx}: nothing changed");
            log.repair_range(range.first, std::slice::from_ref(&good))
                .await
                .unwrap_or_else(|e| panic!("{ctx}: repair: {e}"));
            assert!(log.damaged_ranges().is_empty(), "{ctx}");
            let got = log.read(Offset(b.base), 1).await.unwrap();
            assert_eq!(got.batches[0][..], b.bytes[..], "{ctx}: repaired");
            log.close().await.unwrap();
            let (log, report) = PartitionLog::open(&dir, options_no_cache(cfg.clone()))
                .await
                .unwrap();
            assert!(report.damaged.is_empty(), "{ctx}: {:?}", report.damaged);
            let (got, skipped) = read_skipping(&log, &ctx).await;
            assert!(skipped.is_empty(), "{ctx}");
            assert_eq!(got.len(), model.len(), "{ctx}");
            log.close().await.unwrap();
        }
    });
}

/// Review of issue 9, finding 2: a truncation below a damaged range must not fail half-way when
/// the damaged-ranges file cannot be written (here its temporary file's path is taken by a
/// directory, as a full disk would fail it): it used to return the error after cutting the file
/// and changing the state, leaving old batches in the cache and removed segments on disk. The
/// checkpoint files are best effort once the cut is made; the log goes on from the cut.
#[test]
fn a_truncation_completes_when_the_damaged_ranges_cannot_be_written() {
    let w = write_log(config(1 << 20, 1 << 20), 20, 0, 5);
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    run(move || async move {
        let dir = root.join("truncate");
        copy_dir(&src, &dir);
        flip_bit(&segment_file(&dir, 0, "log"), model[12].position + 100, 2);
        let (log, _) = PartitionLog::open(&dir, options(cfg.clone()))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), Offset(model.last().unwrap().next));
        std::fs::create_dir_all(dir.join("damaged-ranges.tmp")).unwrap();
        let cut = Offset(model[8].base);
        log.set_replication_bound(Some(cut));
        log.truncate_to(cut)
            .await
            .expect("the truncation completes");
        assert_eq!(log.log_end_offset(), cut);
        let fresh = batch(4242, 3, 64, 9_000);
        let info = log.append(fresh.clone(), Epoch(0)).await.unwrap();
        assert_eq!(info.base_offset, cut);
        log.set_replication_bound(None);
        let got = log.read(cut, 1 << 20).await.unwrap();
        assert_eq!(&got.batches[0][..], &stamped(fresh, cut.0, 0)[..]);
        log.close().await.unwrap();
    });
}

/// Review of issue 9, finding 4: a partition directory whose segment files are gone, with a
/// recovery point past 0, must not start again at offset 0 (new records would take offsets that
/// were acknowledged). The open is refused, naming the offsets.
#[test]
fn a_directory_without_segments_below_its_recovery_point_is_refused() {
    let w = write_log(config(1 << 20, 1 << 20), 5, 0, 6);
    let (src, cfg, model) = (w.path.clone(), w.config.clone(), w.model.clone());
    let root = w._dir.path().to_path_buf();
    run(move || async move {
        let dir = root.join("emptied");
        copy_dir(&src, &dir);
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".log") || name.ends_with("index") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let end = model.last().unwrap().next;
        match PartitionLog::open(&dir, options_no_cache(cfg.clone())).await {
            Err(LogError::CorruptSegment { first, last, .. }) => {
                assert_eq!((first, last), (Offset(0), Offset(end - 1)));
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a log with no segments opened below its recovery point"),
        }
    });
}

/// Review of issue 9, finding 5: a roll whose index files cannot be created (here a directory
/// is in the way; EMFILE or ENOSPC do the same) left the new segment's `.log` behind, so every
/// later roll to that base failed (`create_new`) until a restart. Now it leaves nothing and the
/// next roll succeeds once the cause is gone.
#[test]
fn a_failed_roll_leaves_nothing_behind() {
    let dir = tmpdir();
    let path = dir.path().join("roll");
    run(move || async move {
        let cfg = config(4096, 1 << 20);
        let (log, _) = PartitionLog::open(&path, options_no_cache(cfg))
            .await
            .unwrap();
        // ~1.6 KiB batches: the third one rolls the 4 KiB segment.
        let mut next = 0u64;
        for i in 0..2 {
            let info = log.append(batch(i, 1, 1500, 1), Epoch(0)).await.unwrap();
            next = info.last_offset.0 + 1;
        }
        let blocker = path.join(format!("{next:020}.index"));
        std::fs::create_dir_all(&blocker).unwrap();
        assert!(log.append(batch(9, 1, 1500, 1), Epoch(0)).await.is_err());
        assert!(
            !segment_file(&path, next, "log").exists(),
            "the failed roll left its .log"
        );
        std::fs::remove_dir(&blocker).unwrap();
        let info = log.append(batch(10, 1, 1500, 1), Epoch(0)).await.unwrap();
        assert_eq!(info.base_offset, Offset(next));
        assert_eq!(log.segment_bases(), vec![Offset(0), Offset(next)]);
        log.close().await.unwrap();
    });
}
