//! Three real `quill serve` processes on 127.0.0.1 forming a cluster (issue 11): topics with
//! replication factor 3, a producer with `acks = all` recording every acknowledged (offset,
//! payload), and the leader SIGKILLed and restarted, SIGSTOPped and continued, while it
//! writes. At the end every acknowledged record is at its offset, in order, on the partition's
//! leader, and every replica holds the same records.
//!
//! Bounded: a fixed number of rounds, each waiting at most a few seconds; every process is
//! killed when the test ends. The failover times measured are printed (`--nocapture`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::tmpdir;
use quill_client::blocking;
use quill_client::{
    Acks, ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, StartOffset,
};

/// Acknowledged records: offset -> payload.
type Acked = Arc<Mutex<BTreeMap<i64, String>>>;

fn client(c: &Cluster, node: u32) -> blocking::Client {
    let mut cfg = ClientConfig::new(c.node(node).listen.to_string());
    cfg.request_timeout_ms = 2_000;
    cfg.retry_backoff_ms = 50;
    cfg.metadata_refresh_backoff_ms = 50;
    blocking::Client::connect(cfg).expect("connect")
}

/// Starts `nodes` nodes and waits (10 s at most) until node 1 sees a metadata leader and every
/// node registered and up.
fn start(dir: &std::path::Path, nodes: usize, shards: usize) -> Cluster {
    let c = Cluster::start(dir, nodes, shards);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(d) = client(&c, 1).admin().describe_cluster(None) {
            let ready = d.metadata_leader >= 0
                && d.nodes.len() == nodes
                && d.nodes.iter().all(|n| n.up && n.port != 0);
            if ready {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The partition's leader with the highest epoch any running node reports (a node that just
/// restarted may not have caught up on the metadata yet), once one is known (10 s at most).
/// `exclude`: a node known to be gone or paused, whose own answer is not waited for.
fn leader_of(c: &Cluster, exclude: Option<u32>, topic: &str, partition: u32) -> (u32, i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut best: Option<(u32, i32)> = None;
        for node in c.running() {
            if Some(node) == exclude {
                continue;
            }
            if let Ok(d) = client(c, node).admin().describe_topic(topic) {
                let p = &d.partitions[partition as usize];
                if p.error_code == quill_client::ErrorCode::None
                    && best.is_none_or(|(_, e)| p.leader_epoch > e)
                {
                    best = Some((p.leader_node, p.leader_epoch));
                }
            }
        }
        if let Some((l, e)) = best {
            if c.running().contains(&l) && Some(l) != exclude {
                return (l, e);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader of {topic}-{partition}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Produces "p-0", "p-1", ... with `acks = all` into partition 0 until `stop`, one at a time,
/// recording each acknowledgement and when it came.
fn producer(
    c: &Cluster,
    node: u32,
    topic: &'static str,
    stop: Arc<AtomicBool>,
    acked: Acked,
    acked_at: Arc<Mutex<Vec<Instant>>>,
) -> std::thread::JoinHandle<usize> {
    let client = client(c, node);
    std::thread::spawn(move || {
        let p = client
            .producer(ProducerConfig {
                acks: Acks::All,
                linger_ms: 0,
                delivery_timeout_ms: 20_000,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut failed = 0;
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let payload = format!("p-{i}");
            i += 1;
            match p.send_sync(ProducerRecord::new(topic, payload.clone()).with_partition(0)) {
                Ok(m) => {
                    let old = acked.lock().unwrap().insert(m.offset, payload);
                    assert!(old.is_none(), "offset {} acknowledged twice", m.offset);
                    acked_at.lock().unwrap().push(Instant::now());
                }
                // Past the delivery timeout: not acknowledged, so it may or may not be there.
                Err(e) => {
                    eprintln!("producer: {payload} not acknowledged: {e}");
                    failed += 1
                }
            }
        }
        failed
    })
}

/// Consumes partition 0 from the earliest offset until `stop`, through whatever node leads
/// (the client follows leader changes), recording every record it was given.
fn consumer(
    c: &Cluster,
    node: u32,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(i64, String)>> {
    let client = client(c, node);
    std::thread::spawn(move || {
        let consumer = client.consumer(ConsumerConfig::default()).unwrap();
        consumer
            .assign(topic, Some(vec![0]), StartOffset::Earliest)
            .unwrap();
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            // Errors (a leader gone mid-fetch) are retried by the next poll.
            if let Ok(records) = consumer.poll(Duration::from_millis(200)) {
                for r in records {
                    let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                    seen.push((r.offset, v));
                }
            }
        }
        seen
    })
}

/// Every record a consumer saw during the faults is still in the log at the same offset:
/// nothing a consumer read was later lost (consumers only read below the high watermark).
fn check_consumed(seen: &[(i64, String)], log: &[(i64, String)]) {
    let by_offset: BTreeMap<i64, &String> = log.iter().map(|(o, v)| (*o, v)).collect();
    for (o, v) in seen {
        assert_eq!(
            by_offset.get(o).copied(),
            Some(v),
            "a consumer read {v} at offset {o}, which the log no longer holds"
        );
    }
}

/// Every record of partition 0 read from `node` (which must lead it), up to `end`.
fn read_all(c: &Cluster, node: u32, topic: &str, end: i64) -> Vec<(i64, String)> {
    let consumer = client(c, node).consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign(topic, Some(vec![0]), StartOffset::Earliest)
        .unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.last().is_none_or(|(o, _)| *o + 1 < end) {
        assert!(Instant::now() < deadline, "read {} records only", out.len());
        for r in consumer.poll(Duration::from_millis(500)).unwrap() {
            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            out.push((r.offset, v));
        }
    }
    out
}

/// The acknowledged records are all there at their offsets, and the log holds nothing but
/// this producer's records, each once... except records sent again after an unanswered try
/// (at-least-once), which are allowed only as payloads of unacknowledged sends.
fn check(acked: &BTreeMap<i64, String>, log: &[(i64, String)]) {
    let by_offset: BTreeMap<i64, &String> = log.iter().map(|(o, v)| (*o, v)).collect();
    for (o, v) in acked {
        assert_eq!(
            by_offset.get(o).copied(),
            Some(v),
            "acknowledged record at offset {o} is missing or different"
        );
    }
    // Exactly once is not guaranteed yet: a batch the client sends again after a leader change
    // (its first try committed, the answer lost) is written twice, as in Kafka without the
    // idempotent producer. Counted and printed; the acknowledged copy is the one checked above.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, v) in log {
        *count.entry(v.as_str()).or_default() += 1;
    }
    let twice = acked
        .values()
        .filter(|v| count.get(v.as_str()).copied().unwrap_or(0) > 1)
        .count();
    if twice > 0 {
        println!("{twice} acknowledged records are in the log more than once (client retries)");
    }
    // In order: offsets increase and acknowledged payload numbers increase with them.
    let mut last = -1i64;
    for (o, _) in log {
        assert!(*o > last, "offsets out of order at {o}");
        last = *o;
    }
    let nums: Vec<u64> = acked.values().map(|v| v[2..].parse().unwrap()).collect();
    assert!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "acknowledged records out of order"
    );
}

/// The time from `since` to the first acknowledgement after it.
fn first_ack_after(acked_at: &Mutex<Vec<Instant>>, since: Instant, limit: Duration) -> Duration {
    let deadline = since + limit;
    loop {
        if let Some(t) = acked_at.lock().unwrap().iter().find(|&&t| t > since) {
            return *t - since;
        }
        assert!(
            Instant::now() < deadline,
            "no acknowledgement within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_and_restart_the_leader_loses_no_acknowledged_record() {
    let dir = tmpdir();
    let mut c = start(dir.path(), 3, 1);
    client(&c, 2)
        .admin()
        .create_topic(NewTopic::new("k", 1).replication_factor(3))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let acked_at = Arc::new(Mutex::new(Vec::new()));
    // The producer bootstraps from each node in turn as they die: give it all three.
    let prod = producer(&c, 1, "k", stop.clone(), acked.clone(), acked_at.clone());
    let cons = consumer(&c, 2, "k", stop.clone());
    let mut failovers = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let (leader, epoch) = leader_of(&c, None, "k", 0);
        let before = acked.lock().unwrap().len();
        assert!(before > 0, "nothing acknowledged before round {round}");
        let killed_at = Instant::now();
        c.kill(leader);
        let (new_leader, new_epoch) = leader_of(&c, None, "k", 0);
        let elected = killed_at.elapsed();
        println!(
            "round {round}: node {new_leader} leads (epoch {new_epoch}) {elected:?} after the kill"
        );
        let took = first_ack_after(&acked_at, killed_at, Duration::from_secs(20));
        assert_ne!(new_leader, leader);
        assert!(new_epoch > epoch, "epoch {new_epoch} after {epoch}");
        println!("round {round}: killed leader {leader} (epoch {epoch}); node {new_leader} (epoch {new_epoch}) acknowledged after {took:?}");
        failovers.push(took);
        c.start_node(leader);
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let failed = prod.join().unwrap();
    let seen = cons.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let end = acked.keys().last().copied().unwrap() + 1;
    let (leader, _) = leader_of(&c, None, "k", 0);
    let log = read_all(&c, leader, "k", end);
    check(&acked, &log);
    check_consumed(&seen, &log);
    assert!(!seen.is_empty(), "the consumer read nothing");
    println!(
        "acknowledged {} records, {failed} sends failed, the consumer read {}; failovers \
         {failovers:?}",
        acked.len(),
        seen.len()
    );
    // Every replica holds the same records: each node is made the leader in turn (by stopping
    // whoever leads) and read.
    for target in [1, 2, 3] {
        for _ in 0..10 {
            let (l, _) = leader_of(&c, None, "k", 0);
            if l == target {
                break;
            }
            c.stop(l);
            leader_of(&c, None, "k", 0);
            c.start_node(l);
        }
        let (l, _) = leader_of(&c, None, "k", 0);
        assert_eq!(l, target, "node {target} never led");
        let got = read_all(&c, l, "k", end);
        assert_eq!(got[..log.len()], log[..], "node {l} differs");
    }
}

#[test]
fn a_paused_leader_is_replaced_and_rejoins_as_a_follower() {
    let dir = tmpdir();
    let mut c = start(dir.path(), 3, 1);
    client(&c, 1)
        .admin()
        .create_topic(NewTopic::new("s", 1).replication_factor(3))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let acked_at = Arc::new(Mutex::new(Vec::new()));
    let (leader, epoch) = leader_of(&c, None, "s", 0);
    // Bootstrap from a node that is not paused.
    let other = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    let prod = producer(
        &c,
        other,
        "s",
        stop.clone(),
        acked.clone(),
        acked_at.clone(),
    );
    std::thread::sleep(Duration::from_millis(700));
    let paused_at = Instant::now();
    c.pause(leader, true);
    // The server side: a new leader is elected and recorded in the metadata.
    let (new_leader, new_epoch) = leader_of(&c, Some(leader), "s", 0);
    let elected = paused_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(new_epoch > epoch);
    // The client side: its request to the paused leader times out (request_timeout_ms) before
    // it asks again.
    let took = first_ack_after(&acked_at, paused_at, Duration::from_secs(20));
    println!(
        "paused leader {leader}: node {new_leader} elected after {elected:?}, \
         the producer's next acknowledgement after {took:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    c.pause(leader, false);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    prod.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let end = acked.keys().last().copied().unwrap() + 1;
    // The old leader came back as a follower of a later epoch; it did not take over.
    let (l, e) = leader_of(&c, None, "s", 0);
    assert!(e >= new_epoch, "leader epoch went back to {e}");
    let log = read_all(&c, l, "s", end);
    check(&acked, &log);
}

#[test]
fn topic_admin_metadata_and_delete_across_nodes() {
    let dir = tmpdir();
    let c = start(dir.path(), 3, 2);
    // Any node takes the create: the client follows NOT_CONTROLLER to the metadata leader.
    for (i, node) in [1u32, 2, 3].into_iter().enumerate() {
        client(&c, node)
            .admin()
            .create_topic(NewTopic::new(format!("t{i}"), 6).replication_factor(2))
            .unwrap();
    }
    let err = client(&c, 1)
        .admin()
        .create_topic(NewTopic::new("too-many", 1).replication_factor(4))
        .unwrap_err();
    assert!(err.to_string().contains("replication factor 4"), "{err}");
    // Every node serves the same metadata: every broker, every topic, a leader per partition
    // on one of its two replicas.
    let mut seen = None;
    for node in [1, 2, 3] {
        let d = client(&c, node).admin().describe_topic("t1").unwrap();
        let leaders: Vec<(u32, Vec<u32>)> = d
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.replicas.len(), 2);
                assert!(p.replicas.contains(&p.leader_node));
                (p.partition, p.replicas.clone())
            })
            .collect();
        match &seen {
            None => seen = Some(leaders),
            Some(s) => assert_eq!(s, &leaders, "node {node} disagrees"),
        }
    }
    // Replicas spread over nodes and shards: each node holds 4 of the 12 replicas of t1.
    let d = client(&c, 2).admin().describe_topic("t1").unwrap();
    for node in [1, 2, 3] {
        let n = d
            .partitions
            .iter()
            .filter(|p| p.replicas.contains(&node))
            .count();
        assert_eq!(n, 4, "node {node} holds {n} replicas");
    }
    // Produce into every partition and read back through another node's client.
    let p = client(&c, 3)
        .producer(ProducerConfig {
            acks: Acks::All,
            ..ProducerConfig::default()
        })
        .unwrap();
    for part in 0..6 {
        p.send_sync(ProducerRecord::new("t1", format!("v{part}")).with_partition(part))
            .unwrap();
    }
    // Delete through a node that is not the controller; every node removes its replicas.
    client(&c, 3).admin().delete_topic("t1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in &c.nodes {
        let topics = n.data_dir.join("topics");
        loop {
            let left: Vec<String> = std::fs::read_dir(&topics)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|f| f.starts_with("t1-"))
                        .collect()
                })
                .unwrap_or_default();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "node {}: {left:?} remain", n.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let names: Vec<String> = client(&c, 1)
        .admin()
        .list_topics()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["t0", "t2"]);
}
