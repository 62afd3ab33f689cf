//! Forwarding a request to a project's port: the pool of upstream
//! connections (keep-alive), the headers a reverse proxy changes, and
//! WebSocket (any `Upgrade`) passthrough.
//!
//! Upstreams are dialled on 127.0.0.1 and, when nothing listens there, on
//! ::1 (Vite binds only `localhost` = ::1 on some systems). The `Host`
//! header is kept as the browser sent it; `X-Forwarded-For`, `-Proto` and
//! `-Host` are added, and [`HOP_HEADER`] carries each proxy's mark so that
//! a request that comes back to the proxy that sent it is refused.
//!
//! The pool keeps the idle HTTP/1.1 connections of each port, the most
//! recently used first. A connection goes back to it when its response's
//! body has ended, and is closed about [`IDLE_TIMEOUT`] after its last use:
//! a managed server counts open connections before it shuts down when idle,
//! and no timer is left once every pooled connection has gone (an idle
//! proxy uses no CPU).

use crate::{Body, State};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The header that marks a request as forwarded by a portd proxy: a
/// comma-separated list of the marks of the proxies it went through.
pub const HOP_HEADER: &str = "x-portd-hop";

/// How long an upstream connection stays open in the pool after its last
/// response (then it is closed, and the managed server behind it can count
/// itself idle).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a pooled connection may take to be ready for a request before
/// a new one is dialled instead.
const POOLED_READY: Duration = Duration::from_millis(100);

/// The pooled upstream client, shared by every request.
pub type Client = Arc<Pool>;

/// A pool with no connections yet; `hop_id` is this proxy's mark in
/// [`HOP_HEADER`].
pub fn client(hop_id: &str) -> Client {
    Arc::new(Pool {
        idle: Mutex::new(Idle::default()),
        hop: HeaderValue::from_str(hop_id).unwrap_or(HeaderValue::from_static("portd")),
    })
}

/// The idle upstream connections, by port.
pub struct Pool {
    idle: Mutex<Idle>,
    hop: HeaderValue,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.lock();
        f.debug_struct("Pool")
            .field("ports", &idle.by_port.len())
            .field("idle", &idle.by_port.values().map(Vec::len).sum::<usize>())
            .finish()
    }
}

#[derive(Default)]
struct Idle {
    next_id: u64,
    /// Per port, the least recently used first.
    by_port: HashMap<u16, Vec<Pooled>>,
}

struct Pooled {
    id: u64,
    tx: SendRequest<Body>,
    since: Instant,
    wake: Wake,
}

/// Wakes a connection's driver when its connection goes back to the pool
/// (the driver sleeps without a timer while the connection is in use).
type Wake = Arc<tokio::sync::Notify>;

/// A connection taken from the pool (or new), with what returns it there.
struct Lease {
    pool: Client,
    port: u16,
    id: u64,
    tx: SendRequest<Body>,
    wake: Wake,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection to `port` that is still open.
    fn take(&self, port: u16) -> Option<(u64, SendRequest<Body>, Wake)> {
        let mut idle = self.lock();
        let list = idle.by_port.get_mut(&port)?;
        while let Some(c) = list.pop() {
            if !c.tx.is_closed() {
                return Some((c.id, c.tx, c.wake));
            }
        }
        None
    }

    fn put(&self, port: u16, id: u64, tx: SendRequest<Body>, wake: Wake) {
        let since = Instant::now();
        let w = Arc::clone(&wake);
        {
            // Checked under the lock: a driver that ends clears its entry
            // under it too, so no closed entry can stay behind.
            let mut idle = self.lock();
            if tx.is_closed() {
                return;
            }
            idle.by_port.entry(port).or_default().push(Pooled { id, tx, since, wake });
        }
        w.notify_one();
    }

    /// Removes connection `id` from the pool, if it is there.
    fn remove(&self, port: u16, id: u64) -> Option<Pooled> {
        let mut idle = self.lock();
        let list = idle.by_port.get_mut(&port)?;
        let i = list.iter().position(|c| c.id == id)?;
        let gone = list.remove(i);
        if list.is_empty() {
            idle.by_port.remove(&port);
        }
        Some(gone)
    }

    /// For a connection's driver: closes the connection (drops its sender)
    /// once it has been idle in the pool for [`IDLE_TIMEOUT`]. How long to
    /// wait before asking again: `None` while it is not in the pool (in
    /// use, or closed), when only a [`Wake`] matters.
    fn expire(&self, port: u16, id: u64) -> Option<Duration> {
        let mut idle = self.lock();
        let list = idle.by_port.get_mut(&port)?;
        let i = list.iter().position(|c| c.id == id)?;
        let age = list[i].since.elapsed();
        if age < IDLE_TIMEOUT {
            return Some(IDLE_TIMEOUT - age);
        }
        // Under the same lock as the look at its age: a connection taken
        // and given back meanwhile is not the one removed.
        let gone = list.remove(i);
        if list.is_empty() {
            idle.by_port.remove(&port);
        }
        drop(idle);
        drop(gone);
        None
    }

    /// Dials `port` and starts the connection's driver.
    async fn connect(
        self: &Arc<Self>,
        port: u16,
    ) -> std::io::Result<(u64, SendRequest<Body>, Wake)> {
        let s = dial(port).await?;
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(s))
            .await
            .map_err(|e| std::io::Error::other(error_chain(&e)))?;
        let id = {
            let mut idle = self.lock();
            idle.next_id += 1;
            idle.next_id
        };
        let pool = Arc::clone(self);
        let wake: Wake = Arc::default();
        let woken = Arc::clone(&wake);
        tokio::spawn(async move {
            // Boxed, so that it can be dropped before the entry goes.
            let mut conn = Box::pin(conn.with_upgrades());
            loop {
                // A timer only while the connection idles in the pool.
                match pool.expire(port, id) {
                    Some(wait) => tokio::select! {
                        biased;
                        _ = &mut conn => break,
                        () = tokio::time::sleep(wait) => {}
                        () = woken.notified() => {}
                    },
                    None => tokio::select! {
                        biased;
                        _ = &mut conn => break,
                        () = woken.notified() => {}
                    },
                }
            }
            // Closed (by the upstream, or once its sender went): no dead
            // entry stays. The connection is dropped first, so that a `put`
            // after this sees its sender closed.
            drop(conn);
            drop(pool.remove(port, id));
        });
        Ok((id, tx, wake))
    }
}

/// The connector: `127.0.0.1:PORT`, else `[::1]:PORT`, with `TCP_NODELAY`.
pub async fn dial(port: u16) -> std::io::Result<TcpStream> {
    let s = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
        Ok(s) => s,
        Err(e4) => TcpStream::connect((Ipv6Addr::LOCALHOST, port)).await.map_err(|_| e4)?,
    };
    s.set_nodelay(true)?;
    Ok(s)
}

/// A response body that gives its connection back to the pool once it
/// has ended.
struct Returning {
    body: Incoming,
    lease: Option<Lease>,
}

impl Returning {
    fn give_back(&mut self) {
        if let Some(l) = self.lease.take() {
            l.pool.put(l.port, l.id, l.tx, l.wake);
        }
    }
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.body).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.give_back(),
            // A broken connection is not given back.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body read to its end (or empty, like a HEAD's, never polled):
        // the connection can serve the next request. Otherwise it closes.
        if hyper::body::Body::is_end_stream(&self.body) {
            self.give_back();
        }
    }
}

/// Why a request could not be forwarded.
#[derive(Debug)]
pub enum Failure {
    /// Nothing accepted the connection (on either address). The request
    /// is given back (none of it was sent), so that it can be sent again
    /// with [`resend`].
    Refused(Option<Box<Request<Body>>>),
    /// The upstream failed after accepting (a reset, a malformed answer).
    Broken(String),
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const HOP: HeaderName = HeaderName::from_static(HOP_HEADER);

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded as such.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers and those `Connection` names; returns the
/// `Upgrade` header when the message asked for one (kept then, with
/// `Connection: upgrade`).
fn strip_hop_headers(h: &mut HeaderMap) -> Option<HeaderValue> {
    let mut upgrade = false;
    // Names other than the usual `keep-alive`/`close` (no allocation then).
    let mut named: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION) {
        for t in v.to_str().into_iter().flat_map(|v| v.split(',')).map(str::trim) {
            if t.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            } else if !(t.is_empty()
                || t.eq_ignore_ascii_case("keep-alive")
                || t.eq_ignore_ascii_case("close"))
                && let Ok(n) = HeaderName::from_bytes(t.as_bytes())
            {
                named.push(n);
            }
        }
    }
    let upgrade = if upgrade { h.get(header::UPGRADE).cloned() } else { None };
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::UPGRADE);
    if let Some(u) = &upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u.clone());
    }
    upgrade
}

/// The peer's address for `X-Forwarded-For` (no allocation for loopback).
fn peer_value(peer: IpAddr) -> Option<HeaderValue> {
    match peer.to_canonical() {
        IpAddr::V4(a) if a == Ipv4Addr::LOCALHOST => Some(HeaderValue::from_static("127.0.0.1")),
        IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST => Some(HeaderValue::from_static("::1")),
        a => HeaderValue::from_str(&a.to_string()).ok(),
    }
}

/// Forwards `req` to `port`: the answer, or why there is none.
pub async fn forward(
    state: &State,
    mut req: Request<Incoming>,
    port: u16,
    peer: IpAddr,
) -> Result<Response<Body>, Failure> {
    strip_hop_headers(req.headers_mut());
    let (mut parts, body) = req.into_parts();
    let h = &mut parts.headers;
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", peer.to_canonical())).ok(),
        None => peer_value(peer),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !h.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = h.get(header::HOST).cloned()
    {
        h.insert(X_FORWARDED_HOST, host);
    }
    let hop = match h.get(&HOP).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev},{}", state.hop_id)).ok(),
        None => Some(state.client.hop.clone()),
    };
    if let Some(v) = hop {
        h.insert(HOP, v);
    }
    // Upstream, the target is in origin form (`/path?query`).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    // HTTP/2 or 1.0 from the browser: upstream it is HTTP/1.1 either way.
    parts.version = hyper::Version::HTTP_11;
    resend(state, port, Request::from_parts(parts, body.boxed())).await
}

/// Sends a request [`forward`] prepared to `port` (again, after
/// [`Failure::Refused`] gave it back and the server was started): a
/// WebSocket (any `Upgrade`) is passed through when the upstream agrees.
pub async fn resend(
    state: &State,
    port: u16,
    mut req: Request<Body>,
) -> Result<Response<Body>, Failure> {
    let client_upgrade =
        req.headers().contains_key(header::UPGRADE).then(|| hyper::upgrade::on(&mut req));
    let pool = &state.client;
    let (mut resp, lease) = loop {
        let (id, mut tx, wake, fresh) = match pool.take(port) {
            Some((id, tx, wake)) => (id, tx, wake, false),
            None => match pool.connect(port).await {
                Ok((id, tx, wake)) => (id, tx, wake, true),
                Err(e) if e.kind() != std::io::ErrorKind::ConnectionRefused => {
                    return Err(Failure::Broken(format!("cannot connect to it: {e}")));
                }
                Err(_) => {
                    // Nothing was sent: the request goes back whole, with
                    // what its upgrade needs.
                    if let Some(u) = client_upgrade {
                        req.extensions_mut().insert(u);
                    }
                    return Err(Failure::Refused(Some(Box::new(req))));
                }
            },
        };
        // A pooled connection not ready at once may still be sending an
        // earlier request's body (answered before it was all read): a new
        // connection then, rather than waiting behind it.
        let ready = if fresh {
            tx.ready().await.is_ok()
        } else {
            matches!(tokio::time::timeout(POOLED_READY, tx.ready()).await, Ok(Ok(())))
        };
        if !ready {
            if fresh {
                return Err(Failure::Broken("the upstream closed the connection at once".into()));
            }
            continue;
        }
        match tx.try_send_request(req).await {
            Ok(resp) => break (resp, Lease { pool: Arc::clone(pool), port, id, tx, wake }),
            Err(mut e) => match e.take_message() {
                // A pooled connection that the upstream closed before the
                // request went out: a new one.
                Some(r) if !fresh => req = r,
                _ => return Err(Failure::Broken(broken(e.error()))),
            },
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        drop(lease);
        let Some(client_upgrade) = client_upgrade else {
            return Err(Failure::Broken("the upstream switched protocols unasked".into()));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                tunnel(TokioIo::new(c), TokioIo::new(u)).await;
            }
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, crate::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_headers(&mut parts.headers);
    // An HTTP/1.0 upstream (python's http.server) must not make the
    // browser's connection HTTP/1.0: hyper frames the body either way.
    parts.version = hyper::Version::HTTP_11;
    let body = Returning { body, lease: Some(lease) };
    Ok(Response::from_parts(parts, body.boxed()))
}

/// How long one side of an upgraded connection may stay open, silent,
/// after the other has ended.
pub const HALF_CLOSED_GRACE: Duration = Duration::from_secs(5);

/// Passes bytes both ways between an upgraded client connection and its
/// upstream. When one side ends, the other's write half is shut down, and
/// the other direction goes on while bytes pass; once it has been silent
/// for [`HALF_CLOSED_GRACE`], both are closed. (A WebSocket server that
/// keeps a half-closed connection open would otherwise hold the tunnel,
/// and its server's idle shutdown, for ever.)
async fn tunnel<A, B>(a: A, b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    // Milliseconds from `start` of the last bytes either way.
    let last = AtomicU64::new(0);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let there = pipe(&mut ar, &mut bw, start, &last);
    let back = pipe(&mut br, &mut aw, start, &last);
    tokio::pin!(there, back);
    let there_ended = tokio::select! {
        () = &mut there => true,
        () = &mut back => false,
    };
    loop {
        let now = start.elapsed().as_millis() as u64;
        let quiet = Duration::from_millis(now.saturating_sub(last.load(Ordering::Relaxed)));
        let Some(left) = HALF_CLOSED_GRACE.checked_sub(quiet).filter(|l| !l.is_zero()) else {
            return;
        };
        let ended = if there_ended {
            tokio::time::timeout(left, &mut back).await
        } else {
            tokio::time::timeout(left, &mut there).await
        };
        if ended.is_ok() {
            return;
        }
    }
}

/// Copies `r` to `w` until the end of `r` (then shuts `w` down) or an
/// error, noting in `last` when bytes passed.
async fn pipe<R, W>(r: &mut R, w: &mut W, start: Instant, last: &AtomicU64)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                // A slow reader on the other side: writing is activity too.
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = w.shutdown().await;
}

/// What went wrong with an upstream that accepted the connection, in the
/// words of an error page ("… does not answer on port P: {this}").
fn broken(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return "it closed the connection before answering".to_owned();
            }
            if h.is_parse() {
                return format!("its answer is not HTTP/1.1 ({h})");
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionReset
        {
            return "it reset the connection before answering".to_owned();
        }
        cur = c.source();
    }
    error_chain(e)
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s
}
