//! Arbitrary project names: validation never panics and accepts exactly
//! the documented alphabet, the same way at every entry point.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portd_testkit::project_name(data));
