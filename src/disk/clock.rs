//! Where a log gets the wall-clock time (record timestamps, segment age, retention): a function
//! it is given, so tests can pass a fake.

use std::rc::Rc;

use crate::types::TimestampMs;

/// Where the log gets the current time (milliseconds since the Unix epoch). Tests pass a fake.
pub type Clock = Rc<dyn Fn() -> TimestampMs>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Rc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}
