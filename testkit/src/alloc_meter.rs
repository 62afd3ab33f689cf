//! A counting global allocator: how many bytes a closure had allocated at
//! once, on the calling thread.
//!
//! libFuzzer's `-malloc_limit_mb` relies on a sanitizer's malloc hooks,
//! which `--sanitizer none` does not have, and `-rss_limit_mb` is sampled
//! once a second; so the record target bounds its allocations with this.
//! A program that checks records installs it as its global allocator
//! (`fuzz/fuzz_targets/record_decode.rs`, `testkit/tests/fuzz_corpus.rs`):
//!
//! ```ignore
//! #[global_allocator]
//! static METER: portd_testkit::alloc_meter::Meter = portd_testkit::alloc_meter::Meter;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting each thread's live bytes.
#[derive(Debug)]
pub struct Meter;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: a thread being torn down has no counters left. Plain
    // const-initialised integers never allocate, so this cannot recurse.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn size(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// implements the `GlobalAlloc` contract; the counting around it neither
// allocates nor touches the memory.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations for `layout` pass on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(size(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(size(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; `new_size` is the
        // caller's, with its obligations.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(size(new_size) - size(layout.size()));
        }
        p
    }
}

/// The most bytes `f` had allocated at once beyond what was live before it
/// (0 unless [`Meter`] is the global allocator).
pub fn peak_bytes(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    usize::try_from(PEAK.with(Cell::get) - base).unwrap_or(0)
}

/// What decoding a record of `len` bytes may allocate: linear in the
/// input, never a length read from it. Its strings are no longer than the
/// input; a command line's arguments take at least one input byte each and
/// cost 24 bytes each in a list that grows by doubling (48 per input byte);
/// plus a little for an error message.
pub fn record_limit(len: usize) -> usize {
    50 * len + 1024
}

/// Decodes `bytes` as a record, checks it, and checks that decoding stayed
/// within [`record_limit`].
pub fn check_record(bytes: &[u8]) {
    let peak = peak_bytes(|| {
        std::hint::black_box(crate::decode_record("myapp", bytes));
    });
    let limit = record_limit(bytes.len());
    assert!(peak <= limit, "decoding {} bytes allocated {peak} (limit {limit})", bytes.len());
    crate::record(bytes);
}

/// Decodes `bytes` as a managed server's record (`which`), checks it, and
/// checks that decoding stayed within [`record_limit`] (its lists cost at
/// most what a command line's do: an environment pair takes two input
/// bytes and 48 bytes of list).
pub fn check_server_record(which: crate::ServerRecord, bytes: &[u8]) {
    let peak = peak_bytes(|| {
        std::hint::black_box(crate::decode_server_record(which, bytes));
    });
    let limit = record_limit(bytes.len());
    assert!(peak <= limit, "decoding {} bytes allocated {peak} (limit {limit})", bytes.len());
    match which {
        crate::ServerRecord::Definition => crate::definition(bytes),
        crate::ServerRecord::State => crate::server_state(bytes),
        crate::ServerRecord::Event => crate::event(bytes),
    }
}
