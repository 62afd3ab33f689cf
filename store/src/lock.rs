//! The cross-process lock: `registry.lock` in the registry directory.
//!
//! redb refuses a second opener at once (`DatabaseAlreadyOpen`), so every
//! operation first takes an exclusive `flock` on this file, polled with a
//! short backoff up to `lock_timeout`, and writes its pid into it so that a
//! waiter that gives up can name the holder. The lock dies with its
//! holder's file descriptor, so a crashed process never leaves it held.
//!
//! `flock` alone is not fair: whoever tries right after a release wins,
//! and that is typically the process that just released it (its next
//! group-commit leader), while the others sleep between polls. So waiters
//! queue in the same file: a caller that has to wait announces itself in a
//! slot (who, since when, refreshed when), and a caller only tries the
//! lock when no live waiter announced itself before it. The slots are
//! advisory (the `flock` alone excludes); a slot not refreshed for
//! [`STALE`] is ignored, so a waiter that died or stalled holds up no one
//! for longer than that.

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, TryLockError};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Held while one operation runs; unlocks on drop.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl LockGuard {
    /// Whether another caller (another process, or another handle of this
    /// one) is waiting for the lock now: one that has announced itself in
    /// the waiters' slots.
    pub fn others_waiting(&self) -> bool {
        let now = now_us();
        View::read(&self.file).slots.iter().flatten().any(|w| w.live(now))
    }
}

/// Shortest and longest sleep between two tries. Short at first: a holder
/// typically finishes in well under a millisecond.
const FIRST_WAIT: Duration = Duration::from_micros(50);
const MAX_WAIT: Duration = Duration::from_millis(4);
/// The longest sleep of a waiter that is next in line, or next but one
/// (the one before it may be holding the lock): the lock stays free for at
/// most about this long when it changes hands between two waiters.
const NEAR_WAIT: Duration = Duration::from_micros(250);
/// How many lock timeouts a waiter waits in all while the lock changes hands.
const PATIENCE: u32 = 6;

/// The waiters' slots: `SLOTS` records of `SLOT` bytes from `SLOTS_AT`,
/// after the holder's pid line. A record is `pid`, `id` (the waiter's file
/// descriptor, so that two handles of one process differ) as u32, `since`
/// and `fresh` (µs since the epoch) as u64, little-endian; all zero when
/// free.
const SLOTS_AT: usize = 64;
const SLOT: usize = 24;
const SLOTS: usize = 64;
const FILE_LEN: usize = SLOTS_AT + SLOT * SLOTS;
/// A waiter rewrites its slot at least this often…
const REFRESH: Duration = Duration::from_millis(10);
/// …and one not rewritten for this long is ignored.
const STALE: Duration = Duration::from_millis(50);

/// One waiter's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    pid: u32,
    id: u32,
    since: u64,
    fresh: u64,
}

impl Waiter {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..16].copy_from_slice(&self.since.to_le_bytes());
        b[16..].copy_from_slice(&self.fresh.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Waiter> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let w = Waiter { pid: u32_at(0), id: u32_at(4), since: u64_at(8), fresh: u64_at(16) };
        (w.pid != 0).then_some(w)
    }

    fn same(&self, other: &Waiter) -> bool {
        (self.pid, self.id) == (other.pid, other.id)
    }

    /// Announced recently enough (and not from a clock far ahead) to count.
    fn live(&self, now: u64) -> bool {
        let stale = STALE.as_micros() as u64;
        self.fresh.saturating_add(stale) >= now && self.fresh <= now.saturating_add(stale)
    }
}

/// What one read of the lock file shows.
#[derive(Debug, Default)]
struct View {
    holder: Option<u32>,
    slots: Vec<Option<Waiter>>,
}

impl View {
    fn read(file: &File) -> View {
        let mut buf = [0u8; FILE_LEN];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let line = &buf[..n.min(SLOTS_AT)];
        let line = &line[..line.iter().position(|&b| b == b'\n' || b == 0).unwrap_or(line.len())];
        let holder = std::str::from_utf8(line).ok().and_then(|s| s.trim().parse::<u32>().ok());
        let slots = buf[SLOTS_AT..n.max(SLOTS_AT)].chunks_exact(SLOT).map(Waiter::decode).collect();
        View { holder, slots }
    }

    /// How many live waiters announced themselves before `me`.
    fn ahead_of(&self, me: &Waiter, now: u64) -> usize {
        let key = |w: &Waiter| (w.since, w.pid, w.id);
        self.slots
            .iter()
            .flatten()
            .filter(|w| !w.same(me) && w.live(now) && key(w) < key(me))
            .count()
    }

    /// The slot `me` holds, else the first free or stale one from a place
    /// that depends on `me` (so that waiters rarely pick the same one).
    fn slot_for(&self, me: &Waiter, now: u64) -> Option<usize> {
        let at = |i: usize| self.slots.get(i).copied().flatten();
        if let Some(i) = (0..SLOTS).find(|&i| at(i).is_some_and(|w| w.same(me))) {
            return Some(i);
        }
        let first = (me.pid as usize).wrapping_mul(31).wrapping_add(me.id as usize) % SLOTS;
        (0..SLOTS).map(|k| (first + k) % SLOTS).find(|&i| at(i).is_none_or(|w| !w.live(now)))
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

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
///
/// Uncontended, this is one read of the file, one `flock` and one write of
/// the pid. A caller that has to wait takes its turn after the live
/// waiters that announced themselves before it.
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
    let mut view = View::read(&file);
    let mut seen = view.holder;
    let mut wait = FIRST_WAIT;
    let id = u32::try_from(file.as_raw_fd()).unwrap_or(0);
    let mut me = Waiter { pid: std::process::id(), id, since: now_us(), fresh: 0 };
    // The slot this caller announced itself in, and when.
    let mut slot: Option<(usize, Instant)> = None;
    loop {
        let now = now_us();
        let ahead = view.ahead_of(&me, now);
        if ahead == 0 {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    leave(&file, slot);
                    return Err(Error::io(format!("cannot lock `{}`", path.display()), e));
                }
            }
        }
        slot = announce(&file, &view, slot, &mut me, now);
        if view.holder != seen {
            (seen, since) = (view.holder, Instant::now());
        }
        let held = since.elapsed();
        let waited = started.elapsed();
        if held >= timeout || waited >= timeout * PATIENCE {
            leave(&file, slot);
            return Err(busy(view.holder, &path, timeout, (held < timeout).then_some(waited)));
        }
        let cap = if ahead <= 1 { NEAR_WAIT } else { MAX_WAIT };
        std::thread::sleep(wait.min(cap).min(timeout - held));
        wait = (wait * 2).min(MAX_WAIT);
        view = View::read(&file);
    }
    leave(&file, slot);
    // Fixed width, so no truncate is needed; a failure here only costs the
    // name in someone else's "registry busy" message.
    let _ = file.write_at(format!("{:<10}\n", std::process::id()).as_bytes(), 0);
    Ok(LockGuard { file })
}

/// Writes (or refreshes) `me` into its slot, choosing one when it has none
/// or when another waiter wrote over it. Returns the slot, `None` when the
/// file cannot be written (a read-only registry: such a waiter polls
/// without a place in the queue).
fn announce(
    file: &File,
    view: &View,
    slot: Option<(usize, Instant)>,
    me: &mut Waiter,
    now: u64,
) -> Option<(usize, Instant)> {
    let mine =
        slot.filter(|&(i, _)| view.slots.get(i).copied().flatten().is_some_and(|w| w.same(me)));
    if let Some((_, at)) = mine
        && at.elapsed() < REFRESH
    {
        return mine;
    }
    let i = match mine {
        Some((i, _)) => i,
        None => view.slot_for(me, now)?,
    };
    me.fresh = now;
    file.write_at(&me.encode(), (SLOTS_AT + i * SLOT) as u64).ok()?;
    Some((i, Instant::now()))
}

/// Frees the slot this caller announced itself in, if any.
fn leave(file: &File, slot: Option<(usize, Instant)>) {
    if let Some((i, _)) = slot {
        let _ = file.write_at(&[0u8; SLOT], (SLOTS_AT + i * SLOT) as u64);
    }
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
    fn a_holder_that_releases_does_not_retake_the_lock_before_a_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), Duration::from_secs(5), false).unwrap();
        let path = dir.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let _held = acquire(&path, Duration::from_secs(5), false).unwrap();
            let got = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            got
        });
        // The waiter has polled (and announced itself) for a while.
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        let again = acquire(dir.path(), Duration::from_secs(5), false).unwrap();
        let retook = Instant::now();
        drop(again);
        let got = waiter.join().unwrap();
        assert!(got < retook, "the releasing caller took the lock back first");
    }

    /// A waiter's record as a process that stopped refreshing it left it.
    fn stalled_waiter(dir: &Path) {
        let path = dir.join(crate::home::LOCK_FILE);
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path);
        let f = f.unwrap();
        let now = now_us();
        let w = Waiter { pid: 4_000_001, id: 3, since: now - 1_000_000, fresh: now };
        f.write_at(&w.encode(), (SLOTS_AT + 5 * SLOT) as u64).unwrap();
    }

    #[test]
    fn a_waiter_that_stops_announcing_itself_holds_up_no_one_for_long() {
        let dir = tempfile::tempdir().unwrap();
        stalled_waiter(dir.path());
        let t = Instant::now();
        // Its turn came first; once its record is stale, the lock is free.
        let _held = acquire(dir.path(), Duration::from_secs(5), false).unwrap();
        let took = t.elapsed();
        assert!(took >= STALE - Duration::from_millis(5), "{took:?}");
        assert!(took < STALE * 5, "{took:?}");
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
