//! Waiting for a descriptor to become readable, with a timeout (poll(2)):
//! for threads that must block in the kernel rather than spin or sleep.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Waits until `fd` is readable (data, end of file, a pending connection
/// on a listener, or an error condition to collect by reading), or until
/// `timeout` has passed (`None`: no limit). `Ok(true)`: readable;
/// `Ok(false)`: the time ran out. An interrupted wait (`EINTR`) is resumed
/// with the time that remains.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up, so that a short wait is not a busy loop.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `p` is one valid pollfd owned by this frame for the whole
        // call; `fd` is borrowed, so it stays open meanwhile.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            if p.revents & libc::POLLNVAL != 0 {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn waits_for_data_and_times_out_without_it() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let t = Instant::now();
        assert!(!wait_readable(b.as_fd(), Some(Duration::from_millis(50))).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(50), "{:?}", t.elapsed());
        assert!(!wait_readable(b.as_fd(), Some(Duration::ZERO)).unwrap());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            a.write_all(b"x").unwrap();
            a
        });
        assert!(wait_readable(b.as_fd(), None).unwrap());
        let a = writer.join().unwrap();
        drop(a);
        // End of file is readable too.
        assert!(wait_readable(b.as_fd(), Some(Duration::from_secs(5))).unwrap());
    }
}
