//! A fixed-size, lock-free bitmap with a rotating cursor.
//!
//! One bitmap mirrors one port range inside a process: a set bit means "taken"
//! (held by an entry, excluded, found busy, or claimed by a thread that is
//! probing it). Claims are a single `fetch_or`, so two threads never both win
//! the same bit; a release is a single `fetch_and`. The cursor only spreads
//! searches out: it carries no correctness, so it is updated with `Relaxed`.
//!
//! This module knows nothing of ports or storage; see `Range` for the mapping.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

const WORD_BITS: usize = 64;

/// A lock-free set of `len` bits.
#[derive(Debug)]
pub struct AtomicBitmap {
    words: Box<[AtomicU64]>,
    len: usize,
    cursor: AtomicUsize,
}

impl AtomicBitmap {
    /// A bitmap of `len` clear bits.
    pub fn new(len: usize) -> Self {
        let nwords = len.div_ceil(WORD_BITS);
        let mut words = Vec::with_capacity(nwords);
        for i in 0..nwords {
            // Bits past `len` in the last word are set once and never cleared,
            // so no search can ever return them.
            let tail = if i + 1 == nwords && !len.is_multiple_of(WORD_BITS) {
                !0u64 << (len % WORD_BITS)
            } else {
                0
            };
            words.push(AtomicU64::new(tail));
        }
        AtomicBitmap { words: words.into_boxed_slice(), len, cursor: AtomicUsize::new(0) }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the bitmap has no bits at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn split(bit: usize) -> (usize, u64) {
        (bit / WORD_BITS, 1u64 << (bit % WORD_BITS))
    }

    /// Claims `bit`; returns `true` if this call changed it from clear to set.
    ///
    /// Panics if `bit >= len`: callers map ports through their range first.
    pub fn claim(&self, bit: usize) -> bool {
        assert!(bit < self.len, "bit {bit} out of {}", self.len);
        let (w, mask) = Self::split(bit);
        // AcqRel: a winner must see everything the previous releaser did with
        // the port (Acquire) and publish its own claim (Release).
        self.words[w].fetch_or(mask, Ordering::AcqRel) & mask == 0
    }

    /// Clears `bit`, making it claimable again. Returns whether it was set.
    pub fn release(&self, bit: usize) -> bool {
        assert!(bit < self.len, "bit {bit} out of {}", self.len);
        let (w, mask) = Self::split(bit);
        // AcqRel: pairs with the Acquire of the next claim of this bit.
        self.words[w].fetch_and(!mask, Ordering::AcqRel) & mask != 0
    }

    /// Whether `bit` is set right now (a snapshot; may change at once).
    pub fn is_set(&self, bit: usize) -> bool {
        assert!(bit < self.len, "bit {bit} out of {}", self.len);
        let (w, mask) = Self::split(bit);
        // Acquire: a caller that sees a bit clear also sees the release's writes.
        self.words[w].load(Ordering::Acquire) & mask != 0
    }

    /// Number of set bits (a snapshot).
    pub fn count_set(&self) -> usize {
        let tail = self.words.len() * WORD_BITS - self.len;
        // Relaxed: a statistic, not a synchronisation point.
        let ones: usize =
            self.words.iter().map(|w| w.load(Ordering::Relaxed).count_ones() as usize).sum();
        ones - tail
    }

    /// Claims the first clear bit at or after `start`, wrapping around once.
    /// Returns `None` only when every bit was seen set during the search.
    pub fn claim_from(&self, start: usize) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let nwords = self.words.len();
        let start = start % self.len;
        let first = start / WORD_BITS;
        // Visit the first word twice: once from `start` upwards, and at the
        // end of the wrap for the bits below `start`.
        for step in 0..=nwords {
            let w = (first + step) % nwords;
            let mut skip = if step == 0 { !0u64 << (start % WORD_BITS) } else { !0u64 };
            if step == nwords {
                skip = !(!0u64 << (start % WORD_BITS));
                if skip == 0 {
                    break;
                }
            }
            // Acquire: pairs with the AcqRel release of a bit we may claim.
            let mut cur = self.words[w].load(Ordering::Acquire);
            loop {
                let free = !cur & skip;
                if free == 0 {
                    break;
                }
                let mask = free & free.wrapping_neg();
                // AcqRel on success as in `claim`; Acquire on failure to
                // re-read the word that changed under us.
                match self.words[w].compare_exchange_weak(
                    cur,
                    cur | mask,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(w * WORD_BITS + mask.trailing_zeros() as usize),
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// Claims a clear bit starting from the shared rotating cursor, and moves
    /// the cursor past it, so that concurrent searchers spread out.
    pub fn claim_next(&self) -> Option<usize> {
        // Relaxed: the cursor is a hint; `claim_from` alone decides ownership.
        let start = self.cursor.load(Ordering::Relaxed);
        let bit = self.claim_from(start)?;
        self.cursor.store((bit + 1) % self.len, Ordering::Relaxed);
        Some(bit)
    }

    /// Sets the cursor (e.g. from a persisted position).
    pub fn set_cursor(&self, bit: usize) {
        if self.len > 0 {
            // Relaxed: a hint, see `claim_next`.
            self.cursor.store(bit % self.len, Ordering::Relaxed);
        }
    }

    /// The cursor's current position.
    pub fn cursor(&self) -> usize {
        // Relaxed: a hint, see `claim_next`.
        self.cursor.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(portd_loom)))]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A tiny deterministic RNG (xorshift64*), so failures replay.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn matches_btreeset_model() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let len = 1 + (rng.next() % 300) as usize;
            let bm = AtomicBitmap::new(len);
            let mut model = BTreeSet::new();
            for _ in 0..2000 {
                let bit = (rng.next() % len as u64) as usize;
                match rng.next() % 4 {
                    0 => assert_eq!(bm.claim(bit), model.insert(bit), "claim {bit}"),
                    1 => assert_eq!(bm.release(bit), model.remove(&bit), "release {bit}"),
                    2 => {
                        let got = bm.claim_from(bit);
                        let want = (bit..len).chain(0..bit).find(|b| !model.contains(b));
                        assert_eq!(got, want, "claim_from {bit} len {len}");
                        if let Some(b) = want {
                            model.insert(b);
                        }
                    }
                    _ => assert_eq!(bm.is_set(bit), model.contains(&bit)),
                }
                assert_eq!(bm.count_set(), model.len());
            }
        }
    }

    #[test]
    fn full_bitmap_reports_full() {
        let bm = AtomicBitmap::new(130);
        for _ in 0..130 {
            assert!(bm.claim_next().is_some());
        }
        assert_eq!(bm.claim_next(), None);
        assert_eq!(bm.count_set(), 130);
        assert!(bm.release(129));
        assert_eq!(bm.claim_from(0), Some(129));
    }

    #[test]
    fn empty_bitmap_has_nothing() {
        let bm = AtomicBitmap::new(0);
        assert!(bm.is_empty());
        assert_eq!(bm.claim_next(), None);
    }

    #[test]
    fn cursor_rotates() {
        let bm = AtomicBitmap::new(10);
        assert_eq!(bm.claim_next(), Some(0));
        assert_eq!(bm.claim_next(), Some(1));
        assert!(bm.release(0));
        // The just-released bit is not reused until the cursor wraps.
        assert_eq!(bm.claim_next(), Some(2));
        bm.set_cursor(9);
        assert_eq!(bm.claim_next(), Some(9));
        assert_eq!(bm.claim_next(), Some(0));
    }

    #[test]
    fn threads_never_share_a_bit() {
        let bm = std::sync::Arc::new(AtomicBitmap::new(4096));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let bm = bm.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(b) = bm.claim_next() {
                        got.push(b);
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<usize> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a bit was claimed twice");
        assert_eq!(n, 4096);
    }
}
