//! `doctor`: a health check of the registry and its surroundings, and the
//! one repair portd makes on request (a damaged file moved aside).
//!
//! The registry file is examined through a private copy: redb's integrity
//! check needs a writable open, and a writable open may change the file,
//! so the user's file stays byte for byte as it was whatever is found.

use crate::db::{
    self, BITMAPS, ENTRIES, EVENTS, HISTORY, LRU, META, PORTS, SERVER_STATE, SERVERS, db_err,
};
use crate::definition::{self, ServerDef};
use crate::error::{Error, ErrorKind, Result};
use crate::ownership::bound_by_other;
use crate::record::{self, Entry};
use crate::registry::now_ms;
use crate::{Config, home, lock, touch};
use crate::{Registry, State};
use portd_core::{Liveness, sys};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// All is well.
    Ok,
    /// Works, but something deserves attention.
    Warn,
    /// Broken: portd refuses (or would refuse) to work this way.
    Error,
}

impl Severity {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// One thing `doctor` checked, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which check: `config`, `ephemeral`, `privileged`, `location`,
    /// `filesystem`, `lock`, `touch`, `schema`, `integrity`, `records`,
    /// `servers`, `ranges`, `stale`, `bound`.
    pub check: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// For errors, the kind an operation would fail with.
    pub kind: Option<ErrorKind>,
    /// What was found.
    pub message: String,
    /// How to fix it, when something needs fixing.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Finding { check, severity: Severity::Ok, kind: None, message: message.into(), fix: None }
    }

    fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            check,
            severity: Severity::Warn,
            kind: None,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// An error finding from the error an operation would report.
    pub fn error(check: &'static str, e: &Error) -> Self {
        Finding {
            check,
            severity: Severity::Error,
            kind: Some(e.kind()),
            message: e.message().to_owned(),
            fix: e.hint().map(str::to_owned),
        }
    }
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// In the order checked.
    pub findings: Vec<Finding>,
    /// Whether the registry file is damaged (what `--repair` repairs).
    pub damaged: bool,
    /// Whether the touch log is one that every command refuses (what
    /// `--repair` removes, with [`remove_unsafe_touch_log`]).
    pub touch_refused: bool,
}

impl Report {
    /// The first error, if any: its kind gives the exit code.
    pub fn first_error(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.severity == Severity::Error)
    }
}

/// What `repair` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// Where the damaged file now is.
    pub moved_to: PathBuf,
    /// Entries rebuilt in the fresh registry: their owner is alive.
    pub rebuilt: Vec<String>,
    /// Idle entries kept as history: they get their old port back on
    /// their next `get` when it is still free.
    pub remembered: Vec<String>,
    /// Entries that could not be read back; `None` when the file could not
    /// be read at all, so that its entries, all lost, cannot be counted.
    pub lost: Option<usize>,
    /// Managed servers whose definitions were carried over (user data);
    /// their projects keep their entries, and so their ports. Their
    /// recorded states and events are not kept.
    pub servers: Vec<String>,
    /// Definitions that could not be read back.
    pub lost_servers: usize,
}

impl Repaired {
    /// Whether the damaged file could be read at all (then its lost
    /// entries are counted).
    pub fn readable(&self) -> bool {
        self.lost.is_some()
    }
}

/// Examines the registry in `dir` under `config` (`config_error` is how
/// loading the configuration failed, if it did). Changes nothing.
pub fn examine(dir: &Path, config: &Config, config_error: Option<&Error>) -> Report {
    let mut r = Report::default();
    r.findings.push(match config_error {
        Some(e) => Finding::error("config", e),
        None => Finding::ok("config", "configuration is valid"),
    });
    ephemeral(config, &mut r);
    privileged(config, &mut r);
    if !location(dir, config.shared, &mut r) {
        return r;
    }
    let _lock = match lock::acquire(dir, config.lock_timeout, config.shared) {
        Ok(l) => l,
        Err(e) => {
            r.findings.push(Finding::error("lock", &e));
            return r;
        }
    };
    touch_log(dir, config.shared, &mut r);
    let path = dir.join(home::REGISTRY_FILE);
    match home::check_file(&path, config.shared) {
        Ok(true) => {}
        Ok(false) => {
            r.findings.push(Finding::ok("integrity", "no registry file yet (made on first use)"));
            return r;
        }
        Err(e) => {
            r.findings.push(Finding::error("location", &e));
            return r;
        }
    }
    match examine_file(dir, &path) {
        Ok((mut entries, notes)) => {
            r.findings.extend(notes);
            // Uses not yet folded into the registry count, as in `ls`.
            if let Ok(log) = touch::read(dir, config.shared) {
                entries.iter_mut().for_each(|e| log.overlay(e));
            }
            contents(&entries, config, &mut r);
        }
        Err(e) => {
            r.damaged = e.kind() == ErrorKind::Damaged && !newer_schema(&e);
            let mut f = Finding::error("integrity", &e);
            if r.damaged {
                f.fix = Some(format!(
                    "run `portd doctor --repair` to move it aside and start a fresh registry \
                     (entries of running processes are rebuilt); the file is kept as `{}.damaged-<time>`",
                    path.display()
                ));
            }
            r.findings.push(f);
        }
    }
    r
}

/// Whether `e` refuses a registry written by a newer portd (which
/// `--repair` must leave alone) rather than a damaged one: told by the
/// [`NewerSchema`] kept as its source, never by its words.
fn newer_schema(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<NewerSchema>())
}

/// The schema version a registry file records, newer than this portd's:
/// the source of the error that refuses the file.
#[derive(Debug)]
struct NewerSchema(u64);

impl fmt::Display for NewerSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schema version {} is newer than {}", self.0, db::SCHEMA_VERSION)
    }
}

impl std::error::Error for NewerSchema {}

/// The schema version `database` records, if it can be read.
fn recorded_schema(database: &impl ReadableDatabase) -> Option<u64> {
    let tx = database.begin_read().ok()?;
    let meta = tx.open_table(META).ok()?;
    meta.get(db::SCHEMA_KEY).ok()?.map(|v| v.value())
}

/// `e`, a failed schema check of a file recording `recorded`, with
/// [`NewerSchema`] as its source when that version is newer than this
/// portd's.
fn mark_newer(e: Error, recorded: Option<u64>) -> Error {
    match recorded {
        Some(v) if v > db::SCHEMA_VERSION => e.with_source(NewerSchema(v)),
        _ => e,
    }
}

/// Directory and file: where, whose, which mode, which file system.
/// Returns whether the registry itself can be looked at.
fn location(dir: &Path, shared: bool, r: &mut Report) -> bool {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.findings.push(Finding::ok(
                "location",
                format!("no registry at `{}` yet (made on first use)", dir.display()),
            ));
            return false;
        }
        _ => {}
    }
    if let Err(e) = home::check_dir(dir, shared) {
        r.findings.push(Finding::error("location", &e));
        return false;
    }
    let mode = fs::metadata(dir).map(|m| m.mode() & 0o7777).unwrap_or(0o700);
    if shared {
        r.findings.push(Finding::ok(
            "location",
            format!("shared registry directory `{}`, mode {mode:o}", dir.display()),
        ));
    } else if mode & 0o077 != 0 {
        r.findings.push(Finding::warn(
            "location",
            format!("registry directory `{}` is readable by others (mode {mode:o})", dir.display()),
            format!("run `chmod 700 {}`", dir.display()),
        ));
    } else {
        r.findings.push(Finding::ok(
            "location",
            format!("registry directory `{}` is yours, mode {mode:o}", dir.display()),
        ));
    }
    let path = dir.join(home::REGISTRY_FILE);
    if let Ok(md) = fs::symlink_metadata(&path)
        && md.is_file()
        && !shared
        && md.mode() & 0o077 != 0
    {
        r.findings.push(Finding::warn(
            "location",
            format!("registry file is readable by others (mode {:o})", md.mode() & 0o777),
            format!("run `chmod 600 {}`", path.display()),
        ));
    }
    if !sys::can_write(dir) {
        r.findings.push(Finding::error(
            "location",
            &Error::new(
                ErrorKind::Permission,
                format!(
                    "registry directory `{}` cannot be written: ports can be read, not allocated",
                    dir.display()
                ),
            )
            .with_hint(crate::error::READ_ONLY_HINT),
        ));
    }
    match sys::network_fs(dir) {
        Some(fs) => r.findings.push(Finding::warn(
            "filesystem",
            format!("the registry is on a network file system ({fs}): file locks there may not keep two machines (or processes) apart"),
            "point `PORTD_HOME` at a local disk",
        )),
        None => r.findings.push(Finding::ok("filesystem", "the registry is on a local file system")),
    }
    true
}

/// The touch log: none, or a regular file that [`touch`] accepts (the
/// registry file's rules of owner and mode); in a shared registry, one the
/// group can write.
fn touch_log(dir: &Path, shared: bool, r: &mut Report) {
    let path = dir.join(touch::TOUCH_FILE);
    match touch::inspect(dir, shared) {
        Err(e) => {
            r.touch_refused = true;
            let mut f = Finding::error("touch", &e);
            f.fix = Some(match e.hint() {
                Some(h) => format!("run `portd doctor --repair` to remove it, or {h}"),
                None => "run `portd doctor --repair` to remove it".to_owned(),
            });
            r.findings.push(f);
        }
        Ok(Some(md)) if shared && md.mode() & 0o060 != 0o060 => r.findings.push(Finding::warn(
            "touch",
            format!(
                "touch log `{}` is not writable by the group (mode {:o}): other users' uses are not recorded",
                path.display(),
                md.mode() & 0o7777
            ),
            format!("run `chmod {:o} {}`", home::file_mode(true), path.display()),
        )),
        Ok(_) => {
            let n = touch::read(dir, shared).map_or(0, |log| log.touches.len());
            r.findings.push(Finding::ok(
                "touch",
                match n {
                    0 => "touch log: no uses waiting to be folded into the registry".to_owned(),
                    n => format!(
                        "touch log: uses of {n} project{} not yet folded into the registry",
                        if n == 1 { "" } else { "s" }
                    ),
                },
            ));
        }
    }
}

/// Removes a touch log that every command refuses (see [`Report::touch_refused`]):
/// a symlink (not what it points to), a FIFO or other non-regular file,
/// another user's file, one others can write. Returns why it was refused
/// (`is not a regular file (a FIFO)`), or `None` when nothing needed
/// removing. Only times of last use are lost.
pub fn remove_unsafe_touch_log(dir: &Path, config: &Config) -> Result<Option<String>> {
    let _lock = lock::acquire(dir, config.lock_timeout, config.shared)?;
    touch::remove_unsafe(dir, config.shared)
}

/// A private copy of the registry file, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    /// Beside the registry, or in the temporary directory when the
    /// registry's directory cannot be written.
    fn of(dir: &Path, path: &Path) -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{}.doctor-{}-{nanos}", home::REGISTRY_FILE, std::process::id());
        let mut last = None;
        for place in [dir.to_owned(), std::env::temp_dir()] {
            // A new file of ours (never an existing name or a planted link).
            let made = sys::create_new_nofollow(&place.join(&name), 0o600);
            let mut out = match made {
                Ok(f) => f,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let s = Scratch(place.join(&name));
            match fs::File::open(path).and_then(|mut f| std::io::copy(&mut f, &mut out)) {
                Ok(_) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| std::io::Error::other("no place to copy to"));
        Err(Error::io(format!("cannot copy `{}` to examine it", path.display()), e))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Opens a copy of the file, runs redb's integrity check and validates
/// every record and index row. Returns the entries and what was noticed.
fn examine_file(dir: &Path, path: &Path) -> Result<(Vec<Entry>, Vec<Finding>)> {
    if fs::metadata(path).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(Error::damaged(format!("registry damaged: `{}` is empty", path.display())));
    }
    let scratch = Scratch::of(dir, path)?;
    db::contain(path, || {
        // The schema first, read-only, so that a newer portd's file is named
        // as such rather than as damage; a file that needs recovery first is
        // checked on the recovered copy.
        db::peek_schema(path).map_err(|e| {
            let ro = redb::Database::builder().open_read_only(path);
            mark_newer(e, ro.ok().and_then(|ro| recorded_schema(&ro)))
        })?;
        let mut notes = Vec::new();
        let mut database = redb::Database::builder().open(&scratch.0).map_err(db_err)?;
        db::check_schema(&database).map_err(|e| mark_newer(e, recorded_schema(&database)))?;
        notes.push(schema(recorded_schema(&database)));
        match database.check_integrity() {
            Ok(true) => notes.push(Finding::ok("integrity", "redb integrity check passed")),
            Ok(false) => notes.push(Finding::ok(
                "integrity",
                "redb integrity check passed after recovery (the last writer did not close the file; the next operation recovers it)",
            )),
            Err(e) => return Err(db_err(e)),
        }
        let entries = validate(&database)?;
        notes.push(Finding::ok(
            "records",
            format!(
                "{} entr{} decoded; index and entries agree",
                entries.len(),
                plural_y(entries.len())
            ),
        ));
        notes.push(servers(&database, &entries)?);
        Ok((entries, notes))
    })
}

/// What the recorded schema version means for this portd.
fn schema(recorded: Option<u64>) -> Finding {
    let now = db::SCHEMA_VERSION;
    Finding::ok(
        "schema",
        match recorded {
            Some(v) if v == now => format!("registry schema {v}"),
            Some(2) => format!(
                "registry schema 2 (written before managed servers): read as it is; the first `portd add` upgrades it to {now}, which older portd versions refuse"
            ),
            Some(v) => format!(
                "registry schema {v}: read as it is; the next write upgrades it to {now}, which older portd versions refuse"
            ),
            None => "registry schema unknown".to_owned(),
        },
    )
}

/// The managed-server tables (absent from a registry of schema 2 or
/// older): every definition, state and event decodes, under a well-formed
/// key, and no event is numbered past the recorded sequence (the next
/// event would overwrite it); anything else is damage. A definition whose
/// project has no entry (it was released) still works, as its next start
/// allocates a port, but no port is reserved for it: a warning. A state
/// whose supervisor died is no problem: it reads as stopped.
fn servers(database: &redb::Database, entries: &[Entry]) -> Result<Finding> {
    let rtx = database.begin_read().map_err(db_err)?;
    let bad_key =
        |what: &str, key: &str| damaged(format!("{what} under a malformed project key `{key}`"));
    let mut defined = Vec::new();
    if let Some(t) = crate::servers::read_table(&rtx, SERVERS)? {
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            if !record::valid_key(k.value()) {
                return Err(bad_key("a server definition", k.value()));
            }
            definition::decode(k.value(), v.value()).map_err(|e| damaged(e.0))?;
            defined.push(k.value().to_owned());
        }
    }
    let (mut states, mut died) = (0, 0);
    if let Some(t) = crate::servers::read_table(&rtx, SERVER_STATE)? {
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            if !record::valid_key(k.value()) {
                return Err(bad_key("a server state", k.value()));
            }
            let s = crate::server_state::decode(k.value(), v.value()).map_err(|e| damaged(e.0))?;
            states += 1;
            if s.supervisor.is_some() && s.effective().phase != s.phase {
                died += 1;
            }
        }
    }
    let (mut events, mut last) = (0, 0);
    if let Some(t) = crate::servers::read_table(&rtx, EVENTS)? {
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            crate::events::decode(k.value(), v.value()).map_err(|e| damaged(e.0))?;
            events += 1;
            last = last.max(k.value());
        }
    }
    let meta = rtx.open_table(META).map_err(db_err)?;
    let seq = meta.get(crate::servers::EVENTS_SEQ_KEY).map_err(db_err)?.map_or(0, |v| v.value());
    if last > seq {
        return Err(damaged(format!(
            "event {last} is numbered past the recorded sequence ({seq})"
        )));
    }
    let with_entry: BTreeSet<&str> = entries.iter().map(|e| e.project.as_str()).collect();
    let orphans: Vec<&str> =
        defined.iter().map(String::as_str).filter(|k| !with_entry.contains(k)).collect();
    if !orphans.is_empty() {
        let one = orphans.len() == 1;
        let first = record::display_name(orphans[0]);
        return Ok(Finding::warn(
            "servers",
            format!(
                "{} managed server{} without an entry (no port reserved until {} next start): {}",
                orphans.len(),
                if one { "" } else { "s" },
                if one { "its" } else { "their" },
                names(orphans.iter().map(|k| record::display_name(k)))
            ),
            format!(
                "run `portd add {first} -- CMD…` again to reserve its port, or `portd rm {first}` to drop the definition"
            ),
        ));
    }
    let died = match died {
        0 => String::new(),
        n => format!(" ({n} of a supervisor that died: read as stopped)"),
    };
    Ok(Finding::ok(
        "servers",
        match defined.len() {
            0 if states + events == 0 => "no managed servers".to_owned(),
            n => format!(
                "{n} server definition{}, {states} state{}{died} and {events} event{} decoded",
                if n == 1 { "" } else { "s" },
                if states == 1 { "" } else { "s" },
                if events == 1 { "" } else { "s" },
            ),
        },
    ))
}

fn plural_y(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

fn damaged(msg: String) -> Error {
    Error::damaged(format!("registry damaged: {msg}"))
}

/// Every entry decodes; the port index, the LRU index and the entries
/// describe the same set: one port ↔ at most one entry.
fn validate(database: &redb::Database) -> Result<Vec<Entry>> {
    let rtx = database.begin_read().map_err(db_err)?;
    let mut entries = Vec::new();
    for row in rtx.open_table(ENTRIES).map_err(db_err)?.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        entries.push(
            record::decode(k.value(), v.value())
                .map_err(|e| damaged(format!("entry `{}`: {}", k.value(), e.0)))?,
        );
    }
    let by_port: BTreeMap<u16, &str> =
        entries.iter().map(|e| (e.port, e.project.as_str())).collect();
    if by_port.len() != entries.len() {
        return Err(damaged("two entries hold the same port".into()));
    }
    let mut indexed = BTreeMap::new();
    for row in rtx.open_table(PORTS).map_err(db_err)?.iter().map_err(db_err)? {
        let (p, k) = row.map_err(db_err)?;
        indexed.insert(p.value(), k.value().to_owned());
    }
    for (port, key) in &by_port {
        if indexed.get(port).map(String::as_str) != Some(*key) {
            return Err(damaged(format!("port {port} of `{key}` is missing from the port index")));
        }
    }
    if let Some((port, key)) = indexed.iter().find(|(p, _)| !by_port.contains_key(p)) {
        return Err(damaged(format!(
            "port index names `{key}` for port {port}, which no entry holds"
        )));
    }
    let mut lru = BTreeSet::new();
    for row in rtx.open_table(LRU).map_err(db_err)?.iter().map_err(db_err)? {
        let (k, _) = row.map_err(db_err)?;
        let (ms, key) = k.value();
        lru.insert((ms, key.to_owned()));
    }
    let want: BTreeSet<(u64, String)> =
        entries.iter().map(|e| (e.last_used_ms, e.project.clone())).collect();
    if lru != want {
        return Err(damaged("the last-used index does not match the entries".into()));
    }
    // A registry of schema 1 has no bitmaps yet: its first write makes them.
    match rtx.open_table(BITMAPS) {
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        table => {
            let ports = rtx.open_table(PORTS).map_err(db_err)?;
            let wrong = crate::bitmaps::disagreements(&table.map_err(db_err)?, &ports)?;
            if let Some(first) = wrong.first() {
                let more = match wrong.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                return Err(damaged(format!("{first}{more}")));
            }
        }
    }
    for row in rtx.open_table(HISTORY).map_err(db_err)?.iter().map_err(db_err)? {
        let (k, _) = row.map_err(db_err)?;
        if !record::valid_key(k.value()) {
            return Err(damaged(format!("history holds a malformed project key `{}`", k.value())));
        }
    }
    Ok(entries)
}

/// Findings about the entries themselves: ranges, stale owners, ports
/// bound by someone else.
fn contents(entries: &[Entry], config: &Config, r: &mut Report) {
    let outside: Vec<&Entry> =
        entries.iter().filter(|e| config.ranges.containing(e.port).is_none()).collect();
    if outside.is_empty() {
        r.findings.push(Finding::ok("ranges", "every entry's port is in a configured range"));
    } else {
        r.findings.push(Finding::warn(
            "ranges",
            format!(
                "{} entr{} outside every configured range: {}",
                outside.len(),
                plural_y(outside.len()),
                names(outside.iter().map(|e| e.display_name()))
            ),
            "they keep working; `portd get NAME --move` gives one a port in range, `portd release NAME` drops it",
        ));
    }
    let exclusions = portd_core::Exclusions::with_kernel(config.exclude.clone());
    let excluded: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            let why = exclusions.reason(e.port)?;
            Some(format!("{} ({}: {why})", e.port, e.display_name()))
        })
        .collect();
    if excluded.is_empty() {
        r.findings.push(Finding::ok("excluded", "no entry holds an excluded port"));
    } else {
        r.findings.push(Finding::warn(
            "excluded",
            format!(
                "entr{} on excluded port{}: {}",
                plural_y(excluded.len()),
                if excluded.len() == 1 { "" } else { "s" },
                names(excluded.iter())
            ),
            "the next `portd get NAME` moves an idle one (a running one once it stops); `portd release NAME` drops it",
        ));
    }
    let dead: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.owner.is_some_and(|o| o.liveness() == Liveness::Dead))
        .collect();
    let cutoff = now_ms().saturating_sub(config.idle_ttl.as_millis() as u64);
    let expired =
        entries.iter().filter(|e| State::of(e) == State::Idle && e.last_used_ms < cutoff).count();
    if dead.is_empty() && expired == 0 {
        r.findings.push(Finding::ok("stale", "no leases of dead processes, no expired entries"));
    } else {
        r.findings.push(Finding::warn(
            "stale",
            match (dead.len(), expired) {
                (0, _) => format!("{expired} idle entr{} past `idle_ttl`", plural_y(expired)),
                (n, 0) => format!(
                    "{n} lease{} of dead processes ({})",
                    if n == 1 { "" } else { "s" },
                    names(dead.iter().map(|e| e.display_name()))
                ),
                (n, _) => format!(
                    "{n} lease{} of dead processes ({}), {expired} idle entr{} past `idle_ttl`",
                    if n == 1 { "" } else { "s" },
                    names(dead.iter().map(|e| e.display_name())),
                    plural_y(expired)
                ),
            },
            "run `portd cleanup` (allocations also reclaim them when they need the ports)",
        ));
    }
    let bound: Vec<&Entry> = entries.iter().filter(|e| bound_by_other(e, false)).collect();
    if bound.is_empty() {
        r.findings.push(Finding::ok("bound", "no entry's port is bound by a foreign process"));
    } else {
        r.findings.push(Finding::warn(
            "bound",
            format!(
                "port{} {} bound by a process that is not the project's",
                if bound.len() == 1 { "" } else { "s" },
                names(bound.iter().map(|e| format!("{} ({})", e.port, e.display_name())))
            ),
            "`portd check PORT` names the process; `portd get NAME --move` moves the project",
        ));
    }
}

fn names<S: AsRef<str>>(it: impl Iterator<Item = S>) -> String {
    let all: Vec<String> = it.map(|s| s.as_ref().to_owned()).collect();
    if all.len() > 5 {
        format!("{}, … ({} in all)", all[..5].join(", "), all.len())
    } else {
        all.join(", ")
    }
}

/// The configured ranges against the kernel's ephemeral range.
fn ephemeral(config: &Config, r: &mut Report) {
    let Some((lo, hi)) = sys::ephemeral_range() else {
        return;
    };
    let overlap: Vec<String> = config
        .ranges
        .iter()
        .filter(|x| x.start <= hi && lo <= x.end)
        .map(|x| format!("`{}` ({}-{})", x.name, x.start, x.end))
        .collect();
    if overlap.is_empty() {
        r.findings.push(Finding::ok(
            "ephemeral",
            format!("no range overlaps the kernel's ephemeral range {lo}-{hi}"),
        ));
    } else {
        r.findings.push(Finding::warn(
            "ephemeral",
            format!(
                "range{} {} overlap{} the kernel's ephemeral range {lo}-{hi}: outgoing connections may take those ports",
                if overlap.len() == 1 { "" } else { "s" },
                overlap.join(", "),
                if overlap.len() == 1 { "s" } else { "" }
            ),
            format!("move the range below {lo} in the config file, or reserve it with `sysctl net.ipv4.ip_local_reserved_ports`"),
        ));
    }
}

/// Ranges below port 1024, allowed by `allow_privileged`: only root can
/// bind there, and the machine's own services live there.
fn privileged(config: &Config, r: &mut Report) {
    let low: Vec<String> = config
        .ranges
        .iter()
        .filter(|x| x.start < crate::config::FIRST_UNPRIVILEGED_PORT)
        .map(|x| format!("`{}` ({}-{})", x.name, x.start, x.end))
        .collect();
    if !low.is_empty() {
        r.findings.push(Finding::warn(
            "privileged",
            format!(
                "range{} {} reach{} below port 1024 (`allow_privileged = true`): only root can bind there, and the machine's own services live there",
                if low.len() == 1 { "" } else { "s" },
                low.join(", "),
                if low.len() == 1 { "es" } else { "" }
            ),
            "start every range at 1024 or above in the config file, and drop `allow_privileged`",
        ));
    }
}

/// Moves a damaged registry aside to `registry.redb.damaged-<secs>` and
/// starts a fresh one holding what can be proven from the old file:
/// entries whose owner is alive are rebuilt; idle ones are remembered as
/// history; managed server definitions that decode are carried over (they
/// are the user's work), with their projects' entries, while their
/// recorded states and events are dropped. Refuses when the file is not
/// damaged (or is a newer portd's).
pub fn repair(dir: &Path, config: &Config) -> Result<Repaired> {
    let reg = Registry::open(dir, config.clone())?;
    let _lock = lock::acquire(dir, config.lock_timeout, config.shared)?;
    let path = dir.join(home::REGISTRY_FILE);
    // Examined again under the lock held for the repair: another repair may
    // have run since this process looked.
    let damage = match home::check_file(&path, config.shared)? {
        false => None,
        true => examine_file(dir, &path).err(),
    };
    match damage {
        Some(e) if e.kind() == ErrorKind::Damaged && !newer_schema(&e) => {}
        Some(e) => return Err(e),
        None => {
            return Err(Error::new(
                ErrorKind::Usage,
                "the registry is not damaged: nothing to repair",
            )
            .with_hint("`portd doctor` lists what it found and how to fix each finding"));
        }
    }
    let salvaged = {
        let scratch = Scratch::of(dir, &path)?;
        salvage(&scratch.0)
    };
    let moved_to = crate::reset::next_copy_name(dir, "damaged", now_ms() / 1000);
    let (entries, lost) = match salvaged {
        Some((entries, lost)) => (entries, Some(lost)),
        None => (Vec::new(), None),
    };
    let (defs, lost_servers) = {
        let scratch = Scratch::of(dir, &path)?;
        salvage_definitions(&scratch.0)
    };
    let defined: BTreeSet<&str> = defs.iter().map(|(k, _)| k.as_str()).collect();
    let mut taken = BTreeSet::new();
    let (mut rebuilt, mut remembered) = (Vec::new(), Vec::new());
    let mut keep = Vec::new();
    for e in entries {
        if !taken.insert(e.port) {
            continue;
        }
        // Live owners, and owners that cannot be checked (never reclaimed).
        if State::of(&e) != State::Idle {
            rebuilt.push(e.display_name().to_owned());
            keep.push((e, true));
        } else if defined.contains(e.project.as_str()) {
            // A defined server keeps its entry (its port stays reserved),
            // without the lease of a supervisor that is gone.
            keep.push((Entry { owner: None, child_pid: None, ..e }, true));
        } else {
            remembered.push(e.display_name().to_owned());
            keep.push((e, false));
        }
    }
    let servers = defs.iter().map(|(k, _)| record::display_name(k).to_owned()).collect();
    // The new registry is built and filled beside the old one; the damaged
    // file keeps a second name, and nothing changes if anything fails.
    crate::reset::replace_keeping(
        dir,
        &path,
        config.shared,
        |fresh| {
            reg.rebuild_into(fresh, &keep)?;
            put_definitions(fresh, &defs)
        },
        &moved_to,
        "the damaged file as",
    )?;
    Ok(Repaired { moved_to, rebuilt, remembered, lost, servers, lost_servers })
}

/// Stores `defs` in a fresh registry (its `servers` table).
fn put_definitions(fresh: &redb::Database, defs: &[(String, ServerDef)]) -> Result<()> {
    if defs.is_empty() {
        return Ok(());
    }
    let wtx = fresh.begin_write().map_err(db_err)?;
    {
        let mut t = wtx.open_table(SERVERS).map_err(db_err)?;
        for (k, d) in defs {
            t.insert(k.as_str(), definition::encode(d).as_slice()).map_err(db_err)?;
        }
    }
    wtx.commit().map_err(db_err)
}

/// Reads the managed-server definitions that decode from a damaged file
/// (user data, carried over by a repair), and counts those that do not.
/// States and events are not read: a supervisor writes its state again at
/// its next transition.
fn salvage_definitions(copy: &Path) -> (Vec<(String, ServerDef)>, usize) {
    catch_unwind(AssertUnwindSafe(|| {
        let database = redb::Database::builder().open(copy).ok()?;
        let rtx = database.begin_read().ok()?;
        let table = crate::servers::read_table(&rtx, SERVERS).ok()??;
        let (mut ok, mut lost) = (Vec::new(), 0);
        for row in table.iter().ok()? {
            match row.map(|(k, v)| {
                let key = k.value().to_owned();
                let def = definition::decode(&key, v.value());
                (key, def)
            }) {
                Ok((key, Ok(def))) if record::valid_key(&key) => ok.push((key, def)),
                _ => lost += 1,
            }
        }
        Some((ok, lost))
    }))
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Reads what it can from a damaged file: the entries that decode, and
/// how many did not. `None` when the file cannot be read at all.
fn salvage(copy: &Path) -> Option<(Vec<Entry>, usize)> {
    catch_unwind(AssertUnwindSafe(|| {
        let database = redb::Database::builder().open(copy).ok()?;
        let rtx = database.begin_read().ok()?;
        let table = rtx.open_table(ENTRIES).ok()?;
        let (mut ok, mut lost) = (Vec::new(), 0);
        for row in table.iter().ok()? {
            match row {
                Ok((k, v)) => match record::decode(k.value(), v.value()) {
                    Ok(e) => ok.push(e),
                    Err(_) => lost += 1,
                },
                Err(_) => lost += 1,
            }
        }
        Some((ok, lost))
    }))
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `stale` finding of `contents` for these entries.
    fn stale(entries: &[Entry]) -> Finding {
        let mut r = Report::default();
        contents(entries, &Config::default(), &mut r);
        r.findings.into_iter().find(|f| f.check == "stale").unwrap()
    }

    /// A use recorded in the touch log counts: an entry used a moment ago
    /// is not past `idle_ttl`, whatever the registry file still says.
    #[test]
    fn stale_findings_count_uses_in_the_touch_log() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("portd");
        let config = Config { idle_ttl: std::time::Duration::from_secs(60), ..Config::default() };
        let reg = Registry::open(&home, config.clone()).unwrap();
        reg.get_many(&["used", "unused"]).unwrap();
        let hour_ago = now_ms() - 3_600_000;
        reg.set_last_used("used", hour_ago).unwrap();
        reg.set_last_used("unused", hour_ago).unwrap();
        // A use of an existing entry is only appended to the touch log.
        reg.get("used").unwrap();
        let listed = reg.list().unwrap();
        let used = listed.iter().find(|l| l.entry.project == "used").unwrap();
        assert!(used.entry.last_used_ms > hour_ago + 3_000_000, "{used:?}");
        let report = examine(&home, &config, None);
        let f = report.findings.iter().find(|f| f.check == "stale").unwrap();
        assert_eq!(f.message, "1 idle entry past `idle_ttl`", "{report:#?}");
    }

    /// Whether the file is a newer portd's is told by what the file holds,
    /// not by the words of the error: a damaged registry in a directory
    /// whose name reads "newer portd" is still offered the repair.
    #[test]
    fn a_damaged_registry_is_repairable_whatever_its_path_says() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("a newer portd");
        let config = Config::default();
        Registry::open(&home, config.clone()).unwrap().list().unwrap();
        fs::write(home.join(home::REGISTRY_FILE), b"").unwrap();
        let report = examine(&home, &config, None);
        let f = report.first_error().unwrap();
        assert_eq!((f.check, f.kind), ("integrity", Some(ErrorKind::Damaged)), "{report:#?}");
        assert!(report.damaged, "{report:#?}");
        assert!(f.fix.as_deref().unwrap().contains("portd doctor --repair"), "{f:?}");
        let repaired = repair(&home, &config).unwrap();
        assert!(repaired.moved_to.exists(), "{repaired:?}");
    }

    /// A registry written by a newer portd is refused, and not offered a
    /// repair that would move it aside.
    #[test]
    fn a_newer_portds_registry_is_not_offered_repair() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("portd");
        let config = Config::default();
        Registry::open(&home, config.clone()).unwrap().list().unwrap();
        {
            let database = redb::Database::open(home.join(home::REGISTRY_FILE)).unwrap();
            let tx = database.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(db::SCHEMA_KEY, db::SCHEMA_VERSION + 1).unwrap();
            tx.commit().unwrap();
        }
        let report = examine(&home, &config, None);
        let f = report.first_error().unwrap();
        assert_eq!((f.check, f.kind), ("integrity", Some(ErrorKind::Damaged)), "{report:#?}");
        assert!(!report.damaged, "{report:#?}");
        assert_eq!(repair(&home, &config).unwrap_err().kind(), ErrorKind::Damaged);
    }

    #[test]
    fn stale_findings_say_only_what_was_found() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("portd"), Config::default()).unwrap();
        reg.get_many(&["old-a", "old-b"]).unwrap();
        let mut entries: Vec<Entry> = reg.list().unwrap().into_iter().map(|l| l.entry).collect();
        assert_eq!(stale(&entries).severity, Severity::Ok);
        for e in &mut entries {
            e.last_used_ms = 0;
        }
        // Expired entries and no dead leases: no empty list of dead leases.
        let f = stale(&entries);
        assert_eq!(f.severity, Severity::Warn);
        assert_eq!(f.message, "2 idle entries past `idle_ttl`");
    }
}
