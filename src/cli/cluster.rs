//! `quill cluster`: setting up a cluster's shared material. `init-certs` makes the cluster CA and
//! one certificate per node for the replication transport's mutual TLS
//! (`docs/REPLICATION.md`, "Certificates").

use std::path::PathBuf;
use std::process::ExitCode;

use crate::replication::transport::certs::{init_certs, InitCertsError, INIT_CERTS_NODES_MAX};

/// `quill cluster ...`.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster: nodes up/down, the metadata leader, partition leaders, replica lag,
    /// under-replicated partitions.
    Status(crate::cli::cluster_status::ClusterStatusArgs),
    /// Make a cluster CA and a certificate per node for the brokers' mutual TLS:
    /// DIR/ca.pem, DIR/ca-key.pem, DIR/node-<id>.pem and DIR/node-<id>-key.pem for ids 1..=N
    /// (keys mode 0600). Each broker then takes --tls-dir DIR and finds its files by its id.
    #[command(
        after_help = "Exit status: 0 written, 1 refused (files exist) or failed, 2 bad command line."
    )]
    InitCerts {
        /// Directory to write to (created if missing).
        dir: PathBuf,
        /// How many nodes (ids 1..=N).
        #[arg(long, default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..=INIT_CERTS_NODES_MAX as i64))]
        nodes: u32,
        /// Replace files that exist (a new CA: every node needs its new files).
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `quill cluster` command and returns the process exit status.
pub fn run(args: ClusterArgs) -> ExitCode {
    match args.command {
        ClusterCommand::Status(args) => crate::cli::cluster_status::run(args),
        ClusterCommand::InitCerts { dir, nodes, force } => match init_certs(&dir, nodes, force) {
            Ok(paths) => {
                for p in paths {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e @ InitCertsError::Nodes(_)) => super::usage(&e.to_string()),
            Err(e) => {
                eprintln!("quill: {e}");
                ExitCode::from(super::EXIT_FAILED)
            }
        },
    }
}
