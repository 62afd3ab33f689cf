//! Arbitrary text as a config file: parsing never panics, accepts only a
//! valid configuration, and refuses with a one-line error naming the line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portd_testkit::config(data));
