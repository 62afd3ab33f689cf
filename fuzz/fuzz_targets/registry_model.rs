//! Arbitrary sequences of get, acquire (live or dead owner), release,
//! release of idle entries, cleanup, batched gets and foreign servers
//! binding ports, against the real registry and a plain model, compared
//! after every step (see `portd_testkit::registry`).
//!
//! Each input gets a fresh registry under `$TMPDIR`, removed after it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("portd-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    portd_testkit::registry(&dir, data);
    let _ = std::fs::remove_dir_all(&dir);
});
