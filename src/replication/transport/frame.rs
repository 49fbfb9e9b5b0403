//! The bytes inside a replication stream, without I/O (`docs/REPLICATION.md`, "Framing").
//!
//! A connection carries unidirectional streams only. Each stream starts with a 4-byte header
//! (version, reserved, destination shard) and then carries frames: a `u32` big-endian body length
//! and that many bytes of one opaque replication message. [`LaneQueue`] is what a sender keeps
//! per (peer, destination shard) and cuts into batches of frames, one write each.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::ShardId;

/// The ALPN protocol both ends must offer; a change that old brokers cannot read bumps it.
pub const ALPN: &[u8] = b"quill-repl/1";
/// The first byte of every stream: the framing version inside `quill-repl/1`.
pub const STREAM_VERSION: u8 = 1;
/// Bytes of a stream header: version `u8`, reserved `u8` (0), destination shard `u16`.
pub const STREAM_HEADER_BYTES: usize = 4;
/// Bytes of a frame header: the body length, `u32`.
pub const FRAME_HEADER_BYTES: usize = 4;

/// A stream or frame header that breaks the rules; the receiver closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("stream version {0} is not {STREAM_VERSION}")]
    Version(u8),
    #[error("stream header reserved byte is {0}, not 0")]
    Reserved(u8),
    #[error("frame of {len} bytes is over frame_bytes_max {max}")]
    TooLong { len: u32, max: u32 },
}

/// The header that opens a stream to `shard`.
pub fn stream_header(shard: ShardId) -> [u8; STREAM_HEADER_BYTES] {
    let s = shard.0.to_be_bytes();
    [STREAM_VERSION, 0, s[0], s[1]]
}

/// The destination shard a stream header names.
pub fn parse_stream_header(b: [u8; STREAM_HEADER_BYTES]) -> Result<ShardId, FrameError> {
    if b[0] != STREAM_VERSION {
        return Err(FrameError::Version(b[0]));
    }
    if b[1] != 0 {
        return Err(FrameError::Reserved(b[1]));
    }
    Ok(ShardId(u16::from_be_bytes([b[2], b[3]])))
}

/// The header of a frame whose body is `len` bytes.
pub fn frame_header(len: u32) -> [u8; FRAME_HEADER_BYTES] {
    len.to_be_bytes()
}

/// The body length a frame header announces, refused over `frame_bytes_max` before anything
/// is allocated for it.
pub fn parse_frame_header(
    b: [u8; FRAME_HEADER_BYTES],
    frame_bytes_max: u32,
) -> Result<u32, FrameError> {
    let len = u32::from_be_bytes(b);
    if len > frame_bytes_max {
        return Err(FrameError::TooLong {
            len,
            max: frame_bytes_max,
        });
    }
    Ok(len)
}

/// One write's worth of frames: header and body chunks in order, so a large body is written
/// from the `Bytes` the shard handed over, never copied.
#[derive(Debug, Default)]
pub struct Batch {
    /// `[header, body, header, body, ...]`.
    pub chunks: Vec<Bytes>,
    /// Messages in the batch.
    pub messages: u64,
    /// Body bytes in the batch (headers not counted).
    pub body_bytes: u64,
}

/// The messages queued for one (peer, destination shard) lane, bounded in bytes.
#[derive(Debug)]
pub struct LaneQueue {
    messages: VecDeque<Bytes>,
    bytes: usize,
    bytes_max: usize,
}

/// The queue had no room: the message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneFull;

impl LaneQueue {
    /// An empty queue holding at most `bytes_max` body bytes.
    pub fn new(bytes_max: usize) -> Self {
        LaneQueue {
            messages: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Queues `body` unless that would pass `bytes_max`.
    pub fn push(&mut self, body: Bytes) -> Result<(), LaneFull> {
        if self.bytes + body.len() > self.bytes_max {
            return Err(LaneFull);
        }
        self.bytes += body.len();
        self.messages.push_back(body);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Queued messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Queued body bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the oldest messages whose frames fit in `batch_bytes_max` (headers counted), and
    /// always at least one, so a message larger than a batch still goes, alone.
    pub fn take_batch(&mut self, batch_bytes_max: usize) -> Batch {
        let mut batch = Batch::default();
        let mut size = 0usize;
        while let Some(body) = self.messages.front() {
            let framed = FRAME_HEADER_BYTES + body.len();
            if batch.messages > 0 && size + framed > batch_bytes_max {
                break;
            }
            let body = self.messages.pop_front().expect("front exists");
            self.bytes -= body.len();
            size += framed;
            batch.messages += 1;
            batch.body_bytes += body.len() as u64;
            let len =
                u32::try_from(body.len()).expect("bodies are checked against frame_bytes_max");
            batch
                .chunks
                .push(Bytes::copy_from_slice(&frame_header(len)));
            batch.chunks.push(body);
        }
        batch
    }

    /// Empties the queue, returning how many messages it held.
    pub fn clear(&mut self) -> u64 {
        let n = self.messages.len() as u64;
        self.messages.clear();
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_header_round_trips_and_refuses_other_versions() {
        let h = stream_header(ShardId(513));
        assert_eq!(h, [1, 0, 2, 1]);
        assert_eq!(parse_stream_header(h), Ok(ShardId(513)));
        assert_eq!(
            parse_stream_header([2, 0, 0, 0]),
            Err(FrameError::Version(2))
        );
        assert_eq!(
            parse_stream_header([1, 7, 0, 0]),
            Err(FrameError::Reserved(7))
        );
    }

    #[test]
    fn frame_header_is_big_endian_and_bounded() {
        assert_eq!(frame_header(0x0102_0304), [1, 2, 3, 4]);
        assert_eq!(parse_frame_header([0, 0, 1, 0], 256), Ok(256));
        assert_eq!(
            parse_frame_header([0, 0, 1, 1], 256),
            Err(FrameError::TooLong { len: 257, max: 256 })
        );
    }

    #[test]
    fn lane_queue_is_bounded_in_bytes() {
        let mut q = LaneQueue::new(10);
        assert_eq!(q.push(Bytes::from_static(b"123456")), Ok(()));
        assert_eq!(q.push(Bytes::from_static(b"12345")), Err(LaneFull));
        assert_eq!(q.push(Bytes::from_static(b"1234")), Ok(()));
        assert_eq!((q.len(), q.bytes()), (2, 10));
        assert_eq!(q.clear(), 2);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn batches_fill_up_to_the_limit_and_a_large_message_goes_alone() {
        let mut q = LaneQueue::new(1 << 20);
        for _ in 0..10 {
            q.push(Bytes::from(vec![7u8; 96])).unwrap();
        }
        q.push(Bytes::from(vec![9u8; 1000])).unwrap();
        q.push(Bytes::from(vec![1u8; 4])).unwrap();
        // 100 bytes per framed message: a 350-byte batch takes three.
        let b = q.take_batch(350);
        assert_eq!((b.messages, b.body_bytes, b.chunks.len()), (3, 288, 6));
        assert_eq!(&b.chunks[0][..], &frame_header(96));
        let b = q.take_batch(800);
        assert_eq!(b.messages, 7);
        let b = q.take_batch(10);
        assert_eq!(
            b.messages, 1,
            "at least one message even over the batch limit"
        );
        assert_eq!(b.body_bytes, 1000);
        assert_eq!(q.take_batch(1 << 20).messages, 1);
        assert_eq!(q.bytes(), 0);
        assert!(q.take_batch(10).chunks.is_empty());
    }

    #[test]
    fn a_batch_reads_back_as_the_messages_it_took() {
        let mut q = LaneQueue::new(1 << 20);
        let bodies: Vec<Bytes> = (0..20u8)
            .map(|i| Bytes::from(vec![i; i as usize]))
            .collect();
        for b in &bodies {
            q.push(b.clone()).unwrap();
        }
        let batch = q.take_batch(1 << 20);
        let wire: Vec<u8> = batch
            .chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect();
        let mut rest = &wire[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let len = parse_frame_header(rest[..4].try_into().unwrap(), 64).unwrap() as usize;
            got.push(Bytes::copy_from_slice(&rest[4..4 + len]));
            rest = &rest[4 + len..];
        }
        assert_eq!(got, bodies);
    }
}
