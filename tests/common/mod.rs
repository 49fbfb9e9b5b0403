//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::BytesMut;
use glommio::LocalExecutorBuilder;
use quill::disk::{system_clock, BatchCache, LogConfig, LogOptions};
use quill::record::BatchBuilder;

pub mod broker;

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
