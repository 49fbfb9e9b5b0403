//! `quill-perf disk-latency`: how often the disk itself stalls an acknowledgement.
//!
//! A broker in `sync` durability acknowledges a produce only once an O_DIRECT write and an
//! `fdatasync` covering it completed, so no latency percentile of the broker can be better than
//! the same percentile of the device doing exactly that. This runs that pattern alone, one
//! operation at a time (a write of `--block-bytes` at the end of a growing file, then
//! `fdatasync`), for `--seconds`, and reports the distribution, how many operations passed each
//! threshold, how much time they cost, and the slowest ones with when they happened. Run it
//! before and after a latency workload to tell the device's stalls from the broker's.

use std::path::PathBuf;
use std::time::Duration;

use crate::datadir::{self, RunDir};
use crate::error::{Context, PerfError, Result};
use crate::rawdisk::{self, SyncWrites};
use crate::report::{fmt_us, LatencySummary};

/// Thresholds the report counts operations above, in ms.
const THRESHOLDS_MS: [u64; 5] = [1, 2, 5, 10, 100];
/// How many of the slowest operations are listed.
const SLOWEST_LISTED: usize = 10;

#[derive(clap::Args, Debug, Clone)]
pub struct DiskLatencyArgs {
    /// Data directory; must be on a real disk (O_DIRECT does nothing on tmpfs).
    #[arg(long, default_value = "./quill-perf-data")]
    pub dir: PathBuf,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Bytes of each write. The default is about what one fdatasync covers in the
    /// 50k msg/s x 1 KiB workload.
    #[arg(long, default_value_t = 40960)]
    pub block_bytes: usize,
    /// CPU the glommio executor is pinned to.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: DiskLatencyArgs) -> Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(PerfError::msg("--seconds must be positive"));
    }
    if args.block_bytes == 0 || args.block_bytes % 4096 != 0 {
        return Err(PerfError::msg(format!(
            "--block-bytes must be a positive multiple of 4096, got {}",
            args.block_bytes
        )));
    }
    let run_dir = RunDir::create(&args.dir)?;
    if let Some(fs) = datadir::memory_fs(run_dir.path())? {
        let _ = run_dir.remove();
        return Err(PerfError::msg(format!(
            "{} is on {fs}, where O_DIRECT and fdatasync never reach a disk. Use --dir on a \
             real disk.",
            args.dir.display()
        )));
    }
    out!(
        "quill-perf disk-latency: {} B O_DIRECT write + fdatasync, one at a time, for {} s, in {}",
        args.block_bytes,
        args.seconds,
        run_dir.path().display()
    );
    let path = run_dir.path().join("disk-latency.bin");
    let duration = Duration::from_secs_f64(args.seconds);
    let lowest = Duration::from_millis(THRESHOLDS_MS[0]);
    let outcome = crate::run_on_cpu(
        args.cpu,
        rawdisk::sync_write_latency(&path, args.block_bytes, duration, lowest),
    );
    let removed = run_dir.remove();
    let outcome = outcome?;
    removed?;
    report(&args, &outcome)
}

fn report(args: &DiskLatencyArgs, o: &SyncWrites) -> Result<()> {
    let s = LatencySummary::of(&o.latency);
    let p9999 = o.latency.value_at_quantile(0.9999);
    out!(
        "{} operations in {:.1} s: p50 {}, p99 {}, p99.9 {}, p99.99 {}, max {}",
        s.count,
        o.elapsed.as_secs_f64(),
        fmt_us(s.p50_us),
        fmt_us(s.p99_us),
        fmt_us(s.p999_us),
        fmt_us(p9999),
        fmt_us(s.max_us)
    );
    let mut over = Vec::new();
    for ms in THRESHOLDS_MS {
        let limit = Duration::from_millis(ms);
        let hits: Vec<&rawdisk::SlowWrite> = o.slow.iter().filter(|x| x.total > limit).collect();
        let time: Duration = hits.iter().map(|x| x.total).sum();
        out!(
            "  over {ms:>3} ms: {:>6} operations, {:>8.1} ms in them ({:.3}% of the run)",
            hits.len(),
            time.as_secs_f64() * 1000.0,
            100.0 * time.as_secs_f64() / o.elapsed.as_secs_f64()
        );
        over.push(serde_json::json!({
            "threshold_ms": ms,
            "operations": hits.len(),
            "ms_in_them": time.as_secs_f64() * 1000.0,
        }));
    }
    let mut slowest = o.slow.clone();
    slowest.sort_by_key(|x| std::cmp::Reverse(x.total));
    slowest.truncate(SLOWEST_LISTED);
    if !slowest.is_empty() {
        out!("  slowest (time into the run: write, write + fdatasync):");
        for x in &slowest {
            out!(
                "    {:>8.3} s: {}, {}",
                x.at.as_secs_f64(),
                fmt_us(x.write.as_micros() as u64),
                fmt_us(x.total.as_micros() as u64)
            );
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "benchmark": "disk-latency",
            "block_bytes": args.block_bytes,
            "seconds": o.elapsed.as_secs_f64(),
            "latency": s.to_json(),
            "p99_99_us": p9999,
            "over": over,
            "slowest": slowest.iter().map(|x| serde_json::json!({
                "at_s": x.at.as_secs_f64(),
                "write_us": x.write.as_micros() as u64,
                "total_us": x.total.as_micros() as u64,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&json).context("encode JSON results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
        out!("results written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of this test run's own on the real disk, beside the build (tmpfs would not
    /// exercise O_DIRECT): concurrent runs (other checkouts, other test binaries) never share
    /// it. Removed on drop, also when the test fails.
    struct OwnDir(PathBuf);

    impl OwnDir {
        fn new() -> OwnDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/tmp")
                .join(format!("disk-latency-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            OwnDir(dir)
        }
    }

    impl Drop for OwnDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The command's plumbing (measure, report, JSON, clean-up), not the disk: a tiny run of
    /// 4 KiB writes for 50 ms. The benchmark itself is `quill-perf disk-latency`.
    #[test]
    fn measures_reports_and_cleans_up() {
        let own = OwnDir::new();
        let root = own.0.clone();
        let json = root.join("out.json");
        let args = DiskLatencyArgs {
            dir: root.clone(),
            seconds: 0.05,
            block_bytes: 4096,
            cpu: 0,
            json: Some(json.clone()),
        };
        run(args.clone()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(v["latency"]["count"].as_u64().unwrap() > 0);
        assert_eq!(v["block_bytes"], 4096);
        assert_eq!(v["over"].as_array().unwrap().len(), THRESHOLDS_MS.len());
        // The run folder is gone; only the JSON is left.
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        let bad = DiskLatencyArgs {
            block_bytes: 1000,
            ..args
        };
        assert!(run(bad).is_err(), "unaligned block size refused");
    }
}
