//! loom models of the group-commit handoff as the registry uses it (the
//! registry's lead: one batch, then return; with a zero linger, as loom's
//! timed wait never times out, so the linger itself is not modelled): each
//! caller claims a candidate bit in a shared bitmap lock-free, "probes" it,
//! submits it through the real [`Handoff`], and a leader validates every
//! candidate against the index (the stand-in for the `ports` table) and
//! commits it or rejects it; a rejected caller claims again. Run with
//! `RUSTFLAGS="--cfg portd_loom" cargo test -p portd-core --test loom_handoff --release`.
#![cfg(portd_loom)]

use loom::sync::{Arc, Mutex};
use loom::thread;
use portd_core::{AtomicBitmap, Handoff, Leader, Panicked};
use std::time::Duration;

/// A request whose leader panicked (never, in these models).
#[derive(Debug, Clone)]
struct Lost;

impl From<Panicked> for Lost {
    fn from(_: Panicked) -> Lost {
        Lost
    }
}

/// The shared state of one model: the bitmap callers claim in, and the
/// committed index only leaders touch.
struct World {
    bits: AtomicBitmap,
    index: Mutex<Vec<bool>>,
    handoff: Handoff<usize, Option<usize>, Lost>,
    /// Bits whose probe says "busy" (bound by some process).
    busy: Vec<usize>,
}

impl World {
    /// `held`: bits committed by "another process" that this mirror has not
    /// synced yet (clear in `bits`, set in `index`).
    fn new(len: usize, held: &[usize], busy: &[usize]) -> Arc<World> {
        let mut index = vec![false; len];
        for &h in held {
            index[h] = true;
        }
        Arc::new(World {
            bits: AtomicBitmap::new(len),
            index: Mutex::new(index),
            handoff: Handoff::new(Duration::ZERO),
            busy: busy.to_vec(),
        })
    }

    /// The leader's side, shaped as the registry's `lead`: one batch,
    /// each candidate validated against the index and committed or
    /// rejected (its bit stays set when the index holds it, as the
    /// registry's mirror keeps a committed port's bit), answered; then the
    /// leader returns, and a queued caller (if any) leads next.
    fn lead(&self, leader: &mut Leader<'_, usize, Option<usize>, Lost>) -> Result<(), Lost> {
        let batch = leader.take();
        let mut index = self.index.lock().unwrap();
        let answers: Vec<_> = batch
            .into_iter()
            .map(|(ticket, bit)| {
                if index[bit] {
                    (ticket, Ok(None))
                } else {
                    index[bit] = true;
                    (ticket, Ok(Some(bit)))
                }
            })
            .collect();
        drop(index);
        leader.answer(answers);
        // The registry parks its session here when this is true; either
        // way this leader is done.
        let _ = leader.has_pending();
        Ok(())
    }

    /// The caller's side: claim, probe, submit; a rejected candidate is
    /// claimed again. A busy port stays claimed until the caller is done
    /// (so it is not tried twice), then is released. `None`: the bitmap is
    /// full.
    fn allocate(&self) -> Option<usize> {
        let mut tried = Vec::new();
        let got = loop {
            let Some(bit) = self.bits.claim_next() else { break None };
            if self.busy.contains(&bit) {
                tried.push(bit);
                continue;
            }
            match self.handoff.submit(bit, |leader| self.lead(leader)) {
                Ok(Some(b)) => break Some(b),
                Ok(None) => continue,
                Err(Lost) => unreachable!("the model's leader never fails"),
            }
        };
        for bit in tried {
            self.bits.release(bit);
        }
        got
    }
}

fn run(threads: usize, world: Arc<World>) -> Vec<Option<usize>> {
    let ts: Vec<_> = (0..threads)
        .map(|_| {
            let w = world.clone();
            thread::spawn(move || w.allocate())
        })
        .collect();
    ts.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Every committed bit is set in the bitmap (no committed port can be
/// claimed again), and each caller got a distinct, committed bit.
fn check(world: &World, got: &[Option<usize>]) {
    let index = world.index.lock().unwrap();
    let mut seen = Vec::new();
    for b in got.iter().flatten() {
        assert!(index[*b], "bit {b} answered but not committed");
        assert!(!seen.contains(b), "bit {b} handed out twice");
        seen.push(*b);
    }
    for (bit, held) in index.iter().enumerate() {
        if *held {
            assert!(world.bits.is_set(bit), "committed bit {bit} is claimable");
        }
    }
}

/// Two callers, one free port each: both commit, distinct.
#[test]
fn two_callers_commit_distinct_ports() {
    loom::model(|| {
        let w = World::new(2, &[], &[]);
        let got = run(2, w.clone());
        assert!(got.iter().all(Option::is_some));
        check(&w, &got);
    });
}

/// Two callers; one port was taken by another process since the mirror was
/// synced: the caller that claims it is rejected, claims again, and both
/// still end with distinct committed ports.
#[test]
fn a_stale_candidate_is_rejected_and_the_caller_claims_again() {
    loom::model(|| {
        let w = World::new(3, &[0], &[]);
        let got = run(2, w.clone());
        assert!(got.iter().all(|g| g.is_some_and(|b| b != 0)));
        check(&w, &got);
    });
}

/// Two callers; a busy port is released after its probe and never
/// committed; the ports run out for one caller, which then gets none.
#[test]
fn a_busy_candidate_is_released_and_a_full_map_answers_none() {
    loom::model(|| {
        let w = World::new(2, &[], &[1]);
        let got = run(2, w.clone());
        assert_eq!(got.iter().flatten().count(), 1, "one free port, one winner: {got:?}");
        assert_eq!(got.iter().flatten().next(), Some(&0));
        check(&w, &got);
        assert!(!w.bits.is_set(1), "the busy port's bit was released");
    });
}

/// Three callers, one stale port: three distinct committed ports. Three
/// threads through a mutex and two condition variables are explored with
/// at most two preemptions (three do not finish in minutes).
#[test]
fn three_callers_with_a_stale_candidate() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let w = World::new(4, &[1], &[]);
        let got = run(3, w.clone());
        assert!(got.iter().all(|g| g.is_some_and(|b| b != 1)));
        check(&w, &got);
    });
}
