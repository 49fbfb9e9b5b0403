//! The real broker binary: create, produce, fetch, long poll, restart, with 1 and 2 shards.

mod common;

use std::time::Duration;

use common::broker::*;
use common::{batch, stamped, tmpdir};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::*;

/// The record batches of a one-partition Fetch, which must have succeeded.
fn fetched(resp: Response) -> Vec<bytes::Bytes> {
    let p = fetch_partition(resp);
    assert_eq!(p.error_code, ErrorCode::None, "{:?}", p.error_message);
    p.records
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
            let offs = produce_ok(c.call(&produce_request("orders", p, b.clone())));
            assert_eq!(offs, vec![i as i64 * 3]);
            expected.push((p, offs[0], stamped(b, offs[0] as u64, 0)));
        }
    }
    // Read back through the common port and through every shard port.
    for shard in 0..shards {
        let mut s = broker.connect_shard(shard);
        for (p, off, bytes) in &expected {
            let recs = fetched(s.call(&fetch_request("orders", *p, *off, 0)));
            assert_eq!(&recs[0][..], &bytes[..]);
        }
    }
    broker.stop();
    // Restart and read everything again.
    let broker = Broker::start(dir.path(), shards);
    let mut c = broker.connect();
    for (p, off, bytes) in &expected {
        let recs = fetched(c.call(&fetch_request("orders", *p, *off, 0)));
        assert_eq!(&recs[0][..], &bytes[..]);
    }
    broker.stop();
}

one_and_two_shards!(round_trip_one_shard, round_trip_two_shards, round_trip);

/// SIGINT (Ctrl-C in a terminal) shuts the broker down as cleanly as SIGTERM: exit status 0,
/// and what was acknowledged is there after a restart.
#[test]
fn sigint_stops_the_broker_cleanly() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("t", 2)), Response::CreateTopic);
    let b = batch(3, 2, 50, 1_000);
    assert_eq!(produce_ok(c.call(&produce_request("t", 1, b.clone()))), [0]);
    broker.interrupt();
    let broker = Broker::start(dir.path(), 2);
    let recs = fetched(broker.connect().call(&fetch_request("t", 1, 0, 0)));
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0][..], &stamped(b, 0, 0)[..]);
    broker.stop();
}

/// A Fetch's `max_wait_ms`, and the broker's cap on it raised to allow it.
const LONG_POLL_MS: u32 = 120_000;
/// How long a waiting fetch may take to answer once data arrived: far below `LONG_POLL_MS`, so
/// a fetch that is not woken (`PartitionLog::changed`) and only re-reads at its deadline fails,
/// and far above a wake-up's milliseconds even on a loaded machine.
const WAKE_LIMIT: Duration = Duration::from_secs(15);
/// How long a fetch at the log end must stay unanswered before the produce: a fetch answered
/// early (empty) fails the test, and one that has not reached the broker by then would make
/// the check vacuous, not failing.
const QUIET: Duration = Duration::from_millis(300);

#[test]
fn long_poll_wakes_up_on_produce() {
    let dir = tmpdir();
    let broker = Broker::start_with_config(
        dir.path(),
        2,
        &format!("[limits]\nfetch_wait_ms_max = {LONG_POLL_MS}\n"),
    );
    let mut c = broker.connect();
    assert_eq!(c.call(&create_topic("t", 2)), Response::CreateTopic);
    for p in 0..2u32 {
        let mut consumer = broker.connect();
        consumer.send(&fetch_request("t", p, 0, LONG_POLL_MS));
        consumer.set_read_timeout(QUIET);
        assert!(
            matches!(consumer.read_frame_checked(), Err(RecvError::TimedOut)),
            "a fetch at the log end waits"
        );
        produce_ok(c.call(&produce_request("t", p, batch(7, 2, 10, 5))));
        consumer.set_read_timeout(WAKE_LIMIT);
        let (_, resp) = consumer
            .try_recv()
            .unwrap_or_else(|e| panic!("partition {p}: the waiting fetch was not woken: {e:?}"));
        assert_eq!(
            fetched(resp).len(),
            1,
            "the waiting fetch got the new batch"
        );
    }
    broker.stop();
}
