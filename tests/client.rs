//! The client library against the real `quill serve` binary on 127.0.0.1, with 1 and 2
//! shards: the async API inside a glommio executor, the blocking API from plain threads.
//! Every wait is bounded (poll loops have a fixed number of rounds); nothing asserts timing.

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::broker::{fetch_all_batches, Broker};
use common::client::{config, with_client, with_client_of};
use common::{closed_port, run, tmpdir, within};
use quill_client::blocking;
use quill_client::{
    partition_for_key, Acks, AutoReset, Client, ClientConfig, ClientError, ConsumedRecord,
    Consumer, ConsumerConfig, Header, NewTopic, ProducerConfig, ProducerRecord, Retention,
    StartOffset,
};
use quill_proto::record::BatchHeader;

/// A long poll's `max_wait_ms` (and the broker's cap on it, raised to allow it), and the bound
/// on a waiting fetch's answer once data arrived: far below the wait, so a fetch that is not
/// woken and only re-reads at its deadline fails the test, and far above a wake-up's
/// milliseconds even on a loaded machine.
const LONG_POLL_MS: u32 = 120_000;
const WAKE_LIMIT: Duration = Duration::from_secs(15);

/// How long a lingering producer's records are watched for going out early: a broken client
/// that sent at once would be acknowledged well within it.
const NOT_SENT_WINDOW: Duration = Duration::from_secs(1);

/// A broker whose `fetch_wait_ms_max` allows a `LONG_POLL_MS` wait.
fn long_poll_broker(dir: &std::path::Path, shards: usize) -> Broker {
    Broker::start_with_config(
        dir,
        shards,
        &format!("[limits]\nfetch_wait_ms_max = {LONG_POLL_MS}\n"),
    )
}

/// Polls until `want` records arrived (at most `rounds` polls of up to 1 s each).
async fn consume_n(consumer: &Consumer, want: usize, rounds: usize) -> Vec<ConsumedRecord> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        if out.len() >= want {
            break;
        }
        out.extend(consumer.poll(Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(out.len(), want, "records consumed");
    out
}

/// Creates `topic` with one partition and produces the values "0" to "n-1" into it, one at a
/// time.
async fn one_partition_topic_with(client: &Client, topic: &str, n: i64) {
    client
        .admin()
        .create_topic(NewTopic::new(topic, 1))
        .await
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    for i in 0..n {
        producer
            .send_and_wait(ProducerRecord::new(topic, format!("{i}")))
            .await
            .unwrap();
    }
}

/// Keyed records follow the key hash, explicit partitions are kept, unkeyed records spread;
/// everything reads back in order per partition with keys, values, headers and timestamps;
/// requests go straight to each partition's shard port.
fn round_trip(shards: usize) {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let shard_ports = broker.shard_ports.clone();
    with_client_of(&broker, |client, _addr| async move {
        client
            .admin()
            .create_topic(NewTopic::new("rt", 4))
            .await
            .unwrap();
        let producer = client
            .producer(ProducerConfig {
                linger_ms: 5,
                // Small, so unkeyed records move on to the next partition often.
                batch_bytes: 256,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut sent = Vec::new();
        for i in 0..600i64 {
            let mut r = ProducerRecord::new("rt", format!("value-{i}"));
            match i % 3 {
                0 => r = r.with_key(format!("key-{}", i % 37)),
                1 => r = r.with_partition(2),
                _ => {}
            }
            if i % 5 == 0 {
                r = r.with_header("h", format!("{i}")).with_header("empty", "");
                r.headers.push(Header {
                    key: "null".into(),
                    value: None,
                });
            }
            if i % 7 == 0 {
                r = r.with_timestamp_ms(1_000_000 + i);
            }
            if i == 599 {
                r.value = None;
            }
            let delivery = producer.send(r.clone()).await.unwrap();
            sent.push((r, delivery));
        }
        let mut acked = Vec::new();
        for (r, d) in sent {
            let partition = d.partition();
            let meta = d.await.unwrap();
            assert_eq!(meta.partition, partition);
            assert_eq!(&*meta.topic, "rt");
            if let Some(key) = &r.key {
                assert_eq!(meta.partition, partition_for_key(key, 4));
            } else if r.partition.is_some() {
                assert_eq!(meta.partition, 2);
            }
            if let Some(ts) = r.timestamp_ms {
                assert_eq!(meta.timestamp_ms, ts);
            }
            acked.push((r, meta));
        }
        // Offsets per partition are 0, 1, 2, ... in send order.
        let mut next: HashMap<u32, i64> = HashMap::new();
        for (_, m) in &acked {
            let n = next.entry(m.partition).or_insert(0);
            assert_eq!(
                m.offset, *n,
                "partition {} offsets follow send order",
                m.partition
            );
            *n += 1;
        }
        let unkeyed: std::collections::HashSet<u32> = acked
            .iter()
            .filter(|(r, _)| r.key.is_none() && r.partition.is_none())
            .map(|(_, m)| m.partition)
            .collect();
        assert!(unkeyed.len() > 1, "unkeyed records spread: {unkeyed:?}");
        let stats = producer.stats();
        assert_eq!(stats.records, 600);
        assert!(stats.batches_acked < 600, "records were batched: {stats:?}");
        assert_eq!(stats.buffered_bytes, 0);

        let consumer = client.consumer(ConsumerConfig::default()).unwrap();
        consumer
            .assign("rt", None, StartOffset::Earliest)
            .await
            .unwrap();
        let got = consume_n(&consumer, 600, 60).await;
        let mut last: HashMap<u32, i64> = HashMap::new();
        let mut by_pos = HashMap::new();
        for c in got {
            let prev = last.insert(c.partition, c.offset);
            assert_eq!(
                c.offset,
                prev.map_or(0, |p| p + 1),
                "in order per partition"
            );
            by_pos.insert((c.partition, c.offset), c);
        }
        for (r, m) in &acked {
            let c = &by_pos[&(m.partition, m.offset)];
            assert_eq!(c.key, r.key);
            assert_eq!(c.value, r.value);
            assert_eq!(c.headers, r.headers);
            assert_eq!(c.timestamp_ms, m.timestamp_ms);
        }
        for p in 0..4 {
            assert_eq!(consumer.position("rt", p), Some(next[&p]));
        }

        // Shard-aware: every shard owning a partition got its own connection.
        let d = client.admin().describe_topic("rt").await.unwrap();
        let conns = client.connections();
        for p in &d.partitions {
            let port = shard_ports[p.leader_shard as usize];
            assert!(
                conns.iter().any(|a| a.port() == port),
                "a connection to shard {}'s port {port}: {conns:?}",
                p.leader_shard
            );
            assert_eq!(p.high_watermark, next[&p.partition]);
        }
    });
    broker.stop();
}

one_and_two_shards!(round_trip_1_shard, round_trip_2_shards, round_trip);

/// acks=none resolves with offset -1 once written; the records still arrive. acks=leader
/// gives real offsets.
#[test]
fn acks_none_and_leader() {
    with_client(2, |client, _addr| async move {
        let admin = client.admin();
        admin.create_topic(NewTopic::new("a0", 2)).await.unwrap();
        let none = client
            .producer(ProducerConfig {
                acks: Acks::None,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..300 {
            let r = ProducerRecord::new("a0", format!("n{i}")).with_partition(i % 2);
            deliveries.push(none.send(r).await.unwrap());
        }
        none.flush().await.unwrap();
        for d in deliveries {
            assert_eq!(d.await.unwrap().offset, -1);
        }
        let leader = client.producer(ProducerConfig::default()).unwrap();
        let m = leader
            .send_and_wait(ProducerRecord::new("a0", "l").with_partition(0))
            .await
            .unwrap();
        assert!(m.offset >= 0);

        let consumer = client.consumer(ConsumerConfig::default()).unwrap();
        consumer
            .assign("a0", None, StartOffset::Earliest)
            .await
            .unwrap();
        let got = consume_n(&consumer, 301, 60).await;
        let mut values: Vec<String> = got
            .iter()
            .map(|c| String::from_utf8(c.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        values.sort();
        let mut want: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
        want.push("l".into());
        want.sort();
        assert_eq!(values, want);
    });
}

/// Batch boundaries as stored: `batch_bytes` caps a batch, a long linger holds records until
/// flush, a short linger sends on its own.
#[test]
fn batches_follow_batch_bytes_and_linger() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    with_client_of(&broker, |client, _addr| async move {
        let admin = client.admin();
        for t in ["b1", "b2", "b3"] {
            admin.create_topic(NewTopic::new(t, 1)).await.unwrap();
        }
        // ~1010-byte records: three fit in 4000 bytes with the 61-byte header, four do not.
        let small_batches = client
            .producer(ProducerConfig {
                linger_ms: 60_000,
                batch_bytes: 4000,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..100u8 {
            let r = ProducerRecord::new("b1", vec![i; 1000]);
            deliveries.push(small_batches.send(r).await.unwrap());
        }
        small_batches.flush().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
        // A long linger: nothing goes until flush, then all in one batch.
        let lingering = client
            .producer(ProducerConfig {
                linger_ms: 60_000,
                batch_bytes: 1 << 20,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..50 {
            let r = ProducerRecord::new("b2", format!("{i}"));
            deliveries.push(lingering.send(r).await.unwrap());
        }
        // Long enough for a client that sent at once to have its records acknowledged even on
        // a loaded machine; with a one minute linger nothing may have gone.
        glommio::timer::sleep(NOT_SENT_WINDOW).await;
        assert!(
            deliveries
                .iter()
                .all(|d| d.try_result().is_none() && d.delivered().is_none()),
            "nothing is sent before the linger ends or a flush"
        );
        // Nor has anything reached the broker (a client that sent but did not report it).
        let probe = client.consumer(ConsumerConfig::default()).unwrap();
        probe.assign("b2", None, StartOffset::Latest).await.unwrap();
        assert_eq!(
            probe.position("b2", 0),
            Some(0),
            "nothing stored before the linger ends"
        );
        drop(probe);
        lingering.flush().await.unwrap();
        assert!(
            deliveries.iter().all(|d| d.delivered() == Some(true)),
            "flush returns once every record is acknowledged"
        );
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.await.unwrap().offset, i as i64);
        }
        // Unkeyed records fill a batch on one partition, then move on (KIP-480); the full batch
        // goes at once, not after the (one minute) linger.
        admin.create_topic(NewTopic::new("b4", 2)).await.unwrap();
        let sticky = client
            .producer(ProducerConfig {
                linger_ms: 60_000,
                batch_bytes: 4000,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..4u8 {
            deliveries.push(
                sticky
                    .send(ProducerRecord::new("b4", vec![i; 1000]))
                    .await
                    .unwrap(),
            );
        }
        let parts: Vec<u32> = deliveries.iter().map(|d| d.partition()).collect();
        assert_eq!(parts[..3], [parts[0]; 3], "three fill one batch");
        assert_ne!(parts[3], parts[0], "the fourth starts the next partition");
        let first = deliveries.remove(0);
        let sent = futures_lite::future::or(async { Some(first.await) }, async {
            glommio::timer::sleep(Duration::from_secs(20)).await;
            None
        })
        .await;
        assert_eq!(sent.expect("sent before the linger").unwrap().offset, 0);
        sticky.flush().await.unwrap();
        // A short linger sends without a flush.
        let short = client
            .producer(ProducerConfig {
                linger_ms: 20,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..10 {
            let r = ProducerRecord::new("b3", format!("{i}"));
            deliveries.push(short.send(r).await.unwrap());
        }
        for d in deliveries {
            d.await.unwrap();
        }
    });
    let mut conn = broker.connect();
    let b1 = fetch_all_batches(&mut conn, "b1", 0);
    let counts: Vec<i32> = b1
        .iter()
        .map(|(_, b)| BatchHeader::parse(b).unwrap().record_count)
        .collect();
    let mut want = vec![3; 33];
    want.push(1);
    assert_eq!(counts, want, "three records per 4000-byte batch");
    assert!(b1.iter().all(|(_, b)| b.len() <= 4000));
    let b2 = fetch_all_batches(&mut conn, "b2", 0);
    assert_eq!(b2.len(), 1);
    assert_eq!(BatchHeader::parse(&b2[0].1).unwrap().record_count, 50);
    let b3 = fetch_all_batches(&mut conn, "b3", 0);
    let total: i32 = b3
        .iter()
        .map(|(_, b)| BatchHeader::parse(b).unwrap().record_count)
        .sum();
    assert_eq!(total, 10);
    broker.stop();
}

/// Earliest, an offset inside a batch, a timestamp, latest; and the long poll of a consumer
/// at the end of the log receiving records produced after it started waiting.
#[test]
fn consumer_start_positions_and_long_poll() {
    let dir = tmpdir();
    let broker = long_poll_broker(dir.path(), 2);
    with_client_of(&broker, |client, _addr| async move {
        client
            .admin()
            .create_topic(NewTopic::new("s", 1))
            .await
            .unwrap();
        let producer = client
            .producer(ProducerConfig {
                linger_ms: 60_000,
                ..ProducerConfig::default()
            })
            .unwrap();
        let t0 = 1_700_000_000_000i64;
        let mut deliveries = Vec::new();
        for i in 0..10 {
            let r = ProducerRecord::new("s", format!("{i}")).with_timestamp_ms(t0 + i * 1000);
            deliveries.push(producer.send(r).await.unwrap());
        }
        producer.flush().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
        let offsets =
            |records: &[ConsumedRecord]| -> Vec<i64> { records.iter().map(|r| r.offset).collect() };
        let starts = [
            (StartOffset::Earliest, 0),
            // Inside the one batch: records 0 to 3 are skipped.
            (StartOffset::Offset(4), 4),
            (StartOffset::Timestamp(t0 + 5000), 5),
            (StartOffset::Timestamp(t0 + 5500), 6),
        ];
        for (start, first) in starts {
            let c = client.consumer(ConsumerConfig::default()).unwrap();
            c.assign("s", Some(vec![0]), start).await.unwrap();
            assert_eq!(c.position("s", 0), Some(first));
            let got = consume_n(&c, (10 - first) as usize, 30).await;
            assert_eq!(offsets(&got), (first..10).collect::<Vec<_>>(), "{start:?}");
            assert_eq!(got[0].timestamp_ms, t0 + first * 1000);
            assert_eq!(c.position("s", 0), Some(10));
        }
        // After every record: the end of the log.
        for start in [StartOffset::Timestamp(t0 + 100_000), StartOffset::Latest] {
            let c = client.consumer(ConsumerConfig::default()).unwrap();
            c.assign("s", None, start).await.unwrap();
            assert_eq!(c.position("s", 0), Some(10));
            assert!(c.poll(Duration::from_millis(100)).await.unwrap().is_empty());
        }

        // Long poll: the consumer is waiting before the records exist. A poll that comes back
        // empty leaves its fetch out at the broker, waiting up to LONG_POLL_MS.
        let c = client
            .consumer(ConsumerConfig {
                fetch_wait_ms_max: LONG_POLL_MS,
                ..ConsumerConfig::default()
            })
            .unwrap();
        c.assign("s", None, StartOffset::Latest).await.unwrap();
        assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());
        let late = client.producer(ProducerConfig::default()).unwrap();
        for i in 0..3 {
            late.send_and_wait(ProducerRecord::new("s", format!("late{i}")))
                .await
                .unwrap();
        }
        // Woken by the produce, not re-read at the deadline.
        let got = within(WAKE_LIMIT, consume_n(&c, 3, 60))
            .await
            .expect("the waiting fetch was woken by the produce");
        assert_eq!(offsets(&got), [10, 11, 12]);
        assert_eq!(got[0].value.as_deref(), Some(&b"late0"[..]));
    });
    broker.stop();
}

/// A consumer's fetch long-polling at the broker does not hold back the acknowledgements of a
/// producer of the same client: responses on a connection come in request order, so the
/// consumer fetches over connections of its own.
#[test]
fn a_long_poll_does_not_hold_back_produce_acks() {
    let dir = tmpdir();
    let broker = long_poll_broker(dir.path(), 1);
    with_client_of(&broker, |client, _addr| async move {
        for t in ["idle", "busy"] {
            client
                .admin()
                .create_topic(NewTopic::new(t, 1))
                .await
                .unwrap();
        }
        let consumer = client
            .consumer(ConsumerConfig {
                fetch_wait_ms_max: LONG_POLL_MS,
                ..ConsumerConfig::default()
            })
            .unwrap();
        consumer
            .assign("idle", None, StartOffset::Latest)
            .await
            .unwrap();
        // An empty poll leaves the consumer's fetch waiting at the broker.
        assert!(consumer
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty());
        let polled = Rc::new(Cell::new(false));
        let (consumer, flag) = (Rc::new(consumer), polled.clone());
        let c = consumer.clone();
        let poll = glommio::spawn_local(async move {
            let got = c.poll(Duration::from_secs(600)).await.unwrap();
            flag.set(true);
            got
        });
        let producer = client.producer(ProducerConfig::default()).unwrap();
        for i in 0..5 {
            // Queued behind the long poll, a send would wait for it to expire (LONG_POLL_MS).
            let meta = within(
                WAKE_LIMIT,
                producer.send_and_wait(ProducerRecord::new("busy", format!("{i}"))),
            )
            .await
            .expect("a produce was held back by the long poll")
            .unwrap();
            assert_eq!(meta.offset, i);
        }
        assert!(
            !polled.get(),
            "the produces were acknowledged while the long poll still waited"
        );
        producer
            .send_and_wait(ProducerRecord::new("idle", "wake"))
            .await
            .unwrap();
        let got = within(WAKE_LIMIT, poll)
            .await
            .expect("the waiting fetch was woken by the produce");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value.as_deref(), Some(&b"wake"[..]));
    });
    broker.stop();
}

/// A consumer at the end of the log has a long poll out (fetched ahead); a seek back is served
/// at once, not after that poll expires, and a dropped consumer leaves no connection behind.
#[test]
fn seek_with_a_long_poll_out_and_consumer_connections_go_with_it() {
    with_client(2, |client, _addr| async move {
        one_partition_topic_with(&client, "sk", 3).await;
        let before = client.connection_count();
        let consumer = client
            .consumer(ConsumerConfig {
                fetch_wait_ms_max: 30_000,
                ..ConsumerConfig::default()
            })
            .unwrap();
        consumer
            .assign("sk", None, StartOffset::Earliest)
            .await
            .unwrap();
        let got = consume_n(&consumer, 3, 30).await;
        assert_eq!(got.len(), 3);
        // Now a fetch from offset 3 waits at the broker for up to 30 s.
        assert!(client.connection_count() > before);
        consumer.seek("sk", 0, 1).unwrap();
        let again = consumer.poll(Duration::from_secs(10)).await.unwrap();
        let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            [1, 2],
            "served from the new position within one poll"
        );
        drop(consumer);
        assert_eq!(client.connection_count(), before);
    });
}

/// `auto_reset`: Error reports the valid range, Earliest and Latest move the position.
#[test]
fn offset_out_of_range_policies() {
    with_client(1, |client, _addr| async move {
        one_partition_topic_with(&client, "o", 5).await;
        let c = client
            .consumer(ConsumerConfig {
                auto_reset: AutoReset::Error,
                ..ConsumerConfig::default()
            })
            .unwrap();
        c.assign("o", None, StartOffset::Offset(1000))
            .await
            .unwrap();
        let mut error = None;
        for _ in 0..10 {
            match c.poll(Duration::from_secs(1)).await {
                Ok(r) => assert!(r.is_empty()),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let e = error.expect("an out-of-range error");
        assert_eq!(
            e,
            ClientError::OffsetOutOfRange {
                topic: "o".into(),
                partition: 0,
                offset: 1000,
                log_start_offset: 0,
                log_end_offset: 5,
            }
        );
        assert_eq!(
            e.to_string(),
            "offset 1000 is out of range for o-0: the log holds offsets 0 to 4"
        );
        let c = client.consumer(ConsumerConfig::default()).unwrap();
        c.assign("o", None, StartOffset::Offset(1000))
            .await
            .unwrap();
        let got = consume_n(&c, 5, 30).await;
        assert_eq!(got[0].offset, 0);
        let c = client
            .consumer(ConsumerConfig {
                auto_reset: AutoReset::Latest,
                ..ConsumerConfig::default()
            })
            .unwrap();
        c.assign("o", None, StartOffset::Offset(1000))
            .await
            .unwrap();
        for _ in 0..10 {
            assert!(c.poll(Duration::from_millis(200)).await.unwrap().is_empty());
            if c.position("o", 0) == Some(5) {
                break;
            }
        }
        assert_eq!(c.position("o", 0), Some(5));
    });
}

/// The broker goes away (SIGTERM) while records are queued and comes back on the same shard
/// port: the producer retries (connection refused is retriable) until they are written.
/// The bootstrap address is the shard port, fixed with `--shard-port-base`; the common port
/// changes across the restart, which the client never needs.
#[test]
fn producer_retries_across_a_broker_restart() {
    let dir = tmpdir();
    let port = closed_port();
    let start = |dir: &std::path::Path| {
        Broker::start_with(dir, 1, |cmd| {
            cmd.args(["--shard-port-base", &port.to_string()]);
        })
    };
    let broker = start(dir.path());
    assert_eq!(broker.shard_ports, [port]);
    let client = blocking::Client::connect(ClientConfig {
        retries_max: 200,
        retry_backoff_ms: 50,
        ..ClientConfig::new(format!("127.0.0.1:{port}"))
    })
    .unwrap();
    client.admin().create_topic(NewTopic::new("r", 1)).unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    for i in 0..5 {
        let m = producer
            .send_sync(ProducerRecord::new("r", format!("{i}")))
            .unwrap();
        assert_eq!(m.offset, i);
    }
    broker.stop();
    let mut handles = Vec::new();
    for i in 5..10 {
        handles.push(
            producer
                .send(ProducerRecord::new("r", format!("{i}")))
                .unwrap(),
        );
    }
    // Restart once the producer has seen the broker gone (a retry), not after a guessed sleep.
    let mut polls = 0;
    while producer.stats().unwrap().retries == 0 {
        polls += 1;
        assert!(polls < 3000, "no retry within 30 s of the broker stopping");
        std::thread::sleep(Duration::from_millis(10));
    }
    let broker = start(dir.path());
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap().offset, 5 + i as i64);
    }
    let consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign("r", None, StartOffset::Earliest).unwrap();
    let mut got = Vec::new();
    for _ in 0..30 {
        if got.len() >= 10 {
            break;
        }
        got.extend(consumer.poll(Duration::from_secs(1)).unwrap());
    }
    let values: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8(c.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    drop((producer, consumer, client));
    broker.stop();
}

/// The blocking API from plain threads: admin, producer (send + wait, send_sync, flush),
/// consumer.
#[test]
fn blocking_api_from_plain_threads() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let addr = broker.addr;
    let client = blocking::Client::connect(config(addr)).unwrap();
    assert!(client.broker_limits().unwrap().batch_bytes_max > 0);
    let admin = client.admin();
    admin.create_topic(NewTopic::new("bl", 3)).unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let producer_client = client.clone();
            std::thread::spawn(move || {
                let producer = producer_client.producer(ProducerConfig::default()).unwrap();
                let handles: Vec<_> = (0..100)
                    .map(|i| {
                        producer
                            .send(
                                ProducerRecord::new("bl", format!("t{t}-{i}"))
                                    .with_key(format!("t{t}")),
                            )
                            .unwrap()
                    })
                    .collect();
                producer.flush().unwrap();
                handles
                    .into_iter()
                    .map(|h| h.wait().unwrap().offset)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for w in writers {
        let offsets = w.join().unwrap();
        // One key, one partition: in send order (other threads' keys may share it).
        assert!(offsets.windows(2).all(|o| o[1] > o[0]), "{offsets:?}");
    }
    let m = producer
        .send_sync(ProducerRecord::new("bl", "last").with_partition(1))
        .unwrap();
    assert_eq!(m.partition, 1);
    let d = admin.describe_topic("bl").unwrap();
    let total: i64 = d.partitions.iter().map(|p| p.high_watermark).sum();
    assert_eq!(total, 301);

    let reader = std::thread::spawn(move || {
        let consumer = client.consumer(ConsumerConfig::default()).unwrap();
        consumer.assign("bl", None, StartOffset::Earliest).unwrap();
        let mut got = Vec::new();
        for _ in 0..60 {
            if got.len() >= 301 {
                break;
            }
            got.extend(consumer.poll(Duration::from_secs(1)).unwrap());
        }
        assert_eq!(
            consumer.position("bl", 1).unwrap(),
            Some(d.partitions[1].high_watermark)
        );
        consumer.seek("bl", 1, 0).unwrap();
        assert_eq!(consumer.position("bl", 1).unwrap(), Some(0));
        got.len()
    });
    assert_eq!(reader.join().unwrap(), 301);
    assert_eq!(admin.list_topics().unwrap()[0].name, "bl");
    admin.delete_topic("bl").unwrap();
    assert!(admin.list_topics().unwrap().is_empty());
    drop((producer, admin));
    broker.stop();
}

#[test]
fn admin_create_list_describe_delete() {
    with_client(2, |client, _addr| async move {
        let admin = client.admin();
        admin
            .create_topic(
                NewTopic::new("ad", 5)
                    .retention_ms(Retention::Limit(3_600_000))
                    .retention_bytes(Retention::Forever)
                    .segment_bytes(1 << 20),
            )
            .await
            .unwrap();
        admin.create_topic(NewTopic::new("other", 1)).await.unwrap();
        let e = admin
            .create_topic(NewTopic::new("ad", 1))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "topic 'ad' already exists");
        assert_eq!(e.code(), Some(quill_client::ErrorCode::TopicAlreadyExists));
        let e = admin
            .create_topic(NewTopic::new("bad/name", 1))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::InvalidTopicName { .. }), "{e}");
        let e = admin
            .create_topic(NewTopic::new("zero", 0))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::InvalidArgument { .. }), "{e}");

        let names: Vec<(String, u32)> = admin
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.partitions))
            .collect();
        assert_eq!(names, [("ad".to_string(), 5), ("other".to_string(), 1)]);

        let producer = client.producer(ProducerConfig::default()).unwrap();
        for p in 0..5 {
            for _ in 0..=p {
                producer
                    .send_and_wait(ProducerRecord::new("ad", "x").with_partition(p))
                    .await
                    .unwrap();
            }
        }
        let d = admin.describe_topic("ad").await.unwrap();
        assert_eq!(d.name, "ad");
        assert_eq!(d.partitions.len(), 5);
        for (i, p) in d.partitions.iter().enumerate() {
            assert_eq!(p.partition, i as u32);
            assert!(p.error_code.is_none());
            assert!(p.leader_shard < 2);
            assert_eq!(p.log_start_offset, 0);
            assert_eq!(p.high_watermark, i as i64 + 1);
            assert_eq!(p.log_end_offset, i as i64 + 1);
        }

        admin.delete_topic("ad").await.unwrap();
        let names: Vec<String> = admin
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["other"]);
        let e = admin.describe_topic("ad").await.unwrap_err();
        assert_eq!(e.to_string(), "unknown topic 'ad'");
        let e = admin.delete_topic("ad").await.unwrap_err();
        assert_eq!(e, ClientError::UnknownTopic { topic: "ad".into() });
        // A producer that knew the deleted topic is told it is gone.
        let e = producer
            .send_and_wait(ProducerRecord::new("ad", "x"))
            .await
            .unwrap_err();
        assert_eq!(e, ClientError::UnknownTopic { topic: "ad".into() });
    });
}

/// Typed errors for what cannot work: unknown topic or partition, a record over the broker's
/// batch limit, a negative timestamp.
#[test]
fn unknown_topic_and_bad_records() {
    with_client(1, |client, _addr| async move {
        let producer = client.producer(ProducerConfig::default()).unwrap();
        let e = producer
            .send(ProducerRecord::new("missing", "x"))
            .await
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "unknown topic 'missing'");
        assert_eq!(
            e.code(),
            Some(quill_client::ErrorCode::UnknownTopicOrPartition)
        );
        let consumer = client.consumer(ConsumerConfig::default()).unwrap();
        let e = consumer
            .assign("missing", None, StartOffset::Earliest)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "unknown topic 'missing'");

        client
            .admin()
            .create_topic(NewTopic::new("one", 1))
            .await
            .unwrap();
        let e = producer
            .send(ProducerRecord::new("one", "x").with_partition(5))
            .await
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "topic 'one' has no partition 5 (it has 1)");
        let e = consumer
            .assign("one", Some(vec![3]), StartOffset::Earliest)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::UnknownPartition { .. }), "{e}");

        let max = client.broker_limits().batch_bytes_max as usize;
        let e = producer
            .send(ProducerRecord::new("one", Bytes::from(vec![0u8; max])))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ClientError::RecordTooLarge { .. }), "{e}");
        let e = producer
            .send(ProducerRecord::new("one", "x").with_timestamp_ms(-5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ClientError::InvalidArgument { .. }), "{e}");
        // The producer still works.
        producer
            .send_and_wait(ProducerRecord::new("one", "fine"))
            .await
            .unwrap();
    });
}

#[test]
fn unreachable_broker_is_reported() {
    let port = closed_port();
    let want = format!("broker 127.0.0.1:{port} unreachable: connection refused");
    let cfg = ClientConfig {
        retries_max: 1,
        retry_backoff_ms: 10,
        ..ClientConfig::new(format!("127.0.0.1:{port}"))
    };
    let cfg2 = cfg.clone();
    let e = run(move || async move { Client::connect(cfg2).await.err().unwrap() });
    assert_eq!(e.to_string(), want);
    assert!(e.is_connection() && e.code().is_none());
    let e = blocking::Client::connect(cfg).err().unwrap();
    assert_eq!(e.to_string(), want);
    let e = blocking::Client::connect(ClientConfig::new("no-port-here"))
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::BadAddress { .. }), "{e}");
}

/// A topic deleted while records are queued (issue 8, finding 10): the broker answers
/// UNKNOWN_TOPIC_OR_PARTITION, the producer refreshes metadata, learns the topic is gone and
/// fails the records with `UnknownTopic`; `flush` returns instead of waiting for ever, and
/// the next `send` is refused.
#[test]
fn a_topic_deleted_under_the_producer_fails_its_records() {
    with_client(2, |client, addr| async move {
        let admin = client.admin();
        admin.create_topic(NewTopic::new("gone", 2)).await.unwrap();
        let producer = client.producer(ProducerConfig::default()).unwrap();
        for p in 0..2 {
            let r = ProducerRecord::new("gone", "before").with_partition(p);
            producer.send_and_wait(r).await.unwrap();
        }
        // Deleted by someone else: this client's cache still knows the topic.
        let other = Client::connect(config(addr)).await.unwrap();
        other.admin().delete_topic("gone").await.unwrap();
        let mut deliveries = Vec::new();
        for p in 0..2 {
            let r = ProducerRecord::new("gone", "after").with_partition(p);
            deliveries.push(producer.send(r).await.unwrap());
        }
        within(Duration::from_secs(30), producer.flush())
            .await
            .expect("flush returned within 30 s")
            .unwrap();
        for d in deliveries {
            let e = d.await.unwrap_err();
            assert_eq!(e.to_string(), "unknown topic 'gone'");
        }
        let e = producer
            .send(ProducerRecord::new("gone", "later"))
            .await
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "unknown topic 'gone'");
    });
}

/// With acks none the broker answers nothing, not even a failed produce: it closes the
/// connection. A producer that finds the connection its earlier produces went over closed
/// refreshes metadata before sending more, so records for a topic deleted meanwhile fail with
/// `UnknownTopic` instead of resolving as written (issue 8, finding 10).
#[test]
fn acks_none_notices_a_deleted_topic() {
    with_client(1, |client, addr| async move {
        client
            .admin()
            .create_topic(NewTopic::new("gone0", 1))
            .await
            .unwrap();
        let producer = client
            .producer(ProducerConfig {
                acks: Acks::None,
                ..ProducerConfig::default()
            })
            .unwrap();
        producer
            .send_and_wait(ProducerRecord::new("gone0", "before"))
            .await
            .unwrap();
        let other = Client::connect(config(addr)).await.unwrap();
        other.admin().delete_topic("gone0").await.unwrap();
        let mut error = None;
        for i in 0..250 {
            let outcome = match producer.send(ProducerRecord::new("gone0", "after")).await {
                Ok(d) => within(Duration::from_secs(30), d)
                    .await
                    .expect("delivered within 30 s"),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                error = Some((i, e));
                break;
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let (i, e) = error.expect("a record for the deleted topic failed");
        assert!(
            matches!(e, ClientError::UnknownTopic { .. }),
            "record {i}: {e}"
        );
    });
}
