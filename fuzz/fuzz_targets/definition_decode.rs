//! Arbitrary bytes as a managed server's stored definition: decoding never panics or
//! aborts, allocates no more than a small multiple of the input, and what
//! decodes re-encodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

use portd_testkit::ServerRecord;
use portd_testkit::alloc_meter::{self, Meter};

#[global_allocator]
static METER: Meter = Meter;

fuzz_target!(|data: &[u8]| alloc_meter::check_server_record(ServerRecord::Definition, data));
