//! Arbitrary bytes through the record batch code; the checks are in
//! `checks/batch_validator.rs` (also run by `tests/fuzz_checks.rs`).

#![no_main]

#[path = "../checks/batch_validator.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::run(data));
