//! The dashboard at `http://portd.localhost:P/`: one embedded page that
//! lists every project live, and the JSON API behind it.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the page (HTML; its CSS and script at `/app.css`, `/app.js`) |
//! | `GET /api/projects` | every entry as `portd ls --json` prints it, plus `connections`, `rss_bytes` and `host` ([`api::ProjectJson`]) |
//! | `GET /api/events` | server-sent events: a `projects` snapshot at once and after every change ([`sse`]) |
//! | `GET /api/projects/NAME/logs?n=50` | the last lines of a defined server's log |
//! | `POST /api/projects/NAME/start\|stop\|restart` | manages a defined server ([`portd_serve::client`]) |
//!
//! Every request passes [`guard`] first: only the dashboard's own host
//! names are served (a page of another site that a DNS rebinding points at
//! loopback is refused), and a request that changes something needs a
//! same-origin `Origin`, the per-run token in `X-Portd-Token` and a JSON
//! body. Routing by project name and forwarding are not this module's.
//!
//! Everything that reads the registry runs on tokio's blocking pool: the
//! registry lock may be held for a while by another process, and no
//! request of the proxy may wait on it.

pub mod api;
pub mod guard;
mod reply;
pub mod sse;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use portd_store::Config;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

pub use reply::Body;

/// The page, its style sheet and its script: embedded in the binary, so the
/// dashboard needs no file and no network.
const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// The request header that carries the per-run token on requests that
/// change something.
pub const TOKEN_HEADER: &str = "x-portd-token";

/// The dashboard's state, shared by every request: where the registry is,
/// how to start servers, the per-run token, and the change signal that
/// drives the live updates.
#[derive(Debug)]
pub struct Dashboard {
    registry_dir: PathBuf,
    config: Config,
    portd_exe: PathBuf,
    token: String,
    /// A change counter: [`Dashboard::notify_changed`] bumps it, and every
    /// open event stream wakes on it.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Dashboard {
    /// The dashboard of the registry in `registry_dir` (opened per request
    /// with `config`), starting servers with `portd_exe` (the `portd`
    /// binary, which runs `portd __serve NAME`). Makes a new random token
    /// for this run.
    pub fn new(registry_dir: PathBuf, config: Config, portd_exe: PathBuf) -> Dashboard {
        Dashboard {
            registry_dir,
            config,
            portd_exe,
            token: guard::new_token(),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The token that requests which change something must carry in
    /// `X-Portd-Token` (the page has it; other callers read it from where
    /// the proxy publishes it).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Says that the registry changed: every open event stream sends a new
    /// snapshot (if it differs from its last). Cheap and callable from any
    /// thread, inside the runtime or not. A call after which
    /// `registry.redb` is unchanged (a watch woken by `registry.lock`,
    /// which every reader writes, the dashboard's own reads included) costs
    /// a `stat` per stream and sends nothing.
    pub fn notify_changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Opens the registry for one operation.
    fn registry(&self) -> Result<portd_store::Registry, portd_store::Error> {
        portd_store::Registry::open(&self.registry_dir, self.config.clone())
    }
}

/// Answers one request to the dashboard: the page, the API, or a refusal
/// that says why.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<Dashboard>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let host = match guard::check_host(&req) {
        Ok(h) => h,
        Err(refusal) => return refusal.into_response(),
    };
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method != Method::GET
        && method != Method::HEAD
        && let Err(refusal) = guard::check_change(&req, &host, &state.token)
    {
        return refusal.into_response();
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET" | "HEAD", [""]) => reply::page(INDEX_HTML.replace("{{TOKEN}}", &state.token)),
        ("GET" | "HEAD", ["app.css"]) => reply::asset("text/css; charset=utf-8", APP_CSS),
        ("GET" | "HEAD", ["app.js"]) => reply::asset("text/javascript; charset=utf-8", APP_JS),
        ("GET" | "HEAD", ["api", "projects"]) => api::projects(&state).await,
        ("GET", ["api", "events"]) => sse::events(state),
        ("GET" | "HEAD", ["api", "projects", name, "logs"]) => {
            api::logs(&state, name, req.uri().query()).await
        }
        ("POST", ["api", "projects", name, action]) => {
            let Some(action) = api::Action::parse(action) else {
                return reply::error(StatusCode::NOT_FOUND, format!("no action `{action}`"), None);
            };
            let body = match guard::json_body(req).await {
                Ok(b) => b,
                Err(refusal) => return refusal.into_response(),
            };
            drop(body);
            api::act(&state, name, action).await
        }
        (_, ["" | "app.css" | "app.js"] | ["api", "projects" | "events"])
        | (_, ["api", "projects", _, "logs"]) => reply::not_allowed("GET"),
        (_, ["api", "projects", _, _]) => reply::not_allowed("POST"),
        _ => reply::error(StatusCode::NOT_FOUND, format!("nothing at `{path}`"), None),
    }
}
