//! Building the dashboard's responses: bodies, content types, and the
//! headers every answer carries.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use std::convert::Infallible;

/// The body type of every dashboard response.
pub type Body = BoxBody<Bytes, Infallible>;

/// The content security policy of everything the dashboard serves: its own
/// script and style only, requests to itself only, never inside a frame
/// (a page of another site cannot overlay its buttons).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// A response with the headers every answer has.
pub fn response(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page (it holds the per-run token, so it is never cached).
pub fn page(html: String) -> Response<Body> {
    response(StatusCode::OK, "text/html; charset=utf-8", full(html))
}

/// An embedded static file.
pub fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    response(StatusCode::OK, content_type, full(text))
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    response(status, "application/json", full(text))
}

/// An error as JSON: `{"error": "…", "hint": "…"}` (`hint` only when
/// there is one), with a status that says what kind of error it is.
pub fn error(status: StatusCode, message: String, hint: Option<String>) -> Response<Body> {
    let mut v = serde_json::json!({ "error": message });
    if let Some(h) = hint.filter(|h| !h.is_empty()) {
        v["hint"] = h.into();
    }
    json(status, &v)
}

/// 405, naming the method the path takes.
pub fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r =
        error(StatusCode::METHOD_NOT_ALLOWED, format!("this path takes `{allow}` only"), None);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
