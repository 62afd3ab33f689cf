//! The touch log, `registry.touch`: when each project last asked for a
//! port it already had, kept out of the redb file so that such a `get`
//! stays a read.
//!
//! A `get` of an existing entry appends one record, `\0<key>\t<ms>\0`,
//! under `registry.lock`, without syncing. Every write transaction first
//! folds the log into the entries' `last_used` (and the `lru` index, so
//! eviction is least-recently-used to the millisecond), and empties it once
//! that transaction has committed. Reads (`ls`, `show`, `doctor`) overlay
//! it. What a crash can lose is a touch, never an allocation: the log holds
//! nothing else, and folding it again is harmless (a later time wins).
//!
//! Records delimit themselves: each starts with the terminator too, so a
//! record torn by a crash never runs into the next one, and the time comes
//! last, so a torn record can only lose digits of its time (an earlier
//! time, which the later one of the registry outweighs), never name another
//! project. A record that is not a valid key, a tab and 1–13 digits is
//! skipped, and no time is taken as later than now plus [`MAX_AHEAD_MS`].
//!
//! The log is opened without following a symlink and without blocking, and
//! used only when it is a regular file of the user's (of the group, in a
//! shared registry) that no one else can write; anything else is refused
//! as an unsafe registry file is ([`ErrorKind::Permission`]), naming the
//! fix. `reset` and `doctor --repair` remove such a file. Must be used with
//! `registry.lock` held.
//!
//! [`ErrorKind::Permission`]: crate::ErrorKind::Permission

use crate::error::{Error, Result};
use crate::{home, record};
use portd_core::sys::{self, ReadFileError};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The touch log's name inside the home directory.
pub const TOUCH_FILE: &str = "registry.touch";

/// Past this size, a `get` folds the log into the registry (one write)
/// instead of appending to it: about a thousand touches.
pub(crate) const FOLD_AT: u64 = 64 * 1024;

/// A log far past the fold size was not written by portd: it is not read,
/// only emptied by the next write.
const MAX_BYTES: u64 = 64 * FOLD_AT;

/// How far past the reader's clock a touch may lie: touches are written by
/// processes on the same machine, so only a clock set back between the
/// write and the read puts one ahead, and never by more than this counts.
pub(crate) const MAX_AHEAD_MS: u64 = 60_000;

/// The most digits a time may have: milliseconds up to the year 2286.
const MAX_DIGITS: usize = 13;

fn path(dir: &Path) -> PathBuf {
    dir.join(TOUCH_FILE)
}

/// What the log holds.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// The latest touch of each key.
    pub(crate) touches: HashMap<String, u64>,
    /// Whether the file holds anything (to be emptied once folded), even
    /// if nothing of it could be used.
    pub(crate) pending: bool,
}

impl Log {
    /// `e` as `ls`, `show` and `doctor` show it: with its latest use that
    /// is logged but not yet folded into the registry.
    pub(crate) fn overlay(&self, e: &mut crate::record::Entry) {
        if let Some(&ms) = self.touches.get(&e.project) {
            e.last_used_ms = e.last_used_ms.max(ms);
        }
    }
}

/// Why portd must not read or write a touch log, as the end of a sentence
/// about it, with the fix: a symlink (it would read, or fold, someone
/// else's file), anything but a regular file (a FIFO would block the
/// reader), another user's file in a private registry, or one that others
/// can write. `None` when it is fine.
fn problem(path: &Path, md: &fs::Metadata, shared: bool) -> Option<(String, String)> {
    let rm = || format!("remove it (`rm {}`); portd creates its own", path.display());
    if md.file_type().is_symlink() {
        return Some(("is a symbolic link".into(), rm()));
    }
    if !md.is_file() {
        let kind = sys::file_kind(&md.file_type());
        return Some((format!("is not a regular file ({kind})"), rm()));
    }
    let me = sys::euid();
    if !shared && md.uid() != me {
        return Some((format!("is owned by uid {}, not by you (uid {me})", md.uid()), rm()));
    }
    if md.mode() & home::unsafe_bits(shared) != 0 {
        return Some((
            format!("is writable by other users (mode {:o})", md.mode() & 0o7777),
            format!("run `chmod {:o} {}`", home::file_mode(shared), path.display()),
        ));
    }
    None
}

/// Refuses a touch log with a [`problem`], as an unsafe registry file is.
fn check(path: &Path, md: &fs::Metadata, shared: bool) -> Result<()> {
    match problem(path, md, shared) {
        None => Ok(()),
        Some((why, fix)) => {
            Err(Error::permission(format!("touch log `{}` {why}", path.display())).with_hint(fix))
        }
    }
}

/// Why the touch log at `path` is refused, looked at without opening it;
/// `None` when it is missing or fine.
fn refusal(path: &Path, shared: bool) -> Option<Error> {
    let md = fs::symlink_metadata(path).ok()?;
    check(path, &md, shared).err()
}

/// The touch log's metadata, checked as [`read`] checks it, without
/// opening it (for `doctor`); `None` when there is none (or it cannot be
/// looked at). An error is always a refusal that [`remove_unsafe`] fixes.
pub(crate) fn inspect(dir: &Path, shared: bool) -> Result<Option<fs::Metadata>> {
    let path = path(dir);
    let Ok(md) = fs::symlink_metadata(&path) else { return Ok(None) };
    check(&path, &md, shared).map(|()| Some(md))
}

/// Appends a touch of `key` at `ms`; returns the log's size after it, or
/// `None` when it cannot be written (a registry the caller cannot write
/// just keeps its times). An unsafe log is an error, and is not written.
pub(crate) fn append(dir: &Path, shared: bool, key: &str, ms: u64) -> Result<Option<u64>> {
    let path = path(dir);
    let f = match sys::open_nofollow(&path) {
        Ok(f) => f,
        Err(_) => return refusal(&path, shared).map_or(Ok(None), Err),
    };
    let Ok(md) = f.metadata() else { return Ok(None) };
    check(&path, &md, shared)?;
    // In a shared registry the other users must be able to append too.
    if shared && md.uid() == sys::euid() && md.mode() & 0o777 != home::file_mode(true) {
        let _ = home::set_mode(&f, true);
    }
    // Appends hold `registry.lock`, so the size just read is the end.
    let rec = format!("\0{key}\t{ms}\0");
    let end = md.len();
    Ok(f.write_all_at(rec.as_bytes(), end).ok().map(|()| end + rec.len() as u64))
}

/// The log's touches (none if there is no log). An unsafe log is an error;
/// one that cannot be read (another user's, in a shared registry) counts
/// as empty.
pub(crate) fn read(dir: &Path, shared: bool) -> Result<Log> {
    let path = path(dir);
    let f = match sys::open_nofollow_read(&path) {
        Ok(f) => f,
        // No log yet (a symbolic link fails with ELOOP, and is refused below).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Log::default()),
        Err(_) => return refusal(&path, shared).map_or(Ok(Log::default()), Err),
    };
    let Ok(md) = f.metadata() else { return Ok(Log::default()) };
    check(&path, &md, shared)?;
    Ok(match sys::read_regular(&f, MAX_BYTES) {
        Ok(bytes) => Log { pending: !bytes.is_empty(), touches: parse(&bytes, now_ms()) },
        Err(ReadFileError::TooLarge) => Log { pending: true, touches: HashMap::new() },
        Err(_) => Log::default(),
    })
}

fn now_ms() -> u64 {
    crate::registry::now_ms()
}

/// The latest touch of each key in `bytes`, none later than `now` plus
/// [`MAX_AHEAD_MS`]; torn and malformed records are skipped.
fn parse(bytes: &[u8], now: u64) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    // The last piece is not followed by a terminator: torn, or empty.
    let complete = bytes.iter().rposition(|&b| b == 0).map_or(&[][..], |i| &bytes[..i]);
    for rec in complete.split(|&b| b == 0) {
        let Ok(rec) = std::str::from_utf8(rec) else { continue };
        let Some((key, ms)) = rec.rsplit_once('\t') else { continue };
        if ms.is_empty() || ms.len() > MAX_DIGITS || !ms.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(ms) = ms.parse::<u64>() else { continue };
        if !record::valid_key(key) {
            continue;
        }
        let ms = ms.min(now.saturating_add(MAX_AHEAD_MS));
        let t = out.entry(key.to_owned()).or_insert(ms);
        *t = (*t).max(ms);
    }
    out
}

/// Empties the log, after its touches were committed to the registry.
pub(crate) fn clear(dir: &Path) {
    if let Ok(f) = sys::open_nofollow(&path(dir))
        && f.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
    {
        let _ = f.set_len(0);
    }
}

/// Removes the touch log, after `reset` emptied the registry: its times
/// are of entries that are gone.
pub(crate) fn remove(dir: &Path) {
    let path = path(dir);
    if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        let _ = fs::remove_file(&path);
    }
}

/// Removes a touch log that [`read`] refuses (a symlink itself, never
/// what it points to), so that the registry is usable again; returns why
/// it was refused (`is not a regular file (a FIFO)`), or `None` when there
/// was nothing to remove. Its touches are lost: only times of last use.
pub(crate) fn remove_unsafe(dir: &Path, shared: bool) -> Result<Option<String>> {
    let path = path(dir);
    let Ok(md) = fs::symlink_metadata(&path) else { return Ok(None) };
    let Some((why, _)) = problem(&path, &md, shared) else { return Ok(None) };
    let removed = if md.is_dir() { fs::remove_dir(&path) } else { fs::remove_file(&path) };
    removed.map_err(|e| Error::io(format!("cannot remove touch log `{}`", path.display()), e))?;
    Ok(Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_read_back_latest_and_skip_torn_records() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), false).unwrap().touches.is_empty());
        append(dir.path(), false, "a", 5).unwrap();
        append(dir.path(), false, "/x/app", 7).unwrap();
        let size = append(dir.path(), false, "a", 3).unwrap().unwrap();
        assert_eq!(size, fs::metadata(path(dir.path())).unwrap().len());
        // Junk, records torn at any byte, and a torn last record.
        let mut f = fs::OpenOptions::new().append(true).open(path(dir.path())).unwrap();
        f.write_all(b"zz\0\t\0 9\tb\0\0c\t12").unwrap();
        let log = read(dir.path(), false).unwrap();
        let want: HashMap<String, u64> = [("a".into(), 5), ("/x/app".into(), 7)].into();
        assert_eq!(log.touches, want);
        assert!(log.pending);
        clear(dir.path());
        let log = read(dir.path(), false).unwrap();
        assert!(log.touches.is_empty() && !log.pending);
    }

    #[test]
    fn a_torn_record_does_not_run_into_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        append(dir.path(), false, "project", now - 10).unwrap();
        let full = fs::read(path(dir.path())).unwrap();
        // Torn after each byte, then followed by a whole record of `b`.
        for cut in 0..full.len() {
            fs::write(path(dir.path()), &full[..cut]).unwrap();
            append(dir.path(), false, "b", now - 5).unwrap();
            let got = read(dir.path(), false).unwrap().touches;
            assert_eq!(got.get("b"), Some(&(now - 5)), "cut at {cut}: {got:?}");
            for (key, &ms) in &got {
                assert!(ms <= now, "cut at {cut}: {key} at {ms}");
                assert!(key == "b" || key == "project", "cut at {cut}: {got:?}");
            }
        }
        // A stray digit before a record (the old format's failure).
        fs::write(path(dir.path()), b"1").unwrap();
        append(dir.path(), false, "b", now).unwrap();
        assert_eq!(read(dir.path(), false).unwrap().touches, [("b".into(), now)].into());
    }

    #[test]
    fn malformed_times_are_skipped_and_none_lies_in_the_future() {
        let now = 1_700_000_000_000;
        let log = b"\0a\t99999999999999\0\0a\t+5\0\0a\t-1\0\0a\t\0\0a\t1e3\0\0a\t 7\0\
                    \0b\t9999999999999\0\0c\t1699999999999\0\0bad name\t5\0\0/p/q\t8\0";
        let got = parse(log, now);
        let want: HashMap<String, u64> =
            [("b".into(), now + MAX_AHEAD_MS), ("c".into(), 1_699_999_999_999), ("/p/q".into(), 8)]
                .into();
        assert_eq!(got, want);
    }

    #[test]
    fn only_a_safe_regular_file_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &p).unwrap();
        fs::write(dir.path().join("elsewhere"), b"\0a\t5\0").unwrap();
        let e = read(dir.path(), false).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Permission);
        assert!(e.message().ends_with("is a symbolic link"), "{e}");
        assert!(append(dir.path(), false, "a", 9).is_err());
        assert_eq!(fs::read(dir.path().join("elsewhere")).unwrap(), b"\0a\t5\0");
        assert!(remove_unsafe(dir.path(), false).unwrap().is_some());
        assert!(dir.path().join("elsewhere").exists() && !p.exists());
        assert!(remove_unsafe(dir.path(), false).unwrap().is_none());

        fs::write(&p, b"").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read(dir.path(), false).is_err());
        // A group-writable file is what a shared registry wants.
        assert!(read(dir.path(), true).is_ok());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o602)).unwrap();
        assert!(read(dir.path(), true).is_err());
    }
}
