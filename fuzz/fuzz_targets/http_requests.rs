//! Arbitrary bytes through the relay's request counter: it never panics,
//! splitting never changes its answer, and generated pipelines of
//! well-formed requests are counted exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portd_testkit::http_requests(data));
