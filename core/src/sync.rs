//! The one place atomics come from.
//!
//! Under `--cfg portd_loom` every atomic is loom's, so the loom models in
//! `tests/loom.rs` explore the real algorithms; otherwise they are std's.
//! Nothing else in the crate imports `std::sync::atomic` directly.

#[cfg(portd_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(portd_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
