//! What two nodes exchange about one replica group, as bytes: a Raft message, a log fetch for a
//! catch-up ([`FetchLog`]) and its reply ([`FetchLogReply`]).
//!
//! The transport moves opaque frames between nodes and routes them by (node, shard); this module
//! only turns a [`WireMessage`] into [`Bytes`] and back. Every message is one envelope:
//!
//! ```text
//! version u8 (= 1) | kind u8 | group u64 BE | body_length u32 BE | body (body_length bytes)
//! ```
//!
//! Bodies by kind:
//! - `1` Raft: the protobuf encoding of `eraftpb::Message` (raft-rs's `write_to_bytes`); decoded
//!   from a `Bytes` so entry data (record batches) stays a slice of the frame, not a copy.
//! - `2` FetchLog: `request_id u64 | from_offset u64 | max_bytes u32`.
//! - `3` FetchLogReply: `request_id u64 | from_offset u64 | high_watermark u64 | status u8 |
//!   batches_length u32 | batches`. `status` is one of [`FetchLogStatus`]; `batches` is empty
//!   unless the status is `Ok`.
//! - `4` Propose: a record batch of cluster metadata commands (`metadata::command`) a node asks
//!   the metadata leader to propose (a node registering itself, a partition leader reporting).
//!   Sent to the metadata group; the receiver checks the batch decodes as commands, proposes it
//!   if it leads, and drops it otherwise. No reply: the sender sees the outcome in its applied
//!   metadata and sends again if it does not.
//!
//! All integers are big-endian. Decoding never panics: every failure is a [`DecodeError`]
//! (tested with random bytes below).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message as RaftMessage;

/// The envelope version this code writes and reads.
pub const WIRE_VERSION: u8 = 1;
/// Bytes before the body: version, kind, group, body length.
pub const ENVELOPE_HEADER_BYTES: usize = 1 + 1 + 8 + 4;
const FETCH_LOG_BODY_BYTES: usize = 8 + 8 + 4;
const FETCH_LOG_REPLY_FIXED_BYTES: usize = 8 + 8 + 8 + 1 + 4;

/// One replica group: one partition's Raft group. `topic id << 32 | partition`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The group of partition `partition` of the topic numbered `topic_id`.
    pub fn new(topic_id: u32, partition: u32) -> GroupId {
        GroupId((u64::from(topic_id) << 32) | u64::from(partition))
    }

    pub fn topic_id(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn partition(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic_id(), self.partition())
    }
}

/// Ask a replica for its log from `from_offset` on, for a catch-up after a Raft snapshot. The
/// server answers only with committed, locally durable batches (below its high watermark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchLog {
    /// Chosen by the asker, echoed in the reply.
    pub request_id: u64,
    pub from_offset: u64,
    /// At most this many bytes of batches in the reply (at least one whole batch is sent even
    /// if it is larger).
    pub max_bytes: u32,
}

/// Outcome of a [`FetchLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FetchLogStatus {
    /// `batches` holds whole batches starting at `from_offset`.
    Ok = 0,
    /// Nothing at or after `from_offset` below the server's high watermark yet: try later or
    /// elsewhere.
    NotAvailable = 1,
    /// The server does not host this group.
    UnknownGroup = 2,
    /// The server's log failed to read (damage, I/O error): try another replica.
    ReadFailed = 3,
    /// `from_offset` is not a batch boundary of the server's log, or below its log start.
    BadOffset = 4,
}

impl FetchLogStatus {
    fn from_u8(v: u8) -> Result<FetchLogStatus, DecodeError> {
        Ok(match v {
            0 => FetchLogStatus::Ok,
            1 => FetchLogStatus::NotAvailable,
            2 => FetchLogStatus::UnknownGroup,
            3 => FetchLogStatus::ReadFailed,
            4 => FetchLogStatus::BadOffset,
            other => return Err(DecodeError::UnknownStatus(other)),
        })
    }
}

/// The answer to a [`FetchLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchLogReply {
    pub request_id: u64,
    pub from_offset: u64,
    /// The server's high watermark when it answered.
    pub high_watermark: u64,
    pub status: FetchLogStatus,
    /// Concatenated whole batches, exactly as stored (same offsets and epochs).
    pub batches: Bytes,
}

/// A decoded message for one group.
#[derive(Clone, Debug, PartialEq)]
pub enum WireMessage {
    Raft(RaftMessage),
    FetchLog(FetchLog),
    FetchLogReply(FetchLogReply),
    /// A batch of metadata commands for the metadata leader to propose.
    Propose(Bytes),
}

impl WireMessage {
    fn kind(&self) -> u8 {
        match self {
            WireMessage::Raft(_) => 1,
            WireMessage::FetchLog(_) => 2,
            WireMessage::FetchLogReply(_) => 3,
            WireMessage::Propose(_) => 4,
        }
    }
}

/// Why a frame did not decode. The connection decides what to do (drop the frame, count it);
/// nothing here panics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {available} bytes is shorter than the {needed} its header needs")]
    Truncated { needed: usize, available: usize },
    #[error("unknown replication wire version {0}")]
    UnknownVersion(u8),
    #[error("unknown replication message kind {0}")]
    UnknownKind(u8),
    #[error("body length {declared} does not match the {actual} bytes after the header")]
    BodyLength { declared: usize, actual: usize },
    #[error("unknown fetch-log status {0}")]
    UnknownStatus(u8),
    #[error("raft message does not decode: {0}")]
    Raft(String),
}

/// Why a message could not be encoded (a Raft message whose protobuf encoding fails, or a body
/// over `u32::MAX` bytes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("raft message does not encode: {0}")]
    Raft(String),
    #[error("body of {0} bytes is over u32::MAX")]
    TooLarge(usize),
}

/// Encodes `msg` for `group` into one frame.
pub fn encode(group: GroupId, msg: &WireMessage) -> Result<Bytes, EncodeError> {
    let body: Bytes = match msg {
        WireMessage::Raft(m) => m
            .write_to_bytes()
            .map_err(|e| EncodeError::Raft(e.to_string()))?
            .into(),
        WireMessage::FetchLog(f) => {
            let mut b = BytesMut::with_capacity(FETCH_LOG_BODY_BYTES);
            b.put_u64(f.request_id);
            b.put_u64(f.from_offset);
            b.put_u32(f.max_bytes);
            b.freeze()
        }
        WireMessage::FetchLogReply(r) => {
            let mut b = BytesMut::with_capacity(FETCH_LOG_REPLY_FIXED_BYTES + r.batches.len());
            b.put_u64(r.request_id);
            b.put_u64(r.from_offset);
            b.put_u64(r.high_watermark);
            b.put_u8(r.status as u8);
            let n = u32::try_from(r.batches.len())
                .map_err(|_| EncodeError::TooLarge(r.batches.len()))?;
            b.put_u32(n);
            b.put_slice(&r.batches);
            b.freeze()
        }
        WireMessage::Propose(batch) => batch.clone(),
    };
    let body_len = u32::try_from(body.len()).map_err(|_| EncodeError::TooLarge(body.len()))?;
    let mut out = BytesMut::with_capacity(ENVELOPE_HEADER_BYTES + body.len());
    out.put_u8(WIRE_VERSION);
    out.put_u8(msg.kind());
    out.put_u64(group.0);
    out.put_u32(body_len);
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Decodes one frame. The Raft body is parsed from a slice of `frame`, so entry data shares its
/// memory.
pub fn decode(frame: &Bytes) -> Result<(GroupId, WireMessage), DecodeError> {
    if frame.len() < ENVELOPE_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            needed: ENVELOPE_HEADER_BYTES,
            available: frame.len(),
        });
    }
    let mut h = &frame[..ENVELOPE_HEADER_BYTES];
    let version = h.get_u8();
    if version != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let kind = h.get_u8();
    let group = GroupId(h.get_u64());
    let declared = h.get_u32() as usize;
    let actual = frame.len() - ENVELOPE_HEADER_BYTES;
    if declared != actual {
        return Err(DecodeError::BodyLength { declared, actual });
    }
    let body = frame.slice(ENVELOPE_HEADER_BYTES..);
    let msg = match kind {
        1 => WireMessage::Raft(
            RaftMessage::parse_from_carllerche_bytes(&body)
                .map_err(|e| DecodeError::Raft(e.to_string()))?,
        ),
        2 => {
            if body.len() != FETCH_LOG_BODY_BYTES {
                return Err(DecodeError::BodyLength {
                    declared: FETCH_LOG_BODY_BYTES,
                    actual: body.len(),
                });
            }
            let mut b = &body[..];
            WireMessage::FetchLog(FetchLog {
                request_id: b.get_u64(),
                from_offset: b.get_u64(),
                max_bytes: b.get_u32(),
            })
        }
        3 => {
            if body.len() < FETCH_LOG_REPLY_FIXED_BYTES {
                return Err(DecodeError::Truncated {
                    needed: ENVELOPE_HEADER_BYTES + FETCH_LOG_REPLY_FIXED_BYTES,
                    available: frame.len(),
                });
            }
            let mut b = &body[..FETCH_LOG_REPLY_FIXED_BYTES];
            let request_id = b.get_u64();
            let from_offset = b.get_u64();
            let high_watermark = b.get_u64();
            let status = FetchLogStatus::from_u8(b.get_u8())?;
            let n = b.get_u32() as usize;
            let rest = body.len() - FETCH_LOG_REPLY_FIXED_BYTES;
            if n != rest {
                return Err(DecodeError::BodyLength {
                    declared: n,
                    actual: rest,
                });
            }
            WireMessage::FetchLogReply(FetchLogReply {
                request_id,
                from_offset,
                high_watermark,
                status,
                batches: body.slice(FETCH_LOG_REPLY_FIXED_BYTES..),
            })
        }
        4 => WireMessage::Propose(body),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok((group, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn raft_msg() -> RaftMessage {
        let mut m = RaftMessage::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 7;
        m.index = 41;
        m.log_term = 6;
        m.commit = 40;
        let e = Entry {
            index: 42,
            term: 7,
            data: Bytes::from_static(b"a record batch would be here"),
            ..Default::default()
        };
        m.entries = vec![e].into();
        m
    }

    #[test]
    fn round_trips_every_kind() {
        let g = GroupId::new(3, 9);
        assert_eq!((g.topic_id(), g.partition()), (3, 9));
        let msgs = [
            WireMessage::Raft(raft_msg()),
            WireMessage::FetchLog(FetchLog {
                request_id: 5,
                from_offset: 1000,
                max_bytes: 1 << 20,
            }),
            WireMessage::FetchLogReply(FetchLogReply {
                request_id: 5,
                from_offset: 1000,
                high_watermark: 2000,
                status: FetchLogStatus::Ok,
                batches: Bytes::from_static(b"batches"),
            }),
            WireMessage::Propose(Bytes::from_static(b"a command batch")),
        ];
        for m in msgs {
            let frame = encode(g, &m).unwrap();
            assert_eq!(decode(&frame).unwrap(), (g, m));
        }
    }

    #[test]
    fn raft_entry_data_is_a_slice_of_the_frame() {
        let frame = encode(GroupId(1), &WireMessage::Raft(raft_msg())).unwrap();
        let (_, WireMessage::Raft(m)) = decode(&frame).unwrap() else {
            panic!("not a raft message")
        };
        let data = &m.entries[0].data;
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(
            range.contains(&(data.as_ptr() as usize)),
            "entry data was copied"
        );
    }

    #[test]
    fn header_errors_are_typed() {
        let frame = encode(GroupId(1), &WireMessage::Raft(raft_msg())).unwrap();
        assert!(matches!(
            decode(&frame.slice(..5)),
            Err(DecodeError::Truncated { .. })
        ));
        let mut bad = BytesMut::from(&frame[..]);
        bad[0] = 9;
        assert_eq!(decode(&bad.freeze()), Err(DecodeError::UnknownVersion(9)));
        let mut bad = BytesMut::from(&frame[..]);
        bad[1] = 77;
        assert_eq!(decode(&bad.freeze()), Err(DecodeError::UnknownKind(77)));
        assert!(matches!(
            decode(&frame.slice(..frame.len() - 1)),
            Err(DecodeError::BodyLength { .. })
        ));
    }

    /// Random frames, and random bodies behind a valid envelope, never panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut b = BytesMut::with_capacity(ENVELOPE_HEADER_BYTES + len);
            if i % 2 == 0 {
                b.put_u8(WIRE_VERSION);
                b.put_u8((next() % 4) as u8);
                b.put_u64(next());
                b.put_u32(len as u32);
            }
            for _ in 0..len {
                b.put_u8(next() as u8);
            }
            let _ = decode(&b.freeze());
        }
    }
}
