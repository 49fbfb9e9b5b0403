//! The machine's raw direct-I/O write performance, measured without Quill, as the baseline the
//! storage engine is compared with.
//!
//! Everything runs on the calling glommio executor. Files are written from offset 0 and grow as
//! they are written, as a log segment does; none is preallocated.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaBuffer, DmaFile};
use hdrhistogram::Histogram;

use crate::error::{Context, PerfError, Result};
use crate::report::{latency_histogram, mb_per_s, record_latency};

/// Fills `buf` with pseudo-random bytes, so a device or hypervisor that detects zero blocks
/// (QEMU's `detect-zeroes`) cannot skip the write.
pub fn fill_pseudo_random(buf: &mut [u8], mut seed: u64) {
    seed |= 1;
    for chunk in buf.chunks_mut(8) {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// How much one throughput run writes.
#[derive(Clone, Copy, Debug)]
pub struct ThroughputPlan {
    /// Size of each write.
    pub block_bytes: usize,
    /// Writes in flight at once.
    pub queue_depth: usize,
    /// Stop once this many bytes are written ...
    pub total_bytes_max: u64,
    /// ... or once this much time has passed, whichever comes first.
    pub duration_max: Duration,
    /// What the file looks like before the measured writes.
    pub setup: FileSetup,
}

/// The state of the file a throughput run writes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileSetup {
    /// A new empty file: every write extends it, as a log segment grows.
    Fresh,
    /// A new file given its full size with `fallocate` first (blocks reserved, unwritten).
    Fallocated,
    /// A file first written to this many bytes and synced (not measured); the measured writes
    /// overwrite it, wrapping around, so the file system allocates nothing.
    Prewritten { file_bytes: u64 },
}

/// The outcome of [`direct_write_throughput`].
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub bytes: u64,
    pub writes: u64,
    /// From the first write submitted to the last completed.
    pub write_elapsed: Duration,
    /// The closing `fdatasync`.
    pub sync_elapsed: Duration,
}

impl Throughput {
    /// Writes and the closing sync.
    pub fn elapsed(&self) -> Duration {
        self.write_elapsed + self.sync_elapsed
    }

    /// Bytes per second over writes and the closing sync, in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        mb_per_s(self.bytes, self.elapsed())
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "bytes": self.bytes,
            "writes": self.writes,
            "write_seconds": self.write_elapsed.as_secs_f64(),
            "sync_seconds": self.sync_elapsed.as_secs_f64(),
            "mb_per_s": self.mb_per_s(),
        })
    }
}

/// Sequential O_DIRECT writes of `plan.block_bytes` to a new file at `path`, `plan.queue_depth`
/// of them in flight, then one `fdatasync`. The file is removed afterwards.
pub async fn direct_write_throughput(path: &Path, plan: ThroughputPlan) -> Result<Throughput> {
    assert!(plan.block_bytes > 0 && plan.queue_depth > 0);
    let file = Rc::new(
        DmaFile::create(path)
            .await
            .with_context(|| format!("create {}", path.display()))?,
    );
    let block = plan.block_bytes as u64;
    // Whole blocks only.
    let limit = plan.total_bytes_max / block * block;
    let wrap = match plan.setup {
        FileSetup::Fresh => u64::MAX,
        FileSetup::Fallocated => {
            file.pre_allocate(limit, false).await.context("fallocate")?;
            file.fdatasync().await.context("fdatasync")?;
            u64::MAX
        }
        FileSetup::Prewritten { file_bytes } => {
            let n = (file_bytes / block).max(1) * block;
            let prefill = ThroughputPlan {
                total_bytes_max: n,
                duration_max: Duration::from_secs(3600),
                setup: FileSetup::Fresh,
                ..plan
            };
            write_blocks(&file, prefill, n, u64::MAX).await?;
            file.fdatasync().await.context("fdatasync")?;
            n
        }
    };
    let start = Instant::now();
    let result = write_blocks(&file, plan, limit, wrap).await;
    let write_elapsed = start.elapsed();
    let synced = Instant::now();
    let sync = file.fdatasync().await.context("fdatasync");
    let sync_elapsed = synced.elapsed();
    let closed = close_and_remove(file, path).await;
    let (bytes, writes) = result?;
    sync?;
    closed?;
    Ok(Throughput {
        bytes,
        writes,
        write_elapsed,
        sync_elapsed,
    })
}

/// Writes whole blocks at logical positions 0, block, 2 block, ... up to `limit` (file position
/// modulo `wrap`), `plan.queue_depth` in flight, until `limit` or `plan.duration_max`. Returns the
/// bytes and writes done.
async fn write_blocks(
    file: &Rc<DmaFile>,
    plan: ThroughputPlan,
    limit: u64,
    wrap: u64,
) -> Result<(u64, u64)> {
    let block = plan.block_bytes as u64;
    let next_pos = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let deadline = start + plan.duration_max;
    let workers: Vec<_> = (0..plan.queue_depth)
        .map(|i| {
            let file = file.clone();
            let next_pos = next_pos.clone();
            let mut buf = file.alloc_dma_buffer(plan.block_bytes);
            fill_pseudo_random(buf.as_bytes_mut(), i as u64 + 1);
            let buf = Rc::new(buf);
            glommio::spawn_local(async move {
                let mut written = (0u64, 0u64);
                loop {
                    let pos = next_pos.get();
                    if pos + block > limit || Instant::now() >= deadline {
                        return Ok::<_, PerfError>(written);
                    }
                    next_pos.set(pos + block);
                    let n = file
                        .write_rc_at(buf.clone(), pos % wrap)
                        .await
                        .context("direct write")?;
                    check_full(n, plan.block_bytes)?;
                    written.0 += n as u64;
                    written.1 += 1;
                }
            })
        })
        .collect();
    let mut bytes = 0;
    let mut writes = 0;
    let mut first_err = None;
    for w in workers {
        match w.await {
            Ok((b, n)) => {
                bytes += b;
                writes += n;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((bytes, writes)),
    }
}

/// One operation of [`sync_write_latency`] slower than the `slow_over` it was given.
#[derive(Clone, Copy, Debug)]
pub struct SlowWrite {
    /// When it started, from the start of the run.
    pub at: Duration,
    /// The write alone.
    pub write: Duration,
    /// The write and the `fdatasync`.
    pub total: Duration,
}

/// The outcome of [`sync_write_latency`].
pub struct SyncWrites {
    /// Write + `fdatasync`, in microseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// Every operation over `slow_over`, in order.
    pub slow: Vec<SlowWrite>,
}

/// Latency of one `block_bytes` O_DIRECT write followed by `fdatasync`, one at a time, each
/// extending a new file (the pattern of a log acknowledging a single small append), for
/// `duration`. Operations slower than `slow_over` are also listed one by one.
pub async fn sync_write_latency(
    path: &Path,
    block_bytes: usize,
    duration: Duration,
    slow_over: Duration,
) -> Result<SyncWrites> {
    let file = Rc::new(
        DmaFile::create(path)
            .await
            .with_context(|| format!("create {}", path.display()))?,
    );
    let mut buf: DmaBuffer = file.alloc_dma_buffer(block_bytes);
    fill_pseudo_random(buf.as_bytes_mut(), 7);
    let buf = Rc::new(buf);
    let mut latency = latency_histogram();
    let mut slow = Vec::new();
    let start = Instant::now();
    let mut pos = 0u64;
    let run = async {
        while start.elapsed() < duration {
            let t = Instant::now();
            let n = file
                .write_rc_at(buf.clone(), pos)
                .await
                .context("direct write")?;
            check_full(n, block_bytes)?;
            let write = t.elapsed();
            file.fdatasync().await.context("fdatasync")?;
            let total = t.elapsed();
            record_latency(&mut latency, total);
            if total > slow_over {
                slow.push(SlowWrite {
                    at: t.duration_since(start),
                    write,
                    total,
                });
            }
            pos += block_bytes as u64;
        }
        Ok::<_, PerfError>(())
    }
    .await;
    let elapsed = start.elapsed();
    let closed = close_and_remove(file, path).await;
    run?;
    closed?;
    Ok(SyncWrites {
        latency,
        elapsed,
        slow,
    })
}

/// The outcome of [`group_commit_cycles`].
pub struct GroupCommits {
    pub group_bytes: u64,
    pub cycles: u64,
    pub elapsed: Duration,
    /// Per cycle: from submitting the group's writes to the last one completing, in µs.
    pub write_us: Histogram<u64>,
    /// Per cycle: the `fdatasync` after the writes, in µs.
    pub sync_us: Histogram<u64>,
}

impl GroupCommits {
    pub fn bytes(&self) -> u64 {
        self.group_bytes * self.cycles
    }

    pub fn mb_per_s(&self) -> f64 {
        mb_per_s(self.bytes(), self.elapsed)
    }
}

/// The storage engine's commit pattern without the engine: each cycle writes `group_bytes` to the
/// end of a new file as `block_bytes` writes all in flight at once, waits for them, then calls
/// `fdatasync`; the next cycle starts after the sync. Runs for `duration`. This is the ceiling
/// for a log that does not overlap a group's writes with the previous group's sync.
pub async fn group_commit_cycles(
    path: &Path,
    block_bytes: usize,
    group_bytes: u64,
    duration: Duration,
) -> Result<GroupCommits> {
    assert!(block_bytes > 0 && block_bytes % 4096 == 0);
    assert!(group_bytes > 0 && group_bytes % 4096 == 0);
    let file = Rc::new(
        DmaFile::create(path)
            .await
            .with_context(|| format!("create {}", path.display()))?,
    );
    // The group's buffers, prepared once: whole blocks, then the remainder.
    let mut sizes = vec![block_bytes; (group_bytes / block_bytes as u64) as usize];
    let rest = (group_bytes % block_bytes as u64) as usize;
    if rest > 0 {
        sizes.push(rest);
    }
    let bufs: Vec<Rc<DmaBuffer>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut b = file.alloc_dma_buffer(n);
            fill_pseudo_random(b.as_bytes_mut(), i as u64 + 11);
            Rc::new(b)
        })
        .collect();
    let mut out = GroupCommits {
        group_bytes,
        cycles: 0,
        elapsed: Duration::ZERO,
        write_us: latency_histogram(),
        sync_us: latency_histogram(),
    };
    let start = Instant::now();
    let mut pos = 0u64;
    let run = async {
        while start.elapsed() < duration {
            let t = Instant::now();
            let mut tasks = Vec::with_capacity(bufs.len());
            for b in &bufs {
                let f = file.clone();
                let b = b.clone();
                let at = pos;
                pos += b.len() as u64;
                tasks.push(glommio::spawn_local(async move {
                    let want = b.len();
                    let n = f.write_rc_at(b, at).await.context("direct write")?;
                    check_full(n, want)
                }));
            }
            let mut first_err = None;
            for task in tasks {
                if let Err(e) = task.await {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            let written = Instant::now();
            record_latency(&mut out.write_us, written - t);
            file.fdatasync().await.context("fdatasync")?;
            record_latency(&mut out.sync_us, written.elapsed());
            out.cycles += 1;
        }
        Ok(())
    }
    .await;
    out.elapsed = start.elapsed();
    let closed = close_and_remove(file, path).await;
    run?;
    closed?;
    Ok(out)
}

fn check_full(n: usize, want: usize) -> Result<()> {
    if n == want {
        Ok(())
    } else {
        Err(PerfError::msg(format!(
            "short direct write: {n} of {want} bytes"
        )))
    }
}

async fn close_and_remove(file: Rc<DmaFile>, path: &Path) -> Result<()> {
    file.close_rc()
        .await
        .with_context(|| format!("close {}", path.display()))?;
    std::fs::remove_file(path).with_context(|| format!("remove {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_fill_has_no_zero_words_and_covers_tails() {
        let mut b = vec![0u8; 4099];
        fill_pseudo_random(&mut b, 0);
        assert!(b.chunks(8).all(|c| c.iter().any(|&x| x != 0)));
        assert!(b[4096..].iter().any(|&x| x != 0));
    }
}
