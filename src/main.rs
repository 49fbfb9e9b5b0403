//! The `quill` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quill::disk::Durability;

#[derive(Parser)]
#[command(
    name = "quill",
    version,
    about = "Quill: a durable, thread-per-core message broker"
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tools for tests and for exercising a data directory.
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Append synthetic batches to a partition log and print `ack <seq> <offset>` per
    /// acknowledged batch (used by the crash tests).
    AppendLoop {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 0)]
        start_seq: u64,
        /// Stop after this many batches (default: run until killed).
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value_t = 8)]
        appenders: usize,
        #[arg(long, default_value_t = 0)]
        epoch: i32,
        #[arg(long, default_value_t = 1 << 30)]
        segment_bytes: u64,
        /// sync or interval
        #[arg(long, default_value = "sync")]
        durability: Durability,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Debug(DebugCommand::AppendLoop {
            dir,
            seed,
            start_seq,
            count,
            appenders,
            epoch,
            segment_bytes,
            durability,
        }) => quill::tools::append_loop(quill::tools::AppendLoop {
            dir,
            seed,
            start_seq,
            count,
            appenders,
            epoch,
            segment_bytes,
            durability,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill: {e}");
            ExitCode::FAILURE
        }
    }
}
