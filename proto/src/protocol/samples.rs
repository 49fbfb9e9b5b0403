//! Sample values of every request and response, and the round-trip assertions, shared by the
//! codec's tests and its property tests.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::frame::FrameDecoder;
use crate::record::BatchBuilder;

pub(super) fn batch(records: usize, seed: u8) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for i in 0..records {
        let value = vec![seed; i + 1];
        b.push(1_700_000_000_000 + i as i64, Some(b"k"), Some(&value), &[]);
    }
    b.finish().freeze()
}

pub(super) fn concat(batches: &[Bytes]) -> BytesMut {
    let mut out = BytesMut::new();
    for b in batches {
        out.put_slice(b);
    }
    out
}

pub(super) fn sample_requests() -> Vec<Request> {
    vec![
        Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "quill-test 0.1 ✓".into(),
        }),
        Request::Metadata(MetadataRequest::new(None)),
        Request::Metadata(MetadataRequest::new(Some(vec![
            "a".into(),
            "".into(),
            "events".into(),
        ]))),
        Request::Metadata(MetadataRequest {
            version: 1,
            topics: Some(vec!["events".into()]),
        }),
        Request::Metadata(MetadataRequest::latest(None)),
        Request::CreateTopic(CreateTopicRequest::with_defaults("events", 3)),
        Request::CreateTopic(
            CreateTopicRequest::with_defaults("events", 3).with_replication_factor(3),
        ),
        Request::CreateTopic(CreateTopicRequest {
            version: 1,
            name: "logs".into(),
            partitions: 12,
            retention_ms: Retention::Limit(7 * 24 * 3600 * 1000),
            retention_bytes: Retention::Forever,
            segment_bytes: Some(1 << 30),
            segment_ms: Some(0),
            durability: Some(Durability::Interval),
            flush_ms: Some(5),
            replication_factor: 0,
        }),
        Request::DeleteTopic(DeleteTopicRequest {
            name: "events".into(),
        }),
        Request::ListTopics,
        Request::Produce(ProduceRequest {
            version: 0,
            acks: Acks::Leader,
            timeout_ms: 30_000,
            topics: vec![
                ProduceTopic {
                    name: "events".into(),
                    partitions: vec![
                        ProducePartition {
                            partition: 0,
                            records: concat(&[batch(2, 1), batch(1, 2)]),
                        },
                        ProducePartition {
                            partition: 7,
                            records: BytesMut::new(),
                        },
                    ],
                },
                ProduceTopic {
                    name: "empty".into(),
                    partitions: vec![],
                },
            ],
        }),
        Request::Produce(ProduceRequest {
            version: 0,
            acks: Acks::None,
            timeout_ms: 0,
            topics: vec![],
        }),
        Request::Produce(ProduceRequest {
            version: 1,
            acks: Acks::All,
            timeout_ms: 5_000,
            topics: vec![ProduceTopic {
                name: "events".into(),
                partitions: vec![ProducePartition {
                    partition: 1,
                    records: concat(&[batch(3, 4)]),
                }],
            }],
        }),
        Request::Produce(ProduceRequest {
            version: 1,
            acks: Acks::None,
            timeout_ms: 0,
            topics: vec![],
        }),
        Request::Fetch(FetchRequest {
            version: 1,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: "events".into(),
                partitions: vec![
                    FetchPartition {
                        partition: 0,
                        fetch_offset: 42,
                        partition_max_bytes: 65536,
                    },
                    FetchPartition {
                        partition: 1,
                        fetch_offset: -1,
                        partition_max_bytes: 0,
                    },
                ],
            }],
        }),
        Request::Fetch(FetchRequest {
            version: 0,
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 0,
            topics: vec![],
        }),
        Request::ListOffsets(ListOffsetsRequest {
            version: 0,
            topics: vec![ListOffsetsTopic {
                name: "events".into(),
                partitions: vec![
                    ListOffsetsPartition {
                        partition: 0,
                        timestamp: TIMESTAMP_LATEST,
                    },
                    ListOffsetsPartition {
                        partition: 1,
                        timestamp: TIMESTAMP_EARLIEST,
                    },
                    ListOffsetsPartition {
                        partition: 2,
                        timestamp: 1_700_000_000_000,
                    },
                ],
            }],
        }),
        Request::ListOffsets(ListOffsetsRequest {
            version: 1,
            topics: vec![],
        }),
        Request::DescribeCluster(DescribeClusterRequest { topics: None }),
        Request::DescribeCluster(DescribeClusterRequest {
            topics: Some(vec!["events".into(), "".into()]),
        }),
    ]
}

pub(super) fn doc_limits() -> Limits {
    Limits {
        frame_bytes_max: 16 << 20,
        batch_bytes_max: 1 << 20,
        fetch_bytes_max: 8 << 20,
        fetch_wait_ms_max: 30_000,
        inflight_requests_max: 64,
        node_id: 1,
        shard_count: 4,
    }
}

fn metadata_partition(partition: u32, replicas: Vec<u32>, in_sync: Vec<u32>) -> PartitionMetadata {
    PartitionMetadata {
        partition,
        error_code: ErrorCode::None,
        leader_node: 1,
        leader_shard: 1,
        leader_epoch: 3,
        log_start_offset: 0,
        high_watermark: 100,
        log_end_offset: 101,
        replicas,
        in_sync,
    }
}

fn metadata_brokers() -> Vec<BrokerMetadata> {
    vec![BrokerMetadata {
        node_id: 1,
        host: "broker-1.local".into(),
        port: 9092,
        shard_ports: vec![
            ShardPort {
                shard_id: 0,
                port: 9100,
            },
            ShardPort {
                shard_id: 1,
                port: 9101,
            },
        ],
    }]
}

fn not_leader() -> LeaderHint {
    LeaderHint {
        leader_node: 2,
        leader_shard: 0,
        leader_epoch: 7,
    }
}

/// Sample responses with the version of the request they answer. A field a version does not
/// have holds its default (what decoding that version gives back).
pub(super) fn sample_responses() -> Vec<(ApiKey, u16, Response)> {
    let mut out = vec![
        (
            ApiKey::ApiVersions,
            0,
            Response::ApiVersions(ApiVersionsResponse::supported(doc_limits())),
        ),
        (
            ApiKey::Metadata,
            0,
            Response::Metadata(MetadataResponse {
                brokers: metadata_brokers(),
                topics: vec![
                    TopicMetadata {
                        error_code: ErrorCode::None,
                        name: "events".into(),
                        partitions: vec![metadata_partition(0, vec![], vec![])],
                    },
                    TopicMetadata {
                        error_code: ErrorCode::UnknownTopicOrPartition,
                        name: "nope".into(),
                        partitions: vec![],
                    },
                ],
                damaged_ranges: None,
                controller_node: -1,
            }),
        ),
        (
            ApiKey::Metadata,
            1,
            Response::Metadata(MetadataResponse {
                brokers: vec![],
                topics: vec![],
                damaged_ranges: Some(vec![DamagedRangeMetadata {
                    topic: "events".into(),
                    partition: 0,
                    first_offset: 35,
                    last_offset: 39,
                }]),
                controller_node: -1,
            }),
        ),
        (
            ApiKey::Metadata,
            2,
            Response::Metadata(MetadataResponse {
                brokers: metadata_brokers(),
                topics: vec![TopicMetadata {
                    error_code: ErrorCode::None,
                    name: "events".into(),
                    partitions: vec![
                        metadata_partition(0, vec![1, 2, 3], vec![1, 3]),
                        PartitionMetadata {
                            error_code: ErrorCode::LeaderNotAvailable,
                            ..metadata_partition(1, vec![2], vec![])
                        },
                    ],
                }],
                damaged_ranges: Some(vec![]),
                controller_node: 1,
            }),
        ),
        (ApiKey::CreateTopic, 0, Response::CreateTopic),
        (ApiKey::CreateTopic, 1, Response::CreateTopic),
        (ApiKey::DeleteTopic, 0, Response::DeleteTopic),
        (
            ApiKey::ListTopics,
            0,
            Response::ListTopics(ListTopicsResponse {
                topics: vec![
                    TopicListing {
                        name: "events".into(),
                        partitions: 3,
                    },
                    TopicListing {
                        name: "logs".into(),
                        partitions: 12,
                    },
                ],
            }),
        ),
        (
            ApiKey::Produce,
            0,
            Response::Produce(ProduceResponse {
                topics: vec![ProduceTopicResponse {
                    name: "events".into(),
                    partitions: vec![
                        ProducePartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            error_message: None,
                            base_offsets: vec![100, 102],
                            leader: LeaderHint::UNKNOWN,
                        },
                        ProducePartitionResponse {
                            partition: 7,
                            error_code: ErrorCode::CorruptMessage,
                            error_message: Some("CRC-32C mismatch".into()),
                            base_offsets: vec![],
                            leader: LeaderHint::UNKNOWN,
                        },
                    ],
                }],
            }),
        ),
        (
            ApiKey::Produce,
            1,
            Response::Produce(ProduceResponse {
                topics: vec![ProduceTopicResponse {
                    name: "events".into(),
                    partitions: vec![
                        ProducePartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            error_message: None,
                            base_offsets: vec![5],
                            leader: LeaderHint::UNKNOWN,
                        },
                        ProducePartitionResponse {
                            partition: 1,
                            error_code: ErrorCode::NotLeader,
                            error_message: Some("not the leader".into()),
                            base_offsets: vec![],
                            leader: not_leader(),
                        },
                    ],
                }],
            }),
        ),
        (
            ApiKey::Fetch,
            0,
            Response::Fetch(FetchResponse {
                topics: vec![FetchTopicResponse {
                    name: "events".into(),
                    partitions: vec![
                        FetchPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            error_message: None,
                            leader: LeaderHint::UNKNOWN,
                            high_watermark: 3,
                            log_start_offset: 0,
                            log_end_offset: 3,
                            records: vec![batch(2, 1), batch(1, 2)],
                        },
                        FetchPartitionResponse {
                            partition: 1,
                            error_code: ErrorCode::OffsetOutOfRange,
                            error_message: Some("offset 99 is past the end".into()),
                            leader: LeaderHint::UNKNOWN,
                            high_watermark: 10,
                            log_start_offset: 5,
                            log_end_offset: 10,
                            records: vec![],
                        },
                    ],
                }],
            }),
        ),
        (
            ApiKey::Fetch,
            1,
            Response::Fetch(FetchResponse {
                topics: vec![FetchTopicResponse {
                    name: "events".into(),
                    partitions: vec![
                        FetchPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            error_message: None,
                            leader: LeaderHint::UNKNOWN,
                            high_watermark: 3,
                            log_start_offset: 0,
                            log_end_offset: 3,
                            records: vec![batch(2, 1)],
                        },
                        FetchPartitionResponse {
                            partition: 1,
                            error_code: ErrorCode::NotLeader,
                            error_message: None,
                            leader: not_leader(),
                            high_watermark: -1,
                            log_start_offset: -1,
                            log_end_offset: -1,
                            records: vec![],
                        },
                    ],
                }],
            }),
        ),
        (
            ApiKey::ListOffsets,
            0,
            Response::ListOffsets(ListOffsetsResponse {
                topics: vec![ListOffsetsTopicResponse {
                    name: "events".into(),
                    partitions: vec![
                        ListOffsetsPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            offset: 100,
                            leader: LeaderHint::UNKNOWN,
                        },
                        ListOffsetsPartitionResponse {
                            partition: 1,
                            error_code: ErrorCode::None,
                            offset: OFFSET_NONE,
                            leader: LeaderHint::UNKNOWN,
                        },
                    ],
                }],
            }),
        ),
        (
            ApiKey::ListOffsets,
            1,
            Response::ListOffsets(ListOffsetsResponse {
                topics: vec![ListOffsetsTopicResponse {
                    name: "events".into(),
                    partitions: vec![ListOffsetsPartitionResponse {
                        partition: 0,
                        error_code: ErrorCode::NotLeader,
                        offset: OFFSET_NONE,
                        leader: not_leader(),
                    }],
                }],
            }),
        ),
        (
            ApiKey::DescribeCluster,
            0,
            Response::DescribeCluster(DescribeClusterResponse {
                metadata_leader: 1,
                nodes: vec![
                    ClusterNode {
                        node_id: 1,
                        host: "broker-1.local".into(),
                        port: 9092,
                        replication_host: "10.0.0.1".into(),
                        replication_port: 9300,
                        up: true,
                    },
                    ClusterNode {
                        node_id: 2,
                        host: "broker-2.local".into(),
                        port: 9092,
                        replication_host: String::new(),
                        replication_port: 0,
                        up: false,
                    },
                ],
                topics: vec![
                    ClusterTopic {
                        error_code: ErrorCode::None,
                        name: "events".into(),
                        partitions: vec![ClusterPartition {
                            partition: 0,
                            error_code: ErrorCode::None,
                            leader_node: 1,
                            leader_shard: 0,
                            leader_epoch: 4,
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
                    },
                    ClusterTopic {
                        error_code: ErrorCode::UnknownTopicOrPartition,
                        name: "nope".into(),
                        partitions: vec![],
                    },
                ],
                under_replicated_partitions: 1,
            }),
        ),
    ];
    // An error answers any API, including ones the client does not expect a body from.
    for key in ApiKey::ALL {
        let version = key.version_max();
        out.push((
            key,
            version,
            Response::error(ErrorCode::StorageError, "disk full"),
        ));
        out.push((
            key,
            version,
            Response::Error {
                code: ErrorCode::UnsupportedVersion,
                message: None,
            },
        ));
    }
    out
}

/// A request as the broker sees it: encoded, then cut out of a read buffer.
pub(super) fn request_frame(request: &Request, correlation_id: u32) -> BytesMut {
    let mut buf = BytesMut::new();
    request.encode(correlation_id, &mut buf);
    let frame = FrameDecoder::new(1 << 24)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    frame
}

/// A response as a client sees it: encoded, then cut out of a read buffer.
pub(super) fn response_frame(correlation_id: u32, version: u16, response: &Response) -> Bytes {
    let encoded = encode_response(correlation_id, version, response);
    let mut buf = BytesMut::from(&encoded.to_bytes()[..]);
    assert_eq!(buf.len(), encoded.len());
    let frame = FrameDecoder::for_responses(1 << 24)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    frame.freeze()
}

pub(super) fn assert_request_round_trips(request: &Request, correlation_id: u32) {
    let (header, decoded) = decode_request(request_frame(request, correlation_id))
        .unwrap_or_else(|e| panic!("{request:?}: {e}"));
    assert_eq!(
        header,
        RequestHeader {
            api_key: request.api_key() as u16,
            api_version: request.version(),
            correlation_id,
        }
    );
    assert_eq!(&decoded, request);
}

pub(super) fn assert_response_round_trips(
    api_key: ApiKey,
    version: u16,
    response: &Response,
    correlation_id: u32,
) {
    let frame = response_frame(correlation_id, version, response);
    let (id, decoded) = decode_response(api_key, version, frame)
        .unwrap_or_else(|e| panic!("{response:?} at version {version}: {e}"));
    assert_eq!(id, correlation_id);
    assert_eq!(&decoded, response);
}

pub(super) fn header_bytes(api_key: u16, api_version: u16, correlation_id: u32) -> BytesMut {
    let mut frame = BytesMut::new();
    RequestHeader {
        api_key,
        api_version,
        correlation_id,
    }
    .encode(&mut frame);
    frame
}
