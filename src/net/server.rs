//! The TCP side of a shard: accept loops for the common port and the shard's own port, and one
//! reader and one writer task per connection.
//!
//! Pipelining: the reader decodes frames as they arrive and starts a handler task for each; the
//! writer awaits those tasks in arrival order, so responses leave in request order while the
//! requests run concurrently. At most `inflight_requests_max` requests per connection are in
//! flight; past that the reader stops reading (backpressure). A connection lives on the shard
//! that accepted it.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::{Buf, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::Task;

use super::error_code::ErrorCode;
use super::frame::{FrameDecoder, FrameError, SIZE_PREFIX_BYTES};
use super::handler;
use super::protocol::{
    decode_request, encode_response, frame_expects_response, Response, ResponseFrame,
};
use crate::shard::Shard;

/// Bytes asked of the socket per read when no larger frame is pending.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Response chunks smaller than this are copied together into one write.
const COALESCE_BYTES_MAX: usize = 16 << 10;

/// The connections of one shard, so shutdown can stop their readers.
pub struct Connections {
    connections_max: u32,
    readers: RefCell<AHashMap<u64, Task<()>>>,
    next_id: Cell<u64>,
}

impl Connections {
    pub fn new(connections_max: u32) -> Self {
        Connections {
            connections_max,
            readers: RefCell::new(AHashMap::new()),
            next_id: Cell::new(0),
        }
    }

    /// Stops reading new requests on every connection; requests already read still get their
    /// responses, then the connections close.
    pub fn stop_reading(&self) {
        let readers: Vec<Task<()>> = self.readers.borrow_mut().drain().map(|(_, t)| t).collect();
        drop(readers);
    }

    pub fn close_all(&self) {
        self.stop_reading();
    }
}

enum Outgoing {
    /// A request being served; its response (if any) is written when it completes, then the
    /// connection closes if the flag says so.
    Pending(Task<(Option<ResponseFrame>, bool)>),
    /// A response known at once (an error about the request itself).
    Ready(ResponseFrame),
    /// Write what came before, then close.
    Close,
}

/// Accepts connections until the task is dropped.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, conns: Rc<Connections>) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.is_shutting_down() {
            return;
        }
        if conns.readers.borrow().len() as u32 >= conns.connections_max {
            tracing::warn!(
                connections_max = conns.connections_max,
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
            serve_connection(shard2, stream).await;
            // Forget the task handle without cancelling ourselves.
            if let Some(t) = conns2.readers.borrow_mut().remove(&id) {
                t.detach();
            }
        });
        conns.readers.borrow_mut().insert(id, task);
    }
}

async fn serve_connection(shard: Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (reader, writer) = futures_lite::io::split(stream);
    let inflight = shard.config.limits.inflight_requests_max as usize;
    let (tx, rx) = local_channel::new_bounded::<Outgoing>(inflight);
    glommio::spawn_local(async move {
        let mut writer = writer;
        while let Some(item) = rx.recv().await {
            let (frame, close) = match item {
                Outgoing::Pending(task) => task.await,
                Outgoing::Ready(f) => (Some(f), false),
                Outgoing::Close => break,
            };
            if let Some(frame) = frame {
                if let Err(e) = write_frame(&mut writer, frame).await {
                    tracing::debug!(error = %e, "connection write failed");
                    break;
                }
            }
            if close {
                break;
            }
        }
        let _ = writer.close().await;
    })
    .detach();
    read_requests(shard, reader, tx, peer).await;
}

/// Reads frames until EOF, an unparseable frame, or cancellation.
async fn read_requests(
    shard: Rc<Shard>,
    mut reader: ReadHalf<TcpStream>,
    tx: LocalSender<Outgoing>,
    peer: Option<SocketAddr>,
) {
    let decoder = FrameDecoder::new(shard.config.limits.frame_bytes_max as usize);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut complained = false;
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
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let answer = frame_expects_response(&frame);
                    match decode_request(frame) {
                        Ok((header, request)) => {
                            let shard = shard.clone();
                            let guard = shard.begin_request();
                            let corr = header.correlation_id;
                            let task = glommio::spawn_local(async move {
                                let _guard = guard;
                                let out = handler::handle(shard, request).await;
                                (out.response.map(|r| encode_response(corr, &r)), out.close)
                            });
                            if tx.send(Outgoing::Pending(task)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            complain(e.code.as_str(), &e.message);
                            // No header, or a request that gets no answer (acks=0 produce): close.
                            let Some(header) = e.header.filter(|_| answer) else {
                                let _ = tx.send(Outgoing::Close).await;
                                return;
                            };
                            let resp = Response::Error {
                                code: e.code,
                                message: Some(e.message),
                            };
                            let frame = encode_response(header.correlation_id, &resp);
                            if tx.send(Outgoing::Ready(frame)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    complain("frame", &e.to_string());
                    if let FrameError::TooLarge { .. } = e {
                        // Answer with the correlation id when the header is already here, then
                        // close: the rest of the oversized frame cannot be skipped safely.
                        let corr = if buf.len() >= SIZE_PREFIX_BYTES + 8 {
                            (&buf[SIZE_PREFIX_BYTES + 4..SIZE_PREFIX_BYTES + 8]).get_u32()
                        } else {
                            0
                        };
                        let resp = Response::Error {
                            code: ErrorCode::FrameTooLarge,
                            message: Some(e.to_string()),
                        };
                        let _ = tx.send(Outgoing::Ready(encode_response(corr, &resp))).await;
                    }
                    let _ = tx.send(Outgoing::Close).await;
                    return;
                }
            }
        }
        // Read at least the rest of a frame whose size is known.
        let mut want = READ_CHUNK_BYTES;
        if buf.len() >= SIZE_PREFIX_BYTES {
            let size = (&buf[..SIZE_PREFIX_BYTES]).get_u32() as usize;
            want = want.max((SIZE_PREFIX_BYTES + size).saturating_sub(buf.len()));
        }
        let start = buf.len();
        buf.resize(start + want, 0);
        match reader.read(&mut buf[start..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.truncate(start + n),
        }
    }
}

/// Writes one response frame: small chunks are gathered into one write, batch bytes go out as
/// they are (no copy, no re-encoding).
async fn write_frame(
    writer: &mut WriteHalf<TcpStream>,
    frame: ResponseFrame,
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
    }
    if !small.is_empty() {
        writer.write_all(&small).await?;
    }
    Ok(())
}
