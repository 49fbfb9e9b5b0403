//! Crash durability of the partition log with a real process: a child appends synthetic batches
//! from several tasks and prints each acknowledged batch; the test SIGKILLs it at random moments,
//! recovers the log and checks that every acknowledged batch is there, in order, byte-identical,
//! and that nothing invalid is served.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use quill::disk::{LogConfig, PartitionLog};
use quill_proto::record::BatchHeader;
use quill_testkit::synthetic::{seq_of, synthetic_batch};
use rand::{Rng, SeedableRng};

const ROUNDS: u64 = 12;
const SEQS_PER_ROUND: u64 = 1_000_000;

/// How long a child may take to acknowledge the appends a round waits for (a hang guard).
const ACKS_LIMIT: Duration = Duration::from_secs(60);

/// Runs one child until it acknowledged `kill_after_acks` appends, then SIGKILLs it (with its
/// other appenders still in flight); returns the `(seq, base offset)` pairs it acknowledged
/// (only complete lines count). Counting acknowledgements, not time, keeps every round
/// meaningful on a loaded machine.
fn run_child(
    dir: &std::path::Path,
    seed: u64,
    round: u64,
    kill_after_acks: usize,
) -> Vec<(u64, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["--log-level", "warn", "debug", "append-loop", "--dir"])
        .arg(dir)
        .args(["--seed", &seed.to_string()])
        .args(["--start-seq", &(round * SEQS_PER_ROUND).to_string()])
        .args(["--appenders", "8"])
        .args(["--epoch", &round.to_string()])
        .args(["--segment-bytes", &(256u64 << 10).to_string()])
        // Checkpoint the recovery point often, so kills land on both sides of it.
        .args(["--recovery-point-interval-ms", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn quill");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // Wait for the child to open (and recover) the log, then let it run and kill it.
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("child ready");
    assert!(
        first.starts_with(b"ready"),
        "unexpected first line {first:?}"
    );
    let deadline = Instant::now() + ACKS_LIMIT;
    let mut lines = Vec::new();
    while lines.len() < kill_after_acks {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("fewer than {kill_after_acks} acks within {ACKS_LIMIT:?}"));
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("child output ended early: {e}"),
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
        .into_iter()
        .filter(|l| l.ends_with(b"\n"))
        .map(|l| {
            let s = String::from_utf8(l).unwrap();
            let mut it = s.split_whitespace();
            assert_eq!(it.next(), Some("ack"), "line {s:?}");
            let seq = it.next().unwrap().parse().unwrap();
            let base = it.next().unwrap().parse().unwrap();
            (seq, base)
        })
        .collect()
}

/// Recovers the log and reads all of it from disk: `base offset -> (seq, epoch, bytes)`.
fn recover_and_read(dir: std::path::PathBuf, seed: u64) -> BTreeMap<u64, u64> {
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 256 << 10,
            batch_bytes_max: 256 << 10,
            ..LogConfig::default()
        };
        let (log, report) = PartitionLog::open(&dir, options_no_cache(config))
            .await
            .expect("recovery opens the log");
        // A crash leaves torn tails, never damage: nothing is reported, nothing is skipped.
        assert!(
            report.damaged.is_empty(),
            "a crash was taken for damage: {:?}",
            report.damaged
        );
        let mut found = BTreeMap::new();
        assert_eq!(
            log.high_watermark(),
            log.log_end_offset(),
            "after recovery everything is durable"
        );
        for (base, b) in read_all(&log).await {
            let h = BatchHeader::parse(&b).unwrap();
            let seq = seq_of(&b).expect("a synthetic batch");
            let epoch = h.partition_leader_epoch;
            assert_eq!(
                u64::from(epoch as u32),
                seq / SEQS_PER_ROUND,
                "epoch of its round"
            );
            assert_eq!(
                &b[..],
                &stamped(synthetic_batch(seed, seq), base, epoch)[..],
                "batch at {base} is byte-identical to seq {seq}"
            );
            found.insert(base, seq);
        }
        log.close().await.unwrap();
        found
    })
}

#[test]
fn sigkill_never_loses_an_acknowledged_batch() {
    let seed: u64 = std::env::var("QUILL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("crash test seed {seed} (set QUILL_CRASH_SEED to reproduce)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tmpdir();
    let dir = tmp.path().join("p0");
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total_acks = 0usize;
    for round in 0..ROUNDS {
        let kill_after_acks = rng.gen_range(1..300);
        let acks = run_child(&dir, seed, round, kill_after_acks);
        assert!(
            acks.len() >= kill_after_acks,
            "round {round}: {} acks",
            acks.len()
        );
        total_acks += acks.len();
        for (seq, base) in acks {
            assert!(
                acked.insert(base, seq).is_none(),
                "offset {base} acknowledged twice"
            );
        }
        let found = recover_and_read(dir.clone(), seed);
        for (base, seq) in &acked {
            assert_eq!(
                found.get(base),
                Some(seq),
                "seed {seed} round {round}: acknowledged seq {seq} at offset {base} is missing"
            );
        }
    }
    eprintln!(
        "{total_acks} acknowledged batches over {ROUNDS} kills, log end {:?}",
        acked.keys().next_back()
    );
}
