//! A fixed-size, lock-free bitmap with per-thread search positions.
//!
//! One bitmap mirrors one port range inside a process: a set bit means "taken"
//! (held by an entry, excluded, found busy, or claimed by a thread that is
//! probing it). Claims are a single `fetch_or` (or a `compare_exchange` of the
//! word), so two threads never both win the same bit; a release is a single
//! `fetch_and`.
//!
//! Where a search starts carries no correctness, only speed:
//! [`AtomicBitmap::claim_next`] keeps each thread's next position in a
//! thread-local hint, and gives every thread that starts searching a bitmap
//! its own *stripe*, at least 1024 bits (two cache lines of words) away from
//! the others' when the map is that long, so that two threads claiming at
//! once write different cache lines; a thread that loses a race for a word
//! moves its next search to another stripe rather than follow the winner
//! word by word. The shared cursor (the position a fresh process resumes
//! from) is written only when a thread's search moves on to another stripe
//! or wraps around, not on every claim.
//!
//! This module knows nothing of ports or storage; see `Range` for the mapping.

use crate::sync::{AtomicU64, AtomicUsize, Ordering, unique_id};
use crossbeam_utils::CachePadded;
use std::cell::Cell;

const WORD_BITS: usize = 64;

/// Distance between the starting points of two threads, in bits: 16 words
/// of 8 bytes = 128 bytes, two cache lines, because x86 prefetches lines in
/// adjacent pairs (the reason `CachePadded` is 128 bytes there too).
const STRIPE_BITS: usize = 16 * WORD_BITS;

/// How many bitmaps one thread remembers its position in (a thread that
/// alternates between ranges keeps its place in each).
const HINTS: usize = 4;

/// One remembered position: (bitmap key, next bit to try). Key 0 is unused.
type Hint = (u64, usize);

/// A thread's remembered positions, most recently used first.
type Hints = [Cell<Hint>; HINTS];

#[cfg(not(portd_loom))]
std::thread_local! {
    static THREAD_HINTS: Hints = const { [const { Cell::new((0, 0)) }; HINTS] };
}
// loom runs its threads on one OS thread: its own thread-locals keep the
// model's threads apart.
#[cfg(portd_loom)]
loom::thread_local! {
    static THREAD_HINTS: Hints = [const { Cell::new((0, 0)) }; HINTS];
}

/// Moves the position remembered for `key` to the front and returns it,
/// if this thread has one.
fn take_hint(hs: &Hints, key: u64) -> Option<usize> {
    let first = hs[0].get();
    if first.0 == key {
        return Some(first.1);
    }
    let at = (1..HINTS).find(|&i| hs[i].get().0 == key)?;
    let found = hs[at].get();
    for i in (1..=at).rev() {
        hs[i].set(hs[i - 1].get());
    }
    hs[0].set(found);
    Some(found.1)
}

/// Remembers a first position for `key` at the front, forgetting the
/// least recently used one.
fn push_hint(hs: &Hints, key: u64, next: usize) {
    for i in (1..HINTS).rev() {
        hs[i].set(hs[i - 1].get());
    }
    hs[0].set((key, next));
}

/// The rarely written part of a bitmap, on its own cache lines so that its
/// writes never invalidate the line holding `words` and `len`, which every
/// claim reads.
#[derive(Debug)]
struct Shared {
    /// Where a fresh search starts; see [`AtomicBitmap::cursor`].
    cursor: AtomicUsize,
    /// How many searches started in a new stripe since the last
    /// `set_cursor` (a thread's first, or after losing a race): the n-th
    /// gets the n-th stripe.
    joined: AtomicUsize,
}

/// A lock-free set of `len` bits.
#[derive(Debug)]
pub struct AtomicBitmap {
    words: Box<[AtomicU64]>,
    len: usize,
    /// Names this bitmap (and this cursor epoch) in threads' hints; unique in
    /// the process, replaced by `set_cursor` so that every hint goes stale.
    key: AtomicU64,
    shared: CachePadded<Shared>,
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
        AtomicBitmap {
            words: words.into_boxed_slice(),
            len,
            key: AtomicU64::new(unique_id()),
            shared: CachePadded::new(Shared {
                cursor: AtomicUsize::new(0),
                joined: AtomicUsize::new(0),
            }),
        }
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
        self.search(start).map(|(bit, _)| bit)
    }

    /// `claim_from`, also telling whether another thread changed a word
    /// this search was about to claim in (it then lost a race for it).
    fn search(&self, start: usize) -> Option<(usize, bool)> {
        let mut raced = false;
        if self.len == 0 {
            return None;
        }
        let nwords = self.words.len();
        // No division on the hot path: callers mostly pass a bit in range.
        let start = if start < self.len { start } else { start % self.len };
        let low = start % WORD_BITS;
        let mut w = start / WORD_BITS;
        // Visit the first word twice: once from `start` upwards, and at the
        // end of the wrap for the bits below `start`.
        for step in 0..=nwords {
            let skip = if step == 0 {
                !0u64 << low
            } else if step < nwords {
                !0u64
            } else if low == 0 {
                break;
            } else {
                !(!0u64 << low)
            };
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
                    Ok(_) => return Some((w * WORD_BITS + mask.trailing_zeros() as usize, raced)),
                    Err(now) => {
                        // A weak exchange may also fail spuriously, leaving
                        // the word as it was: that is no race.
                        raced |= now != cur;
                        cur = now;
                    }
                }
            }
            w += 1;
            if w == nwords {
                w = 0;
            }
        }
        None
    }

    /// Claims a clear bit, searching from where this thread's last
    /// `claim_next` on this bitmap left off; a thread's first search starts
    /// in a stripe of its own (the first thread at the cursor, the next ones
    /// spread over the map, 1024 bits apart at least when it is that long).
    /// Returns `None` only when every bit was seen set during the search.
    ///
    /// One thread alone claims in rotating order: from the cursor upwards, a
    /// just-released bit not reused until its search wraps around.
    pub fn claim_next(&self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        // Relaxed: the key only names the bitmap in thread-local hints; a
        // stale key costs one search from an old position, never a bit.
        let key = self.key.load(Ordering::Relaxed);
        THREAD_HINTS.with(|hs| {
            let start = match take_hint(hs, key) {
                Some(at) => at,
                None => {
                    let at = self.stripe_start();
                    push_hint(hs, key, at);
                    at
                }
            };
            let (bit, raced) = self.search(start)?;
            let next = if raced {
                // Another thread claims in this word too: move this thread's
                // next search a stripe or more away rather than follow it
                // word by word, both writing the same cache line each claim.
                (bit + self.stripe_offset()) % self.len
            } else if bit + 1 == self.len {
                0
            } else {
                bit + 1
            };
            // `take_hint`/`push_hint` left this bitmap's entry at the front.
            hs[0].set((key, next));
            if next / STRIPE_BITS != start / STRIPE_BITS || next < start {
                // Relaxed: a hint for fresh searches; `claim_from` alone decides
                // ownership. Written once per stripe a thread moves through (or
                // wrap), so that two threads draining one map rarely touch this
                // line: written once a word, it cost two threads 12–17% of
                // their claim rate.
                self.shared.cursor.store(next, Ordering::Relaxed);
            }
            Some(bit)
        })
    }

    /// Where a thread that has not searched this bitmap yet starts: the
    /// cursor, moved on by `stripe_offset`.
    fn stripe_start(&self) -> usize {
        // Relaxed: the cursor is a hint, see `claim_next`.
        let cursor = self.shared.cursor.load(Ordering::Relaxed);
        (cursor + self.stripe_offset()) % self.len
    }

    /// A distance in whole stripes, different for each call: the n-th call
    /// since `set_cursor` gets the n-th point of the van der Corput sequence
    /// (0, 1/2, 1/4, 3/4, 1/8, …) of the map's stripes, so that starting
    /// points stay far apart however many threads come. 0 on a map shorter
    /// than two stripes.
    fn stripe_offset(&self) -> usize {
        // Relaxed: the counter only has to hand out distinct numbers, which
        // the atomic read-modify-write guarantees under any ordering.
        let n = self.shared.joined.fetch_add(1, Ordering::Relaxed) as u64;
        let stripes = (self.len / STRIPE_BITS).max(1) as u128;
        let stripe = ((n.reverse_bits() as u128 * stripes) >> 64) as usize;
        stripe * STRIPE_BITS
    }

    /// Sets where the next searches start (e.g. from a persisted position):
    /// every thread's next `claim_next` on this bitmap starts afresh, the
    /// first one at `bit`.
    pub fn set_cursor(&self, bit: usize) {
        if self.len > 0 {
            // Relaxed (all three): hints, see `claim_next`. A thread that
            // sees only some of these stores still claims correctly; it just
            // starts from an older position.
            self.shared.cursor.store(bit % self.len, Ordering::Relaxed);
            self.shared.joined.store(0, Ordering::Relaxed);
            self.key.store(unique_id(), Ordering::Relaxed);
        }
    }

    /// Where scanning got to, for a fresh process to resume from: the
    /// position this thread's next `claim_next` starts at if it has searched
    /// this bitmap since the last `set_cursor`, else the shared cursor
    /// (the position of some thread's search, updated as searches move from
    /// stripe to stripe and wrap around).
    pub fn cursor(&self) -> usize {
        // Relaxed: hints, see `claim_next`.
        let key = self.key.load(Ordering::Relaxed);
        THREAD_HINTS
            .with(|hs| hs.iter().map(Cell::get).find(|h| h.0 == key))
            .map_or_else(|| self.shared.cursor.load(Ordering::Relaxed), |h| h.1)
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

    #[test]
    fn a_second_thread_starts_a_stripe_away() {
        let bm = AtomicBitmap::new(4096);
        assert_eq!(bm.claim_next(), Some(0));
        // The next thread to search starts half the map away (four stripes
        // of 1024 bits: the second starting point is the middle one), and
        // then goes on from where it left off.
        let theirs =
            std::thread::scope(|s| s.spawn(|| [bm.claim_next(), bm.claim_next()]).join().unwrap());
        assert_eq!(theirs, [Some(2048), Some(2049)]);
        // The first thread keeps its own place.
        assert_eq!(bm.claim_next(), Some(1));
    }

    #[test]
    fn the_shared_cursor_moves_a_stripe_at_a_time() {
        let bm = AtomicBitmap::new(2100);
        let shared = || std::thread::scope(|s| s.spawn(|| bm.cursor()).join().unwrap());
        for want in 0..1023 {
            assert_eq!(bm.claim_next(), Some(want));
        }
        // This thread resumes after its last claim; others see the shared
        // cursor, written only when a search moves on to the next stripe.
        assert_eq!(bm.cursor(), 1023);
        assert_eq!(shared(), 0);
        assert_eq!(bm.claim_next(), Some(1023));
        assert_eq!(shared(), 1024);
        assert_eq!(bm.cursor(), 1024);
        // ... or wraps around (here from the last, short stripe).
        bm.set_cursor(2090);
        for want in 2090..2099 {
            assert_eq!(bm.claim_next(), Some(want));
        }
        assert_eq!(shared(), 2090);
        assert_eq!(bm.claim_next(), Some(2099));
        assert_eq!(shared(), 0);
    }

    #[test]
    fn set_cursor_restarts_every_thread() {
        let bm = AtomicBitmap::new(4096);
        assert_eq!(bm.claim_next(), Some(0));
        std::thread::scope(|s| s.spawn(|| bm.claim_next()).join().unwrap());
        bm.set_cursor(100);
        assert_eq!(bm.cursor(), 100);
        assert_eq!(bm.claim_next(), Some(100));
        assert_eq!(bm.cursor(), 101);
        let theirs = std::thread::scope(|s| s.spawn(|| bm.claim_next()).join().unwrap());
        assert_eq!(theirs, Some(100 + 2048));
    }

    #[test]
    fn a_thread_keeps_its_place_in_several_bitmaps() {
        let maps: Vec<_> = (0..4).map(|_| AtomicBitmap::new(10)).collect();
        for round in 0..3 {
            for bm in &maps {
                assert_eq!(bm.claim_next(), Some(round));
                // Released at once: only the remembered place moves on.
                assert!(bm.release(round));
            }
        }
        // A fifth bitmap pushes out the place in the first, whose next search
        // starts from the shared cursor again (still 0 within the first stripe).
        let fifth = AtomicBitmap::new(10);
        assert_eq!(fifth.claim_next(), Some(0));
        assert_eq!(maps[0].claim_next(), Some(0));
        assert_eq!(maps[3].claim_next(), Some(3));
    }

    #[test]
    fn two_threads_claim_every_bit_exactly_once() {
        for len in [1, 63, 64, 1000, 1025, 5000, 1 << 16] {
            let bm = AtomicBitmap::new(len);
            let got: Vec<Vec<usize>> = std::thread::scope(|s| {
                let ts: Vec<_> = (0..2)
                    .map(|_| s.spawn(|| std::iter::from_fn(|| bm.claim_next()).collect::<Vec<_>>()))
                    .collect();
                ts.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let mut all: Vec<usize> = got.concat();
            all.sort_unstable();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "len {len}");
            assert_eq!(bm.count_set(), len);
            assert_eq!(bm.claim_next(), None);
        }
    }

    #[test]
    fn claim_release_cycles_never_hold_a_bit_twice() {
        // Few bits and many cycles, so the two threads keep meeting.
        let bm = AtomicBitmap::new(70);
        let holders: Vec<AtomicUsize> = (0..70).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut held = Vec::new();
                    for i in 0..20_000usize {
                        if let Some(b) = bm.claim_next() {
                            // Relaxed: a counter whose value is checked only by
                            // the thread holding the bit.
                            assert_eq!(holders[b].fetch_add(1, Ordering::Relaxed), 0, "bit {b}");
                            held.push(b);
                        }
                        if !held.is_empty() && (i % 3 == 0 || held.len() > 20) {
                            let b = held.swap_remove(held.len() / 2);
                            assert_eq!(holders[b].fetch_sub(1, Ordering::Relaxed), 1);
                            assert!(bm.release(b));
                        }
                    }
                    for b in held {
                        holders[b].fetch_sub(1, Ordering::Relaxed);
                        assert!(bm.release(b));
                    }
                });
            }
        });
        assert_eq!(bm.count_set(), 0);
    }
}
