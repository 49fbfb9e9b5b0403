//! What runs behind the hidden `quill debug` subcommand: used by the crash tests, and by operators to exercise a data
//! directory. Each runs on one glommio executor.

use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::LocalExecutorBuilder;

use crate::disk::{system_clock, BatchCache, Durability, LogConfig, LogOptions, PartitionLog};
use crate::types::Epoch;
use quill_testkit::synthetic::synthetic_batch;

/// Settings of [`append_loop`].
#[derive(Clone, Debug)]
pub struct AppendLoop {
    pub dir: PathBuf,
    pub seed: u64,
    pub start_seq: u64,
    /// Stop after this many batches; `None` runs until killed.
    pub count: Option<u64>,
    pub appenders: usize,
    pub epoch: i32,
    pub segment_bytes: u64,
    pub durability: Durability,
    pub recovery_point_interval_ms: u64,
}

/// Appends synthetic batches to the log in `dir` from several tasks and prints
/// `ack <seq> <base offset>` on stdout for each batch once the log acknowledged it, so a parent
/// process can kill this one at any moment and check that every printed batch survived.
pub fn append_loop(args: AppendLoop) -> Result<(), String> {
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .name("append-loop")
        .spawn(move || async move { run_append_loop(args).await })
        .map_err(|e| format!("cannot start executor: {e}"))?
        .join()
        .map_err(|e| format!("executor failed: {e}"))?
}

async fn run_append_loop(args: AppendLoop) -> Result<(), String> {
    let config = LogConfig {
        segment_bytes: args.segment_bytes,
        batch_bytes_max: LogConfig::default()
            .batch_bytes_max
            .min(args.segment_bytes as usize),
        durability: args.durability,
        recovery_point_interval_ms: args.recovery_point_interval_ms,
        ..LogConfig::default()
    };
    let options = LogOptions {
        config,
        cache: Rc::new(BatchCache::new(16 << 20)),
        files: Rc::new(crate::disk::FileCache::new(256)),
        clock: system_clock(),
    };
    let (log, report) = PartitionLog::open(&args.dir, options)
        .await
        .map_err(|e| format!("cannot open log: {e}"))?;
    let log = Rc::new(log);
    eprintln!("opened: {report:?}");
    println!("ready {}", log.log_end_offset());
    let next = Rc::new(Cell::new(args.start_seq));
    let end = args.count.map(|c| args.start_seq + c);
    let mut tasks: Vec<glommio::Task<Result<(), String>>> = Vec::new();
    for _ in 0..args.appenders.max(1) {
        let log = log.clone();
        let next = next.clone();
        let args = args.clone();
        tasks.push(glommio::spawn_local(async move {
            loop {
                let seq = next.get();
                if end.is_some_and(|e| seq >= e) {
                    return Ok(());
                }
                next.set(seq + 1);
                let b = synthetic_batch(args.seed, seq);
                let info = log
                    .append(b, Epoch(args.epoch))
                    .await
                    .map_err(|e| format!("append failed: {e}"))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {seq} {}", info.base_offset.0).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Rc::try_unwrap(log)
        .map_err(|_| "log still shared".to_string())?
        .close()
        .await
        .map_err(|e| format!("close failed: {e}"))
}
