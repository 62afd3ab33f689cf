//! loom models of the atomic bitmap: run with
//! `RUSTFLAGS="--cfg portd_loom" cargo test -p portd-core --test loom --release`.
#![cfg(portd_loom)]

use loom::sync::Arc;
use loom::thread;
use portd_core::AtomicBitmap;

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
