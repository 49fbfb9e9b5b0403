//! The replication surface of the protocol against the real broker, on one node (issue 11):
//! Produce v1 with `acks = -1`, the leader hints of Produce/Fetch/ListOffsets v1, Metadata v2
//! (replicas, in-sync replicas, controller), CreateTopic v1's replication factor, DescribeCluster,
//! the refusal of control batches from producers, and version 0 clients unaffected. Each test
//! runs with 1 and 2 shards, the broker started with `--node-id 7` so node ids cannot pass for
//! zeros.

mod common;

use bytes::BytesMut;
use common::broker::*;
use common::{batch, tmpdir};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::*;

const NODE: u32 = 7;

fn start(dir: &std::path::Path, shards: usize) -> Broker {
    Broker::start_with(dir, shards, |cmd| {
        cmd.args(["--node-id", &NODE.to_string()]);
    })
}

fn produce_v1(topic: &str, partition: u32, records: BytesMut, acks: Acks) -> Request {
    Request::Produce(ProduceRequest {
        version: 1,
        acks,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, records }],
        }],
    })
}

fn metadata_v(version: u16, topics: &[&str]) -> Request {
    Request::Metadata(MetadataRequest {
        version,
        topics: Some(topics.iter().map(|s| s.to_string()).collect()),
    })
}

fn metadata_of(resp: Response) -> MetadataResponse {
    match resp {
        Response::Metadata(m) => m,
        other => panic!("expected Metadata, got {other:?}"),
    }
}

fn created(resp: Response) {
    assert_eq!(resp, Response::CreateTopic);
}

/// PROTOCOL.md, "5 Produce": acks = -1 (version 1) is answered once a majority of the replicas
/// hold the batch; with one replica, as acks = 1, with base offsets and no leader hint. Fetch
/// and ListOffsets v1 serve the same data with their hints at -1.
fn produce_v1_acks_all(shards: usize) {
    let dir = tmpdir();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    created(c.call(&create_topic("all", 2)));
    for p in 0..2 {
        for i in 0..3u64 {
            let resp = c.call(&produce_v1("all", p, batch(i, 2, 16, 1), Acks::All));
            let Response::Produce(r) = resp else {
                panic!("{resp:?}")
            };
            let part = &r.topics[0].partitions[0];
            assert_eq!(part.error_code, ErrorCode::None, "{:?}", part.error_message);
            assert_eq!(part.base_offsets, vec![2 * i as i64]);
            assert_eq!(part.leader, LeaderHint::UNKNOWN);
        }
        // acks = 1 at version 1 too.
        let resp = c.call(&produce_v1("all", p, batch(9, 1, 16, 1), Acks::Leader));
        assert_eq!(produce_ok(resp), vec![6]);
    }
    let fetch = Request::Fetch(FetchRequest {
        version: 1,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "all".into(),
            partitions: vec![FetchPartition {
                partition: 1,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
    });
    let f = fetch_partition(c.call(&fetch));
    assert_eq!(f.error_code, ErrorCode::None);
    assert_eq!((f.high_watermark, f.records.len()), (7, 4));
    assert_eq!(f.leader, LeaderHint::UNKNOWN);
    let list = Request::ListOffsets(ListOffsetsRequest {
        version: 1,
        topics: vec![ListOffsetsTopic {
            name: "all".into(),
            partitions: vec![
                ListOffsetsPartition {
                    partition: 0,
                    timestamp: TIMESTAMP_LATEST,
                },
                ListOffsetsPartition {
                    partition: 9,
                    timestamp: TIMESTAMP_LATEST,
                },
            ],
        }],
    });
    let Response::ListOffsets(l) = c.call(&list) else {
        panic!("not ListOffsets")
    };
    let parts = &l.topics[0].partitions;
    assert_eq!((parts[0].error_code, parts[0].offset), (ErrorCode::None, 7));
    assert_eq!(parts[1].error_code, ErrorCode::UnknownTopicOrPartition);
    assert!(parts.iter().all(|p| p.leader == LeaderHint::UNKNOWN));
    // A partition that does not exist is no leader question either.
    let resp = c.call(&produce_v1("all", 5, batch(1, 1, 8, 1), Acks::All));
    let p = produce_partition(resp);
    assert_eq!(p.error_code, ErrorCode::UnknownTopicOrPartition);
    assert_eq!(p.leader, LeaderHint::UNKNOWN);
    broker.stop();
}

one_and_two_shards!(
    produce_v1_acks_all_one_shard,
    produce_v1_acks_all_two_shards,
    produce_v1_acks_all
);

/// PROTOCOL.md, "1 Metadata": version 2 adds each partition's replicas and in-sync replicas
/// (this node) and the controller (this node); versions 0 and 1 keep their layouts.
fn metadata_v2(shards: usize) {
    let dir = tmpdir();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    created(c.call(&create_topic("meta", 3)));
    produce_ok(c.call(&produce_request("meta", 1, batch(1, 2, 8, 1))));
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        let m = metadata_of(c.call(&metadata_v(2, &["meta", "missing"])));
        assert_eq!(m.controller_node, NODE as i32);
        assert_eq!(m.damaged_ranges, Some(vec![]));
        assert_eq!(m.brokers.len(), 1);
        assert_eq!(m.brokers[0].node_id, NODE);
        let t = &m.topics[0];
        assert_eq!(t.error_code, ErrorCode::None);
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition, i as u32);
            assert_eq!(p.error_code, ErrorCode::None);
            assert_eq!(p.leader_node, NODE);
            assert!(usize::from(p.leader_shard) < shards);
            assert_eq!(p.leader_epoch, 0);
            assert_eq!(p.replicas, vec![NODE]);
            assert_eq!(p.in_sync, vec![NODE]);
        }
        assert_eq!(t.partitions[1].high_watermark, 2);
        assert_eq!(m.topics[1].error_code, ErrorCode::UnknownTopicOrPartition);
        // Version 1: damaged ranges, no replicas, no controller; version 0: neither.
        let m1 = metadata_of(c.call(&metadata_v(1, &["meta"])));
        assert_eq!(m1.damaged_ranges, Some(vec![]));
        assert_eq!(m1.controller_node, -1);
        assert!(m1.topics[0]
            .partitions
            .iter()
            .all(|p| p.replicas.is_empty()));
        let m0 = metadata_of(c.call(&metadata_v(0, &["meta"])));
        assert_eq!(m0.damaged_ranges, None);
        assert_eq!(m0.topics, m1.topics);
    }
    broker.stop();
}

one_and_two_shards!(metadata_v2_one_shard, metadata_v2_two_shards, metadata_v2);

/// PROTOCOL.md, "2 CreateTopic": version 1's replication factor is recorded in the placement
/// (Metadata v2 `replicas`); more replicas than live nodes is refused, naming both numbers, and
/// creates nothing.
fn create_v1_replication_factor(shards: usize) {
    let dir = tmpdir();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    for (name, factor) in [("rf1", 1), ("rf0", 0)] {
        let req = CreateTopicRequest::with_defaults(name, 2).with_replication_factor(factor);
        created(c.call(&Request::CreateTopic(req)));
        let m = metadata_of(c.call(&metadata_v(2, &[name])));
        assert!(m.topics[0].partitions.iter().all(|p| p.replicas == [NODE]));
    }
    let req = CreateTopicRequest::with_defaults("rf3", 2).with_replication_factor(3);
    match c.call(&Request::CreateTopic(req)) {
        Response::Error {
            code: ErrorCode::InvalidReplicationFactor,
            message: Some(m),
        } => assert_eq!(
            m,
            "replication factor 3 is more than the 1 live node of the cluster"
        ),
        other => panic!("expected INVALID_REPLICATION_FACTOR, got {other:?}"),
    }
    let m = metadata_of(c.call(&metadata_v(2, &["rf3"])));
    assert_eq!(m.topics[0].error_code, ErrorCode::UnknownTopicOrPartition);
    // The name is free: a create with a factor that fits succeeds.
    let req = CreateTopicRequest::with_defaults("rf3", 1).with_replication_factor(1);
    created(c.call(&Request::CreateTopic(req)));
    drop(c);
    // The replica set survives a restart (it is in catalog.json).
    broker.stop();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    let m = metadata_of(c.call(&metadata_v(2, &["rf1", "rf3"])));
    for t in &m.topics {
        assert_eq!(t.error_code, ErrorCode::None, "{}", t.name);
        assert!(t.partitions.iter().all(|p| p.replicas == [NODE]));
    }
    broker.stop();
}

one_and_two_shards!(
    create_v1_replication_factor_one_shard,
    create_v1_replication_factor_two_shards,
    create_v1_replication_factor
);

/// PROTOCOL.md, "8 DescribeCluster": one node sees itself up and as the metadata leader, every
/// partition led by it with itself as the only replica, in sync, lag 0.
fn describe_cluster_one_node(shards: usize) {
    let dir = tmpdir();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    created(c.call(&create_topic("dc", 2)));
    created(c.call(&create_topic("other", 1)));
    produce_ok(c.call(&produce_request("dc", 0, batch(1, 3, 8, 1))));
    let describe =
        |topics: Option<Vec<String>>| Request::DescribeCluster(DescribeClusterRequest { topics });
    let Response::DescribeCluster(d) = c.call(&describe(None)) else {
        panic!("not DescribeCluster")
    };
    assert_eq!(d.metadata_leader, NODE as i32);
    assert_eq!(
        d.nodes,
        vec![ClusterNode {
            node_id: NODE,
            host: "127.0.0.1".into(),
            port: broker.addr.port(),
            replication_host: String::new(),
            replication_port: 0,
            up: true,
        }]
    );
    let mut names: Vec<&str> = d.topics.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["dc", "other"]);
    let dc = d.topics.iter().find(|t| t.name == "dc").unwrap();
    assert_eq!(dc.error_code, ErrorCode::None);
    assert_eq!(dc.partitions.len(), 2);
    for p in &dc.partitions {
        assert_eq!(p.error_code, ErrorCode::None);
        assert_eq!(p.leader_node, NODE as i32);
        assert!((0..shards as i16).contains(&p.leader_shard));
        assert_eq!(p.leader_epoch, 0);
        assert_eq!(
            p.replicas,
            vec![ClusterReplica {
                node_id: NODE,
                lag_records: 0,
                in_sync: true,
            }]
        );
    }
    assert_eq!(
        (
            dc.partitions[0].high_watermark,
            dc.partitions[0].log_end_offset
        ),
        (3, 3)
    );
    assert_eq!(d.under_replicated_partitions, 0);
    // Asked by name: in request order, an unknown and an invalid name flagged.
    let Response::DescribeCluster(d) = c.call(&describe(Some(vec![
        "other".into(),
        "missing".into(),
        "bad/name".into(),
    ]))) else {
        panic!("not DescribeCluster")
    };
    let codes: Vec<(&str, ErrorCode, usize)> = d
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.error_code, t.partitions.len()))
        .collect();
    assert_eq!(
        codes,
        [
            ("other", ErrorCode::None, 1),
            ("missing", ErrorCode::UnknownTopicOrPartition, 0),
            ("bad/name", ErrorCode::InvalidTopicName, 0),
        ]
    );
    broker.stop();
}

one_and_two_shards!(
    describe_cluster_one_node_one_shard,
    describe_cluster_one_node_two_shards,
    describe_cluster_one_node
);

/// `batch` with the control bit (attributes bit 5) set and its CRC recomputed: well formed,
/// so only the control rule refuses it.
fn control_batch(seed: u64) -> BytesMut {
    let mut b = batch(seed, 1, 8, 1);
    let attributes = i16::from_be_bytes([b[21], b[22]]) | (1 << 5);
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = quill::record::crc_of(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(quill::record::validate_batch(&b, 1 << 20)
        .unwrap()
        .is_control());
    b
}

/// PROTOCOL.md, "5 Produce": a control batch from a producer is refused with INVALID_RECORD and
/// nothing of its partition is appended, in any version; other partitions are not affected.
fn control_batch_refused(shards: usize) {
    let dir = tmpdir();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    created(c.call(&create_topic("ctl", 1)));
    for request in [
        produce_request("ctl", 0, control_batch(1)),
        produce_v1("ctl", 0, control_batch(2), Acks::All),
    ] {
        let p = produce_partition(c.call(&request));
        assert_eq!(p.error_code, ErrorCode::InvalidRecord);
        let message = p.error_message.unwrap();
        assert!(message.contains("control batch"), "{message}");
        assert!(p.base_offsets.is_empty());
    }
    // A good batch followed by a control one: all or none, so none.
    let mut both = batch(3, 2, 8, 1);
    both.extend_from_slice(&control_batch(4));
    let p = produce_partition(c.call(&produce_request("ctl", 0, both)));
    assert_eq!(p.error_code, ErrorCode::InvalidRecord);
    assert!(p.error_message.unwrap().starts_with("batch 1 "));
    let f = fetch_partition(c.call(&fetch_request("ctl", 0, 0, 0)));
    assert_eq!((f.log_end_offset, f.records.len()), (0, 0));
    // The partition still takes ordinary batches.
    assert_eq!(
        produce_ok(c.call(&produce_request("ctl", 0, batch(5, 1, 8, 1)))),
        vec![0]
    );
    broker.stop();
}

one_and_two_shards!(
    control_batch_refused_one_shard,
    control_batch_refused_two_shards,
    control_batch_refused
);

/// A version 0 client is unaffected: acks = -1 is refused at version 0 as before, its
/// responses have the version 0 layout byte for byte (decoding at version 0 checks that the
/// body ends where version 0 ends), and ApiVersions lists the new versions.
fn old_v0_client_unaffected(shards: usize) {
    let dir = tmpdir();
    let broker = start(dir.path(), shards);
    let mut c = broker.connect();
    created(c.call(&create_topic("old", 1)));
    // Produce v0 with acks = -1: the same INVALID_REQUEST as before replication existed.
    let mut body = vec![0xff, 0, 0, 0x75, 0x30];
    body.extend_from_slice(&0i32.to_be_bytes());
    c.send_raw(&raw_frame(ApiKey::Produce as u16, 0, 41, &body));
    match c.recv_raw(ApiKey::Produce) {
        (
            41,
            Response::Error {
                code: ErrorCode::InvalidRequest,
                message: Some(m),
            },
        ) => assert!(m.contains("acks"), "{m}"),
        other => panic!("expected INVALID_REQUEST, got {other:?}"),
    }
    // The version 0 helpers decode at version 0 and refuse trailing bytes.
    assert_eq!(
        produce_ok(c.call(&produce_request("old", 0, batch(1, 2, 8, 1)))),
        vec![0]
    );
    let f = fetch_partition(c.call(&fetch_request("old", 0, 0, 0)));
    assert_eq!((f.high_watermark, f.leader), (2, LeaderHint::UNKNOWN));
    let m = metadata_of(c.call(&metadata_request(Some(&["old"]))));
    assert_eq!(m.topics[0].partitions[0].replicas, Vec::<u32>::new());
    // A version 0 CreateTopic has no replication factor and gets the default.
    created(c.call(&create_topic("old0", 1)));
    // ApiVersions announces the new versions and DescribeCluster.
    let Response::ApiVersions(v) = c.call(&Request::ApiVersions(ApiVersionsRequest {
        client_software_name: "old".into(),
    })) else {
        panic!("not ApiVersions")
    };
    let max = |key: ApiKey| {
        v.apis
            .iter()
            .find(|a| a.api_key == key as u16)
            .map(|a| (a.min_version, a.max_version))
    };
    assert_eq!(max(ApiKey::Produce), Some((0, 1)));
    assert_eq!(max(ApiKey::Metadata), Some((0, 2)));
    assert_eq!(max(ApiKey::CreateTopic), Some((0, 1)));
    assert_eq!(max(ApiKey::DescribeCluster), Some((0, 0)));
    assert_eq!(v.limits.node_id, NODE);
    broker.stop();
}

one_and_two_shards!(
    old_v0_client_unaffected_one_shard,
    old_v0_client_unaffected_two_shards,
    old_v0_client_unaffected
);
