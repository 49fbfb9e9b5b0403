//! The real broker binary: create, produce, fetch, long poll, restart, with 1 and 2 shards.

mod common;

use common::broker::*;
use common::{batch, stamped, tmpdir};
use quill::net::error_code::ErrorCode;
use quill::net::protocol::*;

fn produce(topic: &str, partition: u32, records: bytes::BytesMut) -> Request {
    Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, records }],
        }],
    })
}

fn fetch(topic: &str, partition: u32, offset: i64, max_wait_ms: u32) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
            }],
        }],
    })
}

fn produce_ok(resp: Response) -> Vec<i64> {
    match resp {
        Response::Produce(p) => {
            let part = &p.topics[0].partitions[0];
            assert_eq!(part.error_code, ErrorCode::None, "{:?}", part.error_message);
            part.base_offsets.clone()
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn fetch_records(resp: Response) -> (ErrorCode, Vec<bytes::Bytes>) {
    match resp {
        Response::Fetch(f) => {
            let p = &f.topics[0].partitions[0];
            (p.error_code, p.records.clone())
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn round_trip(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("orders", 4)), Response::CreateTopic);
    match c.call(&create_topic("orders", 4)) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::TopicAlreadyExists),
        other => panic!("unexpected {other:?}"),
    }
    let mut expected = Vec::new();
    for p in 0..4u32 {
        for i in 0..5u64 {
            let b = batch(u64::from(p) * 100 + i, 3, 200, 1_000);
            let offs = produce_ok(c.call(&produce("orders", p, b.clone())));
            assert_eq!(offs, vec![i as i64 * 3]);
            expected.push((p, offs[0], stamped(b, offs[0] as u64, 0)));
        }
    }
    // Read back through the common port and through every shard port.
    for shard in 0..shards {
        let mut s = broker.connect_shard(shard);
        for (p, off, bytes) in &expected {
            let (code, recs) = fetch_records(s.call(&fetch("orders", *p, *off, 0)));
            assert_eq!(code, ErrorCode::None);
            assert_eq!(&recs[0][..], &bytes[..]);
        }
    }
    assert_eq!(broker.stop(), Some(0), "clean shutdown exits 0");
    // Restart and read everything again.
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    for (p, off, bytes) in &expected {
        let (code, recs) = fetch_records(c.call(&fetch("orders", *p, *off, 0)));
        assert_eq!(code, ErrorCode::None);
        assert_eq!(&recs[0][..], &bytes[..]);
    }
    assert_eq!(broker.stop(), Some(0));
}

#[test]
fn round_trip_one_shard() {
    round_trip(1);
}

#[test]
fn round_trip_two_shards() {
    round_trip(2);
}

#[test]
fn long_poll_wakes_up_on_produce() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("t", 2)), Response::CreateTopic);
    for p in 0..2u32 {
        let mut consumer = broker.connect();
        // At the log end with a long wait: without a wake-up this returns empty after 30 s.
        consumer.send(&fetch("t", p, 0, 30_000));
        std::thread::sleep(std::time::Duration::from_millis(100));
        produce_ok(c.call(&produce("t", p, batch(7, 2, 10, 5))));
        let (code, recs) = fetch_records(consumer.recv().1);
        assert_eq!(code, ErrorCode::None);
        assert_eq!(recs.len(), 1, "the waiting fetch got the new batch");
    }
}
