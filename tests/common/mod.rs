//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::BytesMut;
use glommio::LocalExecutorBuilder;
use quill::disk::{system_clock, BatchCache, LogConfig, LogOptions, PartitionLog};
use quill_proto::record::BatchBuilder;
use quill_proto::types::Offset;

pub mod broker;
pub mod client;

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

/// Reads every batch from the log start to the high watermark, `max_bytes` per read, as
/// `(base offset, stored bytes)`; checks that each read below the high watermark returns data
/// and that batches are contiguous.
pub async fn read_all_by(log: &PartitionLog, max_bytes: usize) -> Vec<(u64, Vec<u8>)> {
    let mut from = log.log_start_offset();
    let hw = log.high_watermark();
    let mut got = Vec::new();
    while from < hw {
        let r = log.read(from, max_bytes).await.unwrap();
        assert!(
            !r.batches.is_empty(),
            "read at {from} below the high watermark {hw}"
        );
        for b in r.batches {
            let h = quill::record::BatchHeader::parse(&b).unwrap();
            assert_eq!(h.base_offset as u64, from.0, "batches are contiguous");
            got.push((from.0, b.to_vec()));
            from = Offset(h.last_offset() as u64 + 1);
        }
    }
    got
}

/// [`read_all_by`] with 1 MiB reads.
pub async fn read_all(log: &PartitionLog) -> Vec<(u64, Vec<u8>)> {
    read_all_by(log, 1 << 20).await
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
