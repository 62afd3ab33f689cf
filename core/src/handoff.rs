//! Group commit: many threads' requests, one committer at a time.
//!
//! Each caller prepares its request itself (in the registry: claims a
//! candidate port in the shared bitmap and probes it, lock-free), then
//! [`Handoff::submit`]s it. One caller at a time *leads*: it takes whatever
//! is queued as one batch ([`Leader::take`]), commits it in one transaction
//! and publishes one answer per request ([`Leader::answer`]); it goes on
//! taking batches while requests keep arriving, or returns when requests
//! are queued ([`Leader::has_pending`]) so that one of their callers leads
//! next. The other callers sleep until their answer is published, or until
//! no one leads and one of them must.
//!
//! If the leader fails before answering (the storage is gone, a commit
//! failed), every request it took gets that error. A failure before it took
//! anything fails its own request only: the others' callers lead for
//! themselves.
//!
//! Under `--cfg portd_loom` the mutex and condition variables are loom's,
//! and `tests/loom.rs` runs the claim → probe → submit → commit or release
//! cycle through this code.

use crate::sync::{AtomicBool, Condvar, Mutex, MutexGuard, Ordering};
use std::time::{Duration, Instant};

/// A queued request and the ticket its answer is filed under.
struct Queue<R, T, E> {
    next_ticket: u64,
    pending: Vec<(u64, R)>,
    answers: Vec<(u64, Result<T, E>)>,
    /// How many other callers the last leader's last batch served: a new
    /// leader expects them back as well.
    recent: usize,
}

/// The queue shared by one registry handle's callers.
pub struct Handoff<R, T, E> {
    queue: Mutex<Queue<R, T, E>>,
    /// Set while a caller leads. Written under `queue`'s lock; read without
    /// it only as a hint ([`Handoff::is_leading`]).
    leading: AtomicBool,
    answered: Condvar,
    queued: Condvar,
    linger: Duration,
}

impl<R, T, E> std::fmt::Debug for Handoff<R, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").field("linger", &self.linger).finish_non_exhaustive()
    }
}

/// What the leader is given: the queue to take batches from and to answer.
pub struct Leader<'h, R, T, E> {
    handoff: &'h Handoff<R, T, E>,
    /// Tickets taken and not answered yet.
    in_flight: Vec<u64>,
    /// How many other callers' requests the last batch held.
    others: usize,
    /// What the previous leader's last batch held, expected until a linger
    /// passes without them.
    inherited: usize,
    own: u64,
}

impl<R, T, E> std::fmt::Debug for Leader<'_, R, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

fn lock<Q>(m: &Mutex<Q>) -> MutexGuard<'_, Q> {
    // A panic while holding the queue leaves it consistent (every change
    // is one push or remove), so a poisoned lock is used as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a request gets when the leader that took it panicked: its caller
/// gets an error instead of waiting forever (and the leader's own caller
/// the panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the thread committing this request panicked")
    }
}

impl std::error::Error for Panicked {}

impl<R, T, E: Clone + From<Panicked>> Handoff<R, T, E> {
    /// A queue whose leaders wait up to `linger` for the next batch to be
    /// as large as the other callers' part of the last one (a zero `linger`
    /// never waits). How long one leader leads is up to its `lead`.
    pub fn new(linger: Duration) -> Self {
        Handoff {
            queue: Mutex::new(Queue {
                next_ticket: 0,
                pending: Vec::new(),
                answers: Vec::new(),
                recent: 0,
            }),
            leading: AtomicBool::new(false),
            answered: Condvar::new(),
            queued: Condvar::new(),
            linger,
        }
    }

    /// Whether some caller leads right now: a hint for callers deciding
    /// whether to prepare their request themselves (a lone caller leads at
    /// once and need not).
    pub fn is_leading(&self) -> bool {
        // Relaxed: a hint only; the queue's mutex orders everything else.
        self.leading.load(Ordering::Relaxed)
    }

    /// Queues `request` and returns its answer: computed by this caller as
    /// leader through `lead`, or by another caller's batch. `lead` gets the
    /// [`Leader`] and returns an error only when it could not answer what it
    /// took.
    pub fn submit(
        &self,
        request: R,
        mut lead: impl FnMut(&mut Leader<'_, R, T, E>) -> Result<(), E>,
    ) -> Result<T, E> {
        let mut q = lock(&self.queue);
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push((ticket, request));
        self.queued.notify_one();
        loop {
            if let Some(at) = q.answers.iter().position(|(t, _)| *t == ticket) {
                return q.answers.swap_remove(at).1;
            }
            // Relaxed: only written and read under `queue`'s lock.
            if self.leading.load(Ordering::Relaxed) {
                q = self.answered.wait(q).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            self.leading.store(true, Ordering::Relaxed);
            let inherited = q.recent;
            drop(q);
            let mut leader =
                Leader { handoff: self, in_flight: Vec::new(), others: 0, inherited, own: ticket };
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lead(&mut leader)));
            q = lock(&self.queue);
            self.leading.store(false, Ordering::Relaxed);
            q.recent = leader.others.max(leader.inherited);
            let (outcome, panic) = match outcome {
                Ok(o) => (o, None),
                Err(payload) => (Err(E::from(Panicked)), Some(payload)),
            };
            if let Err(e) = outcome {
                for t in leader.in_flight.drain(..) {
                    q.answers.push((t, Err(e.clone())));
                }
                if let Some(at) = q.pending.iter().position(|(t, _)| *t == ticket) {
                    q.pending.remove(at);
                    q.answers.push((ticket, Err(e)));
                }
            }
            // Wakes the answered, and a waiter to lead what is still queued.
            self.answered.notify_all();
            if let Some(payload) = panic {
                drop(q);
                std::panic::resume_unwind(payload);
            }
        }
    }
}

impl<R, T, E> Leader<'_, R, T, E> {
    /// The requests queued now, with their tickets; empty when there is
    /// nothing more to do.
    pub fn take(&mut self) -> Vec<(u64, R)> {
        let mut q = self.linger();
        let batch = std::mem::take(&mut q.pending);
        drop(q);
        self.in_flight = batch.iter().map(|(t, _)| *t).collect();
        self.others = batch.iter().filter(|(t, _)| *t != self.own).count();
        batch
    }

    /// Whether requests are queued, after waiting for them as
    /// [`Leader::take`] does. Only leaders take requests, so while this
    /// leader leads, a `true` stays true: a leader that returns then is
    /// sure to be followed by another (one of those callers), and its own
    /// thread goes back to its caller's work.
    pub fn has_pending(&mut self) -> bool {
        !self.linger().pending.is_empty()
    }

    /// The queue, once as many requests are queued as the other callers of
    /// the last batch sent (they typically ask again at once, and so share
    /// one commit instead of trickling into several), or `linger` passed.
    /// What the previous leader served counts for this leader's first wait
    /// only: its own batches say more after that.
    fn linger(&mut self) -> MutexGuard<'_, Queue<R, T, E>> {
        let h = self.handoff;
        let mut q = lock(&h.queue);
        let expect = self.others.max(std::mem::take(&mut self.inherited));
        if expect > 0 && !h.linger.is_zero() {
            let deadline = Instant::now() + h.linger;
            while q.pending.len() < expect {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                q = h.queued.wait_timeout(q, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        q
    }

    /// Publishes answers to requests of the batch last taken.
    pub fn answer(&mut self, answers: impl IntoIterator<Item = (u64, Result<T, E>)>) {
        let mut q = lock(&self.handoff.queue);
        for (t, a) in answers {
            self.in_flight.retain(|&i| i != t);
            q.answers.push((t, a));
        }
        drop(q);
        self.handoff.answered.notify_all();
    }
}

#[cfg(all(test, not(portd_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Debug, Clone, PartialEq)]
    struct Lost;

    impl From<Panicked> for Lost {
        fn from(_: Panicked) -> Lost {
            Lost
        }
    }

    #[test]
    fn a_leader_that_panics_fails_the_requests_it_took_instead_of_losing_them() {
        let h: Arc<Handoff<u32, u32, Lost>> = Arc::new(Handoff::new(Duration::ZERO));
        let leader = {
            let h = h.clone();
            std::thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    h.submit(1, |l| {
                        // Lets the other caller queue its request first.
                        std::thread::sleep(Duration::from_millis(100));
                        assert_eq!(l.take().len(), 2);
                        panic!("the leader fails");
                    })
                }))
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        let other = h.submit(2, |_| panic!("never leads: the first caller does"));
        assert_eq!(other, Err(Lost));
        assert!(leader.join().unwrap().is_err(), "the leader's own caller gets the panic");
        // The queue still works.
        assert_eq!(
            h.submit(3, |l| {
                let batch = l.take();
                l.answer(batch.into_iter().map(|(t, r)| (t, Ok(r * 10))));
                Ok(())
            }),
            Ok(30)
        );
    }
}
