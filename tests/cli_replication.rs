//! The replication flags of the `quill` commands against a real broker (issue 11):
//! `topic create --replication-factor`, `topic describe --json`, `produce --acks all`, and the
//! output of `cluster status` (its `run` is not wired into `main.rs` by this branch, so its JSON
//! and table are checked from a real DescribeCluster answer through the library functions).

mod common;

use common::broker::Broker;
use common::cli::{quill, Run};
use common::tmpdir;
use quill::cli::cluster_status::{status_json, status_text};
use quill_client::{blocking, ClientConfig};
use serde_json::Value;

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
}

#[test]
fn topic_create_with_a_replication_factor_and_describe_json() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.addr.to_string();
    let r = quill(
        &b,
        &[
            "topic",
            "create",
            "rj",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout, "created topic 'rj' with 3 partitions\n");
    ok(&quill(
        &b,
        &["produce", "rj", "-p", "2", "--acks", "all"],
        b"a\nb\n",
    ));

    let r = quill(&b, &["topic", "describe", "rj", "--json"], b"");
    ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).expect("describe --json prints JSON");
    let parts = v.as_array().expect("an array, one object per partition");
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i as u64);
        assert_eq!(p["leader"], 0);
        assert!(p["leader_shard"].as_u64().unwrap() < 2);
        assert_eq!(p["leader_epoch"], 0);
        assert_eq!(p["replicas"], serde_json::json!([0]));
        assert_eq!(p["in_sync"], serde_json::json!([0]));
        assert_eq!(p["error"], Value::Null);
        assert_eq!(p["damaged_ranges"], serde_json::json!([]));
    }
    assert_eq!(parts[2]["high_watermark"], 2);
    assert_eq!(parts[2]["log_end_offset"], 2);
    assert_eq!(parts[0]["high_watermark"], 0);

    // The table has the replica columns too.
    let r = quill(&b, &["topic", "describe", "rj"], b"");
    ok(&r);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[1].contains("REPLICAS") && lines[1].contains("IN-SYNC"),
        "{}",
        r.stdout
    );
    let cols: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(&cols[4..], ["0", "2", "2", "0", "0", "ok"]);

    // More replicas than nodes: refused by the broker (exit 1), nothing created.
    let r = quill(
        &b,
        &[
            "topic",
            "create",
            "r3",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
        b"",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "quill: create topic 'r3': INVALID_REPLICATION_FACTOR (replication factor 3 is more \
         than the 1 live node of the cluster)\n"
    );
    let r = quill(&b, &["topic", "describe", "r3", "--json"], b"");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "quill: unknown topic 'r3'\n")
    );
    // 0 is a bad command line (the broker's default is what leaving the flag out means).
    let r = quill(
        &b,
        &[
            "topic",
            "create",
            "r0",
            "--partitions",
            "1",
            "--replication-factor",
            "0",
        ],
        b"",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    broker.stop();
}

#[test]
fn produce_with_acks_all() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "aa", "--partitions", "2"],
        b"",
    ));
    let r = quill(
        &b,
        &["produce", "aa", "--acks", "all", "-K", ":", "-v"],
        b"k1:one\nk2:two\nk3:three\n",
    );
    ok(&r);
    assert_eq!(
        r.stderr,
        "quill: 3 records read, 3 acknowledged, 0 not acknowledged\n"
    );
    let r = quill(
        &b,
        &["consume", "aa", "--from-beginning", "--count", "3"],
        b"",
    );
    ok(&r);
    let mut values: Vec<&str> = r.stdout.lines().collect();
    values.sort_unstable();
    assert_eq!(values, ["one", "three", "two"]);
    // An unknown mode is a bad command line.
    let r = quill(&b, &["produce", "aa", "--acks", "majority"], b"x\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    broker.stop();
}

#[test]
fn cluster_status_output_from_a_real_broker() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "cs", "--partitions", "2"],
        b"",
    ));
    ok(&quill(&b, &["produce", "cs", "-p", "1"], b"x\ny\n"));
    let client = blocking::Client::connect(ClientConfig::new(b.clone())).unwrap();
    let d = client.admin().describe_cluster(None).unwrap();
    let v = status_json(&d);
    assert_eq!(v["metadata_leader"], 0);
    assert_eq!(v["nodes"][0]["node"], 0);
    assert_eq!(v["nodes"][0]["port"], broker.addr.port());
    assert_eq!(v["nodes"][0]["up"], true);
    assert_eq!(v["nodes"][0]["replication"], Value::Null);
    assert_eq!(v["under_replicated_partitions"], 0);
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    for p in parts {
        assert_eq!(p["topic"], "cs");
        assert_eq!(p["leader"], 0);
        assert_eq!(p["under_replicated"], false);
        assert_eq!(
            p["replicas"],
            serde_json::json!([{"node": 0, "lag_records": 0, "in_sync": true}])
        );
    }
    assert_eq!(parts[1]["log_end_offset"], 2);
    let text = status_text(&d);
    assert!(text.starts_with("metadata leader: node 0\n"), "{text}");
    assert!(
        text.contains("partitions: 2, under-replicated: 0"),
        "{text}"
    );
    assert!(text.contains(" 0:0*"), "{text}");
    drop(client);
    broker.stop();
}
