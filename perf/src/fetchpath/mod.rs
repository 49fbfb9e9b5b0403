//! `quill-perf fetch-path`: how fast cold fetches reach a consumer, served the broker's way
//! (batch cache, else an O_DIRECT read copied into `Bytes`, then written to the socket) or with
//! `sendfile(2)` from the page cache on glommio's blocking thread pool.
//!
//! One glommio executor pinned to `--cpu` runs everything. Setup writes a partition log of
//! `--log-bytes` in one segment. Each variant then moves the whole log front to back, one fetch
//! of `--fetch-bytes` at a time, to a consumer: a plain std thread (unpinned) on a loopback TCP
//! socket that reads until EOF. `--warmup-rounds` and then `--runs` rounds run every variant in
//! turn; the table shows the median of each figure over the measured rounds. The warm-up round
//! exists because the first pass through fresh memory is slow on a VM that hands freed guest
//! memory back to its host (the first touch of each page then exits to the hypervisor).
//!
//! On such a VM (virtio-balloon free page reporting), memory freed in large blocks is returned to
//! the host after a couple of seconds; the page cache of a cold `sendfile` read grows into free
//! memory and may pay that first-touch cost (it shows as consumer CPU: the consumer's copy is the
//! first CPU access to each page), while the `dma` path keeps reusing a few read buffers.
//!
//! Variants:
//! - `raw-dma-read`, `raw-dma-read-qd1`: the disk's sequential O_DIRECT read rate (1 MiB aligned
//!   reads, 8 or 1 in flight), no socket.
//! - `socket-only`: one prebuilt buffer written over and over to the glommio socket: the loopback
//!   limit of one stream.
//! - `dma`: `PartitionLog::read` on a log reopened with an empty batch cache (every fetch reads the
//!   disk), each returned batch written with `write_all` to a glommio `TcpStream`.
//! - `sendfile`: the segment file opened buffered, its pages evicted with
//!   `posix_fadvise(DONTNEED)`, then per fetch one `spawn_blocking` call looping `sendfile(2)` into
//!   a blocking std `TcpStream`. Chunks are plain byte ranges of `--fetch-bytes`, not batch
//!   boundaries from the index as a broker would use, and nothing is CRC-checked.
//! - `sendfile-no-readahead`: `sendfile` with readahead turned off on its descriptor
//!   (`POSIX_FADV_RANDOM`), to tell the kernel's readahead apart from the saved copy.
//! - `sendfile-warm`: the same without the eviction (the page cache is warm from `sendfile`).
//! - `cache`: the log's batches appended again to a second log whose batch cache holds all of
//!   them, read the `dma` way: the hot path.

use std::cell::Cell;
use std::io::Read as _;
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt as _;
use glommio::io::DmaFile;
use glommio::net::TcpStream;
use hdrhistogram::Histogram;

use quill::disk::{
    system_clock, BatchCache, Durability, LogConfig, LogOptions, PartitionLog, SEGMENT_BYTES_LIMIT,
};
use quill::record::{BatchBuilder, BatchHeader};
use quill::types::{Epoch, Offset};

use crate::cputime::CpuTimes;
use crate::datadir::{self, RunDir};
use crate::error::{Context, PerfError, Result};
use crate::report::{latency_histogram, mb_per_s, record_latency, LatencySummary, Table};

mod paths;
use paths::*;

const MIB: usize = 1 << 20;
/// Batches appended per `append_many` call while writing the log.
const SETUP_GROUP_BATCHES: usize = 16;
/// Extra room in the `cache` variant's batch cache beyond the log itself.
const CACHE_SLACK_BYTES: u64 = 64 << 20;
/// The raw read baseline: 1 MiB aligned reads.
const RAW_READ_BLOCK_BYTES: usize = MIB;
const RAW_READ_ALIGN_BYTES: u64 = 4096;
/// The consumer's read buffer.
const SINK_BUFFER_BYTES: usize = MIB;
/// Warn when other processes use more than this fraction of a core during a variant.
const OTHER_LOAD_WARN: f64 = 0.2;

/// One way of moving the log to the consumer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Aligned O_DIRECT reads of the segment, 1 MiB, 8 in flight, no socket.
    RawDmaRead,
    /// The same with one read in flight, as one consumer's fetch loop issues them.
    RawDmaReadQd1,
    /// A prebuilt buffer written to the socket repeatedly: the loopback limit.
    SocketOnly,
    /// The broker's cold path: PartitionLog::read with an empty batch cache, then write_all.
    Dma,
    /// sendfile(2) of byte ranges of the segment, page cache evicted first, on the blocking pool.
    Sendfile,
    /// Sendfile with readahead off on the file descriptor (POSIX_FADV_RANDOM).
    SendfileNoReadahead,
    /// sendfile(2) with the page cache left warm.
    SendfileWarm,
    /// The broker's hot path: every batch in the batch cache.
    Cache,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::RawDmaRead => "raw-dma-read",
            Variant::RawDmaReadQd1 => "raw-dma-read-qd1",
            Variant::SocketOnly => "socket-only",
            Variant::Dma => "dma",
            Variant::Sendfile => "sendfile",
            Variant::SendfileNoReadahead => "sendfile-no-readahead",
            Variant::SendfileWarm => "sendfile-warm",
            Variant::Cache => "cache",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct FetchPathArgs {
    /// Data directory; must be on a real disk (not tmpfs: the point is cold reads).
    #[arg(long, default_value = "./quill-perf-data")]
    pub dir: PathBuf,
    /// Size of the partition log written and then read by each variant (one segment).
    #[arg(long, default_value_t = 1 << 30)]
    pub log_bytes: u64,
    /// Bytes per fetch (PartitionLog::read max_bytes, sendfile chunk, socket-only write).
    #[arg(long, default_value_t = MIB)]
    pub fetch_bytes: usize,
    /// Measured rounds of all variants; figures are medians over the rounds.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Rounds of all variants run first and left out of the figures (printed with the rest).
    #[arg(long, default_value_t = 1)]
    pub warmup_rounds: usize,
    /// Value bytes of each record.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_records: usize,
    /// Variants to run, in this order each round, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw-dma-read,raw-dma-read-qd1,socket-only,dma,sendfile-no-readahead,\
                         sendfile,sendfile-warm,cache"
    )]
    pub variants: Vec<Variant>,
    /// CPU the glommio executor (and its blocking thread pool) is pinned to.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also print the final table as markdown.
    #[arg(long)]
    pub markdown: bool,
    /// Keep the benchmark's files instead of removing them.
    #[arg(long)]
    pub keep: bool,
}

/// What one variant measured in one round.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// Bytes delivered to the consumer (read, for the raw variants).
    bytes: u64,
    /// Fetches (reads, for the raw variants; writes for socket-only).
    fetches: u64,
    /// From the first fetch starting to the consumer's last byte (the last read, raw variants).
    elapsed: Duration,
    /// Per fetch: from starting its read to its last byte handed to the socket.
    latency: LatencySummary,
    /// CPU time of the executor thread.
    exec_cpu: Duration,
    /// CPU time spent inside the blocking-pool calls (sendfile variants).
    blocking_cpu: Duration,
    /// CPU time of the consumer thread.
    sink_cpu: Duration,
    /// CPU time of the whole process (executor, blocking pool, consumer, io_uring workers).
    process_cpu: Duration,
    /// Other processes' CPU, as a share of one core.
    others_busy: f64,
    /// Bytes the data directory's block device read (None if its counters are unreadable).
    disk_read_bytes: Option<u64>,
    /// Share of the segment's pages in the page cache when the variant started (sendfile only).
    resident_before: Option<f64>,
}

impl Sample {
    fn mb_per_s(&self) -> f64 {
        mb_per_s(self.bytes, self.elapsed)
    }

    fn per_gb(&self, d: Duration) -> f64 {
        d.as_secs_f64() / (self.bytes as f64 / 1e9)
    }

    /// The process's CPU less the consumer's: what the serving side cost.
    fn server_cpu(&self) -> Duration {
        self.process_cpu.saturating_sub(self.sink_cpu)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bytes": self.bytes,
            "fetches": self.fetches,
            "seconds": self.elapsed.as_secs_f64(),
            "mb_per_s": self.mb_per_s(),
            "latency": self.latency.to_json(),
            "executor_cpu_s": self.exec_cpu.as_secs_f64(),
            "blocking_pool_cpu_s": self.blocking_cpu.as_secs_f64(),
            "consumer_cpu_s": self.sink_cpu.as_secs_f64(),
            "process_cpu_s": self.process_cpu.as_secs_f64(),
            "other_processes_cpu": self.others_busy,
            "disk_read_bytes": self.disk_read_bytes,
            "page_cache_resident_before": self.resident_before,
        })
    }
}

/// The medians of one variant's figures over the rounds.
struct Medians {
    mb_per_s: f64,
    mb_per_s_min: f64,
    mb_per_s_max: f64,
    /// The most other processes used during one of the rounds, as a share of one core.
    others_max: f64,
    bytes_per_fetch: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    exec_s_per_gb: f64,
    blocking_s_per_gb: f64,
    consumer_s_per_gb: f64,
    server_s_per_gb: f64,
    disk_read_per_byte: Option<f64>,
}

impl Medians {
    fn of(samples: &[Sample]) -> Medians {
        let m = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let disk: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.disk_read_bytes.map(|d| d as f64 / s.bytes as f64))
            .collect();
        let rates = samples.iter().map(Sample::mb_per_s);
        Medians {
            mb_per_s: m(&|s| s.mb_per_s()),
            mb_per_s_min: rates.clone().fold(f64::INFINITY, f64::min),
            mb_per_s_max: rates.fold(0.0, f64::max),
            others_max: samples.iter().map(|s| s.others_busy).fold(0.0, f64::max),
            bytes_per_fetch: m(&|s| s.bytes as f64 / s.fetches.max(1) as f64),
            p50_us: m(&|s| s.latency.p50_us as f64),
            p99_us: m(&|s| s.latency.p99_us as f64),
            p999_us: m(&|s| s.latency.p999_us as f64),
            exec_s_per_gb: m(&|s| s.per_gb(s.exec_cpu)),
            blocking_s_per_gb: m(&|s| s.per_gb(s.blocking_cpu)),
            consumer_s_per_gb: m(&|s| s.per_gb(s.sink_cpu)),
            server_s_per_gb: m(&|s| s.per_gb(s.server_cpu())),
            disk_read_per_byte: (disk.len() == samples.len()).then(|| median(disk)),
        }
    }
}

/// The middle value; the mean of the two middle values for an even count.
fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of no samples");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(args: FetchPathArgs) -> Result<()> {
    check_args(&args)?;
    let run_dir = RunDir::create(&args.dir)?;
    if let Some(fs) = datadir::memory_fs(run_dir.path())? {
        let _ = run_dir.remove();
        return Err(PerfError::msg(format!(
            "{} is on {fs}: there are no cold reads in memory. Use --dir on a real disk.",
            args.dir.display()
        )));
    }
    out!(
        "quill-perf fetch-path: data in {}",
        run_dir.path().display()
    );
    let outcome = crate::run_on_cpu(args.cpu, bench(&args, &run_dir));
    let cleanup = if args.keep {
        out!("kept {}", run_dir.path().display());
        Ok(())
    } else {
        run_dir.remove()
    };
    let report = outcome?;
    cleanup?;
    out!();
    let table = report.table();
    out!("{}", table.render());
    if args.markdown {
        out!("{}", table.render_markdown());
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report.to_json(&args)).context("encode JSON results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
        out!("results written to {}", path.display());
    }
    Ok(())
}

fn check_args(args: &FetchPathArgs) -> Result<()> {
    if args.runs == 0 {
        return Err(PerfError::msg("--runs must be positive"));
    }
    if args.fetch_bytes == 0 {
        return Err(PerfError::msg("--fetch-bytes must be positive"));
    }
    if args.record_bytes == 0 || args.batch_records == 0 {
        return Err(PerfError::msg(
            "--record-bytes and --batch-records must be positive",
        ));
    }
    if args.variants.is_empty() {
        return Err(PerfError::msg("--variants is empty"));
    }
    if let Some(v) = args
        .variants
        .iter()
        .enumerate()
        .find(|(i, v)| args.variants[..*i].contains(v))
        .map(|(_, v)| v)
    {
        return Err(PerfError::msg(format!(
            "--variants names {} twice",
            v.name()
        )));
    }
    // The log must fit one segment, so sendfile can serve it from one file.
    if args.log_bytes + (4 * MIB) as u64 > SEGMENT_BYTES_LIMIT {
        return Err(PerfError::msg(format!(
            "--log-bytes must leave 4 MiB below the segment limit {SEGMENT_BYTES_LIMIT}"
        )));
    }
    Ok(())
}

/// Everything one run measured.
struct Report {
    log_bytes: u64,
    batch_bytes: usize,
    batches: u64,
    /// Samples per variant, in the order of `--variants`.
    samples: Vec<(Variant, Vec<Sample>)>,
}

impl Report {
    fn table(&self) -> Table {
        let mut t = Table::new(&[
            "variant",
            "MB/s",
            "MB/s range",
            "KiB/fetch",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "exec CPU s/GB",
            "blocking CPU s/GB",
            "server CPU s/GB",
            "consumer CPU s/GB",
            "disk read / sent",
            "others max",
        ]);
        for (v, samples) in &self.samples {
            let m = Medians::of(samples);
            t.row(vec![
                v.name().to_string(),
                format!("{:.1}", m.mb_per_s),
                format!("{:.1}-{:.1}", m.mb_per_s_min, m.mb_per_s_max),
                format!("{:.0}", m.bytes_per_fetch / 1024.0),
                format!("{:.0}", m.p50_us),
                format!("{:.0}", m.p99_us),
                format!("{:.0}", m.p999_us),
                format!("{:.3}", m.exec_s_per_gb),
                format!("{:.3}", m.blocking_s_per_gb),
                format!("{:.3}", m.server_s_per_gb),
                format!("{:.3}", m.consumer_s_per_gb),
                m.disk_read_per_byte
                    .map_or("?".into(), |d| format!("{d:.3}")),
                format!("{:.0}%", 100.0 * m.others_max),
            ]);
        }
        t
    }

    fn to_json(&self, args: &FetchPathArgs) -> serde_json::Value {
        serde_json::json!({
            "benchmark": "fetch-path",
            "unix_time_s": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "settings": {
                "log_bytes_asked": args.log_bytes,
                "log_bytes": self.log_bytes,
                "batch_bytes": self.batch_bytes,
                "batches": self.batches,
                "record_bytes": args.record_bytes,
                "batch_records": args.batch_records,
                "fetch_bytes": args.fetch_bytes,
                "runs": args.runs,
                "warmup_rounds": args.warmup_rounds,
                "cpu": args.cpu,
            },
            "variants": self.samples.iter().map(|(v, s)| {
                let m = Medians::of(s);
                serde_json::json!({
                    "variant": v.name(),
                    "median": {
                        "mb_per_s": m.mb_per_s,
                        "mb_per_s_min": m.mb_per_s_min,
                        "mb_per_s_max": m.mb_per_s_max,
                        "other_processes_cpu_max": m.others_max,
                        "bytes_per_fetch": m.bytes_per_fetch,
                        "p50_us": m.p50_us,
                        "p99_us": m.p99_us,
                        "p99_9_us": m.p999_us,
                        "executor_cpu_s_per_gb": m.exec_s_per_gb,
                        "blocking_pool_cpu_s_per_gb": m.blocking_s_per_gb,
                        "server_cpu_s_per_gb": m.server_s_per_gb,
                        "consumer_cpu_s_per_gb": m.consumer_s_per_gb,
                        "disk_read_per_byte_sent": m.disk_read_per_byte,
                    },
                    "runs": s.iter().map(Sample::to_json).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
        })
    }
}

/// The logs and files the variants read.
struct Fixture {
    /// The log reopened with an empty batch cache.
    cold: PartitionLog,
    cold_cache: Rc<BatchCache>,
    /// The same batches in a log whose cache holds them all (only if `cache` runs).
    hot: Option<(PartitionLog, Rc<BatchCache>)>,
    segment: PathBuf,
    log_bytes: u64,
    device: Option<PathBuf>,
}

async fn bench(args: &FetchPathArgs, run_dir: &RunDir) -> Result<Report> {
    // glommio decides once per device, on the first DMA file opened, whether reads can be polled;
    // an empty file there makes every later read fail. Prime it before any log is created.
    quill::disk::probe::prime(run_dir.path())
        .await
        .context("prime the direct-I/O probe")?;
    let template = build_batch(args.record_bytes, args.batch_records);
    let batches = (args.log_bytes / template.len() as u64).max(1);
    let config = LogConfig {
        segment_bytes: (1u64 << 30).max(args.log_bytes + (4 * MIB) as u64),
        batch_bytes_max: LogConfig::default().batch_bytes_max.max(template.len()),
        ..LogConfig::default()
    };
    config
        .validate()
        .map_err(|e| PerfError::new("invalid log settings", e))?;
    let fx = setup(args, run_dir, &config, &template, batches).await?;
    out!(
        "rounds: {} warm-up + {} measured, fetches of {} B; consumer: std thread on loopback \
         TCP, unpinned",
        args.warmup_rounds,
        args.runs,
        args.fetch_bytes
    );

    let mut samples: Vec<(Variant, Vec<Sample>)> =
        args.variants.iter().map(|&v| (v, Vec::new())).collect();
    for round in 1..=args.warmup_rounds + args.runs {
        let warmup = round <= args.warmup_rounds;
        if warmup {
            out!("warm-up round {round} (not counted):");
        } else {
            out!("round {}:", round - args.warmup_rounds);
        }
        for (v, list) in samples.iter_mut() {
            let cpu0 = CpuTimes::now();
            let t0 = Instant::now();
            let mut s = run_variant(*v, args, &fx).await?;
            let busy = CpuTimes::now().busy_since(&cpu0, t0.elapsed());
            s.others_busy = busy.others;
            print_sample(*v, &s);
            if warmup {
                continue;
            }
            if s.others_busy > OTHER_LOAD_WARN {
                eprintln!(
                    "warning: other processes used {:.0}% of a core during {} (round {}); \
                     its figures are disturbed",
                    100.0 * s.others_busy,
                    v.name(),
                    round - args.warmup_rounds
                );
            }
            list.push(s);
        }
    }

    fx.cold.close().await.context("close the cold log")?;
    if let Some((hot, _)) = fx.hot {
        hot.close().await.context("close the cached log")?;
    }
    Ok(Report {
        log_bytes: fx.log_bytes,
        batch_bytes: template.len(),
        batches,
        samples,
    })
}

/// Writes the log, reopens it with an empty cache, and builds the cached copy if needed.
async fn setup(
    args: &FetchPathArgs,
    run_dir: &RunDir,
    config: &LogConfig,
    template: &BytesMut,
    batches: u64,
) -> Result<Fixture> {
    let dir = run_dir.case_dir("log")?;
    out!(
        "setup: writing {batches} batches of {} records x {} B ({} B each) with O_DIRECT",
        args.batch_records,
        args.record_bytes,
        template.len()
    );
    let t = Instant::now();
    let (log, _) = PartitionLog::open(&dir, options(config, 0))
        .await
        .with_context(|| format!("open log in {}", dir.display()))?;
    let mut left = batches;
    while left > 0 {
        let n = left.min(SETUP_GROUP_BATCHES as u64);
        let group = (0..n).map(|_| BytesMut::clone(template)).collect();
        log.append_many(group, Epoch(0), Durability::Interval)
            .await
            .context("append")?;
        left -= n;
    }
    if log.segment_bases().len() != 1 {
        return Err(PerfError::msg("the log rolled into a second segment"));
    }
    log.close().await.context("close the log")?;
    let segment = segment_file(&dir)?;
    let log_bytes = std::fs::metadata(&segment)
        .with_context(|| format!("stat {}", segment.display()))?
        .len();
    if log_bytes != batches * template.len() as u64 {
        return Err(PerfError::msg(format!(
            "segment holds {log_bytes} bytes, expected {}",
            batches * template.len() as u64
        )));
    }
    out!(
        "  {log_bytes} B in {} ({:.3} s)",
        segment.display(),
        t.elapsed().as_secs_f64()
    );

    let cold_cache = Rc::new(BatchCache::new(0));
    let (cold, _) = PartitionLog::open(
        &dir,
        LogOptions {
            cache: cold_cache.clone(),
            files: Rc::new(quill::disk::FileCache::new(256)),
            ..options(config, 0)
        },
    )
    .await
    .context("reopen the log")?;

    let hot = if args.variants.contains(&Variant::Cache) {
        let t = Instant::now();
        let hot_dir = run_dir.case_dir("cached")?;
        let cache = Rc::new(BatchCache::new((log_bytes + CACHE_SLACK_BYTES) as usize));
        let (hot, _) = PartitionLog::open(
            &hot_dir,
            LogOptions {
                cache: cache.clone(),
                files: Rc::new(quill::disk::FileCache::new(256)),
                ..options(config, 0)
            },
        )
        .await
        .context("open the cached log")?;
        let end = cold.log_end_offset();
        let mut from = Offset(0);
        while from < end {
            let r = cold.read(from, args.fetch_bytes).await.context("read")?;
            from = next_offset(&r.batches)?;
            let group = r.batches.iter().map(|b| BytesMut::from(&b[..])).collect();
            hot.append_many(group, Epoch(0), Durability::Sync)
                .await
                .context("append to the cached log")?;
        }
        let st = cache.stats();
        if st.batches as u64 != batches || hot.high_watermark() != end {
            return Err(PerfError::msg(format!(
                "cached log holds {} of {batches} batches in its cache, high watermark {} of {}",
                st.batches,
                hot.high_watermark().0,
                end.0
            )));
        }
        out!(
            "  cached copy: {} batches, {} B in the batch cache ({:.3} s)",
            st.batches,
            st.bytes,
            t.elapsed().as_secs_f64()
        );
        Some((hot, cache))
    } else {
        None
    };
    let device = block_device_stat(run_dir.path());
    if device.is_none() {
        out!("  (no block-device counters for the data directory: disk bytes not reported)");
    }
    Ok(Fixture {
        cold,
        cold_cache,
        hot,
        segment,
        log_bytes,
        device,
    })
}

fn options(config: &LogConfig, cache_bytes: usize) -> LogOptions {
    LogOptions {
        config: config.clone(),
        cache: Rc::new(BatchCache::new(cache_bytes)),
        files: Rc::new(quill::disk::FileCache::new(256)),
        clock: system_clock(),
    }
}

/// The one `.log` file of a log directory.
fn segment_file(dir: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let p = e.with_context(|| format!("list {}", dir.display()))?.path();
        if p.extension().is_some_and(|x| x == "log") {
            found.push(p);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(PerfError::msg(format!(
            "expected one segment file in {}, found {n}",
            dir.display()
        ))),
    }
}

/// An uncompressed batch of `records` records of `record_bytes` pseudo-random value bytes.
fn build_batch(record_bytes: usize, records: usize) -> BytesMut {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut value = vec![0u8; record_bytes];
    let mut b = BatchBuilder::with_capacity(now_ms, records * (record_bytes + 16) + 64);
    for i in 0..records {
        crate::rawdisk::fill_pseudo_random(&mut value, i as u64 + 1);
        b.push(now_ms, None, Some(&value), &[]);
    }
    b.finish()
}

/// The offset after the last of `batches`.
fn next_offset(batches: &[bytes::Bytes]) -> Result<Offset> {
    let last = batches
        .last()
        .ok_or_else(|| PerfError::msg("a read below the log end returned no batch"))?;
    let h = BatchHeader::parse(last).map_err(|e| PerfError::new("parse a read batch", e))?;
    Ok(Offset(h.last_offset() as u64 + 1))
}

async fn run_variant(v: Variant, args: &FetchPathArgs, fx: &Fixture) -> Result<Sample> {
    match v {
        Variant::RawDmaRead => raw_read(fx, 8).await,
        Variant::RawDmaReadQd1 => raw_read(fx, 1).await,
        Variant::SocketOnly => socket_only(fx, args.fetch_bytes).await,
        Variant::Dma => {
            let hits = fx.cold_cache.stats().hits;
            let s = log_fetches(&fx.cold, fx, args.fetch_bytes).await?;
            if fx.cold_cache.stats().hits != hits {
                return Err(PerfError::msg("the dma variant was served from the cache"));
            }
            Ok(s)
        }
        Variant::Sendfile => sendfile_fetches(fx, args.fetch_bytes, PageCache::Evict).await,
        Variant::SendfileNoReadahead => {
            sendfile_fetches(fx, args.fetch_bytes, PageCache::EvictNoReadahead).await
        }
        Variant::SendfileWarm => sendfile_fetches(fx, args.fetch_bytes, PageCache::Keep).await,
        Variant::Cache => {
            let (log, cache) = fx
                .hot
                .as_ref()
                .expect("the cached log is built when cache runs");
            let misses = cache.stats().misses;
            let s = log_fetches(log, fx, args.fetch_bytes).await?;
            if cache.stats().misses != misses {
                return Err(PerfError::msg("the cache variant missed the cache"));
            }
            Ok(s)
        }
    }
}

fn print_sample(v: Variant, s: &Sample) {
    let resident = s.resident_before.map_or(String::new(), |r| {
        format!(", {:.1}% cached before", 100.0 * r)
    });
    let disk = s.disk_read_bytes.map_or(String::new(), |d| {
        format!(", disk read {:.1} MB", d as f64 / 1e6)
    });
    out!(
        "  {:<17} {:>8.1} MB/s, {} B in {:.3} s, {} fetches{resident}{disk}",
        v.name(),
        s.mb_per_s(),
        s.bytes,
        s.elapsed.as_secs_f64(),
        s.fetches
    );
    out!("  {:<17} per fetch {}", "", s.latency.line());
    out!(
        "  {:<17} CPU s/GB: executor {:.3}, blocking pool {:.3}, consumer {:.3}, process {:.3}; \
         other processes {:.0}% of a core",
        "",
        s.per_gb(s.exec_cpu),
        s.per_gb(s.blocking_cpu),
        s.per_gb(s.sink_cpu),
        s.per_gb(s.process_cpu),
        100.0 * s.others_busy
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn batch_template_parses_with_its_record_count() {
        let b = build_batch(1024, 64);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.last_offset(), 63);
        assert_eq!(next_offset(&[b.freeze()]).unwrap(), Offset(64));
    }
}
