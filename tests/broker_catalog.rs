//! The topic catalog and the data it describes (issue 9, finding 3): a missing catalog must
//! never make the broker delete partition directories on a guess. It refuses to start, names
//! the fix, and `--rebuild-catalog` rebuilds the catalog from the directories; only directories
//! of topics whose deletion the catalog recorded are ever removed.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::broker::*;
use common::tmpdir;
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{Request, Response};
use quill_proto::record::BatchBuilder;

/// Starting, or refusing to, takes well under this.
const START_LIMIT: Duration = Duration::from_secs(30);

fn records(values: &[&str]) -> BytesMut {
    let mut b = BatchBuilder::new(1_000);
    for (i, v) in values.iter().enumerate() {
        b.push(1_000 + i as i64, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

/// Creates `topic` with `partitions` partitions and one batch of two records in each.
fn fill(broker: &Broker, topic: &str, partitions: u32) {
    let mut c = broker.connect();
    assert_eq!(
        error_code_or_none(&c.call(&create_topic(topic, partitions))),
        ErrorCode::None
    );
    for p in 0..partitions {
        let offsets = produce_ok(c.call(&produce_request(
            topic,
            p,
            records(&[&format!("{topic}-{p}-a"), &format!("{topic}-{p}-b")]),
        )));
        assert_eq!(offsets, vec![0]);
    }
}

fn error_code_or_none(resp: &quill_proto::protocol::Response) -> ErrorCode {
    match resp {
        quill_proto::protocol::Response::Error { code, .. } => *code,
        _ => ErrorCode::None,
    }
}

#[test]
fn missing_catalog_refuses_to_start_and_deletes_nothing() {
    for shards in [1usize, 2] {
        let tmp = tmpdir();
        let data = tmp.path().join("data");
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).broker();
        fill(&broker, "orders", 3);
        fill(&broker, "audit-log.v2", 1);
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
        let dirs = partition_dirs(&data);
        assert_eq!(dirs.len(), 4, "{dirs:?}");

        std::fs::remove_file(data.join("catalog.json")).unwrap();
        let (code, stderr) = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).exited();
        assert_eq!(code, Some(1), "shards {shards}: {stderr}");
        assert!(
            stderr.contains("catalog.json") && stderr.contains("--rebuild-catalog"),
            "shards {shards}: the refusal names the file and the way out: {stderr}"
        );
        assert_eq!(
            partition_dirs(&data),
            dirs,
            "shards {shards}: no partition directory was removed"
        );

        // Rebuilt from the directories: every topic and record is back.
        let broker =
            Broker::try_start(&data, shards, &["--rebuild-catalog"], START_LIMIT, |_| {}).broker();
        let mut c = broker.connect();
        for (topic, partitions) in [("orders", 3u32), ("audit-log.v2", 1)] {
            for p in 0..partitions {
                let got = fetch_all_batches(&mut c, topic, p);
                assert_eq!(got.len(), 1, "shards {shards}: {topic}-{p}");
            }
        }
        // New topics do not reuse an old id: their directories are new.
        fill(&broker, "fresh", 1);
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
        assert_eq!(partition_dirs(&data).len(), 5);
        // And the next start needs no flag.
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).broker();
        let mut c = broker.connect();
        assert_eq!(fetch_all_batches(&mut c, "orders", 2).len(), 1);
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
    }
}

/// A directory the catalog does not explain (copied in, or left by an older broker) is
/// reported and kept, not removed; a deleted topic's directories are removed.
#[test]
fn only_recorded_deletions_remove_directories() {
    let tmp = tmpdir();
    let data = tmp.path().join("data");
    let broker = Broker::try_start(&data, 1, &[], START_LIMIT, |_| {}).broker();
    fill(&broker, "keep", 1);
    fill(&broker, "gone", 2);
    let mut c = broker.connect();
    assert_eq!(
        error_code_or_none(&c.call(&delete_topic("gone"))),
        ErrorCode::None
    );
    assert_eq!(broker.stop_within(START_LIMIT), Some(0));
    let kept = partition_dirs(&data);
    assert_eq!(
        kept.len(),
        1,
        "the deleted topic's directories are gone: {kept:?}"
    );

    let stray = data.join("topics").join("stray-7-0");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("00000000000000000000.log"), b"not ours").unwrap();
    let broker = Broker::try_start(&data, 1, &[], START_LIMIT, |_| {}).broker();
    assert!(stray.exists(), "an unexplained directory is kept");
    // ... reported once at start (before the broker listens), and not served.
    let stderr = broker.stderr_text();
    assert!(
        stderr.contains("partition directory not in the catalog") && stderr.contains("stray-7-0"),
        "the unexplained directory is reported: {stderr}"
    );
    let mut c = broker.connect();
    match c.call(&Request::ListTopics) {
        Response::ListTopics(l) => {
            let names: Vec<&str> = l.topics.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["keep"], "only the catalog's topics are served");
        }
        other => panic!("expected a topic list, got {other:?}"),
    }
    assert_eq!(broker.stop_within(START_LIMIT), Some(0));
    assert!(stray.join("00000000000000000000.log").exists());
}

/// A create that one shard cannot open is rolled back whole: the topic never appears (its
/// partitions were never served, so nothing on them was acknowledged), the directories it made
/// are removed once the catalog on disk forgot it, and anything it did not make is left alone.
/// Partition 1's directory is made impossible to create by a file already at its path.
#[test]
fn a_create_one_shard_cannot_open_is_rolled_back_whole() {
    let tmp = tmpdir();
    let data = tmp.path().join("data");
    let broker = Broker::try_start(&data, 2, &[], START_LIMIT, |_| {}).broker();
    fill(&broker, "a", 1);
    let a_dir = partition_dirs(&data)
        .into_iter()
        .find(|d| d.starts_with("a-"))
        .expect("a's directory");
    let a_id: u64 = a_dir.split('-').nth(1).unwrap().parse().unwrap();
    let blocker = data.join("topics").join(format!("b-{}-1", a_id + 1));
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut c = broker.connect();
    let resp = c.call(&create_topic("b", 2));
    assert_ne!(error_code_or_none(&resp), ErrorCode::None, "{resp:?}");
    // The topic does not exist anywhere.
    match c.call(&metadata_request(Some(&["b"]))) {
        quill_proto::protocol::Response::Metadata(m) => {
            assert_eq!(m.topics[0].error_code, ErrorCode::UnknownTopicOrPartition)
        }
        other => panic!("{other:?}"),
    }
    for shard in 0..2 {
        let mut s = broker.connect_shard(shard);
        let p = produce_partition(s.call(&produce_request("b", 0, records(&["x"]))));
        assert_eq!(p.error_code, ErrorCode::UnknownTopicOrPartition);
    }
    // What the create made is gone; what it did not make is kept.
    assert!(blocker.is_file(), "the file in the way was removed");
    assert!(
        !partition_dirs(&data).iter().any(|d| d.starts_with("b-")),
        "{:?}",
        partition_dirs(&data)
    );
    // And after a restart: a is whole, b does not exist.
    assert_eq!(broker.stop_within(START_LIMIT), Some(0));
    let broker = Broker::try_start(&data, 2, &[], START_LIMIT, |_| {}).broker();
    let mut c = broker.connect();
    assert_eq!(fetch_all_batches(&mut c, "a", 0).len(), 1);
    assert!(matches!(
        c.call(&quill_proto::protocol::Request::ListTopics),
        quill_proto::protocol::Response::ListTopics(l) if l.topics.len() == 1
    ));
}
