//! loom models of the atomic bitmap: run with
//! `RUSTFLAGS="--cfg portd_loom" cargo test -p portd-core --test loom --release`.
#![cfg(portd_loom)]

use loom::sync::Arc;
use loom::thread;
use portd_core::{AtomicBitmap, RateWindow};

/// Two threads claiming from a 2-bit map get distinct bits, and both get one.
#[test]
fn claims_are_distinct() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(2));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let bm = bm.clone();
                thread::spawn(move || bm.claim_next())
            })
            .collect();
        let got: Vec<_> = ts.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(got[0].is_some() && got[1].is_some());
        assert_ne!(got[0], got[1]);
        assert_eq!(bm.claim_next(), None, "a full bitmap reports full");
    });
}

/// Three threads race for one bit: exactly one wins.
#[test]
fn one_winner_per_bit() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(1));
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let bm = bm.clone();
                thread::spawn(move || bm.claim_from(0).is_some())
            })
            .collect();
        let wins = ts.into_iter().map(|t| t.join().unwrap()).filter(|w| *w).count();
        assert_eq!(wins, 1);
    });
}

/// A bit released by one thread becomes claimable by another; a claimer
/// never gets a bit that is held.
#[test]
fn released_bit_is_claimable() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(1));
        assert!(bm.claim(0));
        let releaser = {
            let bm = bm.clone();
            thread::spawn(move || assert!(bm.release(0)))
        };
        let claimer = {
            let bm = bm.clone();
            thread::spawn(move || bm.claim_from(0))
        };
        releaser.join().unwrap();
        let got = claimer.join().unwrap();
        // Either the claimer ran before the release (nothing free) or after it.
        match got {
            Some(0) => assert!(bm.is_set(0)),
            None => assert!(bm.claim(0), "released bit must be claimable"),
            Some(b) => panic!("claimed nonexistent bit {b}"),
        }
    });
}

/// Words boundary: 65 bits, two threads, the last bit is reachable and
/// never handed out twice.
#[test]
fn across_words() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(65));
        for b in 0..63 {
            bm.claim(b);
        }
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let bm = bm.clone();
                thread::spawn(move || bm.claim_from(63))
            })
            .collect();
        let mut got: Vec<_> = ts.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![63, 64]);
    });
}

/// Three threads on a 3-bit map through the shared cursor: all three get
/// a bit, all distinct, and the map then reports full.
#[test]
fn three_claimers_through_the_cursor() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(3));
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let bm = bm.clone();
                thread::spawn(move || bm.claim_next())
            })
            .collect();
        let mut got: Vec<_> = ts.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(bm.claim_next(), None);
        assert_eq!(bm.count_set(), 3);
    });
}

/// A nearly full map: two threads race for its one clear bit; exactly one
/// gets it, the other is told "full" and never handed a set bit.
#[test]
fn a_full_map_never_claims_falsely() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(3));
        assert!(bm.claim(0) && bm.claim(2));
        let ts: Vec<_> = (0..2)
            .map(|i| {
                let bm = bm.clone();
                thread::spawn(move || bm.claim_from(i * 2))
            })
            .collect();
        let got: Vec<_> = ts.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<_> = got.iter().flatten().collect();
        assert_eq!(won, [&1], "{got:?}");
        assert_eq!(bm.count_set(), 3);
    });
}

/// What a releaser wrote before releasing a bit is visible to the thread
/// that claims it next (the claim's Acquire pairs with the release's
/// Release). loom reports a data race on the cell if it is not.
#[test]
fn a_claim_sees_the_releasers_writes() {
    use loom::cell::UnsafeCell;
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(1));
        let slot = Arc::new(UnsafeCell::new(0u32));
        assert!(bm.claim(0));
        let releaser = {
            let (bm, slot) = (bm.clone(), slot.clone());
            thread::spawn(move || {
                // SAFETY: this thread holds bit 0, which guards the slot.
                slot.with_mut(|p| unsafe { *p = 7 });
                assert!(bm.release(0));
            })
        };
        let claimer = {
            let (bm, slot) = (bm.clone(), slot.clone());
            thread::spawn(move || {
                if bm.claim_from(0) == Some(0) {
                    // SAFETY: bit 0 is ours now; the releaser is done with it.
                    let v = slot.with(|p| unsafe { *p });
                    assert_eq!(v, 7);
                }
            })
        };
        releaser.join().unwrap();
        claimer.join().unwrap();
    });
}

/// On a map long enough for stripes (2048 bits, two stripes of 1024), two
/// threads' first claims start in different stripes: whatever the
/// interleaving, one gets the cursor's bit and the other the bit a stripe
/// away, so they never fight over one word.
#[test]
fn first_claims_of_two_threads_land_in_different_stripes() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(2048));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let bm = bm.clone();
                thread::spawn(move || bm.claim_next())
            })
            .collect();
        let mut got: Vec<_> = ts.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![0, 1024]);
        assert_eq!(bm.count_set(), 2);
    });
}

/// Two threads claim twice each on a 3-bit map, the second claim from
/// their thread-local position: three claims win distinct bits, the fourth
/// is told "full", and no bit is handed out twice.
#[test]
fn claims_from_thread_positions_stay_distinct() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(3));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let bm = bm.clone();
                thread::spawn(move || [bm.claim_next(), bm.claim_next()])
            })
            .collect();
        let got: Vec<_> = ts.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let mut won: Vec<usize> = got.iter().flatten().copied().collect();
        won.sort();
        assert_eq!(won, vec![0, 1, 2], "{got:?}");
        assert_eq!(bm.count_set(), 3);
    });
}

/// A thread whose position has moved past a bit still finds it when it is
/// released: its search wraps around. Two threads on a 2-bit map, one
/// releasing and claiming again: both end up holding a bit, distinct.
#[test]
fn a_search_wraps_to_a_bit_released_behind_it() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(2));
        let cycler = {
            let bm = bm.clone();
            thread::spawn(move || {
                let first = bm.claim_next().expect("two bits for two threads");
                assert!(bm.release(first));
                bm.claim_next()
            })
        };
        let holder = {
            let bm = bm.clone();
            thread::spawn(move || bm.claim_next())
        };
        let (a, b) = (cycler.join().unwrap(), holder.join().unwrap());
        let (a, b) = (a.expect("cycler holds a bit"), b.expect("holder holds a bit"));
        assert_ne!(a, b);
        assert_eq!(bm.count_set(), 2);
    });
}

/// `set_cursor` racing with claims (a store reseeding a map while threads
/// claim) never makes a claim return a bit twice or a set bit.
#[test]
fn set_cursor_racing_claims_stays_correct() {
    loom::model(|| {
        let bm = Arc::new(AtomicBitmap::new(3));
        let claimer = {
            let bm = bm.clone();
            thread::spawn(move || [bm.claim_next(), bm.claim_next()])
        };
        let seeder = {
            let bm = bm.clone();
            thread::spawn(move || {
                bm.set_cursor(2);
                bm.claim_next()
            })
        };
        let mut won: Vec<usize> = claimer.join().unwrap().into_iter().flatten().collect();
        won.extend(seeder.join().unwrap());
        won.sort();
        assert_eq!(won, vec![0, 1, 2]);
        assert_eq!(bm.claim_next(), None);
    });
}

/// A thread that loses a race for a word moves its next search a stripe
/// away instead of following the winner: on a 2048-bit map, one thread
/// claims on from bit 0 while another takes bit 1 directly. A failed
/// exchange on word 0 (the other claim landed between the load and the
/// exchange) sends the next claim a stripe (1024 bits) past the bit won;
/// every other interleaving claims on in order.
#[test]
fn losing_a_race_moves_the_search_a_stripe_away() {
    // Outside the model: which outcomes the interleavings produced.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let record = seen.clone();
    loom::model(move || {
        let bm = Arc::new(AtomicBitmap::new(2048));
        let claimer = {
            let bm = bm.clone();
            thread::spawn(move || [bm.claim_next(), bm.claim_next(), bm.claim_next()])
        };
        let other = {
            let bm = bm.clone();
            thread::spawn(move || bm.claim(1))
        };
        let got = claimer.join().unwrap().map(Option::unwrap);
        let other_won = other.join().unwrap();
        match got {
            [0, 1, 2] => assert!(!other_won),
            // In order; lost the race for bit 1; lost a race for bit 0.
            [0, 2, 3] | [0, 2, 1026] | [0, 1024, 1025] => assert!(other_won),
            _ => panic!("unexpected claims {got:?}"),
        }
        assert_eq!(bm.count_set(), 3 + usize::from(other_won));
        record.lock().unwrap().insert(got);
    });
    let seen: Vec<_> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(seen, [[0, 1, 2], [0, 2, 3], [0, 2, 1026], [0, 1024, 1025]]);
}

/// Two threads counting in the same second lose nothing; a third counting
/// 60 seconds later replaces that second's count in one step: a reader
/// sees the old second's whole count or the new one, never a mix.
#[test]
fn rate_window_counts_race_free() {
    loom::model(|| {
        let w = Arc::new(RateWindow::new());
        let ts: Vec<_> = [(5, 1), (5, 2)]
            .into_iter()
            .map(|(s, n)| {
                let w = w.clone();
                thread::spawn(move || w.add(s, n))
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(w.per_minute(5), 3);
        let later = {
            let w = w.clone();
            thread::spawn(move || w.add(65, 4))
        };
        let seen = w.per_minute(64);
        assert!(seen == 3 || seen == 0, "{seen}");
        later.join().unwrap();
        assert_eq!(w.per_minute(65), 4);
    });
}
