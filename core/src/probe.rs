//! Asking the OS whether a port is really free.
//!
//! The recipe: one TCP socket on `[::]:P` with `IPV6_V6ONLY=0` and without
//! `SO_REUSEADDR`. Such a bind conflicts with every listener of either family
//! on any address (0.0.0.0, 127.0.0.1, ::1, `[::]` v6-only or dual-stack), so
//! it never answers "free" for a port a server holds. Where IPv6 is
//! unavailable it falls back to `0.0.0.0:P`. `EACCES` means the port is off
//! limits (privileged), which is not the same as busy. Its one false "busy"
//! is a port with connections in TIME_WAIT: that costs a candidate, never a
//! collision.
//!
//! A project's *own* port is re-checked the way its server will bind, with
//! `SO_REUSEADDR`, so TIME_WAIT left by its previous run does not count.
//!
//! Ports are never drawn from `bind(0)`, which takes from the kernel's
//! ephemeral range.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, mpsc};

use crate::sync::os::{AtomicUsize, Ordering};

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A server can bind it now.
    Free,
    /// Something holds it.
    Busy,
    /// The OS refuses this process the port (e.g. privileged): treat as excluded.
    Denied,
}

/// How to probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Also require the UDP port to be free.
    pub udp: bool,
    /// Bind with `SO_REUSEADDR`, as a server re-binding its own port does.
    pub reuse: bool,
}

fn bind_one(domain: Domain, ty: Type, proto: Protocol, port: u16, reuse: bool) -> io::Result<()> {
    let s = Socket::new(domain, ty, Some(proto))?;
    if reuse {
        s.set_reuse_address(true)?;
    }
    let addr: SocketAddr = if domain == Domain::IPV6 {
        s.set_only_v6(false)?;
        (Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, port).into()
    };
    s.bind(&addr.into())
}

fn classify(r: io::Result<()>) -> Option<Verdict> {
    match r {
        Ok(()) => Some(Verdict::Free),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Some(Verdict::Busy),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Some(Verdict::Denied),
        // Anything else (no IPv6, address unavailable, …): try the next family.
        Err(_) => None,
    }
}

fn probe_proto(port: u16, ty: Type, proto: Protocol, reuse: bool) -> Verdict {
    classify(bind_one(Domain::IPV6, ty, proto, port, reuse))
        .or_else(|| classify(bind_one(Domain::IPV4, ty, proto, port, reuse)))
        // Neither family could even try: report busy, never a false "free".
        .unwrap_or(Verdict::Busy)
}

/// Binds a listening TCP socket on `ip:port` the way servers do
/// (`SO_REUSEADDR`; on `::`, dual-stack, so it takes IPv4 too), for handing
/// to a child process: between this call and the child's `accept`, nobody
/// else can take the port, and early clients wait in the backlog.
pub fn bind_listener_on(ip: IpAddr, port: u16) -> io::Result<std::net::TcpListener> {
    let domain = if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        s.set_only_v6(false)?;
    } else if ip.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SocketAddr::new(ip, port).into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Listening sockets on the loopback addresses only: `127.0.0.1:port` and,
/// where IPv6 is up, `[::1]:port` (two sockets then, IPv4 first). Nothing
/// outside the machine can connect. A port taken on `::1` fails like one
/// taken on `127.0.0.1`; a host without IPv6 gets the one IPv4 socket.
pub fn bind_loopback(port: u16) -> io::Result<Vec<std::net::TcpListener>> {
    let v4 = bind_listener_on(IpAddr::V4(Ipv4Addr::LOCALHOST), port)?;
    match bind_listener_on(IpAddr::V6(Ipv6Addr::LOCALHOST), port) {
        Ok(v6) => Ok(vec![v4, v6]),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
        // No IPv6 here (EAFNOSUPPORT, EADDRNOTAVAIL): IPv4 alone.
        Err(_) => Ok(vec![v4]),
    }
}

/// Probes one port.
pub fn probe(port: u16, opts: ProbeOptions) -> Verdict {
    if port == 0 {
        return Verdict::Denied;
    }
    let tcp = probe_proto(port, Type::STREAM, Protocol::TCP, opts.reuse);
    if tcp != Verdict::Free || !opts.udp {
        return tcp;
    }
    probe_proto(port, Type::DGRAM, Protocol::UDP, opts.reuse)
}

/// Below this many ports, [`probe_all`] probes on the caller's thread.
/// A probe costs ≈ 2.2 µs and starting a helper thread ≈ 25–40 µs on the
/// caller's side, and two threads probe ≈ 1.5× as fast as one (the kernel
/// does most of the work). Measured on the 2-core machine of BENCHMARKS.md,
/// interleaved, medians of 300 (min): sequential vs parallel 64 ports
/// 137 vs 158 µs, 128 ports 276 vs 288 µs (252 vs 248 µs), 256 ports 553 vs
/// 482 µs, 1000 ports 2.25 vs 1.87 ms (2.04 vs 1.57 ms): the crossover is
/// at ≈ 128 ports. Each thread gets at least half as many.
const PARALLEL_MIN: usize = 128;

/// How long the caller, its own share done, waits for a helper's next
/// chunk before it probes what is missing itself: a chunk takes ≈ 40 µs.
const STALL: std::time::Duration = std::time::Duration::from_micros(500);

/// Ports a thread takes at a time (≈ 40 µs of probes): small enough that
/// the threads finish together, large enough that taking one costs nothing.
const CHUNK: usize = 16;

/// Probes every port of `ports` and returns their verdicts, in order: the
/// same verdicts as calling [`probe`] on each.
///
/// A batch of 128 ports or more (fewer cost more in thread starts than
/// they gain) is probed in parallel: one helper thread per further CPU
/// (`available_parallelism`, at least 64 ports each) and the caller's
/// thread take chunks of 16 ports from a shared counter until none are
/// left. Each helper sends its chunks' verdicts back over a channel; the
/// caller returns once every port has a verdict. The helpers are not
/// joined: on a loaded machine a new thread may get a CPU only milliseconds
/// later (2.4–4.3 ms measured on 2 cores that other processes kept busy),
/// and the caller does not wait for one that has not started; that helper
/// finds the work done and exits. Once every chunk is taken, the caller
/// waits at most 0.5 ms at a time for a helper's verdicts before it probes
/// what is missing itself, so a helper that loses its CPU mid-chunk delays
/// the batch by that much at most.
pub fn probe_all(ports: &[u16], opts: ProbeOptions) -> Vec<Verdict> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let helpers = (cpus - 1).min((ports.len() / (PARALLEL_MIN / 2)).saturating_sub(1));
    if ports.len() < PARALLEL_MIN || helpers == 0 {
        return ports.iter().map(|&p| probe(p, opts)).collect();
    }
    let batch = Arc::new(Batch { ports: ports.into(), next: AtomicUsize::new(0), opts });
    let (tx, rx) = mpsc::channel::<(usize, Vec<Verdict>)>();
    for _ in 0..helpers {
        let (batch, tx) = (batch.clone(), tx.clone());
        // A helper that cannot be started leaves its share to the others.
        let _ = std::thread::Builder::new()
            .name("portd-probe".into())
            // The caller waits for the verdicts and so outlives the send
            // unless it panicked, when the helper just stops.
            .spawn(move || batch.work(|at, verdicts| tx.send((at, verdicts)).is_ok()));
    }
    drop(tx);
    let mut out: Vec<Option<Verdict>> = vec![None; ports.len()];
    let mut todo = ports.len();
    batch.work(|at, verdicts| {
        todo -= fill(&mut out, at, verdicts);
        true
    });
    // Every chunk is taken. A helper that holds one but lost its CPU is
    // not waited for long: what is missing after a short wait is probed
    // here (a port probed twice is harmless; a probe changes nothing).
    while todo > 0 {
        match rx.recv_timeout(STALL) {
            Ok((at, verdicts)) => todo -= fill(&mut out, at, verdicts),
            // A helper stalled, or every helper is gone with chunks unsent
            // (one panicked): probe what is missing here.
            Err(_) => break,
        }
    }
    out.iter().zip(ports).map(|(v, &p)| v.unwrap_or_else(|| probe(p, opts))).collect()
}

/// Puts a chunk's verdicts in place; returns how many.
fn fill(out: &mut [Option<Verdict>], at: usize, verdicts: Vec<Verdict>) -> usize {
    let n = verdicts.len();
    for (o, v) in out[at..].iter_mut().zip(verdicts) {
        *o = Some(v);
    }
    n
}

/// One `probe_all` batch, shared by the threads probing it.
#[derive(Debug)]
struct Batch {
    ports: Box<[u16]>,
    /// The first port no thread has taken yet.
    next: AtomicUsize,
    opts: ProbeOptions,
}

impl Batch {
    /// Takes chunks until none are left, handing each chunk's verdicts to
    /// `done`; stops early if `done` returns false.
    fn work(&self, mut done: impl FnMut(usize, Vec<Verdict>) -> bool) {
        loop {
            // Relaxed: the counter only splits the work; each index is taken
            // once by the read-modify-write under any ordering, and the
            // verdicts travel through the channel, which synchronises.
            let at = self.next.fetch_add(CHUNK, Ordering::Relaxed);
            if at >= self.ports.len() {
                return;
            }
            let chunk = &self.ports[at..(at + CHUNK).min(self.ports.len())];
            if !done(at, chunk.iter().map(|&p| probe(p, self.opts)).collect()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    /// Held by each test for its whole run: the tests of this module pick
    /// from one band, and one of them frees a port it then expects free.
    static BAND: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn pick() -> (TcpListener, u16) {
        // Any currently free port from a high test-only band; skip busy ones.
        for p in 29_500..29_999 {
            if probe(p, ProbeOptions::default()) == Verdict::Free
                && let Ok(l) = TcpListener::bind(("127.0.0.1", p))
            {
                return (l, p);
            }
        }
        panic!("no free test port");
    }

    #[test]
    fn listener_on_loopback_is_busy_and_free_after_close() {
        let _band = BAND.lock().unwrap_or_else(|e| e.into_inner());
        let (l, p) = pick();
        assert_eq!(probe(p, ProbeOptions::default()), Verdict::Busy);
        assert_eq!(probe(p, ProbeOptions { reuse: true, udp: false }), Verdict::Busy);
        drop(l);
        assert_eq!(probe(p, ProbeOptions::default()), Verdict::Free);
    }

    #[test]
    fn udp_checked_only_when_asked() {
        let _band = BAND.lock().unwrap_or_else(|e| e.into_inner());
        let (l, p) = pick();
        drop(l);
        let u = UdpSocket::bind(("127.0.0.1", p)).unwrap();
        assert_eq!(probe(p, ProbeOptions::default()), Verdict::Free);
        assert_eq!(probe(p, ProbeOptions { udp: true, reuse: false }), Verdict::Busy);
        drop(u);
    }

    #[test]
    fn bound_listener_makes_the_port_busy() {
        let _band = BAND.lock().unwrap_or_else(|e| e.into_inner());
        let (l, p) = pick();
        drop(l);
        let held = bind_loopback(p).unwrap();
        assert!(!held.is_empty());
        assert_eq!(probe(p, ProbeOptions::default()), Verdict::Busy);
        assert!(bind_loopback(p).is_err());
        drop(held);
    }

    /// Binds listeners (TCP, and UDP on some) on every fifth free port of
    /// 29000–29499, returning them with the band's ports.
    fn mixed_band() -> (Vec<TcpListener>, Vec<UdpSocket>, Vec<u16>) {
        let ports: Vec<u16> = (29_000..29_500).collect();
        let (mut tcp, mut udp) = (vec![], vec![]);
        for &p in ports.iter().step_by(5) {
            if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
                tcp.push(l);
            }
            if p % 2 == 0
                && let Ok(u) = UdpSocket::bind(("127.0.0.1", p + 1))
            {
                udp.push(u);
            }
        }
        (tcp, udp, ports)
    }

    #[test]
    fn probe_all_agrees_with_probe_one_by_one() {
        let (tcp, udp, ports) = mixed_band();
        assert!(tcp.len() > 50, "too few test ports bindable: {}", tcp.len());
        for opts in [
            ProbeOptions::default(),
            ProbeOptions { udp: true, reuse: false },
            ProbeOptions { udp: false, reuse: true },
        ] {
            let want: Vec<Verdict> = ports.iter().map(|&p| probe(p, opts)).collect();
            assert!(want.contains(&Verdict::Free) && want.contains(&Verdict::Busy));
            // Whole band (probed in parallel), a small batch (on this thread),
            // one port and none.
            assert_eq!(probe_all(&ports, opts), want, "{opts:?}");
            assert_eq!(probe_all(&ports[..PARALLEL_MIN - 1], opts), want[..PARALLEL_MIN - 1]);
            assert_eq!(probe_all(&ports[10..11], opts), want[10..11]);
            assert_eq!(probe_all(&[], opts), []);
        }
        // Port 0 is denied, wherever it sits in a batch.
        let with_zero: Vec<u16> = std::iter::once(0).chain(ports.iter().copied()).collect();
        assert_eq!(probe_all(&with_zero, ProbeOptions::default())[0], Verdict::Denied);
        drop((tcp, udp));
    }
}
