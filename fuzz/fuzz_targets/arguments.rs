//! Arbitrary command-line values (`--port`, port spans, durations, `{port}`
//! in a command): parsing never panics, gives only values in range, and
//! what it gives round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portd_testkit::arguments(data));
