//! The one place atomics and locks come from.
//!
//! Under `--cfg portd_loom` every atomic, mutex and condition variable is
//! loom's, so the loom models in `tests/loom.rs` explore the real
//! algorithms; otherwise they are std's. Nothing else in the crate imports
//! `std::sync` directly.

#[cfg(portd_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(portd_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(portd_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(portd_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
