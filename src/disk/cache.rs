//! The per-shard batch cache: recent batches of every log on a shard, in memory, so tail readers
//! are served with no disk read (as Redpanda's `batch_cache` does).
//!
//! Lives on one shard; every log of that shard holds an `Rc` to the same cache. Eviction is FIFO
//! by insertion, which for an append-only log is oldest-data-first. Bounded by
//! `batch_cache_bytes_max`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use ahash::AHashMap;
use bytes::Bytes;

use crate::types::Offset;

/// Identifies one log within the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(u64);

#[derive(Clone, Debug)]
struct Entry {
    next_offset: Offset,
    bytes: Bytes,
}

#[derive(Default)]
struct Inner {
    logs: AHashMap<CacheKey, BTreeMap<Offset, Entry>>,
    fifo: VecDeque<(CacheKey, Offset, usize)>,
    bytes: usize,
    next_key: u64,
    hits: u64,
    misses: u64,
}

/// Counters for the metrics hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub bytes: usize,
    pub batches: usize,
    pub hits: u64,
    pub misses: u64,
}

/// Recent batches of every log on one shard. Not `Send`: one per shard.
pub struct BatchCache {
    inner: RefCell<Inner>,
    batch_cache_bytes_max: usize,
}

impl BatchCache {
    pub fn new(batch_cache_bytes_max: usize) -> Self {
        BatchCache {
            inner: RefCell::new(Inner::default()),
            batch_cache_bytes_max,
        }
    }

    /// A fresh key for a newly opened log.
    pub fn register(&self) -> CacheKey {
        let mut inner = self.inner.borrow_mut();
        inner.next_key += 1;
        let key = CacheKey(inner.next_key);
        inner.logs.insert(key, BTreeMap::new());
        key
    }

    /// Forgets a log entirely (closed or deleted).
    pub fn unregister(&self, key: CacheKey) {
        let mut inner = self.inner.borrow_mut();
        if let Some(map) = inner.logs.remove(&key) {
            let freed: usize = map.values().map(|e| e.bytes.len()).sum();
            inner.bytes -= freed;
        }
    }

    /// Caches a batch that starts at `base` and ends before `next_offset`.
    pub fn insert(&self, key: CacheKey, base: Offset, next_offset: Offset, bytes: Bytes) {
        let len = bytes.len();
        if len > self.batch_cache_bytes_max {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let Some(map) = inner.logs.get_mut(&key) else {
            return;
        };
        if let Some(old) = map.insert(base, Entry { next_offset, bytes }) {
            inner.bytes -= old.bytes.len();
        }
        inner.bytes += len;
        inner.fifo.push_back((key, base, len));
        while inner.bytes > self.batch_cache_bytes_max {
            let Some((k, off, len)) = inner.fifo.pop_front() else {
                break;
            };
            let inner = &mut *inner;
            if let Some(map) = inner.logs.get_mut(&k) {
                // The entry may have been replaced or removed since; only drop the same one.
                if map.get(&off).is_some_and(|e| e.bytes.len() == len) {
                    map.remove(&off);
                    inner.bytes -= len;
                }
            }
        }
    }

    /// Consecutive cached batches starting with the one that holds `from`, stopping before
    /// `upper` (exclusive) and once `max_bytes` is reached (the first batch always counts).
    /// Empty when the batch holding `from` is not cached.
    pub fn read(&self, key: CacheKey, from: Offset, upper: Offset, max_bytes: usize) -> Vec<Bytes> {
        let mut inner = self.inner.borrow_mut();
        let mut out = Vec::new();
        let Some(map) = inner.logs.get(&key) else {
            return out;
        };
        let start = match map.range(..=from).next_back() {
            Some((&base, e)) if e.next_offset > from => base,
            _ => {
                inner.misses += 1;
                return out;
            }
        };
        let mut total = 0usize;
        let mut expect = start;
        for (&base, e) in map.range(start..) {
            if base != expect || e.next_offset > upper {
                break;
            }
            if !out.is_empty() && total + e.bytes.len() > max_bytes {
                break;
            }
            total += e.bytes.len();
            out.push(e.bytes.clone());
            expect = e.next_offset;
        }
        if out.is_empty() {
            inner.misses += 1;
        } else {
            inner.hits += 1;
        }
        out
    }

    /// Drops a log's batches that start at or after `from` (suffix truncation).
    pub fn truncate_from(&self, key: CacheKey, from: Offset) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        if let Some(map) = inner.logs.get_mut(&key) {
            let tail = map.split_off(&from);
            inner.bytes -= tail.values().map(|e| e.bytes.len()).sum::<usize>();
        }
    }

    /// Drops a log's batches that end at or before `upto` (retention).
    pub fn evict_before(&self, key: CacheKey, upto: Offset) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        if let Some(map) = inner.logs.get_mut(&key) {
            let keep = map.split_off(&upto);
            let dropped = std::mem::replace(map, keep);
            inner.bytes -= dropped.values().map(|e| e.bytes.len()).sum::<usize>();
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.borrow();
        CacheStats {
            bytes: inner.bytes,
            batches: inner.logs.values().map(|m| m.len()).sum(),
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn reads_consecutive_batches_from_inside_one() {
        let c = BatchCache::new(1000);
        let k = c.register();
        c.insert(k, Offset(0), Offset(5), b(100));
        c.insert(k, Offset(5), Offset(9), b(100));
        c.insert(k, Offset(9), Offset(10), b(100));
        assert_eq!(c.read(k, Offset(3), Offset(10), 1000).len(), 3);
        assert_eq!(c.read(k, Offset(5), Offset(10), 150).len(), 1);
        // The upper bound (high watermark) hides batches that end past it.
        assert_eq!(c.read(k, Offset(0), Offset(9), 1000).len(), 2);
        assert!(c.read(k, Offset(10), Offset(20), 1000).is_empty());
        assert_eq!(c.stats().hits, 3);
    }

    #[test]
    fn evicts_oldest_first_within_the_bound() {
        let c = BatchCache::new(250);
        let k = c.register();
        c.insert(k, Offset(0), Offset(1), b(100));
        c.insert(k, Offset(1), Offset(2), b(100));
        c.insert(k, Offset(2), Offset(3), b(100));
        let s = c.stats();
        assert_eq!((s.bytes, s.batches), (200, 2));
        assert!(c.read(k, Offset(0), Offset(3), 1000).is_empty());
        assert_eq!(c.read(k, Offset(1), Offset(3), 1000).len(), 2);
    }

    #[test]
    fn truncation_and_retention_free_bytes() {
        let c = BatchCache::new(1000);
        let k = c.register();
        for i in 0..5u64 {
            c.insert(k, Offset(i), Offset(i + 1), b(10));
        }
        c.truncate_from(k, Offset(3));
        assert_eq!(c.stats().bytes, 30);
        c.evict_before(k, Offset(1));
        assert_eq!(c.stats().bytes, 20);
        // After truncation a gap stops the run even if a later batch is re-appended.
        c.insert(k, Offset(4), Offset(5), b(10));
        assert_eq!(c.read(k, Offset(1), Offset(5), 1000).len(), 2);
        c.unregister(k);
        assert_eq!(c.stats().bytes, 0);
    }
}
