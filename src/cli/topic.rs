//! `quill topic create|list|describe|delete`.

use std::process::ExitCode;

use super::{fail, usage, BrokerArgs, EXIT_STATUS_HELP};
use quill_client::{Durability, NewTopic, Retention};

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct TopicArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Same as --request-timeout-ms
    #[arg(long, value_name = "MS", global = true, conflicts_with = "request_timeout_ms",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: Option<u64>,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    #[command(after_help = EXIT_STATUS_HELP)]
    Create {
        /// Topic name: 1 to 249 characters from [a-zA-Z0-9._-].
        name: String,
        /// Number of partitions (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
        /// Delete segments older than this many ms; -1 keeps data forever [default: broker's]
        #[arg(long, value_name = "MS", allow_negative_numbers = true)]
        retention_ms: Option<i64>,
        /// Delete the oldest segments while a partition is larger than this; -1: no limit
        /// [default: broker's]
        #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
        retention_bytes: Option<i64>,
        /// Roll to a new segment at this size [default: broker's]
        #[arg(long, value_name = "BYTES")]
        segment_bytes: Option<u64>,
        /// When a produce is acknowledged: sync (after fdatasync) or interval (after the
        /// write) [default: broker's]
        #[arg(long, value_enum)]
        durability: Option<DurabilityArg>,
        /// Nodes holding a replica of each partition, the leader included; at most the
        /// number of live nodes [default: broker's]
        #[arg(long, value_name = "R", value_parser = clap::value_parser!(u16).range(1..))]
        replication_factor: Option<u16>,
    },
    /// List topics, one name per line, sorted.
    #[command(after_help = EXIT_STATUS_HELP)]
    List,
    /// Show a topic's partitions: leader (node and shard), epoch, replicas, in-sync replicas
    /// and offsets.
    #[command(after_help = DESCRIBE_HELP)]
    Describe {
        /// Topic name.
        name: String,
        /// Print a JSON array, one object per partition, instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and all its data.
    #[command(after_help = EXIT_STATUS_HELP)]
    Delete {
        /// Topic name.
        name: String,
    },
}

const DESCRIBE_HELP: &str = concat!(
    "\
With --json, stdout is one JSON array with an object per partition, in partition order:
  {\"partition\": 0, \"leader\": 0, \"leader_shard\": 1, \"leader_epoch\": 0,
   \"replicas\": [0], \"in_sync\": [0], \"log_start_offset\": 0, \"high_watermark\": 5,
   \"log_end_offset\": 5, \"damaged_ranges\": [], \"error\": null}
`error` is null or the partition's error code name (for example \"STORAGE_ERROR\"); the
offsets are then -1. `replicas` lists every node holding the partition, `in_sync` those its
leader counts as caught up.

",
    super::exit_status_help!()
);

/// The `--json` form of a described topic: one object per partition.
pub fn describe_json(d: &quill_client::TopicDescription) -> serde_json::Value {
    serde_json::Value::Array(
        d.partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "partition": p.partition,
                    "leader": p.leader_node,
                    "leader_shard": p.leader_shard,
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replicas,
                    "in_sync": p.in_sync,
                    "log_start_offset": p.log_start_offset,
                    "high_watermark": p.high_watermark,
                    "log_end_offset": p.log_end_offset,
                    "damaged_ranges": p
                        .damaged_ranges
                        .iter()
                        .map(|&(first, last)| serde_json::json!({"first": first, "last": last}))
                        .collect::<Vec<_>>(),
                    "error": (!p.error_code.is_none()).then(|| p.error_code.as_str()),
                })
            })
            .collect(),
    )
}

/// Node ids as `1,2,3` (`-` for none).
pub fn node_list(nodes: &[u32]) -> String {
    if nodes.is_empty() {
        return "-".to_string();
    }
    nodes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityArg {
    Sync,
    Interval,
}

fn retention(flag: &str, value: Option<i64>) -> Result<Retention, String> {
    match value {
        None => Ok(Retention::Default),
        Some(-1) => Ok(Retention::Forever),
        Some(v) if v >= 0 => Ok(Retention::Limit(v as u64)),
        Some(v) => Err(format!(
            "--{flag} {v} is not allowed: use -1 (no limit) or a value of at least 0"
        )),
    }
}

/// Runs `quill topic ...`.
pub fn run(args: TopicArgs) -> ExitCode {
    // Flags are checked before anything is sent.
    let new_topic = match &args.command {
        TopicCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            segment_bytes,
            durability,
            replication_factor,
        } => {
            let mut topic = NewTopic::new(name.clone(), *partitions);
            topic.retention_ms = match retention("retention-ms", *retention_ms) {
                Ok(r) => r,
                Err(m) => return usage(&m),
            };
            topic.retention_bytes = match retention("retention-bytes", *retention_bytes) {
                Ok(r) => r,
                Err(m) => return usage(&m),
            };
            topic.segment_bytes = *segment_bytes;
            topic.replication_factor = replication_factor.unwrap_or(0);
            topic.durability = durability.map(|d| match d {
                DurabilityArg::Sync => Durability::Sync,
                DurabilityArg::Interval => Durability::Interval,
            });
            Some(topic)
        }
        _ => None,
    };
    let client = match args.broker.with_timeout_ms(args.timeout_ms).connect() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let admin = client.admin();
    match args.command {
        TopicCommand::Create { .. } => {
            let topic = new_topic.expect("built above");
            let (name, partitions) = (topic.name.clone(), topic.partitions);
            match admin.create_topic(topic) {
                Ok(()) => {
                    println!("created topic '{name}' with {partitions} partitions");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        TopicCommand::List => match admin.list_topics() {
            Ok(topics) => {
                for t in topics {
                    println!("{}", t.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        TopicCommand::Describe { name, json: true } => match admin.describe_topic(&name) {
            Ok(d) => {
                println!("{}", describe_json(&d));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        TopicCommand::Describe { name, json: false } => match admin.describe_topic(&name) {
            Ok(d) => {
                println!("topic {}  partitions {}", d.name, d.partitions.len());
                println!(
                    "{:>9}  {:>6}  {:>5}  {:>5}  {:>12}  {:>14}  {:>12}  {:>8}  {:>8}  STATUS",
                    "PARTITION",
                    "LEADER",
                    "SHARD",
                    "EPOCH",
                    "LOG-START",
                    "HIGH-WATERMARK",
                    "LOG-END",
                    "REPLICAS",
                    "IN-SYNC",
                );
                for p in d.partitions {
                    // Damaged ranges: offsets stored but not served (consumers skip them).
                    let status = if !p.error_code.is_none() {
                        p.error_code.as_str().to_string()
                    } else if !p.damaged_ranges.is_empty() {
                        let ranges: Vec<String> = p
                            .damaged_ranges
                            .iter()
                            .map(|(first, last)| format!("{first}-{last}"))
                            .collect();
                        format!("damaged {}", ranges.join(","))
                    } else {
                        "ok".to_string()
                    };
                    println!(
                        "{:>9}  {:>6}  {:>5}  {:>5}  {:>12}  {:>14}  {:>12}  {:>8}  {:>8}  {}",
                        p.partition,
                        p.leader_node,
                        p.leader_shard,
                        p.leader_epoch,
                        p.log_start_offset,
                        p.high_watermark,
                        p.log_end_offset,
                        // After the offsets, so scripts reading columns by position still work.
                        node_list(&p.replicas),
                        node_list(&p.in_sync),
                        status
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        TopicCommand::Delete { name } => match admin.delete_topic(&name) {
            Ok(()) => {
                println!("deleted topic '{name}'");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}
