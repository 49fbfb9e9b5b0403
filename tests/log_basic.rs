//! Append, read, roll, reopen, lookups, retention and truncation of one partition log.

mod common;

use std::rc::Rc;

use common::*;
use quill::disk::{Durability, LogConfig, LogError, PartitionLog};
use quill_proto::types::{Epoch, Offset};

#[test]
fn append_then_read_back_across_rolls_and_reopen() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let p2 = path.clone();
    let expected: Vec<(u64, Vec<u8>)> = run(move || async move {
        let (log, report) = PartitionLog::open(&p2, options(small_config()))
            .await
            .unwrap();
        assert!(report.corrupt.is_empty());
        let log = Rc::new(log);
        let mut expected = Vec::new();
        let mut next = 0u64;
        for i in 0..200u64 {
            let n = 1 + (i % 7) as usize;
            let b = batch(i, n, 400, 1_000 + i as i64 * 10);
            let info = log.append(b.clone(), Epoch(1)).await.unwrap();
            assert_eq!(info.base_offset, Offset(next));
            assert_eq!(info.last_offset, Offset(next + n as u64 - 1));
            expected.push((next, stamped(b, next, 1)));
            next += n as u64;
        }
        assert!(log.segment_bases().len() > 3, "small segments must roll");
        assert_eq!(log.log_end_offset(), Offset(next));
        assert_eq!(log.high_watermark(), Offset(next));
        // Read everything back in small steps.
        assert_eq!(read_all_by(&log, 2000).await, expected);
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
        expected
    });
    // Reopen (clean) without a cache: every read goes to disk.
    run(move || async move {
        let (log, report) = PartitionLog::open(&path, options_no_cache(small_config()))
            .await
            .unwrap();
        let active = report.active.unwrap();
        assert_eq!(active.truncated_bytes, 0);
        for (base, bytes) in &expected {
            // Reading from any offset inside a batch returns that whole batch first.
            let r = log.read(Offset(*base), 1).await.unwrap();
            assert_eq!(r.batches.len(), 1);
            assert_eq!(&r.batches[0][..], &bytes[..]);
        }
        assert_eq!(log.last_epoch(), Epoch(1));
        let end = log.log_end_offset();
        assert!(log.read(end, 100).await.unwrap().batches.is_empty());
        assert!(matches!(
            log.read(end.plus(1), 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_appenders_share_group_commits() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options(LogConfig::default()))
            .await
            .unwrap();
        let log = Rc::new(log);
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut offs = Vec::new();
                for i in 0..20u64 {
                    let info = log
                        .append(batch(t * 100 + i, 3, 200, 5), Epoch(0))
                        .await
                        .unwrap();
                    assert!(log.durable_offset() > info.last_offset);
                    offs.push(info.base_offset);
                }
                offs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await);
        }
        all.sort();
        let want: Vec<Offset> = (0..640u64).map(|i| Offset(i * 3)).collect();
        assert_eq!(all, want);
        assert_eq!(log.stats().appends, 640);
        // The behaviour, not a figure: appends that wait at the same time share one group and
        // its fdatasync. A burst of 64 started in one executor pass is one group (a sync for
        // the append that happened to open it, at most, and one for the rest); one sync per
        // append would be 64.
        let before = log.stats().fdatasyncs;
        let burst: Vec<_> = (0..64u64)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    log.append(batch(10_000 + i, 3, 200, 5), Epoch(0))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in burst {
            t.await;
        }
        let syncs = log.stats().fdatasyncs - before;
        assert!(
            (1..=2).contains(&syncs),
            "64 appends waiting together share a sync: {syncs} syncs"
        );
    });
}

#[test]
fn invalid_batches_are_rejected_and_nothing_is_written() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options(small_config()))
            .await
            .unwrap();
        let mut b = batch(1, 2, 10, 5);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(
            log.append(b, Epoch(0)).await,
            Err(LogError::InvalidBatch(
                quill::record::BatchError::BadCrc { .. }
            ))
        ));
        let big = batch(2, 1, 70_000, 5);
        assert!(matches!(
            log.append(big, Epoch(0)).await,
            Err(LogError::InvalidBatch(_))
        ));
        assert_eq!(log.log_end_offset(), Offset(0));
        log.append(batch(3, 1, 10, 5), Epoch(2)).await.unwrap();
        assert!(matches!(
            log.append(batch(4, 1, 10, 5), Epoch(1)).await,
            Err(LogError::StaleEpoch { .. })
        ));
    });
}

#[test]
fn timestamp_lookup_finds_first_record_at_or_after() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options_no_cache(small_config()))
            .await
            .unwrap();
        // Batch i holds 4 records with timestamps 1000*i + 0..4.
        for i in 0..300i64 {
            log.append(batch(i as u64, 4, 200, 1000 * i), Epoch(0))
                .await
                .unwrap();
        }
        assert!(log.segment_bases().len() > 2);
        assert_eq!(log.offset_for_timestamp(-5).await.unwrap(), Some(Offset(0)));
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some(Offset(0)));
        assert_eq!(log.offset_for_timestamp(2).await.unwrap(), Some(Offset(2)));
        assert_eq!(log.offset_for_timestamp(4).await.unwrap(), Some(Offset(4)));
        assert_eq!(
            log.offset_for_timestamp(150_001).await.unwrap(),
            Some(Offset(601))
        );
        assert_eq!(
            log.offset_for_timestamp(299_003).await.unwrap(),
            Some(Offset(1199))
        );
        assert_eq!(log.offset_for_timestamp(299_004).await.unwrap(), None);
    });
}

#[test]
fn retention_deletes_old_sealed_segments_only() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let now = Rc::new(std::cell::Cell::new(1_000_000i64));
        let n2 = now.clone();
        let mut opts = options(LogConfig {
            retention_ms: Some(10_000),
            retention_bytes: None,
            ..small_config()
        });
        opts.clock = Rc::new(move || n2.get());
        let (log, _) = PartitionLog::open(&path, opts).await.unwrap();
        for i in 0..400i64 {
            log.append(batch(i as u64, 2, 400, 1_000_000 + i), Epoch(0))
                .await
                .unwrap();
        }
        let segs = log.segment_bases().len();
        assert!(segs > 3);
        assert_eq!(log.enforce_retention().await.unwrap(), 0);
        now.set(2_000_000);
        let deleted = log.enforce_retention().await.unwrap();
        assert_eq!(
            deleted,
            segs - 1,
            "every sealed segment expired, the active one stays"
        );
        let start = log.log_start_offset();
        assert_eq!(start, *log.segment_bases().first().unwrap());
        match log.read(Offset(0), 100).await {
            Err(LogError::OffsetOutOfRange { earliest, .. }) => assert_eq!(earliest, start),
            other => panic!("expected out of range, got {other:?}"),
        }
        assert!(!log.read(start, 100).await.unwrap().batches.is_empty());
        // Files are gone from the directory.
        let logs = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        assert_eq!(logs, 1);
    });
}

/// Retention by size deletes the oldest sealed segments, and only while what is left stays at
/// or above `retention_bytes`: the segments kept are exactly the newest ones that reach it.
#[test]
fn retention_by_bytes_keeps_the_newest() {
    const RETENTION_BYTES: u64 = 150 << 10;
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(
            &path,
            options(LogConfig {
                retention_ms: None,
                retention_bytes: Some(RETENTION_BYTES),
                ..small_config()
            }),
        )
        .await
        .unwrap();
        let mut appended = Vec::new();
        for i in 0..400u64 {
            let b = batch(i, 2, 400, 5);
            let len = b.len() as u64;
            let info = log.append(b.clone(), Epoch(0)).await.unwrap();
            appended.push((info.base_offset.0, stamped(b, info.base_offset.0, 0), len));
        }
        // Each segment's size from the batches it holds, and what the rule keeps.
        let bases = log.segment_bases();
        assert!(bases.len() > 4, "small segments must roll");
        let size_of = |i: usize| -> u64 {
            let end = bases.get(i + 1).map_or(u64::MAX, |o| o.0);
            appended
                .iter()
                .filter(|(base, _, _)| *base >= bases[i].0 && *base < end)
                .map(|(_, _, len)| len)
                .sum()
        };
        let mut total: u64 = (0..bases.len()).map(size_of).sum();
        assert_eq!(total, log.stats().size_bytes);
        let mut first_kept = 0;
        while first_kept + 1 < bases.len() && total - size_of(first_kept) >= RETENTION_BYTES {
            total -= size_of(first_kept);
            first_kept += 1;
        }
        assert!(
            first_kept > 0,
            "the test appends enough for retention to delete"
        );

        let deleted = log.enforce_retention().await.unwrap();
        assert_eq!(deleted, first_kept, "the oldest segments are deleted");
        assert_eq!(
            log.segment_bases(),
            bases[first_kept..],
            "the newest are kept"
        );
        assert_eq!(log.stats().size_bytes, total);
        assert!(total >= RETENTION_BYTES, "kept {total} bytes");
        let start = bases[first_kept];
        assert_eq!(log.log_start_offset(), start);
        // Below the start offsets are gone; from it on every batch is there, as appended.
        match log.read(Offset(0), 100).await {
            Err(LogError::OffsetOutOfRange { earliest, .. }) => assert_eq!(earliest, start),
            other => panic!("expected out of range, got {other:?}"),
        }
        let want: Vec<(u64, Vec<u8>)> = appended
            .into_iter()
            .filter(|(base, _, _)| *base >= start.0)
            .map(|(base, b, _)| (base, b))
            .collect();
        assert_eq!(read_all(&log).await, want);
        // The files of the deleted segments are gone, those of the kept ones are not.
        let mut files: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        files.sort();
        let kept: Vec<String> = bases[first_kept..]
            .iter()
            .map(|b| format!("{:020}.log", b.0))
            .collect();
        assert_eq!(files, kept);
    });
}

#[test]
fn truncate_removes_an_uncommitted_suffix() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let p2 = path.clone();
    run(move || async move {
        let (log, _) = PartitionLog::open(&p2, options(small_config()))
            .await
            .unwrap();
        let mut bases = Vec::new();
        for i in 0..300u64 {
            bases.push(
                log.append(batch(i, 2, 300, 5), Epoch(1))
                    .await
                    .unwrap()
                    .base_offset,
            );
        }
        // Pretend replication committed only up to batch 100.
        log.set_replication_bound(Some(bases[100]));
        assert_eq!(log.high_watermark(), bases[100]);
        assert!(matches!(
            log.truncate_to(bases[50]).await,
            Err(LogError::TruncateBelowHighWatermark { .. })
        ));
        assert!(matches!(
            log.truncate_to(bases[150].plus(1)).await,
            Err(LogError::TruncateInsideBatch { .. })
        ));
        log.truncate_to(bases[150]).await.unwrap();
        assert_eq!(log.log_end_offset(), bases[150]);
        // New appends continue at the truncation point with a newer epoch.
        let info = log.append(batch(999, 2, 300, 5), Epoch(2)).await.unwrap();
        assert_eq!(info.base_offset, bases[150]);
        log.set_replication_bound(None);
        log.close().await.unwrap();
    });
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options_no_cache(small_config()))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), Offset(302));
        let r = log.read(Offset(300), 10_000).await.unwrap();
        assert_eq!(
            &r.batches[0][..],
            &stamped(batch(999, 2, 300, 5), 300, 2)[..]
        );
    });
}

/// Interval mode acknowledges once written, before any `fdatasync` (sync mode would make the
/// appends durable before answering), and syncs on its own every `flush_ms`.
#[test]
fn interval_mode_acks_on_write_and_syncs_later() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let p2 = dir.path().join("p1");
    run(move || async move {
        // An interval far longer than the test: no sync happens on its own.
        let (log, _) = PartitionLog::open(
            &path,
            options(LogConfig {
                durability: Durability::Interval,
                flush_ms: 3_600_000,
                ..LogConfig::default()
            }),
        )
        .await
        .unwrap();
        for i in 0..50u64 {
            log.append(batch(i, 1, 100, 5), Epoch(0)).await.unwrap();
        }
        assert_eq!(log.high_watermark(), Offset(50), "readable once written");
        assert_eq!(
            log.durable_offset(),
            Offset(0),
            "acknowledged before a sync"
        );
        assert_eq!(log.stats().fdatasyncs, 0);
        // A per-call sync append waits for fdatasync even in interval mode.
        log.append_with(batch(50, 1, 100, 5), Epoch(0), Durability::Sync)
            .await
            .unwrap();
        assert_eq!(log.durable_offset(), Offset(51));
        log.append(batch(51, 1, 100, 5), Epoch(0)).await.unwrap();
        assert_eq!(log.high_watermark(), Offset(52));
        assert_eq!(log.durable_offset(), Offset(51));
        log.close().await.unwrap();

        // A short interval: the appends become durable without anyone asking.
        let (log, _) = PartitionLog::open(
            &p2,
            options(LogConfig {
                durability: Durability::Interval,
                flush_ms: 50,
                ..LogConfig::default()
            }),
        )
        .await
        .unwrap();
        for i in 0..5u64 {
            log.append(batch(i, 1, 100, 5), Epoch(0)).await.unwrap();
        }
        // Bounded: 3000 rounds of 10 ms, far above a 50 ms interval.
        for _ in 0..3000 {
            if log.durable_offset() == Offset(5) {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(log.durable_offset(), Offset(5), "the interval flush ran");
        assert!(log.stats().fdatasyncs >= 1);
        log.close().await.unwrap();
    });
}

/// Sync mode (issue 2): a consumer never reads what is not yet covered by an `fdatasync`. With
/// many appends in flight, the written offset runs ahead of the durable one between a write and
/// its sync; a watcher woken at every change of the log (and readers) must never see the high
/// watermark, or a batch, past the durable offset.
#[test]
fn the_high_watermark_never_passes_the_durable_offset_in_sync_mode() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(
            &path,
            options(LogConfig {
                segment_bytes: 1 << 20,
                write_buffer_bytes: 16 << 10,
                pending_bytes_max: 4 << 20,
                batch_bytes_max: 64 << 10,
                ..small_config()
            }),
        )
        .await
        .unwrap();
        let log = Rc::new(log);
        let done = Rc::new(std::cell::Cell::new(false));
        let (wlog, wdone) = (log.clone(), done.clone());
        let watcher = glommio::spawn_local(async move {
            let mut checks = 0u64;
            let mut from = Offset(0);
            while !wdone.get() {
                let (hw, durable) = (wlog.high_watermark(), wlog.durable_offset());
                assert!(
                    hw <= durable,
                    "high watermark {hw} past the durable offset {durable}"
                );
                // Read what is readable now; nothing of it may be past the durable offset.
                if from < hw {
                    let r = wlog.read(from, 1 << 20).await.unwrap();
                    let durable = wlog.durable_offset();
                    for b in r.batches {
                        let h = quill::record::BatchHeader::parse(&b).unwrap();
                        let next = Offset(h.last_offset() as u64 + 1);
                        assert!(
                            next <= durable,
                            "read a batch ending at {next} > durable {durable}"
                        );
                        from = next;
                    }
                }
                checks += 1;
                wlog.changed().await;
            }
            checks
        });
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    for i in 0..40u64 {
                        let seed = t * 1000 + i;
                        let value = 200 + (seed * 7919 % 20_000) as usize;
                        let info = log
                            .append(batch(seed, 2, value / 2, 5), Epoch(0))
                            .await
                            .unwrap();
                        assert!(log.durable_offset() > info.last_offset);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        done.set(true);
        // Wakes the watcher (a change of the high watermark's cap).
        log.set_replication_bound(None);
        let checks = watcher.await;
        assert!(
            checks > 16,
            "the watcher saw the log change ({checks} checks)"
        );
        assert_eq!(log.high_watermark(), log.log_end_offset());
    });
}

#[test]
fn truncate_into_a_sealed_segment_after_reopen() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let p2 = path.clone();
    let bases = run(move || async move {
        let (log, _) = PartitionLog::open(&p2, options(small_config()))
            .await
            .unwrap();
        let mut bases = Vec::new();
        for i in 0..300u64 {
            bases.push(
                log.append(batch(i, 2, 300, 5), Epoch(1))
                    .await
                    .unwrap()
                    .base_offset,
            );
        }
        log.close().await.unwrap();
        bases
    });
    let p3 = path.clone();
    let b2 = bases.clone();
    run(move || async move {
        let (log, _) = PartitionLog::open(&p3, options_no_cache(small_config()))
            .await
            .unwrap();
        let segs = log.segment_bases();
        assert!(segs.len() > 3);
        // A batch boundary inside the second segment (opened read-only as a sealed segment).
        let target = *b2.iter().find(|b| **b > segs[1]).unwrap();
        log.set_replication_bound(Some(Offset(0)));
        log.truncate_to(target).await.unwrap();
        assert_eq!(log.segment_bases(), segs[..2].to_vec());
        let info = log.append(batch(777, 2, 300, 5), Epoch(2)).await.unwrap();
        assert_eq!(info.base_offset, target);
        log.set_replication_bound(None);
        let r = log.read(target, 1).await.unwrap();
        assert_eq!(
            &r.batches[0][..],
            &stamped(batch(777, 2, 300, 5), target.0, 2)[..]
        );
        log.close().await.unwrap();
    });
    run(move || async move {
        let (log, report) = PartitionLog::open(&path, options_no_cache(small_config()))
            .await
            .unwrap();
        assert_eq!(report.active.unwrap().truncated_bytes, 0);
        let end = log.log_end_offset();
        let target = end.0 - 2;
        let r = log.read(Offset(target), 1).await.unwrap();
        assert_eq!(
            &r.batches[0][..],
            &stamped(batch(777, 2, 300, 5), target, 2)[..]
        );
        // Everything before the truncation point is intact.
        let r = log.read(Offset(0), 1).await.unwrap();
        assert_eq!(&r.batches[0][..], &stamped(batch(0, 2, 300, 5), 0, 1)[..]);
    });
}
