//! The TCP side of a shard: accept loops for the common port and the shard's own port, and one
//! reader and one writer task per connection.
//!
//! Pipelining: the reader cuts frames as they arrive and starts a handler task for each; the
//! writer awaits those tasks in arrival order, so responses leave in request order while the
//! requests run concurrently. A connection lives on the shard that accepted it.
//!
//! Bounds (`docs/PROTOCOL.md`, "Limits"; `docs/LIMITS.md`):
//! - at most `inflight_requests_max` requests per connection are read and not yet answered;
//! - memory: the read buffer grows only as bytes arrive (at most doubling what has arrived, never
//!   to a size a header merely announced), and every byte of it, of the requests being served and
//!   of the responses waiting to be written is counted against the connection's quota
//!   (`connection_memory_bytes_max`) and the shard's (`request_memory_bytes_max`). A Fetch
//!   reserves its largest response before it starts, in request order, and gives back what it
//!   did not use. A reader that cannot get memory stops reading: TCP backpressure;
//! - time: `connection_idle_ms_max` with nothing in flight, `request_read_ms_max` for a frame
//!   to arrive whole, `response_write_ms_max` for a response to be taken by the peer.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::Task;

use super::budget::{Grant, Memory, Quota};
use super::connections::{Conn, Connections, SHED_CHECK};
use super::error_code::ErrorCode;
use super::frame::{FrameDecoder, FrameError, REQUEST_HEADER_BYTES, SIZE_PREFIX_BYTES};
use super::handler;
use super::protocol::{
    decode_request, encode_response, frame_expects_response, Request, Response, ResponseFrame,
};
use crate::local::Event;
use crate::shard::Shard;

/// Bytes asked of the socket per read while frames are small or their size is not known yet.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// The read buffer of a connection that has been quiet for [`QUIET_MS`]: small, so idle
/// connections hold little memory.
const IDLE_BUFFER_BYTES: usize = 4 << 10;
/// After this long without a byte, a connection's read buffer shrinks to [`IDLE_BUFFER_BYTES`].
const QUIET_MS: u64 = 250;
/// Response chunks smaller than this are copied together into one write.
const COALESCE_BYTES_MAX: usize = 16 << 10;
/// Frames smaller than this are copied out of the read buffer (see where it is used).
const FRAME_COPY_BYTES_MAX: usize = 16 << 10;
/// Memory counted for a Fetch response beyond its records: headers and per-partition fields.
const FETCH_OVERHEAD_BYTES: usize = 1024;

const _: () = assert!(IDLE_BUFFER_BYTES <= READ_CHUNK_BYTES);

/// A response for the writer, in request order, with what it holds until written.
struct Outgoing {
    what: Item,
    /// The request's place among `inflight_requests_max`.
    _slot: Option<Grant>,
}

enum Item {
    /// A request being served; its response (if any) is written when it completes, then the
    /// connection closes if the flag says so.
    Pending(Task<Served>),
    /// A response known at once (an error about the request itself).
    Ready(ResponseFrame, Memory),
    /// Write what came before, then close.
    Close,
}

/// What a handler task hands the writer.
struct Served {
    frame: Option<ResponseFrame>,
    /// The response's memory, held until it is written.
    memory: Memory,
    close: bool,
}

/// Accepts connections until the task is dropped.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, conns: Rc<Connections>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, port, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.is_shutting_down() {
            return;
        }
        // Open sockets, counting connections whose writer still drains after the reader ended.
        if conns.open.borrow().len() as u32 >= conns.connections_max {
            tracing::warn!(
                connections_max = conns.connections_max,
                peer = ?stream.peer_addr().ok(),
                "refusing a connection: connections_per_shard_max reached"
            );
            drop(stream);
            continue;
        }
        let id = conns.next_id.get();
        conns.next_id.set(id + 1);
        let shard2 = shard.clone();
        let conns2 = conns.clone();
        let task = glommio::spawn_local(async move {
            serve_connection(shard2, stream, &conns2, id, port).await;
            // Forget the task handle without cancelling ourselves.
            if let Some(t) = conns2.readers.borrow_mut().remove(&id) {
                t.detach();
            }
        });
        conns.readers.borrow_mut().insert(id, task);
    }
}

async fn serve_connection(
    shard: Rc<Shard>,
    stream: TcpStream,
    conns: &Rc<Connections>,
    id: u64,
    port: u16,
) {
    let _ = stream.set_nodelay(true);
    let limits = &shard.config.limits;
    let conn = Rc::new(Conn {
        peer: stream.peer_addr().ok(),
        fd: stream.as_raw_fd(),
        memory: Quota::new(
            usize::try_from(limits.connection_memory_bytes_max).unwrap_or(usize::MAX),
        ),
        shard_memory: conns.memory.clone(),
        inflight: Quota::new(limits.inflight_requests_max as usize),
        last_active: Cell::new(Instant::now()),
        opened: Instant::now(),
        requests: Cell::new(0),
        bytes_in: Cell::new(0),
        bytes_out: Cell::new(0),
        read_end: Cell::new("stopped"),
        writing_since: Cell::new(None),
        partial_since: Cell::new(None),
        reader_blocked: Cell::new(false),
        memory_wait_since: Cell::new(None),
        closed: Cell::new(false),
        closing: Event::new(),
    });
    tracing::debug!(peer = ?conn.peer, port, shard = %shard.id, "connection opened");
    let conn2 = conn.clone();
    let (reader, writer) = futures_lite::io::split(stream);
    // The inflight quota bounds what is queued; one more place for a final Close.
    let (tx, rx) =
        local_channel::new_bounded::<Outgoing>(limits.inflight_requests_max as usize + 1);
    let write_limit = Duration::from_millis(limits.response_write_ms_max);
    conns.open.borrow_mut().insert(id, conn.clone());
    let conns2 = conns.clone();
    glommio::spawn_local(async move {
        write_responses(writer, rx, conn2, write_limit).await;
        conns2.open.borrow_mut().remove(&id);
    })
    .detach();
    let end = read_requests(shard, reader, tx, conn.clone(), conns).await;
    conn.read_end.set(end);
}

/// Writes responses in request order until the reader is gone and everything is written, the
/// peer stops taking bytes, or a handler asks to close.
async fn write_responses(
    mut writer: WriteHalf<TcpStream>,
    rx: LocalReceiver<Outgoing>,
    conn: Rc<Conn>,
    write_limit: Duration,
) {
    let mut end = "closed";
    while let Some(item) = rx.recv().await {
        let (frame, _memory, close) = match item.what {
            Item::Pending(task) => {
                let s = task.await;
                (s.frame, Some(s.memory), s.close)
            }
            Item::Ready(f, m) => (Some(f), Some(m), false),
            Item::Close => break,
        };
        if let Some(frame) = frame {
            let bytes = frame.len() as u64;
            conn.writing_since.set(Some(Instant::now()));
            let written = futures_lite::future::or(
                async { Some(write_frame(&mut writer, frame, &conn).await) },
                async {
                    glommio::timer::sleep(write_limit).await;
                    None
                },
            )
            .await;
            conn.writing_since.set(None);
            match written {
                Some(Ok(())) => {
                    conn.bytes_out.set(conn.bytes_out.get() + bytes);
                    conn.touch();
                }
                Some(Err(e)) => {
                    tracing::debug!(peer = ?conn.peer, error = %e, "connection write failed");
                    end = "write failed";
                    conn.shut_down();
                    break;
                }
                None => {
                    tracing::info!(peer = ?conn.peer, response_write_ms_max = write_limit.as_millis() as u64,
                        "closing a connection that does not read its responses");
                    end = "response_write_ms_max";
                    conn.shut_down();
                    break;
                }
            }
        }
        if close {
            end = "closed after a failed acks=0 produce";
            conn.shut_down();
            break;
        }
    }
    let _ = writer.close().await;
    drop(rx);
    tracing::debug!(
        peer = ?conn.peer,
        reader = conn.read_end.get(),
        writer = end,
        requests = conn.requests.get(),
        bytes_in = conn.bytes_in.get(),
        bytes_out = conn.bytes_out.get(),
        open_ms = conn.opened.elapsed().as_millis() as u64,
        "connection closed"
    );
}

/// Reads requests until EOF, an unparseable frame, a timeout, or cancellation; returns why it
/// stopped.
async fn read_requests(
    shard: Rc<Shard>,
    mut reader: ReadHalf<TcpStream>,
    tx: LocalSender<Outgoing>,
    conn: Rc<Conn>,
    conns: &Connections,
) -> &'static str {
    let limits = &shard.config.limits;
    let decoder = FrameDecoder::new(limits.frame_bytes_max as usize);
    let idle_limit = Duration::from_millis(limits.connection_idle_ms_max);
    let read_limit = Duration::from_millis(limits.request_read_ms_max);
    let fetch_reserve_max = limits.fetch_bytes_max as usize;
    let mut buf = BytesMut::new();
    let mut buf_memory = Memory::nothing(&conn.memory, &conn.shard_memory);
    // When the first byte of the frame at the front of `buf` arrived.
    let mut frame_started: Option<Instant> = None;
    // When the last byte arrived.
    let mut last_byte = Instant::now();
    let mut complained = false;
    let peer = conn.peer;
    let mut complain = |what: &str, detail: &str| {
        // One line per connection at warn level; the rest at debug, so a bad client cannot
        // flood the log.
        if complained {
            tracing::debug!(?peer, what, detail, "bad request");
        } else {
            tracing::warn!(?peer, what, detail, "bad request from client");
            complained = true;
        }
    };
    loop {
        // Serve every whole frame in the buffer.
        loop {
            let frame = match decoder.split_frame(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    let header_end = SIZE_PREFIX_BYTES + REQUEST_HEADER_BYTES;
                    if matches!(e, FrameError::TooLarge { .. }) && buf.len() < header_end {
                        // Read the request header first, so the answer carries its correlation
                        // id (within request_read_ms_max, like any frame).
                        break;
                    }
                    complain("frame", &e.to_string());
                    if let FrameError::TooLarge { .. } = e {
                        // Answer with the correlation id, then close: the rest of the oversized
                        // frame cannot be skipped safely.
                        let corr = (&buf[header_end - 4..header_end]).get_u32();
                        let resp = Response::Error {
                            code: ErrorCode::FrameTooLarge,
                            message: Some(e.to_string()),
                        };
                        // The frame was not read: its version is unknown; an error has no body.
                        let frame = encode_response(corr, 0, &resp);
                        let memory = buf_memory.split(0);
                        let _ = send(&tx, Item::Ready(frame, memory), None).await;
                    }
                    let _ = send(&tx, Item::Close, None).await;
                    return "bad frame";
                }
            };
            let frame_memory = buf_memory.split(SIZE_PREFIX_BYTES + frame.len());
            // A small frame gets an allocation of its own: the log's batch cache keeps produced
            // batches as slices of their frame, and a slice of the read buffer would keep the
            // whole 64 KiB buffer alive for a batch of a few hundred bytes.
            let frame = if frame.len() < FRAME_COPY_BYTES_MAX {
                BytesMut::from(&frame[..])
            } else {
                frame
            };
            frame_started = (!buf.is_empty()).then(Instant::now);
            conn.requests.set(conn.requests.get() + 1);
            // Wait for a place among inflight_requests_max before serving it.
            let slot = conn.inflight.take(1);
            let Some(slot) = broker_wait(&conn, conn.unless_closed(slot)).await else {
                return "writer gone";
            };
            resume_clocks(&mut frame_started, &mut last_byte);
            let answer = frame_expects_response(&frame);
            let request_bytes = frame.len();
            match decode_request(frame) {
                Ok((header, request)) => {
                    // A fetch reserves its largest response of the connection's quota now, in
                    // request order, so responses that wait for the peer stay within it. Of the
                    // shard's quota it takes only what it really returns, once built: a long poll
                    // holds nothing of the shard's, and it waits to start while the shard is
                    // over its quota.
                    let reserve = match &request {
                        Request::Fetch(f) => {
                            (f.max_bytes as usize).min(fetch_reserve_max) + FETCH_OVERHEAD_BYTES
                        }
                        _ => 0,
                    };
                    let response_memory = if reserve > 0 {
                        let wait = reserve_response(&conn, conns, reserve);
                        let Some(m) = broker_wait(&conn, wait).await else {
                            return "writer gone";
                        };
                        resume_clocks(&mut frame_started, &mut last_byte);
                        m
                    } else {
                        Memory::nothing(&conn.memory, &conn.shard_memory)
                    };
                    let shard = shard.clone();
                    let guard = shard.begin_request();
                    let corr = header.correlation_id;
                    // The response goes in the request's version.
                    let version = header.api_version;
                    let peer = conn.peer;
                    let task = glommio::spawn_local(async move {
                        let _guard = guard;
                        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
                        let api = request.api_key();
                        let out = handler::handle(shard, request).await;
                        // The request's bytes are free once it has been served.
                        drop(frame_memory);
                        if let Some(started) = started {
                            tracing::debug!(
                                ?peer,
                                api = api.as_str(),
                                correlation_id = corr,
                                request_bytes,
                                error = out
                                    .response
                                    .as_ref()
                                    .and_then(handler::first_error)
                                    .map(|c| c.as_str()),
                                micros = started.elapsed().as_micros() as u64,
                                "request served"
                            );
                        }
                        let frame = out.response.map(|r| encode_response(corr, version, &r));
                        let mut memory = response_memory;
                        memory.resize(frame.as_ref().map_or(0, ResponseFrame::len));
                        Served {
                            frame,
                            memory,
                            close: out.close,
                        }
                    });
                    if send(&tx, Item::Pending(task), Some(slot)).await.is_err() {
                        return "writer gone";
                    }
                }
                Err(e) => {
                    drop(frame_memory);
                    complain(e.code.as_str(), &e.message);
                    // No header, or a request that gets no answer (acks=0 produce): close.
                    let Some(header) = e.header.filter(|_| answer) else {
                        let _ = send(&tx, Item::Close, None).await;
                        return "undecodable request";
                    };
                    let resp = Response::Error {
                        code: e.code,
                        message: Some(e.message),
                    };
                    let frame = encode_response(header.correlation_id, header.api_version, &resp);
                    let memory = Memory::nothing(&conn.memory, &conn.shard_memory);
                    if send(&tx, Item::Ready(frame, memory), Some(slot))
                        .await
                        .is_err()
                    {
                        return "writer gone";
                    }
                }
            }
        }
        conn.partial_since
            .set((!buf.is_empty()).then_some(last_byte));
        // Make room for the next read, taking its memory first.
        let (need, grow) = read_room(&decoder, &buf);
        if buf.capacity() - buf.len() < need {
            let capacity = buf.len() + grow;
            let more = capacity.saturating_sub(buf_memory.bytes());
            let Some(extra) = broker_wait(&conn, take_memory(&conn, conns, more)).await else {
                return "writer gone";
            };
            resume_clocks(&mut frame_started, &mut last_byte);
            buf_memory.merge(extra);
            let mut grown = BytesMut::with_capacity(capacity);
            grown.extend_from_slice(&buf);
            buf = grown;
            buf_memory.resize(buf.capacity());
        }
        // Read, within the time limit that applies: the rest of a frame that has started, or the
        // idle limit while nothing is in flight.
        let start = buf.len();
        let room = buf.capacity() - start;
        buf.resize(start + room, 0);
        let n = loop {
            let (limit, what) = match frame_started {
                Some(t) => (t + read_limit, "request_read_ms_max"),
                None => (
                    conn.last_active.get() + idle_limit,
                    "connection_idle_ms_max",
                ),
            };
            let quiet = (start == 0 && buf.capacity() > IDLE_BUFFER_BYTES)
                .then(|| Instant::now() + Duration::from_millis(QUIET_MS));
            let wake = quiet.map_or(limit, |q| q.min(limit));
            let got = futures_lite::future::or(
                async { Some(reader.read(&mut buf[start..]).await) },
                async {
                    glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
                    None
                },
            )
            .await;
            match got {
                Some(Ok(0)) => return "peer closed",
                Some(Err(_)) => return "read failed",
                Some(Ok(n)) => break n,
                None => {}
            }
            let now = Instant::now();
            if quiet.is_some_and(|q| now >= q) && now < limit {
                // Quiet: keep only a small buffer while waiting.
                buf = BytesMut::with_capacity(IDLE_BUFFER_BYTES);
                buf.resize(IDLE_BUFFER_BYTES, 0);
                buf_memory.resize(buf.capacity());
                continue;
            }
            if now < limit {
                continue;
            }
            if frame_started.is_none() {
                // Idle only if nothing is in flight and nothing moved meanwhile.
                let busy = conn.inflight.used() > 0;
                if busy || conn.last_active.get() + idle_limit > now {
                    if busy {
                        conn.touch();
                    }
                    continue;
                }
            }
            tracing::debug!(?peer, limit = what, "closing a connection");
            let _ = send(&tx, Item::Close, None).await;
            return what;
        };
        buf.truncate(start + n);
        conn.bytes_in.set(conn.bytes_in.get() + n as u64);
        conn.touch();
        last_byte = Instant::now();
        if start == 0 {
            frame_started = Some(last_byte);
        }
    }
}

/// Runs a wait of the reader on the broker (a request slot, memory): meanwhile the connection
/// does not count as stalled by its peer ([`Conn::stalled_since`]).
async fn broker_wait<T>(conn: &Conn, wait: impl std::future::Future<Output = T>) -> T {
    conn.reader_blocked.set(true);
    let out = wait.await;
    conn.reader_blocked.set(false);
    out
}

/// After the reader waited for the broker, the peer's clocks restart: time the broker spent not
/// reading does not count against `request_read_ms_max` or as a stall.
fn resume_clocks(frame_started: &mut Option<Instant>, last_byte: &mut Instant) {
    let now = Instant::now();
    if frame_started.is_some() {
        *frame_started = Some(now);
    }
    *last_byte = now;
}

/// Takes `bytes` of the connection's and the shard's memory, waiting as long as it takes unless
/// the connection is shut down (`None`). While it waits for the shard's memory, it asks the
/// shard to close a stalled connection ([`Connections::shed`]).
async fn take_memory(conn: &Conn, conns: &Connections, bytes: usize) -> Option<Memory> {
    let connection = conn.unless_closed(conn.memory.take(bytes)).await?;
    let shard = match conn.shard_memory.try_take(bytes) {
        Some(g) => g,
        None => loop {
            if conn.memory_wait_since.get().is_none() {
                conn.memory_wait_since.set(Some(Instant::now()));
            }
            let wait = futures_lite::future::or(
                async { Some(conn.shard_memory.take(bytes).await) },
                async {
                    glommio::timer::sleep(SHED_CHECK).await;
                    None
                },
            );
            match conn.unless_closed(wait).await {
                None => {
                    conn.memory_wait_since.set(None);
                    return None;
                }
                Some(Some(g)) => break g,
                Some(None) => {
                    conns.shed(conn);
                }
            }
        },
    };
    conn.memory_wait_since.set(None);
    Some(Memory::from_grants(connection, shard))
}

/// A Fetch's reservation: `bytes` of the connection's quota (waiting), and nothing yet of the
/// shard's, but it starts only while the shard is within its quota (shedding a stalled
/// connection while it waits). Its response is charged to the shard once built.
async fn reserve_response(conn: &Conn, conns: &Connections, bytes: usize) -> Option<Memory> {
    let connection = conn.unless_closed(conn.memory.take(bytes)).await?;
    while !conn.shard_memory.has_room() {
        let wait = futures_lite::future::or(
            async {
                conn.shard_memory.until_room().await;
                true
            },
            async {
                glommio::timer::sleep(SHED_CHECK).await;
                false
            },
        );
        if !conn.unless_closed(wait).await? {
            conns.shed(conn);
        }
    }
    Some(Memory::from_grants(connection, conn.shard_memory.nothing()))
}

/// The free room the next read needs, and the room to make when the buffer must grow for it:
/// the rest of a frame whose size is known, but at most as much again as has arrived (memory
/// grows only with bytes actually received, never to a size a header merely announced), and at
/// least [`READ_CHUNK_BYTES`] when growing, so small pipelined frames come in together.
fn read_room(decoder: &FrameDecoder, buf: &BytesMut) -> (usize, usize) {
    let missing = match decoder.whole_frame_bytes(buf) {
        Ok(Some(whole)) => whole.saturating_sub(buf.len()),
        _ => 0,
    };
    let need = missing
        .min(buf.len().max(READ_CHUNK_BYTES))
        .max(IDLE_BUFFER_BYTES);
    (need, need.max(READ_CHUNK_BYTES))
}

async fn send(tx: &LocalSender<Outgoing>, what: Item, slot: Option<Grant>) -> Result<(), ()> {
    tx.send(Outgoing { what, _slot: slot })
        .await
        .map_err(|_| ())
}

/// Writes one response frame: small chunks are gathered into one write, batch bytes go out as
/// they are (no copy, no re-encoding).
async fn write_frame(
    writer: &mut WriteHalf<TcpStream>,
    frame: ResponseFrame,
    conn: &Conn,
) -> std::io::Result<()> {
    let mut small = BytesMut::new();
    for chunk in frame.chunks {
        if chunk.len() < COALESCE_BYTES_MAX {
            small.extend_from_slice(&chunk);
            continue;
        }
        if !small.is_empty() {
            writer.write_all(&small).await?;
            small.clear();
        }
        writer.write_all(&chunk).await?;
        // Progress: a slow but reading peer is not stalled.
        conn.writing_since.set(Some(Instant::now()));
    }
    if !small.is_empty() {
        writer.write_all(&small).await?;
    }
    Ok(())
}
