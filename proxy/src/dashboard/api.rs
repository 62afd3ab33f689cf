//! The dashboard's JSON API: the project list, a server's log tail, and
//! start / stop / restart.
//!
//! Every registry access runs on the blocking pool ([`blocking`]).

use super::Dashboard;
use super::reply::{self, Body};
use hyper::{Response, StatusCode};
use portd_serve::client::{self, Outcome};
use portd_serve::json::EntryJson;
use portd_store::{Error, ErrorKind, Project};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One project as the dashboard shows it: the `portd ls --json` entry
/// (with its `server` object for a defined server) and what the page adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectJson {
    /// The entry, as `portd ls --json` prints it.
    #[serde(flatten)]
    pub entry: EntryJson,
    /// Open TCP connections to the project's port, while it runs.
    pub connections: Option<usize>,
    /// Resident memory: the server's process group (defined servers), or
    /// the command `portd run` started (or the owner), while it runs.
    pub rss_bytes: Option<u64>,
    /// The host name the proxy routes to this project (`api.localhost`),
    /// without the port.
    pub host: String,
    /// Whether it is a defined server, which the page can start and stop.
    pub defined: bool,
}

/// The default and largest number of log lines `…/logs?n=` answers.
pub const LOG_LINES: (usize, usize) = (50, 1000);

/// The host name the proxy routes the project with registry key `key` at
/// (`crate::hosts`: a name's label, or a directory's, with its branch in a
/// linked worktree); empty when it has none.
pub fn host_of(key: &str) -> String {
    crate::hosts::key_label(key, key.starts_with('/'))
        .map(|l| format!("{l}.localhost"))
        .unwrap_or_default()
}

/// Every project now: the snapshot `GET /api/projects` answers and each
/// event stream sends. Reads the registry (blocking).
pub fn snapshot(dash: &Dashboard) -> Result<Vec<ProjectJson>, Error> {
    let reg = dash.registry()?;
    let entries = portd_serve::json::entries(&reg)?;
    // One dump of the established connections for every project.
    let open = portd_core::sys::established_by_port().ok();
    Ok(entries.into_iter().map(|e| project(e, open.as_ref())).collect())
}

fn project(entry: EntryJson, open: Option<&std::collections::HashMap<u16, usize>>) -> ProjectJson {
    let running = match &entry.server {
        Some(s) => matches!(s.state.as_str(), "running" | "unhealthy" | "starting"),
        None => entry.state.as_deref() == Some("active"),
    };
    let rss_bytes = match &entry.server {
        Some(s) => s.pid.and(s.rss_bytes),
        None => entry.child_pid.or(entry.pid).and_then(portd_core::sys::rss_bytes),
    };
    ProjectJson {
        connections: open.filter(|_| running).map(|o| o.get(&entry.port).copied().unwrap_or(0)),
        rss_bytes,
        host: host_of(&entry.key),
        defined: entry.server.is_some(),
        entry,
    }
}

/// Runs `f` on the blocking pool (the registry lock may be held elsewhere
/// for a while).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::new(ErrorKind::Other, format!("internal error: {e}"))))
}

/// The status that says what kind of error `e` is.
fn status_of(e: &Error) -> StatusCode {
    match e.kind() {
        ErrorKind::UnknownProject => StatusCode::NOT_FOUND,
        ErrorKind::Usage => StatusCode::BAD_REQUEST,
        ErrorKind::RegistryBusy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Permission => StatusCode::FORBIDDEN,
        ErrorKind::PortBusy | ErrorKind::NoFreePort => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A library error as a JSON error response.
pub fn error_response(e: &Error) -> Response<Body> {
    reply::error(status_of(e), e.message().to_owned(), e.hint().map(str::to_owned))
}

/// `GET /api/projects`.
pub async fn projects(dash: &Arc<Dashboard>) -> Response<Body> {
    let d = Arc::clone(dash);
    match blocking(move || snapshot(&d)).await {
        Ok(list) => reply::json(StatusCode::OK, &list),
        Err(e) => error_response(&e),
    }
}

/// `%XX`-decodes a path segment; `None` when it is not UTF-8 or malformed.
fn decode(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The named project of a path segment.
fn project_of(segment: &str) -> Result<Project, Error> {
    let Some(name) = decode(segment) else {
        return Err(Error::new(ErrorKind::Usage, format!("malformed project name `{segment}`")));
    };
    // Names only: managed servers are named projects (`portd add NAME`),
    // and a log's path is built from the name.
    Project::name(&name)
}

/// What `…/logs` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogsJson {
    /// The project.
    pub project: String,
    /// The last lines of its log, oldest first (none before its first
    /// start).
    pub lines: Vec<String>,
}

/// `GET /api/projects/NAME/logs?n=N`: the last `n` lines (default 50, at
/// most 1000) of a defined server's log, as `portd logs --json` prints them.
pub async fn logs(dash: &Arc<Dashboard>, segment: &str, query: Option<&str>) -> Response<Body> {
    let project = match project_of(segment) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let mut n = LOG_LINES.0;
    for (k, v) in query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
        if k == "n" {
            match v.parse::<usize>() {
                Ok(x) if x >= 1 => n = x.min(LOG_LINES.1),
                _ => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        format!("`n` must be a number of lines from 1, not `{v}`"),
                        None,
                    );
                }
            }
        }
    }
    let d = Arc::clone(dash);
    let got = blocking(move || {
        let reg = d.registry()?;
        if reg.definition(&project)?.is_none() {
            return Err(client::not_defined(&project));
        }
        let path = portd_serve::serve::log_path(reg.dir(), project.key());
        let lines = match portd_serve::logs::tail(&path, n) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("cannot read `{}`: {e}", path.display()),
                ));
            }
        };
        Ok(LogsJson { project: project.display().to_owned(), lines })
    })
    .await;
    match got {
        Ok(l) => reply::json(StatusCode::OK, &l),
        Err(e) => error_response(&e),
    }
}

/// What a `POST` asks of a defined server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `portd start`.
    Start,
    /// `portd stop`.
    Stop,
    /// `portd restart`.
    Restart,
}

impl Action {
    /// The action a path segment names.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }
}

/// What an action answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct ActionJson {
    /// The project.
    pub project: String,
    /// `ready`, `sleeping`, `stopped` (it ran and was stopped), or
    /// `not-running` (a stop of a server that was not running).
    pub outcome: String,
    /// Its port, when it runs or sleeps.
    pub port: Option<u16>,
}

/// `POST /api/projects/NAME/start|stop|restart`: what `portd start|stop|
/// restart NAME` does, waiting like them until the server is ready (or
/// stopped). A failed start answers 502 with the reason, the fix and the
/// log's last lines.
pub async fn act(dash: &Arc<Dashboard>, segment: &str, action: Action) -> Response<Body> {
    let project = match project_of(segment) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let d = Arc::clone(dash);
    let shown = project.display().to_owned();
    let got = blocking(move || {
        let reg = d.registry()?;
        let outcome = match action {
            Action::Start => client::start(&reg, &d.portd_exe, &project, false)?,
            Action::Restart => client::restart(&reg, &d.portd_exe, &project)?,
            Action::Stop => {
                let was = client::stop(&reg, &project)?;
                return Ok(Err(if was { "stopped" } else { "not-running" }));
            }
        };
        let tail = match &outcome {
            Outcome::Failed { .. } => {
                let path = portd_serve::serve::log_path(reg.dir(), project.key());
                portd_serve::logs::tail(&path, 20).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok(Ok((outcome, tail)))
    })
    .await;
    dash.notify_changed();
    let (outcome, tail) = match got {
        Err(e) => return error_response(&e),
        Ok(Err(word)) => {
            return reply::json(
                StatusCode::OK,
                &ActionJson { project: shown, outcome: word.into(), port: None },
            );
        }
        Ok(Ok(x)) => x,
    };
    let (word, port) = match outcome {
        Outcome::Ready(p) => ("ready", p),
        Outcome::Sleeping(p) => ("sleeping", p),
        Outcome::Failed { code, message, hint } => {
            let v = serde_json::json!({
                "error": message,
                "hint": hint,
                "code": code,
                "log": tail,
            });
            return reply::json(StatusCode::BAD_GATEWAY, &v);
        }
    };
    reply::json(
        StatusCode::OK,
        &ActionJson { project: shown, outcome: word.into(), port: Some(port) },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_names_follow_the_routing() {
        assert_eq!(super::host_of("api"), "api.localhost");
        assert_eq!(super::host_of("MyApp:API"), "api.myapp.localhost");
        assert_eq!(super::host_of("my_app"), "my_app.localhost", "as the router keeps `_`");
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(super::decode("a%3Ab").as_deref(), Some("a:b"));
        assert_eq!(super::decode("plain").as_deref(), Some("plain"));
        assert_eq!(super::decode("bad%4"), None);
        assert_eq!(super::decode("bad%zz"), None);
        assert_eq!(super::decode("%ff"), None);
    }
}
