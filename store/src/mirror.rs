//! The in-memory mirror of the persisted per-range bitmaps, kept by a
//! long-lived [`crate::Registry`] handle: one [`AtomicBitmap`] per
//! configured range, shared by all the handle's threads.
//!
//! A bit is set when its port is held by an entry as of the registry
//! generation the mirror last agreed with, excluded, or *claimed* by a
//! caller that is probing it or has handed it to the group-commit leader.
//! Callers claim lock-free ([`Mirror::claim_next`], [`Mirror::claim`]); a
//! [`Claim`] that is dropped without being kept clears its bit again, unless
//! the port turned out to be held.
//!
//! Only the leader, inside a write transaction under `registry.lock`,
//! brings the mirror in line with the stored rows ([`Mirror::sync`]): when
//! another process committed since (the stored generation differs), and
//! after each commit of its own. It applies the difference between the
//! rows it last saw (`committed`) and the new ones, so claims under way are
//! never lost. The mirror is a source of candidates only: every candidate
//! is checked against the `ports` index in the transaction that commits it.

use crate::bitmaps::Row;
use parking_lot::Mutex;
use portd_core::{AtomicBitmap, Exclusions, PortRange, Ranges};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One range's bits.
#[derive(Debug)]
struct Bits {
    range: PortRange,
    bits: AtomicBitmap,
    /// Excluded ports: set once, never cleared.
    excluded: Vec<u64>,
    /// The stored row as of the mirror's generation. Locked by the leader
    /// while it syncs, and by a caller clearing a bit, so that a clear never
    /// undoes a hold the leader just applied.
    committed: Mutex<Vec<u64>>,
}

/// The mirror of one registry handle.
#[derive(Debug)]
pub(crate) struct Mirror {
    ranges: Vec<Bits>,
    /// The registry generation the bits agree with; 0 until first synced
    /// (stored generations are never 0).
    generation: AtomicU64,
}

impl Mirror {
    /// A mirror of `ranges` with the excluded ports set and nothing else
    /// known yet.
    pub(crate) fn new(ranges: &Ranges, exclusions: &Exclusions) -> Mirror {
        let ranges = ranges
            .iter()
            .map(|r| {
                let bits = AtomicBitmap::new(r.len());
                let mut excluded = vec![0u64; r.len().div_ceil(64)];
                exclusions.each_between(r.start, r.end, |p| {
                    let i = usize::from(p - r.start);
                    excluded[i / 64] |= 1 << (i % 64);
                    bits.claim(i);
                });
                let committed = Mutex::new(vec![0u64; excluded.len()]);
                Bits { range: r.clone(), bits, excluded, committed }
            })
            .collect();
        Mirror { ranges, generation: AtomicU64::new(0) }
    }

    /// The generation the mirror agrees with (0: none yet).
    pub(crate) fn generation(&self) -> u64 {
        // Acquire: pairs with the Release in `sync`, so a caller that sees
        // a generation also sees the bits applied for it.
        self.generation.load(Ordering::Acquire)
    }

    /// Brings the bits in line with `rows`, the stored rows at
    /// `generation`. Called by the leader only, under `registry.lock`.
    pub(crate) fn sync(&self, rows: &[(String, Row)], generation: u64) {
        for b in &self.ranges {
            let Some((_, row)) = rows.iter().find(|(n, row)| {
                *n == b.range.name && row.start == b.range.start && row.end == b.range.end
            }) else {
                continue;
            };
            let mut committed = b.committed.lock();
            for (w, (old, new)) in committed.iter_mut().zip(&row.words).enumerate() {
                let held = *new & !*old;
                let freed = *old & !new & !b.excluded[w];
                for bit in Ones(held) {
                    b.bits.claim(w * 64 + bit);
                }
                for bit in Ones(freed) {
                    b.bits.release(w * 64 + bit);
                }
                *old = *new;
            }
        }
        // Release: see `generation`.
        self.generation.store(generation, Ordering::Release);
    }

    /// The range at `index`.
    pub(crate) fn range(&self, index: usize) -> &PortRange {
        &self.ranges[index].range
    }

    /// Claims `port` in range `index`, if its bit is clear.
    pub(crate) fn claim(self: &Arc<Self>, index: usize, port: u16) -> Option<Claim> {
        let b = &self.ranges[index];
        let bit = usize::from(port.checked_sub(b.range.start)?);
        (bit < b.bits.len() && b.bits.claim(bit)).then(|| Claim {
            mirror: self.clone(),
            index,
            bit,
            port,
            kept: false,
            scanned: false,
        })
    }

    /// Claims the next clear bit of range `index`, whole words at a time.
    pub(crate) fn claim_next(self: &Arc<Self>, index: usize) -> Option<Claim> {
        let b = &self.ranges[index];
        let bit = b.bits.claim_next()?;
        let port = b.range.port_at(bit);
        Some(Claim { mirror: self.clone(), index, bit, port, kept: false, scanned: true })
    }

    /// Sets where the next scan of range `index` starts.
    pub(crate) fn set_cursor(&self, index: usize, bit: usize) {
        self.ranges[index].bits.set_cursor(bit);
    }

    /// Clears a claimed bit, unless the stored rows say its port is held.
    fn unclaim(&self, index: usize, bit: usize) {
        let b = &self.ranges[index];
        let committed = b.committed.lock();
        if committed[bit / 64] & (1 << (bit % 64)) == 0
            && b.excluded[bit / 64] & (1 << (bit % 64)) == 0
        {
            b.bits.release(bit);
        }
    }
}

/// A port whose bit this caller set. Dropped, it clears the bit again (the
/// port was busy, the candidate was not used, or its commit failed); kept,
/// the bit stays, because the port's entry was committed.
#[derive(Debug)]
pub(crate) struct Claim {
    mirror: Arc<Mirror>,
    index: usize,
    bit: usize,
    port: u16,
    kept: bool,
    /// Found by a scan from the cursor (not asked for by port).
    scanned: bool,
}

impl Claim {
    /// The claimed port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The index of its range in the mirror.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Its bit in the range.
    pub(crate) fn bit(&self) -> usize {
        self.bit
    }

    /// Whether a scan from the cursor found it.
    pub(crate) fn scanned(&self) -> bool {
        self.scanned
    }

    /// Keeps the bit set: the port's entry was committed.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }

    /// Keeps the bit set and records the port as held: the index holds it,
    /// though the mirror had its bit clear (a stored row that disagrees
    /// with the index, which `doctor` reports). Until the next sync, the
    /// port is not offered again.
    pub(crate) fn hold(mut self) {
        let b = &self.mirror.ranges[self.index];
        b.committed.lock()[self.bit / 64] |= 1 << (self.bit % 64);
        self.kept = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.kept {
            self.mirror.unclaim(self.index, self.bit);
        }
    }
}

/// The positions of the set bits of a word.
struct Ones(u64);

impl Iterator for Ones {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_range(len: u16) -> (Ranges, PortRange) {
        let r = PortRange::new("t", 30000, 30000 + len - 1, true);
        (Ranges::new(vec![r.clone()]).unwrap(), r)
    }

    fn row(r: &PortRange, held: &[u16]) -> Vec<(String, Row)> {
        let mut words = vec![0u64; r.len().div_ceil(64)];
        for p in held {
            let i = usize::from(p - r.start);
            words[i / 64] |= 1 << (i % 64);
        }
        vec![(r.name.clone(), Row { start: r.start, end: r.end, words })]
    }

    #[test]
    fn sync_applies_holds_and_frees_without_losing_claims() {
        let (ranges, r) = one_range(130);
        let m = Arc::new(Mirror::new(&ranges, &Exclusions::new(vec![(30005, 30005)], vec![])));
        assert_eq!(m.generation(), 0);
        m.sync(&row(&r, &[30000, 30100]), 7);
        assert_eq!(m.generation(), 7);
        // Held and excluded ports cannot be claimed.
        assert!(m.claim(0, 30000).is_none() && m.claim(0, 30005).is_none());
        let c = m.claim(0, 30001).expect("free port");
        // Another process takes 30001 meanwhile, and frees 30100.
        m.sync(&row(&r, &[30000, 30001]), 8);
        assert!(m.claim(0, 30100).is_some(), "a freed port is claimable again");
        // The claim was not used: its port stays held, as the rows say.
        drop(c);
        assert!(m.claim(0, 30001).is_none());
        // A claim dropped on a free port clears it.
        let c = m.claim(0, 30002).unwrap();
        drop(c);
        assert!(m.claim(0, 30002).is_some());
        // A kept claim stays set until the rows free it.
        m.claim(0, 30003).unwrap().keep();
        assert!(m.claim(0, 30003).is_none());
        // An excluded port held by an old entry and then freed stays excluded.
        m.sync(&row(&r, &[30005]), 9);
        m.sync(&row(&r, &[]), 10);
        assert!(m.claim(0, 30005).is_none());
    }

    #[test]
    fn claim_next_skips_held_words_and_reports_full() {
        let (ranges, r) = one_range(128);
        let m = Arc::new(Mirror::new(&ranges, &Exclusions::new(vec![], vec![])));
        let held: Vec<u16> = (30000..30127).collect();
        m.sync(&row(&r, &held), 1);
        let last = m.claim_next(0).expect("one port left");
        assert_eq!(last.port(), 30127);
        assert!(m.claim_next(0).is_none());
    }
}
