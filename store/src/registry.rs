//! The registry API: every operation takes `registry.lock`, opens the file,
//! runs one transaction, closes, and unlocks. No handle is kept open between
//! operations, so any number of processes share one registry.

use crate::config::Config;
use crate::db::{self, ENTRIES, HISTORY, LRU, META, PORTS, db_err};
use crate::error::{Error, ErrorKind, Result};
use crate::group::{Group, Request};
use crate::home;
use crate::lock;
use crate::ownership::{self, Binding, busy_error};
use crate::record::{self, Entry, display_name};
use crate::touch;
use portd_core::{
    AtomicBitmap, Exclusions, Liveness, Owner, PortRange, ProbeOptions, Verdict, preferred_offset,
    probe, validate_name,
};
use redb::ReadableTable;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many `reset` backups are kept; older ones are removed.
pub const RESET_BACKUPS_KEPT: usize = 5;

/// A project: a validated name, or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Project(String);

impl Project {
    /// A named project (`myapp`, `myapp:api`).
    pub fn name(name: &str) -> Result<Project> {
        validate_name(name).map_err(|e| {
            Error::usage(e.to_string()).with_hint("project names look like `myapp` or `myapp:api`")
        })?;
        Ok(Project(name.to_owned()))
    }

    /// A directory project, keyed by its canonical absolute path.
    pub fn dir(path: &Path) -> Result<Project> {
        let canon = std::fs::canonicalize(path)
            .map_err(|e| Error::usage(format!("cannot use directory `{}`: {e}", path.display())))?;
        if !canon.is_dir() {
            return Err(Error::usage(format!("`{}` is not a directory", path.display())));
        }
        let s = canon.to_str().ok_or_else(|| {
            Error::usage(format!("directory `{}` is not valid UTF-8", path.display()))
        })?;
        Ok(Project(s.to_owned()))
    }

    /// The project of the current directory: its git work tree's root, or
    /// the directory itself.
    pub fn current_dir() -> Result<Project> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::usage(format!("cannot read the current directory: {e}")))?;
        let root = cwd.ancestors().find(|d| d.join(".git").exists()).unwrap_or(&cwd);
        Project::dir(root)
    }

    /// Parses a stored key (a name, or an absolute path).
    pub fn from_key(key: &str) -> Result<Project> {
        if key.starts_with('/') && record::valid_key(key) {
            Ok(Project(key.to_owned()))
        } else {
            Project::name(key)
        }
    }

    /// The key stored in the registry.
    pub fn key(&self) -> &str {
        &self.0
    }

    /// How it is shown: a name, or a directory's base name.
    pub fn display(&self) -> &str {
        display_name(&self.0)
    }
}

/// What a name may refer to: see [`Registry::matches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Matches {
    /// The named project of that name, if it has an entry (or the directory
    /// project, when the name is its whole path).
    pub named: Option<Project>,
    /// The other directory projects whose path ends with the name.
    pub directories: Vec<Project>,
}

/// What to ask of `get`/`acquire`.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Only this range (else the configured default, else the fallback ranges).
    pub range: Option<String>,
    /// Exactly this port (else `PORTD_PORT`, else the usual candidates).
    pub port: Option<u16>,
    /// Require the UDP port to be free too.
    pub udp: bool,
    /// Record this process as the owner (an active lease).
    pub owner: Option<Owner>,
    /// The owner's command line.
    pub command: Option<Vec<String>>,
    /// The child process started for the lease.
    pub child_pid: Option<u32>,
    /// The project's port must be bindable now (probed as its server binds,
    /// with `SO_REUSEADDR`); a port bound by a process that is not the
    /// project's own (see [`crate::binding`]) fails with
    /// [`ErrorKind::PortBusy`], or moves with `move_port`. Without `owner`,
    /// a server started with the project's port in its environment is
    /// recorded as the owner instead.
    pub require_free: bool,
    /// With `require_free`: take a fresh port instead of failing (`--move`).
    pub move_port: bool,
}

/// Why an existing entry was given another port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveReason {
    /// Its port was bound by another process, and a move was asked for.
    Bound,
    /// Its port is excluded now (the reason).
    Excluded(String),
    /// Its port lies outside every configured range now.
    OutsideRange,
    /// Another port was asked for (`--port`).
    Asked,
    /// `PORTD_PORT` pins it to another port.
    Pinned,
    /// Another range was asked for (`--range`).
    Range(String),
}

impl std::fmt::Display for MoveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveReason::Bound => f.write_str("its port was bound by another process"),
            MoveReason::Excluded(why) => write!(f, "its port is excluded: {why}"),
            MoveReason::OutsideRange => f.write_str("its port is outside every configured range"),
            MoveReason::Asked => f.write_str("`--port` asked for another port"),
            MoveReason::Pinned => f.write_str("`PORTD_PORT` pins another port"),
            MoveReason::Range(r) => write!(f, "range `{r}` was asked for"),
        }
    }
}

/// The outcome of `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The entry as committed.
    pub entry: Entry,
    /// Whether the project got its entry now (false: it had one, kept or moved).
    pub fresh: bool,
    /// The port the project had before, when it was moved.
    pub moved_from: Option<u16>,
    /// Why it was moved, when it was.
    pub moved_because: Option<MoveReason>,
    /// Idle entries evicted (least recently used first) to make room.
    pub evicted: Vec<Entry>,
    /// Idle entries dropped for exceeding `idle_ttl` by this allocation.
    pub expired: Vec<Entry>,
    /// What the project's rows were before, read in the same transaction
    /// as the write: what [`Registry::undo_get`] puts back.
    pub(crate) previous: Previous,
}

/// The rows a `get` changed for its project, as they were before it, read
/// inside the `get`'s own transaction (so that no other write can come
/// between what is recorded and what is changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Previous {
    /// The project's entry.
    entry: Option<Entry>,
    /// Its history row.
    history: Option<u16>,
    /// Each scan cursor the `get` advanced: `(meta key, before, after)`.
    cursors: Vec<(String, Option<u64>, u64)>,
}

impl Allocation {
    fn kept(entry: Entry, previous: Previous) -> Allocation {
        Allocation {
            entry,
            fresh: false,
            moved_from: None,
            moved_because: None,
            evicted: Vec::new(),
            expired: Vec::new(),
            previous,
        }
    }
}

impl Allocation {
    /// The port, bound and listening on `127.0.0.1` (`SO_REUSEADDR`): a
    /// pre-bound listener to hand to a server, with no window in which
    /// another process can take the port. Loopback only, so nothing outside
    /// the machine can connect; [`Allocation::bind_tcp_loopback`] adds
    /// `::1`, [`Allocation::bind_tcp_on`] binds another address.
    pub fn bind_tcp(&self) -> std::io::Result<std::net::TcpListener> {
        self.bind_tcp_on(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// The port, listening on `host` (`::` is dual-stack and, like
    /// `0.0.0.0`, reachable from the network: only when asked for).
    pub fn bind_tcp_on(&self, host: std::net::IpAddr) -> std::io::Result<std::net::TcpListener> {
        portd_core::bind_listener_on(host, self.entry.port)
    }

    /// The port, listening on `127.0.0.1` and, where IPv6 is up, on `::1`
    /// (IPv4 first): what `portd run --fd` passes by default.
    pub fn bind_tcp_loopback(&self) -> std::io::Result<Vec<std::net::TcpListener>> {
        portd_core::bind_loopback(self.entry.port)
    }

    /// The processes that are not the project's own and hold its TCP port
    /// now, if any: `Some` (an empty list when the binder cannot be seen,
    /// another user's process without privileges) when the port is bound by
    /// someone else, `None` when it is free, bound only by the project's own
    /// processes (its live owner, its child, their descendants and groups),
    /// bound by a server started with the project's port in its environment
    /// (which portd would adopt), or not bindable by this user at all.
    /// This is the rule `portd get` warns by ([`crate::binding`]).
    ///
    /// Computed when called, not by `get`: it probes the port (microseconds)
    /// and reads `/proc` only when the port is bound. The answer is for this
    /// moment; a process may bind the port right after.
    pub fn foreign_listener(&self) -> Option<Vec<portd_core::sys::Holder>> {
        match ownership::binding(&self.entry, false) {
            Binding::Foreign(holders) => Some(holders),
            _ => None,
        }
    }
}

/// Whether an entry's lease is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its owner is running.
    Active,
    /// No owner, or the owner is gone: the port is kept for the project.
    Idle,
    /// The owner could not be checked (treated as active).
    Unknown,
}

impl State {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Idle => "idle",
            State::Unknown => "unknown",
        }
    }

    /// The state of `e` now.
    pub fn of(e: &Entry) -> State {
        match e.owner.map(|o| o.liveness()) {
            None | Some(Liveness::Dead) => State::Idle,
            Some(Liveness::Alive) => State::Active,
            Some(Liveness::Unknown) => State::Unknown,
        }
    }
}

/// An entry with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The entry.
    pub entry: Entry,
    /// Its state when listed.
    pub state: State,
}

/// What `cleanup` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Entries whose dead owner was cleared (they keep their port).
    pub reclaimed: Vec<String>,
    /// Idle entries dropped for exceeding `idle_ttl`.
    pub expired: Vec<String>,
}

/// Per-range figures for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeStatus {
    /// The range.
    pub range: PortRange,
    /// Ports that may be handed out (not excluded).
    pub usable: usize,
    /// Entries with an active owner.
    pub active: usize,
    /// Idle entries.
    pub idle: usize,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// One row per configured range.
    pub ranges: Vec<RangeStatus>,
    /// Entries outside every configured range (after a configuration change).
    pub outside: usize,
    /// Size of the registry file in bytes.
    pub file_bytes: u64,
}

/// The registry: a directory holding `registry.redb` and `registry.lock`.
///
/// `Registry` is `Send + Sync`: share one handle between threads (behind an
/// `Arc`, or by reference from scoped threads). Concurrent `get`s of one
/// handle share write transactions; any number of handles and processes
/// may use one registry at once.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    config: Config,
    exclusions: Exclusions,
    inproc: parking_lot::Mutex<()>,
    group: Group,
}

// `Registry` is shared between threads; keep it so.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn unknown(key: &str) -> Error {
    Error::new(ErrorKind::UnknownProject, format!("unknown project `{}`", display_name(key)))
        .with_hint("`portd ls` lists the projects that have a port")
}

fn decode_err(e: record::DecodeError) -> Error {
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
        let inproc = parking_lot::Mutex::new(());
        Ok(Registry { dir, config, exclusions, inproc, group: Group::default() })
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
    fn locked<T>(&self, f: impl FnOnce(&redb::Database, &touch::Log) -> Result<T>) -> Result<T> {
        let _inproc = self.inproc.lock();
        let _lock = lock::acquire(&self.dir, self.config.lock_timeout, self.config.shared)?;
        let log = touch::read(&self.dir, self.config.shared)?;
        let path = self.path();
        db::contain(&path, || {
            let db = db::open(&self.dir, self.config.shared)?;
            let out = f(&db, &log)?;
            db.close().map_err(db_err)?;
            Ok(out)
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.locked(|db, log| {
            let wtx = db.begin_write().map_err(db_err)?;
            let out = {
                let mut tx = Tx::new(&wtx, self)?;
                tx.fold(&log.touches)?;
                f(&mut tx)?
            };
            wtx.commit().map_err(db_err)?;
            if log.pending {
                touch::clear(&self.dir);
            }
            Ok(out)
        })
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let _inproc = self.inproc.lock();
        let _lock = lock::acquire(&self.dir, self.config.lock_timeout, self.config.shared)?;
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
    pub fn get_many<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<u16>> {
        let projects =
            names.iter().map(|n| Project::name(n.as_ref())).collect::<Result<Vec<_>>>()?;
        let opts = GetOptions::default();
        self.write(|tx| {
            projects.iter().map(|p| tx.get(p.key(), &opts).map(|a| a.entry.port)).collect()
        })
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
        // The common case, an existing entry asked for as it is, is a read
        // and a touch appended to the touch log.
        let mut known = None;
        if opts.owner.is_none() && !opts.require_free {
            let hit = self.read(|rtx| {
                let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
                let Some(v) = entries.get(project.key()).map_err(db_err)? else {
                    return Ok(None);
                };
                let mut e = record::decode(project.key(), v.value()).map_err(decode_err)?;
                self.usable_by_me(&e)?;
                if self.moves(&e, opts).is_some() {
                    return Ok(None);
                }
                // Always later than the entry's time, even within its
                // millisecond: a `get` answered from an entry changes it,
                // so `undo_get` of the lease that created it keeps it.
                let now = now_ms().max(e.last_used_ms + 1);
                let logged = touch::append(&self.dir, self.config.shared, project.key(), now)?;
                // Folded by the next write; past its size, by this call.
                let fold = logged.is_some_and(|size| size > touch::FOLD_AT);
                if logged.is_some() {
                    e.last_used_ms = now;
                }
                Ok(Some((e, fold)))
            })?;
            match hit {
                Some((e, false)) => {
                    let previous = Previous { entry: Some(e.clone()), ..Previous::default() };
                    return Ok(Allocation::kept(e, previous));
                }
                Some((e, true)) => known = Some(e),
                None => {}
            }
        }
        // Concurrent callers of this process share one transaction.
        let done = self.group.submit(project.key(), opts, |leader| {
            self.locked(|db, log| {
                let mut log = Some(log);
                loop {
                    let batch = leader.take();
                    if batch.is_empty() {
                        return Ok(());
                    }
                    // Folded (and emptied) by the first batch.
                    leader.answer(self.run_batch(db, batch, log.take())?);
                }
            })
        });
        match (done, known) {
            // A read-only registry still answers for the projects it holds;
            // only their `last_used` stays as it was.
            (Err(e), Some(entry)) if e.is_unwritable() => {
                let previous = Previous { entry: Some(entry.clone()), ..Previous::default() };
                Ok(Allocation::kept(entry, previous))
            }
            (done, _) => done,
        }
    }

    /// Runs `batch` in one write transaction. A request that fails gets its
    /// error, and the transaction is run again without it, so that the
    /// others' allocations never include its partial changes.
    fn run_batch(
        &self,
        db: &redb::Database,
        mut batch: Vec<Request>,
        log: Option<&touch::Log>,
    ) -> Result<Vec<(u64, Result<Allocation>)>> {
        let mut answers = Vec::with_capacity(batch.len());
        let empty = touch::Log::default();
        let log = log.unwrap_or(&empty);
        while !batch.is_empty() {
            let wtx = db.begin_write().map_err(db_err)?;
            let mut done = Vec::with_capacity(batch.len());
            let mut failed = None;
            {
                let mut tx = Tx::new(&wtx, self)?;
                tx.fold(&log.touches)?;
                for (i, r) in batch.iter().enumerate() {
                    match tx.get(&r.key, &r.opts) {
                        Ok(a) => done.push((r.id, Ok(a))),
                        Err(e) => {
                            failed = Some((i, e));
                            break;
                        }
                    }
                }
            }
            match failed {
                None => {
                    wtx.commit().map_err(db_err)?;
                    if log.pending {
                        touch::clear(&self.dir);
                    }
                    answers.extend(done);
                    break;
                }
                Some((i, e)) => {
                    wtx.abort().map_err(db_err)?;
                    answers.push((batch.remove(i).id, Err(e)));
                }
            }
        }
        Ok(answers)
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
        self.write(|tx| projects.iter().map(|p| tx.get(p.key(), &opts)).collect())
    }

    /// The exact port asked for, and whether it comes from the
    /// `PORTD_PORT` pin: `--port`, else the pin, unless an explicit
    /// `--range` or `--move` asks for something else (a flag beats the
    /// environment).
    fn wanted_port(&self, key: &str, opts: &GetOptions) -> Option<(u16, bool)> {
        if let Some(p) = opts.port {
            return Some((p, false));
        }
        if opts.range.is_some() || opts.move_port {
            return None;
        }
        self.config.pinned_port_for(key).map(|p| (p, true))
    }

    /// Why an existing entry cannot be kept as it is for `opts`, if it
    /// cannot. `PORTD_RANGE` is not a reason: it chooses the range of new
    /// allocations only.
    fn moves(&self, e: &Entry, opts: &GetOptions) -> Option<MoveReason> {
        let in_range = self.config.ranges.by_name(&e.range).is_some_and(|r| r.contains(e.port));
        if !in_range {
            return Some(MoveReason::OutsideRange);
        }
        if let Some(why) = self.exclusions.reason(e.port) {
            return Some(MoveReason::Excluded(why.to_string()));
        }
        match self.wanted_port(&e.project, opts) {
            Some((p, false)) if p != e.port => return Some(MoveReason::Asked),
            Some((p, true)) if p != e.port => return Some(MoveReason::Pinned),
            _ => {}
        }
        match &opts.range {
            Some(r) if *r != e.range => Some(MoveReason::Range(r.clone())),
            _ => None,
        }
    }

    /// Refuses another user's entry in a shared registry: its port is for
    /// that user's server, so handing it to a second user would put two
    /// servers on one port. (Reading it, with `show` or `ls`, is fine.)
    fn usable_by_me(&self, e: &Entry) -> Result<()> {
        let me = portd_core::sys::euid();
        if !self.config.shared || e.uid == me {
            return Ok(());
        }
        Err(Error::permission(format!(
            "project `{}` belongs to {} in this shared registry; its port is for that user's server",
            e.display_name(),
            user_label(e.uid)
        ))
        .with_hint(format!(
            "use a project name of your own; `portd show {}` prints this one's port",
            e.display_name()
        )))
    }

    /// Ends an active lease: the entry goes idle and keeps its port. Does
    /// nothing if the lease has already passed to another owner or the
    /// entry was released.
    pub fn end_lease(&self, project: &Project, owner: Owner) -> Result<bool> {
        self.write(|tx| {
            let Some(mut e) = tx.entry(project.key())? else {
                return Ok(false);
            };
            if e.owner != Some(owner) {
                return Ok(false);
            }
            let old = e.clone();
            e.owner = None;
            e.child_pid = None;
            e.last_used_ms = now_ms();
            tx.put(&e, Some(&old))?;
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
                    let idle =
                        Entry { owner: None, child_pid: None, last_used_ms: tx.now, ..e.clone() };
                    tx.put(&idle, Some(&e))?;
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

    /// Frees every idle entry.
    pub fn release_idle(&self) -> Result<Vec<Entry>> {
        self.write(|tx| {
            // Only the caller's own (all of them, for root).
            let idle: Vec<Entry> = tx
                .all_entries()?
                .into_iter()
                .filter(|e| State::of(e) == State::Idle && guard(e, "release").is_ok())
                .collect();
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

    /// Empties the registry, first moving the current file aside to
    /// `registry.redb.bak-<unix seconds>`; keeps the newest
    /// [`RESET_BACKUPS_KEPT`] backups and removes older ones, and removes
    /// the touch log (whatever it is: one that every command refuses, too).
    /// Refused while an entry has a running owner, unless `force`. Returns
    /// the backup's path.
    pub fn reset(&self, force: bool) -> Result<Option<PathBuf>> {
        let _inproc = self.inproc.lock();
        let _lock = lock::acquire(&self.dir, self.config.lock_timeout, self.config.shared)?;
        let path = self.path();
        if !home::check_file(&path, self.config.shared)? {
            touch::remove_unsafe(&self.dir, self.config.shared)?;
            return Ok(None);
        }
        let read = db::contain(&path, || {
            let db = db::open_read(&self.dir, self.config.shared)?;
            let entries = read_entries(&db.begin_read()?)?;
            db.close()?;
            Ok(entries)
        });
        let entries = match read {
            Ok(entries) => entries,
            // A damaged private registry can still be emptied (it is kept
            // as the backup); nothing in it can be checked.
            Err(e) if e.kind() == ErrorKind::Damaged && !self.config.shared => Vec::new(),
            Err(e) => return Err(e),
        };
        if self.config.shared {
            // Emptying a shared registry releases everyone's entries.
            entries.iter().try_for_each(|e| guard(e, "reset"))?;
        }
        let busy: Vec<String> = entries
            .iter()
            .filter_map(|e| in_use(e).map(|who| format!("`{}` ({who})", e.display_name())))
            .collect();
        if !force && !busy.is_empty() {
            let shown = if busy.len() > 3 {
                format!("{}, … ({} in all)", busy[..3].join(", "), busy.len())
            } else {
                busy.join(", ")
            };
            return Err(Error::new(
                ErrorKind::PortBusy,
                format!("refusing to empty the registry: in use by running servers: {shown}"),
            )
            .with_hint(
                "stop them first, or pass `--force` to empty it anyway (they keep their ports until they stop)",
            ));
        }
        // A touch log that every other command refuses goes (the times
        // it may hold are moot in an empty registry).
        touch::remove_unsafe(&self.dir, self.config.shared)?;
        let secs = now_ms() / 1000;
        // Named after the newest backup of this second, so that names sort
        // as the backups were made even after older ones were rotated away.
        let last = (self.backups().into_iter())
            .filter(|((s, _), _)| *s == secs)
            .map(|((_, n), _)| n)
            .max();
        let backup = self.dir.join(match last {
            None => format!("{}.bak-{secs}", home::REGISTRY_FILE),
            Some(n) => format!("{}.bak-{secs}-{}", home::REGISTRY_FILE, n + 1),
        });
        // The backup is a second name of the old file, made before the new
        // registry replaces it in one rename: a failure or a crash at any
        // point leaves the old registry in place or the new one.
        let mut backed_up = false;
        let swapped = db::contain(&path, || {
            db::replace_with_fresh(
                &self.dir,
                &path,
                self.config.shared,
                |_| Ok(()),
                |old| {
                    std::fs::hard_link(old, &backup).map_err(|e| {
                        Error::io(format!("cannot keep a backup at `{}`", backup.display()), e)
                    })?;
                    backed_up = true;
                    Ok(())
                },
            )
        });
        if swapped.is_err() && backed_up {
            // The old registry is still in place: drop its second name.
            let _ = std::fs::remove_file(&backup);
        }
        swapped?;
        touch::remove(&self.dir);
        self.rotate_backups();
        Ok(Some(backup))
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

    /// The reset backups (`registry.redb.bak-<secs>[-<n>]`), oldest first.
    fn backups(&self) -> Vec<((u64, u64), PathBuf)> {
        let prefix = format!("{}.bak-", home::REGISTRY_FILE);
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut backups: Vec<((u64, u64), PathBuf)> = dir
            .filter_map(|d| d.ok())
            .filter_map(|d| {
                let name = d.file_name().into_string().ok()?;
                let rest = name.strip_prefix(&prefix)?;
                let (secs, n) = rest.split_once('-').unwrap_or((rest, "0"));
                let order = (secs.parse().ok()?, n.parse().ok()?);
                d.file_type().ok()?.is_file().then(|| (order, d.path()))
            })
            .collect();
        backups.sort();
        backups
    }

    /// Removes all but the newest [`RESET_BACKUPS_KEPT`] reset backups.
    fn rotate_backups(&self) {
        let backups = self.backups();
        let old = backups.len().saturating_sub(RESET_BACKUPS_KEPT);
        for (_, p) in &backups[..old] {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn read_entries(rtx: &redb::ReadTransaction) -> Result<Vec<Entry>> {
    let entries = rtx.open_table(ENTRIES).map_err(db_err)?;
    collect_entries(&entries)
}

fn collect_entries(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        out.push(record::decode(k.value(), v.value()).map_err(decode_err)?);
    }
    Ok(out)
}

/// One write transaction with its tables open.
struct Tx<'t> {
    entries: redb::Table<'t, &'static str, &'static [u8]>,
    ports: redb::Table<'t, u16, &'static str>,
    history: redb::Table<'t, &'static str, u16>,
    lru: redb::Table<'t, (u64, &'static str), ()>,
    meta: redb::Table<'t, &'static str, u64>,
    reg: &'t Registry,
    now: u64,
    /// Entries evicted by the allocation under way.
    evicted: Vec<Entry>,
    /// Scan cursors moved by the allocation under way: `(meta key, before,
    /// after)`.
    cursors: Vec<(String, Option<u64>, u64)>,
    /// Keys answered by this transaction so far (a `get_many` batch, or a
    /// group-commit batch of several callers): never evicted by a later
    /// request of the same transaction, so that a batch is all or nothing.
    claimed: std::collections::HashSet<String>,
}

impl<'t> Tx<'t> {
    fn new(wtx: &'t redb::WriteTransaction, reg: &'t Registry) -> Result<Self> {
        Ok(Tx {
            entries: wtx.open_table(ENTRIES).map_err(db_err)?,
            ports: wtx.open_table(PORTS).map_err(db_err)?,
            history: wtx.open_table(HISTORY).map_err(db_err)?,
            lru: wtx.open_table(LRU).map_err(db_err)?,
            meta: wtx.open_table(META).map_err(db_err)?,
            reg,
            now: now_ms(),
            evicted: Vec::new(),
            cursors: Vec::new(),
            claimed: std::collections::HashSet::new(),
        })
    }

    fn entry(&self, key: &str) -> Result<Option<Entry>> {
        match self.entries.get(key).map_err(db_err)? {
            Some(v) => record::decode(key, v.value()).map(Some).map_err(decode_err),
            None => Ok(None),
        }
    }

    fn all_entries(&self) -> Result<Vec<Entry>> {
        collect_entries(&self.entries)
    }

    fn port_holder(&self, port: u16) -> Result<Option<String>> {
        Ok(self.ports.get(port).map_err(db_err)?.map(|k| k.value().to_owned()))
    }

    /// Writes `e`, replacing `old` (the same project's previous state).
    fn put(&mut self, e: &Entry, old: Option<&Entry>) -> Result<()> {
        if let Some(holder) = self.port_holder(e.port)?
            && holder != e.project
        {
            // The allocator never picks a held port; refuse rather than break
            // the one-port-one-entry invariant.
            return Err(Error::damaged(format!(
                "registry damaged: port {} indexed for `{holder}` while writing `{}`",
                e.port, e.project
            )));
        }
        if let Some(o) = old {
            if o.port != e.port {
                self.ports.remove(o.port).map_err(db_err)?;
            }
            if o.last_used_ms != e.last_used_ms {
                self.lru.remove((o.last_used_ms, o.project.as_str())).map_err(db_err)?;
            }
        }
        self.entries.insert(e.project.as_str(), record::encode(e).as_slice()).map_err(db_err)?;
        self.ports.insert(e.port, e.project.as_str()).map_err(db_err)?;
        self.lru.insert((e.last_used_ms, e.project.as_str()), ()).map_err(db_err)?;
        self.history.insert(e.project.as_str(), e.port).map_err(db_err)?;
        Ok(())
    }

    /// Sets (or, with `None`, deletes) `key`'s history row.
    fn set_history(&mut self, key: &str, port: Option<u16>) -> Result<()> {
        match port {
            Some(p) => self.history.insert(key, p).map_err(db_err).map(drop),
            None => self.history.remove(key).map_err(db_err).map(drop),
        }
    }

    fn remove(&mut self, e: &Entry) -> Result<()> {
        self.entries.remove(e.project.as_str()).map_err(db_err)?;
        self.ports.remove(e.port).map_err(db_err)?;
        self.lru.remove((e.last_used_ms, e.project.as_str())).map_err(db_err)?;
        Ok(())
    }

    /// Applies the touch log: each touched entry's `last_used` becomes
    /// the later of the two (and its `lru` row moves with it).
    fn fold(&mut self, touches: &std::collections::HashMap<String, u64>) -> Result<()> {
        for (key, &ms) in touches {
            if let Some(e) = self.entry(key)?
                && ms > e.last_used_ms
            {
                let next = Entry { last_used_ms: ms, ..e.clone() };
                self.put(&next, Some(&e))?;
            }
        }
        Ok(())
    }

    /// Drops idle entries unused for longer than `idle_ttl`.
    fn expire(&mut self) -> Result<Vec<Entry>> {
        let cutoff = self.now.saturating_sub(self.reg.config.idle_ttl.as_millis() as u64);
        let mut old = Vec::new();
        for row in self.lru.range::<(u64, &str)>(..(cutoff, "")).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            old.push(k.value().1.to_owned());
        }
        let mut dropped = Vec::new();
        for key in old {
            if let Some(e) = self.entry(&key)?
                && State::of(&e) == State::Idle
                // In a shared registry, only its user (or root) drops it.
                && guard(&e, "expire").is_ok()
            {
                self.remove(&e)?;
                dropped.push(e);
            }
        }
        Ok(dropped)
    }

    /// The project's allocation as [`Tx::get_unclaimed`] makes it; the key
    /// is then claimed for the rest of the transaction.
    fn get(&mut self, key: &str, opts: &GetOptions) -> Result<Allocation> {
        let a = self.get_unclaimed(key, opts)?;
        self.claimed.insert(key.to_owned());
        Ok(a)
    }

    fn get_unclaimed(&mut self, key: &str, opts: &GetOptions) -> Result<Allocation> {
        let cfg = &self.reg.config;
        if let Some(r) = &opts.range {
            cfg.check_range(r)?;
        }
        let existing = self.entry(key)?;
        let history = self.history_port(key)?;
        self.evicted.clear();
        self.cursors.clear();
        let mut moved_because = None;
        if let Some(e) = &existing {
            self.reg.usable_by_me(e)?;
            if opts.owner.is_some() {
                guard(e, "lease")?;
            }
            let live = e.owner.filter(|o| o.liveness() != Liveness::Dead);
            if let (Some(cur), Some(new)) = (live, opts.owner)
                && cur != new
            {
                return Err(Error::new(
                    ErrorKind::PortBusy,
                    format!(
                        "project `{}` is already leased by pid {} on port {}",
                        e.display_name(),
                        cur.pid,
                        e.port
                    ),
                )
                .with_hint("stop that process first, or use another project name"));
            }
            let mut why = self.reg.moves(e, opts);
            // A running server keeps a port the configuration no longer
            // allows (it moves once it stops); only a request moves it now.
            if matches!(why, Some(MoveReason::Excluded(_) | MoveReason::OutsideRange))
                && live.is_some_and(|o| Some(o) != opts.owner)
            {
                why = None;
            }
            // A server started with the project's port in its environment
            // is the project's: a plain `--free` records it as the owner.
            let mut adopted = None;
            // The binders found, when foreign: the error names them without
            // a second scan of `/proc`.
            let mut foreign_binders = None;
            if opts.require_free && why.is_none() {
                match ownership::binding(e, opts.udp) {
                    Binding::Adoptable(o) if opts.owner.is_none() => adopted = Some(o),
                    Binding::Adoptable(_) => foreign_binders = Some(None),
                    Binding::Foreign(holders) => foreign_binders = Some(Some(holders)),
                    Binding::Free | Binding::Denied | Binding::Own => {}
                }
            }
            let foreign = foreign_binders.is_some();
            if let Some(binders) = foreign_binders
                && !opts.move_port
            {
                return Err(match binders {
                    Some(holders) => ownership::busy_error_for(e.port, &holders),
                    None => busy_error(e.port, opts.udp),
                });
            }
            if why.is_none() && !foreign {
                let mut next = e.clone();
                // Always later, as a touch is (see `get_with`).
                next.last_used_ms = self.now.max(e.last_used_ms + 1);
                if opts.owner.is_some() {
                    next.owner = opts.owner;
                    next.command = opts.command.clone();
                    next.child_pid = opts.child_pid;
                }
                if let Some(o) = adopted {
                    next.owner = Some(o);
                    next.command = portd_core::sys::cmdline(o.pid);
                    next.child_pid = None;
                }
                if next != *e {
                    self.put(&next, Some(e))?;
                }
                let previous = Previous { entry: Some(e.clone()), history, cursors: Vec::new() };
                return Ok(Allocation::kept(next, previous));
            }
            if let Some(o) = live
                && Some(o) != opts.owner
            {
                return Err(Error::new(
                    ErrorKind::PortBusy,
                    format!(
                        "project `{}` is active (pid {}); it cannot move now",
                        e.display_name(),
                        o.pid
                    ),
                )
                .with_hint("stop it first, then ask again"));
            }
            guard(e, "move")?;
            self.remove(e)?;
            moved_because = Some(why.unwrap_or(MoveReason::Bound));
        }
        let expired = self.expire()?;
        // A move never lands back on the port it leaves.
        let avoid = existing.as_ref().filter(|_| opts.move_port).map(|e| e.port);
        let (port, range) = match self.reg.wanted_port(key, opts) {
            Some((p, false)) => self.exact(key, p, opts)?,
            Some((p, true)) => self.exact(key, p, opts).map_err(pinned_error)?,
            None => self.pick(key, opts, avoid)?,
        };
        let e = Entry {
            project: key.to_owned(),
            port,
            range,
            owner: opts.owner,
            uid: portd_core::sys::euid(),
            created_ms: existing.as_ref().map_or(self.now, |e| e.created_ms),
            last_used_ms: self.now,
            command: opts.command.clone(),
            child_pid: opts.child_pid,
        };
        self.put(&e, None)?;
        let moved_from = existing.as_ref().map(|x| x.port).filter(|&p| p != port);
        Ok(Allocation {
            entry: e,
            fresh: existing.is_none(),
            moved_from,
            moved_because: moved_from.and(moved_because),
            evicted: std::mem::take(&mut self.evicted),
            expired,
            previous: Previous {
                entry: existing,
                history,
                cursors: std::mem::take(&mut self.cursors),
            },
        })
    }

    fn probe_opts(opts: &GetOptions, reuse: bool) -> ProbeOptions {
        ProbeOptions { udp: opts.udp, reuse }
    }

    /// Grants exactly `port`, or says who has it.
    fn exact(&mut self, key: &str, port: u16, opts: &GetOptions) -> Result<(u16, String)> {
        let cfg = &self.reg.config;
        // An exact port is granted in whatever range holds it, unless
        // `--range` asks for one (`PORTD_RANGE` only chooses where new
        // ports are looked for).
        let want = opts.range.as_deref();
        let range = cfg.ranges.containing(port).ok_or_else(|| {
            Error::usage(format!(
                "port {port} is outside every configured range ({})",
                cfg.ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            ))
            .with_hint("pick a port inside a range, or add a `[[range]]` to the config file")
        })?;
        if let Some(w) = want
            && w != range.name
        {
            return Err(Error::usage(format!("port {port} is not in range `{w}`")));
        }
        if let Some(why) = self.reg.exclusions.reason(port) {
            return Err(Error::usage(format!("port {port} is excluded: {why}"))
                .with_hint("pick another port"));
        }
        if let Some(holder) = self.port_holder(port)? {
            return Err(Error::new(
                ErrorKind::PortBusy,
                format!("port {port} is held by project `{}`", display_name(&holder)),
            )
            .with_hint(format!(
                "release it with `portd release {}`, or pick another port",
                display_name(&holder)
            )));
        }
        let reuse = self.history_port(key)? == Some(port);
        match ownership::allocation_probe(port, opts.udp, reuse) {
            Verdict::Free => Ok((port, range.name.clone())),
            Verdict::Denied => {
                Err(Error::usage(format!("port {port} cannot be bound by this user"))
                    .with_hint("pick a port above 1023"))
            }
            Verdict::Busy => {
                // A running server is granted the port it listens on when
                // its pid (or an ancestor's) is the owner asked for.
                let holders = portd_core::sys::holders(port, opts.udp);
                match opts.owner {
                    Some(o) if ownership::serves(o.pid, &holders) => Ok((port, range.name.clone())),
                    _ => Err(ownership::busy_error_for(port, &holders)),
                }
            }
        }
    }

    fn history_port(&self, key: &str) -> Result<Option<u16>> {
        Ok(self.history.get(key).map_err(db_err)?.map(|v| v.value()))
    }

    /// Whether `port` may be taken now: free in the registry, not excluded, bindable.
    fn usable(&self, port: u16, avoid: Option<u16>, opts: &ProbeOptions) -> Result<bool> {
        Ok(Some(port) != avoid
            && self.reg.exclusions.reason(port).is_none()
            && self.port_holder(port)?.is_none()
            && probe(port, *opts) == Verdict::Free)
    }

    /// The candidate order of the spec: history, preferred port, scan from
    /// the rotating cursor range by range, then LRU eviction of idle entries.
    fn pick(&mut self, key: &str, opts: &GetOptions, avoid: Option<u16>) -> Result<(u16, String)> {
        let cfg = &self.reg.config;
        let want = opts.range.as_deref().or(cfg.default_range.as_deref());
        let eligible: Vec<PortRange> = cfg.ranges.eligible(want).cloned().collect();
        let plain = Self::probe_opts(opts, false);
        if let Some(h) = self.history_port(key)?
            && let Some(r) = eligible.iter().find(|r| r.contains(h))
            && self.usable(h, avoid, &Self::probe_opts(opts, true))?
        {
            return Ok((h, r.name.clone()));
        }
        if let Some(first) = eligible.first() {
            let p = first.port_at(preferred_offset(key, first.len()));
            if self.usable(p, avoid, &plain)? {
                return Ok((p, first.name.clone()));
            }
        }
        for r in &eligible {
            if let Some(p) = self.scan(r, avoid, &plain)? {
                return Ok((p, r.name.clone()));
            }
        }
        if let Some(found) = self.evict(&eligible, avoid, &plain)? {
            return Ok(found);
        }
        if let Some(e) = unbindable(&eligible, opts.udp) {
            return Err(e);
        }
        Err(Error::new(
            ErrorKind::NoFreePort,
            format!(
                "no free port: every port of {} is held by an active project, bound, or excluded",
                eligible.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_hint(
            "free ports with `portd release --idle`, or add a `[[range]]` to the config file",
        ))
    }

    /// Scans `r` from its persisted cursor; the bitmap marks each port as
    /// it is visited, so each is looked at once. Candidates are checked one
    /// by one (index lookup, exclusions, probe), so the cost grows with the
    /// number of candidates tried, not with the size of the registry.
    fn scan(
        &mut self,
        r: &PortRange,
        avoid: Option<u16>,
        opts: &ProbeOptions,
    ) -> Result<Option<u16>> {
        let bits = AtomicBitmap::new(r.len());
        let cursor_key = format!("cursor:{}", r.name);
        let cursor = self.meta.get(cursor_key.as_str()).map_err(db_err)?.map_or(0, |v| v.value());
        bits.set_cursor(cursor as usize);
        while let Some(bit) = bits.claim_next() {
            let p = r.port_at(bit);
            if self.usable(p, avoid, opts)? {
                let now = bits.cursor() as u64;
                let was = self.meta.insert(cursor_key.as_str(), now).map_err(db_err)?;
                let was = was.map(|v| v.value());
                self.cursors.push((cursor_key, was, now));
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Evicts the least recently used idle entry whose port is bindable.
    fn evict(
        &mut self,
        eligible: &[PortRange],
        avoid: Option<u16>,
        opts: &ProbeOptions,
    ) -> Result<Option<(u16, String)>> {
        let mut order = Vec::new();
        for row in self.lru.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            order.push(k.value().1.to_owned());
        }
        for key in order {
            let Some(e) = self.entry(&key)? else { continue };
            let Some(r) = eligible.iter().find(|r| r.contains(e.port)) else {
                continue;
            };
            if State::of(&e) != State::Idle
                || self.claimed.contains(&key)
                || guard(&e, "evict").is_err()
                || Some(e.port) == avoid
                || self.reg.exclusions.reason(e.port).is_some()
                // Probed as a server re-binding it would: TIME_WAIT left by
                // the evicted project's server must not block the reclaim.
                || probe(e.port, ProbeOptions { reuse: true, ..*opts }) != Verdict::Free
            {
                continue;
            }
            self.remove(&e)?;
            let found = (e.port, r.name.clone());
            self.evicted.push(e);
            return Ok(Some(found));
        }
        Ok(None)
    }
}

/// "no free port" when this user may bind no port of `eligible` at all
/// (`EACCES`: privileged ports); `None` when some port is bindable.
fn unbindable(eligible: &[PortRange], udp: bool) -> Option<Error> {
    let all_denied = !eligible.is_empty()
        && eligible.iter().all(|r| ownership::denied_prefix(r.start, r.end, udp) == r.len());
    all_denied.then(|| {
        Error::new(
            ErrorKind::NoFreePort,
            format!(
                "no free port: this user cannot bind any port of {}",
                eligible.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_hint(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: configure a range above 1023",
        )
    })
}

/// `pid N (`command`)` of an entry whose owner is running (or cannot be
/// checked), else `None`.
fn in_use(e: &Entry) -> Option<String> {
    if State::of(e) == State::Idle {
        return None;
    }
    let o = e.owner?;
    let cmd = e.command.clone().or_else(|| portd_core::sys::cmdline(o.pid)).map(|c| c.join(" "));
    Some(match cmd {
        Some(c) if !c.is_empty() => format!("pid {} (`{c}`)", o.pid),
        _ => format!("pid {}", o.pid),
    })
}

/// An error about the port `PORTD_PORT` pins, naming the pin as the cause.
fn pinned_error(e: Error) -> Error {
    Error::new(e.kind(), format!("`PORTD_PORT` pins a port this project cannot have: {}", e.message()))
        .with_hint(
            "unset `PORTD_PORT` (exported by `portd env`), or pass `--port`, `--range` or `--move`, which take precedence",
        )
}

/// `uid N (`name`)`, or `uid N` when the name is unknown.
fn user_label(uid: u32) -> String {
    match user_name(uid) {
        Some(n) => format!("uid {uid} (`{n}`)"),
        None => format!("uid {uid}"),
    }
}

/// The login name of `uid`, from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// Refuses to `action` (release, move, lease) an entry another user made:
/// only that user, or root, may (this matters in a shared registry).
fn guard(e: &Entry, action: &str) -> Result<()> {
    let me = portd_core::sys::euid();
    if e.uid == me || me == 0 {
        return Ok(());
    }
    Err(Error::permission(format!(
        "project `{}` belongs to uid {}; only that user or root can {action} it",
        e.display_name(),
        e.uid
    ))
    .with_hint("ask its owner, or use a project name of your own"))
}

/// How long ago `ms` was, for display.
pub fn age(ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(ms))
}
