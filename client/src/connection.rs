//! One pipelined TCP connection to one broker port, driven by glommio.
//!
//! A connection lives on the executor that opened it (it is `!Send`). Callers encode their
//! request straight into the connection's outgoing buffer and wait on a promise; a writer task
//! sends whatever accumulated in one write (so many small requests cost one syscall); a reader
//! task cuts response frames out of the socket and resolves the promises in order through the
//! sans-I/O [`Correlator`]. At most `inflight_requests_max` requests are outstanding; more wait
//! for room. A produce with `acks = 0` gets no response: its caller waits only until its bytes
//! were written.
//!
//! Any failure (the broker closes, a write fails, a response breaks the protocol, a request
//! times out) closes the connection for good: every outstanding request fails with the reason,
//! and the owner opens a new connection for the next request.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::Task;

use super::correlation::Correlator;
use super::error::{describe_io, ClientError};
use quill_proto::local::{promise, Event, Resolver};
use quill_proto::protocol::{ApiVersionsRequest, Limits, Request, Response};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 256 << 10;
/// Largest first response frame (the ApiVersions answer, about 100 bytes) a Quill broker
/// would send. A peer that announces more is not one: text protocols start with ASCII, and
/// 4 ASCII bytes read as a size are 0x20202020 (538 MB) or more, e.g. "HTTP" = 1213486160.
const HELLO_FRAME_BYTES_MAX: u32 = 64 << 10;
/// Smallest response frame: correlation id, error code, null error message.
const RESPONSE_FRAME_BYTES_MIN: u32 = 8;
/// Bytes of a foreign peer's answer quoted in the error.
const QUOTED_BYTES_MAX: usize = 60;

type Answer = Result<Response, ClientError>;

/// A handle to one connection; clones share it. When the last clone is dropped the reader and
/// writer tasks are cancelled and the socket closes.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Rc<Shared>,
    _tasks: Rc<Tasks>,
}

/// Cancels the connection's tasks when dropped.
struct Tasks {
    _reader: Task<()>,
    _writer: Task<()>,
}

struct Shared {
    addr: SocketAddr,
    state: RefCell<State>,
    /// Bytes were queued for the writer, or the connection closed.
    writable: Event,
    /// The writer finished a write, or the connection closed.
    written: Event,
    /// An outstanding request completed, or the connection closed.
    room: Event,
    limits: Cell<Limits>,
}

struct State {
    correlator: Correlator<Resolver<Answer>>,
    /// Request frames not yet handed to the socket.
    out: BytesMut,
    /// Requests queued so far, and how many of them the writer has written.
    queued_requests: u64,
    written_requests: u64,
    /// Sequence numbers of queued `acks = 0` requests not yet written; they count as in flight.
    unanswered: VecDeque<u64>,
    inflight_requests_max: usize,
    /// Why the connection closed, once it has.
    closed: Option<String>,
    /// A response has been decoded: the peer speaks the protocol.
    greeted: bool,
    /// Why the peer is not a Quill broker, when its first answer showed it.
    not_quill: Option<String>,
}

impl State {
    fn inflight(&self) -> usize {
        self.correlator.outstanding() + self.unanswered.len()
    }
}

/// Read and write halves of one socket, sharing it without a lock: each half borrows the
/// stream only inside a poll, never across an `.await`.
struct Half(Rc<RefCell<TcpStream>>);

impl AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// Settings a connection needs from the client configuration.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) inflight_requests_max: u32,
    pub(crate) response_frame_bytes_max: u32,
    pub(crate) client_software_name: String,
}

impl Connection {
    /// Connects to `addr`, then exchanges ApiVersions to learn the broker's limits.
    pub(crate) async fn open(
        addr: SocketAddr,
        settings: &ConnectionSettings,
    ) -> Result<Connection, ClientError> {
        let unreachable = |e: io::Error| ClientError::Unreachable {
            addr: addr.to_string(),
            reason: describe_io(&e),
        };
        let stream = TcpStream::connect_timeout(addr, settings.connect_timeout)
            .await
            .map_err(|e| {
                let e: io::Error = e.into();
                if e.kind() == io::ErrorKind::TimedOut {
                    ClientError::ConnectTimedOut {
                        addr: addr.to_string(),
                        timeout_ms: settings.connect_timeout.as_millis() as u64,
                    }
                } else {
                    unreachable(e)
                }
            })?;
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(e.into()))?;
        let stream = Rc::new(RefCell::new(stream));
        let shared = Rc::new(Shared {
            addr,
            state: RefCell::new(State {
                // Until ApiVersions says otherwise, requests stay within the smallest frame
                // limit a broker may have (ApiVersions itself is tiny).
                correlator: Correlator::new(settings.response_frame_bytes_max as usize, 1 << 20),
                out: BytesMut::with_capacity(READ_CHUNK_BYTES),
                queued_requests: 0,
                written_requests: 0,
                unanswered: VecDeque::new(),
                inflight_requests_max: settings.inflight_requests_max.max(1) as usize,
                closed: None,
                greeted: false,
                not_quill: None,
            }),
            writable: Event::new(),
            written: Event::new(),
            room: Event::new(),
            limits: Cell::new(Limits::default()),
        });
        let reader = glommio::spawn_local(read_loop(shared.clone(), Half(stream.clone())));
        let writer = glommio::spawn_local(write_loop(shared.clone(), Half(stream)));
        let conn = Connection {
            shared,
            _tasks: Rc::new(Tasks {
                _reader: reader,
                _writer: writer,
            }),
        };
        let hello = Request::ApiVersions(ApiVersionsRequest {
            client_software_name: settings.client_software_name.clone(),
        });
        match conn.call(&hello, settings.request_timeout).await? {
            Response::ApiVersions(v) => {
                let limits = v.limits;
                conn.shared.limits.set(limits);
                let mut st = conn.shared.state.borrow_mut();
                st.correlator
                    .set_request_frame_bytes_max(limits.frame_bytes_max as usize);
                if limits.inflight_requests_max > 0 {
                    st.inflight_requests_max = st
                        .inflight_requests_max
                        .min(limits.inflight_requests_max as usize);
                }
            }
            Response::Error { code, message } => {
                return Err(ClientError::Broker {
                    code,
                    message,
                    context: format!("ApiVersions to {addr}"),
                })
            }
            other => {
                return Err(
                    conn.protocol_error(format!("ApiVersions answered with {:?}", other.api_key()))
                )
            }
        }
        Ok(conn)
    }

    /// The limits the broker announced in ApiVersions.
    pub(crate) fn limits(&self) -> Limits {
        self.shared.limits.get()
    }

    /// Whether both handles are of the same connection.
    pub(crate) fn is_same(&self, other: &Connection) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the connection can still carry requests.
    pub(crate) fn is_open(&self) -> bool {
        self.shared.state.borrow().closed.is_none()
    }

    /// Closes the connection, failing everything outstanding with a protocol error.
    fn protocol_error(&self, reason: String) -> ClientError {
        self.shared.close(format!("protocol error: {reason}"));
        ClientError::Protocol {
            addr: self.shared.addr.to_string(),
            reason,
        }
    }

    /// Sends `request` and waits for its response, at most `timeout` (then the connection is
    /// closed). A request-level error comes back as `Ok(Response::Error { .. })`.
    ///
    /// # Panics
    /// If `request` is a produce with `acks = 0`, which gets no response: use
    /// [`Connection::send_unanswered`].
    pub(crate) async fn call(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        assert!(
            request.expects_response(),
            "Connection::call on a request the broker never answers"
        );
        self.wait_for_room().await?;
        let (answer, resolver) = promise::<Answer>();
        self.enqueue(request, Some(resolver))?;
        let outcome = futures_lite::future::or(async { Some(answer.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match outcome {
            Some(Ok(answer)) => answer,
            Some(Err(_abandoned)) => Err(self.shared.lost()),
            None => {
                self.shared.close(format!(
                    "a request timed out after {} ms",
                    timeout.as_millis()
                ));
                Err(ClientError::TimedOut {
                    addr: self.shared.addr.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Sends a request the broker does not answer (a produce with `acks = 0`); returns once
    /// its bytes were written to the socket, or after `timeout`.
    pub(crate) async fn send_unanswered(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        assert!(
            !request.expects_response(),
            "Connection::send_unanswered on a request that gets a response"
        );
        self.wait_for_room().await?;
        let seq = self.enqueue(request, None)?;
        let written = async {
            loop {
                let listen = self.shared.written.listen();
                {
                    let st = self.shared.state.borrow();
                    if st.written_requests >= seq {
                        return Ok(());
                    }
                    if st.closed.is_some() {
                        return Err(());
                    }
                }
                listen.await;
            }
        };
        let outcome = futures_lite::future::or(async { Some(written.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(())) => Err(self.shared.lost()),
            None => {
                self.shared.close(format!(
                    "a write timed out after {} ms",
                    timeout.as_millis()
                ));
                Err(ClientError::TimedOut {
                    addr: self.shared.addr.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Waits until one more request may be outstanding.
    async fn wait_for_room(&self) -> Result<(), ClientError> {
        loop {
            let listen = self.shared.room.listen();
            {
                let st = self.shared.state.borrow();
                if st.closed.is_some() {
                    return Err(self.shared.lost());
                }
                if st.inflight() < st.inflight_requests_max {
                    return Ok(());
                }
            }
            listen.await;
        }
    }

    /// Encodes `request` into the outgoing buffer and wakes the writer; returns the request's
    /// sequence number. No `.await` between the room check and here, so the limit holds.
    fn enqueue(
        &self,
        request: &Request,
        resolver: Option<Resolver<Answer>>,
    ) -> Result<u64, ClientError> {
        let seq = {
            let mut st = self.shared.state.borrow_mut();
            if st.closed.is_some() {
                drop(st);
                return Err(self.shared.lost());
            }
            let State {
                correlator, out, ..
            } = &mut *st;
            let mut resolver = resolver;
            let encoded = correlator
                .encode(request, out, || {
                    resolver
                        .take()
                        .expect("a request that expects a response has a resolver")
                })
                .map_err(|e| ClientError::InvalidArgument {
                    what: "request",
                    reason: format!(
                        "{} request of {} bytes is over the broker's frame_bytes_max {}",
                        request.api_key().as_str(),
                        e.bytes,
                        e.max
                    ),
                })?;
            st.queued_requests += 1;
            let seq = st.queued_requests;
            if !encoded.expects_response {
                st.unanswered.push_back(seq);
            }
            seq
        };
        self.shared.writable.notify();
        Ok(seq)
    }
}

impl Shared {
    /// The error for a request on a closed connection.
    fn lost(&self) -> ClientError {
        let st = self.state.borrow();
        if let Some(reason) = &st.not_quill {
            return ClientError::NotQuill {
                addr: self.addr.to_string(),
                reason: reason.clone(),
            };
        }
        let reason = st.closed.clone().unwrap_or_else(|| "closed".to_string());
        drop(st);
        ClientError::ConnectionLost {
            addr: self.addr.to_string(),
            reason,
        }
    }

    /// Closes the connection because the peer's first answer is not the protocol's: everything
    /// outstanding fails with [`ClientError::NotQuill`].
    fn close_not_quill(&self, reason: String) {
        {
            let mut st = self.state.borrow_mut();
            if st.closed.is_some() {
                return;
            }
            st.not_quill = Some(reason.clone());
        }
        self.close(format!("not a Quill broker: {reason}"));
    }

    /// Marks the connection closed (the first reason wins) and fails everything outstanding.
    fn close(&self, reason: String) {
        let tokens = {
            let mut st = self.state.borrow_mut();
            if st.closed.is_some() {
                return;
            }
            tracing::debug!(addr = %self.addr, reason, "client connection closed");
            st.closed = Some(reason);
            st.unanswered.clear();
            st.out.clear();
            st.correlator.take_outstanding()
        };
        let error = self.lost();
        for resolver in tokens {
            resolver.resolve(Err(error.clone()));
        }
        self.writable.notify();
        self.written.notify();
        self.room.notify();
    }
}

async fn write_loop(shared: Rc<Shared>, mut socket: Half) {
    loop {
        let listen = shared.writable.listen();
        let next = {
            let mut st = shared.state.borrow_mut();
            if st.closed.is_some() {
                break;
            }
            if st.out.is_empty() {
                None
            } else {
                Some((st.out.split(), st.queued_requests))
            }
        };
        let Some((bytes, seq)) = next else {
            listen.await;
            continue;
        };
        if let Err(e) = socket.write_all(&bytes).await {
            shared.close(format!("write failed: {}", describe_io(&e)));
            break;
        }
        drop(bytes);
        {
            let mut st = shared.state.borrow_mut();
            st.written_requests = seq;
            while st.unanswered.front().is_some_and(|&s| s <= seq) {
                st.unanswered.pop_front();
            }
        }
        shared.written.notify();
        shared.room.notify();
    }
    let _ = socket.close().await;
}

async fn read_loop(shared: Rc<Shared>, mut socket: Half) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let greeted = shared.state.borrow().greeted;
        if !greeted {
            if let Some(reason) = foreign_first_frame(&buf) {
                shared.close_not_quill(reason);
                return;
            }
        }
        loop {
            let decoded = shared.state.borrow_mut().correlator.decode(&mut buf);
            match decoded {
                Ok(Some((resolver, response))) => {
                    shared.state.borrow_mut().greeted = true;
                    resolver.resolve(Ok(response));
                    shared.room.notify();
                }
                Ok(None) => break,
                Err(reason) if !shared.state.borrow().greeted => {
                    shared.close_not_quill(format!(
                        "its first answer is not a Quill response ({reason})"
                    ));
                    return;
                }
                Err(reason) => {
                    shared.close(format!("protocol error: {reason}"));
                    return;
                }
            }
        }
        // Read into a scratch buffer and append: the frame decoder reserved room in `buf` for
        // a frame whose size is known, so appending does not reallocate, and nothing is
        // zero-filled in proportion to a large frame.
        match socket.read(&mut scratch).await {
            Ok(0) if !shared.state.borrow().greeted && !buf.is_empty() => {
                // A Quill broker closing early (shutting down, too many connections) sends
                // nothing or whole frames; a fragment is someone else's goodbye.
                shared.close_not_quill(format!("it answered {} and closed", quote(&buf)));
                return;
            }
            Ok(0) => {
                shared.close("the broker closed the connection".to_string());
                return;
            }
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) => {
                shared.close(describe_io(&e));
                return;
            }
        }
    }
}

/// Why the start of a peer's first answer cannot be a Quill response frame, if it cannot:
/// its size prefix is outside what an ApiVersions answer can be.
fn foreign_first_frame(buf: &[u8]) -> Option<String> {
    let size = u32::from_be_bytes(buf.get(..4)?.try_into().expect("4 bytes"));
    if (RESPONSE_FRAME_BYTES_MIN..=HELLO_FRAME_BYTES_MAX).contains(&size) {
        return None;
    }
    Some(format!("it answered {}", quote(buf)))
}

/// The first line of `bytes` (at most [`QUOTED_BYTES_MAX`]), quoted, non-printable bytes
/// escaped: `"HTTP/1.1 400 Bad Request"`.
fn quote(bytes: &[u8]) -> String {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let cut = &line[..line.len().min(QUOTED_BYTES_MAX)];
    let more = if cut.len() < line.len() { "..." } else { "" };
    format!("\"{}{more}\"", cut.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_answer_in_text_is_not_a_quill_frame() {
        assert_eq!(foreign_first_frame(b"HTT"), None, "too short to tell");
        assert_eq!(
            foreign_first_frame(b"HTTP/1.1 400 Bad Request\r\n\r\n").as_deref(),
            Some("it answered \"HTTP/1.1 400 Bad Request\"")
        );
        assert_eq!(
            foreign_first_frame(b"SSH-2.0-OpenSSH_9.6\r\n").as_deref(),
            Some("it answered \"SSH-2.0-OpenSSH_9.6\"")
        );
        // A plausible ApiVersions answer size passes; 0 or a huge one does not.
        assert_eq!(foreign_first_frame(&[0, 0, 0, 0x56, 0, 0]), None);
        assert!(foreign_first_frame(&[0, 0, 0, 0]).is_some());
        assert!(foreign_first_frame(&[0, 1, 0, 1]).is_some());
        assert_eq!(quote(&[0xff, b'a']), "\"\\xffa\"");
        assert_eq!(quote(&[b'x'; 70]), format!("\"{}...\"", "x".repeat(60)));
    }
}
