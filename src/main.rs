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
    /// Log level: off, error, warn, info, debug, trace, or directives such as
    /// quill=debug,glommio=warn [default: $RUST_LOG, else info]
    #[arg(long, global = true, value_name = "LEVEL",
          value_parser = quill::cli::logging::check_log_filter)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker: one pinned shard per core, serving the native protocol.
    Serve(ServeArgs),
    /// Create, list, describe and delete topics.
    Topic(quill::cli::TopicArgs),
    /// Produce records to a topic, one per line of standard input.
    Produce(quill::cli::ProduceArgs),
    /// Consume records from a topic and print them.
    Consume(quill::cli::ConsumeArgs),
    /// Cluster set-up: certificates for the brokers' mutual TLS.
    Cluster(quill::cli::cluster::ClusterArgs),
    /// Tools for tests and for exercising a data directory.
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file; flags given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default ./quill-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Common client address, accepted on by every shard (default 127.0.0.1:9092).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Shard i also listens on this port + i (default: any free port).
    #[arg(long)]
    shard_port_base: Option<u16>,
    /// Number of shards, 1 to 1024 (default: one per available CPU).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    shards: Option<u64>,
    /// CPUs to pin the shards to, e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    cpus: Option<Vec<usize>>,
    /// This broker's node id (in a cluster: its entry in --peers, ids start at 1).
    #[arg(long)]
    node_id: Option<u32>,
    /// Every node's replication address (QUIC over UDP), this node's included, e.g.
    /// 1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194. Forms a cluster.
    #[arg(long, value_delimiter = ',', value_name = "ID@HOST:PORT")]
    peers: Option<Vec<quill::config::Peer>>,
    /// Directory of the cluster's certificates (`quill cluster init-certs`); needed with --peers.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// CPU to pin the replication thread (QUIC) to.
    #[arg(long)]
    replication_cpu: Option<usize>,
    /// Host name clients are told to connect to.
    #[arg(long)]
    advertised_host: Option<String>,
    /// Rebuild a missing catalog.json from the partition directories (topic settings become
    /// the defaults). Without it, a missing catalog with data on disk stops the start.
    #[arg(long)]
    rebuild_catalog: bool,
}

impl ServeArgs {
    fn into_config(self) -> Result<quill::config::BrokerConfig, String> {
        let mut c = match &self.config {
            Some(path) => quill::config::BrokerConfig::from_toml_file(path)?,
            None => quill::config::BrokerConfig::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.shard_port_base {
            c.shard_port_base = v;
        }
        if let Some(v) = self.shards {
            c.shards = v as usize;
        }
        if let Some(v) = self.cpus {
            c.cpus = v;
        }
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        if let Some(v) = self.peers {
            c.peers = v;
        }
        if let Some(v) = self.tls_dir {
            c.tls_dir = Some(v);
        }
        if let Some(v) = self.replication_cpu {
            c.replication.cpu = Some(v);
        }
        if let Some(v) = self.advertised_host {
            c.advertised_host = Some(v);
        }
        c.rebuild_catalog = self.rebuild_catalog;
        Ok(c)
    }
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
        /// How often the recovery point is checkpointed.
        #[arg(long, default_value_t = 5_000)]
        recovery_point_interval_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env =
        std::env::var_os(quill::cli::logging::LOG_ENV).map(|v| v.to_string_lossy().into_owned());
    let filter =
        match quill::cli::logging::choose_log_filter(cli.log_level.as_deref(), env.as_deref()) {
            Ok(spec) => tracing_subscriber::EnvFilter::new(spec),
            Err(e) => {
                eprintln!("quill: {e}");
                return ExitCode::from(quill::cli::EXIT_USAGE);
            }
        };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Topic(args) => return quill::cli::topic::run(args),
        Command::Produce(args) => return quill::cli::produce::run(args),
        Command::Consume(args) => return quill::cli::consume::run(args),
        Command::Cluster(args) => return quill::cli::cluster::run(args),
        Command::Serve(args) => args.into_config().and_then(|config| {
            quill::broker::serve(config, |l| {
                let ports: Vec<String> = l.shard_ports.iter().map(|p| p.to_string()).collect();
                // One line on stdout that scripts and tests wait for.
                println!(
                    "quill listening on {} shard ports {}",
                    l.common,
                    ports.join(",")
                );
            })
        }),
        Command::Debug(DebugCommand::AppendLoop {
            dir,
            seed,
            start_seq,
            count,
            appenders,
            epoch,
            segment_bytes,
            durability,
            recovery_point_interval_ms,
        }) => quill::debug::append_loop(quill::debug::AppendLoop {
            dir,
            seed,
            start_seq,
            count,
            appenders,
            epoch,
            segment_bytes,
            durability,
            recovery_point_interval_ms,
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
