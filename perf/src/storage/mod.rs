//! `quill-perf storage`: how fast one `quill::disk::PartitionLog` acknowledges appends, against
//! the machine's raw direct-write throughput.
//!
//! Everything runs on one glommio executor pinned to `--cpu`: first the raw baseline
//! ([`crate::rawdisk`]), then each case on a fresh log in its own folder. A case runs C appender
//! tasks in a closed loop (append, wait for the acknowledgement, append again) for
//! `--warmup-seconds` plus `--seconds`; only appends acknowledged inside the measured window count.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;

use quill::disk::{
    system_clock, BatchCache, Durability, LogConfig, LogOptions, LogStats, PartitionLog,
};
use quill::record::BatchBuilder;
use quill::types::Epoch;

use crate::cputime::{CpuBusy, CpuTimes};
use crate::datadir::{self, RunDir};
use crate::error::{Context, PerfError, Result};
use crate::rawdisk::{self, Throughput};
use crate::report::{latency_histogram, mb_per_s, record_latency, LatencySummary, Table};

mod raw;

use raw::{measure_raw, RawResults};

const MIB: usize = 1 << 20;

#[derive(clap::Args, Debug, Clone)]
pub struct StorageArgs {
    /// Data directory; must be on a real disk (O_DIRECT does nothing on tmpfs).
    #[arg(long, default_value = "./quill-perf-data")]
    pub dir: PathBuf,
    /// Measured seconds per case.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Seconds run before the measured window of each case, excluded from the figures.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_seconds: f64,
    /// Value bytes of each record.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Record value bytes per batch: each batch holds batch_bytes / record_bytes records.
    #[arg(long, default_value_t = 65536)]
    pub batch_bytes: usize,
    /// Concurrent appenders of the sync-mode cases, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub appenders: Vec<usize>,
    /// Partition logs each case appends to, on the one executor, sharing its batch cache (as the
    /// partitions of a shard do); the appenders are dealt out among them round robin.
    #[arg(long, default_value_t = 1)]
    pub partitions: usize,
    /// Concurrent appenders of the interval-mode cases, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub interval_appenders: Vec<usize>,
    /// Durability modes to run, comma separated: sync, interval.
    #[arg(long, value_delimiter = ',', default_value = "sync,interval")]
    pub modes: Vec<Durability>,
    /// In interval mode, the longest time between two fdatasyncs (LogConfig::flush_ms).
    #[arg(long, default_value_t = 100)]
    pub flush_ms: u64,
    /// LogConfig::segment_bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub segment_bytes: u64,
    /// LogConfig::write_buffer_bytes (size of one direct-I/O staging buffer).
    #[arg(long, default_value_t = LogConfig::default().write_buffer_bytes)]
    pub write_buffer_bytes: usize,
    /// LogConfig::pending_bytes_max (appends wait while this many bytes are staged).
    #[arg(long, default_value_t = LogConfig::default().pending_bytes_max)]
    pub pending_bytes_max: usize,
    /// Size of the shard's batch cache.
    #[arg(long, default_value_t = 64 * MIB)]
    pub batch_cache_bytes: usize,
    /// Bytes written by the raw direct-write baseline (it stops earlier after --raw-seconds).
    #[arg(long, default_value_t = 4 << 30)]
    pub raw_bytes: u64,
    /// Longest time the raw direct-write baseline runs.
    #[arg(long, default_value_t = 3.0)]
    pub raw_seconds: f64,
    /// Also measure raw writes into a fallocated file and overwrites of a written file, for
    /// context: the file system allocates less or nothing there, unlike in a growing segment.
    #[arg(long)]
    pub raw_context: bool,
    /// Also model the log's commit cycle on the raw disk (write this many bytes as 1 MiB writes
    /// all in flight, then fdatasync, repeat) for each size given, comma separated; for analysis.
    #[arg(long, value_delimiter = ',')]
    pub raw_group_commit_bytes: Vec<u64>,
    /// Seconds of the raw 4 KiB write + fdatasync latency loop.
    #[arg(long, default_value_t = 2.0)]
    pub raw_sync_seconds: f64,
    /// CPU the glommio executor is pinned to.
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

/// The raw baseline: 1 MiB writes, 8 in flight.
pub(super) const RAW_BLOCK_BYTES: usize = MIB;
pub(super) const RAW_QUEUE_DEPTH: usize = 8;
/// Block of the raw write + fdatasync latency loop.
pub(super) const RAW_SYNC_BLOCK_BYTES: usize = 4096;

/// Warn when other processes use more than this fraction of a core during a case.
const OTHER_LOAD_WARN: f64 = 0.2;

/// One benchmark case: a durability mode and a number of concurrent appenders.
#[derive(Clone, Copy, Debug)]
struct Case {
    mode: Durability,
    appenders: usize,
    partitions: usize,
}

impl Case {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            Durability::Sync => "sync",
            Durability::Interval => "interval",
        }
    }

    fn name(&self) -> String {
        if self.partitions == 1 {
            format!("{} x{}", self.mode_name(), self.appenders)
        } else {
            format!(
                "{} x{} {}p",
                self.mode_name(),
                self.appenders,
                self.partitions
            )
        }
    }

    fn dir_name(&self) -> String {
        format!("{}-{}", self.mode_name(), self.appenders)
    }
}

/// What one case measured, over its measured window only.
struct CaseResult {
    case: Case,
    window: Duration,
    appends: u64,
    batch_bytes: u64,
    records: u64,
    latency: LatencySummary,
    fdatasyncs: u64,
    tail_writes: u64,
    /// CPU busy during the window: the executor thread, and the process with its io_uring workers.
    cpu: CpuBusy,
    raw_mb_per_s: f64,
}

impl CaseResult {
    fn mb_per_s(&self) -> f64 {
        mb_per_s(self.batch_bytes, self.window)
    }

    fn per_s(&self, n: u64) -> f64 {
        n as f64 / self.window.as_secs_f64()
    }

    fn fraction_of_raw(&self) -> f64 {
        if self.raw_mb_per_s > 0.0 {
            self.mb_per_s() / self.raw_mb_per_s
        } else {
            0.0
        }
    }

    /// Acknowledged KiB per `fdatasync`: how many appends one sync covered.
    fn kib_per_sync(&self) -> f64 {
        if self.fdatasyncs == 0 {
            0.0
        } else {
            self.batch_bytes as f64 / 1024.0 / self.fdatasyncs as f64
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.case.mode_name(),
            "appenders": self.case.appenders,
            "partitions": self.case.partitions,
            "window_seconds": self.window.as_secs_f64(),
            "appends": self.appends,
            "batch_bytes": self.batch_bytes,
            "records": self.records,
            "mb_per_s": self.mb_per_s(),
            "appends_per_s": self.per_s(self.appends),
            "records_per_s": self.per_s(self.records),
            "latency": self.latency.to_json(),
            "fdatasyncs": self.fdatasyncs,
            "tail_writes": self.tail_writes,
            "kib_per_fdatasync": self.kib_per_sync(),
            "executor_cpu": self.cpu.thread,
            "process_cpu": self.cpu.process,
            "other_processes_cpu": self.cpu.others,
            "fraction_of_raw": self.fraction_of_raw(),
        })
    }
}

/// Checked settings shared by every case.
struct Plan {
    cases: Vec<Case>,
    warmup: Duration,
    measured: Duration,
    config: LogConfig,
    batch_cache_bytes: usize,
    /// The batch every append copies.
    template: Rc<BytesMut>,
    records_per_batch: u64,
}

pub fn run(args: StorageArgs) -> Result<()> {
    let records_per_batch = check_args(&args)?;
    let plan = build_plan(&args, records_per_batch)?;
    let run_dir = RunDir::create(&args.dir)?;
    if let Some(fs) = datadir::memory_fs(run_dir.path())? {
        eprintln!(
            "warning: {} is on {fs}: O_DIRECT is silently disabled there, so these figures \
             measure memory, not a disk. Use --dir on a real disk.",
            run_dir.path().display()
        );
    }
    out!("quill-perf storage: data in {}", run_dir.path().display());
    let outcome = crate::run_on_cpu(args.cpu, bench(&args, &plan, &run_dir));
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

/// Validates the flags; returns the number of records per batch.
fn check_args(args: &StorageArgs) -> Result<u64> {
    let positive = |v: f64, name: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(PerfError::msg(format!(
                "--{name} must be positive, got {v}"
            )))
        }
    };
    positive(args.seconds, "seconds")?;
    positive(args.raw_seconds, "raw-seconds")?;
    positive(args.raw_sync_seconds, "raw-sync-seconds")?;
    if !(args.warmup_seconds.is_finite() && args.warmup_seconds >= 0.0) {
        return Err(PerfError::msg("--warmup-seconds must be zero or positive"));
    }
    if args.record_bytes == 0 || args.batch_bytes < args.record_bytes {
        return Err(PerfError::msg(format!(
            "--record-bytes must be positive and at most --batch-bytes ({}), got {}",
            args.batch_bytes, args.record_bytes
        )));
    }
    if args.appenders.contains(&0) || args.interval_appenders.contains(&0) {
        return Err(PerfError::msg("appender counts must be positive"));
    }
    if args.partitions == 0 {
        return Err(PerfError::msg("--partitions must be positive"));
    }
    if let Some(g) = args
        .raw_group_commit_bytes
        .iter()
        .find(|&&g| g == 0 || g % 4096 != 0)
    {
        return Err(PerfError::msg(format!(
            "--raw-group-commit-bytes must be positive multiples of 4096, got {g}"
        )));
    }
    if args.raw_bytes < RAW_BLOCK_BYTES as u64 {
        return Err(PerfError::msg(format!(
            "--raw-bytes must be at least {RAW_BLOCK_BYTES}"
        )));
    }
    Ok((args.batch_bytes / args.record_bytes) as u64)
}

fn build_plan(args: &StorageArgs, records_per_batch: u64) -> Result<Plan> {
    let mut cases = Vec::new();
    for mode in dedup(&args.modes) {
        let counts = match mode {
            Durability::Sync => &args.appenders,
            Durability::Interval => &args.interval_appenders,
        };
        cases.extend(counts.iter().map(|&appenders| Case {
            mode,
            appenders,
            partitions: args.partitions,
        }));
    }
    if cases.is_empty() {
        return Err(PerfError::msg(
            "no case to run: --modes and appender lists are empty",
        ));
    }
    let template = build_batch(args.record_bytes, records_per_batch as usize);
    let defaults = LogConfig::default();
    let config = LogConfig {
        segment_bytes: args.segment_bytes,
        durability: Durability::Sync,
        flush_ms: args.flush_ms,
        write_buffer_bytes: args.write_buffer_bytes,
        pending_bytes_max: args.pending_bytes_max,
        // A batch larger than the default limit is the user's choice, not an error.
        batch_bytes_max: defaults.batch_bytes_max.max(template.len()),
        ..defaults
    };
    for mode in dedup(&args.modes) {
        LogConfig {
            durability: mode,
            ..config.clone()
        }
        .validate()
        .map_err(|e| PerfError::new("invalid log settings", e))?;
    }
    Ok(Plan {
        cases,
        warmup: Duration::from_secs_f64(args.warmup_seconds),
        measured: Duration::from_secs_f64(args.seconds),
        config,
        batch_cache_bytes: args.batch_cache_bytes,
        template: Rc::new(template),
        records_per_batch,
    })
}

fn dedup(modes: &[Durability]) -> Vec<Durability> {
    let mut out: Vec<Durability> = Vec::new();
    for &m in modes {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// An uncompressed batch of `records` records with `record_bytes` pseudo-random value bytes each
/// and no key, as a producer would send it.
fn build_batch(record_bytes: usize, records: usize) -> BytesMut {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut value = vec![0u8; record_bytes];
    let mut b = BatchBuilder::with_capacity(now_ms, records * (record_bytes + 16) + 64);
    for i in 0..records {
        rawdisk::fill_pseudo_random(&mut value, i as u64 + 1);
        b.push(now_ms, None, Some(&value), &[]);
    }
    b.finish()
}

/// Everything one run measured.
struct Report {
    raw: RawResults,
    batch_total_bytes: usize,
    records_per_batch: u64,
    cases: Vec<CaseResult>,
}

impl Report {
    fn table(&self) -> Table {
        let mut t = Table::new(&[
            "case",
            "MB/s",
            "% raw",
            "appends/s",
            "records/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "fdatasyncs",
            "tail writes",
            "KiB/sync",
            "exec CPU",
        ]);
        for r in &self.cases {
            t.row(vec![
                r.case.name(),
                format!("{:.1}", r.mb_per_s()),
                format!("{:.1}%", 100.0 * r.fraction_of_raw()),
                format!("{:.0}", r.per_s(r.appends)),
                format!("{:.0}", r.per_s(r.records)),
                r.latency.p50_us.to_string(),
                r.latency.p99_us.to_string(),
                r.latency.p999_us.to_string(),
                r.latency.max_us.to_string(),
                r.fdatasyncs.to_string(),
                r.tail_writes.to_string(),
                format!("{:.0}", r.kib_per_sync()),
                format!("{:.0}%", 100.0 * r.cpu.thread),
            ]);
        }
        t
    }

    fn to_json(&self, args: &StorageArgs) -> serde_json::Value {
        serde_json::json!({
            "benchmark": "storage",
            "unix_time_s": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "settings": {
                "seconds": args.seconds,
                "warmup_seconds": args.warmup_seconds,
                "record_bytes": args.record_bytes,
                "records_per_batch": self.records_per_batch,
                "batch_total_bytes": self.batch_total_bytes,
                "flush_ms": args.flush_ms,
                "segment_bytes": args.segment_bytes,
                "write_buffer_bytes": args.write_buffer_bytes,
                "pending_bytes_max": args.pending_bytes_max,
                "batch_cache_bytes": args.batch_cache_bytes,
                "cpu": args.cpu,
            },
            "raw_direct_write": {
                "block_bytes": RAW_BLOCK_BYTES,
                "queue_depth": RAW_QUEUE_DEPTH,
                "result": self.raw.reference.to_json(),
                "context": self.raw.context,
            },
            "raw_group_commit_cycles": self.raw.group_models,
            "raw_sync_write_latency": {
                "block_bytes": RAW_SYNC_BLOCK_BYTES,
                "latency": self.raw.sync_latency.to_json(),
            },
            "cases": self.cases.iter().map(CaseResult::to_json).collect::<Vec<_>>(),
        })
    }
}

async fn bench(args: &StorageArgs, plan: &Plan, run_dir: &RunDir) -> Result<Report> {
    // glommio decides once per device, on the first DMA file opened, whether reads can be polled;
    // an empty file there makes every later read fail. Prime it before the raw files are created.
    quill::disk::probe::prime(run_dir.path())
        .await
        .context("prime the direct-I/O probe")?;
    let raw = measure_raw(args, run_dir).await?;
    let cases = run_cases(args, plan, run_dir, raw.reference.mb_per_s()).await?;
    Ok(Report {
        raw,
        batch_total_bytes: plan.template.len(),
        records_per_batch: plan.records_per_batch,
        cases,
    })
}

/// Every case of the plan, one after another, each printed as it completes.
async fn run_cases(
    args: &StorageArgs,
    plan: &Plan,
    run_dir: &RunDir,
    raw_mb_per_s: f64,
) -> Result<Vec<CaseResult>> {
    out!(
        "log cases: batches of {} records x {} B ({} B with headers), {} s warm-up + {} s measured",
        plan.records_per_batch,
        args.record_bytes,
        plan.template.len(),
        args.warmup_seconds,
        args.seconds
    );
    let mut cases = Vec::new();
    for &case in &plan.cases {
        let dir = run_dir.case_dir(&case.dir_name())?;
        let r = run_case(case, &dir, plan, raw_mb_per_s).await?;
        out!(
            "  {:<13} {:>8.1} MB/s ({:.1}% of raw), {:.0} appends/s, {:.0} records/s",
            r.case.name(),
            r.mb_per_s(),
            100.0 * r.fraction_of_raw(),
            r.per_s(r.appends),
            r.per_s(r.records)
        );
        out!("  {:<13} latency {}", "", r.latency.line());
        out!(
            "  {:<13} {} fdatasyncs ({:.0} KiB acknowledged per fdatasync), {} tail writes",
            "",
            r.fdatasyncs,
            r.kib_per_sync(),
            r.tail_writes,
        );
        out!(
            "  {:<13} CPU busy (of one core): executor thread {:.0}%, whole process {:.0}%, \
             other processes {:.0}%",
            "",
            100.0 * r.cpu.thread,
            100.0 * r.cpu.process,
            100.0 * r.cpu.others
        );
        if r.cpu.others > OTHER_LOAD_WARN {
            eprintln!(
                "warning: other processes used {:.0}% of a core during {}; its figures are \
                 disturbed",
                100.0 * r.cpu.others,
                r.case.name()
            );
        }
        if !args.keep {
            datadir::remove_case_dir(&dir)?;
        }
        cases.push(r);
    }
    Ok(cases)
}

fn throughput_line(t: &Throughput) -> String {
    format!(
        "{:.1} MB/s ({} MiB in {:.3} s of writes + {:.1} ms fdatasync)",
        t.mb_per_s(),
        t.bytes >> 20,
        t.write_elapsed.as_secs_f64(),
        t.sync_elapsed.as_secs_f64() * 1000.0
    )
}

/// What one appender task saw inside the measured window.
struct Tally {
    latency: Histogram<u64>,
    appends: u64,
    batch_bytes: u64,
}

async fn run_case(case: Case, dir: &Path, plan: &Plan, raw_mb_per_s: f64) -> Result<CaseResult> {
    let cache = Rc::new(BatchCache::new(plan.batch_cache_bytes));
    let mut logs = Vec::with_capacity(case.partitions);
    for p in 0..case.partitions {
        let options = LogOptions {
            config: LogConfig {
                durability: case.mode,
                ..plan.config.clone()
            },
            cache: cache.clone(),
            files: Rc::new(quill::disk::FileCache::new(256)),
            clock: system_clock(),
        };
        let log_dir = if case.partitions == 1 {
            dir.to_path_buf()
        } else {
            dir.join(format!("p{p}"))
        };
        let (log, _) = PartitionLog::open(&log_dir, options)
            .await
            .with_context(|| format!("open log in {}", log_dir.display()))?;
        logs.push(Rc::new(log));
    }
    let start = Instant::now();
    let window_start = start + plan.warmup;
    let window_end = window_start + plan.measured;
    let tasks: Vec<_> = (0..case.appenders)
        .map(|i| {
            glommio::spawn_local(appender(
                logs[i % logs.len()].clone(),
                plan.template.clone(),
                window_start,
                window_end,
            ))
        })
        .collect();
    let stats = |logs: &[Rc<PartitionLog>]| {
        logs.iter().fold(LogStats::default(), |acc, l| {
            let s = l.stats();
            LogStats {
                fdatasyncs: acc.fdatasyncs + s.fdatasyncs,
                tail_writes: acc.tail_writes + s.tail_writes,
                ..acc
            }
        })
    };
    glommio::timer::sleep(window_start.saturating_duration_since(Instant::now())).await;
    let before = stats(&logs);
    let cpu_before = CpuTimes::now();
    let t_before = Instant::now();
    glommio::timer::sleep(window_end.saturating_duration_since(Instant::now())).await;
    let after = stats(&logs);
    let cpu = CpuTimes::now().busy_since(&cpu_before, t_before.elapsed());

    let mut latency = latency_histogram();
    let mut appends = 0;
    let mut batch_bytes = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(tally) => {
                latency
                    .add(&tally.latency)
                    .map_err(|e| PerfError::new("merge histograms", e))?;
                appends += tally.appends;
                batch_bytes += tally.batch_bytes;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let mut closed = Ok(());
    for log in logs {
        let c = match Rc::try_unwrap(log) {
            Ok(log) => log.close().await.context("close log"),
            Err(_) => Err(PerfError::msg("log still shared after the appenders ended")),
        };
        if closed.is_ok() {
            closed = c;
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    closed?;
    Ok(CaseResult {
        case,
        window: plan.measured,
        appends,
        batch_bytes,
        records: appends * plan.records_per_batch,
        latency: LatencySummary::of(&latency),
        fdatasyncs: delta(before, after, |s| s.fdatasyncs),
        tail_writes: delta(before, after, |s| s.tail_writes),
        cpu,
        raw_mb_per_s,
    })
}

fn delta(before: LogStats, after: LogStats, f: impl Fn(&LogStats) -> u64) -> u64 {
    f(&after).saturating_sub(f(&before))
}

/// One closed-loop appender: copy the batch, append it, wait for the acknowledgement, repeat
/// until `window_end`. Counts the appends acknowledged inside the window.
async fn appender(
    log: Rc<PartitionLog>,
    template: Rc<BytesMut>,
    window_start: Instant,
    window_end: Instant,
) -> Result<Tally> {
    let mut tally = Tally {
        latency: latency_histogram(),
        appends: 0,
        batch_bytes: 0,
    };
    while Instant::now() < window_end {
        // A fresh copy each time: append stamps offsets into the buffer it is given.
        let batch = BytesMut::clone(&template);
        let len = batch.len() as u64;
        let sent = Instant::now();
        log.append(batch, Epoch(0)).await.context("append")?;
        let acked = Instant::now();
        if acked >= window_start && acked <= window_end {
            record_latency(&mut tally.latency, acked - sent);
            tally.appends += 1;
            tally.batch_bytes += len;
        }
    }
    Ok(tally)
}
