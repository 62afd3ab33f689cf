//! The cross-process lock: `registry.lock` in the registry directory.
//!
//! redb refuses a second opener at once (`DatabaseAlreadyOpen`), so every
//! operation first takes an exclusive `flock` on this file, polled with a
//! short exponential backoff up to `lock_timeout`, and writes its pid into
//! it so that a waiter that gives up can name the holder. The lock dies with
//! its holder's file descriptor, so a crashed process never leaves it held.

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, TryLockError};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Held while one operation runs; unlocks on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Shortest and longest sleep between two tries. Short at first: a holder
/// typically finishes in well under a millisecond.
const FIRST_WAIT: Duration = Duration::from_micros(50);
const MAX_WAIT: Duration = Duration::from_millis(4);
/// How many lock timeouts a waiter waits in all while the lock changes hands.
const PATIENCE: u32 = 6;

/// Opens the lock file for writing (creating it), or, in a read-only
/// place, an existing one for reading: `flock` works on either, so reads
/// of a read-only registry still take part in the protocol (and writes
/// fail later, when the registry itself is opened for writing).
fn open(path: &Path) -> std::io::Result<File> {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    match portd_core::sys::open_nofollow(path) {
        Err(e) if matches!(e.kind(), ReadOnlyFilesystem | PermissionDenied) => {
            portd_core::sys::open_nofollow_read(path).map_err(|_| e)
        }
        r => r,
    }
}

/// Takes the lock in `dir`, waiting at most `timeout`.
pub fn acquire(dir: &Path, timeout: Duration, shared: bool) -> Result<LockGuard> {
    let path = dir.join(crate::home::LOCK_FILE);
    let file = open(&path).map_err(|e| {
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::permission(format!("lock file `{}` is a symbolic link", path.display()))
                .with_hint(format!("remove it (`rm {}`); portd creates its own", path.display()))
        } else {
            Error::io(format!("cannot open lock file `{}`", path.display()), e)
        }
    })?;
    // In a shared registry the other users must be able to open it too.
    if shared && file.metadata().is_ok_and(|m| m.uid() == portd_core::sys::euid()) {
        let _ = crate::home::set_mode(&file, true);
    }
    // `timeout` bounds how long one holder keeps the lock, so that a hung
    // holder is named within it; while holders come and go (the registry
    // makes progress, e.g. hundreds of processes queueing) a waiter waits
    // on, up to `PATIENCE` times the timeout in all.
    let started = Instant::now();
    let mut since = started;
    let mut seen = holder_pid(&file);
    let mut wait = FIRST_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock `{}`", path.display()), e));
            }
        }
        let holder = holder_pid(&file);
        if holder != seen {
            (seen, since) = (holder, Instant::now());
        }
        let held = since.elapsed();
        let waited = started.elapsed();
        if held >= timeout || waited >= timeout * PATIENCE {
            return Err(busy(holder, &path, timeout, (held < timeout).then_some(waited)));
        }
        std::thread::sleep(wait.min(timeout - held));
        wait = (wait * 2).min(MAX_WAIT);
    }
    // Fixed width, so no truncate is needed; a failure here only costs the
    // name in someone else's "registry busy" message.
    let _ = file.write_at(format!("{:<10}\n", std::process::id()).as_bytes(), 0);
    Ok(LockGuard { _file: file })
}

/// The pid the current (or last) holder wrote into the lock file.
fn holder_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    std::str::from_utf8(&buf[..n]).ok().and_then(|s| s.trim().parse::<u32>().ok())
}

/// "registry busy": one holder kept it for `timeout`, or (`queued`) the
/// lock changed hands for that long without coming to this process.
fn busy(pid: Option<u32>, path: &Path, timeout: Duration, queued: Option<Duration>) -> Error {
    let holder = match pid {
        Some(pid) => match portd_core::sys::proc_stat(pid) {
            Ok(st) => format!("pid {pid} ({})", st.comm),
            // Left by an earlier holder that has exited: the one holding the
            // lock now did not write its pid (yet), so it cannot be named.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "another process".to_owned(),
            Err(_) => format!("pid {pid}"),
        },
        None => "another process".to_owned(),
    };
    let d = crate::config::format_duration;
    let msg = match queued {
        None => format!(
            "registry busy: `{}` is held by {holder} for more than {}",
            path.display(),
            d(timeout)
        ),
        Some(w) => format!(
            "registry busy: `{}` has been taken by other processes for {} (now by {holder})",
            path.display(),
            d(if w < Duration::from_secs(1) {
                Duration::from_millis(w.as_millis() as u64)
            } else {
                Duration::from_secs(w.as_secs())
            })
        ),
    };
    Error::new(ErrorKind::RegistryBusy, msg)
        .with_hint("is another portd running? wait for it, or raise `PORTD_LOCK_TIMEOUT`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_times_out_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), Duration::from_secs(1), false).unwrap();
        let t = Instant::now();
        let err = acquire(dir.path(), Duration::from_millis(100), false).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(err.kind(), ErrorKind::RegistryBusy);
        assert!(err.message().contains(&format!("pid {}", std::process::id())), "{err}");
        drop(held);
        acquire(dir.path(), Duration::from_millis(100), false).unwrap();
    }

    /// Holds the lock in `dir` for `steps` × `every`, writing a new pid into
    /// the file at each step, as a queue of different holders would.
    fn relay(dir: &Path, steps: u32, every: Duration) -> std::thread::JoinHandle<()> {
        let held = acquire(dir, Duration::from_secs(1), false).unwrap();
        let path = dir.join(crate::home::LOCK_FILE);
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            for i in 0..steps {
                f.write_at(format!("{:<10}\n", 4_000_000 + i).as_bytes(), 0).unwrap();
                std::thread::sleep(every);
            }
            drop(held);
        })
    }

    #[test]
    fn a_waiter_waits_on_while_the_lock_changes_hands() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let r = relay(dir.path(), 5, Duration::from_millis(80));
        // 400 ms of holders, each under the 200 ms timeout: no error.
        acquire(dir.path(), Duration::from_millis(200), false).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
        r.join().unwrap();
    }

    #[test]
    fn a_waiter_gives_up_after_patience_timeouts_of_changing_hands() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let r = relay(dir.path(), 40, Duration::from_millis(30));
        let err = acquire(dir.path(), Duration::from_millis(100), false).unwrap_err();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(100) * PATIENCE, "{took:?}");
        assert!(took < Duration::from_millis(1100), "{took:?}");
        assert_eq!(err.kind(), ErrorKind::RegistryBusy);
        assert!(err.message().contains("has been taken by other processes for "), "{err}");
        r.join().unwrap();
    }

    #[test]
    fn refuses_a_symlinked_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("registry.lock"))
            .unwrap();
        assert!(acquire(dir.path(), Duration::from_millis(10), false).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }
}
