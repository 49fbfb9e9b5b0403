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
            )| {
                CreateTopicRequest {
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
    let acks = prop_oneof![Just(Acks::None), Just(Acks::Leader)];
    let partition =
        (any::<u32>(), vec(any::<u8>(), 0..80)).prop_map(|(partition, records)| ProducePartition {
            partition,
            records: BytesMut::from(&records[..]),
        });
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| ProduceTopic { name, partitions });
    (acks, any::<u32>(), vec(topic, 0..3)).prop_map(|(acks, timeout_ms, topics)| ProduceRequest {
        acks,
        timeout_ms,
        topics,
    })
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
    (any::<u32>(), any::<u32>(), any::<u32>(), vec(topic, 0..3)).prop_map(
        |(max_wait_ms, min_bytes, max_bytes, topics)| FetchRequest {
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
    vec(topic, 0..3).prop_map(|topics| ListOffsetsRequest { topics })
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        name().prop_map(
            |client_software_name| Request::ApiVersions(ApiVersionsRequest {
                client_software_name
            })
        ),
        (option::of(vec(name(), 0..4)), any::<bool>()).prop_map(|(topics, damaged_ranges)| {
            Request::Metadata(MetadataRequest {
                topics,
                damaged_ranges,
            })
        }),
        create_topic().prop_map(Request::CreateTopic),
        name().prop_map(|name| Request::DeleteTopic(DeleteTopicRequest { name })),
        Just(Request::ListTopics),
        produce().prop_map(Request::Produce),
        fetch().prop_map(Request::Fetch),
        list_offsets().prop_map(Request::ListOffsets),
    ]
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
    )
        .prop_map(
            |(partition, error_code, leader_node, leader_shard, leader_epoch, o)| {
                PartitionMetadata {
                    partition,
                    error_code,
                    leader_node,
                    leader_shard,
                    leader_epoch,
                    log_start_offset: o[0],
                    high_watermark: o[1],
                    log_end_offset: o[2],
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
    )
        .prop_map(|(brokers, topics, damaged_ranges)| MetadataResponse {
            brokers,
            topics,
            damaged_ranges,
        })
}

fn produce_response() -> impl Strategy<Value = ProduceResponse> {
    let partition = (any::<u32>(), code(), message(), vec(any::<i64>(), 0..4)).prop_map(
        |(partition, error_code, error_message, base_offsets)| ProducePartitionResponse {
            partition,
            error_code,
            error_message,
            base_offsets,
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
    )
        .prop_map(|(partition, error_code, error_message, o, records)| {
            FetchPartitionResponse {
                partition,
                error_code,
                error_message,
                high_watermark: o[0],
                log_start_offset: o[1],
                log_end_offset: o[2],
                records,
            }
        });
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| FetchTopicResponse { name, partitions });
    vec(topic, 0..3).prop_map(|topics| FetchResponse { topics })
}

fn list_offsets_response() -> impl Strategy<Value = ListOffsetsResponse> {
    let partition =
        (any::<u32>(), code(), any::<i64>()).prop_map(|(partition, error_code, offset)| {
            ListOffsetsPartitionResponse {
                partition,
                error_code,
                offset,
            }
        });
    let topic = (name(), vec(partition, 0..3))
        .prop_map(|(name, partitions)| ListOffsetsTopicResponse { name, partitions });
    vec(topic, 0..3).prop_map(|topics| ListOffsetsResponse { topics })
}

fn api_key() -> impl Strategy<Value = ApiKey> {
    proptest::sample::select(ApiKey::ALL.to_vec())
}

fn arb_response() -> impl Strategy<Value = (ApiKey, Response)> {
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
        (key, response) in arb_response(),
        correlation_id in any::<u32>(),
    ) {
        assert_response_round_trips(key, &response, correlation_id);
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
            if let Err(e) = decode_response(key, Bytes::copy_from_slice(&bytes)) {
                prop_assert_eq!(e.header.is_some(), bytes.len() >= 4);
            }
        }
    }

    /// Random bytes after a valid header reach every body decoder.
    #[test]
    fn random_bodies_never_panic(
        key in 0u16..9,
        body in vec(any::<u8>(), 0..200),
    ) {
        let mut frame = header_bytes(key, 0, 3);
        frame.put_slice(&body);
        if let Err(e) = decode_request(frame) {
            prop_assert_eq!(e.header.map(|h| h.correlation_id), Some(3));
            let expected = if key == 8 {
                vec![ErrorCode::UnsupportedVersion]
            } else {
                vec![ErrorCode::InvalidRequest, ErrorCode::InvalidConfig]
            };
            prop_assert!(expected.contains(&e.code), "{}", e);
        }
    }

    /// A valid frame with bytes after its last field is refused: every decoder checks that it
    /// used the whole frame. (A response tail stays under 4 bytes: a version 0 Metadata
    /// response followed by a whole array count is a valid version 1 one.)
    #[test]
    fn bytes_after_the_last_field_are_refused(
        request in arb_request(),
        (key, response) in arb_response(),
        tail in vec(any::<u8>(), 1..4),
    ) {
        let mut frame = request_frame(&request, 7);
        frame.put_slice(&tail);
        let e = decode_request(frame).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::InvalidRequest, "{:?}: {}", request, e);
        prop_assert_eq!(e.header.map(|h| h.correlation_id), Some(7));
        let mut frame = BytesMut::from(&response_frame(7, &response)[..]);
        frame.put_slice(&tail);
        let e = decode_response(key, frame.freeze()).unwrap_err();
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
        let (key, response) = &sample_responses()[j];
        let mut response = BytesMut::from(&response_frame(1, response)[..]);
        for (at, byte) in &edits {
            let len = request.len();
            request[at.index(len)] = *byte;
            let len = response.len();
            response[at.index(len)] = *byte;
        }
        check_request(request)?;
        check_response(*key, response.freeze())?;
    }

    /// Arbitrary bytes as a request frame and as a response of every API: the same checks as
    /// the fuzz target `frame_decoder`, so they run in CI.
    #[test]
    fn arbitrary_frames_decode_canonically_or_fail_typed(bytes in vec(any::<u8>(), 0..200)) {
        check_request(BytesMut::from(&bytes[..]))?;
        for key in ApiKey::ALL {
            check_response(key, Bytes::copy_from_slice(&bytes))?;
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
fn check_response(key: ApiKey, frame: Bytes) -> Result<(), TestCaseError> {
    if let Ok((correlation_id, response)) = decode_response(key, frame) {
        let again = encode_response(correlation_id, &response).to_bytes();
        let decoded = decode_response(key, again.slice(crate::frame::SIZE_PREFIX_BYTES..));
        prop_assert_eq!(decoded, Ok((correlation_id, response)));
    }
    Ok(())
}
