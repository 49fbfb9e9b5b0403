//! `quill-perf run WORKLOAD.toml`: an OpenMessaging-Benchmark-style workload against a running
//! broker (`-b`) or an embedded one on a temp folder of the real disk (default).

mod broker;
mod results;
mod run;
mod spec;

pub use broker::{serve_child, EmbeddedBrokerArgs};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cputime::CpuTimes;
use crate::error::{PerfError, Result};

/// Arguments of `quill-perf run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Workload file, e.g. perf/workloads/1-topic-1-partition-1kb-50k.toml.
    workload: PathBuf,
    /// Use the broker at HOST:PORT instead of starting an embedded one.
    #[arg(short = 'b', long)]
    broker: Option<String>,
    /// CPUs of the harness executors, one executor each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    harness_cpus: Vec<usize>,
    /// CPUs of the embedded broker, one shard each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    broker_cpus: Vec<usize>,
    /// Root of the embedded broker's data folder (a fresh run-<pid> folder inside, removed at
    /// the end). Must be on a real disk, not tmpfs.
    #[arg(long, default_value = "quill-perf-data")]
    dir: PathBuf,
    /// Override the workload's warm-up, in seconds.
    #[arg(long)]
    warmup_s: Option<u64>,
    /// Override the workload's measured duration, in seconds.
    #[arg(long)]
    duration_s: Option<u64>,
    /// Write machine-readable results here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write HdrHistogram percentile-distribution files (.hgrm) here.
    #[arg(long)]
    hdr_dir: Option<PathBuf>,
    /// Also print the final table as markdown.
    #[arg(long)]
    markdown: bool,
}

/// Set by SIGINT/SIGTERM: the run stops at the next progress tick and still stops and removes
/// the embedded broker.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn run(args: RunArgs) -> Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut spec = spec::WorkloadSpec::load(&args.workload)?;
    if let Some(w) = args.warmup_s {
        spec.warmup_s = w;
    }
    if let Some(d) = args.duration_s {
        spec.duration_s = d;
    }
    spec.validate()?;
    if args.harness_cpus.is_empty() {
        return Err(PerfError::msg("--harness-cpus needs at least one CPU"));
    }
    let mut embedded = None;
    let bootstrap = match &args.broker {
        Some(b) => b.clone(),
        None => {
            let b = broker::EmbeddedBroker::start(&args.dir, &args.broker_cpus)?;
            let a = b.addr.to_string();
            embedded = Some(b);
            a
        }
    };
    let layout = match &embedded {
        Some(b) => format!(
            "embedded broker at {bootstrap}, {} shard(s) pinned to CPU {:?}, data in {}; \
             harness: {} executor(s) pinned to CPU {:?}, {} producer task(s), {} consumer task(s)",
            args.broker_cpus.len(),
            args.broker_cpus,
            b.data_dir.display(),
            args.harness_cpus.len(),
            args.harness_cpus,
            spec.producers,
            spec.consumers
        ),
        None => format!(
            "broker at {bootstrap} (not started by the harness); harness: {} executor(s) pinned \
             to CPU {:?}, {} producer task(s), {} consumer task(s)",
            args.harness_cpus.len(),
            args.harness_cpus,
            spec.producers,
            spec.consumers
        ),
    };
    out!("workload {}: {}", spec.name, args.workload.display());
    out!(
        "  {} topic(s) x {} partition(s), {} B messages, rate {}, acks {}, durability {}, \
         linger {} ms, batch {} B, warm-up {} s, measured {} s",
        spec.topics,
        spec.partitions_per_topic,
        spec.message_bytes,
        if spec.rate_msgs_per_s == 0 {
            "max".to_string()
        } else {
            format!("{} msg/s", spec.rate_msgs_per_s)
        },
        spec.acks,
        spec.durability,
        spec.linger_ms,
        spec.batch_bytes,
        spec.warmup_s,
        spec.duration_s
    );
    out!("  {layout}");
    let broker_pid = embedded.as_ref().and_then(|b| b.pid());
    let result = drive(&bootstrap, spec, &args, layout, broker_pid);
    if let Some(mut b) = embedded {
        b.stop()?;
    }
    result
}

fn drive(
    bootstrap: &str,
    spec: spec::WorkloadSpec,
    args: &RunArgs,
    layout: String,
    broker_pid: Option<u32>,
) -> Result<()> {
    let topics = run::topic_names(&spec);
    run::create_topics(bootstrap, &spec, &topics, args.harness_cpus[0])?;
    let start = Instant::now() + Duration::from_millis(200);
    let warm_end = start + Duration::from_secs(spec.warmup_s);
    let end = warm_end + Duration::from_secs(spec.duration_s);
    let shared = Arc::new(run::Shared {
        start,
        warm_end,
        end,
        acked: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        producers_done: AtomicU64::new(0),
        consumers_stop: AtomicBool::new(false),
        p99_last_us: args
            .harness_cpus
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect(),
    });
    let spec = Arc::new(spec);
    let handles = run::spawn_executors(
        bootstrap.to_string(),
        spec.clone(),
        Arc::new(topics),
        &args.harness_cpus,
        shared.clone(),
    )?;

    // Live progress, once a second, until producers are done and consumers caught up.
    let mut last = (0u64, 0u64, 0u64);
    let sample = || {
        (
            Instant::now(),
            CpuTimes::now(),
            broker_pid.map(broker::process_cpu).unwrap_or_default(),
        )
    };
    let mut cpu_from = None;
    let mut cpu_to = None;
    let mut tick = Instant::now();
    let deadline = run::drain_deadline(end);
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = Instant::now();
        let dt = now.duration_since(tick).as_secs_f64();
        tick = now;
        let acked = shared.acked.load(Ordering::Relaxed);
        let bytes = shared.acked_bytes.load(Ordering::Relaxed);
        let consumed = shared.consumed.load(Ordering::Relaxed);
        let p99 = shared
            .p99_last_us
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let phase = if now < warm_end {
            "warm-up"
        } else if now < end {
            "measure"
        } else {
            "drain"
        };
        out!(
            "  [{:>5.1} s {phase:<7}] pub {:>10.0} msg/s {:>8.1} MB/s | cons {:>10.0} msg/s | \
             pub p99 {:>7} µs | errors {}",
            now.saturating_duration_since(start).as_secs_f64(),
            (acked - last.0) as f64 / dt,
            (bytes - last.1) as f64 / 1e6 / dt,
            (consumed - last.2) as f64 / dt,
            p99,
            shared.send_errors.load(Ordering::Relaxed)
        );
        last = (acked, bytes, consumed);
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(PerfError::msg("interrupted; no results"));
        }
        if cpu_from.is_none() && now >= warm_end {
            cpu_from = Some(sample());
        }
        if cpu_to.is_none() && now >= end {
            cpu_to = Some(sample());
        }
        let producers_done =
            shared.producers_done.load(Ordering::SeqCst) >= u64::from(spec.producers);
        if producers_done && (consumed >= acked || spec.consumers == 0 || now >= deadline) {
            break;
        }
        if now >= deadline + Duration::from_secs(30) {
            return Err(PerfError::msg(
                "producers did not finish 40 s after the end",
            ));
        }
    }
    shared.consumers_stop.store(true, Ordering::SeqCst);
    let mut total = run::ExecStats::empty();
    for h in handles {
        let s = h
            .join()
            .map_err(|e| PerfError::msg(format!("harness executor failed: {e}")))??;
        total.merge(&s);
    }
    let cpu = match (cpu_from, cpu_to) {
        (Some((t0, c0, b0)), Some((t1, c1, b1))) => {
            let wall = t1.duration_since(t0);
            let busy = c1.busy_since(&c0, wall);
            let broker =
                broker_pid.map(|_| b1.saturating_sub(b0).as_secs_f64() / wall.as_secs_f64());
            Some(results::CpuUse {
                harness: busy.process,
                broker,
                others: (busy.others - broker.unwrap_or(0.0)).max(0.0),
            })
        }
        _ => None,
    };
    results::report(&spec, &total, args, layout, cpu)
}
