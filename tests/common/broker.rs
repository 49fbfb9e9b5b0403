//! Starts the real `quill serve` binary on 127.0.0.1 and talks to it with the protocol codec over
//! blocking sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quill_proto::protocol::{decode_response, ApiKey, CreateTopicRequest, Request, Response};

/// How long a broker may take to exit after SIGTERM before a test calls it hung.
pub const STOP_LIMIT: Duration = Duration::from_secs(60);

/// A running broker process.
pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    pub shard_ports: Vec<u16>,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// What the broker wrote on stderr so far, when started with [`Broker::try_start`].
    pub stderr: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

impl Broker {
    /// Starts `quill serve` with `shards` shards on free ports; waits until it listens.
    pub fn start(data_dir: &Path, shards: usize) -> Broker {
        Self::start_with(data_dir, shards, |_| {})
    }

    pub fn start_with(data_dir: &Path, shards: usize, tweak: impl FnOnce(&mut Command)) -> Broker {
        Self::start_on(data_dir, shards, "127.0.0.1:0", tweak)
    }

    /// Starts `quill serve` with its common port on `listen`.
    pub fn start_on(
        data_dir: &Path,
        shards: usize,
        listen: &str,
        tweak: impl FnOnce(&mut Command),
    ) -> Broker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
        cmd.args(["--log-level", "warn", "serve", "--listen", listen])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--shards", &shards.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        tweak(&mut cmd);
        let mut child = cmd.spawn().expect("spawn quill serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("broker printed its listening line")
            .unwrap();
        let (addr, ports) = parse_listening(&line);
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Broker {
            child,
            addr,
            shard_ports: ports,
            data_dir: data_dir.to_path_buf(),
            shards,
            stderr: None,
        }
    }

    /// What the broker wrote on stderr so far (started with [`Broker::try_start`]).
    pub fn stderr_text(&self) -> String {
        self.stderr
            .as_ref()
            .map(|s| s.lock().unwrap().clone())
            .unwrap_or_default()
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    pub fn connect_shard(&self, shard: usize) -> Conn {
        Conn::connect(SocketAddr::new(self.addr.ip(), self.shard_ports[shard]))
    }

    /// SIGTERM, and asserts a clean shutdown: exit status 0 within [`STOP_LIMIT`] (a hang
    /// guard, not a latency check). A broker that crashed, panicked on the way out or hangs
    /// fails the test here.
    pub fn stop(self) {
        assert_eq!(
            self.stop_within(STOP_LIMIT),
            Some(0),
            "a clean shutdown exits 0"
        );
    }

    /// SIGKILL and wait.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The common address and the shard ports of the broker's ready line,
/// `quill listening on 127.0.0.1:PORT shard ports P0,P1`.
pub fn parse_listening(line: &str) -> (SocketAddr, Vec<u16>) {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("quill"), "{line}");
    let addr: SocketAddr = words.nth(2).unwrap().parse().unwrap();
    let ports: Vec<u16> = words
        .nth(2)
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    (addr, ports)
}

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    next_corr: u32,
    /// API of each request sent and not yet answered, in order.
    pending: std::collections::VecDeque<(u32, ApiKey, u16)>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Conn {
            stream,
            next_corr: 1,
            pending: Default::default(),
        }
    }

    /// Sends a request without waiting; returns its correlation id.
    pub fn send(&mut self, req: &Request) -> u32 {
        let corr = self.next_corr;
        self.next_corr += 1;
        let mut out = BytesMut::new();
        req.encode(corr, &mut out);
        self.stream.write_all(&out).unwrap();
        if req.expects_response() {
            self.pending.push_back((corr, req.api_key(), req.version()));
        }
        corr
    }

    /// Reads the next response frame (size prefix stripped); `None` at EOF.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Reads the response to the oldest request sent.
    pub fn recv(&mut self) -> (u32, Response) {
        let (corr, api, version) = self.pending.pop_front().expect("a request in flight");
        let frame = self.read_frame().expect("a response frame");
        let (got, resp) = decode_response(api, version, frame).expect("decodable response");
        assert_eq!(got, corr, "responses come back in request order");
        (got, resp)
    }

    pub fn call(&mut self, req: &Request) -> Response {
        self.send(req);
        self.recv().1
    }
}

/// A CreateTopic of `partitions` partitions with the broker's default settings.
pub fn create_topic(name: &str, partitions: u32) -> Request {
    Request::CreateTopic(CreateTopicRequest::with_defaults(name, partitions))
}

// ---- Additions for the bad-input, crash and API tests. ----

use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{
    Acks, DeleteTopicRequest, FetchPartition, FetchPartitionResponse, FetchRequest, FetchTopic,
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsTopic,
    MetadataRequest, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceTopic,
};

impl Broker {
    /// SIGTERM and wait at most `limit` (a hang guard, not a latency check): past it the broker
    /// is SIGKILLed and the test fails. Returns the exit status code.
    pub fn stop_within(self, limit: Duration) -> Option<i32> {
        self.signal_within(libc::SIGTERM, limit)
    }

    /// SIGINT (Ctrl-C), and asserts the same clean shutdown as [`Broker::stop`].
    pub fn interrupt(self) {
        assert_eq!(
            self.signal_within(libc::SIGINT, STOP_LIMIT),
            Some(0),
            "a clean shutdown on SIGINT exits 0"
        );
    }

    /// Sends `signal` and waits at most `limit` for the broker to exit, as
    /// [`Broker::stop_within`].
    pub fn signal_within(mut self, signal: libc::c_int, limit: Duration) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the broker did not exit within {limit:?} of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the broker with a TOML configuration file (written into the data directory) on
    /// top of the usual flags; flags win over the file.
    pub fn start_with_config(data_dir: &Path, shards: usize, toml: &str) -> Broker {
        std::fs::create_dir_all(data_dir).unwrap();
        let path = data_dir.join("test-config.toml");
        std::fs::write(&path, toml).unwrap();
        Self::start_with(data_dir, shards, |cmd| {
            cmd.arg("--config").arg(&path);
        })
    }

    /// Whether the broker process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// The address of shard `shard`'s own port.
    pub fn shard_addr(&self, shard: usize) -> SocketAddr {
        SocketAddr::new(self.addr.ip(), self.shard_ports[shard])
    }

    /// The common address followed by every shard's address.
    pub fn all_addrs(&self) -> Vec<SocketAddr> {
        let mut out = vec![self.addr];
        out.extend((0..self.shards).map(|s| self.shard_addr(s)));
        out
    }
}

/// How a [`Conn::try_recv`] failed.
#[derive(Debug)]
pub enum RecvError {
    /// The broker closed the connection (EOF or reset) before a whole response arrived.
    Closed,
    /// Nothing arrived within the read timeout.
    TimedOut,
}

impl Conn {
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Writes bytes as they are, outside the request bookkeeping of [`Conn::send`].
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Like [`Conn::send`], but a write error (the broker is gone) is returned, not a panic.
    pub fn try_send(&mut self, req: &Request) -> std::io::Result<u32> {
        let corr = self.next_corr;
        self.next_corr += 1;
        let mut out = BytesMut::new();
        req.encode(corr, &mut out);
        self.stream.write_all(&out)?;
        if req.expects_response() {
            self.pending.push_back((corr, req.api_key(), req.version()));
        }
        Ok(corr)
    }

    /// Like [`Conn::recv`], but a closed connection or a timeout is returned, not a panic. A
    /// response that does not decode or comes out of order still panics: that is a broker bug.
    pub fn try_recv(&mut self) -> Result<(u32, Response), RecvError> {
        let (corr, api, version) = *self.pending.front().expect("a request in flight");
        let frame = self.read_frame_checked()?;
        self.pending.pop_front();
        let (got, resp) = decode_response(api, version, frame).expect("decodable response");
        assert_eq!(got, corr, "responses come back in request order");
        Ok((got, resp))
    }

    /// Requests sent and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads one frame, telling a closed connection from a timeout.
    pub fn read_frame_checked(&mut self) -> Result<Bytes, RecvError> {
        let mut size = [0u8; 4];
        read_exact_checked(&mut self.stream, &mut size)?;
        let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
        read_exact_checked(&mut self.stream, &mut body)?;
        Ok(Bytes::from(body))
    }

    /// Reads the next frame as the answer to a request sent with [`Conn::send_raw`] of API
    /// `api` (any API decodes an error response).
    pub fn recv_raw(&mut self, api: ApiKey) -> (u32, Response) {
        self.recv_raw_version(api, 0)
    }

    /// [`Conn::recv_raw`] for a request sent as `version`.
    pub fn recv_raw_version(&mut self, api: ApiKey, version: u16) -> (u32, Response) {
        let frame = self
            .read_frame_checked()
            .unwrap_or_else(|e| panic!("expected a response frame, got {e:?}"));
        decode_response(api, version, frame).expect("decodable response")
    }

    /// Asserts that the broker closes the connection without sending another byte.
    pub fn expect_closed(&mut self) {
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the connection to close, got {n} bytes: {:?}",
                &buf[..n]
            ),
            Err(e) if is_reset(&e) => {}
            Err(e) => panic!("expected the connection to close, got {e}"),
        }
    }

    /// Reads and discards until the broker closes the connection; returns the bytes read.
    pub fn drain_until_closed(&mut self) -> usize {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if is_reset(&e) => return total,
                Err(e) => panic!("the broker did not close the connection: {e}"),
            }
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

fn read_exact_checked(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), RecvError> {
    use std::io::ErrorKind::*;
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(RecvError::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == Interrupted => {}
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => return Err(RecvError::TimedOut),
            Err(_) => return Err(RecvError::Closed),
        }
    }
    Ok(())
}

/// A whole request frame, size prefix included, with any header and body bytes.
pub fn raw_frame(api_key: u16, api_version: u16, correlation_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&api_version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A version 0 Produce (as an old client sends it) with `acks` = 1 of `records` to one
/// partition.
pub fn produce_request(topic: &str, partition: u32, records: BytesMut) -> Request {
    produce_request_acks(topic, partition, records, Acks::Leader)
}

pub fn produce_request_acks(topic: &str, partition: u32, records: BytesMut, acks: Acks) -> Request {
    Request::Produce(ProduceRequest {
        version: 0,
        acks,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, records }],
        }],
    })
}

/// A Fetch of one partition, up to 1 MiB, answering once one byte is there.
pub fn fetch_request(topic: &str, partition: u32, offset: i64, max_wait_ms: u32) -> Request {
    Request::Fetch(FetchRequest {
        version: 0,
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

/// A Fetch of one partition with `max_bytes` as both the request's and the partition's limit,
/// answering once one byte is there.
pub fn fetch_sized(
    topic: &str,
    partition: u32,
    offset: i64,
    max_wait_ms: u32,
    max_bytes: u32,
) -> Request {
    Request::Fetch(FetchRequest {
        version: 0,
        max_wait_ms,
        min_bytes: 1,
        max_bytes,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: max_bytes,
            }],
        }],
    })
}

pub fn list_offsets_request(topic: &str, partition: u32, timestamp: i64) -> Request {
    Request::ListOffsets(ListOffsetsRequest {
        version: 0,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition,
                timestamp,
            }],
        }],
    })
}

pub fn metadata_request(topics: Option<&[&str]>) -> Request {
    Request::Metadata(MetadataRequest::new(
        topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
    ))
}

pub fn delete_topic(name: &str) -> Request {
    Request::DeleteTopic(DeleteTopicRequest { name: name.into() })
}

/// The only partition of a one-partition Produce response.
pub fn produce_partition(resp: Response) -> ProducePartitionResponse {
    match resp {
        Response::Produce(mut p) => {
            assert_eq!(p.topics.len(), 1, "{p:?}");
            assert_eq!(p.topics[0].partitions.len(), 1, "{p:?}");
            p.topics[0].partitions.remove(0)
        }
        other => panic!("expected a produce response, got {other:?}"),
    }
}

/// The base offsets of a one-partition Produce that must have succeeded.
pub fn produce_ok(resp: Response) -> Vec<i64> {
    let p = produce_partition(resp);
    assert_eq!(p.error_code, ErrorCode::None, "{:?}", p.error_message);
    p.base_offsets
}

/// The only partition of a one-partition Fetch response.
pub fn fetch_partition(resp: Response) -> FetchPartitionResponse {
    match resp {
        Response::Fetch(mut f) => {
            assert_eq!(f.topics.len(), 1, "{f:?}");
            assert_eq!(f.topics[0].partitions.len(), 1, "{f:?}");
            f.topics[0].partitions.remove(0)
        }
        other => panic!("expected a fetch response, got {other:?}"),
    }
}

/// The only partition of a one-partition ListOffsets response.
pub fn list_offsets_partition(resp: Response) -> ListOffsetsPartitionResponse {
    match resp {
        Response::ListOffsets(mut l) => {
            assert_eq!(l.topics.len(), 1, "{l:?}");
            assert_eq!(l.topics[0].partitions.len(), 1, "{l:?}");
            l.topics[0].partitions.remove(0)
        }
        other => panic!("expected a list offsets response, got {other:?}"),
    }
}

/// The high watermark of a partition, from ListOffsets latest.
pub fn latest_offset(conn: &mut Conn, topic: &str, partition: u32) -> i64 {
    let p = list_offsets_partition(conn.call(&list_offsets_request(topic, partition, -1)));
    assert_eq!(p.error_code, ErrorCode::None);
    p.offset
}

/// The code of a request-level error response.
pub fn error_code(resp: &Response) -> ErrorCode {
    match resp {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// Every batch of a partition from offset 0 to the high watermark, as `(base offset, bytes)`;
/// checks that offsets are contiguous (each batch starts right after the previous one).
pub fn fetch_all_batches(conn: &mut Conn, topic: &str, partition: u32) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut next = 0i64;
    // Bounded: every round must make progress or end.
    for _ in 0..1_000_000 {
        let p = fetch_partition(conn.call(&fetch_request(topic, partition, next, 0)));
        assert_eq!(p.error_code, ErrorCode::None, "{:?}", p.error_message);
        if next >= p.high_watermark {
            assert!(
                p.records.is_empty(),
                "no batch is served at the high watermark"
            );
            return out;
        }
        assert!(
            !p.records.is_empty(),
            "below the high watermark a fetch returns data"
        );
        for b in p.records {
            let h = quill::record::BatchHeader::parse(&b).expect("a batch header");
            assert_eq!(h.base_offset, next, "offsets are contiguous");
            next = h.last_offset() + 1;
            out.push((h.base_offset, b));
        }
    }
    panic!("fetch_all_batches did not reach the high watermark");
}

// ---- Starts that may fail (issue 9: refusing to start is an outcome to assert). ----

/// How a start of `quill serve` ended.
pub enum Started {
    Listening(Broker),
    /// The process exited before listening: its exit code and what it wrote on stderr.
    Exited {
        code: Option<i32>,
        stderr: String,
    },
}

impl Started {
    pub fn broker(self) -> Broker {
        match self {
            Started::Listening(b) => b,
            Started::Exited { code, stderr } => {
                panic!("the broker exited with {code:?} instead of listening: {stderr}")
            }
        }
    }

    pub fn exited(self) -> (Option<i32>, String) {
        match self {
            Started::Listening(b) => {
                drop(b);
                panic!("the broker started, but it should have refused to")
            }
            Started::Exited { code, stderr } => (code, stderr),
        }
    }
}

/// Waits at most `limit` for a spawned `quill serve` (stdout and stderr piped) to exit or to
/// print its listening line; a broker that listens is killed (the caller wanted a refusal).
pub fn wait_exit_or_listen(mut child: Child, limit: Duration) -> Started {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            eprint!("{stderr}");
            return Started::Exited {
                code: status.code(),
                stderr,
            };
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("quill serve neither exited nor was refused within {limit:?}: it runs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Broker {
    /// Starts `quill serve` with `shards` shards and `args` on top of the usual flags, and waits
    /// at most `limit` for it to listen or exit (a hang guard: past it the process is killed
    /// and the test fails). `tweak` can change the command further (environment, limits).
    pub fn try_start(
        data_dir: &Path,
        shards: usize,
        args: &[&str],
        limit: Duration,
        tweak: impl FnOnce(&mut Command),
    ) -> Started {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
        cmd.args(["--log-level", "warn", "serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--shards", &shards.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tweak(&mut cmd);
        let mut child = cmd.spawn().expect("spawn quill serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = line_tx.send(l);
            }
            for _ in lines {}
        });
        let err_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err2 = err_buf.clone();
        let err_thread = std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Shown as the test runs, and kept for the assertions.
                eprintln!("{l}");
                let mut b = err2.lock().unwrap();
                b.push_str(&l);
                b.push('\n');
            }
        });
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(line) = line_rx.try_recv() {
                let (addr, ports) = parse_listening(&line);
                return Started::Listening(Broker {
                    child,
                    addr,
                    shard_ports: ports,
                    data_dir: data_dir.to_path_buf(),
                    shards,
                    stderr: Some(err_buf),
                });
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                let _ = err_thread.join();
                let stderr = err_buf.lock().unwrap().clone();
                return Started::Exited {
                    code: status.code(),
                    stderr,
                };
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the broker neither listened nor exited within {limit:?}: {}",
                    err_buf.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The partition directories under `<data dir>/topics`, sorted.
pub fn partition_dirs(data_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data_dir.join("topics"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `catalog.json` of the data directory, as JSON.
pub fn catalog(data_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data_dir.join("catalog.json")).unwrap()).unwrap()
}

/// The shard each partition of `topic` is recorded on in `catalog.json`; also checks that each
/// placement names node 0 (the default `--node-id`) as leader and only replica.
pub fn recorded_shards(data_dir: &Path, topic: &str) -> Vec<u16> {
    let c = catalog(data_dir);
    let placement = c["topics"][topic]["placement"]
        .as_array()
        .unwrap_or_else(|| panic!("no placement for {topic}: {c}"));
    placement
        .iter()
        .map(|p| {
            assert_eq!(p["node"], 0, "{p}");
            assert_eq!(p["replicas"], serde_json::json!([0]), "{p}");
            p["shard"].as_u64().unwrap() as u16
        })
        .collect()
}
