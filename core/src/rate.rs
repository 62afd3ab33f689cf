//! [`RateWindow`]: events per minute, counted lock-free by many threads.

use crate::sync::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const SLOTS: u64 = 60;

/// Counts events over the last 60 seconds: one slot per second of a
/// 60-slot ring, each an atomic holding the second it counts (plus one,
/// so that 0 is an empty slot) in its high bits and the count (capped at
/// 2²⁴ − 1) in its low bits. A count for a new second replaces what the
/// slot held for the second 60 earlier, in the same read-modify-write, so
/// no count is lost to a concurrent one of the same second. The caller
/// gives the time, in whole seconds since an epoch of its own.
#[derive(Debug)]
pub struct RateWindow {
    slots: [AtomicU64; SLOTS as usize],
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow { slots: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl RateWindow {
    /// An empty window.
    pub fn new() -> RateWindow {
        RateWindow::default()
    }

    /// Counts `n` events in second `now`.
    pub fn add(&self, now: u64, n: u64) {
        if n == 0 {
            return;
        }
        let slot = &self.slots[(now % SLOTS) as usize];
        let stamp = (now + 1) << COUNT_BITS;
        // Relaxed: each slot is one value of its own; readers want a
        // recent sum, not an ordering with anything else.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            if v & !COUNT_MASK == stamp {
                Some(stamp | ((v & COUNT_MASK) + n).min(COUNT_MASK))
            } else {
                Some(stamp | n.min(COUNT_MASK))
            }
        });
    }

    /// The events of the 60 seconds up to second `now` (included).
    pub fn per_minute(&self, now: u64) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|&v| v != 0 && (v >> COUNT_BITS) - 1 + SLOTS > now)
            .map(|v| v & COUNT_MASK)
            .sum()
    }
}

#[cfg(all(test, not(portd_loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_sixty_seconds_only() {
        let w = RateWindow::new();
        w.add(0, 2);
        w.add(0, 3);
        w.add(59, 1);
        assert_eq!(w.per_minute(59), 6);
        assert_eq!(w.per_minute(60), 1, "second 0 has left the window");
        w.add(60, 4); // the slot of second 0, reused
        assert_eq!(w.per_minute(60), 5);
        assert_eq!(w.per_minute(200), 0);
    }
}
