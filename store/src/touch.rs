//! The touch log, `registry.touch`: when each project last asked for a
//! port it already had, kept out of the redb file so that such a `get`
//! stays a read.
//!
//! A `get` of an existing entry appends one record, `<ms>\t<key>\0`, under
//! `registry.lock`, without syncing. Every write transaction first folds the
//! log into the entries' `last_used` (and the `lru` index, so eviction is
//! least-recently-used to the millisecond), and empties it once that
//! transaction has committed. Reads (`ls`, `show`) overlay it. What a crash
//! can lose is a touch, never an allocation: the log holds nothing else, and
//! folding it again is harmless (a later time wins). A torn or malformed
//! record is skipped. Must be used with `registry.lock` held.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The touch log's name inside the home directory.
pub const TOUCH_FILE: &str = "registry.touch";

/// Past this size, a `get` folds the log into the registry (one write)
/// instead of appending to it: about a thousand touches.
pub(crate) const FOLD_AT: u64 = 64 * 1024;

fn path(dir: &Path) -> PathBuf {
    dir.join(TOUCH_FILE)
}

/// Appends a touch of `key` at `ms`; returns the log's size after it.
/// Best effort: a registry the caller cannot write just keeps its times.
pub(crate) fn append(dir: &Path, shared: bool, key: &str, ms: u64) -> std::io::Result<u64> {
    let mut f = portd_core::sys::open_nofollow(&path(dir))?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    // In a shared registry the other users must be able to append too.
    if shared && md.uid() == portd_core::sys::euid() && md.mode() & 0o777 != 0o660 {
        let _ = crate::home::set_mode(&f, true);
    }
    let end = f.seek(SeekFrom::End(0))?;
    let rec = format!("{ms}\t{key}\0");
    f.write_all(rec.as_bytes())?;
    Ok(end + rec.len() as u64)
}

/// The latest touch of each key in the log (empty if there is none).
pub(crate) fn read(dir: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(f) = std::fs::File::open(path(dir)) else { return out };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return out;
    }
    let mut bytes = Vec::new();
    // A log far past the fold size was not written by portd: ignore it.
    if f.take(64 * FOLD_AT).read_to_end(&mut bytes).is_err() {
        return out;
    }
    // The last record may be torn (no terminator): skipped by `split`'s
    // last piece never being followed by a `\0`.
    let complete = bytes.iter().rposition(|&b| b == 0).map_or(&[][..], |i| &bytes[..i]);
    for rec in complete.split(|&b| b == 0) {
        let Ok(rec) = std::str::from_utf8(rec) else { continue };
        let Some((ms, key)) = rec.split_once('\t') else { continue };
        let Ok(ms) = ms.parse::<u64>() else { continue };
        if key.is_empty() {
            continue;
        }
        let t = out.entry(key.to_owned()).or_insert(ms);
        *t = (*t).max(ms);
    }
    out
}

/// Empties the log, after its touches were committed to the registry.
pub(crate) fn clear(dir: &Path) {
    if let Ok(f) = portd_core::sys::open_nofollow(&path(dir))
        && f.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
    {
        let _ = f.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_latest_and_skip_torn_records() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty());
        append(dir.path(), false, "a", 5).unwrap();
        append(dir.path(), false, "/x/app", 7).unwrap();
        let size = append(dir.path(), false, "a", 3).unwrap();
        assert_eq!(size, std::fs::metadata(path(dir.path())).unwrap().len());
        // A torn last record, and junk, are skipped.
        let mut f = std::fs::OpenOptions::new().append(true).open(path(dir.path())).unwrap();
        f.write_all(b"zz\0\t\0 9\tb\0 12\tc").unwrap();
        let got = read(dir.path());
        let want: HashMap<String, u64> = [("a".into(), 5), ("/x/app".into(), 7)].into();
        assert_eq!(got, want);
        clear(dir.path());
        assert!(read(dir.path()).is_empty());
    }
}
