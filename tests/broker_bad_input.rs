//! The real broker binary against bad input: garbage bytes, oversized and malformed frames,
//! unknown APIs, damaged record batches, unknown topics, and `acks = 0` produces. Bad input is an
//! operating error: a typed error response (or a closed connection where `docs/PROTOCOL.md`
//! says so), and the broker lives on. Parametrized over 1 and 2 shards where routing matters.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::broker::*;
use common::{batch, seed, stamped, tmpdir};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A normal client can still create a topic, produce to every partition and read it back,
/// through the common port and every shard port.
fn check_normal_client_works(broker: &Broker, topic: &str) {
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic(topic, 3)), Response::CreateTopic);
    let mut expected = Vec::new();
    for p in 0..3u32 {
        let b = batch(u64::from(p), 2, 100, 1_000);
        let offs = produce_ok(c.call(&produce_request(topic, p, b.clone())));
        assert_eq!(offs, vec![0]);
        expected.push((p, stamped(b, 0, 0)));
    }
    for addr in broker.all_addrs() {
        let mut s = Conn::connect(addr);
        for (p, bytes) in &expected {
            let f = fetch_partition(s.call(&fetch_request(topic, *p, 0, 0)));
            assert_eq!(f.error_code, ErrorCode::None);
            assert_eq!(f.records.len(), 1);
            assert_eq!(&f.records[0][..], &bytes[..]);
        }
    }
}

// ---- garbage ----

/// One connection's worth of garbage, in one of several shapes.
fn garbage(rng: &mut StdRng, shape: usize) -> Vec<u8> {
    fn random(rng: &mut StdRng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.gen()).collect()
    }
    match shape {
        // Random bytes of a random length.
        0 => {
            let n = rng.gen_range(1..8192);
            random(rng, n)
        }
        // A huge declared frame size, then random bytes.
        1 => {
            let mut out = rng.gen_range(16u32 << 20..=u32::MAX).to_be_bytes().to_vec();
            let n = rng.gen_range(0..200);
            out.extend(random(rng, n));
            out
        }
        // A valid size prefix around a random header and body.
        2 => {
            let n = rng.gen_range(8..600);
            let body = random(rng, n);
            let mut out = (body.len() as u32).to_be_bytes().to_vec();
            out.extend(body);
            out
        }
        // A known API at version 0 with a random body (Fetch is left out: a random body that
        // happened to decode could long-poll).
        3 => {
            let key = [0u16, 1, 2, 3, 4, 5, 7][rng.gen_range(0..7)];
            let n = rng.gen_range(0..300);
            let body = random(rng, n);
            raw_frame(key, 0, rng.gen(), &body)
        }
        // A truncated frame: declares more than is sent, then the client goes away.
        4 => {
            let size = rng.gen_range(1000u32..1 << 20);
            let mut out = size.to_be_bytes().to_vec();
            let n = rng.gen_range(0..size as usize / 2);
            out.extend(random(rng, n.min(4096)));
            out
        }
        // A size below the request header.
        5 => {
            let mut out = rng.gen_range(0u32..8).to_be_bytes().to_vec();
            out.extend(random(rng, 20));
            out
        }
        // Well-formed requests, then garbage: the first ones get answers.
        _ => {
            let mut out = BytesMut::new();
            Request::ListTopics.encode(1, &mut out);
            Request::ApiVersions(ApiVersionsRequest {
                client_software_name: "garbage".into(),
            })
            .encode(2, &mut out);
            let mut out = out.to_vec();
            let n = rng.gen_range(1..300);
            out.extend(random(rng, n));
            out
        }
    }
}

/// How long a healthy client's request may wait for its answer while garbage comes in.
const HEALTHY_LIMIT: Duration = Duration::from_secs(20);

fn garbage_then_normal_client(shards: usize) {
    let seed = seed(&format!("garbage_then_normal_client({shards})"));
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), shards);
    assert_eq!(
        broker.connect().call(&create_topic("before", 1)),
        Response::CreateTopic
    );
    assert_eq!(
        broker.connect().call(&create_topic("during", 1)),
        Response::CreateTopic
    );
    // A healthy client keeps producing and reading back while the garbage comes in; each of
    // its requests must be answered, correctly, within HEALTHY_LIMIT (a hang guard, not a
    // latency target).
    let garbage_sent = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = {
        let (garbage_sent, during, stop) = (garbage_sent.clone(), during.clone(), stop.clone());
        let mut c = broker.connect();
        c.set_read_timeout(HEALTHY_LIMIT);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let started_during = garbage_sent.load(Ordering::SeqCst);
                let b = batch(1_000 + i, 1, 50, 5);
                let (_, resp) = c
                    .try_send(&produce_request("during", 0, b.clone()))
                    .ok()
                    .and_then(|_| c.try_recv().ok())
                    .unwrap_or_else(|| {
                        panic!("round trip {i}: no answer within {HEALTHY_LIMIT:?}")
                    });
                let offs = produce_ok(resp);
                assert_eq!(offs, vec![i as i64]);
                c.try_send(&fetch_request("during", 0, i as i64, 0))
                    .unwrap();
                let (_, resp) = c
                    .try_recv()
                    .unwrap_or_else(|e| panic!("fetch {i}: {e:?} within {HEALTHY_LIMIT:?}"));
                let f = fetch_partition(resp);
                assert_eq!(f.error_code, ErrorCode::None);
                assert_eq!(&f.records[0][..], &stamped(b, i, 0)[..]);
                if started_during {
                    during.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
            i
        })
    };
    let addrs = broker.all_addrs();
    let mut conns = Vec::new();
    for i in 0..50 {
        let mut c = Conn::connect(addrs[i % addrs.len()]);
        c.set_read_timeout(Duration::from_secs(20));
        let shape = rng.gen_range(0..7);
        let bytes = garbage(&mut rng, shape);
        // The broker may already have closed a connection it gave up on.
        let _ = std::io::Write::write_all(&mut c.stream, &bytes);
        conns.push(c);
    }
    // With every garbage connection open and its bytes sent, the healthy client must get
    // through whole round trips.
    garbage_sent.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + HEALTHY_LIMIT * 3;
    while during.load(Ordering::SeqCst) < 3 && !healthy.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the healthy client made no progress during the garbage"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, mut c) in conns.into_iter().enumerate() {
        if i % 2 == 0 {
            // Half-close, then read whatever the broker answers until it closes too: bounded,
            // since the broker stops at our EOF.
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            c.drain_until_closed();
        }
        // The other half just vanish, possibly with data unread (a reset).
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = healthy
        .join()
        .expect("the healthy client's requests were all answered");
    assert!(
        during.load(Ordering::SeqCst) >= 3,
        "{rounds} healthy round trips, too few during the garbage"
    );
    assert!(broker.is_alive(), "the broker survived the garbage");
    check_normal_client_works(&broker, "after-garbage");
    // The topic made before the garbage is intact.
    let mut c = broker.connect();
    assert_eq!(latest_offset(&mut c, "before", 0), 0);
    assert!(broker.is_alive());
}

one_and_two_shards!(
    garbage_then_normal_client_one_shard,
    garbage_then_normal_client_two_shards,
    garbage_then_normal_client
);

// ---- framing ----

/// PROTOCOL.md, "What closes a connection", 1: a size over `frame_bytes_max` is answered
/// `FRAME_TOO_LARGE` with the frame's correlation id, then the broker closes; without a header
/// within `request_read_ms_max` it closes without an answer.
#[test]
fn oversized_frame_is_answered_and_closed() {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), 2);
    for addr in broker.all_addrs() {
        // Size prefix declaring 1 GiB plus the 8-byte header, in one write.
        let mut c = Conn::connect(addr);
        let mut bytes = (1u32 << 30).to_be_bytes().to_vec();
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&0x0BAD_F00Du32.to_be_bytes());
        c.send_raw(&bytes);
        let (corr, resp) = c.recv_raw(ApiKey::ApiVersions);
        assert_eq!(error_code(&resp), ErrorCode::FrameTooLarge, "{resp:?}");
        assert_eq!(corr, 0x0BAD_F00D);
        c.expect_closed();

        // The size prefix alone, the header later in a separate write: the broker waits for
        // the header and answers with its correlation id.
        let mut c = Conn::connect(addr);
        c.send_raw(&((16u32 << 20) + 1).to_be_bytes());
        std::thread::sleep(std::time::Duration::from_millis(300));
        c.send_raw(&[0, 1, 0, 0, 0, 0, 0, 42]);
        let (corr, resp) = c.recv_raw(ApiKey::Metadata);
        assert_eq!(error_code(&resp), ErrorCode::FrameTooLarge, "{resp:?}");
        assert_eq!(corr, 42);
        c.expect_closed();
    }
    assert!(broker.is_alive());
    // Only the size prefix, ever: closed without an answer once request_read_ms_max passed.
    let dir = tmpdir();
    let broker = Broker::start_with_config(dir.path(), 1, "[limits]\nrequest_read_ms_max = 500\n");
    let mut c = broker.connect();
    c.send_raw(&((16u32 << 20) + 1).to_be_bytes());
    c.expect_closed();
}

/// PROTOCOL.md, "What closes a connection", 2: a size below 8 cannot be answered; the broker
/// closes without a response, after answering what came before.
#[test]
fn frame_below_header_size_closes_without_response() {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), 1);
    let mut c = broker.connect();
    c.send(&Request::ListTopics);
    c.send_raw(&[0, 0, 0, 5, 1, 2, 3, 4, 5]);
    assert!(matches!(c.recv().1, Response::ListTopics(_)));
    c.expect_closed();
    assert!(broker.is_alive());
}

/// PROTOCOL.md, "Error codes", 7: an unknown `api_key` or `api_version` is answered
/// `UNSUPPORTED_VERSION` with the request's correlation id, and the connection stays usable.
#[test]
fn unknown_api_key_and_version() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    let mut c = broker.connect();
    for (key, version, corr) in [
        (99u16, 0u16, 1001u32),
        (9, 0, 1002),
        (0, 1, 1003),
        (5, 7, 1004),
    ] {
        // Produce version 7 with a first body byte of 0 is still answered: only the acks byte
        // of a served version (0 or 1) means "no response".
        c.send_raw(&raw_frame(key, version, corr, &[0, 0, 0, 0]));
        // A valid request right behind it, before reading anything.
        c.send(&Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "t".into(),
        }));
        let (got, resp) = c.recv_raw(ApiKey::ApiVersions);
        assert_eq!(got, corr);
        assert_eq!(
            error_code(&resp),
            ErrorCode::UnsupportedVersion,
            "key {key} version {version}: {resp:?}"
        );
        assert!(matches!(c.recv().1, Response::ApiVersions(_)));
    }
}

/// PROTOCOL.md, "Primitive types": lengths past the frame, negative lengths, bad UTF-8, bad
/// enums and trailing bytes are `INVALID_REQUEST`, and the connection stays usable.
#[test]
fn malformed_fields_are_invalid_request() {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("t", 1)), Response::CreateTopic);
    let produce_body = |tail: &[u8]| {
        // acks 1, timeout 1000, then `tail`
        let mut b = vec![1u8, 0, 0, 0x03, 0xe8];
        b.extend_from_slice(tail);
        b
    };
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        // ApiVersions: string length 100, 3 bytes left.
        ("string past the frame", 0, vec![0, 100, b'a', b'b', b'c']),
        // ApiVersions: string length -2.
        ("negative string length", 0, vec![0xff, 0xfe]),
        // ApiVersions: invalid UTF-8.
        ("bad utf-8", 0, vec![0, 2, 0xc3, 0x28]),
        // ApiVersions: a valid body then trailing bytes.
        ("trailing bytes", 0, vec![0, 1, b'a', 9, 9]),
        // Metadata: count -5 (only -1 means null).
        ("negative array count", 1, (-5i32).to_be_bytes().to_vec()),
        // Metadata: 1000 topics in 2 bytes.
        ("count past the frame", 1, vec![0, 0, 0x03, 0xe8, 0, 0]),
        // Metadata: a body cut short.
        ("truncated i32", 1, vec![0, 0]),
        // DeleteTopic: name length 50, 1 byte.
        ("delete name past the frame", 3, vec![0, 50, b'x']),
        // ListTopics has no body.
        ("list topics with a body", 4, vec![1]),
        // Produce: acks 2.
        ("acks 2", 5, vec![2, 0, 0, 0, 0, 0, 0, 0, 0]),
        // Produce: negative topics count.
        (
            "produce negative topics",
            5,
            produce_body(&(-1i32).to_be_bytes()),
        ),
        // Produce: records length past the frame.
        (
            "records past the frame",
            5,
            produce_body(&[
                0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 2,
            ]),
        ),
        // Produce: negative records length.
        (
            "negative records length",
            5,
            produce_body(&[
                0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0,
            ]),
        ),
        // Fetch: a partition entry cut short.
        (
            "fetch partition cut short",
            6,
            vec![
                0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0,
            ],
        ),
        // ListOffsets: string length past the frame.
        (
            "list offsets name past the frame",
            7,
            vec![0, 0, 0, 1, 0x7f, 0xff, b't'],
        ),
    ];
    for (i, (what, key, body)) in cases.iter().enumerate() {
        let corr = 5000 + i as u32;
        c.send_raw(&raw_frame(*key, 0, corr, body));
        let (got, resp) = c.recv_raw(ApiKey::ApiVersions);
        assert_eq!(got, corr, "{what}");
        assert_eq!(
            error_code(&resp),
            ErrorCode::InvalidRequest,
            "{what}: {resp:?}"
        );
        // Still usable.
        assert!(
            matches!(c.call(&Request::ListTopics), Response::ListTopics(_)),
            "{what}"
        );
    }
    assert_eq!(
        latest_offset(&mut c, "t", 0),
        0,
        "no malformed produce appended anything"
    );
    assert!(broker.is_alive());
}

/// PROTOCOL.md, "Produce": "A partition must appear at most once in a request; a repeated topic
/// and partition pair fails the whole request with INVALID_REQUEST."
#[test]
fn produce_with_a_repeated_partition_is_invalid_request() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("t", 2)), Response::CreateTopic);
    let part = |partition, seed| ProducePartition {
        partition,
        records: batch(seed, 1, 10, 1),
    };
    let req = Request::Produce(ProduceRequest {
        version: 0,
        acks: Acks::Leader,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "t".into(),
            partitions: vec![part(0, 1), part(1, 2), part(0, 3)],
        }],
    });
    let resp = c.call(&req);
    assert!(
        matches!(
            resp,
            Response::Error {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ),
        "{resp:?}"
    );
    assert_eq!(latest_offset(&mut c, "t", 0), 0, "nothing appended");
    assert_eq!(latest_offset(&mut c, "t", 1), 0, "nothing appended");
    // The same partition in two entries of the same topic is a repeat too.
    let Request::Produce(mut split) = req.clone() else {
        unreachable!()
    };
    let last = split.topics[0].partitions.pop().unwrap();
    split.topics.push(ProduceTopic {
        name: "t".into(),
        partitions: vec![last],
    });
    let resp = c.call(&Request::Produce(split));
    assert_eq!(error_code(&resp), ErrorCode::InvalidRequest);
    // Fetch: the same rule.
    let fp = |partition| FetchPartition {
        partition,
        fetch_offset: 0,
        partition_max_bytes: 1 << 20,
    };
    let resp = c.call(&Request::Fetch(FetchRequest {
        version: 0,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "t".into(),
            partitions: vec![fp(1), fp(0), fp(1)],
        }],
    }));
    assert_eq!(error_code(&resp), ErrorCode::InvalidRequest);
    // acks = 0: no answer, the connection closes, nothing appended.
    let Request::Produce(mut silent) = req else {
        unreachable!()
    };
    silent.acks = Acks::None;
    let mut s = broker.connect();
    s.set_read_timeout(Duration::from_secs(20));
    s.send(&Request::Produce(silent));
    s.expect_closed();
    assert_eq!(latest_offset(&mut c, "t", 0), 0, "nothing appended");
    assert_eq!(latest_offset(&mut c, "t", 1), 0, "nothing appended");
}

// ---- record batches ----

/// PROTOCOL.md, "Produce": a bad CRC, a truncated batch, an empty `records` are
/// `CORRUPT_MESSAGE`, a batch over `batch_bytes_max` is `MESSAGE_TOO_LARGE`; nothing of that
/// partition is appended, other partitions of the request are, and the connection stays usable.
fn damaged_batches(shards: usize) {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), shards);
    let mut admin = broker.connect();
    assert_eq!(admin.call(&create_topic("t", 2)), Response::CreateTopic);
    let good = batch(1, 3, 100, 1_000);
    let mut bad_crc = good.clone();
    let at = bad_crc.len() - 10;
    bad_crc[at] ^= 0x40;
    let truncated = BytesMut::from(&good[..good.len() - 5]);
    // Two records of 1 MiB: a 2 MiB batch, over the 1 MiB default, well under frame_bytes_max.
    let huge = batch(2, 2, 1 << 20, 1_000);
    assert!(huge.len() > 2 << 20);
    let mut good_then_bad = good.clone();
    good_then_bad.extend_from_slice(&bad_crc);
    let cases: Vec<(&str, BytesMut, ErrorCode)> = vec![
        ("bad crc", bad_crc, ErrorCode::CorruptMessage),
        ("truncated", truncated, ErrorCode::CorruptMessage),
        (
            "header only",
            BytesMut::from(&good[..30]),
            ErrorCode::CorruptMessage,
        ),
        ("empty records", BytesMut::new(), ErrorCode::CorruptMessage),
        (
            "good then bad crc",
            good_then_bad,
            ErrorCode::CorruptMessage,
        ),
        ("over batch_bytes_max", huge, ErrorCode::MessageTooLarge),
    ];
    let mut expected_end = [0i64; 2];
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        for (what, records, code) in &cases {
            let p = produce_partition(c.call(&produce_request("t", 0, records.clone())));
            assert_eq!(p.error_code, *code, "{what}: {:?}", p.error_message);
            assert!(p.base_offsets.is_empty(), "{what}");
            assert_eq!(
                latest_offset(&mut c, "t", 0),
                expected_end[0],
                "{what}: nothing appended"
            );
            // The same bad batch next to a good one for partition 1: partitions are independent.
            let resp = c.call(&Request::Produce(ProduceRequest {
                version: 0,
                acks: Acks::Leader,
                timeout_ms: 30_000,
                topics: vec![ProduceTopic {
                    name: "t".into(),
                    partitions: vec![
                        ProducePartition {
                            partition: 0,
                            records: records.clone(),
                        },
                        ProducePartition {
                            partition: 1,
                            records: good.clone(),
                        },
                    ],
                }],
            }));
            let Response::Produce(r) = resp else {
                panic!("{what}: {resp:?}")
            };
            let parts = &r.topics[0].partitions;
            assert_eq!(
                (parts[0].partition, parts[0].error_code),
                (0, *code),
                "{what}"
            );
            assert_eq!(
                (parts[1].partition, parts[1].error_code),
                (1, ErrorCode::None),
                "{what}"
            );
            assert_eq!(parts[1].base_offsets, vec![expected_end[1]], "{what}");
            expected_end[1] += 3;
            assert_eq!(latest_offset(&mut c, "t", 0), expected_end[0], "{what}");
            assert_eq!(latest_offset(&mut c, "t", 1), expected_end[1], "{what}");
        }
        // Still usable: a good batch goes in right after what was there.
        let offs = produce_ok(c.call(&produce_request("t", 0, good.clone())));
        assert_eq!(offs, vec![expected_end[0]]);
        expected_end[0] += 3;
    }
    // Only good batches are stored.
    let mut c = broker.connect();
    for p in 0..2u32 {
        let all = fetch_all_batches(&mut c, "t", p);
        assert_eq!(all.len() as i64 * 3, expected_end[p as usize]);
        for (base, b) in all {
            assert_eq!(&b[..], &stamped(good.clone(), base as u64, 0)[..]);
        }
    }
    assert!(broker.is_alive());
}

one_and_two_shards!(
    damaged_batches_one_shard,
    damaged_batches_two_shards,
    damaged_batches
);

// ---- unknown topics and offsets ----

fn unknown_topics_and_offsets(shards: usize) {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), shards);
    let mut admin = broker.connect();
    assert_eq!(admin.call(&create_topic("known", 2)), Response::CreateTopic);
    produce_ok(admin.call(&produce_request("known", 0, batch(1, 3, 10, 1))));
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        for (topic, partition) in [("nope", 0u32), ("known", 2), ("known", 999_999)] {
            let what = format!("{topic}-{partition}");
            let p =
                produce_partition(c.call(&produce_request(topic, partition, batch(2, 1, 10, 1))));
            assert_eq!(
                p.error_code,
                ErrorCode::UnknownTopicOrPartition,
                "produce {what}"
            );
            let f = fetch_partition(c.call(&fetch_request(topic, partition, 0, 0)));
            assert_eq!(
                f.error_code,
                ErrorCode::UnknownTopicOrPartition,
                "fetch {what}"
            );
            assert!(f.records.is_empty());
            for ts in [-1, -2, 0] {
                let l = list_offsets_partition(c.call(&list_offsets_request(topic, partition, ts)));
                assert_eq!(
                    l.error_code,
                    ErrorCode::UnknownTopicOrPartition,
                    "list {what} {ts}"
                );
            }
        }
        let resp = c.call(&delete_topic("nope"));
        assert_eq!(error_code(&resp), ErrorCode::UnknownTopicOrPartition);
        // At the high watermark: no error, nothing yet.
        let f = fetch_partition(c.call(&fetch_request("known", 0, 3, 0)));
        assert_eq!(f.error_code, ErrorCode::None);
        assert!(f.records.is_empty());
        assert_eq!(f.high_watermark, 3);
    }
    assert!(broker.is_alive());
}

one_and_two_shards!(
    unknown_topics_and_partitions_one_shard,
    unknown_topics_and_partitions_two_shards,
    unknown_topics_and_offsets
);

/// PROTOCOL.md, "Fetch": `OFFSET_OUT_OF_RANGE` for an offset below the log start or above the
/// log end; "the offsets fields tell the valid range".
#[test]
fn fetch_out_of_range_tells_the_valid_range() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("t", 1)), Response::CreateTopic);
    produce_ok(c.call(&produce_request("t", 0, batch(1, 3, 10, 1))));
    for offset in [4i64, 1000, i64::MAX, -1, i64::MIN] {
        let f = fetch_partition(c.call(&fetch_request("t", 0, offset, 0)));
        assert_eq!(f.error_code, ErrorCode::OffsetOutOfRange, "offset {offset}");
        assert!(f.records.is_empty());
        assert_eq!(
            (f.log_start_offset, f.high_watermark, f.log_end_offset),
            (0, 3, 3),
            "offset {offset}: the offsets fields tell the valid range"
        );
    }
}

/// PROTOCOL.md, "CreateTopic": bad names are `INVALID_TOPIC_NAME`, 0 or too many partitions
/// `INVALID_PARTITIONS`, out-of-range settings `INVALID_CONFIG`; nothing is created.
#[test]
fn create_topic_rejects_bad_names_counts_and_settings() {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    let long = "x".repeat(250);
    for name in ["", ".", "..", "a/b", "has space", "caf\u{e9}", "x:y", &long] {
        let resp = c.call(&create_topic(name, 1));
        assert_eq!(error_code(&resp), ErrorCode::InvalidTopicName, "{name:?}");
    }
    for partitions in [0u32, 1_000_000] {
        let resp = c.call(&create_topic("fine", partitions));
        assert_eq!(
            error_code(&resp),
            ErrorCode::InvalidPartitions,
            "{partitions}"
        );
    }
    // segment_bytes far below any sane segment.
    let mut req = CreateTopicRequest::with_defaults("fine", 1);
    req.segment_bytes = Some(10);
    let resp = c.call(&Request::CreateTopic(req));
    assert_eq!(error_code(&resp), ErrorCode::InvalidConfig);
    // durability 5, encoded by hand: the codec cannot produce it.
    let mut body = vec![0, 4, b'f', b'i', b'n', b'e', 0, 0, 0, 1];
    for _ in 0..4 {
        body.extend_from_slice(&(-2i64).to_be_bytes());
    }
    body.push(5);
    body.extend_from_slice(&(-2i64).to_be_bytes());
    c.send_raw(&raw_frame(2, 0, 77, &body));
    let (corr, resp) = c.recv_raw(ApiKey::CreateTopic);
    assert_eq!(corr, 77);
    assert_eq!(error_code(&resp), ErrorCode::InvalidConfig);
    // The longest valid name works, and nothing invalid was created.
    let longest = "y".repeat(249);
    assert_eq!(c.call(&create_topic(&longest, 1)), Response::CreateTopic);
    let Response::ListTopics(l) = c.call(&Request::ListTopics) else {
        panic!("list topics")
    };
    let names: Vec<&str> = l.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec![longest.as_str()]);
    assert!(broker.is_alive());
}

// ---- acks = 0 ----

/// PROTOCOL.md, "Pipelining and ordering": a Produce with `acks` = 0 gets no response frame
/// (the next frame answers the next request) and its data is appended.
fn acks_zero(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut admin = broker.connect();
    assert_eq!(admin.call(&create_topic("t", 2)), Response::CreateTopic);
    for addr in broker.all_addrs() {
        let mut c = Conn::connect(addr);
        for p in 0..2u32 {
            let start = latest_offset(&mut admin, "t", p);
            let b = batch(u64::from(p) + 10, 2, 50, 7);
            c.send(&produce_request_acks("t", p, b.clone(), Acks::None));
            assert_eq!(c.pending(), 0, "acks=0 expects no response");
            // The next frame is the ListTopics answer (Conn::recv checks the correlation id).
            assert!(matches!(
                c.call(&Request::ListTopics),
                Response::ListTopics(_)
            ));
            // The batch shows up: a long poll at its offset returns it.
            let f = fetch_partition(c.call(&fetch_request("t", p, start, 20_000)));
            assert_eq!(f.error_code, ErrorCode::None);
            assert_eq!(f.records.len(), 1, "the acks=0 batch was appended");
            assert_eq!(&f.records[0][..], &stamped(b, start as u64, 0)[..]);
        }
    }
}

one_and_two_shards!(
    acks_zero_gets_no_response_one_shard,
    acks_zero_gets_no_response_two_shards,
    acks_zero
);

/// PROTOCOL.md, "What closes a connection", 3: an `acks` = 0 Produce that fails (a bad CRC) or
/// does not even decode closes the connection instead of answering; nothing is appended.
#[test]
fn failing_acks_zero_produce_closes_the_connection() {
    let dir = tmpdir();
    let mut broker = Broker::start(dir.path(), 2);
    let mut admin = broker.connect();
    assert_eq!(admin.call(&create_topic("t", 2)), Response::CreateTopic);
    for addr in broker.all_addrs() {
        for p in 0..2u32 {
            let mut bad = batch(3, 2, 50, 7);
            let at = bad.len() - 3;
            bad[at] ^= 1;
            let mut c = Conn::connect(addr);
            c.set_read_timeout(Duration::from_secs(20));
            c.send(&produce_request_acks("t", p, bad, Acks::None));
            // Whatever follows is not answered.
            let _ = c.try_send(&Request::ListTopics);
            c.expect_closed();
            assert_eq!(latest_offset(&mut admin, "t", p), 0);
        }
        // acks byte 0, then a body that does not decode.
        let mut c = Conn::connect(addr);
        c.set_read_timeout(Duration::from_secs(20));
        c.send_raw(&raw_frame(5, 0, 9, &[0, 0, 0, 1]));
        c.expect_closed();
    }
    assert!(broker.is_alive());
}
