//! Arbitrary bytes as a stored record: decoding must never panic or abort.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = portd_store::fuzzing::decode_record("myapp", data);
});
