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
