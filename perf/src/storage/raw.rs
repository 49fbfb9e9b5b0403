//! The raw-disk part of `quill-perf storage`: the reference direct-write throughput, the 4 KiB
//! write + fdatasync loop and the optional context and group-commit models.

use std::time::Duration;

use super::{throughput_line, StorageArgs, RAW_BLOCK_BYTES, RAW_QUEUE_DEPTH, RAW_SYNC_BLOCK_BYTES};
use crate::datadir::RunDir;
use crate::error::Result;
use crate::rawdisk::{self, FileSetup, Throughput, ThroughputPlan};
use crate::report::{fmt_us, LatencySummary};

/// The raw-disk measurements of one run.
pub(super) struct RawResults {
    /// The reference: direct writes extending a new file.
    pub(super) reference: Throughput,
    /// Results of `--raw-context`, already as JSON.
    pub(super) context: Vec<serde_json::Value>,
    /// The 4 KiB write + fdatasync loop.
    pub(super) sync_latency: LatencySummary,
    /// Results of `--raw-group-commit-bytes`, already as JSON.
    pub(super) group_models: Vec<serde_json::Value>,
}

/// The raw-disk part: the reference throughput, the sync latency loop and the optional context
/// and commit-cycle models, each printed as it completes.
pub(super) async fn measure_raw(args: &StorageArgs, run_dir: &RunDir) -> Result<RawResults> {
    out!(
        "raw direct write: {} KiB blocks, {RAW_QUEUE_DEPTH} in flight, up to {} MiB or {} s, \
         then fdatasync",
        RAW_BLOCK_BYTES / 1024,
        args.raw_bytes >> 20,
        args.raw_seconds
    );
    let raw = rawdisk::direct_write_throughput(
        &run_dir.path().join("raw-throughput"),
        ThroughputPlan {
            block_bytes: RAW_BLOCK_BYTES,
            queue_depth: RAW_QUEUE_DEPTH,
            total_bytes_max: args.raw_bytes,
            duration_max: Duration::from_secs_f64(args.raw_seconds),
            setup: FileSetup::Fresh,
        },
    )
    .await?;
    out!(
        "  new file, extending writes (the reference): {}",
        throughput_line(&raw)
    );
    let mut raw_context = Vec::new();
    if args.raw_context {
        for (name, setup) in [
            ("fallocated file", FileSetup::Fallocated),
            (
                "overwriting a written 1 GiB file",
                FileSetup::Prewritten {
                    file_bytes: 1 << 30,
                },
            ),
        ] {
            let t = rawdisk::direct_write_throughput(
                &run_dir.path().join("raw-context"),
                ThroughputPlan {
                    block_bytes: RAW_BLOCK_BYTES,
                    queue_depth: RAW_QUEUE_DEPTH,
                    total_bytes_max: args.raw_bytes,
                    duration_max: Duration::from_secs_f64(args.raw_seconds),
                    setup,
                },
            )
            .await?;
            out!("  {name} (context): {}", throughput_line(&t));
            raw_context.push(serde_json::json!({ "file": name, "result": t.to_json() }));
        }
    }

    out!(
        "raw {} KiB write + fdatasync, one at a time, {} s:",
        RAW_SYNC_BLOCK_BYTES / 1024,
        args.raw_sync_seconds
    );
    let hist = rawdisk::sync_write_latency(
        &run_dir.path().join("raw-sync-latency"),
        RAW_SYNC_BLOCK_BYTES,
        Duration::from_secs_f64(args.raw_sync_seconds),
        Duration::MAX,
    )
    .await?
    .latency;
    let sync_latency = LatencySummary::of(&hist);
    out!("  {}", sync_latency.line());

    let mut group_models = Vec::new();
    for &g in &args.raw_group_commit_bytes {
        let m = rawdisk::group_commit_cycles(
            &run_dir.path().join("raw-group-commit"),
            RAW_BLOCK_BYTES,
            g,
            Duration::from_secs_f64(args.raw_seconds),
        )
        .await?;
        let (w, s) = (
            LatencySummary::of(&m.write_us),
            LatencySummary::of(&m.sync_us),
        );
        out!(
            "raw commit cycles of {} KiB (writes in flight, then fdatasync): {:.1} MB/s, {} cycles",
            g / 1024,
            m.mb_per_s(),
            m.cycles
        );
        out!(
            "  write phase: mean {}, p50 {}, p99 {}; fdatasync: mean {}, p50 {}, p99 {}",
            fmt_us(w.mean_us.round() as u64),
            fmt_us(w.p50_us),
            fmt_us(w.p99_us),
            fmt_us(s.mean_us.round() as u64),
            fmt_us(s.p50_us),
            fmt_us(s.p99_us)
        );
        group_models.push(serde_json::json!({
            "group_bytes": g,
            "cycles": m.cycles,
            "mb_per_s": m.mb_per_s(),
            "write_phase": w.to_json(),
            "fdatasync": s.to_json(),
        }));
    }

    Ok(RawResults {
        reference: raw,
        context: raw_context,
        sync_latency,
        group_models,
    })
}
