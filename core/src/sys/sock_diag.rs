//! The kernel's socket diagnostics (netlink `NETLINK_SOCK_DIAG`, see
//! sock_diag(7)): one round trip that dumps the TCP sockets in given states,
//! and what portd asks of it. Cheaper and more exact than parsing
//! `/proc/net/tcp*`, and it sees states that `/proc` does not list.

use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// `TCP_ESTABLISHED` in the kernel's TCP state numbering.
pub(super) const TCP_ESTABLISHED: u32 = 1;
/// A listening socket's state.
const TCP_LISTEN: u32 = 10;
/// `TCP_BOUND_INACTIVE`: bound, neither listening nor connected (a
/// pseudo-state reported since Linux 6.5).
pub(super) const TCP_BOUND_INACTIVE: u32 = 13;

/// One TCP socket of a dump (from `struct inet_diag_msg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DiagSocket {
    /// Its state (`TCP_ESTABLISHED`, …).
    pub state: u8,
    /// Its local port.
    pub local_port: u16,
    /// Its remote port (0 when unconnected).
    pub remote_port: u16,
    /// Its inode (0 when the socket has no file, e.g. in TIME_WAIT).
    pub inode: u32,
    /// For a listening socket, the connections waiting to be accepted.
    pub rqueue: u32,
}

/// Dumps the TCP sockets of both families (IPv4, IPv6) whose state is in
/// the bit set `states` (`1 << TCP_…`), calling `each` for every one. A
/// family the kernel does not know (IPv6 disabled) is skipped. Errors:
/// the netlink socket cannot be opened or the kernel refuses the request.
pub(super) fn tcp_sockets(states: u32, mut each: impl FnMut(DiagSocket)) -> io::Result<()> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW.cloexec(),
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
    let mut buf = vec![0u8; 32 * 1024];
    for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        // An unconnected netlink socket sends to the kernel.
        sock.send(&request(seq, family, states))?;
        match read_dump(&sock, &mut buf, &mut each) {
            Ok(()) => {}
            // No IPv6 in this kernel: nothing to count there.
            Err(e) if family == libc::AF_INET6 as u8 && unknown_family(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn unknown_family(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EAFNOSUPPORT | libc::EINVAL))
}

/// `struct nlmsghdr` (16 bytes), then `struct inet_diag_req_v2` (56):
/// family, protocol, extensions, padding, the state set, and an all-zero
/// socket id (a dump without a filter program ignores it).
fn request(seq: u32, family: u8, states: u32) -> Vec<u8> {
    let mut req = Vec::with_capacity(72);
    req.extend_from_slice(&72u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    req.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&states.to_ne_bytes());
    req.resize(72, 0);
    req
}

/// Reads one dump's messages up to `NLMSG_DONE`; an `NLMSG_ERROR` is the
/// kernel's errno.
fn read_dump(sock: &Socket, buf: &mut [u8], each: &mut impl FnMut(DiagSocket)) -> io::Result<()> {
    loop {
        let n = (&*sock).read(buf)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        if parse_messages(&buf[..n], each)? {
            return Ok(());
        }
    }
}

/// Parses one datagram of netlink messages; `Ok(true)` at the end of the
/// dump.
fn parse_messages(mut msg: &[u8], each: &mut impl FnMut(DiagSocket)) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag answer");
    while msg.len() >= 16 {
        let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
        let kind = u16::from_ne_bytes([msg[4], msg[5]]);
        if len < 16 || len > msg.len() {
            return Err(bad());
        }
        let body = &msg[16..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                // struct nlmsgerr: a negative errno (0 is an acknowledgement).
                let errno = body.get(..4).ok_or_else(bad)?;
                let errno = i32::from_ne_bytes([errno[0], errno[1], errno[2], errno[3]]);
                if errno == 0 {
                    return Ok(true);
                }
                return Err(io::Error::from_raw_os_error(-errno));
            }
            _ => {}
        }
        // struct inet_diag_msg: family, state, timer, retransmits, then the
        // socket id (source and destination ports big-endian first), …,
        // the inode at 68.
        if body.len() >= 72 {
            each(DiagSocket {
                state: body[1],
                local_port: u16::from_be_bytes([body[4], body[5]]),
                remote_port: u16::from_be_bytes([body[6], body[7]]),
                inode: u32::from_ne_bytes([body[68], body[69], body[70], body[71]]),
                rqueue: u32::from_ne_bytes([body[56], body[57], body[58], body[59]]),
            });
        }
        msg = &msg[len.next_multiple_of(4).min(msg.len())..];
    }
    Ok(false)
}

/// The number of established TCP connections whose local port is `port`,
/// over IPv4 and IPv6 (for a server listening on `port`: its open client
/// connections; a connection between two local sockets counts once, on
/// the side bound to `port`). A few tens of microseconds for a handful of
/// sockets; the kernel sends every established connection of the network
/// namespace, so ask at a coarse interval, not in a loop.
pub fn established(port: u16) -> io::Result<usize> {
    let mut n = 0;
    tcp_sockets(1 << TCP_ESTABLISHED, |s| n += usize::from(s.local_port == port))?;
    Ok(n)
}

/// [`established`] for every local port at once, from one dump: for a list
/// of servers, rather than one dump each.
pub fn established_by_port() -> io::Result<std::collections::HashMap<u16, usize>> {
    let mut by_port = std::collections::HashMap::new();
    tcp_sockets(1 << TCP_ESTABLISHED, |s| *by_port.entry(s.local_port).or_insert(0) += 1)?;
    Ok(by_port)
}

/// The TCP ports (IPv4 and IPv6) on which any of `pids` listens, sorted,
/// each once: the listening sockets from NETLINK_SOCK_DIAG, matched by
/// inode against the processes' descriptors in `/proc/PID/fd`.
pub fn listening_ports_of(pids: &[u32]) -> io::Result<Vec<u16>> {
    let mut by_inode = std::collections::HashMap::new();
    tcp_sockets(1 << TCP_LISTEN, |s| {
        by_inode.insert(u64::from(s.inode), s.local_port);
    })?;
    let mut out = Vec::new();
    for &pid in pids {
        out.extend(super::linux::fd_socket_inodes(pid).filter_map(|n| by_inode.get(&n)));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The connections waiting to be accepted on the TCP listening sockets of
/// local port `port` (IPv4 and IPv6 together), through NETLINK_SOCK_DIAG:
/// 0 once the server has accepted every connection made so far.
pub fn accept_queue(port: u16) -> io::Result<u32> {
    let mut n = 0;
    tcp_sockets(1 << TCP_LISTEN, |s| {
        if s.local_port == port {
            n += s.rqueue;
        }
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    /// Set in CI, where every test must run (a test-only variable).
    const NO_SKIP: &str = concat!("PORTD", "_NO_SKIP");
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A listener on a port of the sys tests' private band, outside the
    /// kernel's ephemeral range.
    fn listener(v6: bool) -> Option<TcpListener> {
        let ip: std::net::IpAddr = if v6 { "::1".parse().unwrap() } else { [127, 0, 0, 1].into() };
        (31400..31450).find_map(|p| TcpListener::bind((ip, p)).ok())
    }

    #[test]
    fn finds_the_ports_a_process_listens_on() {
        let l = listener(false).unwrap();
        let port = l.local_addr().unwrap().port();
        let ports = listening_ports_of(&[std::process::id()]).unwrap();
        assert!(ports.contains(&port), "{ports:?}");
        drop(l);
        let ports = listening_ports_of(&[std::process::id()]).unwrap();
        assert!(!ports.contains(&port), "{ports:?}");
    }

    #[test]
    fn the_accept_queue_counts_connections_until_they_are_accepted() {
        let l = listener(false).unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(accept_queue(port).unwrap(), 0);
        let _c1 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _c2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(accept_queue(port).unwrap(), 2);
        let _s1 = l.accept().unwrap();
        assert_eq!(accept_queue(port).unwrap(), 1);
    }

    #[test]
    fn counts_established_connections_on_a_local_port() {
        let l4 = listener(false).unwrap();
        let port = l4.local_addr().unwrap().port();
        assert_eq!(established(port).unwrap(), 0);
        let c1 = TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let c2 = TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let (s1, _) = l4.accept().unwrap();
        // Accepted or not, an established connection counts.
        assert_eq!(established(port).unwrap(), 2);
        assert_eq!(established_by_port().unwrap().get(&port), Some(&2));
        drop((c1, s1));
        let t = std::time::Instant::now();
        while established(port).unwrap() != 1 {
            assert!(t.elapsed().as_secs() < 5, "closed connection still counted");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(c2);
        // IPv6 where the host has it.
        if let Some(l6) = listener(true) {
            let p6 = l6.local_addr().unwrap().port();
            let before = established(p6).unwrap();
            let _c = TcpStream::connect(l6.local_addr().unwrap()).unwrap();
            assert_eq!(established(p6).unwrap(), before + 1);
        } else {
            use std::io::Write as _;
            let why = "no IPv6 loopback here";
            let _ = writeln!(std::io::stderr(), "SKIP: {why}");
            assert!(std::env::var_os(NO_SKIP).is_none(), "SKIP not allowed here: {why}");
        }
    }

    #[test]
    fn a_malformed_answer_is_an_error() {
        let mut none = |_| {};
        assert!(
            parse_messages(&[200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut none).is_err()
        );
        let mut done = 16u32.to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.resize(16, 0);
        assert!(parse_messages(&done, &mut none).unwrap());
    }
}
