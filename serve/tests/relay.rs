//! The relay over real loopback TCP, with small servers in threads: bytes
//! pass unchanged both ways, half-closes pass through, connections that
//! arrive before the server are held and answered, requests are counted,
//! and the counters come back to rest.

use portd_serve::relay::{Relay, Stats};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A listener on 127.0.0.1 in this file's private port band (31000–31399),
/// outside the kernel's ephemeral range; each call takes a new port.
fn listen() -> TcpListener {
    static NEXT: AtomicU16 = AtomicU16::new(31000);
    loop {
        let p = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(p < 31400, "port band exhausted");
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
            return l;
        }
    }
}

fn port(l: &TcpListener) -> u16 {
    l.local_addr().unwrap().port()
}

/// A relay on a new public port in front of the server on `upstream`,
/// started already; returns the relay and its public port.
fn relay_to(upstream: u16) -> (Relay, u16) {
    let public = listen();
    let p = port(&public);
    let r = Relay::start(vec![public], move || Some(upstream), || {}, Duration::from_secs(10));
    (r.unwrap(), p)
}

/// Runs `serve` on each connection `listener` accepts, in its own thread,
/// forever (the test process ends them).
fn server(listener: TcpListener, serve: impl Fn(TcpStream) + Send + Sync + 'static) {
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(c) = c else { continue };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(c));
        }
    });
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn settles_at_zero(stats: &Stats) {
    wait_until("no open connection", || stats.open_connections() == 0);
}

#[test]
fn a_megabyte_passes_unchanged_both_ways() {
    let up = listen();
    let upstream = port(&up);
    let received = Arc::new(Mutex::new(Vec::new()));
    let got = Arc::clone(&received);
    server(up, move |mut c| {
        // Read the whole request body (until the client's half-close),
        // then answer with a megabyte of our own.
        let mut body = Vec::new();
        c.read_to_end(&mut body).unwrap();
        *got.lock().unwrap() = body;
        c.write_all(&pattern(2, 1 << 20)).unwrap();
    });
    let (relay, public) = relay_to(upstream);
    let mut c = TcpStream::connect(("127.0.0.1", public)).unwrap();
    let sent = pattern(1, 1 << 20);
    let writer = {
        let mut c = c.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || {
            c.write_all(&sent).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    writer.join().unwrap();
    assert!(answer == pattern(2, 1 << 20), "answer differs ({} bytes)", answer.len());
    assert!(*received.lock().unwrap() == sent, "request differs");
    let stats = relay.stats();
    settles_at_zero(&stats);
    assert_eq!(stats.total_connections(), 1);
    // A binary body is no HTTP: nothing counted.
    assert_eq!(stats.requests(), 0);
}

#[test]
fn a_half_close_passes_through_and_the_answer_still_comes_back() {
    let up = listen();
    let upstream = port(&up);
    server(up, |mut c| {
        let mut req = Vec::new();
        // Returns only once the client's end of stream has come through.
        c.read_to_end(&mut req).unwrap();
        thread::sleep(Duration::from_millis(50));
        c.write_all(format!("got {} bytes", req.len()).as_bytes()).unwrap();
        // And the other way: the server ends its side; the client sees it.
    });
    let (relay, public) = relay_to(upstream);
    let mut c = TcpStream::connect(("127.0.0.1", public)).unwrap();
    c.write_all(b"hello").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 5 bytes");
    // Both directions ended: the connection is let go at once, without
    // the half-close grace.
    let t = Instant::now();
    settles_at_zero(&relay.stats());
    assert!(t.elapsed() < Duration::from_millis(500), "let go after {:?}", t.elapsed());
}

#[test]
fn a_half_closed_tunnel_is_closed_once_the_other_side_has_been_silent_for_the_grace() {
    let up = listen();
    let upstream = port(&up);
    server(up, move |mut c| {
        // Reads to the client's end of stream, answers for 1.5 s (longer
        // than nothing, shorter than the grace), then falls silent with its
        // side still open (as a WebSocket server that ignores half-closes).
        let mut req = Vec::new();
        let _ = c.read_to_end(&mut req);
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(500));
            if c.write_all(b".").is_err() {
                return;
            }
        }
        thread::sleep(Duration::from_secs(20));
    });
    let (relay, public) = relay_to(upstream);
    let mut c = TcpStream::connect(("127.0.0.1", public)).unwrap();
    // A request to switch protocols: the connection is a tunnel.
    c.write_all(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    // The client's side ends too: the grace after the last byte, not never.
    let _ = c.read_to_end(&mut rest);
    let took = t.elapsed();
    assert_eq!(rest, b"...", "what the server wrote after the half-close came through");
    let grace = portd_serve::relay::HALF_CLOSED_GRACE;
    assert!(took >= grace + Duration::from_millis(1400), "closed after {took:?}: too early");
    assert!(took < grace + Duration::from_secs(4), "closed after {took:?}: not at the grace");
    settles_at_zero(&relay.stats());
}

#[test]
fn a_plain_http_half_close_waits_for_a_slow_answer() {
    let up = listen();
    let upstream = port(&up);
    server(up, |mut c| {
        // Answers 6 s after the client's end of stream: longer than the
        // tunnels' grace, which a plain HTTP request does not have.
        let mut req = Vec::new();
        let _ = c.read_to_end(&mut req);
        thread::sleep(Duration::from_secs(6));
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
    });
    let (relay, public) = relay_to(upstream);
    let mut c = TcpStream::connect(("127.0.0.1", public)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.ends_with("\r\n\r\nslow"), "the slow answer came whole: {answer:?}");
    settles_at_zero(&relay.stats());
}

#[test]
fn an_error_on_one_side_closes_both() {
    let up = listen();
    let upstream = port(&up);
    server(up, |c| {
        // Reset the connection: close with unread data pending.
        let mut b = [0u8; 1];
        let _ = (&c).read(&mut b);
        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
    });
    let (relay, public) = relay_to(upstream);
    let mut c = TcpStream::connect(("127.0.0.1", public)).unwrap();
    c.write_all(b"x and more bytes than the server reads").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    // The client's side ends (closed or reset), it does not hang.
    let r = c.read_to_end(&mut rest);
    assert!(r.is_ok() || r.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock));
    settles_at_zero(&relay.stats());
}

#[test]
fn twenty_first_connections_are_all_answered_when_the_server_starts_late() {
    let up_port = port(&listen()); // taken from the band, then freed
    let started = Arc::new(AtomicUsize::new(0));
    let port_now = Arc::new(Mutex::new(None::<u16>));
    let public = listen();
    let p = port(&public);
    let (s, pn) = (Arc::clone(&started), Arc::clone(&port_now));
    let on_first = move || {
        // The supervisor's part: start one server, which listens only
        // 300 ms later; its port is known at once.
        if s.fetch_add(1, Ordering::SeqCst) > 0 {
            return;
        }
        *pn.lock().unwrap() = Some(up_port);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let l = TcpListener::bind(("127.0.0.1", up_port)).unwrap();
            server(l, |mut c| {
                let mut b = [0u8; 64];
                let n = c.read(&mut b).unwrap();
                c.write_all(&[b"echo ".as_slice(), &b[..n]].concat()).unwrap();
            });
        });
    };
    let pn = Arc::clone(&port_now);
    let relay =
        Relay::start(vec![public], move || *pn.lock().unwrap(), on_first, Duration::from_secs(10))
            .unwrap();
    let t = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c.write_all(format!("{i}").as_bytes()).unwrap();
                let mut answer = String::new();
                c.read_to_string(&mut answer).unwrap();
                answer
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert_eq!(c.join().unwrap(), format!("echo {i}"));
    }
    assert!(t.elapsed() >= Duration::from_millis(300), "answered before the server ran");
    assert!(started.load(Ordering::SeqCst) >= 1);
    let stats = relay.stats();
    settles_at_zero(&stats);
    assert_eq!(stats.total_connections(), 20);
}

#[test]
fn a_connection_is_closed_when_the_server_never_comes() {
    let public = listen();
    let p = port(&public);
    let asked = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&asked);
    let relay = Relay::start(
        vec![public],
        || None,
        move || {
            a.fetch_add(1, Ordering::SeqCst);
        },
        Duration::from_millis(200),
    )
    .unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    settles_at_zero(&relay.stats());
}

#[test]
fn requests_are_counted_pipelined_chunked_and_until_an_upgrade() {
    let up = listen();
    let upstream = port(&up);
    server(up, |mut c| {
        // Swallow everything; answer nothing until the client is done.
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    });
    let (relay, public) = relay_to(upstream);
    let stats = relay.stats();
    let send = |chunks: &[&[u8]]| {
        let mut c = TcpStream::connect(("127.0.0.1", public)).unwrap();
        for part in chunks {
            c.write_all(part).unwrap();
            // Separate reads on the relay's side, most of the time.
            thread::sleep(Duration::from_millis(5));
        }
        c.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    };
    // Three pipelined requests in one write, one with a body.
    send(&[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nGET \
        GET /c HTTP/1.1\r\n\r\n"]);
    wait_until("3 requests", || stats.requests() == 3);
    // A chunked upload split across writes, then one more request.
    send(&[
        b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGE",
        b"T /\r\n0\r\n\r\nGET /d HTTP/1.1\r\n",
        b"\r\n",
    ]);
    wait_until("5 requests", || stats.requests() == 5);
    // A WebSocket upgrade counts once; what follows is not HTTP.
    send(&[b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
        GET /not-counted HTTP/1.1\r\n\r\n"]);
    settles_at_zero(&stats);
    assert_eq!(stats.requests(), 6);
    assert_eq!(stats.requests_per_minute(), 6);
    assert_eq!(stats.total_connections(), 3);
}

#[test]
fn activity_and_open_connections_are_tracked_and_return_to_rest() {
    let up = listen();
    let upstream = port(&up);
    server(up, |mut c| {
        let mut b = [0u8; 16];
        while let Ok(n) = c.read(&mut b) {
            if n == 0 || c.write_all(&b[..n]).is_err() {
                return;
            }
        }
    });
    let (relay, public) = relay_to(upstream);
    let stats = relay.stats();
    assert_eq!(stats.open_connections(), 0);
    let mut conns: Vec<TcpStream> =
        (0..5).map(|_| TcpStream::connect(("127.0.0.1", public)).unwrap()).collect();
    for c in &mut conns {
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    }
    assert_eq!(stats.open_connections(), 5);
    thread::sleep(Duration::from_millis(100));
    assert!(stats.idle_for() >= Duration::from_millis(100), "{:?}", stats.idle_for());
    conns[0].write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    conns[0].read_exact(&mut b).unwrap();
    assert!(stats.idle_for() < Duration::from_millis(100), "{:?}", stats.idle_for());
    drop(conns);
    settles_at_zero(&stats);
    assert_eq!(stats.total_connections(), 5);
    // Stopped, the relay accepts no more; the port is free again.
    let addr = relay.local_addrs()[0];
    relay.stop();
    assert!(TcpListener::bind(addr).is_ok(), "the public port is still held");
}

#[test]
fn accepts_on_ipv4_and_ipv6_listeners_at_once() {
    let up = listen();
    let upstream = port(&up);
    server(up, |mut c| {
        let _ = c.write_all(b"hi");
    });
    let v4 = listen();
    let p = port(&v4);
    let Ok(v6) = TcpListener::bind(("::1", p)) else {
        use std::io::Write as _;
        let why = "no IPv6 loopback here";
        let _ = writeln!(std::io::stderr(), "SKIP: {why}");
        assert!(std::env::var_os("PORTD_NO_SKIP").is_none(), "SKIP not allowed here: {why}");
        return;
    };
    let relay =
        Relay::start(vec![v4, v6], move || Some(upstream), || {}, Duration::from_secs(10)).unwrap();
    for host in ["127.0.0.1", "::1"] {
        let mut c = TcpStream::connect((host, p)).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi", "via {host}");
    }
    settles_at_zero(&relay.stats());
    assert_eq!(relay.stats().total_connections(), 2);
}
