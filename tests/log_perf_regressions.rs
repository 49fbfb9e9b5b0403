//! Regression tests for the pipelined commit path (pooled staging buffers written as they fill,
//! tails, preallocated segment space) and for opening a log by a relative path.
//!
//! Timing is measured by `quill-perf storage`, not here: these check that what the pipeline acks
//! is exactly what the log holds, before and after a restart, with many writes in flight.

mod common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use quill::disk::recovery::ScanEnd;
use quill::disk::{Durability, LogConfig, LogError, PartitionLog};
use quill_proto::types::{Epoch, Offset};

/// Now, in milliseconds: batches stamped with it keep a recovered segment young (a segment's age
/// after recovery comes from its first batch, and an old one would roll on the next append).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn log_file(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

#[test]
fn a_log_opens_by_a_relative_path() {
    let dir = tmpdir();
    let cwd = std::env::current_dir().unwrap();
    let relative = dir
        .path()
        .strip_prefix(&cwd)
        .expect("the test directory lies under the working directory")
        .join("p0");
    assert!(relative.is_relative());
    let rel = relative.clone();
    let b = batch(1, 3, 100, 10);
    let want = stamped(b.clone(), 0, 0);
    run(move || async move {
        let (log, _) = PartitionLog::open(&rel, options(small_config()))
            .await
            .expect("open by a relative path");
        assert!(log.dir().is_absolute());
        log.append(b, Epoch(0)).await.unwrap();
        log.close().await.unwrap();
    });
    run(move || async move {
        let (log, _) = PartitionLog::open(&relative, options_no_cache(small_config()))
            .await
            .unwrap();
        let r = log.read(Offset(0), 1 << 20).await.unwrap();
        assert_eq!(r.batches.len(), 1);
        assert_eq!(&r.batches[0][..], &want[..]);
        log.close().await.unwrap();
    });
}

/// Appends `per_task` batches from each of `tasks` tasks at once; returns what was acknowledged
/// (base offset and stored bytes), in offset order.
async fn append_concurrently(
    log: &Rc<PartitionLog>,
    tasks: u64,
    per_task: u64,
    durability: Durability,
) -> Vec<(u64, Vec<u8>)> {
    let acked = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (log, acked) = (log.clone(), acked.clone());
            glommio::spawn_local(async move {
                for i in 0..per_task {
                    let seed = t * 1000 + i;
                    // From a few hundred bytes to more than a staging buffer.
                    let value = 200 + (seed * 7919 % 24_000) as usize;
                    let b = batch(seed, 2, value / 2, seed as i64);
                    let info = log
                        .append_with(b.clone(), Epoch(0), durability)
                        .await
                        .unwrap();
                    let base = info.base_offset.0;
                    acked.borrow_mut().push((base, stamped(b, base, 0)));
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
    let mut acked = acked.take();
    acked.sort_by_key(|(base, _)| *base);
    acked
}

fn pipeline_config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 512 << 10,
        batch_bytes_max: 64 << 10,
        write_buffer_bytes: 16 << 10,
        pending_bytes_max: 1 << 20,
        preallocate_bytes: 128 << 10,
        durability,
        flush_ms: 20,
        ..small_config()
    }
}

fn many_writes_in_flight_read_back_identical(durability: Durability) {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let config = pipeline_config(durability);
    let (p, c) = (path.clone(), config.clone());
    let acked = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options_no_cache(c)).await.unwrap();
        let log = Rc::new(log);
        let acked = append_concurrently(&log, 24, 12, durability).await;
        assert!(log.segment_bases().len() > 3, "small segments must roll");
        // Acknowledged offsets are contiguous from 0 and everything acknowledged is readable.
        assert_eq!(log.high_watermark().0, {
            let (base, bytes) = acked.last().unwrap();
            let h = quill::record::BatchHeader::parse(bytes).unwrap();
            assert_eq!(h.base_offset as u64, *base);
            h.last_offset() as u64 + 1
        });
        assert_eq!(read_all(&log).await, acked);
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
        acked
    });
    run(move || async move {
        let (log, report) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        assert!(report.corrupt.is_empty());
        assert_eq!(
            report.active.unwrap().truncated_bytes,
            0,
            "close leaves exact files"
        );
        assert_eq!(read_all(&log).await, acked);
        log.close().await.unwrap();
    });
}

#[test]
fn many_writes_in_flight_read_back_identical_in_sync_mode() {
    many_writes_in_flight_read_back_identical(Durability::Sync);
}

#[test]
fn many_writes_in_flight_read_back_identical_in_interval_mode() {
    many_writes_in_flight_read_back_identical(Durability::Interval);
}

#[test]
fn preallocated_space_is_never_read_and_is_dropped_on_recovery_and_close() {
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let config = LogConfig {
        segment_bytes: 64 << 20,
        write_buffer_bytes: 64 << 10,
        preallocate_bytes: 4 << 20,
        ..small_config()
    };
    let (p, c) = (path.clone(), config.clone());
    let acked = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options_no_cache(c)).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..20u64 {
            let b = batch(i, 3, 1000, now_ms());
            let info = log.append(b.clone(), Epoch(0)).await.unwrap();
            acked.push((info.base_offset.0, stamped(b, info.base_offset.0, 0)));
        }
        let logical = log.stats().size_bytes;
        // The reservation runs beside the writes; give it a moment to land.
        let file = log_file(&p, 0);
        let mut on_disk = 0;
        for _ in 0..200 {
            on_disk = std::fs::metadata(&file).unwrap().len();
            if on_disk > logical {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        // Steps start at 1 MiB and grow with the segment (up to `preallocate_bytes`), so a
        // partition that was written little reserves little.
        assert!(
            on_disk >= logical + (1 << 20) && on_disk <= logical + (2 << 20),
            "the segment is preallocated one minimum step ahead of the writes: {on_disk} bytes \
             on disk, {logical} logical"
        );
        // Reads stop at the last batch, not at the end of the file.
        assert_eq!(read_all(&log).await, acked);
        assert!(log
            .read(log.log_end_offset(), 1 << 20)
            .await
            .unwrap()
            .batches
            .is_empty());
        // A crash: the handle goes away without `close`.
        drop(log);
        (acked, on_disk, logical)
    });
    let (acked, on_disk, logical) = acked;
    let (p, c) = (path.clone(), config.clone());
    run(move || async move {
        let (log, report) = PartitionLog::open(&p, options_no_cache(c)).await.unwrap();
        let active = report.active.unwrap();
        assert_eq!(active.end, ScanEnd::ZeroPadding, "{active:?}");
        assert!(active.truncated_bytes >= on_disk - logical, "{active:?}");
        assert_eq!(std::fs::metadata(log_file(&p, 0)).unwrap().len(), logical);
        assert_eq!(read_all(&log).await, acked);
        // Appends continue right after the recovered end, and close cuts any new reservation.
        let b = batch(99, 3, 1000, now_ms());
        let info = log.append(b, Epoch(0)).await.unwrap();
        assert_eq!(info.base_offset.0, acked.len() as u64 * 3);
        assert_eq!(log.segment_bases(), vec![Offset(0)]);
        let logical = log.stats().size_bytes;
        log.close().await.unwrap();
        assert_eq!(std::fs::metadata(log_file(&p, 0)).unwrap().len(), logical);
    });
}

const CHILD_ENV: &str = "QUILL_TEST_CHILD_WRITE_ERROR_DIR";

/// RLIMIT_FSIZE applies to the whole process, so the test body runs in a child process of its
/// own (this test binary, filtered to the ignored test below).
#[test]
fn a_write_error_with_many_writes_in_flight_loses_nothing_acknowledged() {
    let dir = tmpdir();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_write_error_with_many_writes_in_flight",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "runs in a child process of a_write_error_with_many_writes_in_flight_loses_nothing_acknowledged"]
fn child_write_error_with_many_writes_in_flight() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Without this the kernel kills the process with SIGXFSZ instead of failing the write.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let path = PathBuf::from(dir).join("p0");
    let config = LogConfig {
        segment_bytes: 8 << 20,
        write_buffer_bytes: 16 << 10,
        pending_bytes_max: 1 << 20,
        ..LogConfig::default()
    };
    let (p, c) = (path.clone(), config.clone());
    let acked = run(move || async move {
        let (log, _) = PartitionLog::open(&p, options(c)).await.unwrap();
        let log = Rc::new(log);
        set_fsize_limit(1 << 20);
        let acked = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let (log, acked) = (log.clone(), acked.clone());
                glommio::spawn_local(async move {
                    for i in 0..100u64 {
                        let b = batch(t * 1000 + i, 3, 3_000, 10);
                        match log.append(b.clone(), Epoch(0)).await {
                            Ok(info) => {
                                let base = info.base_offset.0;
                                acked.borrow_mut().push((base, stamped(b, base, 0)));
                            }
                            Err(e) => {
                                assert!(matches!(e, LogError::Io { .. }), "{e}");
                                return;
                            }
                        }
                    }
                    panic!("the file size limit must stop the appends");
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let mut acked = acked.take();
        acked.sort_by_key(|(base, _)| *base);
        assert!(!acked.is_empty());
        // What was acknowledged is exactly the log: a contiguous prefix, all readable.
        let end = acked.len() as u64 * 3;
        assert_eq!(acked.last().unwrap().0 + 3, end);
        assert_eq!(log.log_end_offset(), Offset(end));
        assert_eq!(log.high_watermark(), Offset(end));
        assert_eq!(read_all(&log).await, acked);
        // Space is back: appends continue right after the acknowledged prefix.
        set_fsize_limit(libc::RLIM_INFINITY);
        #[allow(clippy::redundant_locals)]
        let mut acked = acked;
        for i in 0..5 {
            let b = batch(90_000 + i, 3, 3_000, 10);
            let info = log.append(b.clone(), Epoch(0)).await.unwrap();
            assert_eq!(info.base_offset, Offset(end + 3 * i));
            acked.push((info.base_offset.0, stamped(b, info.base_offset.0, 0)));
        }
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
        acked
    });
    run(move || async move {
        let (log, report) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        assert!(report.corrupt.is_empty());
        assert_eq!(read_all(&log).await, acked);
        log.close().await.unwrap();
    });
}

/// Files of `dir` this process has open.
fn open_files_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Dropping a log without `close` (a topic deleted while a request still held its log) stops its
/// flusher once the I/O in flight ends, which releases the segment and index files, in both
/// modes.
#[test]
fn a_dropped_log_lets_go_of_its_files() {
    for durability in [Durability::Sync, Durability::Interval] {
        let dir = tmpdir();
        let path = dir.path().join("p0");
        let p = path.clone();
        let left = run(move || async move {
            let (log, _) = PartitionLog::open(&p, options(pipeline_config(durability)))
                .await
                .unwrap();
            for i in 0..8 {
                log.append_with(batch(i, 4, 600, now_ms()), Epoch(0), durability)
                    .await
                    .unwrap();
            }
            assert!(open_files_under(&p) > 0, "the log's files are open");
            drop(log);
            // The flusher and the last I/O tasks run on this executor: give them up to 5 s.
            for _ in 0..500 {
                if open_files_under(&p) == 0 {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            open_files_under(&p)
        });
        assert_eq!(left, 0, "{durability:?}: files still open after the drop");
    }
}
