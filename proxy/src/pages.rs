//! The proxy's own answers when it cannot forward: small HTML pages a
//! developer can act on, or JSON when the request asks for it
//! (`Accept: application/json`). Every page says what happened, which
//! project and port, and the command that fixes it.

use crate::routes::{Route, Routes};
use crate::{Body, full};
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

/// What to answer in: HTML or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A page for a browser.
    Html,
    /// `Accept: application/json`.
    Json,
}

impl Format {
    /// JSON when the request's `Accept` names `application/json` (and not
    /// `text/html` before it).
    pub fn of(headers: &hyper::HeaderMap) -> Format {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        match (accept.find("application/json"), accept.find("text/html")) {
            (Some(j), Some(h)) if h < j => Format::Html,
            (Some(_), _) => Format::Json,
            _ => Format::Html,
        }
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#222;background:#fff}\
h1{font-size:1.3rem}code,pre{font:13px ui-monospace,monospace;background:#f2f2f2;border-radius:4px}\
code{padding:.1em .3em}pre{padding:.7em;overflow:auto;white-space:pre-wrap}a{color:#0b62c4}\
dt{font-weight:600}dd{margin:0 0 .4em 0}.muted{color:#666;font-size:13px}\
@media (prefers-color-scheme:dark){body{background:#16181b;color:#ddd}code,pre{background:#24272b}a{color:#6cb0ff}.muted{color:#999}}";

/// A response with `status`: `html` inside a page titled `title`, or
/// `json` (to which `error` is added, from the title).
pub fn page(
    status: StatusCode,
    format: Format,
    title: &str,
    html: &str,
    json: Value,
) -> Response<Body> {
    let (ctype, body) = match format {
        Format::Json => {
            let mut v = json;
            if let Value::Object(m) = &mut v {
                m.insert("error".into(), Value::String(title.to_owned()));
                m.insert("status".into(), Value::from(status.as_u16()));
            }
            ("application/json", v.to_string())
        }
        Format::Html => (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
                 <title>{t} · portd</title><style>{STYLE}</style><h1>{t}</h1>{html}\
                 <p class=muted>{code} · portd proxy</p></html>\n",
                t = esc(title),
                code = status.as_u16()
            ),
        ),
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

fn project_json(r: &Route, port: u16) -> Value {
    json!({
        "project": r.name,
        "key": r.key,
        "host": r.host,
        "url": Routes::url(r, port),
        "port": r.port,
        "state": r.state(),
        "defined": r.defined,
    })
}

/// 404: no project answers to `host`; the known ones, as links.
pub fn unknown(routes: &Routes, host: &str, port: u16, format: Format) -> Response<Body> {
    let mut items = String::new();
    for r in &routes.routes {
        match Routes::url(r, port) {
            Some(u) if r.ambiguous_with.is_empty() => items.push_str(&format!(
                "<li><a href=\"{u}\">{h}</a> <span class=muted>{n} · port {p} · {s}</span></li>",
                u = esc(&u),
                h = esc(r.host.as_deref().unwrap_or("")),
                n = esc(&r.name),
                p = r.port,
                s = r.state()
            )),
            _ => {}
        }
    }
    let list = if items.is_empty() {
        "<p>No project has a port yet: <code>portd get NAME</code> or <code>portd add NAME -- COMMAND</code>.</p>".to_owned()
    } else {
        format!("<p>Known projects:</p><ul>{items}</ul>")
    };
    let html = format!(
        "<p>No project answers to <code>{h}</code>.</p>{list}{err}",
        h = esc(host),
        err = registry_note(routes)
    );
    let projects: Vec<Value> = routes.routes.iter().map(|r| project_json(r, port)).collect();
    page(
        StatusCode::NOT_FOUND,
        format,
        "Unknown project",
        &html,
        json!({"host": host, "projects": projects, "registry_error": routes.error}),
    )
}

fn registry_note(routes: &Routes) -> String {
    match &routes.error {
        Some(e) => format!(
            "<p><strong>The registry could not be read at its last change</strong>: {}. \
             The proxy routes by the table it read before.</p>",
            esc(e)
        ),
        None => String::new(),
    }
}

/// 409: several projects share the host name.
pub fn ambiguous(host: &str, routes: &[&Route], port: u16, format: Format) -> Response<Body> {
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    let dashboard = routes.iter().any(|r| r.ambiguous_with.iter().any(|a| a == "the dashboard"));
    let why = if dashboard {
        format!("<code>{}</code> is the dashboard's host name.", esc(host))
    } else {
        format!(
            "Projects {} all map to <code>{}</code> (names are compared in lower case; <code>a:b</code> is <code>b.a</code>).",
            names.iter().map(|n| format!("<code>{}</code>", esc(n))).collect::<Vec<_>>().join(", "),
            esc(host)
        )
    };
    let html = format!(
        "<p>{why}</p><p>Rename all but one (<code>portd release NAME</code>, then <code>portd get NEWNAME</code>) to route this host.</p>"
    );
    let projects: Vec<Value> = routes.iter().map(|r| project_json(r, port)).collect();
    page(
        StatusCode::CONFLICT,
        format,
        "Ambiguous host name",
        &html,
        json!({"host": host, "projects": projects}),
    )
}

/// 400: no usable `Host` header (missing, as in an HTTP/1.0 request
/// without one, or not a host name: the page says what is wrong with it).
pub fn bad_host(host: Option<&str>, port: u16, format: Format) -> Response<Body> {
    let why = match host {
        Some(h) => what_is_wrong(h),
        None => "it is missing".to_owned(),
    };
    let what = match host {
        Some(h) => format!(
            "The request's <code>Host</code> header <code>{}</code> is not a host name: {}.",
            esc(h),
            code_spans(&why)
        ),
        None => {
            "The request's <code>Host</code> header is missing, so it names no project.".to_owned()
        }
    };
    let html = format!(
        "<p>{what}</p><p>Use <code>http://NAME.localhost:{port}/</code>, \
         or <code>http://localhost:{port}/</code> for the dashboard.</p>"
    );
    page(
        StatusCode::BAD_REQUEST,
        format,
        "Bad Host header",
        &html,
        json!({"host": host, "reason": why}),
    )
}

/// `text` escaped for HTML, its `backticked` parts as `<code>`.
fn code_spans(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", esc(part)));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

/// What makes `host` (a `Host` header that is not `NAME[:PORT]`) unusable,
/// in a few words.
fn what_is_wrong(host: &str) -> String {
    let host = host.trim();
    if host.is_empty() {
        return "it is empty".to_owned();
    }
    if let Some(c) = host.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return match c {
            ' ' => "it holds a space".to_owned(),
            c => format!("it holds the control character U+{:04X}", u32::from(c)),
        };
    }
    let name = match host.rsplit_once(':') {
        Some((n, p)) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => n,
        Some((_, p)) => return format!("`{p}` after the `:` is not a port"),
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return format!("`{c}` cannot be part of a host name");
    }
    if name.len() > 253 {
        return format!("it is {} characters long (at most 253)", name.len());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return "it has an empty label (`..`, or a dot at the start)".to_owned();
    }
    if let Some(l) = labels.iter().find(|l| l.len() > 63) {
        return format!("a label of it is {} characters long (at most 63)", l.len());
    }
    "it is not a host name".to_owned()
}

/// 421: a host that is not a `.localhost` name.
pub fn foreign(host: &str, port: u16, format: Format) -> Response<Body> {
    let html = format!(
        "<p>This proxy serves <code>NAME.localhost</code> names only, not <code>{}</code>. \
         Try <a href=\"http://localhost:{port}/\">http://localhost:{port}/</a> for the dashboard.</p>",
        esc(host)
    );
    page(
        StatusCode::MISDIRECTED_REQUEST,
        format,
        "Not a .localhost name",
        &html,
        json!({"host": host}),
    )
}

/// 508: the request came back to this proxy.
pub fn looped(host: &str, route: Option<&Route>, format: Format) -> Response<Body> {
    let target = route.map_or(String::new(), |r| {
        format!(
            " Project <code>{}</code> has port {}, which leads back to the proxy.",
            esc(&r.name),
            r.port
        )
    });
    let html = format!(
        "<p>The request for <code>{}</code> came back to this proxy: a loop.{target}</p>\
         <p>Give the project its own port (<code>portd get NAME --free --move</code>).</p>",
        esc(host)
    );
    page(
        StatusCode::LOOP_DETECTED,
        format,
        "Proxy loop",
        &html,
        json!({"host": host, "project": route.map(|r| r.name.clone()), "port": route.map(|r| r.port)}),
    )
}

fn log_html(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    format!("<p>Last lines of its log:</p><pre>{}</pre>", esc(&log.join("\n")))
}

/// 502: the project's port does not answer. `routes` is the table the
/// route came from (its error, when the registry could not be read, is
/// shown: the route may be out of date).
pub fn not_answering(
    routes: &Routes,
    route: &Route,
    why: &str,
    log: &[String],
    port: u16,
    format: Format,
) -> Response<Body> {
    let state = match &route.reason {
        Some(r) => format!("{} ({})", route.state(), r),
        None => route.state().to_owned(),
    };
    let html = format!(
        "<p>Project <code>{n}</code> does not answer on port {p}: {why}.</p>\
         <dl><dt>state</dt><dd>{st}</dd><dt>start it</dt><dd><code>{cmd}</code></dd></dl>{log}{reg}",
        n = esc(&route.name),
        p = route.port,
        why = esc(why),
        st = esc(&state),
        cmd = esc(&route.start_command()),
        log = log_html(log),
        reg = registry_note(routes),
    );
    let mut j = project_json(route, port);
    j["registry_error"] = json!(routes.error);
    j["reason"] = json!(why);
    j["state_reason"] = json!(route.reason);
    j["start_command"] = json!(route.start_command());
    j["log"] = json!(log);
    page(StatusCode::BAD_GATEWAY, format, "Project not answering", &html, j)
}

/// 502: starting the project failed (the command exited, or never became
/// healthy). 502, not 503: the proxy, a gateway, got no answer from the
/// server behind it, and asking again does not help until the command is
/// fixed, while 503 tells browsers and HTTP clients to try again later.
pub fn start_failed(
    route: &Route,
    message: &str,
    hint: &str,
    log: &[String],
    port: u16,
    format: Format,
) -> Response<Body> {
    let hint_html = if hint.is_empty() { String::new() } else { format!("<p>{}</p>", esc(hint)) };
    let html = format!(
        "<p>Starting <code>{n}</code> (port {p}) failed: {m}</p>{hint_html}\
         <dl><dt>start it yourself</dt><dd><code>{cmd}</code></dd><dt>its log</dt><dd><code>portd logs {n}</code></dd></dl>{log}",
        n = esc(&route.name),
        p = route.port,
        m = esc(message),
        cmd = esc(&route.start_command()),
        log = log_html(log),
    );
    let mut j = project_json(route, port);
    j["reason"] = json!(message);
    j["hint"] = json!(hint);
    j["start_command"] = json!(route.start_command());
    j["log"] = json!(log);
    page(StatusCode::BAD_GATEWAY, format, "Start failed", &html, j)
}
