//! Zigzag varints, as Kafka writes the fields of a record (protobuf `sint32` / `sint64`).
//!
//! A signed value is first zigzag-mapped to an unsigned one (0, -1, 1, -2, ... become 0, 1, 2,
//! 3, ...) so small negative numbers stay short, then written 7 bits at a time, least significant
//! group first, with the high bit of each byte set when another byte follows.
//!
//! Decoding accepts what Kafka's `ByteUtils.readVarint` accepts (including non-minimal encodings
//! such as `80 00` for 0) with one exception: Kafka silently drops the bits of the last allowed
//! byte that do not fit the width (bits 4-6 of the 5th byte of a varint, bits 1-6 of the 10th
//! byte of a varlong); we reject them as overlong, because no encoder produces them.

use bytes::BufMut;

use super::BatchError;

/// Longest encoding of an `i32` varint.
pub const VARINT_BYTES_MAX: usize = 5;
/// Longest encoding of an `i64` varlong.
pub const VARLONG_BYTES_MAX: usize = 10;

const _: () = assert!(VARINT_BYTES_MAX * 7 >= 32 && (VARINT_BYTES_MAX - 1) * 7 < 32);
const _: () = assert!(VARLONG_BYTES_MAX * 7 >= 64 && (VARLONG_BYTES_MAX - 1) * 7 < 64);

#[inline]
fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

#[inline]
fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Writes `u` as an unsigned varint into `out`, returning how many bytes it took.
#[inline]
fn write_unsigned(mut u: u64, out: &mut [u8; VARLONG_BYTES_MAX]) -> usize {
    let mut n = 0;
    while u >= 0x80 {
        out[n] = (u as u8) | 0x80;
        u >>= 7;
        n += 1;
    }
    out[n] = u as u8;
    n + 1
}

/// A small stack buffer that several varints are encoded into before one copy into the output.
pub(super) struct Scratch {
    bytes: [u8; Scratch::BYTES],
    len: usize,
}

impl Scratch {
    /// Room for a record's length, attributes, timestampDelta, offsetDelta and keyLength.
    const BYTES: usize = 2 * VARINT_BYTES_MAX + 1 + VARLONG_BYTES_MAX + VARINT_BYTES_MAX;

    pub(super) fn new() -> Self {
        Scratch {
            bytes: [0; Scratch::BYTES],
            len: 0,
        }
    }

    #[inline]
    fn unsigned(&mut self, mut u: u64) {
        while u >= 0x80 {
            self.bytes[self.len] = (u as u8) | 0x80;
            u >>= 7;
            self.len += 1;
        }
        self.bytes[self.len] = u as u8;
        self.len += 1;
    }

    #[inline]
    pub(super) fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    #[inline]
    pub(super) fn varint(&mut self, value: i32) {
        self.unsigned(u64::from(zigzag32(value)));
    }

    #[inline]
    pub(super) fn varlong(&mut self, value: i64) {
        self.unsigned(zigzag64(value));
    }

    #[inline]
    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends `value` as a zigzag varint (1 to 5 bytes).
#[inline]
pub fn encode_varint<B: BufMut + ?Sized>(value: i32, buf: &mut B) {
    let mut tmp = [0u8; VARLONG_BYTES_MAX];
    let n = write_unsigned(u64::from(zigzag32(value)), &mut tmp);
    buf.put_slice(&tmp[..n]);
}

/// Appends `value` as a zigzag varlong (1 to 10 bytes).
#[inline]
pub fn encode_varlong<B: BufMut + ?Sized>(value: i64, buf: &mut B) {
    let mut tmp = [0u8; VARLONG_BYTES_MAX];
    let n = write_unsigned(zigzag64(value), &mut tmp);
    buf.put_slice(&tmp[..n]);
}

/// Reads an unsigned varint of at most `bytes_max` bytes holding at most `bits` bits from the
/// start of `buf`.
#[inline]
fn decode_unsigned(buf: &[u8], bytes_max: usize, bits: u32) -> Result<(u64, usize), BatchError> {
    // Most lengths and deltas fit in one byte.
    if let Some(&b) = buf.first() {
        if b < 0x80 {
            return Ok((u64::from(b), 1));
        }
    }
    let mut result = 0u64;
    let mut shift = 0u32;
    for (i, &b) in buf.iter().enumerate().take(bytes_max) {
        let payload = u64::from(b & 0x7f);
        if i + 1 == bytes_max && (b & 0x80 != 0 || payload >> (bits - shift) != 0) {
            return Err(BatchError::VarintOverlong { bytes_max });
        }
        result |= payload << shift;
        if b & 0x80 == 0 {
            return Ok((result, i + 1));
        }
        shift += 7;
    }
    Err(BatchError::VarintTruncated)
}

/// Reads a zigzag varint from the start of `buf`; returns the value and the bytes it took.
#[inline]
pub fn decode_varint(buf: &[u8]) -> Result<(i32, usize), BatchError> {
    let (u, n) = decode_unsigned(buf, VARINT_BYTES_MAX, 32)?;
    // decode_unsigned checked that `u` has at most 32 bits.
    Ok((unzigzag32(u as u32), n))
}

/// Reads a zigzag varlong from the start of `buf`; returns the value and the bytes it took.
#[inline]
pub fn decode_varlong(buf: &[u8]) -> Result<(i64, usize), BatchError> {
    let (u, n) = decode_unsigned(buf, VARLONG_BYTES_MAX, 64)?;
    Ok((unzigzag64(u), n))
}

/// How many bytes [`encode_varint`] writes for `value`.
#[inline]
pub fn varint_len(value: i32) -> usize {
    // `| 1` makes 0 count as one significant bit, so it takes one byte.
    let bits = 32 - (zigzag32(value) | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// How many bytes [`encode_varlong`] writes for `value`.
#[inline]
pub fn varlong_len(value: i64) -> usize {
    let bits = 64 - (zigzag64(value) | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint_bytes(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(v, &mut out);
        out
    }

    fn varlong_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varlong(v, &mut out);
        out
    }

    // Values from the protobuf encoding guide ("Signed Integers", ZigZag table) and Kafka's
    // ByteUtilsTest.
    #[test]
    fn known_varint_encodings() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
            (150, &[0xac, 0x02]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(v, bytes) in cases {
            assert_eq!(varint_bytes(v), bytes, "encode {v}");
            assert_eq!(varint_len(v), bytes.len(), "len {v}");
            assert_eq!(decode_varint(bytes), Ok((v, bytes.len())), "decode {v}");
            assert_eq!(varlong_bytes(i64::from(v)), bytes, "varlong {v}");
        }
    }

    #[test]
    fn known_varlong_encodings() {
        let max: &[u8] = &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let min: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varlong_bytes(i64::MAX), max);
        assert_eq!(varlong_bytes(i64::MIN), min);
        assert_eq!(decode_varlong(max), Ok((i64::MAX, 10)));
        assert_eq!(decode_varlong(min), Ok((i64::MIN, 10)));
        assert_eq!(varlong_len(i64::MIN), 10);
        assert_eq!(varlong_len(0), 1);
        assert_eq!(varlong_len(1 << 40), 6); // zigzag doubles it: 42 bits
    }

    #[test]
    fn decode_stops_at_the_first_byte_without_continuation() {
        assert_eq!(decode_varint(&[0x02, 0xff, 0xff]), Ok((1, 1)));
        assert_eq!(decode_varlong(&[0xac, 0x02, 0x00]), Ok((150, 2)));
    }

    #[test]
    fn non_minimal_encodings_are_accepted_like_kafka() {
        assert_eq!(decode_varint(&[0x80, 0x00]), Ok((0, 2)));
        assert_eq!(decode_varint(&[0x82, 0x80, 0x80, 0x80, 0x00]), Ok((1, 5)));
    }

    #[test]
    fn truncated_varints_are_rejected() {
        assert_eq!(decode_varint(&[]), Err(BatchError::VarintTruncated));
        assert_eq!(decode_varint(&[0x80]), Err(BatchError::VarintTruncated));
        assert_eq!(
            decode_varint(&[0xff, 0xff, 0xff, 0xff]),
            Err(BatchError::VarintTruncated)
        );
        assert_eq!(decode_varlong(&[0xff; 9]), Err(BatchError::VarintTruncated));
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let overlong = BatchError::VarintOverlong { bytes_max: 5 };
        // Six bytes.
        assert_eq!(
            decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(overlong.clone())
        );
        // Five bytes, but the last one carries bits 32 and up.
        assert_eq!(
            decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(overlong)
        );
        let overlong = BatchError::VarintOverlong { bytes_max: 10 };
        let mut eleven = [0x80u8; 11];
        eleven[10] = 0;
        assert_eq!(decode_varlong(&eleven), Err(overlong.clone()));
        let mut wide = [0xffu8; 10];
        wide[9] = 0x02;
        assert_eq!(decode_varlong(&wide), Err(overlong));
    }

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<i32>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = varint_bytes(v);
            let n = bytes.len();
            prop_assert_eq!(n, varint_len(v));
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode_varint(&bytes), Ok((v, n)));
        }

        #[test]
        fn varlong_round_trips(v in any::<i64>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = varlong_bytes(v);
            let n = bytes.len();
            prop_assert_eq!(n, varlong_len(v));
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode_varlong(&bytes), Ok((v, n)));
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((v, n)) = decode_varint(&bytes) {
                prop_assert!((1..=VARINT_BYTES_MAX).contains(&n));
                prop_assert!(varint_len(v) <= n);
            }
            if let Ok((v, n)) = decode_varlong(&bytes) {
                prop_assert!((1..=VARLONG_BYTES_MAX).contains(&n));
                prop_assert!(varlong_len(v) <= n);
            }
        }
    }
}
