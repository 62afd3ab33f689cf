//! Linux: `/proc` readers and the few libc calls portd needs.

use super::{Holder, ProcStat, parse_stat};
use std::collections::HashSet;
use std::fs;
use std::io;

/// `/proc/PID/stat`; `NotFound` when there is no such process.
pub fn proc_stat(pid: u32) -> io::Result<ProcStat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&s).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat"))
}

/// The command line of `pid`, when readable and non-empty.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then_some(args)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`) as a number.
pub fn boot_id() -> Option<u128> {
    let s = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    u128::from_str_radix(&hex, 16).ok()
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// `net.ipv4.ip_local_reserved_ports`; empty when unreadable.
pub fn reserved_ports() -> Vec<(u16, u16)> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map(|s| crate::exclude::parse_port_list(&s))
        .unwrap_or_default()
}

/// `net.ipv4.ip_local_port_range`: where the kernel draws ephemeral ports.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let s = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_ascii_whitespace().map(|p| p.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

/// One row of a `/proc/net/{tcp,tcp6,udp,udp6}` table: local port, state
/// (hex, e.g. `0A` listen, `06` TIME_WAIT) and socket inode.
fn net_rows(table: &str, mut each: impl FnMut(u16, &str, u64)) {
    let Ok(text) = fs::read_to_string(table) else {
        return;
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let Some(port) = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        each(port, f[3], f[9].parse::<u64>().unwrap_or(0));
    }
}

/// Socket inodes bound to `port` in one `/proc/net/{tcp,tcp6,udp,udp6}`
/// table; TCP counts listeners only (state `0A`), UDP any bound socket.
fn socket_inodes(table: &str, port: u16, tcp: bool, out: &mut HashSet<u64>) {
    net_rows(table, |p, state, inode| {
        if p == port && (!tcp || state == "0A") && inode != 0 {
            out.insert(inode);
        }
    });
}

/// Whether connections on local port `port` linger in TIME_WAIT: a server
/// that binds without `SO_REUSEADDR` cannot take the port until they end.
pub fn time_wait(port: u16) -> bool {
    let mut found = false;
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        net_rows(t, |p, state, _| found |= p == port && state == "06");
    }
    found
}

/// Inodes of TCP sockets bound to `port` that neither listen nor connect.
/// `/proc/net/tcp` does not list them; the kernel's `sock_diag` netlink
/// interface does since Linux 6.5, as the pseudo-state
/// `TCP_BOUND_INACTIVE` (see sock_diag(7)). Older kernels answer nothing.
fn bound_inactive_inodes(port: u16, out: &mut HashSet<u64>) {
    use super::sock_diag::{TCP_BOUND_INACTIVE, tcp_sockets};
    let _ = tcp_sockets(1 << TCP_BOUND_INACTIVE, |s| {
        if s.local_port == port && s.inode != 0 {
            out.insert(u64::from(s.inode));
        }
    });
}

/// The processes that listen on `port` (TCP) or have it bound (UDP), and
/// those holding a TCP socket bound to it without listening. Costs a few
/// milliseconds: for `check` and warnings, never for allocation.
/// Processes of other users are invisible without privileges.
pub fn holders(port: u16, udp: bool) -> Vec<Holder> {
    let mut inodes = HashSet::new();
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        socket_inodes(t, port, true, &mut inodes);
    }
    if udp {
        for t in ["/proc/net/udp", "/proc/net/udp6"] {
            socket_inodes(t, port, false, &mut inodes);
        }
    }
    let mut inactive = HashSet::new();
    bound_inactive_inodes(port, &mut inactive);
    let mut out = Vec::new();
    if inodes.is_empty() && inactive.is_empty() {
        return out;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let (mut active, mut idle) = (false, false);
        for n in fd_socket_inodes(pid) {
            active |= inodes.contains(&n);
            idle |= inactive.contains(&n);
        }
        if active || idle {
            let name = proc_stat(pid).map(|s| s.comm).unwrap_or_default();
            out.push(Holder { pid, name, cmdline: cmdline(pid), listening: active });
        }
    }
    out
}

/// The environment `pid` was started with (`/proc/PID/environ`): readable
/// for processes of the same user (or with privileges), else `None`.
pub fn environ(pid: u32) -> Option<Vec<(String, String)>> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

/// The (effective) uid a process runs as: the owner of `/proc/PID`.
pub fn proc_uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Opens (creating 0600 if needed) a file without following a symlink in
/// its last component, so a planted link cannot redirect portd's writes.
pub fn open_nofollow(path: &std::path::Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing file for reading without following a symlink in its
/// last component (see [`open_nofollow`]), and without blocking in `open`
/// (`O_NONBLOCK`): a FIFO opens at once instead of waiting for a writer.
pub fn open_nofollow_read(path: &std::path::Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Creates a new file with `mode` for writing: never an existing name, and
/// never through a symlink planted in its place.
pub fn create_new_nofollow(path: &std::path::Path, mode: u32) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens a file for reading without blocking in `open` (open(2) with
/// `O_NONBLOCK`): a FIFO opens at once instead of waiting for a writer, so
/// the caller can look at what it opened before reading from it.
pub(super) fn open_read_nonblocking(path: &std::path::Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

/// Whether this process may create files in the directory `path`
/// (access(2) with `W_OK`): a read-only mount says no even to root.
pub fn can_write(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
    // access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

pub use libc::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGTTOU, SIGUSR2};

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// The inodes of the sockets process `pid` has open (its `/proc/PID/fd`
/// links `socket:[N]`); none when it cannot be read.
pub(super) fn fd_socket_inodes(pid: u32) -> impl Iterator<Item = u64> {
    fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().filter_map(|fd| {
        let target = fs::read_link(fd.path()).ok()?;
        target
            .to_str()?
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
    })
}

/// Arranges for the child of `cmd` to receive `signal` when this thread
/// dies (`prctl(PR_SET_PDEATHSIG)`, see prctl(2)), without the race in which
/// the parent dies before the call: the child checks that its parent is
/// still `parent` afterwards and fails to start otherwise.
pub fn parent_death_signal(cmd: &mut std::process::Command, signal: i32) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (prctl, getppid); it allocates
    // nothing and touches no lock: its errors are raw OS errors, which
    // carry no allocation (ESRCH: the parent is gone).
    unsafe {
        cmd.pre_exec(move || {
            cvt(libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0))?;
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// A set of signals blocked in the calling thread, to be received
/// synchronously with [`SignalSet::wait_for`] (sigwaitinfo(2)). The mask is
/// inherited by children: start them through [`clear_signal_mask`].
#[derive(Debug)]
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// Blocks `signals` in this thread (and threads it starts later).
    pub fn block(signals: &[i32]) -> io::Result<SignalSet> {
        // SAFETY: `set` is a valid, initialised sigset_t owned by this frame;
        // pthread_sigmask only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            Ok(SignalSet(set))
        }
    }
}

/// Sends `signal` to process `pid` (kill(2)); a negative pid names a
/// process group.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// This process's group id.
pub fn pgrp() -> u32 {
    // SAFETY: getpgrp cannot fail and touches no memory.
    unsafe { libc::getpgrp() as u32 }
}

/// This process's parent.
pub fn ppid() -> u32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() as u32 }
}

/// Makes a write past `RLIMIT_FSIZE` fail with `EFBIG` instead of killing
/// the process with SIGXFSZ, so that a full quota is reported as an error.
/// [`clear_signal_mask`] restores the default for children.
pub fn ignore_file_size_signal() {
    // SAFETY: sets one signal's disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Starts the child of `cmd` with no blocked signals: the mask is inherited
/// across fork and exec, and a server that starts with SIGTERM blocked
/// could not be stopped. SIGXFSZ gets its default action back (see
/// [`ignore_file_size_signal`]).
pub fn clear_signal_mask(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; signal, sigemptyset and
    // pthread_sigmask are async-signal-safe and use only this frame's set.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let r = libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if r != 0 { Err(io::Error::from_raw_os_error(r)) } else { Ok(()) }
        });
    }
}

/// The name of the network or FUSE file system `path` lives on, if it is
/// one: there, file locks may not be shared between machines (or at all).
pub fn network_fs(path: &std::path::Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly
    // sized, writable statfs buffer that lives across the call.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st) == 0).then_some(st)
    }?;
    // Magic numbers from linux/magic.h and the file systems' sources.
    match st.f_type as u64 {
        0x6969 => Some("NFS"),
        0x517b => Some("SMB"),
        0xff53_4d42 => Some("CIFS"),
        0xfe53_4d42 => Some("SMB2"),
        0x6573_5546 => Some("FUSE"),
        0x0102_1997 => Some("9p"),
        0x00c3_6400 => Some("Ceph"),
        0x5346_414f => Some("AFS"),
        0x0116_1970 => Some("GFS2"),
        0x7461_636f => Some("OCFS2"),
        0x0bd0_0bd0 => Some("Lustre"),
        _ => None,
    }
}

// ---- supervision
//
// What `portd run` and its supervisor need below std: waiting for stopped
// and continued children, process groups, the terminal's foreground group,
// the child subreaper flag, and passing inherited descriptors.

pub use libc::{SIGALRM, SIGCONT, SIGIO, SIGPROF, SIGSTOP, SIGTSTP, SIGTTIN, SIGUSR1, SIGVTALRM};

/// The parent-death signal of a supervisor (SIGRTMIN+3): a real-time
/// signal, which no program sends by name, so that a `pkill -USR2` meant
/// for a server is not taken for its owner's death. The receiver still
/// checks [`ppid`] (the kernel reparents before it sends the signal).
pub fn owner_death_signal() -> i32 {
    libc::SIGRTMIN() + 3
}

/// How a supervisor tells its owner that the command stopped (SIGRTMIN+4):
/// a signal of its own, real-time so that it queues, which neither merges
/// with nor is mistaken for a SIGUSR1 that someone sends the owner to be
/// forwarded to the command.
pub fn stop_report_signal() -> i32 {
    libc::SIGRTMIN() + 4
}

/// A signal taken by [`SignalSet::wait_for`], with who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal.
    pub signal: i32,
    /// The sending process, for a signal sent with kill(2); `None` for one
    /// the kernel raised (the terminal's Ctrl-C, a child's SIGCHLD).
    pub sender: Option<u32>,
}

impl SignalSet {
    /// Waits up to `timeout` (`None`: forever) for one of the blocked
    /// signals (sigtimedwait(2)); `Ok(None)` when the time ran out.
    pub fn wait_for(&self, timeout: Option<std::time::Duration>) -> io::Result<Option<Received>> {
        loop {
            // SAFETY: `info` is a zeroed siginfo_t owned by this frame and
            // `ts` a valid timespec; both outlive the call, which only
            // writes `info`.
            let (r, info) = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let r = match timeout {
                    None => libc::sigwaitinfo(&self.0, &mut info),
                    Some(t) => {
                        let ts = libc::timespec {
                            tv_sec: t.as_secs() as libc::time_t,
                            tv_nsec: t.subsec_nanos() as libc::c_long,
                        };
                        libc::sigtimedwait(&self.0, &mut info, &ts)
                    }
                };
                (r, info)
            };
            if r == -1 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(None),
                    _ => return Err(e),
                }
            }
            // SAFETY: for SI_USER and SI_QUEUE the kernel filled in the
            // sender's pid, which `si_pid` reads from the union.
            let sender = (info.si_code == libc::SI_USER || info.si_code == libc::SI_QUEUE)
                .then(|| unsafe { info.si_pid() } as u32);
            return Ok(Some(Received { signal: r, sender }));
        }
    }
}

/// This process's session id (getsid(2)).
pub fn session() -> u32 {
    // SAFETY: getsid(0) takes an integer and touches no memory.
    unsafe { libc::getsid(0) as u32 }
}

/// The processes job control acts on for this process, as a kill(2)
/// target: its whole process group (so that a shell's job, such as
/// `sh -c 'portd run …; …'`, stops or continues as one, as `sudo` does),
/// or only this process when its group is its session leader's (a shell
/// without job control, which nothing would continue again).
pub fn job_target(pid: u32, pgid: u32) -> i32 {
    if pgid == session() { pid as i32 } else { -(pgid as i32) }
}

/// Ends this process by `signal`, as the command it ran ended, so that its
/// parent sees the same status (a shell's loop stops on a Ctrl-C): the
/// default action restored, the signal unblocked, then kill(2) to itself.
/// No core file is written: the process is made non-dumpable first
/// (`prctl(PR_SET_DUMPABLE, 0)`, as GNU `timeout` does; `RLIMIT_CORE` alone
/// is ignored when `core_pattern` pipes to a handler), and if that fails
/// nothing is raised. Returns if `signal` does not end a process by default
/// or could not be raised safely (the caller then exits with 128+N).
pub fn die_of_signal(signal: i32) {
    // SAFETY: prctl takes integers; setrlimit reads `none`, a valid rlimit
    // owned by this frame; signal, sigemptyset, sigaddset and
    // pthread_sigmask use only this frame's set; kill and getpid take
    // integers.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) != 0 {
            return;
        }
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(signal, libc::SIG_DFL);
        libc::kill(libc::getpid(), signal);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
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

/// Waits for a state change of child `pid` (`-1`: any child), including
/// stops and continues (waitpid(2) with `WUNTRACED | WCONTINUED`). With
/// `block == false` returns `Ok(None)` when no child has changed; `ECHILD`
/// (no such child) is an error of kind `NotFound`.
pub fn wait_child(pid: i32, block: bool) -> io::Result<Option<(u32, ChildEvent)>> {
    let mut flags = libc::WUNTRACED | libc::WCONTINUED;
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.raw_os_error() == Some(libc::ECHILD) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such child"));
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        let ev = if libc::WIFEXITED(status) {
            ChildEvent::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ChildEvent::Signaled(libc::WTERMSIG(status))
        } else if libc::WIFSTOPPED(status) {
            ChildEvent::Stopped(libc::WSTOPSIG(status))
        } else {
            ChildEvent::Continued
        };
        return Ok(Some((r as u32, ev)));
    }
}

/// Makes this process a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`,
/// see prctl(2)): orphaned descendants are reparented to it instead of to
/// init, so it can find and stop them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// Moves process `pid` (0: this one) into process group `pgid` (setpgid(2)).
pub fn set_process_group(pid: u32, pgid: u32) -> io::Result<()> {
    // SAFETY: setpgid takes plain integers and touches no memory.
    cvt(unsafe { libc::setpgid(pid as libc::pid_t, pgid as libc::pid_t) }).map(drop)
}

/// Whether stdin is a terminal whose foreground process group is this
/// process's group.
pub fn in_foreground() -> bool {
    foreground_group() == Some(pgrp())
}

/// Whether stdin is this session's controlling terminal: the condition for
/// job control (tcgetsid(3)).
pub fn controlling_terminal() -> bool {
    // SAFETY: isatty/tcgetsid/getsid take an fd or a pid and touch no memory.
    unsafe { libc::isatty(0) == 1 && libc::tcgetsid(0) == libc::getsid(0) }
}

/// The foreground process group of the terminal on stdin, if stdin is one.
pub fn foreground_group() -> Option<u32> {
    // SAFETY: isatty/tcgetpgrp take an fd and touch no memory.
    let g = unsafe {
        if libc::isatty(0) != 1 {
            return None;
        }
        libc::tcgetpgrp(0)
    };
    (g > 0).then_some(g as u32)
}

/// Makes `pgid` the foreground group of the terminal on stdin, whatever
/// group this process is in (SIGTTOU blocked around the call).
pub fn set_foreground(pgid: u32) -> io::Result<()> {
    // SAFETY: `set` and `old` are valid sigset_t values owned by this frame;
    // pthread_sigmask reads the one and writes the other; tcsetpgrp takes
    // an fd and an integer only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let r = cvt(libc::tcsetpgrp(0, pgid as libc::pid_t)).map(drop);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// In the child of `cmd`, after it has become the leader of its own
/// process group (`CommandExt::process_group(0)`), makes that group the
/// foreground group of the terminal on stdin if the foreground group is
/// still `from` (the parent's), as a shell does for a job it starts, so the
/// program never runs in the background of its own terminal.
pub fn take_terminal_in_child(cmd: &mut std::process::Command, from: u32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; sigemptyset, sigaddset,
    // pthread_sigmask, isatty, tcgetpgrp, getpgrp and tcsetpgrp are
    // async-signal-safe and use only this frame's set. SIGTTOU stays
    // blocked only until `clear_signal_mask`'s closure (registered after
    // this one) runs.
    unsafe {
        cmd.pre_exec(move || {
            if libc::isatty(0) == 1 && libc::tcgetpgrp(0) == from as libc::pid_t {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTTOU);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::tcsetpgrp(0, libc::getpgrp());
            }
            Ok(())
        });
    }
}

/// Passes `fds[i]` to the child of `cmd` as descriptor `3 + i`, without
/// close-on-exec; the sources are first moved above the targets so that
/// no source is overwritten before it is copied (dup(2), dup2(2)).
pub fn pass_fds(cmd: &mut std::process::Command, fds: Vec<std::os::fd::RawFd>) {
    use std::os::unix::process::CommandExt;
    let n = fds.len() as libc::c_int;
    let mut moved = fds;
    // SAFETY: runs in the forked child before exec; fcntl and dup2 are
    // async-signal-safe. `moved` was allocated before fork and is only
    // written in place. The caller keeps every fd open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for fd in moved.iter_mut() {
                *fd = cvt(libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3 + n))?;
            }
            for (i, &fd) in moved.iter().enumerate() {
                cvt(libc::dup2(fd, 3 + i as libc::c_int))?;
            }
            Ok(())
        });
    }
}

/// Takes ownership of descriptor `fd` inherited from the parent (passed
/// with [`pass_fds`]), if it is open; it is marked close-on-exec.
pub fn inherited_fd(fd: std::os::fd::RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl on any integer is harmless; it fails with EBADF when
    // `fd` is not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fd < 3 || flags == -1 {
        return None;
    }
    // SAFETY: as above; `fd` is open.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: the descriptor is open and, by the protocol of `pass_fds`,
    // nothing else in this process owns it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether `path` names a file this process may execute (access(2) with
/// `X_OK`; for root: any execute bit).
pub fn executable(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
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
    /// The kernel's state letter (`R`, `S`, `T`, `Z`, …).
    pub state: char,
    /// Its short name.
    pub comm: String,
}

/// Every process, from `/proc/*/stat`; processes that vanish meanwhile are
/// skipped.
pub fn process_table() -> Vec<ProcEntry> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dir.flatten() {
        let Some(pid) = d.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // The one `/proc/PID/stat` parser, `proc_stat`.
        if let Ok(st) = proc_stat(pid) {
            out.push(ProcEntry {
                pid,
                ppid: st.ppid,
                pgrp: st.pgrp,
                state: st.state,
                comm: st.comm,
            });
        }
    }
    out
}

/// Every signal a thread can block: 1 to `SIGRTMAX`, without SIGKILL and
/// SIGSTOP (which cannot be blocked) and the real-time signals the C
/// library keeps for itself (below `SIGRTMIN`).
pub fn catchable_signals() -> Vec<i32> {
    let rt = libc::SIGRTMIN()..=libc::SIGRTMAX();
    (1..libc::SIGRTMIN().min(32))
        .filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
        .chain(rt)
        .collect()
}
