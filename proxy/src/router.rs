//! One request: which project its `Host` names, then forward it, start
//! the project first (a defined server that does not run), or answer with
//! a page saying why not.
//!
//! Starts are shared: concurrent requests for one project wait on the
//! same start, which runs `portd_serve::client::start` on the blocking
//! pool and goes on even if the request that asked for it goes away.

use crate::forward::{self, Failure, HOP_HEADER};
use crate::hosts::{self, Target};
use crate::pages::{self, Format};
use crate::routes::Route;
use crate::{Body, State};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, header};
use portd_serve::client::{self, Outcome};
use portd_store::Project;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The starts under way, by project key.
#[derive(Debug, Default)]
pub struct Starts(Mutex<HashMap<String, watch::Receiver<Option<Started>>>>);

/// How a start through the proxy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Ready (or sleeping on its socket: the connection wakes it).
    Ready,
    /// It failed: why, and the fix.
    Failed {
        /// One line.
        message: String,
        /// The fix, if any.
        hint: String,
    },
}

/// Lines of a project's log shown on an error page.
const LOG_LINES: usize = 20;

/// Answers one request from `peer`.
pub async fn handle(req: Request<Incoming>, state: Arc<State>, peer: IpAddr) -> Response<Body> {
    let format = Format::of(req.headers());
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok().map(str::to_owned),
        None => req.uri().authority().map(|a| a.to_string()),
    };
    let Some(host) = host else {
        let raw = req
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
        return pages::bad_host(raw.as_deref(), state.port, format);
    };
    let label = match hosts::parse_host(&host) {
        None => return pages::bad_host(Some(&host), state.port, format),
        Some(Target::Dashboard) if is_options_star(&req) => return options_star(),
        Some(Target::Dashboard) => {
            let r = crate::dashboard::handle(req, Arc::clone(&state.dashboard)).await;
            return r.map(|b| b.map_err(|never| match never {}).boxed());
        }
        Some(Target::Foreign(h)) => return pages::foreign(&h, state.port, format),
        _ if is_options_star(&req) => return options_star(),
        Some(Target::Project(label)) => label,
    };
    let shown = || format!("{label}.localhost");
    let routes = state.routes();
    let Some(route) = routes.find(&label) else {
        return pages::unknown(&routes, &shown(), state.port, format);
    };
    if !route.ambiguous_with.is_empty() {
        return pages::ambiguous(&shown(), &routes.all_with(&label), state.port, format);
    }
    let looped = req
        .headers()
        .get_all(HOP_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.trim() == state.hop_id);
    if looped {
        return pages::looped(&shown(), Some(route), format);
    }
    let mut started = false;
    if route.needs_start() {
        if let Started::Failed { message, hint } = start(&state, route).await {
            let log = log_tail(&state, route).await;
            return pages::start_failed(route, &message, &hint, &log, state.port, format);
        }
        started = true;
    }
    let why = match forward::forward(&state, req, route.port, peer).await {
        Ok(r) => return r,
        Err(Failure::Refused(retry)) if route.defined && !started => {
            // The table said it runs, but it does not (any more): start it
            // and send the request again when it had no body.
            if let Started::Failed { message, hint } = start(&state, route).await {
                let log = log_tail(&state, route).await;
                return pages::start_failed(route, &message, &hint, &log, state.port, format);
            }
            match retry {
                Some(r) => match forward::resend(&state, route.port, *r).await {
                    Ok(r) => return r,
                    Err(f) => failure_text(&f),
                },
                None => "it was started; send the request again".to_owned(),
            }
        }
        Err(f) => failure_text(&f),
    };
    let log = log_tail(&state, route).await;
    pages::not_answering(&routes, route, &why, &log, state.port, format)
}

/// `OPTIONS *` (RFC 9110 §9.3.7): a question about the server itself, not
/// a resource of a project, so the proxy answers it, whatever the Host.
fn is_options_star<B>(req: &Request<B>) -> bool {
    req.method() == hyper::Method::OPTIONS && req.uri() == "*"
}

/// The answer to `OPTIONS *`: 200 with the methods the proxy forwards.
fn options_star() -> Response<Body> {
    Response::builder()
        .status(hyper::StatusCode::OK)
        .header(header::ALLOW, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS")
        .header(header::CONTENT_LENGTH, "0")
        .body(crate::empty())
        .unwrap_or_else(|_| Response::new(crate::empty()))
}

fn failure_text(f: &Failure) -> String {
    match f {
        Failure::Refused(_) => "nothing accepts connections there (127.0.0.1 nor ::1)".to_owned(),
        Failure::Broken(m) => m.clone(),
    }
}

/// The last lines of a defined project's log (none for other projects).
async fn log_tail(state: &Arc<State>, route: &Route) -> Vec<String> {
    if !route.defined {
        return Vec::new();
    }
    let path = portd_serve::serve::log_path(&state.home, &route.key);
    tokio::task::spawn_blocking(move || {
        portd_serve::logs::tail(&path, LOG_LINES).unwrap_or_default()
    })
    .await
    .unwrap_or_default()
}

/// Starts `route`'s server, or waits for the start already under way.
pub async fn start(state: &Arc<State>, route: &Route) -> Started {
    let mut rx = {
        let mut m = state.starts.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(&route.key) {
            Some(rx) => rx.clone(),
            None => {
                let (tx, rx) = watch::channel(None);
                m.insert(route.key.clone(), rx.clone());
                let (st, key) = (state.clone(), route.key.clone());
                tokio::spawn(async move {
                    let (st2, key2) = (st.clone(), key.clone());
                    let r = tokio::task::spawn_blocking(move || run_start(&st2, &key2))
                        .await
                        .unwrap_or_else(|e| Started::Failed {
                            message: format!("the start panicked: {e}"),
                            hint: String::new(),
                        });
                    st.starts.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                    let _ = tx.send(Some(r));
                });
                rx
            }
        }
    };
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or(Started::Ready),
        Err(_) => {
            Started::Failed { message: "the start was abandoned".into(), hint: String::new() }
        }
    }
}

/// The blocking start: `portd __serve` through the managed-server client.
fn run_start(state: &State, key: &str) -> Started {
    let failed = |e: portd_store::Error| Started::Failed {
        message: e.message().to_owned(),
        hint: e.hint().unwrap_or("").to_owned(),
    };
    let reg = match state.registry() {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let project = match Project::from_key(key) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let r = match client::start(&reg, &state.portd_exe, &project, false) {
        Ok(Outcome::Ready(_) | Outcome::Sleeping(_)) => Started::Ready,
        Ok(Outcome::Failed { message, hint, .. }) => Started::Failed { message, hint },
        Err(e) => failed(e),
    };
    reap();
    r
}

/// Reaps the supervisors this process started that have ended (they run
/// in their own sessions; only their exit status is left here).
pub fn reap() {
    while let Ok(Some(_)) = portd_core::sys::wait_child(-1, false) {}
}
