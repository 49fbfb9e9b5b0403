//! The client's replication paths against the real broker (issue 11): `acks = all`, the
//! replica view of describe, the cluster view, a refused replication factor, and a leader that
//! moved to other ports (the broker restarted with new shard ports), found again through a
//! metadata refresh within the delivery timeout without using up `retries_max`.

mod common;

use std::time::Duration;

use common::broker::Broker;
use common::client::with_client;
use common::{closed_port, tmpdir};
use quill_client::{
    blocking, Acks, ClientConfig, ClientError, ConsumerConfig, ErrorCode, NewTopic, ProducerConfig,
    ProducerRecord, StartOffset,
};

#[test]
fn acks_all_and_the_replica_views_on_one_node() {
    with_client(2, |client, _| async move {
        let admin = client.admin();
        admin
            .create_topic(NewTopic::new("ra", 3).replication_factor(1))
            .await
            .unwrap();
        let producer = client
            .producer(ProducerConfig {
                acks: Acks::All,
                ..ProducerConfig::default()
            })
            .unwrap();
        for i in 0..10 {
            let m = producer
                .send_and_wait(ProducerRecord::new("ra", format!("{i}")).with_partition(1))
                .await
                .unwrap();
            assert_eq!(m.offset, i);
        }
        let d = admin.describe_topic("ra").await.unwrap();
        assert_eq!(d.controller_node, Some(0));
        for p in &d.partitions {
            assert_eq!(
                (p.replicas.as_slice(), p.in_sync.as_slice()),
                (&[0][..], &[0][..])
            );
        }
        assert_eq!(d.partitions[1].high_watermark, 10);
        let c = admin
            .describe_cluster(Some(vec!["ra".into()]))
            .await
            .unwrap();
        assert_eq!(c.metadata_leader, 0);
        assert!(c.nodes.len() == 1 && c.nodes[0].up);
        assert_eq!(c.topics[0].partitions.len(), 3);
        assert_eq!(c.under_replicated_partitions, 0);
        let e = admin
            .create_topic(NewTopic::new("r3", 1).replication_factor(3))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidReplicationFactor), "{e}");
        assert!(!e.is_retriable());
        assert_eq!(
            e.to_string(),
            "create topic 'r3': INVALID_REPLICATION_FACTOR (replication factor 3 is more than \
             the 1 live node of the cluster)"
        );
    });
}

/// The partition's "leader" moves to ports the client has never seen: the broker restarts on
/// the same common port (the bootstrap) with new shard ports. The producer's next request is
/// refused by the old shard port; it refreshes its metadata and delivers to the new one, with
/// `retries_max` 0: a leader change does not use up retries, the delivery timeout bounds it.
/// The consumer likewise finds the partition on its next polls.
#[test]
fn a_leader_on_new_ports_is_found_again_within_the_delivery_timeout() {
    let dir = tmpdir();
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let broker = Broker::start_on(dir.path(), 2, &listen, |_| {});
    let old_ports = broker.shard_ports.clone();
    let client = blocking::Client::connect(ClientConfig {
        retries_max: 0,
        retry_backoff_ms: 20,
        ..ClientConfig::new(listen.clone())
    })
    .unwrap();
    client.admin().create_topic(NewTopic::new("mv", 2)).unwrap();
    let producer = client
        .producer(ProducerConfig {
            acks: Acks::All,
            delivery_timeout_ms: 20_000,
            ..ProducerConfig::default()
        })
        .unwrap();
    let consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign("mv", None, StartOffset::Earliest).unwrap();
    for p in 0..2 {
        let r = ProducerRecord::new("mv", "before").with_partition(p);
        assert_eq!(producer.send_sync(r).unwrap().offset, 0);
    }
    let mut got = 0;
    for _ in 0..50 {
        got += consumer.poll(Duration::from_millis(200)).unwrap().len();
        if got == 2 {
            break;
        }
    }
    assert_eq!(got, 2);
    broker.stop();
    let broker = Broker::start_on(dir.path(), 2, &listen, |_| {});
    assert_ne!(broker.shard_ports, old_ports, "the shard ports moved");
    for p in 0..2 {
        let r = ProducerRecord::new("mv", "after").with_partition(p);
        let m = producer.send_sync(r).unwrap();
        assert_eq!((m.partition, m.offset), (p, 1));
    }
    assert!(producer.stats().unwrap().retries >= 1);
    let mut after = Vec::new();
    for _ in 0..100 {
        match consumer.poll(Duration::from_millis(200)) {
            Ok(records) => after.extend(records),
            Err(e) => panic!("the consumer should ride out the move: {e}"),
        }
        if after.len() == 2 {
            break;
        }
    }
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|r| r.offset == 1));
    drop((producer, consumer, client));
    broker.stop();
}

/// When the delivery timeout runs out, the error says so and names the last failure.
#[test]
fn a_leader_that_never_comes_back_fails_with_the_delivery_timeout() {
    let dir = tmpdir();
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let broker = Broker::start_on(dir.path(), 1, &listen, |_| {});
    let client = blocking::Client::connect(ClientConfig {
        retries_max: 0,
        retry_backoff_ms: 20,
        ..ClientConfig::new(listen.clone())
    })
    .unwrap();
    client
        .admin()
        .create_topic(NewTopic::new("gone", 1))
        .unwrap();
    let producer = client
        .producer(ProducerConfig {
            delivery_timeout_ms: 700,
            ..ProducerConfig::default()
        })
        .unwrap();
    producer
        .send_sync(ProducerRecord::new("gone", "x"))
        .unwrap();
    broker.stop();
    let e = producer
        .send_sync(ProducerRecord::new("gone", "y"))
        .unwrap_err();
    let ClientError::DeliveryTimedOut {
        timeout_ms, last, ..
    } = &e
    else {
        panic!("expected DeliveryTimedOut, got {e}")
    };
    assert_eq!(*timeout_ms, 700);
    assert!(last.is_connection(), "{e}");
    assert!(
        e.to_string()
            .starts_with("delivery to gone-0 timed out after 700 ms (delivery_timeout_ms)"),
        "{e}"
    );
    assert!(e.to_string().contains("last error: "), "{e}");
}
