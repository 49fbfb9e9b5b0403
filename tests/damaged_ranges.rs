//! Damaged ranges seen from the outside (issue 9, finding 2): one flipped bit in the middle of a
//! partition used to stop `quill consume --from-beginning` at the damaged batch for good. Now
//! the broker serves every intact batch, `quill consume` skips the damaged range with a note on
//! stderr naming it and exits non-zero at the end, and `quill topic describe` lists the range.
//! With 1 and 2 shards.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::broker::*;
use common::tmpdir;
use quill_proto::error_code::ErrorCode;
use quill_proto::record::BatchBuilder;

const START_LIMIT: Duration = Duration::from_secs(60);

fn batch(first: usize, n: usize) -> BytesMut {
    let mut b = BatchBuilder::new(1_000);
    for i in first..first + n {
        b.push(
            1_000 + i as i64,
            None,
            Some(format!("record-{i}").as_bytes()),
            &[],
        );
    }
    b.finish()
}

/// Runs the `quill` CLI against `broker`, logging errors only, bounded in time; returns
/// (exit code, stdout, stderr).
fn quill(broker: &Broker, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--log-level", "error"];
    all.extend_from_slice(args);
    let r = common::cli::quill(&broker.addr.to_string(), &all, b"");
    (r.code, r.stdout, r.stderr)
}

#[test]
fn consume_skips_a_damaged_range_and_describe_shows_it() {
    for shards in [1usize, 2] {
        let tmp = tmpdir();
        let data = tmp.path().join("data");
        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).broker();
        let mut c = broker.connect();
        assert!(matches!(
            c.call(&create_topic("events", 1)),
            quill_proto::protocol::Response::CreateTopic
        ));
        // 20 batches of 5 records: offsets 0..100.
        for b in 0..20 {
            produce_ok(c.call(&produce_request("events", 0, batch(b * 5, 5))));
        }
        broker.stop();

        // Flip one bit inside batch 7 (offsets 35..=39), in its CRC-covered part.
        let dir = data.join("topics").join(
            partition_dirs(&data)
                .into_iter()
                .find(|d| d.starts_with("events-"))
                .unwrap(),
        );
        let seg = dir.join("00000000000000000000.log");
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut pos = 0usize;
        for _ in 0..7 {
            let len = u32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            pos += 12 + len;
        }
        bytes[pos + 70] ^= 0x04;
        std::fs::write(&seg, bytes).unwrap();

        let broker = Broker::try_start(&data, shards, &[], START_LIMIT, |_| {}).broker();
        let (code, stdout, stderr) = quill(
            &broker,
            &[
                "consume",
                "events",
                "--from-beginning",
                "--timeout-ms",
                "1500",
            ],
        );
        let values: Vec<&str> = stdout.lines().collect();
        let want: Vec<String> = (0..100)
            .filter(|i| !(35..40).contains(i))
            .map(|i| format!("record-{i}"))
            .collect();
        assert_eq!(
            values, want,
            "shards {shards}: every intact record, in order"
        );
        assert_ne!(code, 0, "shards {shards}: a skipped range is not a success");
        assert!(
            stderr.contains("offsets 35 to 39") && stderr.contains("events-0"),
            "shards {shards}: the note names the range: {stderr}"
        );

        let (code, stdout, stderr) = quill(&broker, &["topic", "describe", "events"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("damaged 35-39"),
            "shards {shards}: describe lists the range: {stdout}"
        );
        // Producing goes on after the true log end.
        let mut c = broker.connect();
        assert_eq!(
            produce_ok(c.call(&produce_request("events", 0, batch(100, 1)))),
            vec![100]
        );
        let f = fetch_partition(c.call(&fetch_request("events", 0, 36, 0)));
        assert_eq!(f.error_code, ErrorCode::CorruptStoredData);
        assert!(
            f.error_message
                .unwrap_or_default()
                .contains("next readable offset is 40"),
            "shards {shards}"
        );
        broker.stop();
    }
}
