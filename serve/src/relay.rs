//! The on-demand relay: copying connections between the public port and the
//! server's private one, and counting what passes.
//!
//! A supervisor of an on-demand project that does not pass its socket to
//! the server (`--fd`) keeps the public listeners itself and starts a
//! [`Relay`] on them. Each accepted connection is joined to
//! `127.0.0.1:PRIVATE`, the port the server listens on once it runs; while
//! no server runs, the relay asks for one (`on_first`) and holds the
//! connection, retrying, until the server accepts or the start timeout
//! passes: a connection is answered late, never refused. Bytes are copied
//! both ways by two threads per connection; an end of stream is passed on
//! as a half-close (`shutdown(Write)`). In a tunnel (a WebSocket, or
//! anything but HTTP/1) the other direction then goes on while bytes pass;
//! silent for [`HALF_CLOSED_GRACE`], both sides are closed (a WebSocket
//! server that keeps a half-closed connection open would hold it open, and
//! its server awake, for ever). An error closes both sides.
//!
//! [`Stats`] is what the supervisor reads for idle shutdown and `status`:
//! open and total connections, the time since the last activity, and
//! HTTP/1 requests per minute, counted from the client's side by a small
//! incremental parser ([`RequestCounter`]). The relay does not parse
//! answers, does not buffer beyond one read, and uses no timer: its
//! threads are blocked in the kernel while nothing happens.

use portd_core::RateWindow;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes copied per read from the server: large enough that a bulk
/// transfer costs few system calls (256 KiB copied 1 MiB answers with
/// about a fifth less CPU than 64 KiB, and as cheaply as splice(2) through
/// a pipe, measured here). Its pages are touched only as far as reads
/// fill it.
const BUFFER: usize = 256 * 1024;
/// The stack of a copying thread: its buffer lives on the heap.
const STACK: usize = 128 * 1024;

/// Counters shared by a relay's threads and its owner. Times are kept as
/// milliseconds since the relay's own epoch (its creation), so that one
/// atomic holds them.
#[derive(Debug)]
pub struct Stats {
    epoch: Instant,
    open: AtomicUsize,
    total: AtomicU64,
    last_activity_ms: AtomicU64,
    requests: AtomicU64,
    /// Requests per second of the last minute, by second since the epoch.
    per_second: RateWindow,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            per_second: RateWindow::new(),
        }
    }
}

impl Stats {
    /// Connections accepted and not yet closed on both sides, including
    /// those still waiting for the server.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections accepted since the relay started.
    pub fn total_connections(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// HTTP/1 requests counted since the relay started.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// HTTP/1 requests counted in the last 60 seconds (the current second
    /// included).
    pub fn requests_per_minute(&self) -> u64 {
        self.per_second.per_minute(self.epoch.elapsed().as_secs())
    }

    /// When something last happened: a connection accepted or closed, or
    /// bytes copied either way (the relay's start when nothing has).
    pub fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// How long nothing has happened (see [`Stats::last_activity`]). A
    /// project is idle when this is long and no connection is open
    /// ([`Stats::open_connections`]): an open connection that carries
    /// nothing (a WebSocket at rest) keeps it in use.
    pub fn idle_for(&self) -> Duration {
        self.last_activity().elapsed()
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_activity_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn count(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.requests.fetch_add(n, Ordering::Relaxed);
        self.per_second.add(self.epoch.elapsed().as_secs(), n);
    }
}

/// What a relay needs from its supervisor, shared by its threads.
struct Shared {
    stats: Arc<Stats>,
    upstream: Box<dyn Fn() -> Option<u16> + Send + Sync>,
    on_first: Box<dyn Fn() + Send + Sync>,
    start_timeout: Duration,
    stopping: AtomicBool,
}

/// A running relay: one accepting thread per public listener, two copying
/// threads per open connection. See the [module docs](self).
pub struct Relay {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    acceptors: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

impl Relay {
    /// Starts accepting on `listeners` (typically the project's port on
    /// `127.0.0.1` and `::1`, already bound and listening).
    ///
    /// - `upstream` says the server's private port once it is started
    ///   (`None` while no server runs); connections go to
    ///   `127.0.0.1:PORT`. It is asked again for each attempt, so the port
    ///   may change across restarts.
    /// - `on_first` is called for each connection that arrives while
    ///   `upstream` says `None`: the supervisor starts the server (several
    ///   calls for one start are normal: it must start one server only).
    /// - `start_timeout`: how long a connection waits for the server to
    ///   accept (refused connections are retried meanwhile, with a pause
    ///   growing from 2 to 50 ms); after it, the connection is closed.
    ///
    /// Errors: a listener's address cannot be read, or a thread cannot be
    /// started.
    pub fn start(
        listeners: Vec<TcpListener>,
        upstream: impl Fn() -> Option<u16> + Send + Sync + 'static,
        on_first: impl Fn() + Send + Sync + 'static,
        start_timeout: Duration,
    ) -> io::Result<Relay> {
        let shared = Arc::new(Shared {
            stats: Arc::new(Stats::default()),
            upstream: Box::new(upstream),
            on_first: Box::new(on_first),
            start_timeout,
            stopping: AtomicBool::new(false),
        });
        let mut relay = Relay { shared, addrs: Vec::new(), acceptors: Vec::new() };
        for l in listeners {
            relay.addrs.push(l.local_addr()?);
            let shared = Arc::clone(&relay.shared);
            let t = thread::Builder::new()
                .name("relay-accept".into())
                .stack_size(STACK)
                .spawn(move || accept_loop(&l, &shared));
            match t {
                Ok(t) => relay.acceptors.push(t),
                Err(e) => {
                    relay.stop_accepting();
                    return Err(e);
                }
            }
        }
        Ok(relay)
    }

    /// The counters, to keep after the relay is gone if need be.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// The addresses it accepts on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting and closes the listeners; open connections go on
    /// until either side closes them.
    pub fn stop(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake each acceptor with a connection of our own; it sees the flag.
        for addr in &self.addrs {
            let mut to = *addr;
            if to.ip().is_unspecified() {
                to.set_ip(match to {
                    SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                });
            }
            let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
        }
        for t in self.acceptors.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.acceptors.is_empty() {
            self.stop_accepting();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let client = match accepted {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Out of descriptors or memory, or a connection reset before
            // it was accepted: give the system a moment, then go on.
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.stats.total.fetch_add(1, Ordering::Relaxed);
        shared.stats.open.fetch_add(1, Ordering::AcqRel);
        shared.stats.touch();
        let open = Open(Arc::clone(&shared.stats));
        let shared = Arc::clone(shared);
        // A failed spawn drops the connection (and `open` with it).
        let _ = thread::Builder::new()
            .name("relay-conn".into())
            .stack_size(STACK)
            .spawn(move || serve(client, &shared, open));
    }
}

/// One open connection in [`Stats`]: counted down when dropped.
struct Open(Arc<Stats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long one direction of a relayed connection may go on, silent,
/// after the other has ended; then both sides are closed.
pub const HALF_CLOSED_GRACE: Duration = Duration::from_secs(5);

/// How many of a connection's two directions have ended, when bytes last
/// passed either way, and whether it is a tunnel.
struct Ends {
    ended: Mutex<u8>,
    cv: Condvar,
    start: Instant,
    /// Milliseconds from `start`.
    last: AtomicU64,
    /// The client asked to switch protocols (a WebSocket), or speaks
    /// something other than HTTP/1: only then does a half-close have a
    /// grace. A plain HTTP half-close stands as long as the answer takes.
    tunnel: AtomicBool,
}

impl Ends {
    fn new() -> Ends {
        Ends {
            ended: Mutex::new(0),
            cv: Condvar::new(),
            start: Instant::now(),
            last: AtomicU64::new(0),
            tunnel: AtomicBool::new(false),
        }
    }

    /// Notes that bytes passed.
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Notes that one direction ended. With `wait`, in a tunnel, the first
    /// to end waits for the other while bytes still pass; says whether it
    /// has been silent for [`HALF_CLOSED_GRACE`] without ending, when both
    /// sides are to be closed.
    fn end(&self, wait: bool) -> bool {
        let mut n = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        if *n >= 2 {
            self.cv.notify_all();
            return false;
        }
        if !wait || !self.tunnel.load(Ordering::Relaxed) {
            return false;
        }
        loop {
            let now = self.start.elapsed().as_millis() as u64;
            let quiet =
                Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)));
            let Some(left) = HALF_CLOSED_GRACE.checked_sub(quiet).filter(|l| !l.is_zero()) else {
                return true;
            };
            n = self
                .cv
                .wait_timeout_while(n, left, |n| *n < 2)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if *n >= 2 {
                return false;
            }
        }
    }
}

/// Joins `client` to the server and copies until both directions end.
fn serve(client: TcpStream, shared: &Shared, open: Open) {
    let Some(server) = connect_upstream(shared) else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { return };
    let stats = Arc::clone(&open.0);
    let ends = Arc::new(Ends::new());
    let ends2 = Arc::clone(&ends);
    let up = thread::Builder::new()
        .name("relay-up".into())
        .stack_size(STACK)
        .spawn(move || pump(client2, server2, &stats, Some(RequestCounter::new()), &ends2));
    let Ok(up) = up else { return };
    pump(server, client, &open.0, None, &ends);
    let _ = up.join();
    drop(open);
}

/// Connects to the server, asking for one to be started if none runs, and
/// retrying until it accepts or the start timeout passes.
fn connect_upstream(shared: &Shared) -> Option<TcpStream> {
    let deadline = Instant::now() + shared.start_timeout;
    let mut asked = false;
    let mut pause = Duration::from_millis(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match (shared.upstream)() {
            Some(port) if !left.is_zero() => {
                let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                if let Ok(s) = TcpStream::connect_timeout(&to, left) {
                    return Some(s);
                }
            }
            Some(_) => {}
            None if !asked => {
                asked = true;
                (shared.on_first)();
                continue;
            }
            None => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Copies `from` to `to` until the end of `from` (passed on as a
/// half-close; in a tunnel, both connections are closed once the other
/// direction has been silent for [`HALF_CLOSED_GRACE`] without ending) or
/// an error (which closes both), counting requests with `counter` when
/// given.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    stats: &Stats,
    mut counter: Option<RequestCounter>,
    ends: &Ends,
) {
    // Requests are mostly small; answers carry the bulk.
    let mut buf = vec![0u8; if counter.is_some() { BUFFER / 4 } else { BUFFER }];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                if ends.end(true) {
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        stats.touch();
        ends.touch();
        if let Some(c) = counter.as_mut() {
            stats.count(c.feed(&buf[..n]));
            if !c.counting() {
                ends.tunnel.store(true, Ordering::Relaxed);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        // A slow reader on the other side: writing is activity too.
        ends.touch();
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    ends.end(false);
}

// ---- counting requests

/// The longest request line or header line followed; a longer one stops
/// the counting for its connection (servers refuse such lines too).
const MAX_LINE: usize = 16 * 1024;
/// The largest request head followed.
const MAX_HEAD: usize = 256 * 1024;

/// Counts HTTP/1 requests in the bytes a client sends, however they are
/// split into reads: a request counts when its head (request line and
/// headers) is complete. Bodies are skipped by their `Content-Length` or
/// chunked framing, so pipelined requests and uploads count right.
///
/// Counting stops for good (see [`RequestCounter::counting`]) at anything
/// it cannot frame: bytes that are not an HTTP/1.0 or 1.1 request (another
/// protocol, HTTP/2's preface), a request asking to switch protocols
/// (`Upgrade`, e.g. a WebSocket, whether or not the server agrees) or a
/// `CONNECT` tunnel, an unknown transfer coding, conflicting lengths, or a
/// line or head beyond the limits. It never fails and allocates at most
/// one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCounter {
    state: State,
    line: Vec<u8>,
    head: usize,
    content_length: Option<u64>,
    chunked: bool,
    tunnel: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line (empty lines between requests are allowed).
    Start,
    Headers,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The line break after a chunk's data.
    ChunkEnd,
    Trailers,
    Stopped,
}

impl Default for RequestCounter {
    fn default() -> Self {
        RequestCounter::new()
    }
}

impl RequestCounter {
    /// A counter at the start of a connection.
    pub fn new() -> RequestCounter {
        RequestCounter {
            state: State::Start,
            line: Vec::new(),
            head: 0,
            content_length: None,
            chunked: false,
            tunnel: false,
        }
    }

    /// Whether it still follows the connection (see the type's docs for
    /// what stops it).
    pub fn counting(&self) -> bool {
        self.state != State::Stopped
    }

    /// Takes the next bytes the client sent; returns how many request heads
    /// they completed.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut n = 0;
        while !data.is_empty() {
            match self.state {
                State::Stopped => break,
                State::Body(left) | State::ChunkData(left) => {
                    let k = left.min(data.len() as u64);
                    data = &data[k as usize..];
                    let left = left - k;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Start,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                _ => {
                    let (part, end) = match data.iter().position(|&b| b == b'\n') {
                        Some(i) => (&data[..i], true),
                        None => (data, false),
                    };
                    data = &data[part.len() + usize::from(end)..];
                    if self.line.len() + part.len() > MAX_LINE {
                        self.stop();
                        break;
                    }
                    self.line.extend_from_slice(part);
                    if end {
                        let mut line = std::mem::take(&mut self.line);
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        n += self.on_line(&line);
                        line.clear();
                        if self.counting() {
                            self.line = line;
                        }
                    }
                }
            }
        }
        n
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.line = Vec::new();
    }

    /// One complete line (without its line break) in a line state; returns
    /// 1 when it ends a request head.
    fn on_line(&mut self, line: &[u8]) -> u64 {
        if matches!(self.state, State::Headers | State::Trailers) {
            self.head += line.len() + 2;
            if self.head > MAX_HEAD {
                self.stop();
                return 0;
            }
        }
        match self.state {
            State::Start if line.is_empty() => {}
            State::Start => match request_line(line) {
                Some(connect) => {
                    self.state = State::Headers;
                    self.head = line.len() + 2;
                    self.content_length = None;
                    self.chunked = false;
                    self.tunnel = connect;
                }
                None => self.stop(),
            },
            State::Headers if line.is_empty() => {
                self.state = if self.tunnel {
                    State::Stopped
                } else if self.chunked {
                    State::ChunkSize
                } else {
                    match self.content_length {
                        Some(n) if n > 0 => State::Body(n),
                        _ => State::Start,
                    }
                };
                if self.tunnel {
                    self.line = Vec::new();
                }
                return 1;
            }
            State::Headers => {
                if !self.header(line) {
                    self.stop();
                }
            }
            State::ChunkSize => match chunk_size(line) {
                Some(0) => self.state = State::Trailers,
                Some(n) => self.state = State::ChunkData(n),
                None => self.stop(),
            },
            State::ChunkEnd if line.is_empty() => self.state = State::ChunkSize,
            State::ChunkEnd => self.stop(),
            State::Trailers if line.is_empty() => self.state = State::Start,
            State::Trailers => {}
            State::Body(_) | State::ChunkData(_) | State::Stopped => {}
        }
        0
    }

    /// One header line; false when the request cannot be framed.
    fn header(&mut self, line: &[u8]) -> bool {
        let Some(colon) = line.iter().position(|&b| b == b':') else { return false };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = decimal(value) else { return false };
            if self.content_length.is_some_and(|m| m != n) {
                return false;
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Codings apply in order; the body is framed by the last, which
            // must be chunked (else the request has no length).
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or_default();
            if !last.eq_ignore_ascii_case(b"chunked") {
                return false;
            }
            self.chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.tunnel = true;
        }
        true
    }
}

/// `METHOD SP TARGET SP HTTP/1.x`; `Some(is CONNECT)` when it is one.
fn request_line(line: &[u8]) -> Option<bool> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    let ok = parts.next().is_none()
        && !method.is_empty()
        && method.iter().all(|&b| is_tchar(b))
        && !target.is_empty()
        && target.iter().all(|&b| b > b' ' && b != 0x7f)
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0");
    ok.then_some(method == b"CONNECT")
}

/// A chunk-size line: hexadecimal digits, then optional extensions.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let rest = trim(&line[end..]);
    if end == 0 || end > 16 || !(rest.is_empty() || rest[0] == b';') {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..end]).ok()?, 16).ok()
}

fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let e = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(s, |e| e + 1);
    &v[s..e.max(s)]
}

/// A token character of RFC 9110 (header names, methods).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_in_pieces(text: &[u8], piece: usize) -> (u64, bool) {
        let mut c = RequestCounter::new();
        let n = text.chunks(piece.max(1)).map(|p| c.feed(p)).sum();
        (n, c.counting())
    }

    /// The same answer whether the bytes come at once, one by one or in
    /// pieces of any size.
    fn count(text: &[u8]) -> (u64, bool) {
        let whole = count_in_pieces(text, text.len());
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(count_in_pieces(text, piece), whole, "pieces of {piece}");
        }
        whole
    }

    #[test]
    fn counts_pipelined_requests_with_and_without_bodies() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nGET / HTTP/\
            \r\nHEAD /x HTTP/1.0\r\n\r\n\
            GET /bare-lf HTTP/1.1\nHost: a\n\n";
        assert_eq!(count(text), (4, true));
    }

    #[test]
    fn skips_chunked_bodies_with_extensions_and_trailers() {
        let text = b"POST /up HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nGET /\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n\
            GET /next HTTP/1.1\r\n\r\n";
        assert_eq!(count(text), (2, true));
    }

    #[test]
    fn stops_at_an_upgrade_a_tunnel_or_another_protocol() {
        let ws = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
            GET / HTTP/1.1\r\n\r\n";
        assert_eq!(count(ws), (1, false));
        assert_eq!(count(b"CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), (1, false));
        assert_eq!(count(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), (0, false));
        assert_eq!(count(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"), (0, false));
        assert_eq!(count(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), (0, false));
        assert_eq!(
            count(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            (0, false)
        );
        assert_eq!(
            count(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            (1, false)
        );
        let long = [b"GET /".as_slice(), &[b'a'; MAX_LINE], b" HTTP/1.1\r\n\r\n"].concat();
        assert_eq!(count(&long), (0, false));
    }

    #[test]
    fn the_per_minute_ring_counts_the_last_sixty_seconds() {
        let s = Stats::default();
        s.count(3);
        s.count(2);
        assert_eq!(s.requests_per_minute(), 5);
        assert_eq!(s.requests(), 5);
        // Seconds more than a minute ago are not counted.
        let Some(epoch) = Instant::now().checked_sub(Duration::from_secs(200)) else {
            // The monotonic clock starts at boot: within 200 s of it there
            // is no such past.
            let why = "the machine has been up for less than 200 s";
            let _ =
                std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n"));
            assert!(
                std::env::var_os(concat!("PORTD", "_NO_SKIP")).is_none(),
                "SKIP not allowed here: {why}"
            );
            return;
        };
        let old = Stats { epoch, ..Stats::default() };
        old.per_second.add(120, 9);
        old.per_second.add(190, 4);
        assert_eq!(old.requests_per_minute(), 4);
    }
}
