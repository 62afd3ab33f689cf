//! Waiting for a change in a directory (inotify(7)), so that following a
//! file costs nothing while it does not change.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// A watch on one directory: [`Watch::wait`] returns when a file in it is
/// written, created, moved, removed, truncated or closed after writing, or
/// when the directory itself goes away.
#[derive(Debug)]
pub struct Watch {
    fd: OwnedFd,
}

/// What wakes a [`Watch`]: everything that can change a file's content or
/// which file a name refers to.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

impl Watch {
    /// Watches the directory `dir` ([inotify_init1(2)], [inotify_add_watch(2)]).
    ///
    /// [inotify_init1(2)]: https://man7.org/linux/man-pages/man2/inotify_init1.2.html
    /// [inotify_add_watch(2)]: https://man7.org/linux/man-pages/man2/inotify_add_watch.2.html
    pub fn new(dir: &Path) -> io::Result<Watch> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: inotify_init1 takes flags only and touches no memory.
        let raw = super::linux::cvt(unsafe {
            libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC)
        })?;
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mask = MASK | libc::IN_ONLYDIR;
        // SAFETY: `fd` is an open inotify descriptor and `c` a valid
        // NUL-terminated path that outlives the call, which only reads it.
        super::linux::cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) })?;
        Ok(Watch { fd })
    }

    /// Blocks until something in the directory changes or `timeout` has
    /// passed ([poll(2)]); says which (`true`: a change). Pending events are
    /// consumed, so the next call waits for a new change.
    ///
    /// [poll(2)]: https://man7.org/linux/man-pages/man2/poll.2.html
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        use std::os::fd::AsFd;
        if !super::wait_readable(self.fd.as_fd(), Some(timeout))? {
            return Ok(false);
        }
        self.drain()?;
        Ok(true)
    }

    /// Reads every queued event (their content does not matter).
    fn drain(&self) -> io::Result<()> {
        // Aligned for `struct inotify_event`, large enough for many.
        let mut buf = [0u64; 512];
        loop {
            // SAFETY: `buf` is writable for its full size in bytes and
            // outlives the call.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n > 0 {
                continue;
            }
            if n == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_on_a_change_and_times_out_without_one() {
        let dir = std::env::temp_dir().join(format!("portd-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let w = Watch::new(&dir).unwrap();
        let t = std::time::Instant::now();
        assert!(!w.wait(Duration::from_millis(50)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(50));
        std::fs::write(dir.join("f"), b"x").unwrap();
        assert!(w.wait(Duration::from_secs(5)).unwrap());
        // The events were consumed: nothing new, so it times out again.
        assert!(!w.wait(Duration::from_millis(20)).unwrap());
        std::fs::rename(dir.join("f"), dir.join("g")).unwrap();
        assert!(w.wait(Duration::from_secs(5)).unwrap());
        assert!(Watch::new(&dir.join("g")).is_err(), "a file is not a directory");
        assert!(Watch::new(&dir.join("none")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
