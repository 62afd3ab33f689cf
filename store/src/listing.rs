//! What the registry reports: entries with their state, `cleanup`'s and
//! `status`'s figures.

use crate::record::Entry;
use crate::registry::now_ms;
use portd_core::{Liveness, PortRange};
use std::time::Duration;

/// Whether an entry's lease is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its owner is running.
    Active,
    /// No owner, or the owner is gone: the port is kept for the project.
    Idle,
    /// The owner could not be checked (treated as active).
    Unknown,
}

impl State {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Idle => "idle",
            State::Unknown => "unknown",
        }
    }

    /// The state of `e` now.
    pub fn of(e: &Entry) -> State {
        match e.owner.map(|o| o.liveness()) {
            None | Some(Liveness::Dead) => State::Idle,
            Some(Liveness::Alive) => State::Active,
            Some(Liveness::Unknown) => State::Unknown,
        }
    }
}

/// An entry with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The entry.
    pub entry: Entry,
    /// Its state when listed.
    pub state: State,
}

/// What `cleanup` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Entries whose dead owner was cleared (they keep their port).
    pub reclaimed: Vec<String>,
    /// Idle entries dropped for exceeding `idle_ttl`.
    pub expired: Vec<String>,
}

/// Per-range figures for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeStatus {
    /// The range.
    pub range: PortRange,
    /// Ports that may be handed out (not excluded).
    pub usable: usize,
    /// Entries with an active owner.
    pub active: usize,
    /// Idle entries.
    pub idle: usize,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// One row per configured range.
    pub ranges: Vec<RangeStatus>,
    /// Entries outside every configured range (after a configuration change).
    pub outside: usize,
    /// Size of the registry file in bytes.
    pub file_bytes: u64,
}

/// How long ago `ms` was, for display.
pub fn age(ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(ms))
}
