//! Tests of the recovery scanner and the torn-write rule.

use super::*;
use crate::record::{set_base_offset, set_partition_leader_epoch, BatchBuilder};

fn batch(base: u64, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(1000);
    for i in 0..n {
        b.push(1000 + i as i64, None, Some(format!("v{i}").as_bytes()), &[]);
    }
    let mut bytes = b.finish().to_vec();
    set_base_offset(&mut bytes, base as i64);
    set_partition_leader_epoch(&mut bytes, 0);
    bytes
}

/// `count` batches of `n` records each from offset 0, and their positions.
fn log_of(count: usize, n: usize) -> (Vec<u8>, Vec<u64>) {
    let mut log = Vec::new();
    let mut pos = Vec::new();
    for i in 0..count {
        pos.push(log.len() as u64);
        log.extend(batch((i * n) as u64, n));
    }
    (log, pos)
}

fn policy(recovery_point: u64) -> ScanPolicy {
    let mut epochs = EpochCache::default();
    epochs.assign(Epoch(0), Offset(0));
    ScanPolicy {
        segment: Offset(0),
        batch_bytes_max: 1 << 20,
        recovery_point: Offset(recovery_point),
        epochs,
        known: Vec::new(),
        end_offset: None,
        trim_zero_tail: true,
        stop_after_damage: false,
    }
}

struct Scan {
    batches: Vec<ScannedBatch>,
    end: ScanEnd,
    position: u64,
    next: Offset,
    damaged: Vec<DamagedRange>,
}

/// Scans `buf` feeding at most `chunk` bytes at a time, as the driver does.
fn scan_chunked(buf: &[u8], p: ScanPolicy, chunk: usize) -> Scan {
    let mut s = Scanner::new(0, Offset(0), p);
    let mut seen = Vec::new();
    let mut from = s.cursor();
    let mut want = chunk;
    for _ in 0..100_000 {
        let to = (from as usize + want.max(chunk)).min(buf.len());
        let slice = &buf[from as usize..to];
        match s.feed(slice, to == buf.len(), &mut |b, _| seen.push(*b)) {
            Feed::Done(end) => {
                return Scan {
                    batches: seen,
                    end,
                    position: s.position(),
                    next: s.next_offset(),
                    damaged: s.damaged().to_vec(),
                }
            }
            Feed::NeedMore { from: f, at_least } => {
                assert!(
                    !(f == from && slice.len() >= at_least && to < buf.len()),
                    "asked again for bytes it had"
                );
                from = f;
                want = at_least;
            }
        }
    }
    panic!("the scan does not end");
}

fn scan(buf: &[u8], p: ScanPolicy) -> Scan {
    scan_chunked(buf, p, usize::MAX / 4)
}

#[test]
fn clean_log_scans_to_the_end() {
    let (log, _) = log_of(2, 3);
    let s = scan(&log, policy(0));
    assert_eq!(s.batches.len(), 2);
    assert_eq!(s.end, ScanEnd::Clean);
    assert_eq!(s.position, log.len() as u64);
    assert!(s.damaged.is_empty());
}

#[test]
fn zero_padding_is_not_damage() {
    let (mut log, _) = log_of(1, 3);
    let len = log.len();
    log.resize(4096, 0);
    let s = scan(&log, policy(0));
    assert_eq!(s.batches.len(), 1);
    assert_eq!(s.end, ScanEnd::ZeroPadding);
    assert_eq!(s.position, len as u64);
}

#[test]
fn gap_in_offsets_is_a_torn_tail_past_the_recovery_point() {
    let mut log = batch(0, 3);
    let first = log.len() as u64;
    log.extend(batch(7, 2));
    let s = scan(&log, policy(3));
    assert_eq!(s.batches.len(), 1);
    assert!(matches!(s.end, ScanEnd::Invalid { position, .. } if position == first));
    assert_eq!(s.position, first);
}

#[test]
fn torn_tail_past_the_recovery_point_is_cut() {
    let (log, pos) = log_of(4, 2);
    for cut in [pos[3] + 1, pos[3] + 61, log.len() as u64 - 1] {
        let s = scan(&log[..cut as usize], policy(6));
        assert_eq!(s.batches.len(), 3);
        assert_eq!((s.position, s.next), (pos[3], Offset(6)));
        // A cut inside the zero high bytes of the base offset leaves only zeros.
        assert!(matches!(
            s.end,
            ScanEnd::Invalid { .. } | ScanEnd::ZeroPadding
        ));
        assert!(s.damaged.is_empty());
    }
}

#[test]
fn torn_tail_below_the_recovery_point_is_a_damaged_range() {
    let (log, pos) = log_of(4, 2);
    let cut = pos[2] + 30;
    let mut p = policy(8);
    p.trim_zero_tail = false;
    let s = scan(&log[..cut as usize], p);
    assert_eq!(s.batches.len(), 2);
    assert_eq!(s.next, Offset(8), "the log end stays at the recovery point");
    assert_eq!(s.damaged.len(), 1);
    let d = &s.damaged[0];
    assert_eq!((d.first, d.last), (Offset(4), Offset(7)));
    assert_eq!((d.start_pos, d.end_pos), (pos[2], cut));
    // Cut exactly at a batch boundary: the range has no bytes.
    let s = scan(&log[..pos[3] as usize], policy(8));
    assert_eq!(s.batches.len(), 3);
    assert_eq!(s.next, Offset(8));
    let d = &s.damaged[0];
    assert_eq!(
        (d.first, d.last, d.start_pos, d.end_pos),
        (Offset(6), Offset(7), pos[3], pos[3])
    );
}

#[test]
fn a_flipped_bit_followed_by_valid_batches_is_damage_even_past_the_recovery_point() {
    let (log, pos) = log_of(6, 3);
    for rp in [0u64, 18] {
        for at in [0usize, 9, 16, 17, 30, 70] {
            let mut bad = log.clone();
            bad[pos[2] as usize + at] ^= 0x10;
            for chunk in [64usize, 100, 1 << 20] {
                let s = scan_chunked(&bad, policy(rp), chunk);
                let ctx = format!("rp {rp}, byte {at}, chunk {chunk}");
                assert_eq!(s.end, ScanEnd::Clean, "{ctx}");
                assert_eq!(s.next, Offset(18), "{ctx}");
                assert_eq!(s.batches.len(), 5, "{ctx}");
                assert_eq!(s.damaged.len(), 1, "{ctx}");
                let d = &s.damaged[0];
                assert_eq!((d.first, d.last), (Offset(6), Offset(8)), "{ctx}");
                assert_eq!((d.start_pos, d.end_pos), (pos[2], pos[3]), "{ctx}");
            }
        }
    }
}

/// Four batches of one 1500-byte record of `fill` bytes, and their positions.
fn big_batches(fill: u8) -> (Vec<u8>, Vec<u64>) {
    let mut log = Vec::new();
    let mut pos = Vec::new();
    for i in 0..4u64 {
        pos.push(log.len() as u64);
        let mut b = BatchBuilder::new(1000);
        b.push(1000, None, Some(&[fill; 1500]), &[]);
        let mut bytes = b.finish().to_vec();
        set_base_offset(&mut bytes, i as i64);
        set_partition_leader_epoch(&mut bytes, 0);
        log.extend(bytes);
    }
    (log, pos)
}

#[test]
fn an_unwritten_stretch_before_later_batches_is_a_torn_write_past_the_recovery_point() {
    // A tail whose rewrite never landed: zeros from batch 2's first byte to the end of its
    // sector, the rest of the file written by later writes.
    let (mut log, pos) = big_batches(7);
    let z = pos[2].next_multiple_of(SECTOR_BYTES) as usize;
    log[pos[2] as usize..z].fill(0);
    let s = scan(&log, policy(2));
    assert!(matches!(s.end, ScanEnd::Invalid { position, .. } if position == pos[2]));
    assert_eq!(s.next, Offset(2));
    assert!(s.damaged.is_empty());
    // Below the recovery point the same bytes are damage.
    let s = scan(&log, policy(3));
    assert_eq!(s.next, Offset(4));
    assert_eq!(s.damaged[0].first, Offset(2));
    assert_eq!(s.damaged[0].last, Offset(2));
    // Whole unwritten sectors after a lost header: torn too.
    let (mut log, pos) = big_batches(7);
    log[pos[2] as usize..pos[2] as usize + 12].fill(0x5a);
    let z = pos[2].next_multiple_of(SECTOR_BYTES) as usize;
    log[z..z + SECTOR_BYTES as usize].fill(0);
    let s = scan(&log, policy(2));
    assert!(matches!(s.end, ScanEnd::Invalid { position, .. } if position == pos[2]));
}

/// Review of issue 9, finding 1: a flipped bit in a batch whose payload is zeros, past the
/// recovery point, with valid batches after it, is damage: the zeros are written data of a
/// structurally whole batch, not an unwritten stretch. (It was cut as a torn write, dropping
/// the acknowledged batches after it and reusing their offsets.)
#[test]
fn a_flipped_bit_in_a_batch_of_zeros_is_damage_not_a_torn_write() {
    let (mut log, pos) = big_batches(0);
    log[pos[2] as usize + 100] ^= 0x10;
    let s = scan(&log, policy(1));
    assert_eq!(s.next, Offset(4), "{:?}", s.end);
    assert_eq!(s.damaged.len(), 1);
    assert_eq!(
        (s.damaged[0].first, s.damaged[0].last),
        (Offset(2), Offset(2))
    );
    // A partial write that zeroed whole sectors inside an intact batch: damage as well, the
    // safe side (those bytes were never acknowledged, the rule cannot tell).
    let (mut log, pos) = big_batches(7);
    let z = pos[2].next_multiple_of(SECTOR_BYTES) as usize;
    log[z..z + SECTOR_BYTES as usize].fill(0);
    let s = scan(&log, policy(2));
    assert_eq!(s.next, Offset(4));
    assert_eq!(s.damaged[0].first, Offset(2));
}

/// Review of issue 9, finding 6: the last durable batch damaged, its payload ending in
/// zeros: the range spans the batch's declared length, not only up to its last non-zero
/// byte, so a replica's copy of the batch fills the span exactly (`repair_range`).
#[test]
fn a_damaged_last_batch_ending_in_zeros_spans_its_declared_length() {
    let (mut log, pos) = big_batches(0);
    let batch_end = log.len() as u64;
    log[pos[3] as usize + 20] ^= 0x01;
    // Zero padding after the log, as preallocation leaves it.
    log.resize(log.len() + 3 * SECTOR_BYTES as usize, 0);
    let s = scan(&log, policy(4));
    assert_eq!(s.next, Offset(4));
    assert_eq!(s.damaged.len(), 1);
    let d = &s.damaged[0];
    assert_eq!((d.first, d.last), (Offset(3), Offset(3)));
    assert_eq!((d.start_pos, d.end_pos), (pos[3], batch_end));
    // A length field that was hit itself claims no more than the file holds.
    let (mut log, pos) = big_batches(0);
    log[pos[3] as usize + 10] = 0x7f;
    let file_end = log.len() as u64;
    let s = scan(&log, policy(4));
    assert_eq!(s.damaged[0].end_pos, file_end);
}

#[test]
fn an_impossible_epoch_is_damage_and_the_walk_goes_on() {
    let (mut log, pos) = log_of(3, 2);
    log[pos[1] as usize + 12] ^= 1; // epoch 16777216
    let s = scan(&log, policy(0));
    assert_eq!(s.next, Offset(6));
    assert_eq!(s.batches.len(), 2);
    assert_eq!(s.damaged.len(), 1);
    assert_eq!(
        (s.damaged[0].first, s.damaged[0].last),
        (Offset(2), Offset(3))
    );
    assert_eq!(s.last_epoch_of(&log), Some(Epoch(0)));
    // The last batch too, past the recovery point: a whole, CRC-valid batch is not torn.
    let (mut log, pos) = log_of(3, 2);
    log[pos[2] as usize + 12] ^= 1;
    let s = scan(&log, policy(0));
    assert_eq!(s.next, Offset(6));
    assert_eq!(
        (s.damaged[0].first, s.damaged[0].last),
        (Offset(4), Offset(5))
    );
}

impl Scan {
    fn last_epoch_of(&self, _log: &[u8]) -> Option<Epoch> {
        self.batches
            .last()
            .map(|b| Epoch(b.header.partition_leader_epoch))
    }
}

#[test]
fn known_ranges_are_stepped_over() {
    let (mut log, pos) = log_of(4, 2);
    log[pos[1] as usize + 40] ^= 0xff;
    let mut p = policy(8);
    p.known.push(DamagedRange {
        first: Offset(2),
        last: Offset(3),
        segment: Offset(0),
        start_pos: pos[1],
        end_pos: pos[2],
        reason: "x".into(),
    });
    let s = scan_chunked(&log, p.clone(), 70);
    assert_eq!(s.next, Offset(8));
    assert_eq!(s.batches.len(), 3);
    assert_eq!(s.damaged.len(), 1);
    // Review of issue 9, finding 7: a known range whose bytes are valid (repaired before
    // a crash, or named by a lying file) is read, not stepped over.
    let (log, _) = log_of(4, 2);
    for chunk in [70, 4096] {
        let s = scan_chunked(&log, p.clone(), chunk);
        assert_eq!(s.next, Offset(8));
        assert_eq!(s.batches.len(), 4, "chunk {chunk}");
        assert!(s.damaged.is_empty());
    }
}

#[test]
fn garbage_after_the_end_is_cut() {
    let (mut log, _) = log_of(2, 2);
    let len = log.len() as u64;
    log.extend(batch(9, 2)); // a valid batch that leaves a gap
    let s = scan(&log, policy(4));
    assert_eq!(s.position, len);
    assert!(matches!(s.end, ScanEnd::Invalid { .. }));
    let (mut log, _) = log_of(2, 2);
    log.extend([0xab; 300]);
    let s = scan(&log, policy(4));
    assert_eq!(s.position, len);
    assert!(matches!(s.end, ScanEnd::Invalid { .. }));
}

#[test]
fn stop_after_damage_locates_one_range() {
    let (mut log, pos) = log_of(5, 2);
    log[pos[1] as usize + 30] ^= 1;
    log[pos[3] as usize + 30] ^= 1;
    let mut p = policy(u64::MAX);
    p.stop_after_damage = true;
    p.trim_zero_tail = false;
    let mut s = Scanner::resyncing(pos[1], Offset(2), "bad crc".into(), p);
    match s.feed(&log[pos[1] as usize..], true, &mut |_, _| {}) {
        Feed::Done(ScanEnd::Clean) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.damaged().len(), 1);
    assert_eq!(
        (s.damaged()[0].first, s.damaged()[0].last),
        (Offset(2), Offset(3))
    );
    assert_eq!(s.position(), pos[2]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A log of batches of 1 to 4 records with values of varied sizes, epoch 0.
    fn varied_log(sizes: &[(usize, usize)]) -> (Vec<u8>, Vec<(u64, u64, u64)>) {
        let mut log = Vec::new();
        let mut model = Vec::new();
        let mut next = 0u64;
        for (i, &(n, value)) in sizes.iter().enumerate() {
            let mut b = BatchBuilder::new(1000);
            for r in 0..n {
                let v: Vec<u8> = (0..value).map(|k| (k * 31 + i * 7 + r) as u8 | 1).collect();
                b.push(1000 + r as i64, None, Some(&v), &[]);
            }
            let mut bytes = b.finish().to_vec();
            set_base_offset(&mut bytes, next as i64);
            set_partition_leader_epoch(&mut bytes, 0);
            model.push((log.len() as u64, next, next + n as u64));
            next += n as u64;
            log.extend(bytes);
        }
        (log, model)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// One flipped bit anywhere in a batch that has valid batches after it, whatever the
        /// recovery point and the chunking: the scan ends at the original end, reports
        /// exactly that batch as damaged, and passes every other batch through unchanged.
        /// In the last batch, it is damage below the recovery point and a cut tail past it,
        /// except for an impossible epoch, which is damage everywhere.
        #[test]
        fn one_flipped_bit_damages_exactly_its_batch(
            sizes in prop::collection::vec((1usize..5, 0usize..300), 2..8),
            pick in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            bit in 0u32..8,
            rp_past in any::<bool>(),
            chunk in prop::sample::select(vec![61usize, 200, 4096, 1 << 20]),
        ) {
            let (log, model) = varied_log(&sizes);
            let m = pick.index(model.len());
            let (pos, base, next) = model[m];
            let len = model.get(m + 1).map_or(log.len() as u64, |b| b.0) - pos;
            let byte = pos + at.index(len as usize) as u64;
            let mut bad = log.clone();
            bad[byte as usize] ^= 1 << bit;
            let end = model.last().unwrap().2;
            let rp = if rp_past { base } else { end };
            let s = scan_chunked(&bad, policy(rp), chunk);
            let last = m + 1 == model.len();
            let in_epoch = (12..16).contains(&(byte - pos));
            if last && rp_past && !in_epoch {
                prop_assert_eq!(s.next, Offset(base));
                prop_assert_eq!(s.position, pos);
                prop_assert!(s.damaged.is_empty());
            } else {
                prop_assert_eq!(s.next, Offset(end));
                prop_assert_eq!(s.damaged.len(), 1);
                let d = &s.damaged[0];
                prop_assert_eq!((d.first, d.last), (Offset(base), Offset(next - 1)));
                prop_assert_eq!(d.start_pos, pos);
                prop_assert!(d.end_pos <= pos + len);
            }
            let bases: Vec<u64> = s.batches.iter().map(|b| b.base().0).collect();
            let want: Vec<u64> = model
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != m)
                .map(|(_, b)| b.1)
                .collect();
            prop_assert_eq!(bases, want);
        }

        /// Arbitrary bytes never make the scan panic or loop, and what it accepts is
        /// contiguous from the start: batches and damaged ranges tile the offsets.
        #[test]
        fn arbitrary_damage_never_panics_and_tiles_offsets(
            sizes in prop::collection::vec((1usize..4, 0usize..100), 1..6),
            noise in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..20),
            cut in any::<prop::sample::Index>(),
            rp_frac in 0u64..3,
            chunk in prop::sample::select(vec![61usize, 128, 1 << 20]),
        ) {
            let (mut log, model) = varied_log(&sizes);
            for (i, x) in noise {
                let i = i.index(log.len());
                log[i] ^= x;
            }
            log.truncate(cut.index(log.len() + 1));
            let end = model.last().unwrap().2;
            let s = scan_chunked(&log, policy(end * rp_frac / 2), chunk);
            let mut pieces: Vec<(u64, u64)> = s
                .batches
                .iter()
                .map(|b| (b.base().0, b.next_offset().0))
                .chain(s.damaged.iter().map(|d| (d.first.0, d.next().0)))
                .collect();
            pieces.sort();
            let mut at = 0;
            for (a, b) in pieces {
                prop_assert_eq!(a, at);
                at = b;
            }
            prop_assert_eq!(at, s.next.0);
            prop_assert!(s.position <= log.len() as u64);
        }
    }
}
