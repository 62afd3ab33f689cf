//! Group commit: concurrent allocations of one process share one locked,
//! durable transaction.
//!
//! Each caller queues its request. One caller at a time leads: it takes
//! `registry.lock`, opens the file once, and runs whatever is queued as one
//! write transaction (one commit, one sync), repeating while requests keep
//! arriving, up to [`SLICE`] so that other processes get their turn. The
//! others sleep until their answer is published. A request that fails is
//! answered with its error and the rest of its batch is run again without
//! it, so one caller's error never undoes another's allocation.

use crate::error::Result;
use crate::registry::{Allocation, GetOptions};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a leader keeps the registry for batches that arrive after its
/// own, before it lets other processes in.
const SLICE: Duration = Duration::from_millis(10);

/// How long a leader whose last batch had other callers' requests waits for
/// the next one before it closes the file: those callers are typically
/// about to ask again, and a batch in the open file costs a commit where a
/// new leader costs an open, a commit and a close. A lone caller never
/// waits.
const LINGER: Duration = Duration::from_micros(300);

/// One queued allocation.
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) key: String,
    pub(crate) opts: GetOptions,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    pending: Vec<Request>,
    answers: HashMap<u64, Result<Allocation>>,
    leading: bool,
}

/// The queue shared by a registry's callers.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<Queue>,
    answered: Condvar,
    queued: Condvar,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

/// What the leader is given: a way to take the queued requests, and where
/// to publish answers.
pub(crate) struct Leader<'g> {
    group: &'g Group,
    id: u64,
    started: Option<Instant>,
    in_flight: Vec<u64>,
    shared: bool,
}

impl Leader<'_> {
    /// The requests queued now (empty: nothing more to do, or the slice is
    /// over).
    pub(crate) fn take(&mut self) -> Vec<Request> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed() > SLICE {
            return Vec::new();
        }
        let mut q = self.group.queue.lock();
        if q.pending.is_empty() && self.shared {
            self.group.queued.wait_for(&mut q, LINGER);
        }
        let batch = std::mem::take(&mut q.pending);
        self.in_flight = batch.iter().map(|r| r.id).collect();
        self.shared = batch.iter().any(|r| r.id != self.id);
        batch
    }

    /// Publishes the answers of the batch last taken.
    pub(crate) fn answer(&mut self, answers: Vec<(u64, Result<Allocation>)>) {
        let mut q = self.group.queue.lock();
        for (id, a) in answers {
            self.in_flight.retain(|&i| i != id);
            q.answers.insert(id, a);
        }
        drop(q);
        self.group.answered.notify_all();
    }
}

impl Group {
    /// Queues `key`/`opts` and returns its answer: computed by this caller
    /// as leader through `lead`, or by another caller's batch.
    pub(crate) fn submit(
        &self,
        key: &str,
        opts: &GetOptions,
        mut lead: impl FnMut(&mut Leader<'_>) -> Result<()>,
    ) -> Result<Allocation> {
        let mut q = self.queue.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push(Request { id, key: key.to_owned(), opts: opts.clone() });
        self.queued.notify_one();
        loop {
            if let Some(a) = q.answers.remove(&id) {
                return a;
            }
            if q.leading {
                self.answered.wait(&mut q);
                continue;
            }
            q.leading = true;
            drop(q);
            let mut leader =
                Leader { group: self, id, started: None, in_flight: Vec::new(), shared: false };
            let outcome = lead(&mut leader);
            q = self.queue.lock();
            q.leading = false;
            if let Err(e) = outcome {
                // Requests taken but not answered share the failure (the
                // lock was lost, the file is damaged, a commit failed). If
                // it came before this leader took anything, only its own
                // request fails: the others' callers try for themselves.
                for i in leader.in_flight.drain(..) {
                    q.answers.insert(i, Err(e.clone()));
                }
                if let Some(at) = q.pending.iter().position(|r| r.id == id) {
                    q.pending.remove(at);
                    q.answers.insert(id, Err(e));
                }
            }
            // Wakes the answered, and a waiter to lead what is still
            // queued. This caller's own request was answered, or is still
            // queued and led again.
            self.answered.notify_all();
        }
    }
}
