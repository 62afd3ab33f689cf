//! Platforms without `/proc`: liveness is unknown (so nothing is ever
//! reclaimed wrongly) and holder lookups find nothing.

use super::{Holder, ProcStat};
use std::io;

/// Not available here.
pub fn proc_stat(_pid: u32) -> io::Result<ProcStat> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no /proc on this platform"))
}
/// Not available here.
pub fn cmdline(_pid: u32) -> Option<Vec<String>> {
    None
}
/// Not available here.
pub fn boot_id() -> Option<u128> {
    None
}
/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}
/// Not available here.
pub fn reserved_ports() -> Vec<(u16, u16)> {
    Vec::new()
}
/// Not available here.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    None
}
/// Not available here.
pub fn holders(_port: u16, _udp: bool) -> Vec<Holder> {
    Vec::new()
}
/// Not available here.
pub fn time_wait(_port: u16) -> bool {
    false
}
/// Not available here.
pub fn environ(_pid: u32) -> Option<Vec<(String, String)>> {
    None
}
/// Not available here.
pub fn proc_uid(_pid: u32) -> Option<u32> {
    None
}
/// Opens (creating 0600 if needed) a file without following a symlink.
pub fn open_nofollow(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing file for reading without following a symlink, and
/// without blocking in `open` (a FIFO).
pub fn open_nofollow_read(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}
/// Creates a new file with `mode`, never through a symlink.
pub fn create_new_nofollow(path: &std::path::Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}
/// Opens a file for reading without blocking in `open` (a FIFO).
pub(super) fn open_read_nonblocking(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}
/// Whether this process may create files in the directory `path`.
pub fn can_write(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
    // access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}
/// No-op here: see the Linux version.
pub fn ignore_file_size_signal() {}
/// Not known here.
pub fn network_fs(_path: &std::path::Path) -> Option<&'static str> {
    None
}
