//! Forwarding a request to a project's port: the pooled HTTP/1.1 client
//! (upstream keep-alive), the headers a reverse proxy changes, and
//! WebSocket (any `Upgrade`) passthrough.
//!
//! Upstreams are dialled on 127.0.0.1 and, when nothing listens there, on
//! ::1 (Vite binds only `localhost` = ::1 on some systems). The `Host`
//! header is kept as the browser sent it; `X-Forwarded-For`, `-Proto` and
//! `-Host` are added, and [`HOP_HEADER`] carries each proxy's mark so that
//! a request that comes back to the proxy that sent it is refused.

use crate::{Body, State};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// The header that marks a request as forwarded by a portd proxy: a
/// comma-separated list of the marks of the proxies it went through.
pub const HOP_HEADER: &str = "x-portd-hop";

/// The pooled upstream client.
pub type Client = hyper_util::client::legacy::Client<Dial, Body>;

/// A client that keeps upstream connections open for reuse. It has no
/// idle timer (nothing fires while nothing happens): an idle connection
/// goes when the upstream closes it.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(Dial)
}

/// The connector: `127.0.0.1:PORT`, else `[::1]:PORT`, with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dial;

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let port = uri.port_u16().unwrap_or(80);
        Box::pin(async move {
            let s = dial(port).await?;
            Ok(TokioIo::new(s))
        })
    }
}

/// Connects to `port` on 127.0.0.1, else on ::1; the first error when
/// neither answers.
pub async fn dial(port: u16) -> std::io::Result<TcpStream> {
    let s = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
        Ok(s) => s,
        Err(e4) => TcpStream::connect((Ipv6Addr::LOCALHOST, port)).await.map_err(|_| e4)?,
    };
    s.set_nodelay(true)?;
    Ok(s)
}

/// Why a request could not be forwarded.
#[derive(Debug)]
pub enum Failure {
    /// Nothing accepted the connection (on either address). The request
    /// is given back when it had no body, so that it can be sent again.
    Refused(Option<Box<Request<Body>>>),
    /// The upstream failed after accepting (a reset, a malformed answer).
    Broken(String),
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded as such.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers and those `Connection` names; returns the
/// `Upgrade` header when the message asked for one (kept then, with
/// `Connection: upgrade`).
fn strip_hop_headers(h: &mut HeaderMap) -> Option<HeaderValue> {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade =
        named.contains(&header::UPGRADE).then(|| h.get(header::UPGRADE).cloned()).flatten();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::UPGRADE);
    if let Some(u) = &upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u.clone());
    }
    upgrade
}

/// Forwards `req` to `port`: the answer, or why there is none.
pub async fn forward(
    state: &State,
    mut req: Request<Incoming>,
    port: u16,
    peer: IpAddr,
) -> Result<Response<Body>, Failure> {
    let upgrade = strip_hop_headers(req.headers_mut());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let h = &mut parts.headers;
    let host = h.get(header::HOST).cloned();
    let peer = peer.to_canonical().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if !h.contains_key("x-forwarded-proto") {
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if let (false, Some(host)) = (h.contains_key("x-forwarded-host"), host) {
        h.insert("x-forwarded-host", host);
    }
    let hop = match h.get(HOP_HEADER).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev},{}", state.hop_id),
        None => state.hop_id.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&hop) {
        h.insert(HOP_HEADER, v);
    }
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("http://127.0.0.1:{port}{pq}").parse() {
        Ok(u) => u,
        Err(e) => return Err(Failure::Broken(format!("bad request target: {e}"))),
    };
    // HTTP/2 or 1.0 from the browser: upstream it is HTTP/1.1 either way.
    parts.version = hyper::Version::HTTP_11;
    let bodyless = hyper::body::Body::is_end_stream(&body)
        || hyper::body::Body::size_hint(&body).exact() == Some(0);
    let retry = bodyless.then(|| {
        let mut r = Request::new(crate::empty());
        *r.method_mut() = parts.method.clone();
        *r.uri_mut() = parts.uri.clone();
        *r.version_mut() = parts.version;
        *r.headers_mut() = parts.headers.clone();
        r
    });
    send(state, Request::from_parts(parts, body.boxed()), client_upgrade, retry).await
}

/// Sends a request [`forward`] prepared once more (after starting the
/// server that refused it). No upgrade then.
pub async fn resend(state: &State, req: Request<Body>) -> Result<Response<Body>, Failure> {
    send(state, req, None, None).await
}

async fn send(
    state: &State,
    out: Request<Body>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    retry: Option<Request<Body>>,
) -> Result<Response<Body>, Failure> {
    let mut resp = match state.client.request(out).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(Failure::Refused(retry.map(Box::new))),
        Err(e) => return Err(Failure::Broken(broken(&e))),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(Failure::Broken("the upstream switched protocols unasked".into()));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
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
    Ok(Response::from_parts(parts, body.boxed()))
}

/// What went wrong with an upstream that accepted the connection, in the
/// words of an error page ("… does not answer on port P: {this}").
fn broken(e: &hyper_util::client::legacy::Error) -> String {
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
