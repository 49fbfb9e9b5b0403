//! Arbitrary bytes through the broker's read path; the checks are in `checks/frame_decoder.rs`
//! (also run by `tests/fuzz_checks.rs`).

#![no_main]

#[path = "../checks/frame_decoder.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::run(data));
