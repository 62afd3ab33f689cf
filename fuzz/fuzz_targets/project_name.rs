//! Arbitrary project names: validation never panics and accepts only the
//! documented alphabet.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data)
        && portd_core::validate_name(name).is_ok()
    {
        assert!(name.len() <= 128 && !name.is_empty());
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b)));
        assert!(name.as_bytes()[0].is_ascii_alphanumeric());
    }
});
