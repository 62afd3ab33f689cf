//! Opening a file for appending without being redirected: the log files
//! that portd writes on behalf of a server.

use std::fs;
use std::io;
use std::path::Path;

/// Opens `path` for reading and appending (`O_APPEND`), creating it with
/// `mode` if needed. A symlink in its last component is refused (`O_NOFOLLOW`), and
/// `open` does not block on a FIFO (`O_NONBLOCK`, which a regular file
/// ignores): the caller checks what it opened (see open(2)).
pub fn open_append_nofollow(path: &Path, mode: u32) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}
