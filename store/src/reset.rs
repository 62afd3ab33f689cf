//! `reset`: the registry emptied, the old file kept as a backup.

use crate::db;
use crate::error::{Error, ErrorKind, Result};
use crate::home;
use crate::lock;
use crate::policy::{guard, in_use};
use crate::registry::{Registry, now_ms};
use crate::touch;
use crate::tx::read_entries;
use std::path::PathBuf;

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
