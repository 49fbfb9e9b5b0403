//! Property tests of the codec: random values round trip, and random or mutated bytes never
//! panic and fail with a typed error.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::samples::{
    assert_request_round_trips, assert_response_round_trips, batch, header_bytes, request_frame,
    response_frame, sample_requests, sample_responses,
};
use super::*;

fn name() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

fn message() -> impl Strategy<Value = Option<String>> {
    option::of("\\PC{0,20}")
}

fn code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn retention() -> impl Strategy<Value = Retention> {
    prop_oneof![
        Just(Retention::Default),
        Just(Retention::Forever),
        (0..=i64::MAX as u64).prop_map(Retention::Limit),
    ]
}

fn setting() -> impl Strategy<Value = Option<u64>> {
    option::of(0..=i64::MAX as u64)
}

fn arb_batches() -> impl Strategy<Value = Vec<Bytes>> {
    vec((1..4usize, any::<u8>()), 0..3)
        .prop_map(|specs| specs.into_iter().map(|(n, seed)| batch(n, seed)).collect())
}

fn create_topic() -> impl Strategy<Value = CreateTopicRequest> {
    let durability = option::of(prop_oneof![
        Just(Durability::Sync),
        Just(Durability::Interval)
    ]);
    (
        name(),
        any::<u32>(),
        retention(),
        retention(),
        setting(),
        setting(),
        durability,
        setting(),
        option::of(any::<u16>()),
    )
        .prop_map(
            |(
                name,
                partitions,
                retention_ms,
                retention_bytes,
                segment_bytes,
                segment_ms,
                durability,
                flush_ms,
                replication_factor,
            )| {
                CreateTopicRequest {
                    // `None`: version 0, which has no replication factor.
                    version: u16::from(replication_factor.is_some()),
                    replication_factor: replication_factor.unwrap_or(0),
                    name,
                    partitions,
                    retention_ms,
                    retention_bytes,
                    segment_bytes,
                    segment_ms,
                    durability,
                    flush_ms,
                }
            },
        )
}

fn produce() -> impl Strategy<Value = ProduceRequest> {
    // Acks::All only at version 1, the first that has it.
    let version_acks = prop_oneof![
        (0..=1u16, Just(Acks::None)),
        (0..=1u16, Just(Acks::Leader)),
        (Just(1u16), Just(Acks::All)),
    ];
    let partition =
        (any::<u32>(), vec(any::<u8>(), 0..80)).prop_map(|(partition, records)| ProducePartition {
            partition,
            records: BytesMut::from(&records[..]),
        });
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| ProduceTopic { name, partitions });
    (version_acks, any::<u32>(), vec(topic, 0..3)).prop_map(
        |((version, acks), timeout_ms, topics)| ProduceRequest {
            version,
            acks,
            timeout_ms,
            topics,
        },
    )
}

fn fetch() -> impl Strategy<Value = FetchRequest> {
    let partition = (any::<u32>(), any::<i64>(), any::<u32>()).prop_map(
        |(partition, fetch_offset, partition_max_bytes)| FetchPartition {
            partition,
            fetch_offset,
            partition_max_bytes,
        },
    );
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| FetchTopic { name, partitions });
    (
        0..=1u16,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        vec(topic, 0..3),
    )
        .prop_map(
            |(version, max_wait_ms, min_bytes, max_bytes, topics)| FetchRequest {
                version,
                max_wait_ms,
                min_bytes,
                max_bytes,
                topics,
            },
        )
}

fn list_offsets() -> impl Strategy<Value = ListOffsetsRequest> {
    let partition =
        (any::<u32>(), any::<i64>()).prop_map(|(partition, timestamp)| ListOffsetsPartition {
            partition,
            timestamp,
        });
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| ListOffsetsTopic { name, partitions });
    (0..=1u16, vec(topic, 0..3))
        .prop_map(|(version, topics)| ListOffsetsRequest { version, topics })
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        name().prop_map(
            |client_software_name| Request::ApiVersions(ApiVersionsRequest {
                client_software_name
            })
        ),
        (option::of(vec(name(), 0..4)), 0..=2u16)
            .prop_map(|(topics, version)| Request::Metadata(MetadataRequest { version, topics })),
        create_topic().prop_map(Request::CreateTopic),
        name().prop_map(|name| Request::DeleteTopic(DeleteTopicRequest { name })),
        Just(Request::ListTopics),
        produce().prop_map(Request::Produce),
        fetch().prop_map(Request::Fetch),
        list_offsets().prop_map(Request::ListOffsets),
        option::of(vec(name(), 0..4))
            .prop_map(|topics| Request::DescribeCluster(DescribeClusterRequest { topics })),
    ]
}

fn leader_hint() -> impl Strategy<Value = LeaderHint> {
    (any::<i32>(), any::<i16>(), any::<i32>()).prop_map(
        |(leader_node, leader_shard, leader_epoch)| LeaderHint {
            leader_node,
            leader_shard,
            leader_epoch,
        },
    )
}

fn api_versions_response() -> impl Strategy<Value = ApiVersionsResponse> {
    let range = (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(
        |(api_key, min_version, max_version)| ApiVersionRange {
            api_key,
            min_version,
            max_version,
        },
    );
    let limits = (any::<[u32; 6]>(), any::<u16>()).prop_map(|(l, shard_count)| Limits {
        frame_bytes_max: l[0],
        batch_bytes_max: l[1],
        fetch_bytes_max: l[2],
        fetch_wait_ms_max: l[3],
        inflight_requests_max: l[4],
        node_id: l[5],
        shard_count,
    });
    (vec(range, 0..10), limits).prop_map(|(apis, limits)| ApiVersionsResponse { apis, limits })
}

fn metadata_response() -> impl Strategy<Value = MetadataResponse> {
    let shard_port =
        (any::<u16>(), any::<u16>()).prop_map(|(shard_id, port)| ShardPort { shard_id, port });
    let broker = (any::<u32>(), name(), any::<u16>(), vec(shard_port, 0..4)).prop_map(
        |(node_id, host, port, shard_ports)| BrokerMetadata {
            node_id,
            host,
            port,
            shard_ports,
        },
    );
    let partition = (
        any::<u32>(),
        code(),
        any::<u32>(),
        any::<u16>(),
        any::<i32>(),
        any::<[i64; 3]>(),
        vec(any::<u32>(), 0..4),
        vec(any::<u32>(), 0..4),
    )
        .prop_map(
            |(
                partition,
                error_code,
                leader_node,
                leader_shard,
                leader_epoch,
                o,
                replicas,
                in_sync,
            )| {
                PartitionMetadata {
                    partition,
                    error_code,
                    leader_node,
                    leader_shard,
                    leader_epoch,
                    log_start_offset: o[0],
                    high_watermark: o[1],
                    log_end_offset: o[2],
                    replicas,
                    in_sync,
                }
            },
        );
    let topic =
        (code(), name(), vec(partition, 0..3)).prop_map(|(error_code, name, partitions)| {
            TopicMetadata {
                error_code,
                name,
                partitions,
            }
        });
    let damaged = (name(), any::<u32>(), any::<i64>(), any::<i64>()).prop_map(
        |(topic, partition, first_offset, last_offset)| DamagedRangeMetadata {
            topic,
            partition,
            first_offset,
            last_offset,
        },
    );
    (
        vec(broker, 0..3),
        vec(topic, 0..3),
        option::of(vec(damaged, 0..3)),
        any::<i32>(),
    )
        .prop_map(
            |(brokers, topics, damaged_ranges, controller_node)| MetadataResponse {
                brokers,
                topics,
                damaged_ranges,
                controller_node,
            },
        )
}

fn produce_response() -> impl Strategy<Value = ProduceResponse> {
    let partition = (
        any::<u32>(),
        code(),
        message(),
        vec(any::<i64>(), 0..4),
        leader_hint(),
    )
        .prop_map(
            |(partition, error_code, error_message, base_offsets, leader)| {
                ProducePartitionResponse {
                    partition,
                    error_code,
                    error_message,
                    base_offsets,
                    leader,
                }
            },
        );
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| ProduceTopicResponse { name, partitions });
    vec(topic, 0..3).prop_map(|topics| ProduceResponse { topics })
}

fn fetch_response() -> impl Strategy<Value = FetchResponse> {
    let partition = (
        any::<u32>(),
        code(),
        message(),
        any::<[i64; 3]>(),
        arb_batches(),
        leader_hint(),
    )
        .prop_map(
            |(partition, error_code, error_message, o, records, leader)| FetchPartitionResponse {
                partition,
                error_code,
                error_message,
                leader,
                high_watermark: o[0],
                log_start_offset: o[1],
                log_end_offset: o[2],
                records,
            },
        );
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| FetchTopicResponse { name, partitions });
    vec(topic, 0..3).prop_map(|topics| FetchResponse { topics })
}

fn list_offsets_response() -> impl Strategy<Value = ListOffsetsResponse> {
    let partition = (any::<u32>(), code(), any::<i64>(), leader_hint()).prop_map(
        |(partition, error_code, offset, leader)| ListOffsetsPartitionResponse {
            partition,
            error_code,
            offset,
            leader,
        },
    );
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| ListOffsetsTopicResponse { name, partitions });
    vec(topic, 0..3).prop_map(|topics| ListOffsetsResponse { topics })
}

fn describe_cluster_response() -> impl Strategy<Value = DescribeClusterResponse> {
    let node = (
        any::<u32>(),
        name(),
        any::<u16>(),
        name(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(
            |(node_id, host, port, replication_host, replication_port, up)| ClusterNode {
                node_id,
                host,
                port,
                replication_host,
                replication_port,
                up,
            },
        );
    let replica =
        (any::<u32>(), any::<i64>(), any::<bool>()).prop_map(|(node_id, lag_records, in_sync)| {
            ClusterReplica {
                node_id,
                lag_records,
                in_sync,
            }
        });
    let partition = (
        any::<u32>(),
        code(),
        leader_hint(),
        any::<[i64; 2]>(),
        vec(replica, 0..4),
    )
        .prop_map(|(partition, error_code, l, o, replicas)| ClusterPartition {
            partition,
            error_code,
            leader_node: l.leader_node,
            leader_shard: l.leader_shard,
            leader_epoch: l.leader_epoch,
            high_watermark: o[0],
            log_end_offset: o[1],
            replicas,
        });
    let topic =
        (code(), name(), vec(partition, 0..3)).prop_map(|(error_code, name, partitions)| {
            ClusterTopic {
                error_code,
                name,
                partitions,
            }
        });
    (
        any::<i32>(),
        vec(node, 0..3),
        vec(topic, 0..3),
        any::<u32>(),
    )
        .prop_map(
            |(metadata_leader, nodes, topics, under_replicated_partitions)| {
                DescribeClusterResponse {
                    metadata_leader,
                    nodes,
                    topics,
                    under_replicated_partitions,
                }
            },
        )
}

/// `response` as decoding it at `version` gives it back: the fields that version lacks at
/// their defaults.
fn at_version(version: u16, response: Response) -> Response {
    let hint = |h: LeaderHint| if version >= 1 { h } else { LeaderHint::UNKNOWN };
    match response {
        Response::Metadata(mut m) => {
            if version < 1 {
                m.damaged_ranges = None;
            } else if m.damaged_ranges.is_none() {
                m.damaged_ranges = Some(Vec::new());
            }
            if version < 2 {
                m.controller_node = -1;
                for p in m.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    p.replicas.clear();
                    p.in_sync.clear();
                }
            }
            Response::Metadata(m)
        }
        Response::Produce(mut r) => {
            for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.leader = hint(p.leader);
            }
            Response::Produce(r)
        }
        Response::Fetch(mut r) => {
            for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.leader = hint(p.leader);
            }
            Response::Fetch(r)
        }
        Response::ListOffsets(mut r) => {
            for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.leader = hint(p.leader);
            }
            Response::ListOffsets(r)
        }
        other => other,
    }
}

fn api_key() -> impl Strategy<Value = ApiKey> {
    proptest::sample::select(ApiKey::ALL.to_vec())
}

/// A response with the version it answers, the fields of later versions at their defaults.
fn arb_response() -> impl Strategy<Value = (ApiKey, u16, Response)> {
    (arb_any_response(), any::<prop::sample::Index>()).prop_map(|((key, response), i)| {
        let (min, max) = key.versions();
        let version = min + i.index(usize::from(max - min) + 1) as u16;
        (key, version, at_version(version, response))
    })
}

fn arb_any_response() -> impl Strategy<Value = (ApiKey, Response)> {
    let list_topics = vec((name(), any::<u32>()), 0..4).prop_map(|topics| ListTopicsResponse {
        topics: topics
            .into_iter()
            .map(|(name, partitions)| TopicListing { name, partitions })
            .collect(),
    });
    let error = (
        api_key(),
        proptest::sample::select(ErrorCode::ALL[1..].to_vec()),
        message(),
    )
        .prop_map(|(key, code, message)| (key, Response::Error { code, message }));
    prop_oneof![
        api_versions_response().prop_map(|r| (ApiKey::ApiVersions, Response::ApiVersions(r))),
        metadata_response().prop_map(|r| (ApiKey::Metadata, Response::Metadata(r))),
        Just((ApiKey::CreateTopic, Response::CreateTopic)),
        Just((ApiKey::DeleteTopic, Response::DeleteTopic)),
        list_topics.prop_map(|r| (ApiKey::ListTopics, Response::ListTopics(r))),
        produce_response().prop_map(|r| (ApiKey::Produce, Response::Produce(r))),
        fetch_response().prop_map(|r| (ApiKey::Fetch, Response::Fetch(r))),
        list_offsets_response().prop_map(|r| (ApiKey::ListOffsets, Response::ListOffsets(r))),
        describe_cluster_response()
            .prop_map(|r| (ApiKey::DescribeCluster, Response::DescribeCluster(r))),
        error,
    ]
}

proptest! {
    #[test]
    fn random_requests_round_trip(request in arb_request(), correlation_id in any::<u32>()) {
        assert_request_round_trips(&request, correlation_id);
    }

    #[test]
    fn random_responses_round_trip(
        (key, version, response) in arb_response(),
        correlation_id in any::<u32>(),
    ) {
        assert_response_round_trips(key, version, &response, correlation_id);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        match decode_request(BytesMut::from(&bytes[..])) {
            Ok((header, request)) => prop_assert_eq!(header.api_key, request.api_key() as u16),
            Err(e) => {
                prop_assert_eq!(e.header.is_some(), bytes.len() >= REQUEST_HEADER_BYTES);
                prop_assert!(!e.message.is_empty());
            }
        }
        for key in ApiKey::ALL {
            for version in key.versions().0..=key.versions().1 {
                if let Err(e) = decode_response(key, version, Bytes::copy_from_slice(&bytes)) {
                    prop_assert_eq!(e.header.is_some(), bytes.len() >= 4);
                }
            }
        }
    }

    /// Random bytes after a valid header reach every body decoder.
    #[test]
    fn random_bodies_never_panic(
        key in 0u16..10,
        version in 0u16..3,
        body in vec(any::<u8>(), 0..200),
    ) {
        let mut frame = header_bytes(key, version, 3);
        frame.put_slice(&body);
        if let Err(e) = decode_request(frame) {
            prop_assert_eq!(e.header.map(|h| h.correlation_id), Some(3));
            let served = ApiKey::from_u16(key)
                .is_some_and(|k| (k.versions().0..=k.versions().1).contains(&version));
            let expected = if !served {
                vec![ErrorCode::UnsupportedVersion]
            } else {
                vec![ErrorCode::InvalidRequest, ErrorCode::InvalidConfig]
            };
            prop_assert!(expected.contains(&e.code), "{}", e);
        }
    }

    /// A valid frame with bytes after its last field is refused: every decoder checks that it
    /// used the whole frame.
    #[test]
    fn bytes_after_the_last_field_are_refused(
        request in arb_request(),
        (key, version, response) in arb_response(),
        tail in vec(any::<u8>(), 1..4),
    ) {
        let mut frame = request_frame(&request, 7);
        frame.put_slice(&tail);
        let e = decode_request(frame).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::InvalidRequest, "{:?}: {}", request, e);
        prop_assert_eq!(e.header.map(|h| h.correlation_id), Some(7));
        let mut frame = BytesMut::from(&response_frame(7, version, &response)[..]);
        frame.put_slice(&tail);
        let e = decode_response(key, version, frame.freeze()).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::InvalidRequest, "{:?}: {}", response, e);
    }

    /// Valid frames with a few bytes changed: deep inside the decoders.
    #[test]
    fn mutated_frames_never_panic(
        i in 0..sample_requests().len(),
        j in 0..sample_responses().len(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut request = request_frame(&sample_requests()[i], 1);
        let (key, version, response) = &sample_responses()[j];
        let mut response = BytesMut::from(&response_frame(1, *version, response)[..]);
        for (at, byte) in &edits {
            let len = request.len();
            request[at.index(len)] = *byte;
            let len = response.len();
            response[at.index(len)] = *byte;
        }
        check_request(request)?;
        check_response(*key, *version, response.freeze())?;
    }

    /// Arbitrary bytes as a request frame and as a response of every API: the same checks as
    /// the fuzz target `frame_decoder`, so they run in CI.
    #[test]
    fn arbitrary_frames_decode_canonically_or_fail_typed(bytes in vec(any::<u8>(), 0..200)) {
        check_request(BytesMut::from(&bytes[..]))?;
        for key in ApiKey::ALL {
            for version in key.versions().0..=key.versions().1 {
                check_response(key, version, Bytes::copy_from_slice(&bytes))?;
            }
        }
    }
}

/// A request frame (no size prefix) either decodes to a request that encodes back to the same
/// bytes (the encoding is canonical) with the header's API key, or fails with a message and a
/// header exactly when the header's bytes were there.
fn check_request(frame: BytesMut) -> Result<(), TestCaseError> {
    let original = frame.to_vec();
    let _ = crate::protocol::frame_expects_response(&original);
    match decode_request(frame) {
        Ok((header, request)) => {
            prop_assert_eq!(header.api_key, request.api_key() as u16);
            let mut out = BytesMut::new();
            request.encode(header.correlation_id, &mut out);
            prop_assert_eq!(&out[crate::frame::SIZE_PREFIX_BYTES..], &original[..]);
        }
        Err(e) => {
            prop_assert_eq!(
                e.header.is_some(),
                original.len() >= crate::frame::REQUEST_HEADER_BYTES
            );
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

/// A response frame that decodes re-encodes to a frame that decodes to the same response.
fn check_response(key: ApiKey, version: u16, frame: Bytes) -> Result<(), TestCaseError> {
    if let Ok((correlation_id, response)) = decode_response(key, version, frame) {
        let again = encode_response(correlation_id, version, &response).to_bytes();
        let decoded = decode_response(key, version, again.slice(crate::frame::SIZE_PREFIX_BYTES..));
        prop_assert_eq!(decoded, Ok((correlation_id, response)));
    }
    Ok(())
}
