//! Faults of the commit pipeline on a real log, reached on purpose with the log's test hooks
//! (`PartitionLog::fail_next_syncs`, `PartitionLog::hold_acks`) rather than by chance: a failed
//! `fdatasync`, and appends written and synced but not yet acknowledged when a truncation cuts
//! them. The decisions themselves are simulated exhaustively in `disk/group_commit/sim.rs`;
//! these check that the log wires them to its callers.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use quill::disk::{Durability, LogConfig, LogError, PartitionLog};
use quill::types::{Epoch, Offset};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 512 << 10,
        batch_bytes_max: 64 << 10,
        write_buffer_bytes: 16 << 10,
        pending_bytes_max: 1 << 20,
        durability,
        flush_ms: 20,
        ..small_config()
    }
}

/// `f`, or a failure naming `what` if it takes more than 20 s (a stuck acknowledgement).
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::or(f, async {
        glommio::timer::sleep(Duration::from_secs(20)).await;
        panic!("{what} did not complete within 20 s")
    })
    .await
}

fn is_poisoned(r: &Result<quill::disk::log::AppendInfo, LogError>) -> bool {
    matches!(r, Err(LogError::Poisoned { .. }))
}

/// An `fdatasync` that fails leaves the device state unknown: the append it was to make durable
/// is not acknowledged (it fails with the sync's error), and every later append is refused as
/// poisoned. Reads of what was durable before go on.
#[test]
fn a_failed_fdatasync_poisons_the_log() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options(config(Durability::Sync)))
            .await
            .unwrap();
        log.append(batch(1, 2, 100, now_ms()), Epoch(0))
            .await
            .unwrap();
        log.fail_next_syncs(1);
        let pending = within(
            "the append whose fdatasync fails",
            log.append(batch(2, 2, 100, now_ms()), Epoch(0)),
        )
        .await;
        match &pending {
            Err(LogError::Io { op, source, .. }) => {
                assert_eq!(*op, "fdatasync");
                assert_eq!(source.raw_os_error(), Some(libc::EIO), "{pending:?}");
            }
            other => panic!("the append whose fdatasync failed returned {other:?}"),
        }
        let later = within(
            "an append after the failed sync",
            log.append(batch(3, 2, 100, now_ms()), Epoch(0)),
        )
        .await;
        assert!(
            is_poisoned(&later),
            "an append after the failed sync: {later:?}"
        );
        assert_eq!(
            log.durable_offset(),
            Offset(2),
            "the failed sync made nothing durable"
        );
        let read = log.read(Offset(0), 1 << 20).await.unwrap();
        assert_eq!(
            read.batches.len(),
            1,
            "reads go on below the durable offset"
        );
    });
}

/// In interval mode an append is acknowledged once written; the periodic `fdatasync` that then
/// fails poisons the log all the same, and later appends are refused.
#[test]
fn a_failed_interval_fdatasync_poisons_the_log() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options(config(Durability::Interval)))
            .await
            .unwrap();
        log.fail_next_syncs(1);
        log.append(batch(1, 2, 100, now_ms()), Epoch(0))
            .await
            .unwrap();
        // The interval sync (flush_ms 20) runs and fails.
        let mut refused = None;
        for _ in 0..200 {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            let r = within(
                "an append in interval mode",
                log.append(batch(2, 2, 100, now_ms()), Epoch(0)),
            )
            .await;
            if r.is_err() {
                refused = Some(r);
                break;
            }
        }
        let refused = refused.expect("appends are refused once the interval sync failed");
        // The append in flight when the sync failed fails with the sync's error; the next ones
        // are refused as poisoned.
        assert!(
            matches!(
                &refused,
                Err(LogError::Io {
                    op: "fdatasync",
                    ..
                })
            ) || is_poisoned(&refused),
            "{refused:?}"
        );
        let later = within(
            "an append after the failed sync",
            log.append(batch(3, 2, 100, now_ms()), Epoch(0)),
        )
        .await;
        assert!(
            is_poisoned(&later),
            "an append after the failed sync: {later:?}"
        );
    });
}

/// A truncation (a replica dropping an uncommitted suffix) while appends wait for their
/// acknowledgement: with acknowledgements held back, every append past the cut is waiting when
/// it happens, and each must fail with `Truncated`. None may be acknowledged later, when new
/// appends reach its offsets while its bytes are gone.
#[test]
fn appends_cut_by_a_truncation_are_not_acknowledged_later() {
    for durability in [Durability::Sync, Durability::Interval] {
        appends_cut_by_a_truncation(durability);
    }
}

fn appends_cut_by_a_truncation(durability: Durability) {
    const CUT: u64 = 64;
    let dir = tmpdir();
    let path = dir.path().join("p0");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options(config(durability)))
            .await
            .unwrap();
        let log = Rc::new(log);
        log.append(batch(0, 2, 100, now_ms()), Epoch(0))
            .await
            .unwrap();
        // Nothing past offset 2 is committed, so the suffix may go.
        log.set_replication_bound(Some(Offset(2)));
        log.hold_acks(true);
        let acked = Rc::new(Cell::new(0u64));
        let truncated = Rc::new(Cell::new(0u64));
        let pending: Vec<_> = (0..CUT)
            .map(|i| {
                let (log, acked, truncated) = (log.clone(), acked.clone(), truncated.clone());
                glommio::spawn_local(async move {
                    match log.append(batch(100 + i, 4, 700, now_ms()), Epoch(0)).await {
                        Ok(_) => acked.set(acked.get() + 1),
                        Err(LogError::Truncated { offset }) => {
                            assert_eq!(offset, Offset(2));
                            truncated.set(truncated.get() + 1);
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                })
            })
            .collect();
        // Every append is staged (4 records each) before the cut.
        while log.log_end_offset() < Offset(2 + 4 * CUT) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        // The truncation writes and syncs everything first: the cut appends are durable but,
        // their acknowledgements held, still waiting. The truncation itself fails them.
        log.truncate_to(Offset(2)).await.unwrap();
        assert_eq!(log.log_end_offset(), Offset(2));
        for _ in 0..1000 {
            if acked.get() + truncated.get() == CUT {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            (acked.get(), truncated.get()),
            (0, CUT),
            "{durability:?}: (acknowledged, failed Truncated) of the appends cut, once the \
             truncation returned"
        );
        log.hold_acks(false);
        // Later appends pass the offsets the cut ones had.
        log.set_replication_bound(None);
        for i in 0..CUT {
            within(
                "an append after the truncation",
                log.append(batch(500 + i, 4, 700, now_ms()), Epoch(0)),
            )
            .await
            .unwrap();
        }
        for t in pending {
            within("a cut append", t).await;
        }
        assert_eq!(
            (acked.get(), truncated.get()),
            (0, CUT),
            "{durability:?}: a cut append was acknowledged later"
        );
        let mut from = log.log_start_offset();
        let mut batches = 0;
        while from < log.high_watermark() {
            let r = log.read(from, 1 << 20).await.unwrap();
            for b in r.batches {
                let h = quill::record::BatchHeader::parse(&b).unwrap();
                from = Offset(h.last_offset() as u64 + 1);
                batches += 1;
            }
        }
        assert_eq!(
            batches,
            1 + CUT,
            "{durability:?}: the first batch and the later ones"
        );
    });
}
