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

// ---- supervision: not available here (portd run needs Linux).

/// Not available here: SIGUSR2.
pub fn owner_death_signal() -> i32 {
    libc::SIGUSR2
}

/// Not available here: SIGUSR1.
pub fn stop_report_signal() -> i32 {
    libc::SIGUSR1
}

/// What `waitpid` reported for a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEvent {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It was stopped by this signal.
    Stopped(i32),
    /// It was continued by SIGCONT.
    Continued,
}
fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "process supervision needs Linux")
}
/// Not available here.
pub fn wait_child(_pid: i32, _block: bool) -> io::Result<Option<(u32, ChildEvent)>> {
    Err(unsupported())
}
/// Not available here.
pub fn set_child_subreaper() -> io::Result<()> {
    Err(unsupported())
}
/// Not available here.
pub fn set_process_group(_pid: u32, _pgid: u32) -> io::Result<()> {
    Err(unsupported())
}
/// Not available here.
pub fn in_foreground() -> bool {
    false
}
/// Not available here.
pub fn controlling_terminal() -> bool {
    false
}
/// Not available here.
pub fn foreground_group() -> Option<u32> {
    None
}
/// Not available here.
pub fn set_foreground(_pgid: u32) -> io::Result<()> {
    Err(unsupported())
}
/// Not available here.
pub fn take_terminal_in_child(_cmd: &mut std::process::Command, _from: u32) {}
/// Not available here.
pub fn pass_fds(_cmd: &mut std::process::Command, _fds: Vec<std::os::fd::RawFd>) {}
/// Not available here.
pub fn inherited_fd(_fd: std::os::fd::RawFd) -> Option<std::os::fd::OwnedFd> {
    None
}
/// Not available here: no `/proc/locks`.
pub fn flock_holders(_path: &std::path::Path) -> io::Result<Vec<u32>> {
    Err(unsupported())
}
/// Whether `path` is a file with an execute bit.
pub fn executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}
/// One process in [`process_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its process group.
    pub pgrp: u32,
    /// The kernel's state letter.
    pub state: char,
    /// Its short name.
    pub comm: String,
}
/// Not available here.
pub fn process_table() -> Vec<ProcEntry> {
    Vec::new()
}
/// A signal taken with who sent it (see the Linux implementation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal.
    pub signal: i32,
    /// The sending process, if a process sent it.
    pub sender: Option<u32>,
}
/// Not available here.
pub fn session() -> u32 {
    0
}
/// Not available here: the process itself.
pub fn job_target(pid: u32, _pgid: u32) -> i32 {
    pid as i32
}
/// Not available here: returns at once.
pub fn die_of_signal(_signal: i32) {}

/// Every signal a thread can block (none known here).
pub fn catchable_signals() -> Vec<i32> {
    Vec::new()
}

// ---- resource use, socket diagnostics, memory trimming: Linux only.

/// Not available here: 4096.
pub fn page_size() -> u64 {
    4096
}
/// Not available here: 100.
pub fn ticks_per_second() -> u64 {
    100
}
/// Not available here.
pub fn rss_bytes(_pid: u32) -> Option<u64> {
    None
}
/// Not available here: 0.
pub fn group_rss(_pgid: u32) -> u64 {
    0
}
/// Not available here.
pub fn cpu_ticks(_pid: u32) -> Option<u64> {
    None
}
/// Not available here.
pub fn listening_ports_of(_pids: &[u32]) -> io::Result<Vec<u16>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "socket diagnostics need Linux"))
}
/// Not available here.
pub fn accept_queue(_port: u16) -> io::Result<u32> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "socket diagnostics need Linux"))
}
/// Not available here.
pub fn established(_port: u16) -> io::Result<usize> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "socket diagnostics need Linux"))
}
/// Not available here.
pub fn established_by_port() -> io::Result<std::collections::HashMap<u16, usize>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "socket diagnostics need Linux"))
}
/// What `trim_resident` released (see the Linux implementation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Whether the allocator returned its free memory.
    pub heap: bool,
    /// Bytes of file-backed mappings released.
    pub file_bytes: u64,
}
/// Does nothing here.
pub fn trim_resident() -> Trimmed {
    Trimmed::default()
}
/// A watch on a directory. Without inotify, [`Watch::wait`] sleeps a
/// little and says that something may have changed, so callers poll.
#[derive(Debug)]
pub struct Watch(());
impl Watch {
    /// Checks that `dir` is a directory.
    pub fn new(dir: &std::path::Path) -> io::Result<Watch> {
        if std::fs::metadata(dir)?.is_dir() {
            Ok(Watch(()))
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"))
        }
    }
    /// Sleeps for `timeout` or 250 ms, whichever is shorter; `true`.
    pub fn wait(&self, timeout: std::time::Duration) -> io::Result<bool> {
        std::thread::sleep(timeout.min(std::time::Duration::from_millis(250)));
        Ok(true)
    }
}
