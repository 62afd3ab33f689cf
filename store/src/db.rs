//! The redb file: tables, opening (and first creation), error mapping.
//!
//! Tables:
//! - `entries`: project key → record ([`crate::record`]);
//! - `ports`: port → project key (the index behind *one port ↔ at most one entry*);
//! - `history`: project key → last port it had, kept after release;
//! - `lru`: (last used ms, project key) → (), for eviction and `idle_ttl`;
//! - `meta`: `schema` → version, `generation` → a number that every write
//!   transaction changes (see [`next_generation`]), `cursor:<range>` → scan
//!   position;
//! - `bitmaps`: range name → which ports of the range entries hold
//!   ([`crate::bitmaps`]), kept with `ports` in every transaction;
//! - `servers`: project key → managed server definition
//!   ([`crate::definition`]);
//! - `server_state`: project key → its supervisor's recorded state
//!   ([`crate::server_state`]);
//! - `events`: sequence number → what a managed server did
//!   ([`crate::events`]).

use crate::error::{Error, ErrorKind, Result};
use crate::home;
use redb::{Database, ReadableDatabase, TableDefinition};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

pub(crate) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
pub(crate) const PORTS: TableDefinition<u16, &str> = TableDefinition::new("ports");
pub(crate) const HISTORY: TableDefinition<&str, u16> = TableDefinition::new("history");
pub(crate) const LRU: TableDefinition<(u64, &str), ()> = TableDefinition::new("lru");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const BITMAPS: TableDefinition<&str, &[u8]> = TableDefinition::new("bitmaps");
pub(crate) const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");
pub(crate) const SERVER_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("server_state");
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// The layout version this portd writes and reads. Version 1 (no
/// `bitmaps` table, no generation) is read as well, and upgraded by the
/// first write transaction; version 2 (no managed-server tables) is read
/// as well, and upgraded by the first write that stores a server.
pub const SCHEMA_VERSION: u64 = 3;
const OLDEST_SCHEMA: u64 = 1;
pub(crate) const SCHEMA_KEY: &str = "schema";
pub(crate) const GENERATION_KEY: &str = "generation";

/// The generation a write transaction stores after `current` (`None`: a
/// registry that has none yet). Never 0, and a new file starts from a
/// random one, so that a handle that knew the file it replaced never takes
/// the new file for the one it knew.
pub(crate) fn next_generation(current: Option<u64>) -> u64 {
    match current {
        Some(g) => g.wrapping_add(1).max(1),
        None => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            h.finish().max(1)
        }
    }
}
/// Page cache per open; the registry is small and opened per operation.
const CACHE_BYTES: usize = 4 << 20;

/// Maps any redb error onto the registry's kinds.
pub(crate) fn db_err(e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
                Error::damaged(format!("registry damaged: {io}")).with_source(io)
            }
            std::io::ErrorKind::ReadOnlyFilesystem => {
                Error::io("cannot write the registry", io).with_hint(crate::error::READ_ONLY_HINT)
            }
            std::io::ErrorKind::PermissionDenied => Error::io("cannot open the registry", io)
                .with_hint("check the owner and mode of the registry directory and file (`portd doctor` says which)"),
            std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::FileTooLarge
            | std::io::ErrorKind::QuotaExceeded => Error::io("cannot write the registry", io)
                .with_hint("free disk space (or raise the file-size limit) and try again; nothing was committed"),
            _ => Error::io("registry I/O error", io),
        },
        // An earlier write of this operation failed; that failure is the
        // cause, not the file's contents.
        redb::Error::PreviousIo => Error::new(
            ErrorKind::Other,
            "registry I/O error: a write failed (disk full or file-size limit?)",
        )
        .with_hint("free disk space (or raise the file-size limit) and try again; nothing was committed"),
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => Error::new(
            ErrorKind::RegistryBusy,
            "registry busy: the file is open in a process that does not use `registry.lock`",
        ),
        other => Error::damaged(format!("registry damaged: {other}")).with_source(other),
    }
}

fn damaged_hint(path: &Path) -> String {
    format!("run `portd doctor` to inspect `{}`; the file is left as it is", path.display())
}

/// Runs `f`, turning a panic inside the storage engine (possible on a file
/// altered outside portd) into a "damaged" error.
pub(crate) fn contain<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| {
            if e.kind() == ErrorKind::Damaged && e.hint().is_none() {
                e.with_hint(damaged_hint(path))
            } else {
                e
            }
        }),
        // The panic's own text (an index, "entered unreachable code") says
        // where the storage engine tripped, not what is wrong with the file:
        // it is not shown.
        Err(_) => Err(Error::damaged(format!(
            "registry damaged: `{}` is inconsistent (its storage structures cannot be read)",
            path.display()
        ))
        .with_hint(damaged_hint(path))),
    }
}

fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(CACHE_BYTES);
    b
}

/// Opens the registry file, creating it first if it does not exist. Must
/// be called with `registry.lock` held.
pub(crate) fn open(dir: &Path, shared: bool) -> Result<Database> {
    open_checked(dir, shared, false)
}

/// [`open`], skipping the read-only look at the schema when `checked`: the
/// caller read it under the same hold of `registry.lock`.
pub(crate) fn open_checked(dir: &Path, shared: bool, checked: bool) -> Result<Database> {
    let path = dir.join(home::REGISTRY_FILE);
    if !home::check_file(&path, shared)? {
        create_fresh(dir, &path, shared)?;
    }
    let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        // redb would silently initialise an empty file; an empty registry
        // file is something portd never leaves behind, so it is damage.
        return Err(Error::damaged(format!("registry damaged: `{}` is empty", path.display())));
    }
    // Opening for writing marks the file as in use, so the schema is read
    // first through a read-only open (≈ 40 µs): a registry written by a
    // newer portd is refused with its bytes untouched. A file that needs
    // recovery cannot be opened read-only; it is checked after recovery.
    let peeked = checked || peek_schema(&path)?;
    let db = builder().open(&path).map_err(db_err)?;
    if !peeked {
        check_schema(&db)?;
    }
    Ok(db)
}

/// Checks the schema through a read-only open, which changes nothing.
/// `Ok(false)` when the file needs recovery first and so cannot be opened
/// read-only.
pub(crate) fn peek_schema(path: &Path) -> Result<bool> {
    match builder().open_read_only(path) {
        Ok(ro) => check_schema(&ro).map(|()| true),
        Err(redb::DatabaseError::RepairAborted) => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}

/// A registry opened for reading only.
pub(crate) enum Reader {
    /// Opened read-only: nothing is ever written to the file.
    Only(redb::ReadOnlyDatabase),
    /// Opened for writing, because the file did not exist yet or was not
    /// closed cleanly (a writer was killed) and redb must recover it.
    Writer(Database),
}

impl Reader {
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        match self {
            Reader::Only(db) => db.begin_read(),
            Reader::Writer(db) => db.begin_read(),
        }
        .map_err(db_err)
    }

    pub(crate) fn close(self) -> Result<()> {
        match self {
            Reader::Only(db) => db.close(),
            Reader::Writer(db) => db.close(),
        }
        .map_err(db_err)
    }
}

/// Opens the registry for a read. A damaged file found this way is left
/// byte for byte as it was, which an open for writing cannot promise (redb
/// marks the file as in use when it opens it for writing). Must be called
/// with `registry.lock` held.
pub(crate) fn open_read(dir: &Path, shared: bool) -> Result<Reader> {
    let path = dir.join(home::REGISTRY_FILE);
    if !home::check_file(&path, shared)? {
        return open(dir, shared).map(Reader::Writer);
    }
    match builder().open_read_only(&path) {
        Ok(db) => {
            check_schema(&db)?;
            Ok(Reader::Only(db))
        }
        Err(redb::DatabaseError::RepairAborted) => open(dir, shared).map(Reader::Writer),
        Err(e) => Err(db_err(e)),
    }
}

pub(crate) fn check_schema(db: &impl ReadableDatabase) -> Result<()> {
    let tx = db.begin_read().map_err(db_err)?;
    let meta = tx
        .open_table(META)
        .map_err(|e| Error::damaged(format!("registry damaged: no metadata table ({e})")))?;
    match meta.get(SCHEMA_KEY).map_err(db_err)?.map(|v| v.value()) {
        Some(OLDEST_SCHEMA..=SCHEMA_VERSION) => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(Error::damaged(format!(
            "registry was written by a newer portd (schema {v}; this portd reads {SCHEMA_VERSION})"
        ))
        .with_hint("upgrade portd; the registry is left untouched")),
        Some(v) => Err(Error::damaged(format!("registry damaged: unknown schema version {v}"))),
        None => Err(Error::damaged("registry damaged: schema version missing")),
    }
}

/// Builds a new, empty registry beside `path` and renames it into place, so
/// that a crash never leaves a half-made (e.g. empty) registry file behind.
fn create_fresh(dir: &Path, path: &Path, shared: bool) -> Result<()> {
    replace_with_fresh(dir, path, shared, |_| Ok(()), |_| Ok(()))
}

/// Builds a new, empty registry in a temporary file, runs `before_swap`
/// (e.g. keeping the old file as a backup), then renames the new file over
/// `path` in one step: at every moment `path` is the old registry or the
/// new one. On any failure the temporary file is removed and `path` is as
/// it was.
pub(crate) fn replace_with_fresh(
    dir: &Path,
    path: &Path,
    shared: bool,
    fill: impl FnOnce(&Database) -> Result<()>,
    before_swap: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tmp = dir.join(format!("{}.new-{}", home::REGISTRY_FILE, std::process::id()));
    let _ = fs::remove_file(&tmp);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(home::file_mode(shared))
            .open(&tmp)
            .map_err(|e| Error::io(format!("cannot create `{}`", tmp.display()), e))?;
        home::set_mode(&f, shared)
            .map_err(|e| Error::io(format!("cannot share `{}`", tmp.display()), e))?;
    }
    let made = (|| {
        let db = builder().create(&tmp).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(ENTRIES).map_err(db_err)?;
            tx.open_table(PORTS).map_err(db_err)?;
            tx.open_table(HISTORY).map_err(db_err)?;
            tx.open_table(LRU).map_err(db_err)?;
            tx.open_table(BITMAPS).map_err(db_err)?;
            tx.open_table(SERVERS).map_err(db_err)?;
            tx.open_table(SERVER_STATE).map_err(db_err)?;
            tx.open_table(EVENTS).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(db_err)?;
            meta.insert(GENERATION_KEY, next_generation(None)).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        fill(&db)?;
        db.close().map_err(db_err)?;
        before_swap(path)?;
        fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("cannot create `{}`", path.display()), e))?;
        // Make the new name durable too.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made
}
