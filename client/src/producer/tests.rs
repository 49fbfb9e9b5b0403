use super::*;

#[test]
fn wall_clock_follows_the_monotonic_clock_between_readings() {
    let clock = WallClock::default();
    let t0 = Instant::now();
    let first = clock.ms_at(t0);
    assert!((first - now_ms()).abs() < 1000, "close to the wall clock");
    assert_eq!(clock.ms_at(t0 + Duration::from_millis(250)), first + 250);
    // A reading older than the anchor does not go back before it.
    assert_eq!(clock.ms_at(t0), first);
    // Past the anchor's life the wall clock is read again.
    let later = t0 + WALL_CLOCK_ANCHOR_MAX + Duration::from_millis(1);
    clock.ms_at(later);
    assert_eq!(clock.anchor.get().map(|(at, _)| at), Some(later));
}

#[test]
fn a_delivery_reports_its_batch_outcome() {
    let batch = Rc::new(BatchState::new(Arc::from("t"), 2));
    let d = Delivery {
        batch: batch.clone(),
        index: 3,
        timestamp_ms: 7,
    };
    assert_eq!(d.delivered(), None);
    assert!(d.try_result().is_none());
    batch.resolve(Ok(40));
    assert_eq!(d.delivered(), Some(true));
    let meta = d.try_result().unwrap().unwrap();
    assert_eq!((meta.partition, meta.offset, meta.timestamp_ms), (2, 43, 7));
    // The first outcome stays.
    batch.resolve(Err(ClientError::Closed { what: "producer" }));
    assert_eq!(d.delivered(), Some(true));

    let failed = Rc::new(BatchState::new(Arc::from("t"), 0));
    let d = Delivery {
        batch: failed.clone(),
        index: 0,
        timestamp_ms: 0,
    };
    failed.resolve(Err(ClientError::Closed { what: "producer" }));
    assert_eq!(d.delivered(), Some(false));
    assert!(d.try_result().unwrap().is_err());
}
