//! The one place atomics and locks come from.
//!
//! Under `--cfg portd_loom` every atomic, mutex and condition variable is
//! loom's, so the loom models in `tests/` explore the real algorithms;
//! otherwise they are std's. Nothing else in the crate imports `std::sync`
//! directly; what is shared only with real OS threads, never inside a
//! model, takes std's atomics from [`os`] so that loom's are never used
//! outside a model.

#[cfg(portd_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(portd_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(portd_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(portd_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// std's atomics under every cfg: for values shared with real OS threads
/// only (e.g. a batch of probes), never touched inside a loom model.
pub(crate) mod os {
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
}

/// A number no other call in this process returns (never 0): it names a
/// value (e.g. a bitmap in thread-local hints). Always std's atomic, also
/// under loom: the identity is not part of any model, only its uniqueness.
pub(crate) fn unique_id() -> u64 {
    static NEXT: os::AtomicU64 = os::AtomicU64::new(1);
    // Relaxed: uniqueness comes from the read-modify-write itself; nothing
    // else is published through this counter.
    NEXT.fetch_add(1, os::Ordering::Relaxed)
}
