//! `reset`: the registry emptied, the old file kept as a backup.

use crate::db;
use crate::error::{Error, ErrorKind, Result};
use crate::home;
use crate::lock;
use crate::policy::{guard, in_use};
use crate::registry::{Registry, now_ms};
use crate::touch;
use crate::tx::read_entries;
use std::path::{Path, PathBuf};

/// How many `reset` backups are kept; older ones are removed.
pub const RESET_BACKUPS_KEPT: usize = 5;

impl Registry {
    /// Empties the registry, first moving the current file aside to
    /// `registry.redb.bak-<unix seconds>`; keeps the newest
    /// [`RESET_BACKUPS_KEPT`] backups and removes older ones, and removes
    /// the touch log (whatever it is: one that every command refuses, too).
    /// Refused while an entry has a running owner, unless `force`. Returns
    /// the backup's path.
    pub fn reset(&self, force: bool) -> Result<Option<PathBuf>> {
        let mut slot = self.inproc.lock();
        // The file is replaced: a session of this handle closes first.
        slot.take().map(crate::commit::Session::close).transpose()?;
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
        let backup = next_copy_name(&self.dir, "bak", now_ms() / 1000);
        replace_keeping(&self.dir, &path, self.config.shared, |_| Ok(()), &backup, "a backup at")?;
        touch::remove(&self.dir);
        self.rotate_backups();
        Ok(Some(backup))
    }

    /// Removes all but the newest [`RESET_BACKUPS_KEPT`] reset backups.
    fn rotate_backups(&self) {
        let backups = kept_copies(&self.dir, "bak");
        let old = backups.len().saturating_sub(RESET_BACKUPS_KEPT);
        for (_, p) in &backups[..old] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The copies `registry.redb.<kind>-<secs>[-<n>]` in `dir` (`bak`: reset
/// backups; `damaged`: files `doctor --repair` replaced), oldest first.
pub(crate) fn kept_copies(dir: &Path, kind: &str) -> Vec<((u64, u64), PathBuf)> {
    let prefix = format!("{}.{kind}-", home::REGISTRY_FILE);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut copies: Vec<((u64, u64), PathBuf)> = entries
        .filter_map(|d| d.ok())
        .filter_map(|d| {
            let name = d.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?;
            let (secs, n) = rest.split_once('-').unwrap_or((rest, "0"));
            let order = (secs.parse().ok()?, n.parse().ok()?);
            d.file_type().ok()?.is_file().then(|| (order, d.path()))
        })
        .collect();
    copies.sort();
    copies
}

/// A new name for a copy of kind `kind` made in second `secs`: after the
/// newest copy of that second, so that names sort as the copies were made
/// even after older ones were removed.
pub(crate) fn next_copy_name(dir: &Path, kind: &str, secs: u64) -> PathBuf {
    let last = kept_copies(dir, kind)
        .into_iter()
        .filter(|((s, _), _)| *s == secs)
        .map(|((_, n), _)| n)
        .max();
    dir.join(match last {
        None => format!("{}.{kind}-{secs}", home::REGISTRY_FILE),
        Some(n) => format!("{}.{kind}-{secs}-{}", home::REGISTRY_FILE, n + 1),
    })
}

/// Replaces the registry file `path` with a new one that `fill` fills,
/// keeping the old file as `keep_as` (`what` names it in an error, e.g.
/// "a backup at"). The copy is a second name of the old file, made before
/// the new registry replaces it in one rename: a failure or a crash at any
/// point leaves the old registry in place (and no second name) or the new
/// one.
pub(crate) fn replace_keeping(
    dir: &Path,
    path: &Path,
    shared: bool,
    fill: impl FnOnce(&redb::Database) -> Result<()>,
    keep_as: &Path,
    what: &str,
) -> Result<()> {
    let mut linked = false;
    let swapped = db::contain(path, || {
        db::replace_with_fresh(dir, path, shared, fill, |old| {
            std::fs::hard_link(old, keep_as)
                .map_err(|e| Error::io(format!("cannot keep {what} `{}`", keep_as.display()), e))?;
            linked = true;
            Ok(())
        })
    });
    if swapped.is_err() && linked {
        // The old registry is still in place: drop its second name.
        let _ = std::fs::remove_file(keep_as);
    }
    swapped
}
