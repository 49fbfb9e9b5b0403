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
    },
    /// List topics, one name per line, sorted.
    #[command(after_help = EXIT_STATUS_HELP)]
    List,
    /// Show a topic's partitions: leader shard and offsets.
    #[command(after_help = EXIT_STATUS_HELP)]
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its data.
    #[command(after_help = EXIT_STATUS_HELP)]
    Delete {
        /// Topic name.
        name: String,
    },
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
        TopicCommand::Describe { name } => match admin.describe_topic(&name) {
            Ok(d) => {
                println!("topic {}  partitions {}", d.name, d.partitions.len());
                println!(
                    "{:>9}  {:>6}  {:>5}  {:>5}  {:>12}  {:>14}  {:>12}  STATUS",
                    "PARTITION",
                    "LEADER",
                    "SHARD",
                    "EPOCH",
                    "LOG-START",
                    "HIGH-WATERMARK",
                    "LOG-END",
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
                        "{:>9}  {:>6}  {:>5}  {:>5}  {:>12}  {:>14}  {:>12}  {}",
                        p.partition,
                        p.leader_node,
                        p.leader_shard,
                        p.leader_epoch,
                        p.log_start_offset,
                        p.high_watermark,
                        p.log_end_offset,
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
