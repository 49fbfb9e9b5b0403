//! The `quill topic|produce|consume` commands, run as the real binary against a real broker
//! on 127.0.0.1. Each command runs under a hang guard (killed and failed after 60 s); every
//! consume passes `--count` or `--timeout-ms` so it ends by itself.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::cli::{quill, quill_env, Run};
use common::{closed_port, tmpdir};

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
}

#[test]
fn topic_create_list_describe_delete() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.addr.to_string();
    let r = quill(
        &b,
        &[
            "topic",
            "create",
            "c1",
            "--partitions",
            "3",
            "--retention-ms",
            "3600000",
            "--retention-bytes",
            "-1",
        ],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout, "created topic 'c1' with 3 partitions\n");
    ok(&quill(
        &b,
        &["topic", "create", "c0", "--partitions", "1"],
        b"",
    ));
    let r = quill(&b, &["topic", "list"], b"");
    ok(&r);
    assert_eq!(r.stdout, "c0\nc1\n");

    let r = quill(&b, &["topic", "describe", "c1"], b"");
    ok(&r);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "topic c1  partitions 3");
    assert!(lines[1].contains("PARTITION") && lines[1].contains("HIGH-WATERMARK"));
    assert_eq!(lines.len(), 5);
    for (i, line) in lines[2..].iter().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], i.to_string());
        let shard: u16 = cols[2].parse().unwrap();
        assert!(shard < 2);
        // The offsets, the replicas and in-sync replicas (node 0), the status.
        assert_eq!(&cols[4..], ["0", "0", "0", "0", "0", "ok"]);
    }

    let r = quill(&b, &["topic", "create", "c1", "--partitions", "1"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "quill: topic 'c1' already exists\n");

    ok(&quill(&b, &["topic", "delete", "c1"], b""));
    let r = quill(&b, &["topic", "list"], b"");
    assert_eq!(r.stdout, "c0\n");
    let r = quill(&b, &["topic", "describe", "c1"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "quill: unknown topic 'c1'\n");
    let r = quill(&b, &["topic", "delete", "c1"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "quill: unknown topic 'c1'\n");
    broker.stop();
}

#[test]
fn produce_then_consume_as_text_and_json() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "kv", "--partitions", "1"],
        b"",
    ));
    let input = b"k1:v1\nk2:v2:with colon\nno separator\n:empty key\nk5:\nk6:last";
    let r = quill(&b, &["produce", "kv", "--key-separator", ":", "-v"], input);
    ok(&r);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "quill: 6 records read, 6 acknowledged, 0 not acknowledged\n"
    );

    let r = quill(
        &b,
        &["consume", "kv", "--from-beginning", "--count", "6"],
        b"",
    );
    ok(&r);
    assert_eq!(
        r.stdout,
        "v1\nv2:with colon\nno separator\nempty key\n\nlast\n"
    );
    let r = quill(
        &b,
        &[
            "consume",
            "kv",
            "--from-beginning",
            "--count",
            "2",
            "-K",
            "=",
        ],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout, "k1=v1\nk2=v2:with colon\n");

    let r = quill(
        &b,
        &[
            "consume",
            "kv",
            "--from-beginning",
            "--count",
            "6",
            "--format",
            "json",
        ],
        b"",
    );
    ok(&r);
    let objects: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 6);
    let keys = [
        serde_json::json!("k1"),
        serde_json::json!("k2"),
        serde_json::Value::Null,
        serde_json::json!(""),
        serde_json::json!("k5"),
        serde_json::json!("k6"),
    ];
    for (i, o) in objects.iter().enumerate() {
        assert_eq!(o["topic"], "kv");
        assert_eq!(o["partition"], 0);
        assert_eq!(o["offset"], i as i64);
        assert!(o["timestamp"].as_i64().unwrap() > 0);
        assert_eq!(o["key"], keys[i]);
        assert_eq!(o["headers"], serde_json::json!([]));
    }
    assert_eq!(objects[1]["value"], "v2:with colon");

    // A chosen partition and acks none; bytes that are not UTF-8 come out as base64.
    ok(&quill(
        &b,
        &["topic", "create", "two", "--partitions", "2"],
        b"",
    ));
    let r = quill(
        &b,
        &["produce", "two", "--partition", "1", "--acks", "none"],
        b"plain\n\xff\xfe\n",
    );
    ok(&r);
    let r = quill(
        &b,
        &[
            "consume",
            "two",
            "--partition",
            "1",
            "--from-beginning",
            "--count",
            "2",
            "--format",
            "json",
        ],
        b"",
    );
    ok(&r);
    let objects: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects[0]["value"], "plain");
    assert_eq!(objects[0]["partition"], 1);
    assert_eq!(objects[1]["value"], serde_json::json!({"base64": "//4="}));
    let r = quill(
        &b,
        &[
            "consume",
            "two",
            "--partition",
            "1",
            "--offset",
            "1",
            "--count",
            "1",
        ],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout_bytes, b"\xff\xfe\n");
    broker.stop();
}

#[test]
fn consume_ends_after_inactivity_and_from_latest() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "idle", "--partitions", "2"],
        b"",
    ));
    let r = quill(&b, &["consume", "idle", "--timeout-ms", "300"], b"");
    ok(&r);
    assert_eq!(r.stdout, "");
    // "old" goes to partition 0 so that the from-beginning read below has one right answer
    // (an unkeyed record's sticky partition is chosen at random per producer).
    ok(&quill(
        &b,
        &["produce", "idle", "--partition", "0"],
        b"old\n",
    ));
    // The default start is the end of the log: the old record is not printed, a new one is.
    // "Prints nothing" alone would also pass for a consumer that never got going, so records
    // are produced until the consumer prints its one record; it must be a new one. No window
    // includes the connect: the consumer's own limit is a hang guard.
    let mut c = Running::start(
        &[
            "consume",
            "idle",
            "--count",
            "1",
            "--timeout-ms",
            "60000",
            "-b",
            &b,
        ],
        &[],
    );
    let mut produced = 0;
    while c.child.try_wait().unwrap().is_none() {
        produced += 1;
        assert!(
            produced < 300,
            "the consumer printed nothing after 300 new records"
        );
        ok(&quill(&b, &["produce", "idle"], b"new\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c.finish(Duration::from_secs(10));
    ok(&r);
    assert_eq!(r.stdout, "new\n");
    let r = quill(
        &b,
        &[
            "consume",
            "idle",
            "--partition",
            "0",
            "--from-beginning",
            "--count",
            "1",
            "--timeout-ms",
            "60000",
        ],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout, "old\n");
    // QUILL_BROKER stands in for -b.
    let r = quill_env(&["topic", "list"], b"", Some(&b));
    ok(&r);
    assert_eq!(r.stdout, "idle\n");
    broker.stop();
}

#[test]
fn errors_are_sentences_with_documented_exit_codes() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "e", "--partitions", "1"],
        b"",
    ));

    let r = quill(&b, &["produce", "nope"], b"x\n");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("quill: unknown topic 'nope'\n"),
        "{}",
        r.stderr
    );
    let r = quill(&b, &["consume", "nope", "--count", "1"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "quill: unknown topic 'nope'\n");
    let r = quill(&b, &["produce", "e", "--partition", "4"], b"x\n");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("quill: topic 'e' has no partition 4 (it has 1)\n"),
        "{}",
        r.stderr
    );
    let r = quill(
        &b,
        &["consume", "e", "-p", "0", "--offset", "7", "--count", "1"],
        b"",
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "quill: offset 7 is out of range for e-0: the log is empty\n"
    );

    let down = format!("127.0.0.1:{}", closed_port());
    let refused = format!("quill: broker {down} unreachable: connection refused\n");
    for args in [
        &["topic", "list"][..],
        &["produce", "e"][..],
        &["consume", "e", "--count", "1"][..],
    ] {
        let r = quill(&down, args, b"x\n");
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, refused, "{args:?}");
    }

    // Bad command lines: clap's own errors and ours, exit status 2.
    let r = quill(&b, &["consume", "e", "--format", "xml"], b"");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid value 'xml'"), "{}", r.stderr);
    let r = quill(&b, &["topic", "create", "z", "--partitions", "0"], b"");
    assert_eq!(r.code, 2);
    let r = quill(
        &b,
        &["consume", "e", "--from-beginning", "--offset", "1"],
        b"",
    );
    assert_eq!(r.code, 2);
    let r = quill(
        &b,
        &[
            "topic",
            "create",
            "z",
            "--partitions",
            "1",
            "--retention-ms",
            "-7",
        ],
        b"",
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--retention-ms -7 is not allowed"),
        "{}",
        r.stderr
    );
    let r = quill("nonsense", &["topic", "list"], b"");
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "quill: bad broker address 'nonsense': expected HOST:PORT\n"
    );
    let r = quill_env(&["produce", "--help"], b"", None);
    ok(&r);
    assert!(r.stdout.contains("Exit status:"), "{}", r.stdout);
    broker.stop();
}

// ---- Issue 8: hostile clients, operators' mistakes. ----

/// A `quill` process the test feeds over time and may signal.
struct Running {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::thread::JoinHandle<Vec<u8>>,
    /// Stderr so far; complete once `err` ends.
    stderr: Arc<std::sync::Mutex<Vec<u8>>>,
    err: std::thread::JoinHandle<()>,
    args: Vec<String>,
}

impl Running {
    /// Starts `quill ARGS` with `env` added and `QUILL_BROKER` removed.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
        cmd.args(args)
            .env_remove("QUILL_BROKER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn quill");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = stderr.clone();
        Running {
            child,
            stdin,
            out: std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = out.read_to_end(&mut v);
                v
            }),
            stderr,
            err: std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    collected.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Writes one line to the process's stdin; false once it stopped reading.
    fn line(&mut self, line: &str) -> bool {
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        stdin.write_all(format!("{line}\n").as_bytes()).is_ok() && stdin.flush().is_ok()
    }

    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits (at most 30 s) until the process wrote `text` to stderr.
    fn wait_for_stderr(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let so_far = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
            if so_far.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "quill {:?} never wrote {text:?}; stderr: {so_far}",
                self.args
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the exit, at most `limit` (a hang guard: past it the process is killed and
    /// the test fails).
    fn finish(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("quill {:?} did not finish within {limit:?}", self.args);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.stdin.take();
        let stdout_bytes = self.out.join().unwrap();
        self.err.join().unwrap();
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        Run {
            code: status
                .code()
                .unwrap_or_else(|| panic!("killed by a signal: {status:?}; stderr: {stderr}")),
            stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
            stderr,
            stdout_bytes,
        }
    }
}

/// Sum of the high watermarks of `topic`'s partitions, per `quill topic describe`.
fn records_in(b: &str, topic: &str) -> i64 {
    let r = quill(b, &["topic", "describe", topic], b"");
    ok(&r);
    r.stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().nth(5).unwrap().parse::<i64>().unwrap())
        .sum()
}

/// Waits (at most 30 s) until `topic` holds `n` records.
fn wait_for_records(b: &str, topic: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while records_in(b, topic) < n {
        assert!(Instant::now() < deadline, "{topic} never held {n} records");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The numbers of a summary line `quill: R records read, A acknowledged, M not acknowledged`.
fn summary_of(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" read, "))
        .unwrap_or_else(|| panic!("no summary line in: {stderr}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 3, "{line}");
    assert_eq!(numbers[0], numbers[1] + numbers[2], "{line}");
    (numbers[0], numbers[1], numbers[2])
}

/// Streams lines into `quill produce TOPIC EXTRA...` against a broker with `shards` shards,
/// deletes the topic once 10 records are in, keeps feeding until the command stops reading (at
/// most 10 s), and returns how it ended. The command must fail with "unknown topic".
fn produce_into_deleted_topic(topic: &str, partitions: u32, shards: usize, extra: &[&str]) -> Run {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let b = broker.addr.to_string();
    let parts = partitions.to_string();
    ok(&quill(
        &b,
        &["topic", "create", topic, "--partitions", &parts],
        b"",
    ));
    let mut args = vec!["produce", topic];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-b", &b]);
    let mut p = Running::start(&args, &[]);
    for i in 0..10 {
        assert!(p.line(&format!("before {i}")));
    }
    wait_for_records(&b, topic, 10);
    ok(&quill(&b, &["topic", "delete", topic], b""));
    for i in 0..1000 {
        if !p.line(&format!("after {i}")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    p.close_stdin();
    let r = p.finish(Duration::from_secs(30));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with(&format!("quill: unknown topic '{topic}'\n")),
        "{}",
        r.stderr
    );
    broker.stop();
    r
}

/// Finding 10: a topic deleted while `quill produce --acks leader` streams into it. The
/// records the broker no longer takes fail with "unknown topic", the command ends (it used to
/// hang for ever) and its summary counts them as not acknowledged, exit status 1.
#[test]
fn produce_into_a_topic_deleted_mid_stream_fails_and_accounts() {
    let r = produce_into_deleted_topic("vanish", 2, 2, &[]);
    let (read, acked, missing) = summary_of(&r.stderr);
    assert!(acked >= 10 && missing >= 1 && read > 10, "{}", r.stderr);
    assert!(r.stderr.contains(" not acknowledged"), "{}", r.stderr);
}

/// Finding 10: SIGINT ends `quill produce` with its summary and exit status 130.
#[test]
fn produce_interrupted_prints_its_summary() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "int", "--partitions", "1"],
        b"",
    ));
    let mut p = Running::start(&["produce", "int", "-b", &b], &[]);
    for i in 0..3 {
        assert!(p.line(&format!("r{i}")));
    }
    wait_for_records(&b, "int", 3);
    p.signal(libc::SIGINT);
    let r = p.finish(Duration::from_secs(30));
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "quill: interrupted by SIGINT\nquill: 3 records read, 3 acknowledged, 0 not acknowledged\n"
    );
    broker.stop();
}

/// Finding 10: SIGTERM while the broker does not answer (it is stopped with SIGSTOP): the
/// command waits a bounded time for the records already sent, then counts them as not
/// acknowledged and exits 143.
#[test]
fn produce_interrupted_while_the_broker_is_stopped_counts_the_unacknowledged() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 1);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "stuck", "--partitions", "1"],
        b"",
    ));
    let mut p = Running::start(&["produce", "stuck", "-b", &b], &[]);
    assert!(p.line("acknowledged"));
    wait_for_records(&b, "stuck", 1);
    unsafe { libc::kill(broker.child.id() as i32, libc::SIGSTOP) };
    assert!(p.line("never acknowledged 1"));
    assert!(p.line("never acknowledged 2"));
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGTERM);
    let r = p.finish(Duration::from_secs(15));
    unsafe { libc::kill(broker.child.id() as i32, libc::SIGCONT) };
    assert_eq!(r.code, 143, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("quill: interrupted by SIGTERM\n"),
        "{}",
        r.stderr
    );
    let (read, acked, missing) = summary_of(&r.stderr);
    assert_eq!((acked, missing), (1, read - 1), "{}", r.stderr);
    assert!(read >= 2, "{}", r.stderr);
    broker.stop();
}

/// Finding 10 with `--acks none`: the broker closes the connection when such a produce fails;
/// the command notices, learns the topic is gone, fails the rest and never calls the records
/// it sent "acknowledged".
#[test]
fn produce_acks_none_into_a_topic_deleted_mid_stream_fails() {
    let r = produce_into_deleted_topic("vanish0", 1, 1, &["--acks", "none"]);
    let (_, sent, not_sent) = summary_of(&r.stderr);
    assert!(sent >= 10 && not_sent >= 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("sent (not acknowledged: --acks none)"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(" acknowledged,"), "{}", r.stderr);
}

/// A TCP server on 127.0.0.1 that is not a Quill broker: it accepts connections, reads
/// whatever comes, and answers each connection's first bytes with `answer` (nothing at all
/// when `answer` is `None`), keeping the connection open. Lives as long as the test process.
/// Returns its address and the count of connections it accepted.
fn fake_server(answer: Option<&'static [u8]>) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let (Some(a), false) = (answer, answered) {
                        let _ = stream.write_all(a);
                        answered = true;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Runs `quill ARGS`; returns its result and how long it took.
fn timed(addr: &str, args: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let r = quill(addr, args, b"x\n");
    (r, started.elapsed())
}

/// Finding 11: a server that accepts but never answers. Every client command fails with
/// exit status 3 after its request timeout (`--timeout-ms` on topic and produce,
/// `--request-timeout-ms` everywhere), which is not retried. The bounds are hang guards with
/// a wide margin, not latency targets: the old behaviour was 4 x 30 s.
#[test]
fn an_unresponsive_broker_fails_after_the_request_timeout() {
    let (silent, accepted) = fake_server(None);
    for args in [
        &["topic", "list", "--timeout-ms", "300"][..],
        &["topic", "describe", "t", "--request-timeout-ms", "300"][..],
        &["produce", "t", "--timeout-ms", "300"][..],
        &[
            "consume",
            "t",
            "--request-timeout-ms",
            "300",
            "--timeout-ms",
            "100",
        ][..],
    ] {
        let (r, took) = timed(&silent, args);
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr,
            format!("quill: request to broker {silent} timed out after 300 ms\n"),
            "{args:?}"
        );
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        // One attempt: a timeout is not retried.
        assert_eq!(accepted.swap(0, Ordering::SeqCst), 1, "{args:?}");
    }
    // The default is short enough for a person: well under the old two minutes.
    let (r, took) = timed(&silent, &["topic", "list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("timed out after 10000 ms"),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
    // The flags are checked like any other.
    let (r, _) = timed(&silent, &["topic", "list", "--timeout-ms", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let (r, _) = timed(
        &silent,
        &[
            "topic",
            "list",
            "--timeout-ms",
            "5",
            "--request-timeout-ms",
            "5",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `--connect-timeout-ms`: a listener whose accept queue is full (backlog 0, never
/// accepting) drops further connection attempts, so connecting times out.
#[test]
fn a_broker_that_never_accepts_fails_after_the_connect_timeout() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap().to_string();
    // Fills the queue of one.
    let _queued = std::net::TcpStream::connect(&addr).unwrap();
    let (r, took) = timed(&addr, &["topic", "list", "--connect-timeout-ms", "300"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!("quill: broker {addr} unreachable: no connection within 300 ms\n")
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Finding 11: a peer that is not a Quill broker is named as such, at once and without
/// retrying (it used to be "frame of 1213486160 bytes is over the limit"), exit status 3.
#[test]
fn a_peer_that_is_not_a_quill_broker_is_named() {
    let (http, accepted) = fake_server(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    for args in [
        &["topic", "list"][..],
        &["produce", "t"][..],
        &["consume", "t", "--timeout-ms", "100"][..],
    ] {
        let (r, took) = timed(&http, args);
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr,
            format!(
                "quill: the peer at {http} is not a Quill broker: it answered \
                 \"HTTP/1.1 400 Bad Request\"\n"
            ),
            "{args:?}"
        );
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        assert_eq!(accepted.swap(0, Ordering::SeqCst), 1, "{args:?}");
    }
    // A well-sized frame that is no answer to ApiVersions (correlation id 0x99, not 1).
    let (odd, _) = fake_server(Some(b"\x00\x00\x00\x08\x00\x00\x00\x99\x00\x00\xff\xff"));
    let (r, _) = timed(&odd, &["topic", "list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "quill: the peer at {odd} is not a Quill broker: its first answer is not a Quill \
             response ("
        )),
        "{}",
        r.stderr
    );
}

/// Finding 12: `consume --offset N`. With --partition it applies to that partition only, and
/// an N outside its log is an error naming the offsets the log really holds. Without it, N
/// applies to every partition, and a partition whose log does not hold N (here one shorter
/// and one empty) starts at its end with a note, instead of failing the whole command.
#[test]
fn consume_offset_applies_per_partition() {
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.addr.to_string();
    ok(&quill(
        &b,
        &["topic", "create", "o3", "--partitions", "3"],
        b"",
    ));
    ok(&quill(
        &b,
        &["produce", "o3", "-p", "0"],
        b"a0\na1\na2\na3\na4\n",
    ));
    ok(&quill(&b, &["produce", "o3", "-p", "1"], b"b0\nb1\n"));

    let r = quill(
        &b,
        &["consume", "o3", "-p", "0", "--offset", "3", "-c", "2"],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout, "a3\na4\n");
    let r = quill(
        &b,
        &["consume", "o3", "-p", "1", "--offset", "3", "-c", "1"],
        b"",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "quill: offset 3 is out of range for o3-1: the log holds offsets 0 to 1\n"
    );
    let r = quill(
        &b,
        &["consume", "o3", "-p", "2", "--offset", "3", "-c", "1"],
        b"",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "quill: offset 3 is out of range for o3-2: the log is empty\n"
    );

    let r = quill(
        &b,
        &["consume", "o3", "--offset", "3", "--timeout-ms", "1000"],
        b"",
    );
    ok(&r);
    assert_eq!(r.stdout, "a3\na4\n");
    assert_eq!(
        r.stderr,
        "quill: offset 3 is past the end of o3-1 (it holds offsets 0 to 1): reading it from \
         offset 2\n\
         quill: offset 3 is past the end of o3-2 (it is empty): reading it from offset 0\n"
    );
    // Records produced afterwards to the moved partitions are read.
    let mut c = Running::start(
        &["consume", "o3", "--offset", "3", "-c", "4", "-b", &b],
        &[],
    );
    c.close_stdin();
    // The positions are chosen once the notes are out; produce only then.
    c.wait_for_stderr("o3-2 (it is empty)");
    ok(&quill(&b, &["produce", "o3", "-p", "1"], b"b2\n"));
    ok(&quill(&b, &["produce", "o3", "-p", "2"], b"c0\n"));
    let r = c.finish(Duration::from_secs(30));
    ok(&r);
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["a3", "a4", "b2", "c0"]);
    broker.stop();
}

/// Finding 13: `--log-level` refuses what is not a level or a directive (`verbose` used to
/// be taken as a module name, silencing everything else), exit status 2; `RUST_LOG` is
/// honoured and checked the same way; the flag wins over it.
#[test]
fn log_level_flag_and_rust_log() {
    let down = format!("127.0.0.1:{}", closed_port());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = args.to_vec();
        all.extend(["-b", &down]);
        Running::start(&all, env).finish(Duration::from_secs(30))
    };
    let r = run(&["--log-level", "verbose", "topic", "list"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("'verbose' is not a log level"),
        "{}",
        r.stderr
    );
    let r = run(&["topic", "list"], &[("RUST_LOG", "verbose")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("quill: RUST_LOG: 'verbose' is not a log level"),
        "{}",
        r.stderr
    );
    // The client's retries of a refused connection are logged at debug level.
    let r = run(&["topic", "list"], &[("RUST_LOG", "debug")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(" DEBUG "), "{}", r.stderr);
    let r = run(&["topic", "list", "--log-level", "quill=debug"], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(" DEBUG "), "{}", r.stderr);
    let r = run(
        &["topic", "list", "--log-level", "warn"],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains(" DEBUG "), "{}", r.stderr);
    let r = run(&["topic", "list"], &[]);
    assert!(!r.stderr.contains(" DEBUG "), "{}", r.stderr);
}

/// Finding 13 for the broker: `RUST_LOG=debug quill serve` logs at debug level. The second
/// bad request on a connection is logged at debug (the first at warn).
#[test]
fn serve_honours_rust_log() {
    use std::io::BufRead;
    let dir = tmpdir();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a listening line").unwrap();
    let addr: std::net::SocketAddr = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    let mut err = serve.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut conn = common::broker::Conn::connect(addr);
    for corr in 1u32..=2 {
        // api_key 999 does not exist: an error response, and a log line.
        let mut frame = 8u32.to_be_bytes().to_vec();
        frame.extend(999u16.to_be_bytes());
        frame.extend(0u16.to_be_bytes());
        frame.extend(corr.to_be_bytes());
        conn.send_raw(&frame);
        conn.read_frame().expect("an error response");
    }
    drop(conn);
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = serve.kill();
            panic!("the broker did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stderr = stderr.join().unwrap();
    assert!(stderr.contains(" DEBUG "), "{stderr}");
}

/// SIGINT while `quill produce` is still waiting for a broker that never answers: nothing
/// was read, so there is nothing to wait for; it reports at once instead of after the
/// (here one-minute) request timeout.
#[test]
fn produce_interrupted_before_connecting_exits_at_once() {
    let (silent, accepted) = fake_server(None);
    let p = Running::start(
        &["produce", "t", "--timeout-ms", "60000", "-b", &silent],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    p.signal(libc::SIGINT);
    let r = p.finish(Duration::from_secs(30));
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "quill: interrupted by SIGINT\nquill: 0 records read, 0 acknowledged, 0 not acknowledged\n"
    );
}
