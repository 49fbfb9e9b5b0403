//! File descriptors (issue 9, finding 5). The broker raises its soft `RLIMIT_NOFILE` to the hard
//! limit; sealed segments' files are opened on read through a bounded per-shard cache, so
//! descriptors grow with partitions (3 each: the active `.log` and its two indexes), not with
//! segments; a topic create that cannot be opened whole is refused whole, catalog included; and
//! a restart under a limit too low for every partition starts and serves what it can open,
//! with a clear error for the rest. The limits are set on the child with `setrlimit` (the
//! `ulimit -n` of a shell).

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use common::broker::*;
use common::tmpdir;
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{CreateTopicRequest, Request, Response};
use quill_proto::record::BatchBuilder;

const START_LIMIT: Duration = Duration::from_secs(60);

fn nofile(soft: u64, hard: u64) -> impl FnOnce(&mut Command) {
    move |cmd| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn open_fds(broker: &Broker) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", broker.child.id()))
        .unwrap()
        .count()
}

/// (soft, hard) `Max open files` of the broker process.
fn nofile_of(broker: &Broker) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", broker.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

fn topic(name: &str, partitions: u32, segment_bytes: Option<u64>) -> Request {
    Request::CreateTopic(CreateTopicRequest {
        version: 0,
        replication_factor: 0,
        segment_bytes,
        ..CreateTopicRequest::with_defaults(name, partitions)
    })
}

fn code(resp: &Response) -> (ErrorCode, String) {
    match resp {
        Response::Error { code, message } => (*code, message.clone().unwrap_or_default()),
        _ => (ErrorCode::None, String::new()),
    }
}

fn one_batch(tag: &str) -> BytesMut {
    let mut b = BatchBuilder::new(1_000);
    b.push(1_000, None, Some(tag.as_bytes()), &[]);
    b.finish()
}

fn big_batch(i: usize) -> BytesMut {
    let mut b = BatchBuilder::new(1_000);
    b.push(1_000, None, Some(&vec![i as u8 | 1; 1000]), &[]);
    b.finish()
}

fn topic_names(conn: &mut Conn) -> Vec<String> {
    match conn.call(&Request::ListTopics) {
        Response::ListTopics(t) => t.topics.into_iter().map(|t| t.name).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn soft_limit_is_raised_and_descriptors_grow_with_partitions_not_segments() {
    let tmp = tmpdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("fds.toml");
    // Reads go to disk (no batch cache) and at most 4 sealed files stay open.
    std::fs::write(
        &config,
        "batch_cache_bytes_max = 0\nopen_segment_files_max = 4\n",
    )
    .unwrap();
    let broker = Broker::try_start(
        &data,
        1,
        &["--config", config.to_str().unwrap()],
        START_LIMIT,
        nofile(512, 8192),
    )
    .broker();
    assert_eq!(nofile_of(&broker), (8192, 8192), "the soft limit is raised");
    let mut c = broker.connect();
    let before = open_fds(&broker);
    assert_eq!(code(&c.call(&topic("many", 200, None))).0, ErrorCode::None);
    let per_partition = (open_fds(&broker) - before) as f64 / 200.0;
    eprintln!("descriptors per partition: {per_partition:.2}");
    assert!(per_partition <= 3.05, "{per_partition} fds per partition");

    // One partition with ~25 segments of 4 KiB, read back from disk whole.
    assert_eq!(
        code(&c.call(&topic("rolled", 1, Some(4096)))).0,
        ErrorCode::None
    );
    let with_partition = open_fds(&broker);
    for i in 0..100 {
        produce_ok(c.call(&produce_request("rolled", 0, big_batch(i))));
    }
    let got = fetch_all_batches(&mut c, "rolled", 0);
    assert_eq!(got.len(), 100);
    let after = open_fds(&broker);
    eprintln!(
        "descriptors after 25 segments written and read: +{}",
        after - with_partition
    );
    assert!(
        after <= with_partition + 4 + 1,
        "sealed segments are not kept open: {with_partition} -> {after}"
    );
    assert_eq!(broker.stop_within(START_LIMIT), Some(0));
}

#[test]
fn a_create_that_cannot_be_opened_whole_is_refused_whole() {
    for shards in [1usize, 2] {
        let tmp = tmpdir();
        let data = tmp.path().join("data");
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, nofile(256, 256)).broker();
        let mut c = broker.connect();
        assert_eq!(code(&c.call(&topic("small", 4, None))).0, ErrorCode::None);
        produce_ok(c.call(&produce_request("small", 0, one_batch("a"))));
        let (err, message) = code(&c.call(&topic("huge", 400, None)));
        assert_eq!(err, ErrorCode::StorageError, "shards {shards}: {message}");
        assert!(
            message.contains("file descriptor"),
            "shards {shards}: the refusal says why: {message}"
        );
        assert_eq!(topic_names(&mut c), vec!["small".to_string()]);
        assert!(
            partition_dirs(&data)
                .iter()
                .all(|d| d.starts_with("small-")),
            "shards {shards}: no directory of the refused topic"
        );
        // Healthy topics keep working at the limit.
        for p in 0..4 {
            produce_ok(c.call(&produce_request("small", p, one_batch("b"))));
        }
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
        let catalog = std::fs::read_to_string(data.join("catalog.json")).unwrap();
        assert!(!catalog.contains("huge"), "shards {shards}: {catalog}");
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, nofile(256, 256)).broker();
        let mut c = broker.connect();
        assert_eq!(topic_names(&mut c), vec!["small".to_string()]);
        assert_eq!(fetch_all_batches(&mut c, "small", 0).len(), 2);
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
    }
}

#[test]
fn a_restart_under_a_low_limit_serves_what_it_can_open() {
    for shards in [1usize, 2] {
        let tmp = tmpdir();
        let data = tmp.path().join("data");
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).broker();
        let mut c = broker.connect();
        assert_eq!(code(&c.call(&topic("wide", 150, None))).0, ErrorCode::None);
        for p in 0..150 {
            produce_ok(c.call(&produce_request("wide", p, one_batch("x"))));
        }
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));

        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, nofile(256, 256)).broker();
        let mut c = broker.connect();
        let (mut served, mut refused) = (0, 0);
        for p in 0..150 {
            let f = fetch_partition(c.call(&fetch_request("wide", p, 0, 0)));
            match f.error_code {
                ErrorCode::None => {
                    assert_eq!(f.records.len(), 1, "shards {shards}: partition {p}");
                    served += 1;
                }
                ErrorCode::StorageError => {
                    let m = f.error_message.unwrap_or_default();
                    assert!(m.contains("file descriptor"), "shards {shards}: {m}");
                    refused += 1;
                }
                other => panic!("shards {shards}: partition {p}: {other:?}"),
            }
        }
        eprintln!("shards {shards}: {served} partitions served, {refused} refused at 256 fds");
        assert!(served > 0 && refused > 0, "shards {shards}");
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
        // With descriptors back, everything is there.
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).broker();
        let mut c = broker.connect();
        for p in 0..150 {
            assert_eq!(fetch_all_batches(&mut c, "wide", p).len(), 1);
        }
        assert_eq!(broker.stop_within(START_LIMIT), Some(0));
    }
}

/// Review of issue 9: rolls and checkpoint writes open short-lived files beyond the 3 steady
/// descriptors of a partition. With every partition the budget allows rolling at once (4 KiB
/// segments, one ~1 KiB batch each, pipelined) and checkpointing every millisecond, nothing
/// runs out of descriptors: they come from a bounded per-shard pool the budget sets aside.
#[test]
fn every_partition_rolling_at_once_stays_within_the_limit() {
    let tmp = tmpdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("fds.toml");
    std::fs::write(&config, "recovery_point_interval_ms = 1\n").unwrap();
    let broker = Broker::try_start(
        &data,
        1,
        &["--config", config.to_str().unwrap()],
        START_LIMIT,
        nofile(256, 256),
    )
    .broker();
    let mut c = broker.connect();
    // As many partitions as the budget allows.
    let partitions = (1..=64u32)
        .rev()
        .find(|&p| code(&c.call(&topic("full", p, Some(4096)))).0 == ErrorCode::None)
        .expect("some partitions fit");
    eprintln!("{partitions} partitions at 256 descriptors");
    for round in 0..12 {
        for p in 0..partitions {
            c.send(&produce_request("full", p, big_batch(round)));
        }
        for _ in 0..partitions {
            let (_, resp) = c.recv();
            let part = produce_partition(resp);
            assert_eq!(
                part.error_code,
                ErrorCode::None,
                "round {round}: {:?}",
                part.error_message
            );
        }
    }
    let log = broker.stderr_text();
    assert!(!log.contains("Too many open files"), "{log}");
    for p in 0..partitions {
        assert_eq!(
            fetch_all_batches(&mut c, "full", p).len(),
            12,
            "partition {p}"
        );
    }
    assert_eq!(broker.stop_within(START_LIMIT), Some(0));
}
