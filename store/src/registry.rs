//! The registry API: every operation takes `registry.lock`, opens the file,
//! runs one transaction, closes, and unlocks, so any number of processes
//! share one registry; concurrent allocations of one handle share a session
//! (lock held, file open) handed from leader to leader ([`crate::commit`]).

use crate::allocation::{Allocation, GetOptions};
use crate::commit::{self, Handoff, Request, Session};
use crate::config::Config;
use crate::db::{self, ENTRIES, HISTORY, PORTS, db_err};
use crate::error::{Error, ErrorKind, Result};
use crate::home;
use crate::listing::{CleanupReport, Listed, RangeStatus, State, Status};
use crate::lock;
use crate::mirror::Mirror;
use crate::policy::{guard, in_use};
use crate::project::{Matches, Project};
use crate::record::{self, Entry, display_name};
use crate::touch;
use crate::tx::{Finished, Tx, read_entries};
use portd_core::{Exclusions, Liveness, Owner};
use redb::{ReadableDatabase, ReadableTable};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The registry: a directory holding `registry.redb` and `registry.lock`.
///
/// `Registry` is `Send + Sync`: share one handle between threads (behind an
/// `Arc`, or by reference from scoped threads). Concurrent `get`s of one
/// handle share write transactions; any number of handles and processes
/// may use one registry at once.
///
/// Between two of its callers a handle may keep the registry locked and
/// open (see `docs/design.md`, "Group commit"): a child forked from a
/// thread of this process must not use the handle, or any value made from
/// it, unless it `exec`s first ([`Registry::spawn`] does; its files are
/// opened close-on-exec).
#[derive(Debug)]
pub struct Registry {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) exclusions: Exclusions,
    /// Serialises this handle's use of the file, and holds the session
    /// parked between group-commit leaders.
    pub(crate) inproc: parking_lot::Mutex<Option<Session>>,
    pub(crate) handoff: Handoff,
    pub(crate) mirror: OnceLock<Arc<Mirror>>,
}

// `Registry` is shared between threads; keep it so.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
};

/// Now, in milliseconds since the Unix epoch: how the registry records
/// times (entries, server states, events).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn unknown(key: &str) -> Error {
    Error::new(ErrorKind::UnknownProject, format!("unknown project `{}`", display_name(key)))
        .with_hint("`portd ls` lists the projects that have a port")
}

pub(crate) fn decode_err(e: record::DecodeError) -> Error {
    Error::damaged(format!("registry damaged: {}", e.0))
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir` with `config`.
    /// Checks the location; the file itself is opened per operation.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Registry> {
        let dir = dir.as_ref().to_owned();
        home::prepare(&dir, config.shared)?;
        home::check_file(&dir.join(home::REGISTRY_FILE), config.shared)?;
        let exclusions = Exclusions::with_kernel(config.exclude.clone());
        let inproc = parking_lot::Mutex::new(None);
        Ok(Registry {
            dir,
            config,
            exclusions,
            inproc,
            handoff: commit::handoff(),
            mirror: OnceLock::new(),
        })
    }

    /// Opens the registry named by the environment (`PORTD_HOME`, …) with
    /// the configuration from the config file and environment.
    pub fn open_default() -> Result<Registry> {
        let get = |k: &str| std::env::var(k).ok();
        let config = Config::load(&get)?;
        Registry::open(home::default_home(&get)?, config)
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(home::REGISTRY_FILE)
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The excluded-port sets in force.
    pub fn exclusions(&self) -> &Exclusions {
        &self.exclusions
    }

    /// Runs `f` on the registry opened for writing, under the lock, with
    /// the touch log (read first: a refused log leaves the file unopened).
    pub(crate) fn locked<T>(
        &self,
        f: impl FnOnce(&redb::Database, &touch::Log) -> Result<T>,
    ) -> Result<T> {
        let mut slot = self.inproc.lock();
        if let Some(session) = slot.take() {
            // A parked session: the lock is held and the file open, its
            // touch log already folded. Parked again only if all went well.
            let out = db::contain(&self.path(), || f(&session.db, &touch::Log::default()));
            match &out {
                Err(e) if e.storage_failed() => drop(session.close()),
                _ => *slot = Some(session),
            }
            return out;
        }
        let lock = lock::acquire(&self.dir, self.config.lock_timeout, self.config.shared)?;
        let (session, log) = Session::open(self, lock, false)?;
        let out = db::contain(&self.path(), || f(&session.db, &log))?;
        db::contain(&self.path(), || session.close())?;
        Ok(out)
    }

    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.locked(|db, log| {
            let wtx = db.begin_write().map_err(db_err)?;
            let (out, finished) = {
                let mut tx = Tx::new(&wtx, self)?;
                tx.fold(&log.touches)?;
                let out = f(&mut tx)?;
                (out, tx.finish()?)
            };
            self.commit(wtx, finished, log)?;
            Ok(out)
        })
    }

    /// Commits `wtx` (durably: one sync), then clears the folded touch log
    /// and brings the mirror to the new generation.
    pub(crate) fn commit(
        &self,
        wtx: redb::WriteTransaction,
        finished: Finished,
        log: &touch::Log,
    ) -> Result<()> {
        wtx.commit().map_err(db_err)?;
        if log.pending {
            touch::clear(&self.dir);
        }
        if let Some(mirror) = self.mirror.get() {
            let synced = mirror.generation();
            if synced != 0 && Some(synced) == finished.before {
                mirror.sync(&finished.rows, finished.after);
            }
        }
        // A claim whose port the rows do not hold in the end (a later
        // request of the batch moved its entry away) is let go.
        let held = |p: u16| finished.rows.iter().any(|(_, r)| r.contains(p) && r.holds(p));
        for c in finished.claims {
            if held(c.port()) {
                c.keep();
            }
        }
        Ok(())
    }

    /// The handle's mirror of the per-range bitmaps (made on first use).
    pub(crate) fn mirror(&self) -> &Arc<Mirror> {
        self.mirror.get_or_init(|| Arc::new(Mirror::new(&self.config.ranges, &self.exclusions)))
    }

    /// The index of configured range `r` in the mirror.
    pub(crate) fn range_index(&self, r: &portd_core::PortRange) -> usize {
        self.config.ranges.iter().position(|c| c.name == r.name).expect("a configured range")
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let mut slot = self.inproc.lock();
        if let Some(session) = slot.as_ref() {
            let rtx = session.db.begin_read().map_err(db_err);
            let out = db::contain(&self.path(), || f(&rtx?));
            if out.as_ref().is_err_and(Error::storage_failed) {
                slot.take().map(Session::close);
            }
            return out;
        }
        let _lock = lock::acquire(&self.dir, self.config.lock_timeout, self.config.shared)?;
        self.read_open(f)
    }

    /// Runs `f` in a read transaction of the registry opened read-only
    /// (`registry.lock` held by the caller), then closes it.
    pub(crate) fn read_open<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T>,
    ) -> Result<T> {
        db::contain(&self.path(), || {
            let db = db::open_read(&self.dir, self.config.shared)?;
            let out = f(&db.begin_read()?)?;
            db.close()?;
            Ok(out)
        })
    }

    /// Fills a fresh registry `db` with what `doctor --repair` salvaged:
    /// each entry with `true` is written back as it was, each with `false`
    /// is only remembered as history.
    pub(crate) fn rebuild_into(
        &self,
        db: &redb::Database,
        salvaged: &[(Entry, bool)],
    ) -> Result<()> {
        let wtx = db.begin_write().map_err(db_err)?;
        {
            let mut tx = Tx::new(&wtx, self)?;
            for (e, keep) in salvaged {
                if *keep {
                    tx.put(e, None)?;
                } else {
                    tx.history.insert(e.project.as_str(), e.port).map_err(db_err)?;
                }
            }
            tx.finish()?;
        }
        wtx.commit().map_err(db_err)
    }

    /// The port of the named project, allocating one on first use.
    ///
    /// A new project's port is probed (nothing may be bound on it) before it
    /// is committed. An existing project keeps its port without a probe:
    /// see [`Registry::get_with`] for what is and is not checked.
    pub fn get(&self, name: &str) -> Result<u16> {
        Ok(self.get_with(&Project::name(name)?, &GetOptions::default())?.entry.port)
    }

    /// Ports for many named projects, in one transaction.
    ///
    /// All of them or none: the batch never evicts its own allocations, and
    /// a range too full for all the new names fails with
    /// [`ErrorKind::NoFreePort`], committing nothing. The new names' ports
    /// are claimed in the handle's bitmaps and probed in parallel batches
    /// before they are committed.
    pub fn get_many<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<u16>> {
        let projects =
            names.iter().map(|n| Project::name(n.as_ref())).collect::<Result<Vec<_>>>()?;
        let opts = GetOptions::default();
        let keys: Vec<&str> = projects.iter().map(|p| p.key()).collect();
        self.write(|tx| Ok(tx.get_batch(&keys, &opts)?.into_iter().map(|a| a.entry.port).collect()))
    }

    /// The project's port, allocating or moving as `opts` asks.
    ///
    /// For a new project (or one that moves), the port chosen is probed
    /// free before it is committed. For an existing project, what is
    /// checked is the registry's own view:
    ///
    /// - the entry is this user's (in a shared registry),
    /// - its port is still in a configured range and not excluded, and is
    ///   the one asked for (`port`, `PORTD_PORT`, `range`) — else it moves,
    /// - with `owner`: no other live process holds its lease
    ///   ([`ErrorKind::PortBusy`]).
    ///
    /// Its port is **not** re-probed unless `require_free` is set: a process
    /// that is not the project's may be listening on it, and the call still
    /// succeeds. [`Allocation::foreign_listener`] tells, on demand; with
    /// `require_free`, such a port fails with [`ErrorKind::PortBusy`] (or
    /// moves, with `move_port`).
    pub fn get_with(&self, project: &Project, opts: &GetOptions) -> Result<Allocation> {
        let mut rejected = 0;
        loop {
            // While another caller leads, prepare a candidate lock-free (the
            // leader only validates it); a lone caller leads at once. After
            // two rejected candidates, the leader picks.
            let candidate = if self.handoff.is_leading() && rejected < 2 {
                self.candidate(project.key(), opts)
            } else {
                None
            };
            let request = Request { key: project.key().to_owned(), opts: opts.clone(), candidate };
            match self.handoff.submit(request, |leader| self.lead(leader))? {
                Some(a) => return Ok(a),
                // The candidate was taken by another process: try again.
                None => rejected += 1,
            }
        }
    }

    /// An active lease for the named project, owned by `owner`: the entry
    /// records `owner` until [`Registry::end_lease`], its release, or the
    /// owner's death. An existing project keeps its port without a probe,
    /// as with [`Registry::get_with`]; ask [`Allocation::foreign_listener`]
    /// before binding, or use [`Allocation::bind_tcp`], which fails if the
    /// port is taken.
    pub fn acquire(&self, name: &str, owner: Owner) -> Result<Allocation> {
        let opts = GetOptions { owner: Some(owner), ..GetOptions::default() };
        self.get_with(&Project::name(name)?, &opts)
    }

    /// Active leases for many named projects, all owned by `owner`, in one
    /// write transaction: all of them or none. A name already leased by
    /// another live process fails with [`ErrorKind::PortBusy`], a range too
    /// full for them all with [`ErrorKind::NoFreePort`]; either way nothing
    /// is committed. Each allocation is what [`Registry::acquire`] returns
    /// (existing projects keep their ports without a probe), in the order
    /// of `names`; a name given twice is a usage error.
    pub fn acquire_many<S: AsRef<str>>(
        &self,
        names: &[S],
        owner: Owner,
    ) -> Result<Vec<Allocation>> {
        let projects =
            names.iter().map(|n| Project::name(n.as_ref())).collect::<Result<Vec<_>>>()?;
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = projects.iter().find(|p| !seen.insert(p.key())) {
            return Err(Error::usage(format!("`{}` is named twice", twice.key()))
                .with_hint("a lease is one project's: name each project once"));
        }
        let opts = GetOptions { owner: Some(owner), ..GetOptions::default() };
        let keys: Vec<&str> = projects.iter().map(|p| p.key()).collect();
        self.write(|tx| tx.get_batch(&keys, &opts))
    }

    /// Ends an active lease: the entry goes idle and keeps its port. Does
    /// nothing if the lease has already passed to another owner or the
    /// entry was released.
    pub fn end_lease(&self, project: &Project, owner: Owner) -> Result<bool> {
        self.write(|tx| {
            let Some(e) = tx.entry(project.key())? else {
                return Ok(false);
            };
            if e.owner != Some(owner) {
                return Ok(false);
            }
            tx.end_lease_of(&e)?;
            Ok(true)
        })
    }

    /// Undoes `lease`, a `get` whose command never started, from what that
    /// `get` recorded in its own transaction (so another process's write
    /// before it, such as a `portd get` that created the entry, is kept):
    ///
    /// - the project's entry goes back to what it was (or is removed, with
    ///   its history row put back, if the `get` created it); if its old
    ///   port has been taken meanwhile, the entry stays on the new port
    ///   and only the lease ends, so the project never loses its entry;
    /// - the idle entries the `get` evicted or expired come back if nobody
    ///   took their ports meanwhile;
    /// - a scan cursor the `get` advanced goes back if no other allocation
    ///   has moved it since.
    ///
    /// If the entry is no longer what the `get` wrote (changed meanwhile,
    /// including by another `get` of it: each one advances the entry's
    /// `last_used`, even within the same millisecond), nothing is undone
    /// but the lease ends, as [`Registry::end_lease`] does. One transaction; returns whether the `get` was undone.
    pub fn undo_get(&self, project: &Project, lease: &Allocation) -> Result<bool> {
        let key = project.key();
        let prev = &lease.previous;
        self.write(|tx| {
            let now = tx.entry(key)?;
            if now.as_ref() != Some(&lease.entry) {
                if let (Some(e), Some(owner)) = (now, lease.entry.owner)
                    && e.owner == Some(owner)
                {
                    tx.end_lease_of(&e)?;
                }
                return Ok(false);
            }
            tx.remove(&lease.entry)?;
            match &prev.entry {
                None => tx.set_history(key, prev.history)?,
                Some(b) if tx.port_holder(b.port)?.is_none() => {
                    tx.put(b, None)?;
                    if prev.history.is_some() {
                        tx.set_history(key, prev.history)?;
                    }
                }
                // Its old port was taken meanwhile: keep the new one.
                Some(b) => {
                    let idle = Entry {
                        owner: None,
                        child_pid: None,
                        command: b.command.clone(),
                        ..lease.entry.clone()
                    };
                    tx.put(&idle, None)?;
                }
            }
            for e in lease.evicted.iter().chain(&lease.expired) {
                if tx.entry(&e.project)?.is_none() && tx.port_holder(e.port)?.is_none() {
                    let kept = tx.history_port(&e.project)?;
                    tx.put(e, None)?;
                    tx.set_history(&e.project, kept)?;
                }
            }
            for (k, was, wrote) in &prev.cursors {
                let cur = tx.meta.get(k.as_str()).map_err(db_err)?.map(|v| v.value());
                if cur == Some(*wrote) {
                    match was {
                        Some(v) => tx.meta.insert(k.as_str(), *v).map_err(db_err).map(drop)?,
                        None => tx.meta.remove(k.as_str()).map_err(db_err).map(drop)?,
                    }
                }
            }
            Ok(true)
        })
    }

    /// Records the child process started for an active lease.
    pub fn set_child(&self, project: &Project, owner: Owner, child: u32) -> Result<bool> {
        self.write(|tx| {
            let Some(mut e) = tx.entry(project.key())? else { return Ok(false) };
            if e.owner != Some(owner) {
                return Ok(false);
            }
            let old = e.clone();
            e.child_pid = Some(child);
            tx.put(&e, Some(&old))?;
            Ok(true)
        })
    }

    /// Records `owner`, a running server found on `port`, as the owner of
    /// `project`'s idle entry (see [`crate::ownership`]). Does nothing if
    /// the entry has moved or gained a live owner meanwhile.
    pub(crate) fn adopt(&self, project: &Project, port: u16, owner: Owner) -> Result<bool> {
        self.write(|tx| {
            let Some(mut e) = tx.entry(project.key())? else { return Ok(false) };
            if e.port != port || e.owner.is_some_and(|o| o.liveness() != Liveness::Dead) {
                return Ok(false);
            }
            let old = e.clone();
            e.owner = Some(owner);
            e.command = portd_core::sys::cmdline(owner.pid);
            e.child_pid = None;
            e.last_used_ms = tx.now.max(e.last_used_ms);
            tx.put(&e, Some(&old))?;
            Ok(true)
        })
    }

    /// Frees the named project; its last port is kept in history. Refused
    /// while its owner runs (see [`Registry::release_many`]).
    pub fn release(&self, name: &str) -> Result<()> {
        self.release_many(&[Project::name(name)?], false).map(|_| ())
    }

    /// Frees several projects in one transaction; fails, changing nothing,
    /// if any is unknown, another user's, or (unless `force`) held by a
    /// running owner: its server would keep serving a port that the next
    /// `get` hands to someone else.
    pub fn release_many(&self, projects: &[Project], force: bool) -> Result<Vec<Entry>> {
        self.write(|tx| {
            let mut out = Vec::new();
            for p in projects {
                let e = tx.entry(p.key())?.ok_or_else(|| unknown(p.key()))?;
                guard(&e, "release")?;
                if !force && let Some(who) = in_use(&e) {
                    return Err(Error::new(
                        ErrorKind::PortBusy,
                        format!("project `{}` is in use by {who}", e.display_name()),
                    )
                    .with_hint(
                        "stop it first, or pass `--force` to release it anyway (its server keeps the port until it stops)",
                    ));
                }
                tx.remove(&e)?;
                out.push(e);
            }
            Ok(out)
        })
    }

    /// Gives leases back, in one transaction: each `(entry, created)` whose
    /// entry is still exactly as its lease left it is released if the
    /// lease created it, else its lease ends and it keeps its port. Entries
    /// changed since (leased again, touched, moved, released) are left
    /// alone.
    pub(crate) fn give_back(&self, leased: &[(&Entry, bool)]) -> Result<()> {
        self.write(|tx| {
            for &(left, created) in leased {
                let Some(e) = tx.entry(&left.project)? else { continue };
                if e != *left {
                    continue;
                }
                if created {
                    tx.remove(&e)?;
                } else {
                    tx.end_lease_of(&e)?;
                }
            }
            Ok(())
        })
    }

    /// Frees every idle entry (but those of defined servers, whose ports
    /// stay theirs while they are defined).
    pub fn release_idle(&self) -> Result<Vec<Entry>> {
        self.write(|tx| {
            // Only the caller's own (all of them, for root).
            let mut idle = Vec::new();
            for e in tx.all_entries()? {
                if State::of(&e) == State::Idle
                    && guard(&e, "release").is_ok()
                    && !tx.is_defined(&e.project)?
                {
                    idle.push(e);
                }
            }
            for e in &idle {
                tx.remove(e)?;
            }
            Ok(idle)
        })
    }

    /// One entry.
    pub fn show(&self, project: &Project) -> Result<Listed> {
        self.read(|rtx| {
            let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
            let v = entries
                .get(project.key())
                .map_err(db_err)?
                .ok_or_else(|| unknown(project.key()))?;
            let mut entry = record::decode(project.key(), v.value()).map_err(decode_err)?;
            touch::read(&self.dir, self.config.shared)?.overlay(&mut entry);
            Ok(Listed { state: State::of(&entry), entry })
        })
    }

    /// The project that `name`, as `ls` shows it, refers to: the named
    /// project `name` if it has an entry, else the one directory project
    /// whose path ends with `name` (`app`, or `a/app` where two are called
    /// `app`). `Ok(None)` when none matches; several are a usage error
    /// that lists them. For reading: a command that changes a project
    /// should take a plain name as a named project only (see
    /// [`Registry::matches`]).
    pub fn lookup(&self, name: &str) -> Result<Option<Project>> {
        let m = self.matches(name)?;
        if m.named.is_some() {
            return Ok(m.named);
        }
        match m.directories.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => Err(Error::usage(format!(
                "`{name}` names {} directory projects: {}",
                many.len(),
                many.iter().map(|p| format!("`{}`", p.key())).collect::<Vec<_>>().join(", ")
            ))
            .with_hint("name one by more of its path (as `portd ls` shows it), or with `--dir`")),
        }
    }

    /// Every project with an entry that `name` may refer to: the named
    /// project `name`, and the directory projects whose path ends with
    /// `/name` (by base name, or by as much of the path as `name` holds).
    pub fn matches(&self, name: &str) -> Result<Matches> {
        let keys = self.read(|rtx| {
            let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
            let mut keys = Vec::new();
            for row in entries.iter().map_err(db_err)? {
                keys.push(row.map_err(db_err)?.0.value().to_owned());
            }
            Ok(keys)
        })?;
        let named =
            if keys.iter().any(|k| k == name) { Some(Project::from_key(name)?) } else { None };
        let tail = format!("/{}", name.trim_matches('/'));
        let directories = keys
            .iter()
            .filter(|k| k.starts_with('/') && k.ends_with(&tail) && *k != name)
            .map(|k| Project::from_key(k))
            .collect::<Result<Vec<_>>>()?;
        Ok(Matches { named, directories })
    }

    /// Every entry, by port.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let mut all = self.read(|rtx| {
            let mut all = read_entries(rtx)?;
            let log = touch::read(&self.dir, self.config.shared)?;
            all.iter_mut().for_each(|e| log.overlay(e));
            Ok(all)
        })?;
        all.sort_by_key(|e| e.port);
        Ok(all.into_iter().map(|entry| Listed { state: State::of(&entry), entry }).collect())
    }

    /// Released projects and the port each had last (not currently entries).
    pub fn history(&self) -> Result<Vec<(String, u16)>> {
        self.read(|rtx| {
            let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
            let hist = rtx.open_table(HISTORY).map_err(db_err)?;
            let mut out = Vec::new();
            for row in hist.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                if entries.get(k.value()).map_err(db_err)?.is_none() {
                    out.push((k.value().to_owned(), v.value()));
                }
            }
            Ok(out)
        })
    }

    /// The project holding `port`, if any.
    pub fn holder(&self, port: u16) -> Result<Option<Listed>> {
        self.read(|rtx| {
            let ports = rtx.open_table(PORTS).map_err(db_err)?;
            let Some(k) = ports.get(port).map_err(db_err)? else {
                return Ok(None);
            };
            let key = k.value().to_owned();
            let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
            let v = entries.get(key.as_str()).map_err(db_err)?.ok_or_else(|| {
                Error::damaged(format!("registry damaged: port {port} indexed for missing `{key}`"))
            })?;
            let entry = record::decode(&key, v.value()).map_err(decode_err)?;
            Ok(Some(Listed { state: State::of(&entry), entry }))
        })
    }

    /// Clears dead owners (entries keep their ports) and drops idle
    /// entries past `idle_ttl`.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        self.write(|tx| {
            let expired = tx.expire()?.into_iter().map(|e| e.project).collect();
            let mut report = CleanupReport { expired, ..Default::default() };
            for e in tx.all_entries()? {
                if e.owner.is_some_and(|o| o.liveness() == Liveness::Dead) {
                    let mut idle = e.clone();
                    idle.owner = None;
                    idle.child_pid = None;
                    tx.put(&idle, Some(&e))?;
                    report.reclaimed.push(e.project);
                }
            }
            Ok(report)
        })
    }

    /// Per-range usage.
    pub fn status(&self) -> Result<Status> {
        let list = self.list()?;
        let mut outside = 0;
        let mut ranges: Vec<RangeStatus> = self
            .config
            .ranges
            .iter()
            .map(|r| RangeStatus {
                range: r.clone(),
                usable: (r.start..=r.end).filter(|&p| self.exclusions.reason(p).is_none()).count(),
                active: 0,
                idle: 0,
            })
            .collect();
        for l in &list {
            match ranges.iter_mut().find(|s| s.range.contains(l.entry.port)) {
                Some(s) if l.state == State::Idle => s.idle += 1,
                Some(s) => s.active += 1,
                None => outside += 1,
            }
        }
        let file_bytes = std::fs::metadata(self.path()).map(|m| m.len()).unwrap_or(0);
        Ok(Status { ranges, outside, file_bytes })
    }

    /// Sets an entry's `last_used` (and `created`, if later), as if it was
    /// last used at `ms`: for tests of what ages.
    #[cfg(test)]
    pub(crate) fn set_last_used(&self, key: &str, ms: u64) -> Result<()> {
        self.write(|tx| {
            let e = tx.entry(key)?.ok_or_else(|| unknown(key))?;
            let aged = Entry { last_used_ms: ms, created_ms: e.created_ms.min(ms), ..e.clone() };
            tx.put(&aged, Some(&e))
        })
    }
}
