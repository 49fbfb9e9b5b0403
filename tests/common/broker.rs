//! Starts the real `quill serve` binary on 127.0.0.1 and talks to it with the protocol codec over
//! blocking sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quill::net::protocol::{
    decode_response, ApiKey, CreateTopicRequest, Request, Response, Retention,
};

/// A running broker process.
pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    pub shard_ports: Vec<u16>,
    pub data_dir: PathBuf,
    pub shards: usize,
}

impl Broker {
    /// Starts `quill serve` with `shards` shards on free ports; waits until it listens.
    pub fn start(data_dir: &Path, shards: usize) -> Broker {
        Self::start_with(data_dir, shards, |_| {})
    }

    pub fn start_with(data_dir: &Path, shards: usize, tweak: impl FnOnce(&mut Command)) -> Broker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
        cmd.args(["--log-level", "warn", "serve", "--listen", "127.0.0.1:0"])
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
        // "quill listening on 127.0.0.1:PORT shard ports P0,P1"
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("quill"), "{line}");
        let addr: SocketAddr = words.nth(2).unwrap().parse().unwrap();
        let ports: Vec<u16> = words
            .nth(2)
            .unwrap()
            .split(',')
            .map(|p| p.parse().unwrap())
            .collect();
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Broker {
            child,
            addr,
            shard_ports: ports,
            data_dir: data_dir.to_path_buf(),
            shards,
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    pub fn connect_shard(&self, shard: usize) -> Conn {
        Conn::connect(SocketAddr::new(self.addr.ip(), self.shard_ports[shard]))
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        status.code()
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

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    next_corr: u32,
    /// API of each request sent and not yet answered, in order.
    pending: std::collections::VecDeque<(u32, ApiKey)>,
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
            self.pending.push_back((corr, req.api_key()));
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
        let (corr, api) = self.pending.pop_front().expect("a request in flight");
        let frame = self.read_frame().expect("a response frame");
        let (got, resp) = decode_response(api, frame).expect("decodable response");
        assert_eq!(got, corr, "responses come back in request order");
        (got, resp)
    }

    pub fn call(&mut self, req: &Request) -> Response {
        self.send(req);
        self.recv().1
    }
}

pub fn create_topic(name: &str, partitions: u32) -> Request {
    Request::CreateTopic(CreateTopicRequest {
        name: name.into(),
        partitions,
        retention_ms: Retention::Default,
        retention_bytes: Retention::Default,
        segment_bytes: None,
        segment_ms: None,
        durability: None,
        flush_ms: None,
    })
}
