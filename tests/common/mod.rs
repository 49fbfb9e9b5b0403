//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::LocalExecutorBuilder;
use quill::disk::checkpoint::{encode_recovery_point, RECOVERY_POINT_FILE};
use quill::disk::{system_clock, BatchCache, LogConfig, LogError, LogOptions, PartitionLog};
use quill_proto::record::BatchBuilder;
use quill_proto::types::Offset;

pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;

/// Defines two tests that run `f(1)` and `f(2)`: the same behaviour with one shard and with
/// two (where requests cross shards).
#[macro_export]
macro_rules! one_and_two_shards {
    ($one:ident, $two:ident, $f:ident) => {
        #[test]
        fn $one() {
            $f(1);
        }
        #[test]
        fn $two() {
            $f(2);
        }
    };
}

/// The seed of a randomized test: `QUILL_TEST_SEED` if set, else a fresh one; printed so a
/// failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("QUILL_TEST_SEED")
        .ok()
        .map(|s| s.parse().expect("QUILL_TEST_SEED is a u64"))
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (set QUILL_TEST_SEED={seed} to replay)");
    seed
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sets this process's soft `RLIMIT_FSIZE` (the hard limit stays unlimited): writes past
/// `bytes` fail with EFBIG, a full disk in miniature. Only in a child process or a test binary
/// of its own: it applies to every thread.
pub fn set_fsize_limit(bytes: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
}

/// How long one call into the log (open, read, append) may take before the test calls it hung:
/// a hang guard, not a latency target.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Waits for `f` at most `limit`; `None` if it did not finish (a hang guard, not a latency
/// target).
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// `f`'s output; fails the test, naming `what`, if it takes more than [`CALL_LIMIT`].
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    within(CALL_LIMIT, f)
        .await
        .unwrap_or_else(|| panic!("{what}: no answer within {CALL_LIMIT:?} (the call hangs)"))
}

/// The batches of one bounded `log.read(from, max_bytes)`; `ctx` names the case on failure.
pub async fn read_at(
    log: &PartitionLog,
    from: u64,
    max_bytes: usize,
    ctx: &str,
) -> Result<Vec<Bytes>, LogError> {
    bounded(
        &format!("{ctx}: read({from}, {max_bytes})"),
        log.read(Offset(from), max_bytes),
    )
    .await
    .map(|r| r.batches)
}

/// Every batch from `from` up to `end`, read in order with `max_bytes()` per read; checks that
/// each read below `end` succeeds and returns data and that the batches are contiguous.
pub async fn read_range(
    log: &PartitionLog,
    from: u64,
    end: u64,
    mut max_bytes: impl FnMut() -> usize,
    ctx: &str,
) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut from = from;
    while from < end {
        let got = read_at(log, from, max_bytes(), ctx)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: sequential read at {from}: {e}"));
        assert!(
            !got.is_empty(),
            "{ctx}: sequential read at {from} (below {end}) is empty"
        );
        for b in got {
            let h = quill::record::BatchHeader::parse(&b).expect("a batch header");
            assert_eq!(
                h.base_offset as u64, from,
                "{ctx}: sequential read is contiguous"
            );
            from = h.last_offset() as u64 + 1;
            out.push(b);
        }
    }
    out
}

/// Reads every batch from the log start to the high watermark, `max_bytes` per read, as
/// `(base offset, stored bytes)` ([`read_range`]).
pub async fn read_all_by(log: &PartitionLog, max_bytes: usize) -> Vec<(u64, Vec<u8>)> {
    let (start, hw) = (log.log_start_offset().0, log.high_watermark().0);
    read_range(log, start, hw, || max_bytes, "read_all")
        .await
        .into_iter()
        .map(|b| {
            let h = quill::record::BatchHeader::parse(&b).expect("a batch header");
            (h.base_offset as u64, b.to_vec())
        })
        .collect()
}

/// [`read_all_by`] with 1 MiB reads.
pub async fn read_all(log: &PartitionLog) -> Vec<(u64, Vec<u8>)> {
    read_all_by(log, 1 << 20).await
}

// ---- A log's files, for the damage and recovery tests. ----

/// The segment file of `base` with extension `ext` ("log", "index", "timeindex") in `dir`.
pub fn segment_file(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Copies every file of the log directory `src` into `dst` (created).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// Inverts bit `bit` of the byte at `position` of `path`.
pub fn flip_bit(path: &Path, position: u64, bit: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position as usize] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

/// Writes the log directory's recovery-point checkpoint as `offset`: models a crash that came
/// before any checkpoint past it (only offsets below it are known durable).
pub fn set_recovery_point(dir: &Path, offset: u64) {
    std::fs::write(
        dir.join(RECOVERY_POINT_FILE),
        encode_recovery_point(Offset(offset)),
    )
    .unwrap();
}

/// Runs `f` on a fresh glommio executor. `io_memory` is kept small so that several test threads
/// stay under the 8 MiB memlock limit (3 rings each register it).
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::default()
        .io_memory(256 << 10)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// A directory on the real disk (not tmpfs, which silently disables O_DIRECT).
pub fn tmpdir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("quill-test-")
        .tempdir_in(base)
        .unwrap()
}

pub fn options(config: LogConfig) -> LogOptions {
    LogOptions {
        config,
        cache: Rc::new(BatchCache::new(64 << 20)),
        files: Rc::new(quill::disk::FileCache::new(256)),
        clock: system_clock(),
    }
}

pub fn options_no_cache(config: LogConfig) -> LogOptions {
    LogOptions {
        config,
        cache: Rc::new(BatchCache::new(0)),
        files: Rc::new(quill::disk::FileCache::new(256)),
        clock: system_clock(),
    }
}

/// A batch of `records` records whose values are derived from `seed`, timestamps from `ts`.
pub fn batch(seed: u64, records: usize, value_bytes: usize, ts: i64) -> BytesMut {
    let mut b = BatchBuilder::new(ts);
    for i in 0..records {
        let mut v = vec![0u8; value_bytes];
        let mut x = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(i as u64);
        for byte in v.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        let key = format!("k{seed}-{i}");
        b.push(ts + i as i64, Some(key.as_bytes()), Some(&v), &[]);
    }
    b.finish()
}

/// The batch as the log stores it: `batch` with its base offset and epoch stamped.
pub fn stamped(mut b: BytesMut, base: u64, epoch: i32) -> Vec<u8> {
    quill::record::set_base_offset(&mut b, base as i64);
    quill::record::set_partition_leader_epoch(&mut b, epoch);
    b.to_vec()
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        index_interval_bytes: 1024,
        write_buffer_bytes: 64 << 10,
        pending_bytes_max: 4 << 20,
        batch_bytes_max: 32 << 10,
        ..LogConfig::default()
    }
}
