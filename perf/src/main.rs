//! `quill-perf`: Quill's load harness. Each subcommand is one workload; `storage` measures the
//! storage engine against the disk's raw direct-write throughput, `fetch-path` compares ways of
//! serving cold fetches (cache + O_DIRECT read vs sendfile), `disk-latency` measures how often the
//! disk itself stalls a write + fdatasync, `run` drives a workload file.

/// `println!` that ignores a closed stdout (`quill-perf ... | head`) instead of panicking, so the
/// benchmark still cleans up its files.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod cputime;
mod datadir;
mod disklatency;
mod error;
mod fetchpath;
mod rawdisk;
mod report;
mod storage;
mod workload;

use std::future::Future;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};

use error::{Context, Result};

/// Memory glommio registers for I/O buffers in each of its three rings. The default is larger
/// than the usual 8 MiB memlock limit once tripled; buffers beyond it come from the heap.
const IO_MEMORY_BYTES: usize = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "quill-perf",
    version,
    about = "Quill load harness and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Storage engine: append throughput and latency of one partition log vs raw direct writes.
    Storage(storage::StorageArgs),
    /// Disk latency: O_DIRECT write + fdatasync one at a time, to tell the device's own stalls
    /// from the broker's.
    DiskLatency(disklatency::DiskLatencyArgs),
    /// Fetch path: cold reads served by cache + O_DIRECT read vs sendfile(2), to a TCP consumer.
    FetchPath(fetchpath::FetchPathArgs),
    /// Run a workload file (perf/workloads/*.toml): producers and consumers on the async client
    /// against an embedded broker (default) or `-b HOST:PORT`.
    Run(workload::RunArgs),
    /// Internal: the embedded broker process started by `run`.
    #[command(hide = true)]
    EmbeddedBroker(workload::EmbeddedBrokerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Storage(args) => storage::run(args),
        Command::DiskLatency(args) => disklatency::run(args),
        Command::FetchPath(args) => fetchpath::run(args),
        Command::Run(args) => workload::run(args),
        Command::EmbeddedBroker(args) => workload::serve_child(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill-perf: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `fut` to completion on a glommio executor pinned to `cpu`, on the calling thread.
pub(crate) fn run_on_cpu<T>(cpu: usize, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let ex = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name("quill-perf")
        .io_memory(IO_MEMORY_BYTES)
        .make()
        .with_context(|| format!("start a glommio executor on CPU {cpu}"))?;
    ex.run(fut)
}
