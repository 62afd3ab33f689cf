//! Who may use the dashboard: the checks every request passes before it
//! is answered.
//!
//! - **Host allow-list** (DNS rebinding): a page of `evil.example` whose
//!   name an attacker points at 127.0.0.1 reaches the dashboard with
//!   `Host: evil.example`. Only the dashboard's own names are served:
//!   `portd.localhost`, `localhost`, `127.0.0.1` and `[::1]`, each with an
//!   optional port; anything else gets 421, no Host at all 400.
//! - **Changes** (cross-site request forgery): a request that is not
//!   `GET`/`HEAD` needs an `Origin` equal to `http://` + its Host, the
//!   per-run token in `X-Portd-Token` (the page has it; another site's
//!   script can read neither the page nor the token), and a JSON body
//!   (`Content-Type: application/json`). Each failure is a 403 that says
//!   which check failed.

use super::TOKEN_HEADER;
use super::reply::{self, Body};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};

/// The dashboard's own host names (lowercase, without port).
pub const HOSTS: [&str; 4] = ["portd.localhost", "localhost", "127.0.0.1", "[::1]"];

/// The largest request body accepted (the actions take none worth more).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a request is refused, as the answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 403, 413 or 421.
    pub status: StatusCode,
    /// One line.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }

    /// The refusal as a JSON error response.
    pub fn into_response(self) -> Response<Body> {
        reply::error(self.status, self.message, None)
    }
}

/// The request's host as sent (`portd.localhost:7777`), lowercased, when it
/// is one of the dashboard's [`HOSTS`] with an optional port.
pub fn check_host<B>(req: &Request<B>) -> Result<String, Refusal> {
    let Some(raw) = host_of(req) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "the request has no `Host` header"));
    };
    let host = raw.to_ascii_lowercase();
    match split_host(&host) {
        Some((name, _)) if HOSTS.contains(&name) => Ok(host),
        Some((name, _)) => Err(Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "the dashboard answers only to its own names (portd.localhost, localhost, 127.0.0.1, [::1]), not `{name}`"
            ),
        )),
        None => {
            Err(Refusal::new(StatusCode::BAD_REQUEST, format!("malformed `Host` header `{raw}`")))
        }
    }
}

/// The Host header, or the authority of an absolute-form request target.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    match req.headers().get_all(header::HOST).iter().collect::<Vec<_>>().as_slice() {
        [one] => one.to_str().ok().map(str::to_owned),
        [] => req.uri().authority().map(|a| a.as_str().to_owned()),
        // Two Host headers: ambiguous, refused like none.
        _ => None,
    }
}

/// `name[:port]` → (name, port): `[::1]` keeps its brackets; a port is
/// 1–5 digits up to 65535. `None` when malformed.
pub fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        match rest {
            "" => (&host[..=end], None),
            _ => (&host[..=end], Some(rest.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    let ok =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':');
    if name.is_empty() || !name.bytes().all(ok) {
        return None;
    }
    Some((name, port))
}

/// The checks of a request that changes something: same-origin `Origin`
/// and the token. (The body's type is checked with the body, by
/// [`json_body`].) `host` is the checked Host, lowercased.
pub fn check_change<B>(req: &Request<B>, host: &str, token: &str) -> Result<(), Refusal> {
    let h = req.headers();
    let origin = one(h, header::ORIGIN.as_str()).ok_or_else(|| {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "a request that changes something needs an `Origin` header",
        )
    })?;
    let expected = format!("http://{host}");
    if !origin.eq_ignore_ascii_case(&expected) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("cross-origin request refused: `Origin` is `{origin}`, not `{expected}`"),
        ));
    }
    match one(h, TOKEN_HEADER) {
        None => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "a request that changes something needs the dashboard's token in `X-Portd-Token`",
        )),
        Some(t) if !same(t.as_bytes(), token.as_bytes()) => {
            Err(Refusal::new(StatusCode::FORBIDDEN, "wrong `X-Portd-Token`: reload the dashboard"))
        }
        Some(_) => Ok(()),
    }
}

/// A header that is there exactly once, as text.
fn one<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = h.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a JSON request body (`Content-Type: application/json`, at most
/// [`MAX_BODY`] bytes, empty or a JSON value).
pub async fn json_body(req: Request<Incoming>) -> Result<serde_json::Value, Refusal> {
    let ct = one(req.headers(), header::CONTENT_TYPE.as_str()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "the body must be JSON (`Content-Type: application/json`), not `{}`",
                if ct.is_empty() { "none" } else { ct }
            ),
        ));
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes: Bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes, or was cut off"),
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))
}

/// A new random token: 128 bits from the kernel, as 32 hex digits.
pub fn new_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // std's hasher keys come from the OS's random source too.
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            let mut h = std::hash::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("POST").uri("/api/projects/a/stop");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_the_dashboards_own_names_pass() {
        for ok in [
            "portd.localhost",
            "portd.localhost:7777",
            "PORTD.LOCALHOST:7777",
            "localhost",
            "localhost:80",
            "127.0.0.1:7777",
            "[::1]",
            "[::1]:7777",
        ] {
            assert_eq!(check_host(&req(&[("host", ok)])), Ok(ok.to_ascii_lowercase()), "{ok}");
        }
        for (bad, status) in [
            ("evil.example", 421),
            ("evil.example:7777", 421),
            ("api.localhost:7777", 421),
            ("localhost.", 421),
            ("127.0.0.2:7777", 421),
            ("[::2]:7777", 421),
            ("localhost:99999", 400),
            ("localhost:", 400),
            ("localhost:7x", 400),
            ("local host", 400),
            ("[::1", 400),
            ("[::1]7777", 400),
            ("", 400),
        ] {
            let e = check_host(&req(&[("host", bad)])).unwrap_err();
            assert_eq!(e.status.as_u16(), status, "{bad}: {e:?}");
        }
        let e = check_host(&req(&[])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("no `Host`"), "{e:?}");
        let two = req(&[("host", "localhost"), ("host", "evil.example")]);
        assert_eq!(check_host(&two).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_change_needs_same_origin_and_the_token() {
        let t = "0123456789abcdef0123456789abcdef";
        let host = "localhost:7777";
        let ok = req(&[("origin", "http://localhost:7777"), ("x-portd-token", t)]);
        assert_eq!(check_change(&ok, host, t), Ok(()));
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("x-portd-token", t)], "needs an `Origin`"),
            (&[("origin", "http://evil.example"), ("x-portd-token", t)], "cross-origin"),
            (&[("origin", "http://localhost:7778"), ("x-portd-token", t)], "cross-origin"),
            (&[("origin", "https://localhost:7777"), ("x-portd-token", t)], "cross-origin"),
            (&[("origin", "http://localhost:7777")], "needs the dashboard's token"),
            (&[("origin", "http://localhost:7777"), ("x-portd-token", "00")], "wrong"),
        ];
        for (headers, says) in cases {
            let e = check_change(&req(headers), host, t).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{headers:?}");
            assert!(e.message.contains(says), "{headers:?}: {e:?}");
        }
    }

    #[test]
    fn tokens_are_new_each_run() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
