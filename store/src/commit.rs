//! Group commit, the leader's side: concurrent allocations of one handle
//! share one locked, durable transaction ([`portd_core::Handoff`] queues
//! them).
//!
//! A leader takes `registry.lock` and opens the file (a [`Session`]), and
//! answers one batch in it; leaders hand the open session on to each other
//! while requests keep coming, for up to [`SLICE`] once another
//! process waits for the lock (then the session closes and the next leader
//! queues for the lock behind that process). A lone request that asks nothing
//! of an existing entry is answered from a read-only open (no write, no
//! sync); if its project turns out to be new, the file is reopened for
//! writing under the same hold of the lock, without looking at the schema
//! again: one lock cycle, one read-write open.

use crate::allocation::{Allocation, GetOptions, Previous};
use crate::db::{self, ENTRIES, db_err};
use crate::error::{Error, Result};
use crate::lock::{self, LockGuard};
use crate::mirror::Claim;
use crate::record::{self, Entry};
use crate::registry::{Registry, decode_err, now_ms};
use crate::touch;
use crate::tx::Tx;
use std::time::{Duration, Instant};

/// How long a session keeps the registry while another process (or
/// handle) waits for the lock.
pub(crate) const SLICE: Duration = Duration::from_millis(10);

/// How long a leader whose last batch had other callers' requests waits for
/// the next one before it closes the file: those callers are typically
/// about to ask again, and a batch in the open file costs a commit where a
/// new leader costs an open, a commit and a close. A lone caller never
/// waits.
const LINGER: Duration = Duration::from_micros(300);

/// One queued allocation, with the candidate its caller prepared.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) key: String,
    pub(crate) opts: GetOptions,
    pub(crate) candidate: Option<Claim>,
}

/// The queue of a registry handle. An answer of `None` rejects the
/// request's candidate: its caller prepares another and asks again.
pub(crate) type Handoff = portd_core::Handoff<Request, Option<Allocation>, Error>;
type Leader<'h> = portd_core::Leader<'h, Request, Option<Allocation>, Error>;

pub(crate) fn handoff() -> Handoff {
    Handoff::new(LINGER)
}

/// What a read-only look at a plain request's entry found.
enum Looked {
    /// The entry, kept as it is (and touched).
    Kept(Box<Allocation>),
    /// The entry, kept; the touch log is due to be folded, which needs a
    /// write (and a read-only registry answers with this entry).
    Fold(Entry),
    /// No entry, or one that must change: a write is needed.
    Write,
}

/// The registry held open between leaders: its lock taken, its file open
/// for writing. A leader that answered its own request parks the session
/// for the next leader when requests are already queued (so someone is
/// sure to take it), and closes it otherwise; no session is ever left
/// parked with no caller to come for it.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) db: redb::Database,
    lock: LockGuard,
    opened: Instant,
}

impl Session {
    /// Reads the touch log, then opens the registry for writing under
    /// `lock` (a refused log leaves the file unopened). `checked`: the
    /// schema was read under this same hold of the lock, so the read-only
    /// look at it is skipped.
    pub(crate) fn open(
        reg: &Registry,
        lock: LockGuard,
        checked: bool,
    ) -> Result<(Session, touch::Log)> {
        let log = touch::read(&reg.dir, reg.config.shared)?;
        let db =
            db::contain(&reg.path(), || db::open_checked(&reg.dir, reg.config.shared, checked))?;
        Ok((Session { db, lock, opened: Instant::now() }, log))
    }

    /// Closes the file, then lets the lock go.
    pub(crate) fn close(self) -> Result<()> {
        let Session { db, lock, .. } = self;
        let closed = db.close().map_err(db_err);
        drop(lock);
        closed
    }

    /// Whether it has been held for a slice while another caller waits.
    fn due(&self) -> bool {
        self.opened.elapsed() > SLICE && self.lock.others_waiting()
    }
}

impl Registry {
    /// Leads: answers one batch of what is queued, in the parked session
    /// or a new one, then parks the session for the next leader or closes
    /// it.
    pub(crate) fn lead(&self, leader: &mut Leader<'_>) -> Result<()> {
        let mut slot = self.inproc.lock();
        let mut session = slot.take();
        if session.as_ref().is_some_and(Session::due) {
            // Others' turn: queue behind them for the lock.
            session.take().map(Session::close).transpose()?;
        }
        let mut batch = leader.take();
        let mut log = None;
        let session = match session {
            Some(s) => s,
            None => match self.open_session(leader, &mut batch)? {
                Some((s, l)) => {
                    log = Some(l);
                    s
                }
                None => return Ok(()),
            },
        };
        let led = db::contain(&self.path(), || {
            let answers = self.run_batch(&session.db, batch, log.take().as_ref())?;
            leader.answer(answers);
            // Held for a slice while others wait: close. What is queued is
            // led by one of its callers, in a new session taken in turn
            // behind the others.
            if session.due() {
                return Ok(false);
            }
            // Requests queued (after waiting briefly for the callers just
            // answered): one of their callers leads next, in this session,
            // and this thread goes back to its caller's work.
            Ok(leader.has_pending())
        });
        match led {
            Ok(true) => {
                *slot = Some(session);
                Ok(())
            }
            Ok(false) => session.close(),
            Err(e) => {
                let _ = session.close();
                Err(e)
            }
        }
    }

    /// Takes the lock and opens the file for `batch`. A lone request that
    /// asks nothing of an existing entry is answered from a read-only open
    /// first (`None`: nothing more to do); the read-write open that may
    /// follow, under the same hold of the lock, skips the schema check.
    fn open_session(
        &self,
        leader: &mut Leader<'_>,
        batch: &mut Vec<(u64, Request)>,
    ) -> Result<Option<(Session, touch::Log)>> {
        let lock = lock::acquire(&self.dir, self.config.lock_timeout, self.config.shared)?;
        let mut checked = false;
        let mut known = None;
        if let [(ticket, r)] = batch.as_slice()
            && r.opts.owner.is_none()
            && !r.opts.require_free
        {
            let ticket = *ticket;
            match self.look(&r.key, &r.opts)? {
                Looked::Kept(a) => {
                    leader.answer([(ticket, Ok(Some(*a)))]);
                    *batch = leader.take();
                    if batch.is_empty() {
                        return Ok(None);
                    }
                }
                Looked::Fold(e) => known = Some((ticket, e)),
                Looked::Write => {}
            }
            checked = true;
        }
        match Session::open(self, lock, checked) {
            Ok(opened) => Ok(Some(opened)),
            // A read-only registry still answers for the projects it
            // holds; only their `last_used` stays as it was.
            Err(e) if e.is_unwritable() && known.is_some() => {
                let (ticket, entry) = known.take().expect("checked above");
                let previous = Previous { entry: Some(entry.clone()), ..Previous::default() };
                leader.answer([(ticket, Ok(Some(Allocation::kept(entry, previous))))]);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The entry of a plain request, from a read-only open: the common
    /// case, an existing entry asked for as it is, is a read and a touch
    /// appended to the touch log.
    fn look(&self, key: &str, opts: &GetOptions) -> Result<Looked> {
        self.read_open(|rtx| {
            let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
            let found = entries.get(key).map_err(db_err)?;
            let looked = match found {
                None => Looked::Write,
                Some(v) => {
                    let mut e = record::decode(key, v.value()).map_err(decode_err)?;
                    self.usable_by_me(&e)?;
                    if self.moves(&e, opts).is_some() {
                        Looked::Write
                    } else {
                        // Always later than the entry's time, even within
                        // its millisecond: a `get` answered from an entry
                        // changes it, so `undo_get` of the lease that
                        // created it keeps it.
                        let now = now_ms().max(e.last_used_ms + 1);
                        let logged = touch::append(&self.dir, self.config.shared, key, now)?;
                        if logged.is_some() {
                            e.last_used_ms = now;
                        }
                        // Folded by the next write; past its size, by this call.
                        if logged.is_some_and(|size| size > touch::FOLD_AT) {
                            Looked::Fold(e)
                        } else {
                            let previous =
                                Previous { entry: Some(e.clone()), ..Previous::default() };
                            Looked::Kept(Box::new(Allocation::kept(e, previous)))
                        }
                    }
                }
            };
            Ok(looked)
        })
    }

    /// Runs `batch` in one write transaction. A request that fails gets its
    /// error, and the transaction is run again without it, so that the
    /// others' allocations never include its partial changes.
    fn run_batch(
        &self,
        db: &redb::Database,
        mut batch: Vec<(u64, Request)>,
        log: Option<&touch::Log>,
    ) -> Result<Vec<(u64, Result<Option<Allocation>>)>> {
        let mut answers = Vec::with_capacity(batch.len());
        let empty = touch::Log::default();
        let log = log.unwrap_or(&empty);
        while !batch.is_empty() {
            let wtx = db.begin_write().map_err(db_err)?;
            let mut done = Vec::with_capacity(batch.len());
            let mut failed = None;
            let finished = {
                let mut tx = Tx::new(&wtx, self)?;
                tx.fold(&log.touches)?;
                for (i, (ticket, r)) in batch.iter_mut().enumerate() {
                    match tx.get_offered(&r.key, &r.opts, r.candidate.take()) {
                        Ok(a) => done.push((*ticket, Ok(a))),
                        Err(e) => {
                            failed = Some((i, e));
                            break;
                        }
                    }
                }
                match failed {
                    None => Some(tx.finish()?),
                    Some(_) => None,
                }
            };
            if let Some(finished) = finished {
                self.commit(wtx, finished, log)?;
                answers.extend(done);
                break;
            }
            if let Some((i, e)) = failed {
                wtx.abort().map_err(db_err)?;
                // The others' candidates were used up by the aborted
                // transaction; the rerun picks for them.
                answers.push((batch.remove(i).0, Err(e)));
            }
        }
        Ok(answers)
    }
}
