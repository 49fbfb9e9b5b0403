//! The per-shard cache of open sealed-segment files (Redpanda keeps such a bounded cache of open
//! segment readers): a sealed segment's `.log` is opened when a read needs it and closed when
//! it falls out of the cache, so a shard's file descriptors grow with its partitions (the active
//! segment and its two index files stay open: 3 each), not with its segments.
//!
//! Lives on one shard, shared (`Rc`) by all its logs like the batch cache. Bounded by
//! `open_segment_files_max`, evicting the least recently used. An evicted file that a read still
//! holds closes when that read drops it, so the bound is exceeded only by reads in flight.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ahash::AHashMap;
use glommio::io::DmaFile;
use glommio::sync::{Semaphore, StaticPermit};

use super::error::{LogError, Result};

/// Descriptors one shard's logs may hold beyond their steady ones, for short-lived files: a
/// checkpoint write (temporary file and directory: 2), and a roll (the new segment's `.log`,
/// `.index`, `.timeindex` and the directory while it is created, then one index file at a time
/// while the sealed segment is finalized: 4, held until the sealed segment's files are closed).
/// Operations wait for descriptors rather than run the process out of them; the shard's fd
/// budget sets these aside.
pub const TRANSIENT_FDS_PER_SHARD: u64 = 32;
/// Descriptors a roll holds from the transient pool until the sealed segment is finalized.
pub(crate) const ROLL_FDS: u64 = 4;
/// Descriptors a checkpoint-file write holds while it runs.
pub(crate) const CHECKPOINT_FDS: u64 = 2;

thread_local! {
    static TRANSIENT_FDS: Rc<Semaphore> = Rc::new(Semaphore::new(TRANSIENT_FDS_PER_SHARD));
}

/// Takes `n` descriptors from this shard's transient pool, waiting while it is empty.
pub(crate) async fn transient_fds(n: u64) -> Result<StaticPermit> {
    let pool = TRANSIENT_FDS.with(Rc::clone);
    pool.acquire_static_permit(n)
        .await
        .map_err(|_| LogError::Closed)
}

/// Counters for the metrics hook and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    pub open: usize,
    pub hits: u64,
    pub opens: u64,
    pub evictions: u64,
}

#[derive(Default)]
struct Lru {
    files: AHashMap<PathBuf, (Rc<DmaFile>, u64)>,
    /// Last use -> path, oldest first.
    order: BTreeMap<u64, PathBuf>,
    tick: u64,
    stats: FileCacheStats,
}

/// See the module comment.
pub struct FileCache {
    max: usize,
    lru: RefCell<Lru>,
    /// Counts every forget: a file opened across one is not cached, since the path it was
    /// opened by may since name another file (a segment re-created after a truncation) or none.
    forgets: Cell<u64>,
}

impl FileCache {
    /// A cache holding at most `open_segment_files_max` files open (at least one).
    pub fn new(open_segment_files_max: usize) -> Self {
        FileCache {
            max: open_segment_files_max.max(1),
            lru: RefCell::new(Lru::default()),
            forgets: Cell::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.max
    }

    pub fn stats(&self) -> FileCacheStats {
        let l = self.lru.borrow();
        FileCacheStats {
            open: l.files.len(),
            ..l.stats
        }
    }

    /// The open file at `path`, opened (read-only, direct I/O) if it is not in the cache.
    pub(crate) async fn get(&self, path: &Path) -> Result<Rc<DmaFile>> {
        if let Some(f) = self.touch(path) {
            return Ok(f);
        }
        let forgets = self.forgets.get();
        let file = Rc::new(
            DmaFile::open(path)
                .await
                .map_err(|e| LogError::glommio("open", path, e))?,
        );
        let mut l = self.lru.borrow_mut();
        l.stats.opens += 1;
        if self.forgets.get() != forgets {
            // Forgotten while it opened: serve this read, keep nothing.
            return Ok(file);
        }
        // Another read may have opened it meanwhile: keep one.
        if let Some((f, _)) = l.files.get(path) {
            return Ok(f.clone());
        }
        l.tick += 1;
        let tick = l.tick;
        l.files.insert(path.to_path_buf(), (file.clone(), tick));
        l.order.insert(tick, path.to_path_buf());
        while l.files.len() > self.max {
            let Some((_, oldest)) = l.order.pop_first() else {
                break;
            };
            l.files.remove(&oldest);
            l.stats.evictions += 1;
        }
        Ok(file)
    }

    fn touch(&self, path: &Path) -> Option<Rc<DmaFile>> {
        let mut l = self.lru.borrow_mut();
        l.tick += 1;
        let tick = l.tick;
        let l = &mut *l;
        let (file, last) = l.files.get_mut(path)?;
        let key = l
            .order
            .remove(last)
            .expect("every cached file is in the order");
        *last = tick;
        l.order.insert(tick, key);
        l.stats.hits += 1;
        Some(file.clone())
    }

    /// Closes the file at `path` if it is open (its segment was deleted or becomes active).
    pub(crate) fn forget(&self, path: &Path) {
        self.forgets.set(self.forgets.get() + 1);
        let mut l = self.lru.borrow_mut();
        if let Some((_, tick)) = l.files.remove(path) {
            l.order.remove(&tick);
        }
    }

    /// Forgets every file under `dir` (its log was closed or deleted) and hands them back, for
    /// the caller to close (dropped, each closes at glommio's next I/O cycle).
    pub(crate) fn forget_dir(&self, dir: &Path) -> Vec<Rc<DmaFile>> {
        self.forgets.set(self.forgets.get() + 1);
        let mut l = self.lru.borrow_mut();
        let gone: Vec<(PathBuf, u64)> = l
            .files
            .iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(p, (_, t))| (p.clone(), *t))
            .collect();
        let mut files = Vec::new();
        for (p, t) in gone {
            if let Some((f, _)) = l.files.remove(&p) {
                files.push(f);
            }
            l.order.remove(&t);
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of issue 9, finding 3: a file forgotten while a read was opening it (its segment
    /// deleted, truncated or closed) must not be cached afterwards: it would keep a deleted
    /// file's space, or serve an old file for a path that names a new one.
    #[test]
    fn a_file_forgotten_while_it_opens_is_not_cached() {
        glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .spawn(|| async {
                let dir =
                    tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
                let path = dir.path().join("00000000000000000000.log");
                std::fs::write(&path, vec![1u8; 4096]).unwrap();
                let cache = Rc::new(FileCache::new(4));
                let (c, p) = (cache.clone(), path.clone());
                let opening = glommio::spawn_local(async move { c.get(&p).await.is_ok() });
                cache.forget_dir(dir.path());
                assert!(opening.await);
                assert_eq!(cache.stats().open, 0, "nothing cached after the forget");
                // Without a forget in between, it is cached.
                cache.get(&path).await.unwrap();
                assert_eq!(cache.stats().open, 1);
                cache.get(&path).await.unwrap();
                assert_eq!(cache.stats().hits, 1);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
