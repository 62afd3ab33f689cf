//! One proxy per registry: the running proxy holds `proxy.lock` (flock)
//! for its whole life and describes itself in `proxy.json`
//! (`{"pid", "port", "token", "started"}`), both in the registry
//! directory. The lock, not the file, says whether a proxy runs: a proxy
//! killed with SIGKILL leaves its `proxy.json`, but the kernel releases
//! its lock, and the next one starts cleanly. Who holds the lock is read
//! from `/proc/locks` ([`holder`]), never by taking it: a probe must not
//! make a starting proxy's claim fail.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file's name in the registry directory.
pub const LOCK_FILE: &str = "proxy.lock";
/// The description's name in the registry directory.
pub const INFO_FILE: &str = "proxy.json";

/// What `proxy.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The proxy's pid.
    pub pid: u32,
    /// The port it serves (the first, with systemd's sockets).
    pub port: u16,
    /// Its per-run token (the dashboard's state-changing requests carry it).
    pub token: String,
    /// When it started (RFC 3339, UTC).
    pub started: String,
}

/// This process's claim on the registry's proxy: held until dropped
/// (then `proxy.json` is removed).
#[derive(Debug)]
pub struct Instance {
    _lock: File,
    info: PathBuf,
}

/// Why [`claim`] failed.
#[derive(Debug)]
pub enum ClaimError {
    /// Another proxy runs for this registry: its pid (where the platform
    /// says who holds the lock) and its description, if it has written one.
    Running {
        /// The pid holding `proxy.lock`.
        pid: Option<u32>,
        /// Its `proxy.json`, when that describes the holder.
        info: Option<Info>,
    },
    /// The lock file could not be opened.
    Io(io::Error),
}

/// How long [`claim`] waits for a lock whose holder is exiting (a proxy
/// killed with SIGKILL: its main thread is a zombie while its other threads
/// still close the descriptors, the lock among them).
const EXITING_WAIT: Duration = Duration::from_secs(5);

/// How long [`claim`] waits, where no one can say who holds the lock, for
/// a probe's momentary `try_lock` to end.
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// Takes `DIR/proxy.lock` without waiting for a live holder, and removes a
/// `proxy.json` that an earlier proxy killed without warning left.
pub fn claim(dir: &Path) -> Result<Instance, ClaimError> {
    let path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(ClaimError::Io)?;
    let begun = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => {
                let info = dir.join(INFO_FILE);
                let _ = std::fs::remove_file(&info);
                return Ok(Instance { _lock: lock, info });
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(ClaimError::Io(e)),
        }
        let waited = begun.elapsed();
        match holder(dir) {
            // A live process holds it: a proxy runs (or is starting).
            Ok(Some(pid)) => {
                return Err(ClaimError::Running {
                    pid: Some(pid),
                    info: read_info(dir).filter(|i| i.pid == pid),
                });
            }
            // Held by no live process: its holder is exiting.
            Ok(None) if waited < EXITING_WAIT => {}
            // No way to tell who holds it here: a probe, for a moment?
            Err(_) if waited < PROBE_WAIT => {}
            Ok(None) | Err(_) => {
                return Err(ClaimError::Running { pid: None, info: read_info(dir) });
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid of the live process holding `DIR/proxy.lock`: `None` when no
/// proxy runs for the registry at `DIR` (nobody holds the lock, or only a
/// process that is exiting). The lock is not touched. An error where the
/// platform cannot say (no `/proc/locks`).
pub fn holder(dir: &Path) -> io::Result<Option<u32>> {
    match portd_core::sys::flock_holders(&dir.join(LOCK_FILE)) {
        Ok(pids) => Ok(pids.first().copied()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Instance {
    /// Writes `proxy.json` (a new file renamed into place: readers never
    /// see half of it).
    pub fn publish(&self, info: &Info) -> io::Result<()> {
        let tmp = self.info.with_extension("json.tmp");
        let text = serde_json::to_string(info).map_err(io::Error::other)? + "\n";
        // 0600: it holds the dashboard's token.
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::remove_file(&tmp);
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
        }
        std::fs::rename(&tmp, &self.info)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info);
    }
}

/// `DIR/proxy.json`, if it is there and well formed.
pub fn read_info(dir: &Path) -> Option<Info> {
    let mut s = String::new();
    File::open(dir.join(INFO_FILE)).ok()?.take(64 * 1024).read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// `n` random bytes from the kernel, in hex (for tokens).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        // No /dev/urandom: time and pid, which only need to differ per run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = t ^ (u128::from(std::process::id()) << 64);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub use crate::json::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_sees_the_first_and_a_released_lock_can_be_taken_again() {
        let tmp = tempfile::tempdir().unwrap();
        let first = claim(tmp.path()).unwrap();
        let info = Info { pid: 42, port: 7780, token: random_hex(4), started: rfc3339(0) };
        first.publish(&info).unwrap();
        match claim(tmp.path()) {
            Err(ClaimError::Running { pid, info: None }) => {
                // The holder is this process, not the pid 42 of the file.
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(holder(tmp.path()).unwrap(), Some(std::process::id()));
        let mine = Info { pid: std::process::id(), ..info.clone() };
        first.publish(&mine).unwrap();
        match claim(tmp.path()) {
            Err(ClaimError::Running { pid: Some(p), info: Some(i) }) => {
                assert_eq!((p, i), (std::process::id(), mine));
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(read_info(tmp.path()).is_none());
        assert_eq!(holder(tmp.path()).unwrap(), None);
        // A description left by a proxy killed without warning goes.
        std::fs::write(tmp.path().join(INFO_FILE), serde_json::to_string(&info).unwrap()).unwrap();
        let again = claim(tmp.path()).unwrap();
        assert!(read_info(tmp.path()).is_none());
        drop(again);
        assert_eq!(rfc3339(86_400_000), "1970-01-02T00:00:00Z");
        assert_eq!(random_hex(8).len(), 16);
    }
}
