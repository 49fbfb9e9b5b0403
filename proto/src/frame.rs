//! Length-prefixed framing: cutting whole frames out of a connection's read buffer, and writing
//! the size prefix of outgoing ones.
//!
//! Every frame is a big-endian `u32` size, counting the bytes after it, then that many bytes.
//! The decoder checks the declared size against `frame_bytes_max` as soon as the four size bytes
//! are in, so an oversized frame is refused before any of it is buffered.

use bytes::{Buf, BufMut, BytesMut};

/// Size of the size prefix in front of every frame.
pub const SIZE_PREFIX_BYTES: usize = 4;
/// Size of a request header: `api_key u16`, `api_version u16`, `correlation_id u32`.
pub const REQUEST_HEADER_BYTES: usize = 8;
/// Size of a response header: `correlation_id u32`.
pub const RESPONSE_HEADER_BYTES: usize = 4;
/// The smallest response frame: the header, `error_code u16` and a null `error_message` (i16).
pub const RESPONSE_FRAME_BYTES_MIN: usize = RESPONSE_HEADER_BYTES + 2 + 2;

const _: () = assert!(REQUEST_HEADER_BYTES == 2 + 2 + 4);
const _: () = assert!(RESPONSE_FRAME_BYTES_MIN == 8);

/// Why a frame was refused. The connection cannot be resynchronised after either, so the peer
/// closes it (after replying, for a broker).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The declared size is over the limit.
    #[error("frame of {size} bytes is over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The declared size cannot even hold the frame's header.
    #[error("frame of {size} bytes is shorter than its header")]
    TooSmall { size: usize },
}

/// Cuts whole frames out of a read buffer. Holds only its limits, so one per connection costs
/// nothing; it lives on the shard that owns the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameDecoder {
    frame_bytes_max: usize,
    frame_bytes_min: usize,
}

impl FrameDecoder {
    /// A decoder of request frames (at least [`REQUEST_HEADER_BYTES`]) of at most
    /// `frame_bytes_max` bytes after the size prefix.
    pub fn new(frame_bytes_max: usize) -> Self {
        assert!(
            frame_bytes_max >= REQUEST_HEADER_BYTES,
            "frame_bytes_max {frame_bytes_max} cannot hold a request header"
        );
        FrameDecoder {
            frame_bytes_max,
            frame_bytes_min: REQUEST_HEADER_BYTES,
        }
    }

    /// A decoder of response frames (at least [`RESPONSE_FRAME_BYTES_MIN`]), for clients.
    pub fn for_responses(frame_bytes_max: usize) -> Self {
        assert!(
            frame_bytes_max >= RESPONSE_FRAME_BYTES_MIN,
            "frame_bytes_max {frame_bytes_max} cannot hold a response header"
        );
        FrameDecoder {
            frame_bytes_max,
            frame_bytes_min: RESPONSE_FRAME_BYTES_MIN,
        }
    }

    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// If `buf` starts with a whole frame, splits it off the front of `buf` (zero-copy) and
    /// returns its contents without the size prefix. `Ok(None)` means more bytes are needed;
    /// then `buf` has been reserved room for the rest of the frame, so one read can complete it.
    /// That suits a client, whose peer is trusted to send the frame it announced; a broker uses
    /// [`FrameDecoder::split_frame`], which reserves nothing on the word of a header.
    ///
    /// On error `buf` is left as it was.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let frame = self.split_frame(buf)?;
        if frame.is_none() {
            if let Some(whole) = self.whole_frame_bytes(buf)? {
                // Bounded by frame_bytes_max, checked in whole_frame_bytes.
                buf.reserve(whole - buf.len());
            }
        }
        Ok(frame)
    }

    /// Like [`FrameDecoder::decode`], but `buf` is left alone when the frame is incomplete.
    pub fn split_frame(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(whole) = self.whole_frame_bytes(buf)? else {
            return Ok(None);
        };
        if buf.len() < whole {
            return Ok(None);
        }
        let mut frame = buf.split_to(whole);
        frame.advance(SIZE_PREFIX_BYTES);
        Ok(Some(frame))
    }

    /// The size of the frame at the start of `buf`, size prefix included, once the prefix is
    /// there; checked against the limits.
    pub fn whole_frame_bytes(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.first_chunk::<SIZE_PREFIX_BYTES>() else {
            return Ok(None);
        };
        // A u32 always fits in usize on the platforms glommio runs on (64-bit Linux).
        let size = u32::from_be_bytes(*prefix) as usize;
        if size > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                size,
                max: self.frame_bytes_max,
            });
        }
        if size < self.frame_bytes_min {
            return Err(FrameError::TooSmall { size });
        }
        Ok(Some(SIZE_PREFIX_BYTES + size))
    }
}

/// Starts a frame at the end of `out`: writes a placeholder size and returns where the frame
/// starts, for [`finish_frame`].
pub fn start_frame(out: &mut BytesMut) -> usize {
    let start = out.len();
    out.put_u32(0);
    start
}

/// Writes the size of the frame begun at `start` by [`start_frame`]: everything written since,
/// after the size prefix.
///
/// # Panics
/// If the frame is over `u32::MAX` bytes, or `start` is not where a frame was started.
pub fn finish_frame(out: &mut BytesMut, start: usize) {
    let end = out.len();
    assert!(
        start + SIZE_PREFIX_BYTES <= end,
        "finish_frame: no frame started at {start}"
    );
    let size = end - start - SIZE_PREFIX_BYTES;
    let size = u32::try_from(size).expect("frame over u32::MAX bytes");
    out[start..start + SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(contents: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let start = start_frame(&mut out);
        out.put_slice(contents);
        finish_frame(&mut out, start);
        out.to_vec()
    }

    #[test]
    fn whole_frame_is_split_off_without_its_prefix() {
        let decoder = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&frame(b"12345678abc")[..]);
        let got = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&got[..], b"12345678abc");
        assert!(buf.is_empty());
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let decoder = FrameDecoder::new(64);
        let whole = frame(b"0123456789");
        let mut buf = BytesMut::new();
        for (i, &b) in whole.iter().enumerate() {
            assert_eq!(decoder.decode(&mut buf), Ok(None), "after {i} bytes");
            buf.put_u8(b);
            if i >= SIZE_PREFIX_BYTES {
                // Room for the rest was reserved when the size became known.
                assert!(buf.capacity() >= whole.len());
            }
        }
        assert_eq!(
            &decoder.decode(&mut buf).unwrap().unwrap()[..],
            b"0123456789"
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn several_frames_in_one_buffer_come_out_in_order() {
        let decoder = FrameDecoder::new(64);
        let mut bytes = Vec::new();
        for i in 0..5u8 {
            bytes.extend(frame(&[i; 8]));
            bytes.extend(frame(&vec![i; 8 + usize::from(i)]));
        }
        bytes.extend(&frame(b"tail-of-a-frame")[..6]);
        let mut buf = BytesMut::from(&bytes[..]);
        for i in 0..5u8 {
            assert_eq!(&decoder.decode(&mut buf).unwrap().unwrap()[..], &[i; 8]);
            let got = decoder.decode(&mut buf).unwrap().unwrap();
            assert_eq!(&got[..], &vec![i; 8 + usize::from(i)][..]);
        }
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn too_large_as_soon_as_the_size_is_known() {
        let decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&101u32.to_be_bytes()[..3]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.put_u8(101u32.to_be_bytes()[3]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
        // The buffer is untouched and nothing was reserved for the oversized frame.
        assert_eq!(buf.len(), 4);
        assert!(buf.capacity() < 101);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        // Exactly at the limit is fine.
        let mut buf = BytesMut::from(&frame(&[7; 100])[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap().len(), 100);
    }

    #[test]
    fn too_small_for_a_header() {
        let requests = FrameDecoder::new(100);
        let responses = FrameDecoder::for_responses(100);
        for size in 0..REQUEST_HEADER_BYTES {
            let mut buf = BytesMut::from(&frame(&vec![0; size])[..]);
            assert_eq!(
                requests.decode(&mut buf),
                Err(FrameError::TooSmall { size })
            );
        }
        for size in 0..RESPONSE_FRAME_BYTES_MIN {
            let mut buf = BytesMut::from(&frame(&vec![0; size])[..]);
            assert_eq!(
                responses.decode(&mut buf),
                Err(FrameError::TooSmall { size })
            );
        }
        let mut buf = BytesMut::from(&frame(&[0; RESPONSE_FRAME_BYTES_MIN])[..]);
        assert!(responses.decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn split_frame_reserves_nothing_for_an_incomplete_frame() {
        let decoder = FrameDecoder::new(16 << 20);
        let mut buf = BytesMut::new();
        buf.put_u32(16 << 20);
        buf.put_slice(&[0; 10]);
        assert_eq!(decoder.split_frame(&mut buf), Ok(None));
        assert!(buf.capacity() < 1 << 20, "reserved {}", buf.capacity());
        assert_eq!(decoder.whole_frame_bytes(&buf), Ok(Some((16 << 20) + 4)));
    }

    #[test]
    fn decoded_frame_shares_the_read_buffer() {
        let decoder = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&frame(b"0123456789")[..]);
        let base = buf.as_ptr() as usize;
        let got = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(got.as_ptr() as usize, base + SIZE_PREFIX_BYTES);
    }

    #[test]
    #[should_panic(expected = "no frame started")]
    fn finish_without_start_is_a_bug() {
        let mut out = BytesMut::new();
        finish_frame(&mut out, 0);
    }
}
