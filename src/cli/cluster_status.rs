//! `quill cluster status [--json]`: the cluster as the broker asked sees it (DescribeCluster):
//! the metadata leader, every node up or down, each partition's leader, epoch and replicas
//! with their lag, and the under-replicated partitions.
//!
//! The command lives here as [`ClusterStatusArgs`] and [`run`]; `main.rs` and `cli/cluster.rs`
//! (the `quill cluster` subcommands) wire it in as `status`.

use std::process::ExitCode;

use serde_json::{json, Value};

use super::{fail, BrokerArgs};
use quill_client::{ClusterNode, ClusterPartition, ClusterReplica, DescribeClusterResponse};

#[derive(clap::Args, Debug)]
#[command(after_help = STATUS_HELP)]
pub struct ClusterStatusArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Only the partitions of these topics [default: every topic]
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

const STATUS_HELP: &str = concat!(
    "\
Shows the cluster: the metadata leader, each node (up or down, as the metadata leader hears
them), and per partition (as its leader reports it) its leader (node and shard),
leader epoch and replicas, each with its lag in records behind the leader (? if unknown) and
* if in sync. Under-replicated partitions (a replica out of sync) are counted and marked.
With --json, stdout is one object:
  {\"metadata_leader\": 0, \"nodes\": [{\"node\": 0, \"host\": \"127.0.0.1\", \"port\": 9092,
   \"replication\": null, \"up\": true}], \"partitions\": [{\"topic\": \"t\", \"partition\": 0,
   \"leader\": 0, \"leader_shard\": 1, \"leader_epoch\": 0, \"high_watermark\": 5,
   \"log_end_offset\": 5, \"replicas\": [{\"node\": 0, \"lag_records\": 0, \"in_sync\": true}],
   \"under_replicated\": false, \"error\": null}], \"under_replicated_partitions\": 0}
Unknown values are null (a leader being elected, a lag not known yet).

",
    super::exit_status_help!()
);

fn known<T: Into<i64>>(v: T) -> Option<i64> {
    let v = v.into();
    (v >= 0).then_some(v)
}

fn replication_address(n: &ClusterNode) -> Option<String> {
    (!n.replication_host.is_empty())
        .then(|| format!("{}:{}", n.replication_host, n.replication_port))
}

fn under_replicated(p: &ClusterPartition) -> bool {
    p.replicas.iter().any(|r| !r.in_sync)
}

fn replica_json(r: &ClusterReplica) -> Value {
    json!({"node": r.node_id, "lag_records": known(r.lag_records), "in_sync": r.in_sync})
}

/// The `--json` form of a cluster description.
pub fn status_json(d: &DescribeClusterResponse) -> Value {
    let partitions: Vec<Value> = d
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                json!({
                    "topic": t.name,
                    "partition": p.partition,
                    "leader": known(p.leader_node),
                    "leader_shard": known(p.leader_shard),
                    "leader_epoch": known(p.leader_epoch),
                    "high_watermark": known(p.high_watermark),
                    "log_end_offset": known(p.log_end_offset),
                    "replicas": p.replicas.iter().map(replica_json).collect::<Vec<_>>(),
                    "under_replicated": under_replicated(p),
                    "error": (!p.error_code.is_none()).then(|| p.error_code.as_str()),
                })
            })
        })
        .collect();
    json!({
        "metadata_leader": known(d.metadata_leader),
        "nodes": d.nodes.iter().map(|n| json!({
            "node": n.node_id,
            "host": n.host,
            "port": n.port,
            "replication": replication_address(n),
            "up": n.up,
        })).collect::<Vec<_>>(),
        "partitions": partitions,
        "under_replicated_partitions": d.under_replicated_partitions,
    })
}

/// A replica as `NODE:LAG` with `*` when in sync (`2:40`, `1:0*`, `3:?`).
fn replica_cell(r: &ClusterReplica) -> String {
    let lag = known(r.lag_records).map_or_else(|| "?".to_string(), |l| l.to_string());
    let mark = if r.in_sync { "*" } else { "" };
    format!("{}:{lag}{mark}", r.node_id)
}

fn or_dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The tables a person reads.
pub fn status_text(d: &DescribeClusterResponse) -> String {
    let mut out = String::new();
    let leader = known(d.metadata_leader).map_or_else(
        || "none (an election is under way)".to_string(),
        |n| format!("node {n}"),
    );
    out.push_str(&format!("metadata leader: {leader}\n"));
    out.push_str(&format!(
        "{:>6}  {:<24}  {:<24}  STATUS\n",
        "NODE", "ADDRESS", "REPLICATION"
    ));
    for n in &d.nodes {
        out.push_str(&format!(
            "{:>6}  {:<24}  {:<24}  {}\n",
            n.node_id,
            format!("{}:{}", n.host, n.port),
            replication_address(n).unwrap_or_else(|| "-".to_string()),
            if n.up { "up" } else { "down" },
        ));
    }
    let count: usize = d.topics.iter().map(|t| t.partitions.len()).sum();
    out.push_str(&format!(
        "partitions: {count}, under-replicated: {}\n",
        d.under_replicated_partitions
    ));
    if count > 0 {
        out.push_str(&format!(
            "{:<20}  {:>9}  {:>6}  {:>5}  {:>5}  REPLICAS (node:lag, * in sync)\n",
            "TOPIC", "PARTITION", "LEADER", "SHARD", "EPOCH"
        ));
    }
    for t in &d.topics {
        if !t.error_code.is_none() {
            out.push_str(&format!("{:<20}  {}\n", t.name, t.error_code));
            continue;
        }
        for p in &t.partitions {
            let replicas: Vec<String> = p.replicas.iter().map(replica_cell).collect();
            let mut note = String::new();
            if !p.error_code.is_none() {
                note = format!("  {}", p.error_code);
            } else if under_replicated(p) {
                note = "  under-replicated".to_string();
            }
            out.push_str(&format!(
                "{:<20}  {:>9}  {:>6}  {:>5}  {:>5}  {}{note}\n",
                t.name,
                p.partition,
                or_dash(known(p.leader_node)),
                or_dash(known(p.leader_shard)),
                or_dash(known(p.leader_epoch)),
                replicas.join(" "),
            ));
        }
    }
    out
}

/// A cluster node knows the offsets and replica lag only of the partitions it leads: the
/// others come from each up node's own answer (its partitions where it is the leader), and the
/// nodes' up/down from the metadata leader's. A node that does not answer leaves what the
/// first broker said.
fn gather(
    broker: &BrokerArgs,
    mut d: DescribeClusterResponse,
    topics: &Option<Vec<String>>,
) -> DescribeClusterResponse {
    let first = broker.address();
    let nodes: Vec<(u32, String)> = d
        .nodes
        .iter()
        .filter(|n| n.up && n.port != 0)
        .map(|n| (n.node_id, format!("{}:{}", n.host, n.port)))
        .collect();
    for (node, addr) in nodes {
        if addr == first {
            continue;
        }
        let mut args = broker.clone();
        args.broker = Some(addr);
        let Ok(Ok(other)) = args
            .connect()
            .map(|c| c.admin().describe_cluster(topics.clone()))
        else {
            continue;
        };
        if i64::from(other.metadata_leader) == i64::from(node) {
            d.nodes = other.nodes.clone();
            d.metadata_leader = other.metadata_leader;
        }
        for t in &mut d.topics {
            let Some(ot) = other.topics.iter().find(|o| o.name == t.name) else {
                continue;
            };
            for p in &mut t.partitions {
                if let Some(op) = ot.partitions.iter().find(|o| {
                    o.partition == p.partition && i64::from(o.leader_node) == i64::from(node)
                }) {
                    if op.high_watermark >= 0 {
                        *p = op.clone();
                    }
                }
            }
        }
    }
    d.under_replicated_partitions = d
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| under_replicated(p))
        .count() as u32;
    d
}

/// Runs `quill cluster status`. Exit status as the other commands: 0 shown, 1 refused, 2 bad
/// command line, 3 no broker.
pub fn run(args: ClusterStatusArgs) -> ExitCode {
    let client = match args.broker.connect() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let topics = (!args.topics.is_empty()).then_some(args.topics);
    let described = client
        .admin()
        .describe_cluster(topics.clone())
        .map(|d| gather(&args.broker, d, &topics));
    match described {
        Ok(d) if args.json => {
            println!("{}", status_json(&d));
            ExitCode::SUCCESS
        }
        Ok(d) => {
            print!("{}", status_text(&d));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quill_client::{ClusterTopic, ErrorCode};

    fn sample() -> DescribeClusterResponse {
        DescribeClusterResponse {
            metadata_leader: 1,
            nodes: vec![
                ClusterNode {
                    node_id: 1,
                    host: "10.0.0.1".into(),
                    port: 9092,
                    replication_host: "10.0.0.1".into(),
                    replication_port: 9300,
                    up: true,
                },
                ClusterNode {
                    node_id: 2,
                    host: "10.0.0.2".into(),
                    port: 9092,
                    replication_host: String::new(),
                    replication_port: 0,
                    up: false,
                },
            ],
            topics: vec![ClusterTopic {
                error_code: ErrorCode::None,
                name: "orders".into(),
                partitions: vec![ClusterPartition {
                    partition: 0,
                    error_code: ErrorCode::None,
                    leader_node: 1,
                    leader_shard: 0,
                    leader_epoch: 3,
                    high_watermark: 90,
                    log_end_offset: 100,
                    replicas: vec![
                        ClusterReplica {
                            node_id: 1,
                            lag_records: 0,
                            in_sync: true,
                        },
                        ClusterReplica {
                            node_id: 2,
                            lag_records: -1,
                            in_sync: false,
                        },
                    ],
                }],
            }],
            under_replicated_partitions: 1,
        }
    }

    #[test]
    fn text_shows_nodes_leaders_lag_and_under_replication() {
        let text = status_text(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "metadata leader: node 1");
        assert!(
            lines[2].contains("10.0.0.1:9300") && lines[2].ends_with("up"),
            "{text}"
        );
        assert!(
            lines[3].contains('-') && lines[3].ends_with("down"),
            "{text}"
        );
        assert_eq!(lines[4], "partitions: 1, under-replicated: 1");
        assert!(lines[6].contains("1:0* 2:?  under-replicated"), "{text}");
    }

    #[test]
    fn json_has_nulls_for_what_is_unknown() {
        let v = status_json(&sample());
        assert_eq!(v["metadata_leader"], 1);
        assert_eq!(v["nodes"][0]["replication"], "10.0.0.1:9300");
        assert_eq!(v["nodes"][1]["replication"], Value::Null);
        assert_eq!(v["nodes"][1]["up"], false);
        let p = &v["partitions"][0];
        assert_eq!(
            (p["topic"].as_str(), p["leader"].as_i64()),
            (Some("orders"), Some(1))
        );
        assert_eq!(p["replicas"][1]["lag_records"], Value::Null);
        assert_eq!(p["under_replicated"], true);
        assert_eq!(v["under_replicated_partitions"], 1);
    }
}
