//! Who holds a `flock(2)` lock on a file, asked without taking the lock.
//!
//! `/proc/locks` (proc(5)) lists every lock with the pid that took it and
//! the locked file's inode. The device it shows is the superblock's, which
//! on btrfs subvolumes and overlayfs differs from `stat(2)`'s `st_dev`, so
//! a line is matched on the inode number alone and then confirmed: the
//! process must have the very file (same device and inode, as `stat(2)`
//! of its `/proc/PID/fd/N` says) open. A process that is exiting (its
//! leader a zombie, its descriptors gone) is no holder: its lock is about
//! to go.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The live processes holding a `flock` lock on `path`, read from
/// `/proc/locks` without touching the lock (so a probe never makes the
/// holder's own `try_lock` fail). Empty when nobody holds it, or only a
/// process in the middle of exiting does.
pub fn flock_holders(path: &Path) -> io::Result<Vec<u32>> {
    let meta = std::fs::metadata(path)?;
    let locks = std::fs::read_to_string("/proc/locks")?;
    let mut out = Vec::new();
    for pid in parse_locks(&locks, meta.ino()) {
        if !out.contains(&pid) && has_open(pid, meta.dev(), meta.ino()) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// The pids of the `FLOCK` lines of `/proc/locks` on inode `ino` (waiters,
/// the `->` lines, are not holders).
fn parse_locks(text: &str, ino: u64) -> Vec<u32> {
    let mut out = Vec::new();
    for line in text.lines() {
        // "1: FLOCK  ADVISORY  WRITE 2339 fe:00:10027715 0 EOF"
        let mut f = line.split_ascii_whitespace().skip(1);
        if f.next() != Some("FLOCK") {
            continue;
        }
        let (Some(pid), Some(file)) = (f.nth(2), f.next()) else { continue };
        let Some(line_ino) = file.rsplit(':').next().and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        if line_ino == ino
            && let Ok(pid) = pid.parse::<u32>()
        {
            out.push(pid);
        }
    }
    out
}

/// Whether process `pid` has the file (`dev`, `ino`) open. A process whose
/// descriptors cannot be read (another user's) is taken at its word.
fn has_open(pid: u32, dev: u64, ino: u64) -> bool {
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return true,
        Err(_) => return false,
    };
    dir.flatten()
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_give_the_flock_holders_of_an_inode() {
        let text = "1: OFDLCK ADVISORY  WRITE -1 fe:00:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 2339 fe:00:77 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 2400 fe:00:77 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 2340 fe:00:78 0 EOF\n\
                    4: POSIX  ADVISORY  WRITE 2341 00:2f:77 0 EOF\n";
        assert_eq!(parse_locks(text, 77), [2339]);
        assert_eq!(parse_locks(text, 78), [2340]);
        assert!(parse_locks(text, 79).is_empty());
    }

    #[test]
    fn the_holder_of_a_lock_is_found_and_a_released_lock_has_none() {
        let dir = std::env::temp_dir().join(format!("portd-flock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let f = std::fs::File::create(&path).unwrap();
        assert_eq!(flock_holders(&path).unwrap(), Vec::<u32>::new());
        f.lock().unwrap();
        assert_eq!(flock_holders(&path).unwrap(), [std::process::id()]);
        // Another open file of this process is not a lock on it.
        let other = dir.join("y.lock");
        let g = std::fs::File::create(&other).unwrap();
        g.lock().unwrap();
        assert_eq!(flock_holders(&path).unwrap(), [std::process::id()]);
        drop(f);
        assert_eq!(flock_holders(&path).unwrap(), Vec::<u32>::new());
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
