//! A replica's side of a partition log: storing its leader's batches as they are
//! (`PartitionLog::append_replicated`: the same bytes at the same offsets, with the leader's
//! epochs), refusing batches that do not continue the log, and giving up an uncommitted tail
//! above the replication bound before taking the leader's version of it.

mod common;

use common::*;
use quill::disk::{Durability, LogConfig, LogError, PartitionLog};
use quill::types::{Epoch, Offset};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        batch_bytes_max: 16 << 10,
        durability: Durability::Sync,
        ..small_config()
    }
}

/// Every batch of `log`, as stored (offsets and epochs stamped), up to its log end.
async fn stored(log: &PartitionLog) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    loop {
        let r = log
            .read_upto(at, 1 << 20, log.log_end_offset())
            .await
            .unwrap();
        let Some(last) = r.batches.last() else {
            return out;
        };
        let h = quill::record::BatchHeader::parse(last).unwrap();
        at = Offset(h.last_offset() as u64 + 1);
        out.extend(r.batches);
    }
}

fn copy(b: &bytes::Bytes) -> bytes::Bytes {
    b.clone()
}

/// A follower fed the leader's batches, across epochs and segment rolls, holds the same bytes at
/// the same offsets, remembers the epochs after a reopen, and its high watermark follows the
/// replication bound, not its own durable offset.
#[test]
fn a_replica_stores_the_leaders_bytes_at_the_leaders_offsets() {
    let dir = tmpdir();
    let (lp, fp) = (dir.path().join("leader"), dir.path().join("follower"));
    run(move || async move {
        let (leader, _) = PartitionLog::open(&lp, options(config())).await.unwrap();
        for i in 0..60u64 {
            let epoch = Epoch((i / 20) as i32 * 2 + 1);
            leader.append(batch(i, 3, 700, 1000), epoch).await.unwrap();
        }
        let batches = stored(&leader).await;
        assert_eq!(batches.len(), 60);
        let (follower, _) = PartitionLog::open(&fp, options(config())).await.unwrap();
        follower.set_replication_bound(Some(Offset::ZERO));
        // In three calls of different sizes, so epochs change inside and between calls.
        for chunk in [&batches[..7], &batches[7..33], &batches[33..]] {
            let infos = follower
                .append_replicated(chunk.iter().map(copy).collect(), Durability::Sync, None)
                .await
                .unwrap();
            let h = quill::record::BatchHeader::parse(&chunk[0]).unwrap();
            assert_eq!(infos[0].base_offset, Offset(h.base_offset as u64));
        }
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(
            follower.high_watermark(),
            Offset::ZERO,
            "capped by the bound"
        );
        follower.set_replication_bound(Some(Offset(90)));
        assert_eq!(follower.high_watermark(), Offset(90));
        assert_eq!(follower.last_epoch(), Epoch(5));
        assert_eq!(stored(&follower).await, batches, "the same bytes");
        assert!(
            follower.segment_bases().len() > 1,
            "the test must cross a roll"
        );
        follower.close().await.unwrap();
        let (follower, _) = PartitionLog::open(&fp, options(config())).await.unwrap();
        assert_eq!(
            stored(&follower).await,
            batches,
            "the same bytes after a reopen"
        );
        assert_eq!(follower.last_epoch(), Epoch(5));
        // The epochs were recorded where the leader's began: an older epoch is refused.
        let mut stale = batch(99, 1, 10, 1000);
        quill::record::set_base_offset(&mut stale, follower.log_end_offset().0 as i64);
        quill::record::set_partition_leader_epoch(&mut stale, 3);
        match follower
            .append_replicated(vec![stale.freeze()], Durability::Sync, None)
            .await
        {
            Err(LogError::StaleEpoch { epoch, current }) => {
                assert_eq!((epoch, current), (Epoch(3), Epoch(5)));
            }
            other => panic!("a stale epoch was taken: {other:?}"),
        }
        follower.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

/// Batches that do not start at the log end, or leave a gap between them, are refused whole:
/// nothing is appended.
#[test]
fn batches_that_do_not_continue_the_log_are_refused() {
    let dir = tmpdir();
    let path = dir.path().join("p");
    run(move || async move {
        let (log, _) = PartitionLog::open(&path, options(config())).await.unwrap();
        let at = |seed, base: u64| {
            let mut b = batch(seed, 2, 50, 1000);
            quill::record::set_base_offset(&mut b, base as i64);
            quill::record::set_partition_leader_epoch(&mut b, 1);
            b
        };
        match log
            .append_replicated(vec![at(1, 4).freeze()], Durability::Sync, None)
            .await
        {
            Err(LogError::OffsetMismatch { expected, got }) => {
                assert_eq!((expected, got), (Offset(0), Offset(4)));
            }
            other => panic!("a batch past the end was taken: {other:?}"),
        }
        match log
            .append_replicated(
                vec![at(1, 0).freeze(), at(2, 3).freeze()],
                Durability::Sync,
                None,
            )
            .await
        {
            Err(LogError::OffsetMismatch { expected, got }) => {
                assert_eq!((expected, got), (Offset(2), Offset(3)));
            }
            other => panic!("a gap was taken: {other:?}"),
        }
        assert_eq!(log.log_end_offset(), Offset::ZERO, "nothing appended");
        log.append_replicated(
            vec![at(1, 0).freeze(), at(2, 2).freeze()],
            Durability::Sync,
            None,
        )
        .await
        .unwrap();
        assert_eq!(log.log_end_offset(), Offset(4));
        log.close().await.unwrap();
    });
}

/// A replica that took batches a new leader does not have gives them up: with the high
/// watermark held at the committed offset by the replication bound, it truncates its tail to
/// the divergence point and stores the new leader's batches there, also after a reopen.
#[test]
fn a_divergent_uncommitted_tail_is_replaced_by_the_leaders() {
    let dir = tmpdir();
    let path = dir.path().join("p");
    run(move || async move {
        let stamp = |seed, base: u64, epoch| {
            let mut b = batch(seed, 2, 50, 1000);
            quill::record::set_base_offset(&mut b, base as i64);
            quill::record::set_partition_leader_epoch(&mut b, epoch);
            b.freeze()
        };
        let (log, _) = PartitionLog::open(&path, options(config())).await.unwrap();
        log.set_replication_bound(Some(Offset(4)));
        // Committed: offsets 0-3 (epoch 1). Uncommitted, from epoch 2: offsets 4-7.
        let ours = vec![
            stamp(1, 0, 1),
            stamp(2, 2, 1),
            stamp(3, 4, 2),
            stamp(4, 6, 2),
        ];
        log.append_replicated(ours, Durability::Sync, None)
            .await
            .unwrap();
        log.close().await.unwrap();
        let (log, _) = PartitionLog::open(&path, options(config())).await.unwrap();
        log.set_replication_bound(Some(Offset(4)));
        assert!(matches!(
            log.truncate_to(Offset(2)).await,
            Err(LogError::TruncateBelowHighWatermark { .. })
        ));
        log.truncate_to(Offset(4)).await.unwrap();
        let theirs = vec![stamp(13, 4, 3), stamp(14, 6, 3), stamp(15, 8, 3)];
        log.append_replicated(theirs.clone(), Durability::Sync, None)
            .await
            .unwrap();
        log.set_replication_bound(Some(Offset(10)));
        let all = stored(&log).await;
        assert_eq!(all.len(), 5);
        for (got, want) in all[2..].iter().zip(&theirs) {
            assert_eq!(&got[..], &want[..]);
        }
        assert_eq!(log.last_epoch(), Epoch(3));
        log.close().await.unwrap();
    });
}
