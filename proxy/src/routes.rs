//! The route table: every project of the registry with its host label,
//! port and state, rebuilt by one std thread when the registry changes.
//!
//! The thread watches the registry directory (inotify); after a change it
//! waits a few milliseconds for the burst to settle, and rebuilds only if
//! `registry.redb` itself changed (its size, time or inode: reads and
//! `get`'s touch log leave it as it is, and its own reads must not wake
//! it again). The new table is swapped into [`crate::State`]; requests
//! read the current one and never wait on the registry's lock.

use crate::hosts;
use portd_store::server_state::Phase;
use portd_store::{Registry, State as EntryState};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a burst of changes may go on before the table is rebuilt.
pub const DEBOUNCE: Duration = Duration::from_millis(5);

/// One project the proxy knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The project's key (a name, or a directory's path).
    pub key: String,
    /// How `portd ls` shows it.
    pub name: String,
    /// Its host name (`api.myapp.localhost`), when it has one.
    pub host: Option<String>,
    /// Its port.
    pub port: u16,
    /// Whether it is a defined (managed) server.
    pub defined: bool,
    /// A defined server's phase when the table was built (its supervisor
    /// checked for life).
    pub phase: Option<Phase>,
    /// Why it stopped or failed, when recorded.
    pub reason: Option<String>,
    /// Whether its entry's owner runs (`portd run`, a supervisor).
    pub active: bool,
    /// The owner's (or the server command's) pid.
    pub pid: Option<u32>,
    /// The owner's command line, when known (not for defined servers: see
    /// their definition).
    pub command: Option<String>,
    /// Other projects with the same host name: then none of them is routed.
    pub ambiguous_with: Vec<String>,
}

impl Route {
    /// The state as `portd ls`/`status` say it: a defined server's phase,
    /// else the entry's `active`/`idle`.
    pub fn state(&self) -> &'static str {
        match self.phase {
            Some(p) => p.as_str(),
            None if self.active => "active",
            None => "idle",
        }
    }

    /// Whether a request should start it first: a defined server with no
    /// live supervisor.
    pub fn needs_start(&self) -> bool {
        self.defined && !self.phase.is_some_and(Phase::supervised)
    }

    /// The command that starts it, for error pages.
    pub fn start_command(&self) -> String {
        let arg = if self.key.starts_with('/') { self.key.as_str() } else { self.name.as_str() };
        if self.defined {
            format!("portd start {arg}")
        } else {
            match &self.command {
                Some(c) => format!("portd run {arg} -- {c}"),
                None => format!("portd run {arg} -- COMMAND ARGS…"),
            }
        }
    }
}

/// The table requests read.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Every project, sorted by host name (projects without one last).
    pub routes: Vec<Route>,
    /// Why the last rebuild failed (the registry busy or damaged): the
    /// routes are then those of the last good build.
    pub error: Option<String>,
    /// When it was built, milliseconds since the epoch.
    pub built_ms: u64,
    by_host: HashMap<String, usize>,
}

impl Routes {
    /// Builds the table from the registry's entries and definitions.
    pub fn build(reg: &Registry) -> Result<Routes, portd_store::Error> {
        let listed = reg.list()?;
        let defined = reg.defined(None)?;
        let defs: HashMap<&str, &portd_store::Defined> =
            defined.iter().map(|d| (d.key.as_str(), d)).collect();
        let listed: Vec<_> = listed
            .into_iter()
            .filter(|l| !l.entry.project.ends_with(portd_store::RELAY_SUFFIX))
            .collect();
        let keys: Vec<&str> = listed.iter().map(|l| l.entry.project.as_str()).collect();
        let names = portd_store::shown_names(&keys);
        let mut routes: Vec<Route> = listed
            .iter()
            .zip(names)
            .map(|(l, name)| {
                let e = &l.entry;
                let d = defs.get(e.project.as_str());
                let state = d.and_then(|d| d.state.as_ref()).map(|s| s.effective());
                let host = hosts::key_label(&e.project, e.is_dir());
                Route {
                    key: e.project.clone(),
                    name,
                    host: host.map(|h| format!("{h}.localhost")),
                    port: e.port,
                    defined: d.is_some(),
                    phase: d.map(|_| state.as_ref().map_or(Phase::Stopped, |s| s.phase)),
                    reason: state.as_ref().and_then(|s| s.reason.clone()),
                    active: l.state != EntryState::Idle,
                    pid: state
                        .as_ref()
                        .and_then(|s| s.command_pid)
                        .or(e.child_pid)
                        .or(e.owner.map(|o| o.pid)),
                    command: e
                        .command
                        .as_ref()
                        .filter(|_| d.is_none())
                        .map(|c| portd_store::definition::shell_words(c)),
                    ambiguous_with: Vec::new(),
                }
            })
            .collect();
        routes.sort_by(|a, b| {
            (a.host.is_none(), &a.host, &a.key).cmp(&(b.host.is_none(), &b.host, &b.key))
        });
        let mut by_label: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            if let Some(h) = &r.host {
                by_label.entry(h.clone()).or_default().push(i);
            }
        }
        let dashboard = format!("{}.localhost", hosts::DASHBOARD_LABEL);
        let mut by_host = HashMap::new();
        for (host, idx) in by_label {
            if host == dashboard {
                for &i in &idx {
                    routes[i].ambiguous_with.push("the dashboard".to_owned());
                }
            } else if idx.len() > 1 {
                for &i in &idx {
                    let others =
                        idx.iter().filter(|&&j| j != i).map(|&j| routes[j].name.clone()).collect();
                    routes[i].ambiguous_with = others;
                }
            }
            by_host.insert(host, idx[0]);
        }
        Ok(Routes { routes, error: None, built_ms: portd_store::now_ms(), by_host })
    }

    /// The project whose host name is `LABEL.localhost` (ambiguous ones
    /// too: check [`Route::ambiguous_with`]).
    pub fn find(&self, label: &str) -> Option<&Route> {
        self.by_host.get(&format!("{label}.localhost")).map(|&i| &self.routes[i])
    }

    /// Every project with this label (more than one when ambiguous).
    pub fn all_with(&self, label: &str) -> Vec<&Route> {
        let host = format!("{label}.localhost");
        self.routes.iter().filter(|r| r.host.as_deref() == Some(&host)).collect()
    }

    /// A route's URL through a proxy on `port`.
    pub fn url(route: &Route, port: u16) -> Option<String> {
        route.host.as_ref().map(|h| hosts::proxy_url(h, port))
    }
}

/// What tells a change of `registry.redb` (not of its neighbours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The coarse clock's tick that file times move by (at most 10 ms), with
/// a margin.
const TICK_NS: i128 = 20_000_000;

/// Nanoseconds since the Unix epoch.
fn wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl Stamp {
    /// The file's latest time.
    fn time_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

fn stamp(dir: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(dir.join(portd_store::REGISTRY_FILE)).ok()?;
    Some(Stamp {
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

/// Starts the thread that keeps `state`'s table current. The first table
/// is built before this returns (so that the first request finds it).
///
/// The thread sleeps in the watch until the directory changes, and
/// rebuilds only when `registry.redb` is not as it was at the last
/// attempt. A registry that cannot be read keeps the last good table
/// (with [`Routes::error`] saying why):
/// - damaged (or of a newer portd): nothing is retried until the file
///   changes (`portd doctor --repair` replaces it), so a damaged file
///   costs nothing while it stays so;
/// - locked past `lock_timeout`: the build is tried again at once (the
///   store's lock wait, with its backoff), so that the table is current
///   as soon as the holder lets go. Only while someone holds the lock.
pub fn spawn_watcher(state: Arc<crate::State>) -> std::io::Result<()> {
    let reg = state.registry().map_err(|e| std::io::Error::other(e.to_string()))?;
    let watch = portd_core::sys::Watch::new(&state.home)?;
    let mut last = stamp(&state.home);
    // When `last` was taken, and a stamp in the future already read again.
    let mut looked = wall_ns();
    let mut future: Option<Stamp> = None;
    let busy = Err(portd_store::ErrorKind::RegistryBusy);
    // A registry locked at start-up is read as soon as it is let go.
    let mut again = rebuild(&state, &reg) == busy;
    std::thread::Builder::new().name("routes".into()).spawn(move || {
        loop {
            if !again {
                // No timer while nothing changes (a day is only a bound).
                match watch.wait(Duration::from_secs(86_400)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    // Not seen in practice (a read of the inotify
                    // descriptor failing): do not spin on it.
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
                while let Ok(true) = watch.wait(DEBOUNCE) {}
                // Our own reads write our pid into `registry.lock` (an
                // event): the file itself tells whether there is anything
                // new. File times move by coarse ticks, though: a commit
                // in the tick of the last look leaves the stamp as it was.
                // So an equal stamp whose time is within a tick of that
                // look is read once more, after the tick has passed; one
                // in the future (a clock set back) once.
                let now = stamp(&state.home);
                if now == last {
                    let Some(st) = now else { continue };
                    let age = looked - st.time_ns();
                    if age < 0 {
                        if future == now {
                            continue;
                        }
                        future = now;
                    } else if age < TICK_NS {
                        std::thread::sleep(Duration::from_nanos((TICK_NS - age) as u64));
                    } else {
                        continue;
                    }
                }
                // The file as this build (or failed build) sees it, at the
                // latest: a commit after it is a change again.
                looked = wall_ns();
                last = stamp(&state.home);
            }
            again = rebuild(&state, &reg) == busy;
        }
    })?;
    Ok(())
}

/// Rebuilds the table into `state`; on failure keeps the last good routes,
/// with the error, and says what kind of failure it was.
fn rebuild(state: &crate::State, reg: &Registry) -> Result<(), portd_store::ErrorKind> {
    match Routes::build(reg) {
        Ok(r) => {
            state.set_routes(r);
            Ok(())
        }
        Err(e) => {
            let mut old = (*state.routes()).clone();
            let error = Some(e.to_string());
            if old.error != error {
                old.error = error;
                state.set_routes(old);
            }
            Err(e.kind())
        }
    }
}
