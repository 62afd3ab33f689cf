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

/// Socket inodes bound to `port` in one `/proc/net/{tcp,tcp6,udp,udp6}`
/// table; TCP counts listeners only (state `0A`), UDP any bound socket.
fn socket_inodes(table: &str, port: u16, tcp: bool, out: &mut HashSet<u64>) {
    let Ok(text) = fs::read_to_string(table) else {
        return;
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let local_port = f[1]
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        if local_port != Some(port) || (tcp && f[3] != "0A") {
            continue;
        }
        if let Ok(inode) = f[9].parse::<u64>()
            && inode != 0
        {
            out.insert(inode);
        }
    }
}

/// The processes that listen on `port` (TCP) or have it bound (UDP). Costs a
/// few milliseconds: for `check` and warnings, never for allocation.
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
    let mut out = Vec::new();
    if inodes.is_empty() {
        return out;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path()).ok().is_some_and(|target| {
                let t = target.to_string_lossy();
                t.strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| inodes.contains(&n))
            })
        });
        if holds {
            let name = proc_stat(pid).map(|s| s.comm).unwrap_or_default();
            out.push(Holder {
                pid,
                name,
                cmdline: cmdline(pid),
            });
        }
    }
    out
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
