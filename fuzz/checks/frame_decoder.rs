//! The `frame_decoder` fuzz target's checks: arbitrary bytes through the broker's read path:
//! `FrameDecoder` cuts frames out of a buffer that grows in uneven chunks, and each frame goes
//! through `decode_request` (and, as a client would see it, `decode_response`).
//!
//! Checked beyond "no panic": a frame that decodes re-encodes to exactly the same bytes (every
//! encoding is canonical), a refused frame has a header exactly when its 8 bytes were there, and
//! a decoded response re-encodes to a frame that decodes to the same response.
//!
//! Shared by the fuzz target (`fuzz_targets/frame_decoder.rs`) and by the test suite
//! (`tests/fuzz_checks.rs`), so the checks compile and run in every `cargo test`.

use bytes::{Bytes, BytesMut};
use quill_proto::frame::{FrameDecoder, REQUEST_HEADER_BYTES, SIZE_PREFIX_BYTES};
use quill_proto::protocol::{
    decode_request, decode_response, encode_response, frame_expects_response, ApiKey,
};

fn check_request(frame: BytesMut) {
    let original = frame.to_vec();
    let _ = frame_expects_response(&original);
    match decode_request(frame) {
        Ok((header, request)) => {
            assert_eq!(header.api_key, request.api_key() as u16);
            let mut out = BytesMut::new();
            request.encode(header.correlation_id, &mut out);
            assert_eq!(&out[SIZE_PREFIX_BYTES..], &original[..], "not canonical");
        }
        Err(e) => {
            assert_eq!(e.header.is_some(), original.len() >= REQUEST_HEADER_BYTES);
            assert!(!e.message.is_empty());
        }
    }
}

fn check_response(frame: &[u8]) {
    for key in ApiKey::ALL {
        let (min, max) = key.versions();
        for version in min..=max {
            if let Ok((correlation_id, response)) =
                decode_response(key, version, Bytes::copy_from_slice(frame))
            {
                let again = encode_response(correlation_id, version, &response).to_bytes();
                let (id, decoded) = decode_response(key, version, again.slice(SIZE_PREFIX_BYTES..))
                    .expect("a re-encoded response decodes");
                assert_eq!((id, &decoded), (correlation_id, &response));
            }
        }
    }
}

/// One fuzz input: its first byte picks the frame limit and the chunking, the rest is fed to
/// the decoder.
pub fn run(data: &[u8]) {
    // The first byte picks the frame limit and how the input is chunked, so both the TooLarge
    // path and partial frames are reached.
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let decoder = FrameDecoder::new(REQUEST_HEADER_BYTES + usize::from(knob) * 16);
    let chunk_bytes = usize::from(knob % 17) + 1;
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(chunk_bytes) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_response(&frame);
                    check_request(frame);
                }
                Ok(None) => break,
                // The connection would be closed here.
                Err(_) => return,
            }
        }
    }
    // The whole input as one frame body too, whatever its framing.
    check_request(BytesMut::from(rest));
}
