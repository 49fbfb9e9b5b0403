//! The real broker binary, API by API against `docs/PROTOCOL.md`: ApiVersions, Metadata,
//! shard-aware routing, pipelining, ListOffsets, DeleteTopic and the Fetch limits. Each runs
//! with 1 and 2 shards.

mod common;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use common::broker::*;
use common::{batch, stamped, tmpdir};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::*;

/// Where the hash places the partitions of the topics below at create, pinned: the recorded
/// placement must match it, and metadata must report the recorded placement.
fn hashed_shards(topic: &str, shards: usize) -> Vec<u16> {
    match (topic, shards) {
        (_, 1) => vec![0; 6],
        ("meta", 2) => vec![1, 1, 0, 0, 0, 0],
        ("route", 2) => vec![1, 1, 0, 0],
        other => panic!("not pinned: {other:?}"),
    }
}

fn names(resp: Response) -> Vec<String> {
    match resp {
        Response::ListTopics(l) => {
            let mut n: Vec<String> = l.topics.into_iter().map(|t| t.name).collect();
            n.sort();
            n
        }
        other => panic!("expected ListTopics, got {other:?}"),
    }
}

// ---- ApiVersions ----

/// PROTOCOL.md, "0 ApiVersions" and "Versions": all 9 APIs with their versions, and the
/// broker's limits.
fn api_versions(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let defaults = quill::config::BrokerConfig::default();
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        let resp = c.call(&Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "quill-test 0.1".into(),
        }));
        let Response::ApiVersions(v) = resp else {
            panic!("{resp:?}")
        };
        let apis: Vec<(u16, u16, u16)> = v
            .apis
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        // Metadata (key 1) has version 1: damaged ranges (issue 9), and version 2, with
        // CreateTopic, Produce, Fetch and ListOffsets version 1 and DescribeCluster (key 8):
        // replication (issue 11).
        let max = |k: u16| match k {
            1 => 2,
            2 | 5 | 6 | 7 => 1,
            _ => 0,
        };
        let want: Vec<(u16, u16, u16)> = (0..9u16).map(|k| (k, 0, max(k))).collect();
        assert_eq!(apis, want);
        assert_eq!(
            v.limits,
            Limits {
                frame_bytes_max: 16 << 20,
                batch_bytes_max: 1 << 20,
                fetch_bytes_max: defaults.limits.fetch_bytes_max,
                fetch_wait_ms_max: defaults.limits.fetch_wait_ms_max,
                inflight_requests_max: defaults.limits.inflight_requests_max,
                node_id: defaults.node_id,
                shard_count: shards as u16,
            }
        );
        // An empty client name is allowed.
        let resp = c.call(&Request::ApiVersions(ApiVersionsRequest {
            client_software_name: String::new(),
        }));
        assert!(matches!(resp, Response::ApiVersions(_)));
    }
}

one_and_two_shards!(
    api_versions_one_shard,
    api_versions_two_shards,
    api_versions
);

// ---- Metadata ----

/// PROTOCOL.md, "1 Metadata": the broker with its common and shard ports, each partition's
/// owning shard and offsets, and unknown topics flagged.
fn metadata(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("meta", 6)), Response::CreateTopic);
    assert_eq!(c.call(&create_topic("other", 1)), Response::CreateTopic);
    let placed = hashed_shards("meta", shards);
    assert_eq!(recorded_shards(dir.path(), "meta"), placed);
    // Partition p gets p batches of 2 records.
    for p in 0..6u32 {
        for i in 0..p {
            produce_ok(c.call(&produce_request("meta", p, batch(u64::from(i), 2, 20, 1))));
        }
    }
    let expected_broker = BrokerMetadata {
        node_id: 0,
        host: "127.0.0.1".into(),
        port: broker.addr.port(),
        shard_ports: broker
            .shard_ports
            .iter()
            .enumerate()
            .map(|(i, &port)| ShardPort {
                shard_id: i as u16,
                port,
            })
            .collect(),
    };
    let expected_meta = TopicMetadata {
        error_code: ErrorCode::None,
        name: "meta".into(),
        partitions: (0..6u32)
            .map(|p| PartitionMetadata {
                partition: p,
                error_code: ErrorCode::None,
                leader_node: 0,
                leader_shard: placed[p as usize],
                leader_epoch: 0,
                log_start_offset: 0,
                high_watermark: 2 * i64::from(p),
                log_end_offset: 2 * i64::from(p),
                // Version 0: no replica lists.
                replicas: vec![],
                in_sync: vec![],
            })
            .collect(),
    };
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        let resp = c.call(&metadata_request(Some(&["meta", "missing"])));
        let Response::Metadata(m) = resp else {
            panic!("{resp:?}")
        };
        assert_eq!(m.brokers, vec![expected_broker.clone()]);
        assert_eq!(m.topics.len(), 2);
        assert_eq!(m.topics[0], expected_meta);
        assert_eq!(
            m.topics[1],
            TopicMetadata {
                error_code: ErrorCode::UnknownTopicOrPartition,
                name: "missing".into(),
                partitions: Vec::new(),
            }
        );
        // Null: every topic.
        let Response::Metadata(all) = c.call(&metadata_request(None)) else {
            panic!("metadata")
        };
        let mut got: Vec<&str> = all.topics.iter().map(|t| t.name.as_str()).collect();
        got.sort();
        assert_eq!(got, vec!["meta", "other"]);
        assert!(all.topics.contains(&expected_meta));
        // Empty: brokers only.
        let Response::Metadata(none) = c.call(&metadata_request(Some(&[]))) else {
            panic!("metadata")
        };
        assert!(none.topics.is_empty());
        assert_eq!(none.brokers, vec![expected_broker.clone()]);
    }
}

one_and_two_shards!(metadata_one_shard, metadata_two_shards, metadata);

// ---- shard-aware routing ----

/// PROTOCOL.md, "Shard-aware clients": a request on the owner's shard port and one on another
/// shard's port (forwarded) both succeed and land in the same log.
fn shard_routing(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("route", 4)), Response::CreateTopic);
    let placed = recorded_shards(dir.path(), "route");
    assert_eq!(placed, hashed_shards("route", shards)[..4]);
    let mut expected: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    for p in 0..4u32 {
        let owner = usize::from(placed[p as usize]);
        let other = (owner + 1) % shards;
        let mut direct = broker.connect_shard(owner);
        let mut forwarded = broker.connect_shard(other);
        for i in 0..4usize {
            let conn = if i % 2 == 0 {
                &mut direct
            } else {
                &mut forwarded
            };
            let b = batch(u64::from(p) * 10 + i as u64, 3, 40, 1);
            let offs = produce_ok(conn.call(&produce_request("route", p, b.clone())));
            assert_eq!(offs, vec![3 * i as i64], "partition {p} request {i}");
            expected
                .entry(p)
                .or_default()
                .push(stamped(b, 3 * i as u64, 0));
        }
        assert_eq!(latest_offset(&mut forwarded, "route", p), 12);
        assert_eq!(latest_offset(&mut direct, "route", p), 12);
    }
    // Every port serves the same logs.
    for addr in broker.all_addrs() {
        let mut conn = Conn::connect(addr);
        for p in 0..4u32 {
            let got: Vec<Vec<u8>> = fetch_all_batches(&mut conn, "route", p)
                .into_iter()
                .map(|(_, b)| b.to_vec())
                .collect();
            assert_eq!(got, expected[&p], "partition {p} via {addr}");
        }
    }
}

one_and_two_shards!(
    shard_routing_one_shard,
    shard_routing_two_shards,
    shard_routing
);

/// Builds a Produce of one small batch per `(topic, partition)`, in the given order; a topic
/// gets a new entry whenever it differs from the previous one.
fn produce_in_order(order: &[(&str, u32)]) -> ProduceRequest {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for &(t, p) in order {
        let part = ProducePartition {
            partition: p,
            records: batch(u64::from(p), 2, 10, 1),
        };
        match topics.last_mut() {
            Some(last) if last.name == t => last.partitions.push(part),
            _ => topics.push(ProduceTopic {
                name: t.into(),
                partitions: vec![part],
            }),
        }
    }
    ProduceRequest {
        version: 0,
        acks: Acks::Leader,
        timeout_ms: 30_000,
        topics,
    }
}

/// The `(topic, partition)` of every entry of a produce or fetch response, in response order,
/// with the topic entry it sits in.
fn response_layout(resp: Response) -> Vec<(usize, String, u32, ErrorCode)> {
    let mut out = Vec::new();
    match resp {
        Response::Produce(r) => {
            for (i, t) in r.topics.iter().enumerate() {
                for p in &t.partitions {
                    out.push((i, t.name.clone(), p.partition, p.error_code));
                }
            }
        }
        Response::Fetch(r) => {
            for (i, t) in r.topics.iter().enumerate() {
                for p in &t.partitions {
                    out.push((i, t.name.clone(), p.partition, p.error_code));
                }
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    out
}

fn request_layout(topics: &[(String, Vec<u32>)]) -> Vec<(usize, String, u32, ErrorCode)> {
    let mut out = Vec::new();
    for (i, (name, parts)) in topics.iter().enumerate() {
        for &p in parts {
            out.push((i, name.clone(), p, ErrorCode::None));
        }
    }
    out
}

/// PROTOCOL.md, "Shard-aware clients": a request naming partitions of several shards is split
/// and answered as one, topics and partitions in request order.
fn multi_partition_requests(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("a", 4)), Response::CreateTopic);
    assert_eq!(c.call(&create_topic("b", 2)), Response::CreateTopic);
    let req = produce_in_order(&[("b", 1), ("b", 0), ("a", 3), ("a", 0), ("a", 2), ("a", 1)]);
    let layout: Vec<(String, Vec<u32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        })
        .collect();
    let resp = c.call(&Request::Produce(req));
    assert_eq!(response_layout(resp), request_layout(&layout));
    let fetch = Request::Fetch(FetchRequest {
        version: 0,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: layout
            .iter()
            .map(|(name, parts)| FetchTopic {
                name: name.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| FetchPartition {
                        partition,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    })
                    .collect(),
            })
            .collect(),
    });
    let resp = c.call(&fetch);
    assert_eq!(response_layout(resp), request_layout(&layout));
}

one_and_two_shards!(
    multi_partition_requests_one_shard,
    multi_partition_requests_two_shards,
    multi_partition_requests
);

/// PROTOCOL.md, "5 Produce" and "6 Fetch": the response's `topics` are "in request order", so a
/// topic named in two separate entries of the request (different partitions, which is allowed)
/// is answered in two entries, in the same places.
#[test]
fn responses_mirror_repeated_topic_entries() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("a", 4)), Response::CreateTopic);
    assert_eq!(c.call(&create_topic("b", 2)), Response::CreateTopic);
    let req = produce_in_order(&[("a", 3), ("b", 1), ("a", 0), ("a", 2), ("b", 0), ("a", 1)]);
    let layout: Vec<(String, Vec<u32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        })
        .collect();
    assert_eq!(layout.len(), 5, "topic a appears in three entries");
    let resp = c.call(&Request::Produce(req));
    assert_eq!(response_layout(resp), request_layout(&layout), "produce");
    let fetch = Request::Fetch(FetchRequest {
        version: 0,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: layout
            .iter()
            .map(|(name, parts)| FetchTopic {
                name: name.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| FetchPartition {
                        partition,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    })
                    .collect(),
            })
            .collect(),
    });
    assert_eq!(
        response_layout(c.call(&fetch)),
        request_layout(&layout),
        "fetch"
    );
}

// ---- pipelining ----

/// PROTOCOL.md, "Pipelining and ordering": 200 mixed requests sent before any response is read
/// come back in order, each with its correlation id (`Conn::recv` checks it).
fn pipelining(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("pipe", 3)), Response::CreateTopic);
    let first = batch(0, 3, 50, 1);
    for p in 0..3u32 {
        assert_eq!(
            produce_ok(c.call(&produce_request("pipe", p, first.clone()))),
            vec![0]
        );
    }
    enum Sent {
        Produce(u32, BytesMut),
        Fetch(u32),
        Metadata,
    }
    let mut sent = Vec::new();
    for i in 0..200u64 {
        let p = (i / 3 % 3) as u32;
        let (req, what) = match i % 3 {
            0 => {
                let b = batch(1000 + i, 3, 50, 1);
                (produce_request("pipe", p, b.clone()), Sent::Produce(p, b))
            }
            1 => (fetch_request("pipe", p, 0, 0), Sent::Fetch(p)),
            _ => (metadata_request(Some(&["pipe"])), Sent::Metadata),
        };
        c.send(&req);
        sent.push(what);
    }
    assert_eq!(c.pending(), 200);
    let mut acked: HashMap<u32, Vec<(i64, BytesMut)>> = HashMap::new();
    for what in sent {
        let (_, resp) = c.recv();
        match what {
            Sent::Produce(p, b) => {
                let offs = produce_ok(resp);
                assert_eq!(offs.len(), 1);
                acked.entry(p).or_default().push((offs[0], b));
            }
            Sent::Fetch(p) => {
                let f = fetch_partition(resp);
                assert_eq!(f.error_code, ErrorCode::None);
                assert_eq!(
                    &f.records[0][..],
                    &stamped(first.clone(), 0, 0)[..],
                    "partition {p}"
                );
            }
            Sent::Metadata => {
                let Response::Metadata(m) = resp else {
                    panic!("{resp:?}")
                };
                assert_eq!(m.topics[0].partitions.len(), 3);
            }
        }
    }
    // Every produce got its own offsets, and the logs hold exactly those batches.
    for p in 0..3u32 {
        let mut mine = acked.remove(&p).unwrap_or_default();
        mine.sort_by_key(|(o, _)| *o);
        let bases: Vec<i64> = mine.iter().map(|(o, _)| *o).collect();
        let want: Vec<i64> = (1..=mine.len() as i64).map(|k| 3 * k).collect();
        assert_eq!(bases, want, "partition {p}: contiguous, distinct offsets");
        let got = fetch_all_batches(&mut c, "pipe", p);
        assert_eq!(got.len(), mine.len() + 1);
        for ((base, bytes), (o, b)) in got[1..].iter().zip(mine) {
            assert_eq!(*base, o);
            assert_eq!(&bytes[..], &stamped(b, o as u64, 0)[..]);
        }
    }
}

one_and_two_shards!(pipelining_one_shard, pipelining_two_shards, pipelining);

// ---- ListOffsets ----

/// PROTOCOL.md, "7 ListOffsets": earliest (-2), latest (-1), and the first offset whose record
/// timestamp is at or after the one asked for; the same after a restart (from disk).
fn list_offsets(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("ts", 3)), Response::CreateTopic);
    // Batches at 1000, 2000, 3000: records at ts, ts+1, ts+2, offsets 0..9.
    for p in 0..3u32 {
        for (i, ts) in [1000i64, 2000, 3000].into_iter().enumerate() {
            let offs = produce_ok(c.call(&produce_request(
                "ts",
                p,
                batch(u64::from(p) * 3 + i as u64, 3, 30, ts),
            )));
            assert_eq!(offs, vec![3 * i as i64]);
        }
    }
    let cases: [(i64, i64); 15] = [
        (-2, 0),
        (-1, 9),
        (0, 0),
        (999, 0),
        (1000, 0),
        (1001, 1),
        (1002, 2),
        (1003, 3),
        (2000, 3),
        (2001, 4),
        (2500, 6),
        (3000, 6),
        (3002, 8),
        (3003, OFFSET_NONE),
        (i64::MAX, OFFSET_NONE),
    ];
    let check = |broker: &Broker| {
        for addr in broker.all_addrs() {
            let mut c = Conn::connect(addr);
            // One request for every partition and case, answered in request order.
            let req = ListOffsetsRequest {
                version: 0,
                topics: vec![ListOffsetsTopic {
                    name: "ts".into(),
                    partitions: (0..3u32)
                        .flat_map(|p| {
                            cases
                                .iter()
                                .map(move |&(timestamp, _)| ListOffsetsPartition {
                                    partition: p,
                                    timestamp,
                                })
                        })
                        .collect(),
                }],
            };
            let resp = c.call(&Request::ListOffsets(req));
            let Response::ListOffsets(r) = resp else {
                panic!("{resp:?}")
            };
            assert_eq!(r.topics.len(), 1);
            let got: Vec<(u32, ErrorCode, i64)> = r.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition, p.error_code, p.offset))
                .collect();
            let want: Vec<(u32, ErrorCode, i64)> = (0..3u32)
                .flat_map(|p| cases.iter().map(move |&(_, o)| (p, ErrorCode::None, o)))
                .collect();
            assert_eq!(got, want);
            // And one at a time.
            for (ts, want) in cases {
                let l = list_offsets_partition(c.call(&list_offsets_request("ts", 1, ts)));
                assert_eq!((l.error_code, l.offset), (ErrorCode::None, want), "ts {ts}");
            }
        }
    };
    check(&broker);
    broker.stop();
    let broker = Broker::start(dir.path(), shards);
    check(&broker);
}

one_and_two_shards!(
    list_offsets_one_shard,
    list_offsets_two_shards,
    list_offsets
);

// ---- DeleteTopic ----

fn partition_dirs(data_dir: &std::path::Path, topic: &str) -> Vec<String> {
    let prefix = format!("{topic}-");
    let mut out: Vec<String> = std::fs::read_dir(data_dir.join("topics"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// PROTOCOL.md, "3 DeleteTopic": afterwards the topic is unknown to every API and port, its
/// directories are gone, and a topic re-created under the same name starts empty at offset 0.
fn delete_topic_test(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("doomed", 3)), Response::CreateTopic);
    assert_eq!(c.call(&create_topic("keeper", 1)), Response::CreateTopic);
    for p in 0..3u32 {
        produce_ok(c.call(&produce_request("doomed", p, batch(u64::from(p), 3, 20, 1))));
    }
    let kept = batch(50, 2, 20, 1);
    produce_ok(c.call(&produce_request("keeper", 0, kept.clone())));
    assert_eq!(partition_dirs(dir.path(), "doomed").len(), 3);

    assert_eq!(c.call(&delete_topic("doomed")), Response::DeleteTopic);
    assert!(
        partition_dirs(dir.path(), "doomed").is_empty(),
        "left behind: {:?}",
        partition_dirs(dir.path(), "doomed")
    );
    for addr in broker.all_addrs() {
        let mut s = Conn::connect(addr);
        for p in 0..3u32 {
            let pr = produce_partition(s.call(&produce_request("doomed", p, batch(9, 1, 5, 1))));
            assert_eq!(pr.error_code, ErrorCode::UnknownTopicOrPartition);
            let f = fetch_partition(s.call(&fetch_request("doomed", p, 0, 0)));
            assert_eq!(f.error_code, ErrorCode::UnknownTopicOrPartition);
            let l = list_offsets_partition(s.call(&list_offsets_request("doomed", p, -1)));
            assert_eq!(l.error_code, ErrorCode::UnknownTopicOrPartition);
        }
        assert_eq!(names(s.call(&Request::ListTopics)), vec!["keeper"]);
        let Response::Metadata(m) = s.call(&metadata_request(Some(&["doomed"]))) else {
            panic!("metadata")
        };
        assert_eq!(m.topics[0].error_code, ErrorCode::UnknownTopicOrPartition);
    }
    assert_eq!(
        error_code(&c.call(&delete_topic("doomed"))),
        ErrorCode::UnknownTopicOrPartition
    );

    // Re-created: empty, offsets from 0.
    assert_eq!(c.call(&create_topic("doomed", 2)), Response::CreateTopic);
    let fresh = batch(77, 2, 20, 1);
    for p in 0..2u32 {
        assert_eq!(latest_offset(&mut c, "doomed", p), 0);
        assert_eq!(
            produce_ok(c.call(&produce_request("doomed", p, fresh.clone()))),
            vec![0]
        );
    }
    let check = |broker: &Broker| {
        let mut c = broker.connect();
        for p in 0..2u32 {
            let got: Vec<(i64, Bytes)> = fetch_all_batches(&mut c, "doomed", p);
            assert_eq!(got.len(), 1, "partition {p} holds only the new batch");
            assert_eq!(&got[0].1[..], &stamped(fresh.clone(), 0, 0)[..]);
        }
        let f = fetch_partition(c.call(&fetch_request("doomed", 2, 0, 0)));
        assert_eq!(f.error_code, ErrorCode::UnknownTopicOrPartition);
        let got = fetch_all_batches(&mut c, "keeper", 0);
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].1[..], &stamped(kept.clone(), 0, 0)[..]);
        assert_eq!(
            names(c.call(&Request::ListTopics)),
            vec!["doomed", "keeper"]
        );
    };
    check(&broker);
    assert_eq!(partition_dirs(dir.path(), "doomed").len(), 2);
    broker.stop();
    let broker = Broker::start(dir.path(), shards);
    check(&broker);
    assert_eq!(partition_dirs(dir.path(), "doomed").len(), 2);
}

one_and_two_shards!(
    delete_topic_one_shard,
    delete_topic_two_shards,
    delete_topic_test
);

// ---- Fetch limits ----

fn fetch_req(
    max_wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
    parts: &[(u32, i64, u32)],
) -> Request {
    Request::Fetch(FetchRequest {
        version: 0,
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics: vec![FetchTopic {
            name: "lim".into(),
            partitions: parts
                .iter()
                .map(
                    |&(partition, fetch_offset, partition_max_bytes)| FetchPartition {
                        partition,
                        fetch_offset,
                        partition_max_bytes,
                    },
                )
                .collect(),
        }],
    })
}

fn fetch_parts(resp: Response) -> Vec<FetchPartitionResponse> {
    match resp {
        Response::Fetch(f) => {
            assert_eq!(f.topics.len(), 1);
            f.topics.into_iter().next().unwrap().partitions
        }
        other => panic!("expected a fetch response, got {other:?}"),
    }
}

/// Sets up "lim": partitions 0 and 2 hold three ~1 KiB batches each, partition 1 is empty.
fn fetch_limits_setup(broker: &Broker) -> HashMap<u32, Vec<Vec<u8>>> {
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("lim", 3)), Response::CreateTopic);
    let mut stored = HashMap::new();
    for p in [0u32, 2] {
        let mut v = Vec::new();
        for i in 0..3u64 {
            let b = batch(u64::from(p) * 10 + i, 2, 500, 1);
            let offs = produce_ok(c.call(&produce_request("lim", p, b.clone())));
            v.push(stamped(b, offs[0] as u64, 0));
        }
        stored.insert(p, v);
    }
    stored
}

/// PROTOCOL.md, "6 Fetch": batches are never split; a first batch larger than `max_bytes` or
/// `partition_max_bytes` comes alone; the batch containing `fetch_offset` comes first; a
/// multi-partition fetch that cannot reach `min_bytes` waits (bounded) and returns what there is.
fn fetch_limits(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let stored = fetch_limits_setup(&broker);
    let b0 = &stored[&0];
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        // max_bytes smaller than one batch: that one batch anyway.
        for (max_bytes, pmb) in [(10, 1 << 20), (1 << 20, 10), (1, 1), (0, 0)] {
            let parts = fetch_parts(c.call(&fetch_req(0, 1, max_bytes, &[(0, 0, pmb)])));
            assert_eq!(parts[0].error_code, ErrorCode::None);
            let got: Vec<&[u8]> = parts[0].records.iter().map(|b| &b[..]).collect();
            assert_eq!(got, vec![&b0[0][..]], "max_bytes {max_bytes} pmb {pmb}");
        }
        // Room for exactly two batches: two.
        let two = (b0[0].len() + b0[1].len()) as u32;
        let parts = fetch_parts(c.call(&fetch_req(0, 1, two, &[(0, 0, 1 << 20)])));
        assert_eq!(parts[0].records.len(), 2);
        let parts = fetch_parts(c.call(&fetch_req(0, 1, 1 << 20, &[(0, 0, two + 1)])));
        assert_eq!(parts[0].records.len(), 2);
        // An offset inside a batch: that batch first (it starts before the offset).
        let parts = fetch_parts(c.call(&fetch_req(0, 1, 1 << 20, &[(0, 3, 1 << 20)])));
        assert_eq!(&parts[0].records[0][..], &b0[1][..]);

        // min_bytes above what exists, three partitions (one empty), bounded wait: what there is.
        let parts = fetch_parts(c.call(&fetch_req(
            300,
            64 << 20,
            1 << 20,
            &[(0, 0, 1 << 20), (1, 0, 1 << 20), (2, 1, 1 << 20)],
        )));
        let summary: Vec<(u32, ErrorCode, usize, i64)> = parts
            .iter()
            .map(|p| (p.partition, p.error_code, p.records.len(), p.high_watermark))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, ErrorCode::None, 3, 6),
                (1, ErrorCode::None, 0, 0),
                (2, ErrorCode::None, 3, 6),
            ]
        );
        // Nothing anywhere: an empty answer after the bounded wait.
        let parts = fetch_parts(c.call(&fetch_req(
            300,
            1,
            1 << 20,
            &[(0, 6, 1 << 20), (1, 0, 1 << 20), (2, 6, 1 << 20)],
        )));
        assert!(parts
            .iter()
            .all(|p| p.error_code.is_none() && p.records.is_empty()));

        // max_bytes bounds the whole response: the first partition's first batch fits, the
        // second partition's does not.
        let one = b0[0].len() as u32 + 1;
        let parts = fetch_parts(c.call(&fetch_req(0, 1, one, &[(0, 0, 1 << 20), (2, 0, 1 << 20)])));
        assert_eq!(parts[0].records.len(), 1);
        assert_eq!(parts[1].error_code, ErrorCode::None);
        assert!(parts[1].records.is_empty(), "over max_bytes");
    }
}

one_and_two_shards!(
    fetch_limits_one_shard,
    fetch_limits_two_shards,
    fetch_limits
);

/// PROTOCOL.md, "6 Fetch": "Batches are added while they fit in `partition_max_bytes` and
/// `max_bytes`, except that if the first batch of the response is larger than either, it is
/// returned alone anyway." A later partition whose first batch is over its own
/// `partition_max_bytes` gets nothing.
fn fetch_partition_max_bytes_after_first_batch(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let stored = fetch_limits_setup(&broker);
    let mut c = broker.connect();
    let parts = fetch_parts(c.call(&fetch_req(0, 1, 1 << 20, &[(0, 0, 1 << 20), (2, 0, 10)])));
    assert_eq!(parts[0].records.len(), 3);
    assert_eq!(&parts[0].records[0][..], &stored[&0][0][..]);
    assert_eq!(parts[1].error_code, ErrorCode::None);
    assert!(
        parts[1].records.is_empty(),
        "partition 2's first batch ({} bytes) is over its partition_max_bytes of 10 and is not \
         the first batch of the response",
        stored[&2][0].len()
    );
}

one_and_two_shards!(
    fetch_partition_max_bytes_after_first_batch_one_shard,
    fetch_partition_max_bytes_after_first_batch_two_shards,
    fetch_partition_max_bytes_after_first_batch
);
