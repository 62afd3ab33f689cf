//! The proxy's listening sockets: loopback only (127.0.0.1 and ::1) on one
//! port, or the sockets systemd hands over (socket activation: `LISTEN_PID`
//! is this process, `LISTEN_FDS` sockets from descriptor 3), which lets it
//! serve ports 80 and 443 without running as root.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

/// Binds `port` on 127.0.0.1 and, where the host has IPv6, on ::1.
pub fn bind(port: u16) -> io::Result<Vec<TcpListener>> {
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    let port = v4.local_addr()?.port();
    let mut out = vec![v4];
    match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Ok(v6) => out.push(v6),
        // No IPv6 here (disabled, or no ::1): 127.0.0.1 alone.
        Err(e) if matches!(e.raw_os_error(), Some(97 | 99)) => {}
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {}
        Err(e) => return Err(e),
    }
    for l in &out {
        l.set_nonblocking(true)?;
    }
    Ok(out)
}

/// The sockets systemd passed, if it passed any to this process
/// (sd_listen_fds(3)). The variables stay in the environment: `LISTEN_PID`
/// names this process, so the processes it starts ignore them (and the
/// managed servers' supervisor removes them for its servers).
pub fn from_systemd() -> Option<io::Result<Vec<TcpListener>>> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.trim().parse().ok()?;
    if pid != std::process::id() {
        return None;
    }
    let n: i32 = std::env::var("LISTEN_FDS").ok()?.trim().parse().ok()?;
    let mut out = Vec::new();
    for fd in 3..3 + n.clamp(0, 64) {
        let Some(owned) = portd_core::sys::inherited_fd(fd) else {
            return Some(Err(io::Error::other(format!(
                "LISTEN_FDS names descriptor {fd}, which is not open"
            ))));
        };
        let l = TcpListener::from(owned);
        if let Err(e) = l.local_addr().and_then(|_| l.set_nonblocking(true)) {
            return Some(Err(io::Error::other(format!(
                "descriptor {fd} is not a TCP socket: {e}"
            ))));
        }
        out.push(l);
    }
    if out.is_empty() {
        return Some(Err(io::Error::other("LISTEN_FDS passes no socket")));
    }
    Some(Ok(out))
}
