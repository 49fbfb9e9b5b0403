//! Tests of the appender, on plain memory (no executor).

use super::*;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| seed.wrapping_add(i as u8) | 1).collect()
}

fn at(pos: u64, next: u64) -> Boundary {
    Boundary {
        pos,
        next: Offset(next),
    }
}

#[test]
fn alignment_helpers() {
    assert_eq!(align_down(4095), 0);
    assert_eq!(align_down(4096), 4096);
    assert_eq!(align_up(1), 4096);
    assert_eq!(align_up(4096), 4096);
    assert_eq!(align_up(0), 0);
}

#[test]
fn full_buffers_go_out_whole_and_written_advances_over_a_contiguous_prefix() {
    let pool = BufferPool::<Vec<u8>>::new(8192, 4);
    let mut app = Appender::resume(pool, 0, Offset(0), &[]);
    let (a, b, c) = (bytes(5000, 1), bytes(5000, 2), bytes(7000, 3));
    app.stage(&a, Offset(1));
    app.stage(&b, Offset(2));
    app.stage(&c, Offset(3));
    // Two buffers filled, each in the middle of a batch.
    assert_eq!(app.committed(), at(10_000, 2));
    let j0 = app.next_write().expect("first buffer");
    let j1 = app.next_write().expect("second buffer: no overlap");
    assert!(app.next_write().is_none());
    assert_eq!((j0.pos, j0.buf.len(), j1.pos), (0, 8192, 8192));
    let mut all = a.clone();
    all.extend_from_slice(&b);
    all.extend_from_slice(&c);
    assert_eq!(&j0.buf[..], &all[..8192]);
    assert_eq!(&j1.buf[..], &all[8192..16_384]);
    // Out of order: the second completing first advances nothing.
    assert_eq!(app.complete(j1.id, None), None);
    assert_eq!(app.written(), at(0, 0));
    let adv = app.complete(j0.id, None).expect("prefix advanced");
    assert_eq!(
        adv,
        Advance {
            bytes: 16_384,
            written: at(10_000, 2)
        }
    );
    assert!(!app.fully_written());
    // The rest goes out as a tail, padded with zeros to a block.
    assert!(app.take_tail());
    assert!(!app.take_tail(), "nothing new to cut");
    let t = app.next_write().expect("tail");
    assert_eq!((t.pos, t.buf.len()), (16_384, 4096));
    assert_eq!(&t.buf[..616], &all[16_384..]);
    assert!(t.buf[616..].iter().all(|&x| x == 0));
    let adv = app.complete(t.id, None).expect("advanced");
    assert_eq!(adv.written, at(17_000, 3));
    assert!(app.fully_written());
}

#[test]
fn the_partial_block_of_a_tail_is_rewritten_only_after_the_tail_is_written() {
    let pool = BufferPool::<Vec<u8>>::new(8192, 4);
    let mut app = Appender::resume(pool, 0, Offset(0), &[]);
    let (a, b) = (bytes(100, 7), bytes(9000, 8));
    app.stage(&a, Offset(1));
    assert!(app.take_tail());
    let t = app.next_write().expect("tail");
    assert!(app.tail_in_flight());
    // The next buffer starts at block 0 again: it fills and waits for the tail.
    app.stage(&b, Offset(2));
    assert!(app.next_write().is_none(), "block 0 has a write in flight");
    app.complete(t.id, None).expect("advanced");
    let f = app.next_write().expect("now the buffer goes");
    assert_eq!((f.pos, f.buf.len()), (0, 8192));
    assert_eq!(&f.buf[..100], &a[..]);
    assert_eq!(&f.buf[100..], &b[..8092]);
    // Its only batch boundary is the one the tail already reached.
    let adv = app.complete(f.id, None).expect("advanced");
    assert_eq!(
        adv,
        Advance {
            bytes: 8092,
            written: at(100, 1)
        }
    );
}

#[test]
fn rollback_forgets_everything_after_the_written_boundary() {
    let pool = BufferPool::<Vec<u8>>::new(8192, 4);
    let mut app = Appender::resume(pool, 0, Offset(0), &[]);
    let (a, b) = (bytes(6000, 1), bytes(6000, 2));
    app.stage(&a, Offset(1));
    assert!(app.take_tail());
    let t = app.next_write().expect("tail");
    app.complete(t.id, None).expect("advanced");
    app.stage(&b, Offset(2));
    assert!(app.take_tail());
    let t2 = app.next_write().expect("second tail");
    app.fail(t2.id, None);
    assert!(!app.take_tail() && app.next_write().is_none());
    assert_eq!(app.written(), at(6000, 1));
    app.rollback(&a[4096..]);
    assert!(app.fully_written());
    let c = bytes(10, 3);
    app.stage(&c, Offset(2));
    assert!(app.take_tail());
    let t3 = app.next_write().expect("after rollback");
    assert_eq!((t3.pos, t3.buf.len()), (4096, 4096));
    assert_eq!(&t3.buf[..1904], &a[4096..]);
    assert_eq!(&t3.buf[1904..1914], &c[..]);
    assert_eq!(
        app.complete(t3.id, None).expect("advanced").written,
        at(6010, 2)
    );
}

#[test]
fn preallocation_stays_half_a_step_ahead_of_the_staging_buffer() {
    let pool = BufferPool::<Vec<u8>>::new(8192, 4);
    let mut app = Appender::resume(pool, 0, Offset(0), &[]);
    assert_eq!(
        app.preallocate_target(1 << 20, 1 << 30),
        None,
        "nothing staged"
    );
    app.stage(&bytes(100, 1), Offset(1));
    let target = app
        .preallocate_target(1 << 20, 1 << 30)
        .expect("first step");
    assert_eq!(target, 8192 + (1 << 20));
    app.preallocate_started();
    assert_eq!(
        app.preallocate_target(1 << 20, 1 << 30),
        None,
        "one at a time"
    );
    app.preallocate_done(target, false, false);
    assert_eq!(
        app.preallocate_target(1 << 20, 1 << 30),
        None,
        "far enough ahead"
    );
    // A small segment preallocates the minimum step, not all of `step`.
    let mut young = Appender::resume(BufferPool::<Vec<u8>>::new(8192, 4), 0, Offset(0), &[]);
    young.stage(&bytes(100, 1), Offset(1));
    assert_eq!(
        young.preallocate_target(32 << 20, 1 << 30),
        Some(8192 + PREALLOCATE_MIN_BYTES)
    );
    // Short of space: nothing reached, no retry until a step's worth more is staged.
    young.preallocate_started();
    young.preallocate_done(0, true, false);
    assert_eq!(young.preallocated_end(), 0);
    assert_eq!(
        young.preallocate_target(32 << 20, 1 << 30),
        None,
        "backing off"
    );
    young.stage(&bytes(PREALLOCATE_MIN_BYTES as usize, 2), Offset(2));
    assert!(
        young.preallocate_target(32 << 20, 1 << 30).is_some(),
        "retried"
    );
    assert_eq!(app.preallocate_target(0, 1 << 30), None, "turned off");
    let mut small = Appender::resume(BufferPool::<Vec<u8>>::new(8192, 4), 0, Offset(0), &[]);
    small.stage(&bytes(100, 1), Offset(1));
    assert_eq!(
        small.preallocate_target(1 << 20, 65_536),
        Some(65_536),
        "capped"
    );
}

#[test]
fn pool_reuses_buffers_up_to_its_bound() {
    let pool = BufferPool::<Vec<u8>>::new(8192, 2);
    let bufs: Vec<_> = (0..3).map(|_| pool.get()).collect();
    for b in bufs {
        pool.put(b);
    }
    assert_eq!(pool.idle.borrow().len(), 2);
    pool.put(vec![0; 4096]);
    assert_eq!(pool.idle.borrow().len(), 2, "only whole buffers are pooled");
}
