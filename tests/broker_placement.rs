//! Placement as data (issue 10): the catalog records where every partition lives, metadata
//! reports it, and it survives restarts, also with another shard count (a recorded shard that
//! still exists keeps its partitions; a partition whose shard is gone moves to the shard the hash
//! names for the new count). An old catalog without placement still loads. Against the real
//! binary.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::broker::*;
use common::{batch, stamped, tmpdir};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::*;

const START_LIMIT: Duration = Duration::from_secs(60);

/// The leader shard of each partition of `topic`, from Metadata; every partition is served.
fn leader_shards(conn: &mut Conn, topic: &str) -> Vec<u16> {
    let Response::Metadata(m) = conn.call(&metadata_request(Some(&[topic]))) else {
        panic!("metadata")
    };
    let t = &m.topics[0];
    assert_eq!(t.error_code, ErrorCode::None, "{t:?}");
    t.partitions
        .iter()
        .map(|p| {
            assert_eq!((p.error_code, p.leader_node), (ErrorCode::None, 0), "{p:?}");
            p.leader_shard
        })
        .collect()
}

type Written = BTreeMap<u32, Vec<Vec<u8>>>;

/// Produces one batch of 2 records into every partition, through the shard metadata names (the
/// common port forwards otherwise, which the rest of the suite covers).
fn produce_each(broker: &Broker, topic: &str, partitions: u32, written: &mut Written) {
    let shards = leader_shards(&mut broker.connect(), topic);
    for p in 0..partitions {
        let mut conn = broker.connect_shard(usize::from(shards[p as usize]));
        let next = written.get(&p).map_or(0, |w| w.len() as u64);
        let b = batch(u64::from(p) * 100 + next, 2, 30, 1);
        let offs = produce_ok(conn.call(&produce_request(topic, p, b.clone())));
        assert_eq!(offs, vec![2 * next as i64], "{topic}-{p}");
        written.entry(p).or_default().push(stamped(b, 2 * next, 0));
    }
}

/// Every batch written is read back, byte for byte, through every port.
fn check_data(broker: &Broker, topic: &str, written: &Written) {
    for addr in broker.all_addrs() {
        let mut conn = Conn::connect(addr);
        for (p, want) in written {
            let got: Vec<Vec<u8>> = fetch_all_batches(&mut conn, topic, *p)
                .into_iter()
                .map(|(_, b)| b.to_vec())
                .collect();
            assert_eq!(&got, want, "{topic}-{p} via {addr}");
        }
    }
}

fn restart(data: &Path, shards: usize, args: &[&str]) -> Broker {
    Broker::try_start(data, shards, args, START_LIMIT, |_| {}).broker()
}

/// 2 shards, then 1 (every partition on shard 1 moves to shard 0), then 3 (shard 0 exists: the
/// partitions stay there, although the hash for 3 would spread them), then 2 again (a topic
/// created with 3 shards moves its partition off shard 2). No record is lost on the way, and
/// metadata always names the recorded shard.
#[test]
fn placement_survives_restarts_with_other_shard_counts() {
    let dir = tmpdir();
    let data = dir.path();
    let mut placed = Written::new();
    let mut fresh = Written::new();

    let broker = Broker::start(data, 2);
    assert_eq!(
        broker.connect().call(&create_topic("placed", 6)),
        Response::CreateTopic
    );
    // The hash's choice for 2 shards, recorded.
    assert_eq!(recorded_shards(data, "placed"), [1, 1, 0, 0, 0, 0]);
    assert_eq!(catalog(data)["shards"], 2);
    assert_eq!(
        leader_shards(&mut broker.connect(), "placed"),
        [1, 1, 0, 0, 0, 0]
    );
    produce_each(&broker, "placed", 6, &mut placed);
    broker.stop();

    let broker = restart(data, 1, &[]);
    assert_eq!(recorded_shards(data, "placed"), [0; 6]);
    assert_eq!(catalog(data)["shards"], 1);
    assert_eq!(leader_shards(&mut broker.connect(), "placed"), [0; 6]);
    check_data(&broker, "placed", &placed);
    produce_each(&broker, "placed", 6, &mut placed);
    broker.stop();

    let broker = restart(data, 3, &[]);
    // Recorded on shard 0, which exists: kept (the hash for 3 is [1, 0, 2, 1, 2, 0]).
    assert_eq!(recorded_shards(data, "placed"), [0; 6]);
    for addr in broker.all_addrs() {
        assert_eq!(leader_shards(&mut Conn::connect(addr), "placed"), [0; 6]);
    }
    check_data(&broker, "placed", &placed);
    produce_each(&broker, "placed", 6, &mut placed);
    // A topic created now is placed by the hash for 3 shards.
    assert_eq!(
        broker.connect_shard(1).call(&create_topic("fresh", 3)),
        Response::CreateTopic
    );
    assert_eq!(recorded_shards(data, "fresh"), [2, 0, 0]);
    produce_each(&broker, "fresh", 3, &mut fresh);
    broker.stop();

    let broker = restart(data, 2, &[]);
    // Shard 2 is gone: fresh-0 moves to the hash's shard for 2; the rest stays.
    assert_eq!(recorded_shards(data, "fresh"), [1, 0, 0]);
    assert_eq!(recorded_shards(data, "placed"), [0; 6]);
    assert_eq!(leader_shards(&mut broker.connect(), "fresh"), [1, 0, 0]);
    check_data(&broker, "placed", &placed);
    check_data(&broker, "fresh", &fresh);
    produce_each(&broker, "fresh", 3, &mut fresh);
    check_data(&broker, "fresh", &fresh);
    broker.stop();
}

/// A `catalog.json` written before placement existed (no `placement`, no `shards`) loads: the
/// placement is derived with the hash for the current shard count and written back.
#[test]
fn a_catalog_without_placement_still_loads() {
    let dir = tmpdir();
    let data = dir.path();
    let mut written = Written::new();
    let broker = Broker::start(data, 2);
    assert_eq!(
        broker.connect().call(&create_topic("legacy", 4)),
        Response::CreateTopic
    );
    produce_each(&broker, "legacy", 4, &mut written);
    broker.stop();

    let mut old = catalog(data);
    old.as_object_mut().unwrap().remove("shards");
    old["topics"]["legacy"]
        .as_object_mut()
        .unwrap()
        .remove("placement");
    std::fs::write(
        data.join("catalog.json"),
        serde_json::to_vec_pretty(&old).unwrap(),
    )
    .unwrap();

    let broker = restart(data, 2, &[]);
    // The hash for 2 shards: where the old broker had them.
    assert_eq!(recorded_shards(data, "legacy"), [0, 0, 1, 1]);
    assert_eq!(catalog(data)["shards"], 2);
    assert_eq!(leader_shards(&mut broker.connect(), "legacy"), [0, 0, 1, 1]);
    check_data(&broker, "legacy", &written);
    broker.stop();
}

/// `--rebuild-catalog` rebuilds topics from their directories and records their placement.
#[test]
fn a_rebuilt_catalog_records_placement() {
    let dir = tmpdir();
    let data = dir.path();
    let mut written = Written::new();
    let broker = Broker::start(data, 2);
    assert_eq!(
        broker.connect().call(&create_topic("legacy", 4)),
        Response::CreateTopic
    );
    produce_each(&broker, "legacy", 4, &mut written);
    broker.stop();
    std::fs::remove_file(data.join("catalog.json")).unwrap();

    let broker = restart(data, 1, &["--rebuild-catalog"]);
    assert_eq!(recorded_shards(data, "legacy"), [0; 4]);
    assert_eq!(leader_shards(&mut broker.connect(), "legacy"), [0; 4]);
    check_data(&broker, "legacy", &written);
    broker.stop();
}
