//! The primitive types of the protocol: reading them out of a frame with every length checked,
//! and writing them.
//!
//! `string` is an `i16` length then UTF-8, `bytes` an `i32` length then the bytes, `array<T>` an
//! `i32` count then the elements; -1 is null where the field is nullable. All integers are
//! big-endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error_code::ErrorCode;
use crate::frame::{finish_frame, start_frame};

/// Why a frame's body did not parse. `field` names the field as in `docs/PROTOCOL.md`, `at` is
/// the byte position in the frame (after the size prefix).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum WireError {
    #[error("{field} at byte {at}: needs {needed} bytes, {available} left in the frame")]
    Truncated {
        field: &'static str,
        at: usize,
        needed: usize,
        available: usize,
    },
    #[error("{field} at byte {at}: length {length} is negative")]
    NegativeLength {
        field: &'static str,
        at: usize,
        length: i32,
    },
    #[error("{field} at byte {at}: {count} elements cannot fit in the {available} bytes left")]
    CountTooLarge {
        field: &'static str,
        at: usize,
        count: usize,
        available: usize,
    },
    #[error("{field} at byte {at}: not valid UTF-8")]
    InvalidUtf8 { field: &'static str, at: usize },
    #[error("{field} at byte {at}: {value} is not a valid value")]
    InvalidValue {
        field: &'static str,
        at: usize,
        value: i64,
    },
    #[error("{field} at byte {at}: {value} is not a valid setting")]
    InvalidConfig {
        field: &'static str,
        at: usize,
        value: i64,
    },
    #[error("{bytes} bytes follow the end of the body")]
    TrailingBytes { bytes: usize },
    #[error("{field} at byte {at}: {reason}")]
    CorruptRecords {
        field: &'static str,
        at: usize,
        reason: String,
    },
}

impl WireError {
    /// The wire code a request that failed this way is answered with.
    pub(super) fn code(&self) -> ErrorCode {
        match self {
            WireError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            WireError::CorruptRecords { .. } => ErrorCode::CorruptMessage,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// A buffer a frame can be read from and cut into zero-copy pieces: `BytesMut` for requests
/// (so produce records stay mutable), `Bytes` for responses.
pub(super) trait Source: Buf + AsRef<[u8]> + Sized {
    fn split_to(&mut self, at: usize) -> Self;
}

impl Source for BytesMut {
    fn split_to(&mut self, at: usize) -> Self {
        BytesMut::split_to(self, at)
    }
}

impl Source for Bytes {
    fn split_to(&mut self, at: usize) -> Self {
        Bytes::split_to(self, at)
    }
}

/// Reads primitives off the front of a frame. Every read checks that the bytes are there first,
/// so no input can make it panic, and array capacities are bounded by the bytes left.
pub(super) struct Reader<B> {
    buf: B,
    frame_bytes: usize,
}

impl<B: Source> Reader<B> {
    /// A reader of `buf`, whose first byte is byte `at` of the frame.
    pub(super) fn new(buf: B, at: usize) -> Self {
        let frame_bytes = buf.remaining() + at;
        Reader { buf, frame_bytes }
    }

    /// Byte position of the next read within the frame.
    pub(super) fn position(&self) -> usize {
        self.frame_bytes - self.buf.remaining()
    }

    fn need(&self, field: &'static str, needed: usize) -> Result<(), WireError> {
        if self.buf.remaining() < needed {
            return Err(WireError::Truncated {
                field,
                at: self.position(),
                needed,
                available: self.buf.remaining(),
            });
        }
        Ok(())
    }

    pub(super) fn i8(&mut self, field: &'static str) -> Result<i8, WireError> {
        self.need(field, 1)?;
        Ok(self.buf.get_i8())
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.need(field, 2)?;
        Ok(self.buf.get_u16())
    }

    pub(super) fn i16(&mut self, field: &'static str) -> Result<i16, WireError> {
        self.need(field, 2)?;
        Ok(self.buf.get_i16())
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.need(field, 4)?;
        Ok(self.buf.get_u32())
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        self.need(field, 4)?;
        Ok(self.buf.get_i32())
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        self.need(field, 8)?;
        Ok(self.buf.get_i64())
    }

    /// An error code; one this build does not know reads as `UnknownServerError`, as the
    /// protocol tells clients to treat it.
    pub(super) fn error_code(&mut self, field: &'static str) -> Result<ErrorCode, WireError> {
        let value = self.u16(field)?;
        Ok(ErrorCode::from_u16(value).unwrap_or(ErrorCode::UnknownServerError))
    }

    fn string_of_len(&mut self, field: &'static str, len: usize) -> Result<String, WireError> {
        self.need(field, len)?;
        let at = self.position();
        let s = std::str::from_utf8(&self.buf.as_ref()[..len])
            .map_err(|_| WireError::InvalidUtf8 { field, at })?
            .to_owned();
        self.buf.advance(len);
        Ok(s)
    }

    pub(super) fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let at = self.position();
        let len = self.i16(field)?;
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength {
            field,
            at,
            length: i32::from(len),
        })?;
        self.string_of_len(field, len)
    }

    pub(super) fn nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, WireError> {
        let at = self.position();
        match self.i16(field)? {
            -1 => Ok(None),
            len if len < 0 => Err(WireError::NegativeLength {
                field,
                at,
                length: i32::from(len),
            }),
            len => self.string_of_len(field, len as usize).map(Some),
        }
    }

    /// A non-nullable `bytes`, cut off the frame without copying.
    pub(super) fn bytes(&mut self, field: &'static str) -> Result<B, WireError> {
        let at = self.position();
        let len = self.i32(field)?;
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength {
            field,
            at,
            length: len,
        })?;
        self.need(field, len)?;
        Ok(self.buf.split_to(len))
    }

    /// The count of a non-nullable array whose elements take at least `element_bytes_min`
    /// bytes each. A count that cannot fit in what is left of the frame is refused here, so it
    /// is safe to use as a capacity.
    pub(super) fn array_len(
        &mut self,
        field: &'static str,
        element_bytes_min: usize,
    ) -> Result<usize, WireError> {
        let at = self.position();
        let count = self.i32(field)?;
        let count = usize::try_from(count).map_err(|_| WireError::NegativeLength {
            field,
            at,
            length: count,
        })?;
        self.check_count(field, at, count, element_bytes_min)?;
        Ok(count)
    }

    /// Like [`Reader::array_len`] for a nullable array (count -1 is `None`).
    pub(super) fn nullable_array_len(
        &mut self,
        field: &'static str,
        element_bytes_min: usize,
    ) -> Result<Option<usize>, WireError> {
        let at = self.position();
        match self.i32(field)? {
            -1 => Ok(None),
            count if count < 0 => Err(WireError::NegativeLength {
                field,
                at,
                length: count,
            }),
            count => {
                let count = count as usize;
                self.check_count(field, at, count, element_bytes_min)?;
                Ok(Some(count))
            }
        }
    }

    fn check_count(
        &self,
        field: &'static str,
        at: usize,
        count: usize,
        element_bytes_min: usize,
    ) -> Result<(), WireError> {
        let available = self.buf.remaining();
        if count.saturating_mul(element_bytes_min.max(1)) > available {
            return Err(WireError::CountTooLarge {
                field,
                at,
                count,
                available,
            });
        }
        Ok(())
    }

    /// A non-nullable array of `element_bytes_min`-byte-or-larger elements, each read by `read`.
    pub(super) fn array<T>(
        &mut self,
        field: &'static str,
        element_bytes_min: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let count = self.array_len(field, element_bytes_min)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(out)
    }

    /// Checks that the body ended exactly at the end of the frame.
    pub(super) fn finish(self) -> Result<(), WireError> {
        match self.buf.remaining() {
            0 => Ok(()),
            bytes => Err(WireError::TrailingBytes { bytes }),
        }
    }
}

// Element sizes lower bounds, used to bound array counts by the bytes left.
/// An empty string: its `i16` length.
pub(super) const STRING_BYTES_MIN: usize = 2;
/// An empty array: its `i32` count.
pub(super) const ARRAY_BYTES_MIN: usize = 4;
/// An empty `bytes`: its `i32` length.
pub(super) const BYTES_BYTES_MIN: usize = 4;

fn len_i16(s: &str, what: &str) -> i16 {
    i16::try_from(s.len())
        .unwrap_or_else(|_| panic!("{what} of {} bytes is over i16::MAX", s.len()))
}

/// Writes a non-nullable `string`.
///
/// # Panics
/// If `s` is over `i16::MAX` bytes: callers validate names before they reach the wire.
pub(super) fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(len_i16(s, "string"));
    out.put_slice(s.as_bytes());
}

/// The longest prefix of `s` that fits a `string` and ends on a character boundary.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(i16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a nullable `string` holding a human-readable message: one over `i16::MAX` bytes is
/// cut at a character boundary rather than refused, since it only explains an error code.
pub(super) fn put_message(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_i16(-1),
        Some(s) => put_string(out, truncated(s)),
    }
}

/// Writes the count of an array.
///
/// # Panics
/// If `len` is over `i32::MAX`.
pub(super) fn put_array_len(out: &mut BytesMut, len: usize) {
    out.put_i32(i32::try_from(len).expect("array of more than i32::MAX elements"));
}

/// Writes a nullable array's count, -1 for `None`.
pub(super) fn put_nullable_array_len(out: &mut BytesMut, len: Option<usize>) {
    match len {
        None => out.put_i32(-1),
        Some(len) => put_array_len(out, len),
    }
}

/// Writes a non-nullable `bytes`.
///
/// # Panics
/// If `b` is over `i32::MAX` bytes.
pub(super) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_bytes_len(out, b.len());
    out.put_slice(b);
}

/// Writes the length of a `bytes` whose contents follow.
pub(super) fn put_bytes_len(out: &mut BytesMut, len: usize) {
    out.put_i32(i32::try_from(len).expect("bytes field over i32::MAX bytes"));
}

/// Writes a response frame as a list of chunks: small fields go into a growing buffer, and
/// stored batches are appended as chunks of their own, never copied.
pub(super) struct ChunkWriter {
    /// The chunks so far; chunk 0 is a placeholder for `first` until [`ChunkWriter::finish`].
    chunks: Vec<Bytes>,
    /// The first chunk, kept mutable so the size prefix can be written last.
    first: Option<BytesMut>,
    cur: BytesMut,
    start: usize,
}

/// Room reserved for the small fields of a response; enough for most without regrowing.
const CHUNK_CAPACITY_BYTES: usize = 512;

impl ChunkWriter {
    pub(super) fn new() -> Self {
        let mut cur = BytesMut::with_capacity(CHUNK_CAPACITY_BYTES);
        let start = start_frame(&mut cur);
        ChunkWriter {
            chunks: vec![Bytes::new()],
            first: None,
            cur,
            start,
        }
    }

    /// The buffer small fields are written into.
    pub(super) fn buf(&mut self) -> &mut BytesMut {
        &mut self.cur
    }

    fn flush(&mut self) {
        if self.first.is_none() {
            self.first = Some(self.cur.split());
        } else if !self.cur.is_empty() {
            self.chunks.push(self.cur.split().freeze());
        }
    }

    /// Appends `b` as a chunk of its own, after everything written so far.
    pub(super) fn push_shared(&mut self, b: &Bytes) {
        if b.is_empty() {
            return;
        }
        self.flush();
        self.chunks.push(b.clone());
    }

    /// Writes the size prefix and returns the chunks.
    pub(super) fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        let total: usize = self.chunks.iter().map(Bytes::len).sum();
        let mut first = self
            .first
            .take()
            .expect("flush always sets the first chunk");
        let frame_end = first.len() + total;
        // Patch the prefix as if the whole frame were in `first`.
        let size = frame_end - self.start - crate::frame::SIZE_PREFIX_BYTES;
        let size = u32::try_from(size).expect("response frame over u32::MAX bytes");
        first[self.start..self.start + 4].copy_from_slice(&size.to_be_bytes());
        self.chunks[0] = first.freeze();
        self.chunks
    }
}

/// Writes a whole frame into `out`: `body` writes everything after the size prefix.
pub(super) fn framed(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = start_frame(out);
    body(out);
    finish_frame(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<BytesMut> {
        Reader::new(BytesMut::from(bytes), 8)
    }

    #[test]
    fn integers_are_big_endian() {
        let mut r = reader(&[1, 2, 0xff, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.i8("b").unwrap(), -1);
        assert_eq!(r.u32("c").unwrap(), 3);
        assert_eq!(r.position(), 8 + 7);
        assert_eq!(r.i32("d").unwrap(), -2);
        r.finish().unwrap();
    }

    #[test]
    fn strings_check_length_and_utf8() {
        let mut r = reader(&[0, 2, b'h', b'i', 0xff, 0xff, 0, 1, 0xc3]);
        assert_eq!(r.string("s").unwrap(), "hi");
        assert_eq!(r.nullable_string("n").unwrap(), None);
        assert_eq!(
            r.string("u"),
            Err(WireError::InvalidUtf8 { field: "u", at: 16 })
        );
        let mut r = reader(&[0xff, 0xff]);
        assert!(matches!(
            r.string("s"),
            Err(WireError::NegativeLength { length: -1, .. })
        ));
        let mut r = reader(&[0xff, 0xfe]);
        assert!(matches!(
            r.nullable_string("s"),
            Err(WireError::NegativeLength { length: -2, .. })
        ));
        let mut r = reader(&[0, 3, b'a', b'b']);
        assert!(matches!(
            r.string("s"),
            Err(WireError::Truncated {
                needed: 3,
                available: 2,
                ..
            })
        ));
    }

    #[test]
    fn array_counts_are_bounded_by_the_bytes_left() {
        let mut r = reader(&[0x7f, 0xff, 0xff, 0xff, 0, 0]);
        assert!(matches!(
            r.array_len("a", 1),
            Err(WireError::CountTooLarge { .. })
        ));
        let mut r = reader(&[0, 0, 0, 2, 0, 0, 0, 0]);
        assert!(matches!(
            r.array_len("a", 4),
            Err(WireError::CountTooLarge { .. })
        ));
        let mut r = reader(&[0, 0, 0, 2, 0, 0, 0, 0]);
        assert_eq!(r.array_len("a", 2).unwrap(), 2);
        let mut r = reader(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.nullable_array_len("a", 1).unwrap(), None);
        assert!(matches!(
            r.nullable_array_len("a", 1),
            Err(WireError::NegativeLength { length: -2, .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let r = reader(&[0]);
        assert_eq!(r.finish(), Err(WireError::TrailingBytes { bytes: 1 }));
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let s = "é".repeat(20_000);
        let mut out = BytesMut::new();
        put_message(&mut out, Some(&s));
        let mut r = reader(&out);
        let got = r.nullable_string("m").unwrap().unwrap();
        assert_eq!(got.len(), 32_766);
        assert!(s.starts_with(&got));
    }

    #[test]
    fn chunk_writer_prefixes_the_total_size_and_shares_pushed_bytes() {
        let shared = Bytes::from_static(b"0123456789");
        let mut w = ChunkWriter::new();
        w.buf().put_u32(7);
        w.push_shared(&shared);
        w.push_shared(&Bytes::new());
        w.buf().put_u8(1);
        w.push_shared(&shared);
        let chunks = w.finish();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[1].as_ptr(), shared.as_ptr());
        assert_eq!(chunks[3].as_ptr(), shared.as_ptr());
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(&all[..4], &(all.len() as u32 - 4).to_be_bytes());
        assert_eq!(&all[4..8], &7u32.to_be_bytes());
        assert_eq!(all.len(), 4 + 4 + 10 + 1 + 10);
    }
}
