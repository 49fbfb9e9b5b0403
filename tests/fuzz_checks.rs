//! The fuzz targets' checks (`fuzz/checks/`), run over a fixed, seeded corpus in every
//! `cargo test`: the round trips they assert (a decoded request re-encodes to the same bytes, a
//! decoded response survives encode + decode, an accepted batch has exactly `recordCount`
//! readable records) are checked here without libFuzzer, and the targets' bodies cannot stop
//! compiling unnoticed. The corpus: valid requests, responses of every kind and batches, every
//! truncation and single-byte corruption of them, requests with a byte too many, and seeded
//! random bytes. Valid batches with null keys, values and header values must also read back as
//! built, which the round trips alone cannot see.

mod common;

#[allow(dead_code)]
#[path = "../fuzz/checks/batch_validator.rs"]
mod batch_validator;
#[allow(dead_code)]
#[path = "../fuzz/checks/frame_decoder.rs"]
mod frame_decoder;

use bytes::BytesMut;
use common::broker::{
    create_topic, delete_topic, fetch_request, list_offsets_request, metadata_request,
    produce_request,
};
use common::{batch, seed, stamped};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{
    encode_response, BrokerMetadata, DamagedRangeMetadata, FetchPartitionResponse, FetchResponse,
    FetchTopicResponse, LeaderHint, ListOffsetsPartitionResponse, ListOffsetsResponse,
    ListOffsetsTopicResponse, MetadataResponse, PartitionMetadata, ProducePartitionResponse,
    ProduceResponse, ProduceTopicResponse, Request, Response, ShardPort, TopicMetadata,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every prefix of `input`, and `input` with each byte inverted in turn.
fn damaged_copies(input: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..input.len()).map(|n| input[..n].to_vec()).collect();
    for i in 0..input.len() {
        let mut v = input.to_vec();
        v[i] ^= 0xFF;
        out.push(v);
    }
    out
}

fn random_inputs(rng: &mut StdRng, n: usize, len_max: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.gen_range(0..=len_max);
            (0..len).map(|_| rng.gen()).collect()
        })
        .collect()
}

#[test]
fn batch_validator_checks_over_a_seeded_corpus() {
    let mut rng = StdRng::seed_from_u64(seed("batch_validator_checks_over_a_seeded_corpus"));
    let valid: Vec<Vec<u8>> = (1..=5)
        .map(|n| stamped(batch(n as u64, n, 20 * n, 1_000), 7, 3))
        .collect();
    let mut inputs = valid.clone();
    inputs.push(valid.concat());
    for v in &valid[..2] {
        inputs.extend(damaged_copies(v));
    }
    inputs.extend(random_inputs(&mut rng, 2000, 300));
    // Random bytes behind a valid header, so the record walk sees garbage (the check fixes the
    // CRC up).
    for _ in 0..500 {
        let mut v = valid[2].clone();
        let at = rng.gen_range(61..v.len());
        rng.fill(&mut v[at..]);
        inputs.push(v);
    }
    for input in &inputs {
        batch_validator::run(input);
    }
    // The corpus reaches the checks' positive path: valid batches are accepted.
    for v in &valid {
        assert!(quill::record::validate_batch(v, 1 << 20).is_ok());
    }
    // And what they accept reads back as it was built, nulls included (the checks above only
    // see that reading agrees with validating, which a decoder wrong in both would pass).
    let (built, records) = batch_with_nulls();
    for input in damaged_copies(&built) {
        batch_validator::run(&input);
    }
    assert!(quill::record::validate_batch(&built, 1 << 20).is_ok());
    let read: Vec<Built> = quill::record::records(&built)
        .unwrap()
        .map(|r| {
            let r = r.expect("a valid batch's records read");
            let headers = r
                .headers
                .iter()
                .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)));
            (
                r.timestamp_delta,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
                headers.collect(),
            )
        })
        .collect();
    assert_eq!(read, records, "records read back as built");
}

/// A record as built: timestamp delta, key, value, headers.
type Built = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
);

/// A stamped batch whose records have null and empty keys, values and header values, and
/// timestamp deltas that need several varint bytes; and those records.
fn batch_with_nulls() -> (Vec<u8>, Vec<Built>) {
    let v = |s: &str| Some(s.as_bytes().to_vec());
    let records: Vec<Built> = vec![
        (0, None, v("value"), vec![]),
        (1, v("key"), None, vec![(b"h".to_vec(), None)]),
        (
            300,
            v(""),
            v(""),
            vec![(b"a".to_vec(), v("1")), (b"".to_vec(), v(""))],
        ),
        (
            70_000,
            None,
            None,
            vec![(b"n".to_vec(), None), (b"m".to_vec(), v("2"))],
        ),
    ];
    let mut b = quill::record::BatchBuilder::new(1_000);
    for (delta, key, value, headers) in &records {
        let headers: Vec<(&[u8], Option<&[u8]>)> = headers
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        b.push(1_000 + delta, key.as_deref(), value.as_deref(), &headers);
    }
    (stamped(b.finish(), 7, 3), records)
}

fn request_frames() -> Vec<Vec<u8>> {
    let requests = [
        create_topic("t", 3),
        delete_topic("t"),
        metadata_request(None),
        metadata_request(Some(&["a", "bb"])),
        produce_request("t", 1, batch(1, 2, 10, 5)),
        fetch_request("t", 2, 40, 100),
        list_offsets_request("t", 0, -1),
    ];
    requests
        .iter()
        .map(|r: &Request| {
            let mut out = BytesMut::new();
            r.encode(9, &mut out);
            out.to_vec()
        })
        .collect()
}

/// `frame` (size prefix included) with a zero byte appended and its size prefix grown by one.
fn with_a_trailing_byte(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out.push(0);
    let size = u32::from_be_bytes(out[..4].try_into().unwrap()) + 1;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out
}

/// A response of every kind with a body, every field distinct from its neighbours (a decoder
/// that mixes two fields up decodes something that does not survive encode + decode).
fn responses() -> Vec<Response> {
    vec![
        Response::CreateTopic,
        Response::Error {
            code: ErrorCode::UnknownTopicOrPartition,
            message: Some("no such topic".into()),
        },
        Response::Produce(ProduceResponse {
            topics: vec![ProduceTopicResponse {
                name: "t".into(),
                partitions: vec![ProducePartitionResponse {
                    partition: 1,
                    error_code: ErrorCode::None,
                    error_message: None,
                    base_offsets: vec![40, 42],
                    leader: LeaderHint::UNKNOWN,
                }],
            }],
        }),
        Response::Fetch(FetchResponse {
            topics: vec![FetchTopicResponse {
                name: "t".into(),
                partitions: vec![FetchPartitionResponse {
                    partition: 2,
                    error_code: ErrorCode::None,
                    error_message: Some("m".into()),
                    leader: LeaderHint {
                        leader_node: 1,
                        leader_shard: 0,
                        leader_epoch: 2,
                    },
                    high_watermark: 12,
                    log_start_offset: 3,
                    log_end_offset: 14,
                    records: vec![stamped(batch(1, 2, 10, 5), 7, 3).into()],
                }],
            }],
        }),
        Response::ListOffsets(ListOffsetsResponse {
            topics: vec![ListOffsetsTopicResponse {
                name: "t".into(),
                partitions: vec![ListOffsetsPartitionResponse {
                    partition: 3,
                    error_code: ErrorCode::None,
                    offset: 17,
                    leader: LeaderHint::UNKNOWN,
                }],
            }],
        }),
        Response::Metadata(MetadataResponse {
            brokers: vec![BrokerMetadata {
                node_id: 1,
                host: "h".into(),
                port: 9092,
                shard_ports: vec![ShardPort {
                    shard_id: 1,
                    port: 9100,
                }],
            }],
            topics: vec![TopicMetadata {
                error_code: ErrorCode::None,
                name: "t".into(),
                partitions: vec![PartitionMetadata {
                    partition: 4,
                    error_code: ErrorCode::None,
                    leader_node: 5,
                    leader_shard: 6,
                    leader_epoch: 7,
                    log_start_offset: 8,
                    high_watermark: 9,
                    log_end_offset: 10,
                    replicas: vec![5, 6],
                    in_sync: vec![5],
                }],
            }],
            damaged_ranges: Some(vec![DamagedRangeMetadata {
                topic: "t".into(),
                partition: 4,
                first_offset: 11,
                last_offset: 12,
            }]),
            controller_node: 5,
        }),
    ]
}

#[test]
fn frame_decoder_checks_over_a_seeded_corpus() {
    let mut rng = StdRng::seed_from_u64(seed("frame_decoder_checks_over_a_seeded_corpus"));
    let mut frames = request_frames();
    for r in responses() {
        let version = r.api_key().map_or(0, |k| k.version_max());
        frames.push(encode_response(5, version, &r).to_bytes().to_vec());
    }
    let mut inputs = Vec::new();
    // The first byte is the knob: frame limit and chunk size.
    for (i, f) in frames.iter().enumerate() {
        for knob in [0u8, 1, 16, 255, (i * 37) as u8] {
            inputs.push([&[knob][..], f].concat());
        }
        for d in damaged_copies(f) {
            inputs.push([&[255u8][..], &d].concat());
        }
    }
    inputs.push([&[255u8][..], &frames.concat()].concat());
    // Each request with one byte more than its fields take (the size prefix grown to match):
    // a decoder that does not check it used the whole frame accepts it, and the re-encoding
    // is then shorter than the frame.
    for f in request_frames() {
        inputs.push([&[255u8][..], &with_a_trailing_byte(&f)].concat());
    }
    inputs.extend(random_inputs(&mut rng, 2000, 200));
    for input in &inputs {
        frame_decoder::run(input);
    }
}
