//! Tests of the codec: round trips of every request and response, hostile input, and the
//! examples of `docs/PROTOCOL.md`. Random values are in `proptests.rs`.

use bytes::{BufMut, BytesMut};

use super::samples::*;
use super::*;
use crate::frame::{FrameDecoder, SIZE_PREFIX_BYTES};
use crate::record::{set_base_offset, validate_batch};

const PROTOCOL_MD: &str = include_str!("../../../docs/PROTOCOL.md");

#[test]
fn every_request_round_trips() {
    let requests = sample_requests();
    let mut seen: Vec<ApiKey> = requests.iter().map(Request::api_key).collect();
    seen.dedup();
    assert_eq!(seen, ApiKey::ALL);
    for (i, request) in requests.iter().enumerate() {
        assert_request_round_trips(request, i as u32 * 0x0101_0101);
    }
}

#[test]
fn every_response_round_trips() {
    for (i, (key, version, response)) in sample_responses().iter().enumerate() {
        assert_response_round_trips(*key, *version, response, u32::MAX - i as u32);
    }
    // Every version of every API has a sample.
    for key in ApiKey::ALL {
        let (min, max) = key.versions();
        for v in min..=max {
            assert!(
                sample_responses()
                    .iter()
                    .any(|(k, version, r)| *k == key && *version == v && r.api_key().is_some()),
                "no sample response for {} version {v}",
                key.as_str()
            );
            if !matches!(key, ApiKey::DeleteTopic | ApiKey::ListTopics) {
                assert!(
                    sample_requests()
                        .iter()
                        .any(|r| r.api_key() == key && r.version() == v),
                    "no sample request for {} version {v}",
                    key.as_str()
                );
            }
        }
    }
}

#[test]
fn api_keys_and_versions() {
    for (i, key) in ApiKey::ALL.iter().enumerate() {
        assert_eq!(ApiKey::from_u16(i as u16), Some(*key));
        // Metadata version 1 carries damaged ranges (issue 9); issue 11 (replication) adds
        // Metadata 2, CreateTopic 1, Produce 1, Fetch 1, ListOffsets 1 and DescribeCluster.
        let max = match key {
            ApiKey::Metadata => 2,
            ApiKey::CreateTopic | ApiKey::Produce | ApiKey::Fetch | ApiKey::ListOffsets => 1,
            _ => 0,
        };
        assert_eq!(key.versions(), (0, max));
    }
    assert_eq!(ApiKey::from_u16(9), None);
    assert_eq!(ApiKey::SUPPORTED, SUPPORTED);
    let apis = ApiVersionsResponse::supported(Limits::default()).apis;
    assert_eq!(apis.len(), 9);
    assert!(apis.iter().enumerate().all(|(i, a)| a.api_key == i as u16));
}

#[test]
fn only_acks_zero_produce_goes_unanswered() {
    for request in sample_requests() {
        let unanswered = matches!(
            &request,
            Request::Produce(ProduceRequest {
                acks: Acks::None,
                ..
            })
        );
        assert_eq!(request.expects_response(), !unanswered);
    }
}

#[test]
fn unknown_api_key_or_version_is_unsupported_with_the_header() {
    for (api_key, api_version) in [(9, 0), (u16::MAX, 0), (5, 2), (8, 1), (0, u16::MAX)] {
        let mut frame = header_bytes(api_key, api_version, 77);
        frame.put_slice(b"whatever body");
        let e = decode_request(frame).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedVersion, "{e}");
        let header = e.header.unwrap();
        assert_eq!((header.api_key, header.api_version), (api_key, api_version));
        assert_eq!(header.correlation_id, 77);
        let (id, response) = e.to_response().unwrap();
        assert_eq!(id, 77);
        assert!(matches!(
            response,
            Response::Error {
                code: ErrorCode::UnsupportedVersion,
                ..
            }
        ));
    }
}

#[test]
fn short_frame_has_no_header() {
    for len in 0..REQUEST_HEADER_BYTES {
        let e = decode_request(BytesMut::from(&[0u8; 8][..len])).unwrap_err();
        assert_eq!((e.header, e.code), (None, ErrorCode::InvalidRequest));
        assert_eq!(e.to_response(), None);
    }
}

#[test]
fn trailing_bytes_are_invalid() {
    for (i, request) in sample_requests().iter().enumerate() {
        let mut frame = request_frame(request, i as u32);
        frame.put_u8(0);
        let e = decode_request(frame).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{request:?}");
        assert_eq!(e.header.unwrap().correlation_id, i as u32);
        assert!(e.message.contains("1 bytes follow"), "{e}");
    }
    for (key, version, response) in sample_responses() {
        let mut frame = BytesMut::from(&response_frame(9, version, &response)[..]);
        frame.put_u8(0);
        let e = decode_response(key, version, frame.freeze()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{response:?}");
        assert_eq!(e.header.unwrap().correlation_id, 9);
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    for request in sample_requests() {
        let frame = request_frame(&request, 5);
        for len in 0..frame.len() {
            let e = decode_request(BytesMut::from(&frame[..len])).unwrap_err();
            assert_eq!(
                e.code,
                ErrorCode::InvalidRequest,
                "{request:?} cut at {len}"
            );
            assert_eq!(e.header.is_some(), len >= REQUEST_HEADER_BYTES);
            assert!(!e.message.is_empty());
        }
    }
    for (key, version, response) in sample_responses() {
        let frame = response_frame(5, version, &response);
        for len in 0..frame.len() {
            let e = decode_response(key, version, frame.slice(..len)).unwrap_err();
            assert_eq!(e.header.is_some(), len >= 4, "{response:?} cut at {len}");
        }
    }
}

#[test]
fn produce_records_are_zero_copy_slices_of_the_read_buffer() {
    let batches = [batch(3, 9), batch(1, 8)];
    let request = Request::Produce(ProduceRequest {
        version: 0,
        acks: Acks::Leader,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: "t".into(),
            partitions: vec![ProducePartition {
                partition: 2,
                records: concat(&batches),
            }],
        }],
    });
    let mut read_buffer = BytesMut::new();
    request.encode(1, &mut read_buffer);
    let buffer_range = read_buffer.as_ptr_range();
    let frame = FrameDecoder::new(1 << 20)
        .decode(&mut read_buffer)
        .unwrap()
        .unwrap();
    let Ok((_, Request::Produce(mut produce))) = decode_request(frame) else {
        panic!("not a produce request");
    };
    let mut records = produce.topics[0].partitions.pop().unwrap().records;
    let records_range = records.as_ptr_range();
    assert!(buffer_range.start <= records_range.start && records_range.end <= buffer_range.end);
    assert_eq!(
        records_range.end, buffer_range.end,
        "records are the last field"
    );
    // The slice is writable in place: the broker stamps the offset without a copy.
    let first = batches[0].len();
    set_base_offset(&mut records[..first], 1234);
    let header = validate_batch(&records[..first], 1 << 20).unwrap();
    assert_eq!(header.base_offset, 1234);
    assert_eq!(records.as_ptr_range(), records_range);
}

#[test]
fn fetch_batches_are_sent_and_received_without_copies() {
    let batches = vec![batch(2, 1), batch(5, 2), batch(1, 3)];
    let response = Response::Fetch(FetchResponse {
        topics: vec![FetchTopicResponse {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                error_message: None,
                leader: LeaderHint::UNKNOWN,
                high_watermark: 8,
                log_start_offset: 0,
                log_end_offset: 8,
                records: batches.clone(),
            }],
        }],
    });
    let encoded = encode_response(3, 1, &response);
    // One chunk of small fields, then each batch as is.
    assert_eq!(encoded.chunks.len(), 1 + batches.len());
    for (chunk, batch) in encoded.chunks[1..].iter().zip(&batches) {
        assert_eq!(chunk.as_ptr(), batch.as_ptr());
        assert_eq!(chunk.len(), batch.len());
    }
    let frame = encoded.to_bytes().slice(SIZE_PREFIX_BYTES..);
    let frame_range = frame.as_ptr_range();
    let (_, decoded) = decode_response(ApiKey::Fetch, 1, frame).unwrap();
    assert_eq!(decoded, response);
    let Response::Fetch(fetch) = decoded else {
        unreachable!()
    };
    for b in &fetch.topics[0].partitions[0].records {
        let r = b.as_ptr_range();
        assert!(frame_range.start <= r.start && r.end <= frame_range.end);
    }
}

#[test]
fn fetched_records_that_are_not_whole_batches_are_corrupt() {
    let mut records = BytesMut::from(&batch(2, 1)[..]);
    records.truncate(records.len() - 1);
    let mut body = BytesMut::new();
    body.put_u32(1); // correlation_id
    body.put_u16(0);
    body.put_i16(-1);
    body.put_i32(1); // topics
    body.put_i16(1);
    body.put_u8(b't');
    body.put_i32(1); // partitions
    body.put_u32(0);
    body.put_u16(0);
    body.put_i16(-1);
    body.put_i64(0);
    body.put_i64(0);
    body.put_i64(0);
    body.put_i32(records.len() as i32);
    body.put_slice(&records);
    let e = decode_response(ApiKey::Fetch, 0, body.freeze()).unwrap_err();
    assert_eq!(e.code, ErrorCode::CorruptMessage, "{e}");
    assert!(e.message.contains("truncated batch"), "{e}");
}

#[test]
fn malformed_fields_are_invalid_requests_naming_the_field() {
    let cases: Vec<(ApiKey, Vec<u8>, ErrorCode, &str)> = vec![
        // acks 2.
        (
            ApiKey::Produce,
            vec![2, 0, 0, 0, 0, 0, 0, 0, 0],
            ErrorCode::InvalidRequest,
            "acks",
        ),
        // A negative topic count.
        (
            ApiKey::Produce,
            vec![1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            ErrorCode::InvalidRequest,
            "topics",
        ),
        // i32::MAX topics in a few bytes: refused before any allocation.
        (
            ApiKey::Produce,
            vec![1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
            ErrorCode::InvalidRequest,
            "cannot fit",
        ),
        // A records length running past the frame.
        (
            ApiKey::Produce,
            vec![
                1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1,
            ],
            ErrorCode::InvalidRequest,
            "records",
        ),
        // Invalid UTF-8 in a name.
        (
            ApiKey::DeleteTopic,
            vec![0, 2, 0xc3, 0x28],
            ErrorCode::InvalidRequest,
            "UTF-8",
        ),
        // A null name where none is allowed.
        (
            ApiKey::DeleteTopic,
            vec![0xff, 0xff],
            ErrorCode::InvalidRequest,
            "negative",
        ),
        // Metadata topics count -2 (only -1 means null).
        (
            ApiKey::Metadata,
            vec![0xff, 0xff, 0xff, 0xfe],
            ErrorCode::InvalidRequest,
            "negative",
        ),
    ];
    for (key, body, code, needle) in cases {
        let mut frame = header_bytes(key as u16, 0, 11);
        frame.put_slice(&body);
        let e = decode_request(frame).unwrap_err();
        assert_eq!(e.code, code, "{e}");
        assert_eq!(e.header.unwrap().correlation_id, 11);
        assert!(e.message.contains(needle), "{e} should mention {needle}");
    }
}

#[test]
fn out_of_range_topic_settings_are_invalid_config() {
    let good = request_frame(
        &Request::CreateTopic(CreateTopicRequest::with_defaults("t", 1)),
        1,
    );
    // Body: name (2 + 1), partitions (4), then the settings.
    let settings_at = REQUEST_HEADER_BYTES + 3 + 4;
    let fields = [
        ("retention_ms", 0, 8),
        ("retention_bytes", 8, 8),
        ("segment_bytes", 16, 8),
        ("segment_ms", 24, 8),
        ("durability", 32, 1),
        ("flush_ms", 33, 8),
    ];
    for (field, at, width) in fields {
        let bad_values: &[i64] = match field {
            "retention_ms" | "retention_bytes" => &[-3, i64::MIN],
            "durability" => &[-1, 2, 127],
            _ => &[-1, -3],
        };
        for &value in bad_values {
            let mut frame = good.clone();
            let at = settings_at + at;
            let bytes = value.to_be_bytes();
            frame[at..at + width].copy_from_slice(&bytes[8 - width..]);
            let e = decode_request(frame).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{field} = {value}: {e}");
            assert!(e.message.starts_with(field), "{e}");
        }
    }
}

#[test]
fn unknown_error_codes_read_as_unknown_server_error() {
    let mut frame = BytesMut::new();
    frame.put_u32(4);
    frame.put_u16(999);
    frame.put_i16(2);
    frame.put_slice(b"hi");
    let (id, response) = decode_response(ApiKey::Fetch, 0, frame.freeze()).unwrap();
    assert_eq!(id, 4);
    assert_eq!(
        response,
        Response::error(ErrorCode::UnknownServerError, "error code 999: hi")
    );
}

#[test]
#[should_panic(expected = "would read as a success")]
fn error_response_without_a_code_is_a_bug() {
    encode_response(
        1,
        0,
        &Response::Error {
            code: ErrorCode::None,
            message: None,
        },
    );
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// docs/PROTOCOL.md, "Example": the hex dumps there are what the codec writes.
#[test]
fn protocol_md_example_is_what_the_codec_writes() {
    let mut request = BytesMut::new();
    Request::ApiVersions(ApiVersionsRequest {
        client_software_name: "quill-doc".into(),
    })
    .encode(1, &mut request);
    let response = encode_response(
        1,
        0,
        &Response::ApiVersions(ApiVersionsResponse::supported(doc_limits())),
    )
    .to_bytes();
    for (what, bytes) in [("request", &request[..]), ("response", &response[..])] {
        let hex = hex_lines(bytes);
        assert!(
            PROTOCOL_MD.contains(&hex),
            "docs/PROTOCOL.md lacks the {what} example:\n{hex}"
        );
    }
}

/// docs/PROTOCOL.md, "Error codes": one row per code with its number, name and retriability.
#[test]
fn protocol_md_lists_every_error_code() {
    for code in ErrorCode::ALL {
        let retriable = if code.is_retriable() { "yes" } else { "no" };
        let row = format!("| {} | `{}` | {retriable} |", code.as_u16(), code.as_str());
        assert!(
            PROTOCOL_MD.contains(&row),
            "docs/PROTOCOL.md lacks the row {row}"
        );
    }
    for key in ApiKey::ALL {
        let heading = format!("### {} {}", key.as_u16(), key.as_str());
        assert!(
            PROTOCOL_MD.contains(&heading),
            "docs/PROTOCOL.md lacks {heading}"
        );
    }
}

#[test]
fn acks_zero_produce_frames_expect_no_response_even_when_malformed() {
    for (i, request) in sample_requests().iter().enumerate() {
        let frame = request_frame(request, i as u32);
        assert_eq!(frame_expects_response(&frame), request.expects_response());
    }
    // Produce, acks 0, then garbage: refused by the decoder, still unanswered.
    let mut frame = header_bytes(ApiKey::Produce as u16, 0, 1);
    frame.put_slice(&[0, 1, 2]);
    assert!(!frame_expects_response(&frame));
    assert!(decode_request(frame).is_err());
    // Without an acks byte, or with another API, the request is answered.
    assert!(frame_expects_response(&header_bytes(
        ApiKey::Produce as u16,
        0,
        1
    )));
    let mut frame = header_bytes(ApiKey::Fetch as u16, 0, 1);
    frame.put_u8(0);
    assert!(frame_expects_response(&frame));
    assert!(frame_expects_response(&[]));
    // Version 1 likewise; a version the broker does not serve is answered (UNSUPPORTED_VERSION).
    let mut frame = header_bytes(ApiKey::Produce as u16, 1, 1);
    frame.put_u8(0);
    assert!(!frame_expects_response(&frame));
    let mut frame = header_bytes(ApiKey::Produce as u16, 2, 1);
    frame.put_u8(0);
    assert!(frame_expects_response(&frame));
}

/// docs/PROTOCOL.md, "5 Produce": `acks = -1` exists from version 1; version 0 keeps refusing
/// it as before.
#[test]
fn acks_all_needs_produce_version_1() {
    let body = [0xff, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut frame = header_bytes(ApiKey::Produce as u16, 0, 1);
    frame.put_slice(&body);
    let e = decode_request(frame).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(e.message.contains("acks"), "{e}");
    let mut frame = header_bytes(ApiKey::Produce as u16, 1, 1);
    frame.put_slice(&body);
    let (header, request) = decode_request(frame).unwrap();
    assert_eq!(header.api_version, 1);
    let Request::Produce(p) = request else {
        panic!("not a produce")
    };
    assert_eq!((p.version, p.acks), (1, Acks::All));
    // A request built with acks All goes as version 1 whatever its version field says.
    let request = Request::Produce(ProduceRequest {
        version: 0,
        acks: Acks::All,
        timeout_ms: 1,
        topics: vec![],
    });
    assert_eq!(request.version(), 1);
    assert!(request.expects_response());
}

/// Fields a version does not have are left out on encode and read as their defaults on
/// decode: a version 0 client sees exactly the version 0 layout.
#[test]
fn older_versions_leave_the_new_fields_out() {
    let hint = LeaderHint {
        leader_node: 3,
        leader_shard: 1,
        leader_epoch: 9,
    };
    let produce = Response::Produce(ProduceResponse {
        topics: vec![ProduceTopicResponse {
            name: "t".into(),
            partitions: vec![ProducePartitionResponse {
                partition: 0,
                error_code: ErrorCode::NotLeader,
                error_message: None,
                base_offsets: vec![],
                leader: hint,
            }],
        }],
    });
    let v0 = response_frame(1, 0, &produce);
    let v1 = response_frame(1, 1, &produce);
    assert_eq!(v1.len(), v0.len() + 10);
    let (_, decoded) = decode_response(ApiKey::Produce, 0, v0).unwrap();
    let Response::Produce(p) = decoded else {
        panic!("not a produce")
    };
    assert_eq!(p.topics[0].partitions[0].leader, LeaderHint::UNKNOWN);
    let metadata = Response::Metadata(MetadataResponse {
        brokers: vec![],
        topics: vec![TopicMetadata {
            error_code: ErrorCode::None,
            name: "t".into(),
            partitions: vec![PartitionMetadata {
                partition: 0,
                error_code: ErrorCode::None,
                leader_node: 1,
                leader_shard: 0,
                leader_epoch: 0,
                log_start_offset: 0,
                high_watermark: 0,
                log_end_offset: 0,
                replicas: vec![1],
                in_sync: vec![1],
            }],
        }],
        damaged_ranges: Some(vec![]),
        controller_node: 1,
    });
    let lens: Vec<usize> = (0..=2)
        .map(|v| response_frame(1, v, &metadata).len())
        .collect();
    // v1: + the damaged ranges' count; v2: + two one-element arrays and controller_node.
    assert_eq!(lens, [lens[0], lens[0] + 4, lens[0] + 4 + 2 * 8 + 4]);
    let create = CreateTopicRequest::with_defaults("t", 1);
    let v0 = request_frame(&Request::CreateTopic(create.clone()), 1);
    let v1 = request_frame(&Request::CreateTopic(create.with_replication_factor(3)), 1);
    assert_eq!(v1.len(), v0.len() + 2);
}

#[test]
fn topic_names() {
    for good in [
        "a",
        "events",
        "my-topic_1.v2",
        &"x".repeat(TOPIC_NAME_BYTES_MAX),
    ] {
        assert!(is_valid_topic_name(good), "{good}");
    }
    let too_long = "x".repeat(TOPIC_NAME_BYTES_MAX + 1);
    for bad in ["", ".", "..", "a/b", "a b", "é", "a\0", &too_long] {
        assert!(!is_valid_topic_name(bad), "{bad:?}");
    }
}
